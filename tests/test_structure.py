"""The shape of the house: imports point down, an encoding is one class plus one line and
is documented where users look for it, and the README's Python example runs."""

import ast
import os
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import write_corpus

import fire.encodings as encodings
from configs import lm
from fire.config import from_axes
from fire.data import Protocol
from fire.encodings.base import PositionEncoding, Rotation
from fire.encodings.rotary import rope_inv_freq, rotate
from fire.evaluation import Settings, sweep
from fire.model import ModelConfig, Transformer
from fire.training import train

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(REPO, "fire")
BENCHMARKS = os.path.join(REPO, "benchmarks")  # outside the installable package

# Floors of the library, bottom first. A module may import from its own floor or below,
# never from above; the library never imports the command-line configs/.
FLOORS = [
    ("fire", "fire.errors", "fire.utils", "fire.xla", "fire.cli", "fire.provenance"),
    ("fire.encodings", "fire.data", "fire.tasks"),
    ("fire.model",),
    ("fire.config", "fire.workdir", "fire.checkpoint"),
    ("fire.evaluation",),
    ("fire.training",),
    ("fire.sweeps",),
    ("benchmarks",),  # may import the library; the library never imports them
]


def floor_of(module: str) -> int:
    """The floor of the longest prefix of ``module`` named in FLOORS."""
    best, floor = "", None
    for i, names in enumerate(FLOORS):
        for name in names:
            if (module == name or module.startswith(name + ".")) and len(name) > len(best):
                best, floor = name, i
    assert floor is not None, f"{module} is on no floor: add it to FLOORS"
    return floor


def library_modules() -> dict:
    """``{module name: path}`` for every module of the package and of the benchmarks."""
    modules = {}
    for root, _, files in (walk for package in (PACKAGE, BENCHMARKS) for walk in os.walk(package)):
        for f in files:
            if f.endswith(".py"):
                rel = os.path.relpath(os.path.join(root, f), REPO)[:-3].replace(os.sep, ".")
                modules[rel.removesuffix(".__init__")] = os.path.join(root, f)
    return modules


def imports_of(path: str, modules: dict, name: str) -> set:
    """Every module of the package, or ``configs``, that ``path`` imports, at any depth of
    the file (function-level imports count). ``from pkg import x`` names the submodule
    ``pkg.x`` when there is one, else ``pkg`` itself."""
    tree = ast.parse(open(path).read())
    package = name if path.endswith("__init__.py") else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.add(sub if sub in modules else base)
    return {m for m in found if m in modules or m == "configs" or m.startswith("configs.")}


def test_imports_point_down_and_never_circle():
    modules = library_modules()
    graph = {name: imports_of(path, modules, name) - {name} for name, path in modules.items()}
    upward = [
        f"{m} (floor {floor_of(m)}) imports {d} (floor {floor_of(d)})"
        for m, deps in graph.items()
        for d in deps
        if not d.startswith("configs") and floor_of(d) > floor_of(m)
    ]
    assert not upward, upward
    assert not [(m, d) for m, deps in graph.items() for d in deps if d.startswith("configs")]

    # No cycle, through package __init__ files too (Tarjan's strongly connected components).
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    assert not cycles, cycles


def test_the_checker_sees_an_upward_import(tmp_path):
    """The import check above would fail on a model module that imports the trainer."""
    modules = {"fire.model.transformer": "", "fire.training.trainer": ""}
    source = tmp_path / "transformer.py"
    source.write_text("def f():\n    from fire.training import trainer\n")
    deps = imports_of(str(source), modules, "fire.model.transformer")
    assert deps == {"fire.training.trainer"} and floor_of("fire.training.trainer") > floor_of("fire.model.transformer")


# ---------------------------------------------------------------- a new encoding, end to end


class ScaledRoPE(PositionEncoding):
    """An xPos-style encoding, written here as a user would: RoPE with the query scaled by
    ``zeta^(i / gamma)`` and the key by ``zeta^(-j / gamma)`` per frequency pair, so the
    logit decays as ``zeta^((i - j) / gamma)``: queries and keys rotate differently."""

    gamma: float = 0.0  # 0: the training length
    base: float = 10000.0

    def rotary(self, seq_len):
        inv_freq = rope_inv_freq(self.head_dim, self.base)
        zeta = (jnp.arange(0, self.head_dim, 2, dtype=jnp.float32) / self.head_dim + 0.4) / 1.4
        gamma = self.gamma or self.train_len

        def scaled(sign):
            def apply(x, positions_BxT):
                power_BxTxF = sign * positions_BxT.astype(jnp.float32)[..., None] / gamma
                scale = jnp.tile(zeta**power_BxTxF, 2)[:, :, None, :]
                return rotate(x, positions_BxT, inv_freq) * scale

            return apply

        return Rotation(query=scaled(1.0), key=scaled(-1.0))


def undocumented_encodings() -> list:
    """For every registered ``pe=`` name missing from the README's encodings table or from
    ``configs/lm.py``'s docstring (its ``pe`` axis), the line that says what to do."""
    with open(os.path.join(REPO, "README.md")) as f:
        table = f.read().split("## Position encodings", 1)[1].split("\n\n")[1]
    in_readme = {name for row in table.splitlines()[2:] for name in re.findall(r"`(\w+)`", row.split("|")[1])}
    axis = re.search(r"^\s+pe\s+position encoding:(.*?)^\s+size\s", lm.__doc__, re.S | re.M).group(1)
    in_lm = set(re.sub(r"\(default \w+\)", "", axis).split())
    missing = []
    for name in encodings.REGISTRY:
        places = [p for p, names in (("README.md's encodings table", in_readme), ("configs/lm.py's docstring", in_lm))
                  if name not in names]  # fmt: skip
        if places:
            missing.append(f"document pe={name} in {' and '.join(places)}")
    return missing


def test_every_encoding_is_documented():
    missing = undocumented_encodings()
    assert not missing, "; ".join(missing)


def test_an_encoding_registered_without_documentation_fails():
    encodings.register("undocumented_pe", ScaledRoPE)
    try:
        with pytest.raises(AssertionError, match="document pe=undocumented_pe in README.md's encodings table and"):
            test_every_encoding_is_documented()
    finally:
        encodings.REGISTRY.pop("undocumented_pe", None)
    assert undocumented_encodings() == []


@pytest.mark.slow
def test_a_new_encoding_is_one_class_and_one_register_line(tmp_path):
    encodings.register("scaled_rope", ScaledRoPE)
    try:
        assert undocumented_encodings() == [  # what is left to do, besides the class and the line
            "document pe=scaled_rope in README.md's encodings table and configs/lm.py's docstring"
        ]
        # Its logits depend on i - j only, though q and k are transformed differently.
        enc = encodings.build_encoding("scaled_rope", num_heads=2, head_dim=8, d_model=16, train_len=16)
        rotation = enc.apply({}, method=lambda m: m.rotary(16))
        q, k = jax.random.normal(jax.random.key(0), (2, 1, 1, 2, 8))
        logit = lambda i, j: float(jnp.sum(rotation.query(q, jnp.array([[i]])) * rotation.key(k, jnp.array([[j]]))))
        assert logit(9, 4) == pytest.approx(logit(29, 24), rel=1e-4)
        assert not np.allclose(rotation.query(q, jnp.array([[3]])), rotation.key(q, jnp.array([[3]])))

        # Configured, trained, resumed and evaluated by name, with no other edit.
        (tmp_path / "corpus").mkdir()
        corpus = write_corpus(tmp_path / "corpus", (("train", 4), ("validation", 2)), 800)
        config = from_axes("pe=scaled_rope,data=text_dir,smoke")
        assert dict(config.encoding) == {"gamma": 0.0, "base": 10000.0}
        config.data.path, config.data.data_dir = str(corpus), str(tmp_path / "cache")
        config.num_steps, config.eval_every, config.mesh.data = 6, 0, 1
        final = train(config, str(tmp_path / "run"))
        assert np.isfinite(final["loss"]) and np.isfinite(final["eval_loss"])
        rows = sweep([str(tmp_path / "run")], ["32", "64", "128"], Settings(Protocol(eval_tokens=256)),
                     str(tmp_path / "out"), log=lambda _: None)  # fmt: skip
        assert [(r["pe"], r["eval_len"]) for r in rows] == [("scaled_rope", L) for L in (32, 64, 128)]
        assert all(np.isfinite(r["loss"]) for r in rows)
    finally:
        encodings.REGISTRY.pop("scaled_rope", None)


def test_run_dependent_defaults_follow_the_final_training_length():
    """``--config.train_len=32`` after the axes: FIRE's threshold starts at 32."""
    config = from_axes("pe=fire,train_len=128", lock=False)
    config.train_len = 32
    cfg = ModelConfig.from_run_config(config, vocab_size=256)
    enc = cfg.build_encoding()
    params = enc.init(jax.random.key(0), method=lambda m: m.bias_fn(32) and None)["params"]
    assert enc.apply({"params": params}, method=lambda m: m.threshold_L()) == 32.0
    assert encodings.build_encoding("learned", {"max_len": 0}, num_heads=2, head_dim=8, d_model=16,
                                    train_len=40).table_len == 40  # fmt: skip


# ---------------------------------------------------------------- the README


def readme_python_blocks():
    with open(os.path.join(REPO, "README.md")) as f:
        return re.findall(r"```python\n(.*?)```", f.read(), re.S)


def test_the_readme_python_example_runs():
    blocks = readme_python_blocks()
    assert blocks, "the README has no Python example"
    for block in blocks:
        namespace = {}
        exec(compile(block, "README.md", "exec"), namespace)
        logits = namespace["logits"]
        assert logits.shape[:2] == (1, 8192) and bool(jnp.isfinite(logits).all())
        assert isinstance(namespace["model"], Transformer)


def _compare_runs() -> set:
    """The workdirs ``scripts/quickstart.sh`` and ``scripts/compare.sh`` make (their defaults)."""
    with open(os.path.join(REPO, "scripts", "compare.sh")) as f:
        script = f.read()
    encodings = re.search(r"ENCODINGS=\$\{ENCODINGS:-([^}]*)\}", script).group(1).split()
    train_len = re.search(r"TRAIN_LEN=\$\{TRAIN_LEN:-(\d+)\}", script).group(1)
    return {f"runs/tiny_{train_len}/{pe}" for pe in encodings}


def test_every_readme_command_reads_folders_that_the_quickstart_or_its_own_example_makes():
    """A newcomer copies commands after the quickstart: the runs that eval_length.py,
    eval_task.py, probe_attention.py and generate.py read must be ones the quickstart (or compare.sh) trains, or ones a train.py
    command earlier in the same README section trains."""
    with open(os.path.join(REPO, "README.md")) as f:
        sections = f.read().split("\n## ")
    read = []
    for section in sections:
        made = set(_compare_runs())
        block = "\n".join(re.findall(r"```(?:bash|text|console)?\n(.*?)```", section, re.S))
        for line in block.replace("\\\n", " ").splitlines():
            command = line.strip().removeprefix("$ ")
            if not re.match(r"python3? (train|eval_length|eval_task|probe_attention|generate)\.py", command):
                continue
            workdirs = [w for w in re.findall(r"--workdir=['\"]?([^\s'\"]+)", command) if not glob_pattern(w)]
            if command.split()[1] == "train.py":
                made.update(workdirs)
            else:
                read += [(w, command) for w in workdirs if w not in made and not w.startswith("/")]
    assert not read, f"README commands read runs that neither the quickstart nor their example trains: {read}"


def glob_pattern(path: str) -> bool:
    return any(c in path for c in "*?[")
