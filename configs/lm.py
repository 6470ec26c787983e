"""Decoder-only LM with a chosen position encoding.

    python train.py --config=configs/lm.py:pe=fire,size=tiny,train_len=512 --workdir=runs/fire_512

Sweep axes after the colon (comma-separated ``key=value``; ``smoke`` alone is a flag):
  pe         position encoding: nope learned sinusoidal rope rope_pi yarn t5 alibi
             kerple_log kerple_power sandwich fire fire_s           (default fire)
  size       tiny small base large                                    (default tiny)
  train_len  training window in tokens                                (default 512)
  data       shakespeare, text_dir, or a TFDS name such as c4/en:3.1.0 (default shakespeare)
  smoke      a run of a few dozen steps on a micro model with frequent checkpoints, for
             checks and CI (well under a minute on a CPU)
Everything else: ``--config.a.b=value`` (e.g. ``--config.optimizer.lr=3e-4``,
``--config.encoding.log_transform=False``). The config is locked: a misspelled key fails
with the nearest valid names.
"""

import difflib

import ml_collections

from configs.encodings import BY_NAME as ENCODING_CONFIGS
from fire.data import default_config as data_config
from fire.model import SIZES

AXES = {"pe": "fire", "size": "tiny", "train_len": "512", "data": "shakespeare", "smoke": None}

# Per-size optimisation defaults: (global batch in sequences, peak learning rate).
OPTIMISATION = {"tiny": (16, 2e-3), "small": (8, 1e-3), "base": (256, 3e-4), "large": (256, 2e-4)}


def parse_axes(arg: str) -> dict:
    """``'pe=fire,smoke'`` -> ``{'pe': 'fire', 'smoke': True, ...defaults}``, strictly."""
    axes = {k: v for k, v in AXES.items() if v is not None}
    axes["smoke"] = False
    for item in filter(None, (s.strip() for s in (arg or "").split(","))):
        key, _, value = item.partition("=")
        if key not in AXES:
            close = difflib.get_close_matches(key, AXES, n=2)
            hint = f" Did you mean {' or '.join(close)}?" if close else ""
            raise ValueError(f"Unknown config axis {key!r}.{hint} Valid axes: {', '.join(AXES)}.")
        if key == "smoke":
            if value:
                raise ValueError("'smoke' is a bare flag: write ...:pe=fire,smoke")
            axes["smoke"] = True
        elif not value:
            raise ValueError(f"Config axis {key!r} needs a value: {key}=VALUE.")
        else:
            axes[key] = value
    if axes["pe"] not in ENCODING_CONFIGS:
        close = difflib.get_close_matches(axes["pe"], ENCODING_CONFIGS, n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ValueError(f"Unknown position encoding pe={axes['pe']}.{hint} Valid: {', '.join(ENCODING_CONFIGS)}.")
    if axes["size"] not in SIZES:
        raise ValueError(f"Unknown model size size={axes['size']}; valid: {', '.join(SIZES)}.")
    try:
        axes["train_len"] = int(axes["train_len"])
    except ValueError:
        raise ValueError(f"train_len must be an integer, got {axes['train_len']!r}.") from None
    if axes["train_len"] < 2:
        raise ValueError(f"train_len must be at least 2, got {axes['train_len']}.")
    return axes


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    axes = parse_axes(arg)
    pe, size, train_len = axes["pe"], axes["size"], axes["train_len"]
    num_layers, d_model, num_heads, d_ff = SIZES[size]
    batch, lr = OPTIMISATION[size]

    c = ml_collections.ConfigDict()
    c.seed = 0
    c.pe = pe
    c.size = size
    c.train_len = train_len
    c.model = dict(
        num_layers=num_layers,
        d_model=d_model,
        num_heads=num_heads,
        d_ff=d_ff,
        head_dim=0,
        tie_embeddings=False,
        dtype="float32",
        attention="dense",
        block_size=512,
        vocab_multiple=64,
    )  # vocab padded to a multiple of this (0: no padding)
    c.encoding = ENCODING_CONFIGS[pe](train_len)
    c.data = data_config()
    c.data.name = axes["data"]

    c.batch_size = batch  # global, in sequences of train_len tokens
    c.grad_accum_steps = 1  # micro-batches per step; batch_size must divide by it
    c.num_steps = 2000
    c.optimizer = dict(
        lr=lr,
        warmup_steps=100,
        schedule="cosine",
        min_lr_ratio=0.1,
        b1=0.9,
        b2=0.95,
        eps=1e-8,
        weight_decay=0.1,
        clip_norm=1.0,
    )

    c.log_every = 20
    c.eval_every = 500  # validation loss at train_len; 0: only at the end
    c.eval_tokens = 32768  # tokens scored per validation
    c.checkpoint_every = 500
    c.keep_checkpoints = 2
    c.init_from = ""  # a workdir to take weights from (weights only) when starting fresh

    # Device mesh: axis sizes, -1 fills with what is left. Parameters are sharded by the
    # logical-axis rules in fire/sharding.py.
    c.mesh = dict(data=-1, fsdp=1, tensor=1)
    c.peak_flops = 450e9  # per device, for MFU (a 2-core CPU's practical fp32 matmul peak)

    if axes["smoke"]:
        apply_smoke(c)
    c.lock()
    return c


def apply_smoke(c):
    """A few dozen steps of a micro model: exercises every code path in seconds."""
    c.model.update(num_layers=2, d_model=64, num_heads=4, d_ff=128)
    c.train_len = min(c.train_len, 64)
    if "L0" in c.encoding:
        c.encoding.L0 = float(c.train_len)
    if "max_len" in c.encoding:
        c.encoding.max_len = c.train_len
    c.batch_size = 4
    c.num_steps = 30
    c.optimizer.warmup_steps = 5
    c.log_every = 5
    c.eval_every = 15
    c.eval_tokens = 2048
    c.checkpoint_every = 10
    c.data.eval_tokens = 2048
