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
with the nearest valid names. Every key is declared once in ``fire/config.py`` (its default,
meaning and accepted values; an encoding's options are its class's fields); ``train.py
--config=configs/lm.py --print_config`` lists them.
"""

from fire.config import AXES, apply_smoke, from_axes, parse_axes

__all__ = ["AXES", "apply_smoke", "get_config", "parse_axes"]


def get_config(arg: str = ""):
    return from_axes(arg)
