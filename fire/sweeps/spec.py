"""A sweep: a set of training runs named by a config file, expanded into run specs.

A sweep config (``configs/sweeps/*.py``, an ml_collections ConfigDict) holds:

* ``name``: the sweep's name (written into its results folder, which refuses another sweep);
* ``config``: the run config file every run starts from (``configs/lm.py``);
* ``axes``: a Cartesian product. Keys are the config file's axes (``pe``, ``size``,
  ``train_len``, ``data``, ``task``), ``seed`` (sets ``seed``, and through it the data order), and any
  ``--config.`` override written as nested dicts (``encoding=dict(log_transform=[True,
  False])``); every leaf is a list of values;
* ``grids``: optional; a list of partial axis dicts, each crossed with ``axes``, their union
  taken (e.g. three seeds at one training length and one at another);
* ``variants``: optional named rows, ``[(name, {axis or override: value}), ...]`` (a list
  keeps the table's row order; a dict works too, its rows sorted), crossed with the rest (a
  variant sets several keys at once, e.g. FIRE without its threshold); without variants a
  run's row is its encoding;
* ``overrides``: ``--config.`` values for every run (nested dicts);
* ``eval``: the length sweep: ``factors`` of the training length (or fixed ``lengths``),
  ``protocol``, ``eval_tokens``, ``stride``; for task runs the task sweep
  (``fire.evaluation.task_sweep``): ``factors`` of ``task.max_len`` (or ``lengths`` in the
  task's unit), ``n_examples``, ``eval_seed``;
* ``eval_variants``: optional evaluation-time rows, ``[(name, dict(rows=[...], encoding={...},
  pe=..., positions=...))]`` (or a dict): re-scores the runs of those rows with encoding
  options, or as another encoding of the same parameters (``pe``: ``rope_pi`` on ``rope``'s
  runs), that change no parameter, or at randomized position ids (``positions='randomized'``); a ``pe`` variant is the row ``name``, an options one ``ROW [name]``
  (``fire.sweeps.results.table_rows``);
* ``runs_dir`` and ``output_dir``.

Values may be the string ``"train_len"``, replaced by the run's training length (e.g. a FIRE
normaliser cap at the training length).

A run's folder is ``runs_dir/ROW/SIZE_L{train_len}_s{seed}`` (a task run's:
``runs_dir/ROW/TASK_SIZE_L{min_len}-{max_len}_s{seed}``, its training row length following
from its longest example unless ``train_len`` is given), plus ``_key-value`` for the keys
that tell apart runs which would otherwise share it: names are deterministic, and sweeps that
share a recipe and a ``runs_dir`` share their runs.
"""

import dataclasses
import fnmatch
import importlib.util
import itertools
import os
import re
import shlex
import sys
from typing import Callable, Optional

import ml_collections

from fire.config import set_dotted
from fire.errors import ConfigError
from fire.utils import did_you_mean

CONFIG_AXES = ("pe", "size", "train_len", "data", "task")  # the config file's own axes (after the colon)
SWEEP_FIELDS = ("name", "config", "axes", "grids", "variants", "overrides", "eval", "eval_variants", "runs_dir",
                "output_dir")  # fmt: skip
# lengths: the same evaluation lengths for every run (else factors of each run's training length)
# A task sweep's factors multiply the longest training length (task.max_len), its lengths are in
# the task's unit (ranges START:STOP[:STEP] too), and it scores n_examples drawn from eval_seed.
EVAL_FIELDS = {"factors": [1, 2, 4, 8, 16], "lengths": [], "protocol": "stream", "eval_tokens": 65536, "stride": 0,
               "n_examples": 500, "eval_seed": 0}  # fmt: skip
_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


class SweepError(ConfigError):
    """A sweep config that cannot be expanded (unknown keys, an empty product, bad names)."""


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """One training run of a sweep.

    Attributes:
      name: ``ROW/SIZE_L{train_len}_s{seed}...``, unique in the sweep; also its folder.
      row: the table row (variant name, or the encoding).
      config_arg: ``configs/lm.py:pe=...,size=...,train_len=...,data=...``.
      overrides: flattened ``--config.`` values (``seed`` included), in a fixed order.
      workdir: ``runs_dir/name``.
    """

    name: str
    row: str
    size: str
    train_len: int
    seed: int
    config_arg: str
    overrides: tuple
    workdir: str

    def command(self, python: str = "python") -> list:
        """The ``train.py`` command line that trains (or resumes) this run."""
        flags = [f"--config.{k}={_flag_value(v)}" for k, v in self.overrides]
        return [python, "train.py", f"--config={self.config_arg}", *flags, f"--workdir={self.workdir}"]

    def shell_command(self, python: str = "python") -> str:
        return " ".join(shlex.quote(part) for part in self.command(python))


def _flag_value(v) -> str:
    return repr(v) if isinstance(v, float) else str(v)


def flatten(tree, prefix: str = "") -> dict:
    """``{'a': {'b': 1}}`` -> ``{'a.b': 1}``."""
    out = {}
    for k, v in dict(tree).items():
        key = f"{prefix}{k}"
        if isinstance(v, (dict, ml_collections.ConfigDict)):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


_MODULES = {}


def load_python_config(path: str, arg: Optional[str] = None):
    """``get_config(arg)`` of a config file (``path``, as on the command line); ``arg`` None
    calls ``get_config()`` without arguments (sweep files)."""
    if path not in _MODULES:
        if not os.path.isfile(path):
            raise SweepError(f"config file {path} does not exist.")
        repo = os.path.dirname(os.path.dirname(os.path.abspath(path)))
        if repo not in sys.path:  # config files import their siblings as `configs.x`
            sys.path.insert(0, repo)
        spec = importlib.util.spec_from_file_location(f"_config_{len(_MODULES)}", path)
        module = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(module)
        except Exception as e:  # a file that is not Python, or fails as it loads: the user's file
            raise SweepError(f"cannot load the config file {path}: {type(e).__name__}: {e}") from None
        if not callable(getattr(module, "get_config", None)):
            raise SweepError(f"the config file {path} has no get_config() function.")
        _MODULES[path] = module
    get_config = _MODULES[path].get_config
    try:
        return get_config() if arg is None else get_config(arg)
    except ConfigError:
        raise
    except Exception as e:
        raise SweepError(f"{path}: get_config({arg or ''}) failed: {type(e).__name__}: {e}") from None


def load_sweep(path: str) -> ml_collections.ConfigDict:
    """The sweep config in ``path``, its fields checked."""
    sweep = load_python_config(path)
    unknown = sorted(set(sweep.keys()) - set(SWEEP_FIELDS))
    if unknown:
        hints = "".join(did_you_mean(k, SWEEP_FIELDS, 1) for k in unknown)
        raise SweepError(
            f"{path}: unknown sweep field(s) {', '.join(unknown)}.{hints} Valid: {', '.join(SWEEP_FIELDS)}."
        )
    for field in ("name", "config", "axes", "runs_dir", "output_dir"):
        if field not in sweep:
            raise SweepError(f"{path}: the sweep needs a {field!r} field.")
    return sweep


def eval_settings(sweep) -> dict:
    """The sweep's ``eval`` block with defaults; unknown keys fail."""
    given = dict(sweep.get("eval", {}) or {})
    unknown = sorted(set(given) - set(EVAL_FIELDS))
    if unknown:
        raise SweepError(f"unknown eval setting(s) {', '.join(unknown)}; valid: {', '.join(EVAL_FIELDS)}.")
    return {**EVAL_FIELDS, **given}


def named_pairs(named) -> list:
    """``[(name, value), ...]`` from a list of pairs (order kept) or a dict (ConfigDict sorts
    its keys, so a dict's rows come in alphabetical order)."""
    if not named:
        return []
    return list(named.items()) if hasattr(named, "items") else [tuple(pair) for pair in named]


def _product(axes: dict) -> list:
    """Every combination of the axes' values, in the order given."""
    for key, values in axes.items():
        if not isinstance(values, (list, tuple)):
            raise SweepError(f"axis {key!r} must be a list of values, got {values!r}.")
        if not values:
            raise SweepError(f"axis {key!r} has no values: the sweep would be empty.")
    keys = list(axes)
    return [dict(zip(keys, combo)) for combo in itertools.product(*(axes[k] for k in keys))]


def expand(sweep) -> list:
    """The sweep's runs, in a fixed order (rows, then the other axes as listed).

    Raises:
      SweepError: unknown axis or override keys (with the nearest valid names), an empty
        product, a variant or axis value that is not a simple name, or two runs with the
        same folder.
    """
    axes = flatten(sweep.axes)
    grids = [flatten(g) for g in (sweep.get("grids") or [{}])]
    variants = {name: flatten(v) for name, v in named_pairs(sweep.get("variants"))}
    overrides = flatten(sweep.get("overrides") or {})
    for name in variants:
        if not _NAME.match(name):
            raise SweepError(f"variant name {name!r} must be letters, digits, '_', '.' or '-' (it names folders).")
    combos = []
    for grid in grids:
        clash = sorted(set(grid) & set(axes))
        if clash:
            raise SweepError(f"grid axes {', '.join(clash)} are also in `axes`: give each axis in one place.")
        combos += _product({**axes, **grid})
    if not combos:
        raise SweepError("the sweep's product is empty.")
    rows = list(variants.items()) or [(None, {})]
    settings = [(variant, {**overrides, **combo, **fixed}) for variant, fixed in rows for combo in combos]

    base = load_python_config(sweep.config, "")
    drafts = []
    for variant, values in settings:
        axis_values = {a: values.pop(a) for a in CONFIG_AXES if a in values}
        seed = int(values.pop("seed", base.seed))
        config_axes = {**{a: _base_axis(base, a) for a in CONFIG_AXES}, **axis_values}
        row = variant or str(config_axes["pe"])
        if config_axes["task"]:
            low, high, longest = _task_lengths(config_axes["task"], values)
            if "train_len" not in axis_values:
                config_axes["train_len"] = longest
            folder = f"{config_axes['task']}_{config_axes['size']}_L{low}-{high}_s{seed}"
        train_len = int(config_axes["train_len"])
        values = {k: (train_len if v == "train_len" else v) for k, v in values.items()}
        if not config_axes["task"]:
            folder = f"{config_axes['size']}_L{train_len}_s{seed}"
        drafts.append((f"{row}/{folder}", row, config_axes, seed, values))
    # Keys that tell apart runs which would otherwise share a folder join its name.
    by_name = {}
    for draft in drafts:
        by_name.setdefault(draft[0], []).append(draft[4])
    specs, seen, tasks = [], set(), set()
    for base_name, row, config_axes, seed, values in drafts:
        group = by_name[base_name]
        differ = sorted(k for k in values if len({repr(v.get(k)) for v in group}) > 1)
        name = base_name + "".join(f"_{k.split('.')[-1]}-{values[k]}" for k in differ)
        if name in seen:
            raise SweepError(f"two runs of the sweep would share the folder {name}: add a variant or an axis.")
        seen.add(name)
        # A language-modelling run's arg keeps its old spelling (no empty task=), so its folder
        # and command line are the ones earlier sweeps made.
        arg = ",".join(f"{a}={config_axes[a]}" for a in CONFIG_AXES if a != "task" or config_axes[a])
        spec = RunSpec(name=name, row=row, size=str(config_axes["size"]), train_len=int(config_axes["train_len"]),
                       seed=seed, config_arg=f"{sweep.config}:{arg}",
                       overrides=tuple(sorted(values.items())) + (("seed", seed),),
                       workdir=os.path.join(sweep.runs_dir, name))  # fmt: skip
        tasks.add(run_config(spec).task.name)  # unknown keys and values the config refuses fail now
        specs.append(spec)
    if len(tasks) > 1:
        names = ", ".join(t or "'' (language modelling)" for t in sorted(tasks))
        raise SweepError(f"the sweep's runs train on {names}: a sweep's table is of one task (or of language "
                         f"modelling); give each its own sweep file.")  # fmt: skip
    cells = {}
    for spec in specs:  # a table cell: (row, size, training length, seed)
        cells.setdefault((spec.row, spec.size, spec.train_len, spec.seed), []).append(spec.name)
    shared = next((names for names in cells.values() if len(names) > 1), None)
    if shared:
        raise SweepError(f"runs {' and '.join(shared)} would share a cell of the table (row, size, train_len and "
                         f"seed): make them rows of their own (variants) or give them different train_len.")  # fmt: skip
    check_eval_variants(sweep, specs)
    return specs


EVAL_VARIANT_FIELDS = ("rows", "encoding", "pe", "positions")


def check_eval_variants(sweep, specs: list) -> None:
    """Each evaluation-time variant, before anything trains: a simple name, known fields, what it
    changes (``pe`` and/or ``encoding`` options of that encoding), and the trained rows it is
    evaluated on. A ``pe`` variant is a row of its own, named by the variant: it takes one
    source row and a name no trained row has.

    Raises:
      SweepError: naming the variant and what to write instead.
    """
    from fire.encodings import UnknownEncodingError, resolved_options

    trained = list(dict.fromkeys(spec.row for spec in specs))
    for name, v in named_pairs(sweep.get("eval_variants")):
        v = dict(v)
        where = f"eval variant {name!r}"
        if not _NAME.match(str(name)):
            raise SweepError(f"{where}: the name must be letters, digits, '_', '.' or '-' (it names table rows).")
        unknown = sorted(set(v) - set(EVAL_VARIANT_FIELDS))
        if unknown:
            hints = "".join(did_you_mean(k, EVAL_VARIANT_FIELDS, 1) for k in unknown)
            raise SweepError(f"{where}: unknown field(s) {', '.join(unknown)}.{hints} Valid: "
                             f"{', '.join(EVAL_VARIANT_FIELDS)}.")  # fmt: skip
        if v.get("positions") not in (None, "ordinary", "randomized"):
            raise SweepError(f"{where}: positions is ordinary or randomized, not {v['positions']!r}.")
        if not v.get("pe") and not v.get("encoding") and v.get("positions") != "randomized":
            raise SweepError(f"{where} changes nothing: give pe=NAME (another encoding of the same parameters), "
                             f"encoding=dict(option=value) and/or positions='randomized'.")  # fmt: skip
        rows = list(v.get("rows") or trained)
        for row in rows:
            if row not in trained:
                raise SweepError(f"{where}: rows names {row!r}, which the sweep does not train."
                                 f"{did_you_mean(str(row), trained)} Trained rows: {', '.join(trained)}.")  # fmt: skip
        if v.get("pe"):
            if len(rows) != 1:
                raise SweepError(f"{where} sets pe, so it is a row of its own: give it one source row "
                                 f"(rows=[...]), not {len(rows)}.")  # fmt: skip
            if name in trained:
                raise SweepError(f"{where} sets pe, so it names its own row, and the sweep trains a row {name!r} "
                                 f"already: give the variant another name.")  # fmt: skip
        for row in rows:
            pe = v.get("pe") or run_config(next(spec for spec in specs if spec.row == row)).pe
            try:
                resolved_options(pe, dict(v.get("encoding") or {}))
            except UnknownEncodingError as e:
                raise SweepError(f"{where}: {e}") from None


def _base_axis(base, axis: str):
    """An axis's value in the config file's defaults."""
    return {"data": lambda: base.data.name, "task": lambda: base.task.name}.get(axis, lambda: base[axis])()


def _task_lengths(name: str, values: dict) -> tuple:
    """``(min_len, max_len, train_len)`` of a task run whose overrides are ``values``: the
    curriculum (overridden or the task's default) and the row length that holds its longest
    example. Raises TaskError for an unknown task or option value."""
    from fire.tasks import build_task, lookup

    lookup(name)
    own = {k.removeprefix("task."): v for k, v in values.items() if k.startswith("task.")}
    low, high = own.pop("min_len", None), own.pop("max_len", None)
    own.pop("eval_examples", None)
    task = build_task(name, own)
    default_low, default_high = task.training_lengths()
    high = int(high or default_high)
    return int(low or default_low), high, task.max_tokens(high) - 1


def run_config(spec: RunSpec) -> ml_collections.ConfigDict:
    """The run config ``spec`` trains with (the config file, then its overrides).

    Raises SweepError for a key the config does not have, with the nearest valid names."""
    path, _, arg = spec.config_arg.partition(":")
    config = load_python_config(path, arg)
    valid = flatten(config.to_dict())
    for key, value in spec.overrides:
        if key not in valid:
            raise SweepError(f"{spec.name}: unknown override or axis {key!r}.{did_you_mean(key, valid)} "
                             f"Valid: the keys of {path}, {', '.join(CONFIG_AXES)} and seed.")  # fmt: skip
        try:
            set_dotted(config, key, value)
        except (TypeError, ValueError) as e:
            raise SweepError(f"{spec.name}: {key}={value!r} is refused by the config: {e}") from None
    return config


def parse_shard(shard: Optional[str], environ=os.environ) -> tuple:
    """``'I/N'``, or a scheduler's job-array variables, -> ``(I, N)``, 0-based; ``(0, 1)``: all runs.

    ``I`` counts from 0 (worker ``I`` of ``N`` takes runs ``I, I + N, ...``). Without
    ``shard``, SLURM's job-array variables give it whatever the array's base and step
    (:func:`slurm_shard`), so ``--array=0-7``, ``--array=1-8`` and ``--array=0-14:2`` each
    cover every run once.

    Raises:
      SweepError: not ``I/N``, or ``I`` outside ``[0, N)``.
    """
    if not shard:
        return slurm_shard(environ) if environ.get("SLURM_ARRAY_TASK_ID", "") != "" else (0, 1)
    try:
        index, count = (int(x) for x in shard.split("/"))
    except ValueError:
        raise SweepError(f"--shard must be I/N with I counted from 0 (e.g. 0/4 ... 3/4), got {shard!r}.") from None
    if count < 1 or not 0 <= index < count:
        raise SweepError(
            f"--shard={shard}: I counts from 0, so it must be in [0, {count}) with N >= 1 (the last of {count} "
            f"workers is {max(count, 1) - 1}/{count}). Under a SLURM job array leave --shard out: SLURM_ARRAY_TASK_ID, "
            f"_MIN, _STEP and _COUNT are read whatever the array's base."
        )
    return index, count


SLURM_ARRAY = ("SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_MIN", "SLURM_ARRAY_TASK_MAX", "SLURM_ARRAY_TASK_STEP",
               "SLURM_ARRAY_TASK_COUNT")  # fmt: skip


def slurm_shard(environ) -> tuple:
    """``(I, N)`` of a SLURM job-array task: the array's ids ``MIN, MIN + STEP, ..., MAX`` are
    the shards ``0 .. N-1`` in order (``SLURM_ARRAY_TASK_MIN`` defaults to 0 and ``_STEP`` to
    1 where unset; ``N`` is ``SLURM_ARRAY_TASK_COUNT``, else ``(MAX - MIN) / STEP + 1``).

    Raises:
      SweepError: a variable that is not an integer, or an array whose ids are not such a
        progression (``--array=1,3,8``), naming the variables.
    """
    values = {}
    for name in SLURM_ARRAY:
        if environ.get(name, "") != "":
            try:
                values[name[len("SLURM_ARRAY_TASK_") :]] = int(environ[name])
            except ValueError:
                raise SweepError(f"{name}={environ[name]!r} is not an integer.") from None
    task, low, step = values["ID"], values.get("MIN", 0), values.get("STEP", 1)
    count = values.get("COUNT")
    if count is None and "MAX" in values:
        count = (values["MAX"] - low) // max(step, 1) + 1
    seen = ", ".join(f"{n}={environ[n]}" for n in SLURM_ARRAY if environ.get(n, "") != "")
    index, rest = divmod(task - low, step) if step >= 1 else (-1, 0)
    consistent = "MAX" not in values or count is None or values["MAX"] == low + (count - 1) * step
    if count is None or rest or not 0 <= index < count or not consistent:
        example = f"--array=0-{count - 1}" if count else "--array=0-N (N + 1 workers)"
        raise SweepError(
            f"the SLURM job array ({seen}) is not the progression MIN, MIN + STEP, ..., MAX of COUNT ids that shards "
            f"need: submit it as {example} (any base and step work), or pass --shard=I/N yourself."
        )
    return index, count


def shard_of(specs: list, index: int, count: int, cost: Callable = lambda spec: 1.0) -> list:
    """Worker ``index``'s runs of ``count`` workers, in the sweep's order.

    The runs are dealt out most costly first, each to the worker with the least ``cost`` so
    far (ties: the lowest index): longest-processing-time scheduling (Graham 1969), whose
    slowest shard is within 4/3 of the best possible. Every run goes to exactly one worker, and
    every worker computes the same assignment from the same sweep. With equal costs run ``k``
    goes to worker ``k mod count``."""
    costs = [cost(spec) for spec in specs]
    loads, owner = [0.0] * count, {}
    for k in sorted(range(len(specs)), key=lambda k: -costs[k]):  # stable: ties keep the sweep's order
        worker = min(range(count), key=loads.__getitem__)
        owner[k], loads[worker] = worker, loads[worker] + costs[k]
    return [spec for k, spec in enumerate(specs) if owner[k] == index]


def select(specs: list, only: Optional[str]) -> list:
    """The runs that ``only`` names, in the sweep's order: comma-separated items, each a row
    (``fire_no_log``: every run of the row), a row and a seed (``fire_no_log:1``), or a run
    name or a glob of names (``fire/tiny_L512_*``). None or empty: every run.

    Raises:
      SweepError: an item that names no run (with the nearest rows).
    """
    if not only:
        return list(specs)
    chosen = set()
    for item in filter(None, (x.strip() for x in only.split(","))):
        row, sep, seed = item.partition(":")
        if sep:
            if not seed.isdigit():
                raise SweepError(f"--only={item}: after ':' comes a seed (an integer), got {seed!r}.")
            hits = [s.name for s in specs if s.row == row and s.seed == int(seed)]
        else:
            hits = [s.name for s in specs if s.row == item or fnmatch.fnmatchcase(s.name, item)]
        if not hits:
            rows = list(dict.fromkeys(s.row for s in specs))
            example = f", e.g. {specs[0].name}" if specs else ""
            raise SweepError(
                f"--only={item} names no run of the sweep.{did_you_mean(row, rows)} Rows: {', '.join(rows)} (an "
                f"evaluation-time variant is selected by the row it is evaluated on); an item is ROW, ROW:SEED or "
                f"a run name (glob){example}."
            )
        chosen.update(hits)
    return [s for s in specs if s.name in chosen]
