"""The run config: one ml_collections ConfigDict that says everything about a training run.

:func:`from_axes` builds it from the sweep axes (``pe``, ``size``, ``train_len``, ``data``
and the bare flag ``smoke``), as ``configs/lm.py:pe=fire,size=small`` does on the command
line; every other field is overridable as ``--config.a.b=value``. The encoding block holds
the encoding's own options with their defaults (``fire.encodings.encoding_options``);
defaults that depend on the run (FIRE's ``L0``, ``learned``'s ``max_len``) are 0 there and
resolve to the final ``train_len`` however it was set.
"""

import difflib
import os
import re

import ml_collections

from fire.data import default_config as data_config
from fire.encodings import REGISTRY, encoding_options
from fire.errors import ConfigError
from fire.model import SIZES
from fire.utils import did_you_mean

AXES = {"pe": "fire", "size": "tiny", "train_len": "512", "data": "shakespeare", "smoke": None}

# Per-size optimisation defaults: (global batch in sequences, peak learning rate).
OPTIMISATION = {"tiny": (16, 2e-3), "small": (8, 1e-3), "base": (256, 3e-4), "large": (256, 2e-4)}


def parse_axes(arg: str) -> dict:
    """``'pe=fire,smoke'`` -> ``{'pe': 'fire', 'smoke': True, ...defaults}``, strictly.

    Raises:
      ConfigError: an unknown axis, encoding or size, a missing value, or a training length
        that is not an integer of at least 2.
    """
    axes = {k: v for k, v in AXES.items() if v is not None}
    axes["smoke"] = False
    for item in filter(None, (s.strip() for s in (arg or "").split(","))):
        key, _, value = item.partition("=")
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
    if axes["size"] not in SIZES:
        raise ConfigError(f"Unknown model size size={axes['size']}; valid: {', '.join(SIZES)}.")
    try:
        axes["train_len"] = int(axes["train_len"])
    except ValueError:
        raise ConfigError(f"train_len must be an integer, got {axes['train_len']!r}.") from None
    if axes["train_len"] < 2:
        raise ConfigError(f"train_len must be at least 2, got {axes['train_len']}.")
    return axes


def check(config) -> None:
    """The config's own axes, however they were set (``--config.train_len=-5`` bypasses
    :func:`parse_axes`): an encoding and size that exist, a training length of at least 2.

    Raises:
      ConfigError: naming the field and what it accepts.
    """
    if config.pe not in REGISTRY:
        raise ConfigError(
            f"Unknown position encoding pe={config.pe}.{did_you_mean(str(config.pe), REGISTRY)} "
            f"Valid: {', '.join(REGISTRY)}."
        )
    if config.size not in SIZES:
        raise ConfigError(f"Unknown model size size={config.size}; valid: {', '.join(SIZES)}.")
    if not isinstance(config.train_len, int) or config.train_len < 2:
        raise ConfigError(f"train_len must be an integer of at least 2, got {config.train_len!r}.")


def from_axes(arg: str = "", lock: bool = True) -> ml_collections.ConfigDict:
    """The run config for the sweep axes in ``arg`` (see :func:`parse_axes`)."""
    axes = parse_axes(arg)
    pe, size, train_len = axes["pe"], axes["size"], axes["train_len"]
    num_layers, d_model, num_heads, d_ff = SIZES[size]
    batch, lr = OPTIMISATION[size]

    c = ml_collections.ConfigDict()
    c.name = ""  # the run's label in tables and figures; '': the encoding and what differs from its defaults
    c.seed = 0  # model initialisation (and the data order unless data_seed is set)
    c.data_seed = -1  # the training stream's order and randomized positions; -1: the same as seed
    c.pe = pe
    c.size = size
    c.train_len = train_len
    c.model = dict(
        num_layers=num_layers, d_model=d_model, num_heads=num_heads, d_ff=d_ff, head_dim=0, tie_embeddings=False,
        dtype="float32", attention="dense", block_size=512,
        vocab_multiple=64,  # vocab padded to a multiple of this (0: no padding)
    )  # fmt: skip
    c.encoding = encoding_options(pe)
    c.data = data_config()
    c.data.name = axes["data"]

    c.batch_size = batch  # global, in sequences of train_len tokens
    c.grad_accum_steps = 1  # micro-batches per step; batch_size must divide by it
    # Randomized positions (Ruoss et al. 2023; fire/training/positions.py): each training
    # window's position ids are a sorted random sample of train_len ids from [0, max_position)
    # instead of 0..train_len-1. max_position 0: 16 x train_len. Evaluation is unaffected.
    c.train_positions = dict(randomize=False, max_position=0)
    c.num_steps = 2000
    c.optimizer = dict(
        lr=lr, warmup_steps=100, schedule="cosine", min_lr_ratio=0.1,
        decay_steps=0,  # where the schedule reaches its final rate, held after; 0: num_steps
        b1=0.9, b2=0.95, eps=1e-8, weight_decay=0.1, clip_norm=1.0,
    )  # fmt: skip

    c.log_every = 20
    c.eval_every = 500  # validation loss at train_len; 0: only at the end
    c.eval_tokens = 32768  # tokens scored per validation
    c.checkpoint_every = 500
    c.keep_checkpoints = 2
    c.init_from = ""  # a workdir to take weights from (weights only) when starting fresh

    # Device mesh: axis sizes, -1 fills with what is left. Parameters are sharded by the
    # logical-axis rules in fire/training/sharding.py.
    c.mesh = dict(data=-1, fsdp=1, tensor=1)
    c.peak_flops = 450e9  # per device, for MFU (a 2-core CPU's practical fp32 matmul peak)

    if axes["smoke"]:
        apply_smoke(c)
    if lock:
        c.lock()
    return c


def data_seed(config) -> int:
    """The seed of the training stream's order and randomized positions: ``data_seed``, or
    ``seed`` where it is -1."""
    return config.seed if config.data_seed == -1 else config.data_seed


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
    c.train_len = min(c.train_len, 64)
    c.batch_size = 4
    c.num_steps = 30
    c.optimizer.warmup_steps = 5
    c.log_every = 5
    c.eval_every = 15
    c.eval_tokens = 2048
    c.checkpoint_every = 10


# What each key means, for `train.py --print_config` (encoding options: their class's field comments).
HELP = {
    "name": "the run's label in tables and figures; '': the encoding and what differs from its defaults",
    "seed": "model initialisation (and the data order unless data_seed is set)",
    "data_seed": "the training stream's order and randomized positions; -1: the same as seed",
    "pe": "position encoding (an axis: configs/lm.py:pe=NAME)",
    "size": "model size the model block was filled from (an axis)",
    "train_len": "training window in tokens (an axis)",
    "model.num_layers": "decoder blocks",
    "model.d_model": "residual width",
    "model.num_heads": "attention heads",
    "model.d_ff": "MLP hidden width",
    "model.head_dim": "width per head; 0: d_model / num_heads",
    "model.tie_embeddings": "output layer shares the input embedding table",
    "model.dtype": "compute dtype: float32 or bfloat16 (parameters stay float32)",
    "model.attention": "attention path in training: dense or blockwise",
    "model.block_size": "blockwise attention tile in tokens",
    "model.vocab_multiple": "vocabulary padded to a multiple of this (0: no padding)",
    "data.name": "shakespeare, text_dir, or a TFDS catalog name such as c4/en:3.1.0",
    "data.path": "the folder of *.txt files for name=text_dir",
    "data.data_dir": "prepared data; '': $FIRE_DATA_DIR or ~/.cache/fire_data (TFDS's own for catalog names)",
    "data.train_split": "TFDS split string of the training data ('train[:10%]' works)",
    "data.eval_split": "TFDS split string of the validation data",
    "data.text_key": "the TFDS feature holding the document text",
    "data.tokenizer": "bytes or sentencepiece",
    "data.spm_model": "a SentencePiece model file; '': train one on train_split and cache it",
    "data.spm_vocab_size": "vocabulary of a SentencePiece model trained here",
    "data.num_workers": "grain worker processes for the training stream (0: threads only)",
    "batch_size": "global batch in sequences of train_len tokens",
    "grad_accum_steps": "micro-batches per step; batch_size must divide by it",
    "train_positions.randomize": "randomized training positions (Ruoss et al. 2023)",
    "train_positions.max_position": "their exclusive upper bound; 0: 16 x train_len",
    "num_steps": "training steps",
    "optimizer.lr": "peak learning rate (AdamW)",
    "optimizer.warmup_steps": "linear warmup from 0",
    "optimizer.schedule": "decay after warmup: cosine, linear or constant",
    "optimizer.min_lr_ratio": "final learning rate as a fraction of the peak",
    "optimizer.decay_steps": "the step where the schedule reaches its final rate, held after; 0: num_steps",
    "optimizer.b1": "AdamW beta1",
    "optimizer.b2": "AdamW beta2",
    "optimizer.eps": "AdamW epsilon",
    "optimizer.weight_decay": "decoupled weight decay (weight matrices only, not encodings)",
    "optimizer.clip_norm": "global gradient-norm clip",
    "log_every": "steps between progress lines and metrics",
    "eval_every": "steps between validations at train_len; 0: only at the end",
    "eval_tokens": "tokens scored per validation",
    "checkpoint_every": "steps between checkpoints",
    "keep_checkpoints": "checkpoints kept (the newest)",
    "init_from": "a workdir to take weights from (weights only) when starting fresh",
    "mesh.data": "data-parallel devices; -1: fill with what is left",
    "mesh.fsdp": "devices sharding parameters and optimizer state along embed",
    "mesh.tensor": "devices splitting heads, MLP and vocabulary",
    "peak_flops": "per-device peak FLOP/s for MFU",
}


def explain(config: ml_collections.ConfigDict) -> str:
    """Every key of ``config`` with its value and meaning, one per line, as
    ``--config.KEY=VALUE`` would set it."""
    from fire.encodings import encoding_class

    encoding_help = encoding_class(config.pe).option_help()
    lines = []

    def walk(node, prefix=""):
        for key, value in node.items():
            path = f"{prefix}{key}"
            if isinstance(value, ml_collections.ConfigDict):
                walk(value, path + ".")
                continue
            meaning = HELP.get(path) or (encoding_help.get(key, "") if prefix == "encoding." else "")
            lines.append((path, repr(value), meaning))

    walk(config)
    width = max(len(p) + len(v) + 3 for p, v, _ in lines)
    return "\n".join(f"{f'{p} = {v}':<{width}}  # {m}" if m else f"{p} = {v}" for p, v, m in lines)


# ---------------------------------------------------------------- --config. keys on the command line

_OVERRIDE = re.compile(r"^--?(?:no)?config\.([^=]+)")


def command_line_config(argv) -> tuple:
    """``(spec, keys)`` of a command line: the ``--config=FILE[:AXES]`` value (None if absent)
    and the keys of its ``--config.KEY=VALUE`` overrides, in order."""
    spec, keys = None, []
    args = list(argv[1:])
    for i, arg in enumerate(args):
        if arg == "--":
            break
        if arg.startswith(("--config=", "-config=")):
            spec = arg.split("=", 1)[1]
        elif arg in ("--config", "-config") and i + 1 < len(args):
            spec = args[i + 1]
        elif match := _OVERRIDE.match(arg):
            keys.append(match.group(1))
    return spec, keys


def _similarity(a: str, b: str) -> float:
    """How alike two key names are, in [0, 1]; one a prefix of the other counts as 0.9."""
    if min(len(a), len(b)) >= 3 and (a.startswith(b) or b.startswith(a)):
        return 0.9
    return difflib.SequenceMatcher(None, a, b).ratio()


def nearest_keys(key: str, valid, n: int = 3) -> list:
    """The valid keys a mistyped ``key`` most likely meant: abbreviations (``learning_rate``
    -> ``lr``), the same name in another group (``lr`` -> ``optimizer.lr``), then close
    spellings of its name, its own group first."""
    leaf_of = lambda k: k.rsplit(".", 1)[-1]
    initials = lambda name: "".join(w[0] for w in name.split("_") if w)
    leaf, parent = leaf_of(key), key.rpartition(".")[0]
    found = [
        v for v in valid
        if len(initials(leaf)) > 1 and initials(leaf) == leaf_of(v)
        or len(initials(leaf_of(v))) > 1 and initials(leaf_of(v)) == leaf
    ]  # fmt: skip
    found += [v for v in valid if leaf_of(v) == leaf]
    close = sorted(valid, key=lambda v: (v.rpartition(".")[0] != parent, -_similarity(leaf, leaf_of(v))))
    found += [v for v in close if _similarity(leaf, leaf_of(v)) >= 0.7]
    return list(dict.fromkeys(found))[:n]


def check_keys(config: ml_collections.ConfigDict, keys) -> None:
    """Raises ConfigError for the first of ``keys`` (dotted paths) that ``config`` does not
    have, naming the nearest valid keys."""
    valid = _leaf_keys(config)
    for key in keys:
        node = config
        for i, part in enumerate(key.split(".")):
            if not isinstance(node, ml_collections.ConfigDict) or part not in node:
                hint = nearest_keys(key, valid)
                hint = f" Did you mean {', '.join(hint)}?" if hint else ""
                raise ConfigError(
                    f"Unknown config key --config.{key}.{hint} (--print_config lists every key with its meaning.)"
                )
            node = node[part]


def _leaf_keys(config, prefix: str = "") -> list:
    keys = []
    for k, v in config.items():
        keys += _leaf_keys(v, f"{prefix}{k}.") if isinstance(v, ml_collections.ConfigDict) else [f"{prefix}{k}"]
    return keys


def check_command_line(argv) -> None:
    """What absl would report as a traceback, checked before it parses ``argv``: a config file
    that does not exist, ``--config.`` keys the config does not have (with the nearest names).

    Raises:
      ConfigError: one line.
    """
    spec, keys = command_line_config(argv)
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
    if keys:
        from ml_collections.config_flags.config_flags import ConfigFileFlagParser

        check_keys(ConfigFileFlagParser("config").parse(spec), keys)
