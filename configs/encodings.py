"""One small function per position encoding: its config block for a training length.

Each starts from the module's own defaults (``fire.encodings.encoding_options``) and sets
what depends on the run. Every field is overridable as ``--config.encoding.NAME=VALUE``.
Used by ``configs/lm.py``; not a config file of its own.
"""

import ml_collections

from fire.encodings import encoding_options


def _defaults(name, **overrides):
    return ml_collections.ConfigDict({**encoding_options(name), **overrides})


def nope(train_len):
    return _defaults("nope")


def learned(train_len):
    return _defaults("learned", max_len=train_len)  # the table covers the training length


def sinusoidal(train_len):
    return _defaults("sinusoidal")


def rope(train_len):
    return _defaults("rope")


def rope_pi(train_len):
    return _defaults("rope_pi")  # scale 0: chosen at eval time from train_len and eval_len


def yarn(train_len):
    return _defaults("yarn")  # s = eval_len / train_len at eval time


def t5(train_len):
    return _defaults("t5")  # 32 buckets to distance 128, shared by layers as in T5


def alibi(train_len):
    return _defaults("alibi")


def kerple_log(train_len):
    return _defaults("kerple_log")


def kerple_power(train_len):
    return _defaults("kerple_power")


def sandwich(train_len):
    return _defaults("sandwich")


def fire(train_len):
    # The paper's listing fixes L0 = 512; we start the threshold at the training length
    # (the same for runs at 512), so short-length runs are not normalised by an L never seen.
    return _defaults("fire", L0=float(train_len))


def fire_s(train_len):
    return _defaults("fire_s", L0=float(train_len))


BY_NAME = {
    f.__name__: f
    for f in (
        nope,
        learned,
        sinusoidal,
        rope,
        rope_pi,
        yarn,
        t5,
        alibi,
        kerple_log,
        kerple_power,
        sandwich,
        fire,
        fire_s,
    )
}
