"""The run config: one ml_collections ConfigDict that says everything about a training run.

Every key is declared once, in the tables below (one per block, :class:`fire.keys.Key`: its
default, its meaning and the values it accepts): :func:`from_axes` builds the config from
their defaults for the sweep axes (``pe``, ``size``, ``train_len``, ``data``, ``task`` and the
bare flag ``smoke``), as ``configs/lm.py:pe=fire,size=small`` does on the command line;
:func:`explain` (``--print_config``) prints their meanings; :func:`check` checks a config
against them. Every key is overridable as ``--config.a.b=value``.

The ``encoding`` block holds the encoding's own options: its class's fields, their comments
and types (``fire.encodings.option_keys``). Defaults that depend on the run (FIRE's ``L0``,
``learned``'s ``max_len``) are 0 there and resolve to the final ``train_len`` however it was
set. The ``task`` block (:func:`task_keys`) holds a task run's curriculum and the task's own
options (``fire.tasks.option_keys``); a language-modelling run's holds the empty name.
"""

import dataclasses
import os
import re

import ml_collections

from fire import keys
from fire import tasks as fire_tasks
from fire.data.config import DATA
from fire.encodings import REGISTRY, option_keys, resolved_options
from fire.errors import ConfigError
from fire.keys import Boolean, Choice, Integer, Key, Number, Text
from fire.model import DTYPES, IMPLEMENTATIONS, SIZES
from fire.utils import did_you_mean

DEFAULT_SPAN = 16  # randomized training positions' max_position 0: this many times train_len
# train_len's default "512" is for language modelling; a task run's is its longest example.
AXES = {"pe": "fire", "size": "tiny", "train_len": "512", "data": "shakespeare", "task": "", "smoke": None}

# Per-size optimisation defaults: (global batch in sequences, peak learning rate).
OPTIMISATION = {"tiny": (16, 2e-3), "small": (8, 1e-3), "base": (256, 3e-4), "large": (256, 2e-4)}
SCHEDULES = ("cosine", "linear", "constant")  # the decay after warmup (fire.training.optim)


def axis(name: str):
    """A default that is the sweep axis ``name``."""
    return lambda axes: axes[name]


def of_size(table: dict, index: int):
    """A default read from ``table[size][index]`` for the size axis."""
    return lambda axes: table[axes["size"]][index]


MODEL = {
    "num_layers": Key(of_size(SIZES, 0), "decoder blocks", Integer(1)),
    "d_model": Key(of_size(SIZES, 1), "residual width", Integer(1)),
    "num_heads": Key(of_size(SIZES, 2), "attention heads", Integer(1)),
    "d_ff": Key(of_size(SIZES, 3), "MLP hidden width", Integer(1)),
    "head_dim": Key(0, "width per head; 0: d_model / num_heads", Integer(0)),
    "tie_embeddings": Key(False, "the output layer shares the input embedding table", Boolean()),
    "dtype": Key("float32", "compute dtype; parameters stay float32", Choice(DTYPES)),
    "attention": Key("dense", "attention path in training", Choice(IMPLEMENTATIONS)),
    "block_size": Key(512, "blockwise attention tile in tokens", Integer(1)),
    "vocab_multiple": Key(64, "vocabulary padded to a multiple of this; 0: no padding", Integer(0)),
}

# Randomized positions (Ruoss et al. 2023; fire/training/positions.py): each training
# window's position ids are a sorted random sample of train_len ids from [0, max_position)
# instead of 0..train_len-1. Evaluation is unaffected.
TRAIN_POSITIONS = {
    "randomize": Key(False, "randomized training positions (Ruoss et al. 2023)", Boolean()),
    "max_position": Key(0, "exclusive upper bound of the randomized ids; 0: 16 x train_len", Integer(0)),
}

OPTIMIZER = {
    "lr": Key(of_size(OPTIMISATION, 1), "peak learning rate (AdamW)", Number(0, open_low=True)),
    "warmup_steps": Key(100, "steps of linear warmup from 0", Integer(0)),
    "schedule": Key("cosine", "the decay after warmup", Choice(SCHEDULES)),
    "min_lr_ratio": Key(0.1, "the final learning rate as a fraction of the peak", Number(0, 1)),
    "decay_steps": Key(0, "the step where the schedule reaches its final rate, held after; 0: num_steps", Integer(0)),
    "b1": Key(0.9, "AdamW beta1", Number(0, 1, open_high=True)),
    "b2": Key(0.95, "AdamW beta2", Number(0, 1, open_high=True)),
    "eps": Key(1e-8, "AdamW epsilon", Number(0, open_low=True)),
    "weight_decay": Key(0.1, "decoupled weight decay, of weight matrices only (not encodings)", Number(0)),
    "clip_norm": Key(1.0, "global gradient-norm clip", Number(0, open_low=True)),
}

# Device mesh: axis sizes, -1 fills with what is left. Parameters are sharded by the
# logical-axis rules in fire/training/sharding.py.
MESH = {
    "data": Key(-1, "data-parallel devices; -1: fill with what is left", Integer(1, special=-1)),
    "fsdp": Key(1, "devices sharding parameters and optimizer state along embed", Integer(1, special=-1)),
    "tensor": Key(1, "devices splitting heads, MLP and vocabulary", Integer(1, special=-1)),
}

RUN = {
    "name": Key(
        "", "the run's label in tables and figures; '': the encoding and what differs from its defaults", Text()
    ),
    "seed": Key(0, "model initialisation, and the data order unless data_seed is set", Integer(0)),
    "data_seed": Key(-1, "the training stream's order and randomized positions; -1: the same as seed", Integer(-1)),
    "pe": Key(axis("pe"), "position encoding, an axis: configs/lm.py:pe=NAME", Choice(REGISTRY)),
    "size": Key(axis("size"), "the model size the model block was filled from, an axis", Choice(SIZES)),
    "train_len": Key(axis("train_len"), "training window in tokens, an axis", Integer(2)),
    "model": MODEL,
    "encoding": {},  # the encoding's options: see declarations()
    "data": {**DATA, "name": dataclasses.replace(DATA["name"], default=axis("data"))},
    "task": {},  # the task's block: see task_keys()
    "batch_size": Key(of_size(OPTIMISATION, 0), "global batch in sequences of train_len tokens", Integer(1)),
    "grad_accum_steps": Key(1, "micro-batches per step; batch_size must divide by it", Integer(1)),
    "train_positions": TRAIN_POSITIONS,
    "num_steps": Key(2000, "training steps: where the run stops", Integer(1)),
    "optimizer": OPTIMIZER,
    "log_every": Key(20, "steps between progress lines and metrics", Integer(1)),
    "eval_every": Key(500, "steps between validations at train_len; 0: only at the end", Integer(0)),
    "eval_tokens": Key(32768, "tokens scored per validation", Integer(1)),
    "checkpoint_every": Key(500, "steps between checkpoints", Integer(1)),
    "keep_checkpoints": Key(2, "checkpoints kept, the newest; one more while training", Integer(1)),
    "init_from": Key("", "a workdir to take weights from (weights only) when starting fresh", Text()),
    "mesh": MESH,
    # 450e9: a 2-core CPU's practical float32 matmul peak.
    "peak_flops": Key(450e9, "per-device peak FLOP/s, for MFU", Number(0, open_low=True)),
}


class _TaskNames:
    """'' and the registered tasks, read when checked (a test may register one meanwhile)."""

    def __contains__(self, name) -> bool:
        return name == "" or name in fire_tasks.REGISTRY

    def __iter__(self):
        return iter(("''", *fire_tasks.REGISTRY))


TASK_NAME = Key(axis("task"), "the task trained on, an axis: configs/lm.py:task=NAME; '': language modelling on data",
                Choice(_TaskNames()))  # fmt: skip
VALIDATION_EXAMPLES = 256


def task_keys(name: str) -> dict:
    """The ``task`` block of a run on task ``name`` (``''``: language modelling, the name
    alone): the curriculum's range, the validation set's size and the task's own options.
    Raises TaskError for an unknown task."""
    if not name:
        return {"name": TASK_NAME}
    task = fire_tasks.build_task(name)
    low, high = task.training_lengths()
    unit = task.length_unit
    return {
        "name": TASK_NAME,
        "min_len": Key(low, f"the shortest training example, in {unit} (lengths uniform in [min_len, max_len])",
                       Integer(1)),
        "max_len": Key(high, f"the longest training example, in {unit}", Integer(1)),
        "eval_examples": Key(VALIDATION_EXAMPLES, "test examples per validation, spread over [min_len, max_len]",
                             Integer(1)),
        **fire_tasks.option_keys(name),
    }  # fmt: skip


def declarations(pe: str, task: str = "") -> dict:
    """The run config's tables for the encoding ``pe`` and the task ``task`` (``''``:
    language modelling): :data:`RUN` with the encoding's options as its ``encoding`` block and
    :func:`task_keys` as its ``task`` block. Raises UnknownEncodingError for an unknown ``pe``,
    TaskError for an unknown task."""
    return {**RUN, "encoding": option_keys(pe), "task": task_keys(task)}


def _declared(config) -> dict:
    return declarations(config.pe, config.task.name if is_task_run(config) else "")


def is_task_run(config) -> bool:
    """Whether a run config trains on a task's examples (else: language modelling on data)."""
    block = config.get("task")
    return bool(block is not None and block.get("name"))


def task_of(config) -> "fire_tasks.Task | None":
    """The task a run config trains on, built from its ``task`` block; None for language
    modelling. Raises TaskError for options the task cannot honour."""
    if not is_task_run(config):
        return None
    block = config.task
    own = {k: v for k, v in block.items() if k not in ("name", "min_len", "max_len", "eval_examples")}
    return fire_tasks.build_task(block.name, own)


def tokenizer_of(config):
    """The run's tokenizer: its task's vocabulary, or the data block's tokenizer (built, and
    trained and cached if it is SentencePiece's)."""
    from fire import data as fire_data

    task = task_of(config)
    return task.vocabulary if task is not None else fire_data.get_tokenizer(config.data)


def parse_axes(arg: str) -> dict:
    """``'pe=fire,smoke'`` -> ``{'pe': 'fire', 'smoke': True, ...defaults}``, strictly. With
    a task and no ``train_len``, the training length is the task's longest example at its
    default ``max_len`` (prompt, answer and EOS, less the one token a row adds).

    Raises:
      ConfigError: an unknown axis, encoding or size, a missing value, a training length
        that is not an integer of at least 2, a task with a data axis.
      TaskError: an unknown task (with the nearest names).
    """
    axes = {k: v for k, v in AXES.items() if v is not None}
    axes["smoke"] = False
    given = set()
    for item in filter(None, (s.strip() for s in (arg or "").split(","))):
        key, _, value = item.partition("=")
        given.add(key)
        if key not in AXES:
            raise ConfigError(
                f"Unknown config axis {key!r}.{did_you_mean(key, AXES, 2)} Valid axes: {', '.join(AXES)}."
            )
        if key == "smoke":
            if value:
                raise ConfigError("'smoke' is a bare flag: write ...:pe=fire,smoke")
            axes["smoke"] = True
        elif not value:
            raise ConfigError(f"Config axis {key!r} needs a value: {key}=VALUE.")
        else:
            axes[key] = value
    if axes["pe"] not in REGISTRY:
        raise ConfigError(
            f"Unknown position encoding pe={axes['pe']}.{did_you_mean(axes['pe'], REGISTRY)} "
            f"Valid: {', '.join(REGISTRY)}."
        )
    if axes["task"]:
        fire_tasks.lookup(axes["task"])  # an unknown task, with the nearest names
        if axes["data"] != AXES["data"]:
            raise ConfigError(f"task={axes['task']} trains on its own examples, not on data={axes['data']}: give one.")
    if axes["size"] not in SIZES:
        raise ConfigError(f"Unknown model size size={axes['size']}; valid: {', '.join(SIZES)}.")
    try:
        axes["train_len"] = int(axes["train_len"])
    except ValueError:
        raise ConfigError(f"train_len must be an integer, got {axes['train_len']!r}.") from None
    if axes["task"] and "train_len" not in given:
        task = fire_tasks.build_task(axes["task"])
        axes["train_len"] = task.max_tokens(task.training_lengths()[1]) - 1
    if axes["train_len"] < 2:
        raise ConfigError(f"train_len must be at least 2, got {axes['train_len']}.")
    return axes


def from_axes(arg: str = "", lock: bool = True) -> ml_collections.ConfigDict:
    """The run config for the sweep axes in ``arg`` (see :func:`parse_axes`): every key's
    declared default, then ``smoke``'s values if asked."""
    axes = parse_axes(arg)
    c = ml_collections.ConfigDict(keys.defaults(declarations(axes["pe"], axes["task"]), axes))
    if axes["smoke"]:
        apply_smoke(c)
    if lock:
        c.lock()
    return c


def check(config) -> None:
    """Every value of a run config against its key's declaration, however it was set
    (``--config.train_len=-5`` bypasses :func:`parse_axes`), in the tables' order. The
    encoding block may hold only its encoding's options.

    Raises:
      ConfigError: the first value its key does not accept, naming the key, what it
        accepts and what the key means.
      UnknownEncodingError: an unknown ``pe`` or encoding option.
      TaskError: an unknown task or task option.
    """
    resolved_options(config.pe, config.encoding)
    keys.check(config, _declared(config))


def data_seed(config) -> int:
    """The seed of the training stream's order and randomized positions: ``data_seed``, or
    ``seed`` where it is -1."""
    return config.seed if config.data_seed == -1 else config.data_seed


def max_position(config) -> int:
    """The exclusive upper bound of the run's training position ids: ``train_len``, or the
    randomized ``max_position`` (0: ``16 x train_len``).

    Raises:
      ConfigError: a randomized ``max_position`` below ``train_len`` (or negative).
    """
    options = config.train_positions
    if not options.randomize:
        return config.train_len
    bound = options.max_position or DEFAULT_SPAN * config.train_len
    if bound < config.train_len:
        raise ConfigError(
            f"train_positions.max_position {options.max_position} is below train_len {config.train_len}: "
            f"a window needs {config.train_len} distinct ids. Set --config.train_positions.max_position to at "
            f"least {config.train_len}, or 0 for {DEFAULT_SPAN} x train_len."
        )
    return bound


def set_dotted(config: ml_collections.ConfigDict, key: str, value) -> None:
    """``config[a][b][c] = value`` for ``key = 'a.b.c'``, as ``--config.a.b.c=value`` does.

    Raises KeyError for a missing parent, and whatever the ConfigDict raises for a value of
    the wrong type (TypeError, ValueError)."""
    *parents, leaf = key.split(".")
    target = config
    for parent in parents:
        target = target[parent]
    target[leaf] = value


def apply_smoke(c: ml_collections.ConfigDict) -> None:
    """A few dozen steps of a micro model: exercises every code path in seconds."""
    c.model.update(num_layers=2, d_model=64, num_heads=4, d_ff=128)
    if not c.task.name:  # a task run's length is its longest example's
        c.train_len = min(c.train_len, 64)
    c.batch_size = 4
    c.num_steps = 30
    c.optimizer.warmup_steps = 5
    c.log_every = 5
    c.eval_every = 15
    c.eval_tokens = 2048
    c.checkpoint_every = 10


def explain(config: ml_collections.ConfigDict) -> str:
    """Every key of ``config`` with its value, meaning and accepted values, one per line, as
    ``--config.KEY=VALUE`` would set it (keys a config file added itself: the value alone)."""
    declared = keys.flatten(_declared(config))
    lines = []

    def walk(node, prefix=""):
        for name, value in node.items():
            path = f"{prefix}{name}"
            if isinstance(value, ml_collections.ConfigDict):
                walk(value, path + ".")
            else:
                key = declared.get(path)
                lines.append((path, repr(value), f"{key.meaning} [{key.values}]" if key else ""))

    walk(config)
    width = max(len(p) + len(v) + 3 for p, v, _ in lines)
    return "\n".join(f"{f'{p} = {v}':<{width}}  # {m}" if m else f"{p} = {v}" for p, v, m in lines)


# ---------------------------------------------------------------- --config. keys on the command line

_OVERRIDE = re.compile(r"^--?(no)?config\.([^=]+)(?:=(.*))?$", re.S)


def command_line_config(argv) -> tuple:
    """``(spec, overrides)`` of a command line: the ``--config=FILE[:AXES]`` value (None if
    absent) and its ``--config.KEY=VALUE`` overrides as ``(KEY, VALUE)``, in order (VALUE None
    for a bare ``--config.KEY`` or ``--noconfig.KEY``)."""
    spec, overrides = None, []
    args = list(argv[1:])
    for i, arg in enumerate(args):
        if arg == "--":
            break
        if arg.startswith(("--config=", "-config=")):
            spec = arg.split("=", 1)[1]
        elif arg in ("--config", "-config") and i + 1 < len(args):
            spec = args[i + 1]
        elif match := _OVERRIDE.match(arg):
            overrides.append((match.group(2), None if match.group(1) else match.group(3)))
    return spec, overrides


def check_keys(config: ml_collections.ConfigDict, names) -> None:
    """Raises ConfigError for the first of ``names`` (dotted paths) that ``config`` does not
    have, naming the nearest valid keys (:func:`fire.keys.nearest_keys`)."""
    valid = _leaf_keys(config)
    for name in names:
        if name.startswith("task.") and not config.task.name:
            raise ConfigError(
                f"--config.{name} is a task option, and this run trains no task: give one in the axes "
                f"(configs/lm.py:task=NAME; tasks: {', '.join(fire_tasks.REGISTRY)})."
            )
        node = config
        for part in name.split("."):
            if not isinstance(node, ml_collections.ConfigDict) or part not in node:
                raise ConfigError(
                    f"Unknown config key --config.{name}.{keys.suggest(name, valid)} (--print_config lists every key "
                    f"with its meaning.)"
                )
            node = node[part]


def _leaf_keys(config, prefix: str = "") -> list:
    found = []
    for name, value in config.items():
        is_block = isinstance(value, ml_collections.ConfigDict)
        found += _leaf_keys(value, f"{prefix}{name}.") if is_block else [f"{prefix}{name}"]
    return found


def check_override_values(config: ml_collections.ConfigDict, overrides) -> None:
    """Raises ConfigError for the first ``(KEY, VALUE)`` override whose text cannot be a value
    of its declared key (``maybe`` for a boolean, ``abc`` for an integer), naming the key and
    what it accepts; whether the value is in bounds is :func:`check`'s to say."""
    declared = keys.flatten(_declared(config)) if config.get("pe") in REGISTRY else {}
    for name, text in overrides:
        key = declared.get(name)
        if key is None or text is None:
            continue
        try:
            key.values.parse(text)
        except ValueError:
            raise ConfigError(key.problem(f"--config.{name}", text)) from None


def check_command_line(argv) -> None:
    """What absl would report as a traceback or a raw tuple, checked before it parses ``argv``:
    a config file that does not exist, ``--config.`` keys the config does not have (with the
    nearest names), values that cannot be of their key's type.

    Raises:
      ConfigError: one line.
    """
    spec, overrides = command_line_config(argv)
    if spec is None:
        return
    path = spec.split(":", 1)[0]
    if not os.path.isfile(path):
        raise ConfigError(f"The config file {path} does not exist (--config={spec}).")
    try:
        with open(path, "rb") as f:
            compile(f.read(), path, "exec")
    except (SyntaxError, ValueError) as e:  # ValueError: null bytes, i.e. not a text file
        raise ConfigError(f"The config file {path} is not a Python file: {e}.") from None
    if overrides:
        from ml_collections.config_flags.config_flags import ConfigFileFlagParser

        config = ConfigFileFlagParser("config").parse(spec)
        check_keys(config, [name for name, _ in overrides])
        check_override_values(config, overrides)
