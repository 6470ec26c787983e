"""AdamW with warmup and decay, gradient clipping, and a weight-decay mask.

No weight decay on norms, biases (vectors in general) or position-encoding parameters:
decaying FIRE's ``c`` and threshold or KERPLE's kernel parameters towards 0 would change
the encoding's shape, not regularise a weight matrix.
"""

from typing import Optional

import jax
import optax

from fire.config import SCHEDULES
from fire.errors import ConfigError

ENCODING_SCOPES = ("encoding", "own_encoding")


def schedule_end(opt_cfg, num_steps: int) -> Optional[int]:
    """The step at which the learning-rate schedule reaches its final rate: ``decay_steps``,
    or ``num_steps`` where it is 0; None where the rate after warmup is the peak whatever the
    end (``schedule='constant'``, or ``min_lr_ratio`` 1). A run holds the final rate from its
    end on, so ``num_steps`` can grow past it without changing the rate of any step already
    trained. ``opt_cfg``: the optimizer block (``schedule``, ``min_lr_ratio``, ``decay_steps``)."""
    if opt_cfg.schedule == "constant" or opt_cfg.min_lr_ratio == 1:
        return None
    return opt_cfg.decay_steps or num_steps


def learning_rate_schedule(opt_cfg, num_steps: int) -> optax.Schedule:
    """Linear warmup from 0 to ``lr`` over ``warmup_steps``, then ``schedule`` down to
    ``lr * min_lr_ratio`` at :func:`schedule_end`, then that final rate. The rate of update
    ``s`` (0-based) is ``schedule(s)``. Raises ConfigError for an unknown schedule."""
    peak, warmup = opt_cfg.lr, opt_cfg.warmup_steps
    end = peak * opt_cfg.min_lr_ratio
    # optax holds the end past it; a flat decay is the same over any length.
    decay_steps = max((schedule_end(opt_cfg, num_steps) or num_steps) - warmup, 1)
    if opt_cfg.schedule == "cosine":
        decay = optax.cosine_decay_schedule(peak, decay_steps, alpha=opt_cfg.min_lr_ratio)
    elif opt_cfg.schedule == "linear":
        decay = optax.linear_schedule(peak, end, decay_steps)
    elif opt_cfg.schedule == "constant":
        decay = optax.constant_schedule(peak)
    else:
        raise ConfigError(f"Unknown schedule optimizer.schedule={opt_cfg.schedule!r}; valid: {', '.join(SCHEDULES)}.")
    return optax.join_schedules([optax.linear_schedule(0.0, peak, warmup), decay], [warmup])


def is_encoding_param(path) -> bool:
    return any(getattr(k, "key", None) in ENCODING_SCOPES for k in path)


def decay_mask(params):
    """True for weight matrices outside position encodings."""
    return jax.tree_util.tree_map_with_path(lambda path, x: x.ndim >= 2 and not is_encoding_param(path), params)


def make_optimizer(opt_cfg, num_steps: int) -> optax.GradientTransformation:
    return optax.chain(
        optax.clip_by_global_norm(opt_cfg.clip_norm),
        optax.adamw(
            learning_rate_schedule(opt_cfg, num_steps),
            b1=opt_cfg.b1,
            b2=opt_cfg.b2,
            eps=opt_cfg.eps,
            weight_decay=opt_cfg.weight_decay,
            mask=decay_mask,
        ),
    )
