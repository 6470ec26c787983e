"""Rotary encodings: RoPE, RoPE with position interpolation, and YaRN.

Queries and keys are rotated pairwise by ``pos * theta_k`` with ``theta_k =
base^(-2k/d_head)``; the logit ``q_i . k_j`` then depends on ``i - j`` only. Pairs are the
two halves of the head dimension (GPT-NeoX / LLaMA layout), which has the same relative
property as interleaved pairs.
"""

import math
from typing import Optional

import jax.numpy as jnp

from fire.encodings.base import PositionEncoding, Rotation


def rope_inv_freq(head_dim: int, base: float) -> jnp.ndarray:
    return base ** (-jnp.arange(0, head_dim, 2, dtype=jnp.float32) / head_dim)


def rotate(x_BxTxHxD, positions_BxT, inv_freq_F, position_scale=1.0, magnitude=1.0):
    """Rotates pairs ``(x[k], x[k + D/2])`` by ``position * position_scale * inv_freq[k]``.

    ``magnitude`` multiplies the result (YaRN's attention temperature).
    """
    angles_BxTxF = (positions_BxT.astype(jnp.float32) * position_scale)[..., None] * inv_freq_F
    cos = (jnp.cos(angles_BxTxF) * magnitude)[:, :, None, :]
    sin = (jnp.sin(angles_BxTxF) * magnitude)[:, :, None, :]
    x = x_BxTxHxD.astype(jnp.float32)
    x1, x2 = jnp.split(x, 2, axis=-1)
    out = jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)
    return out.astype(x_BxTxHxD.dtype)


def extension_ratio(seq_len: int, train_len: int, fixed: float) -> float:
    """How far a window extends past training: ``fixed`` if set, else
    ``max(1, seq_len / train_len)`` (no interpolation at or below the training length)."""
    return fixed if fixed > 0 else max(1.0, seq_len / train_len)


class RoPE(PositionEncoding):
    """Rotary position embedding (Su et al.), base 10000."""

    positive_options = ("base",)

    base: float = 10000.0  # rotation frequencies base^(-2k/d_head)

    def rotary(self, seq_len: int) -> Optional[Rotation]:
        inv_freq = rope_inv_freq(self.head_dim, self.base)
        return Rotation.same(lambda x, positions: rotate(x, positions, inv_freq))


class RoPEPI(PositionEncoding):
    """RoPE with position interpolation (Chen et al., 2023).

    Positions are multiplied by ``1 / s`` with ``s = seq_len / train_len`` when the window
    is longer than training (so the longest window maps onto the trained range), or by a
    fixed ``1 / scale`` when ``scale > 0``.
    """

    positive_options = ("base",)

    base: float = 10000.0  # rotation frequencies base^(-2k/d_head)
    scale: float = 0.0  # fixed interpolation factor s; 0: eval_len / train_len past training

    def rotary(self, seq_len: int) -> Optional[Rotation]:
        inv_freq = rope_inv_freq(self.head_dim, self.base)
        s = extension_ratio(seq_len, self.train_len, self.scale)
        return Rotation.same(lambda x, positions: rotate(x, positions, inv_freq, position_scale=1.0 / s))


def yarn_correction_dim(num_rotations: float, dim: int, base: float, train_len: int) -> float:
    """The pair index whose wavelength fits ``num_rotations`` times in ``train_len``."""
    return dim * math.log(train_len / (num_rotations * 2 * math.pi)) / (2 * math.log(base))


def yarn_inv_freq(head_dim: int, base: float, s: float, train_len: int, alpha: float, beta: float):
    """NTK-by-parts frequencies as in YaRN's reference code (Peng et al., 2023).

    Pairs that rotate more than ``beta`` times over the training length keep their
    frequency (extrapolate), pairs that rotate less than ``alpha`` times are divided by
    ``s`` (interpolate), and in between the ramp is linear in the *pair index* between
    the rounded correction bounds (the reference code's ramp, not the paper's continuous
    one in wavelength ratio).
    """
    inv_freq = rope_inv_freq(head_dim, base)
    low = max(math.floor(yarn_correction_dim(beta, head_dim, base, train_len)), 0)
    high = min(math.ceil(yarn_correction_dim(alpha, head_dim, base, train_len)), head_dim - 1)
    if low == high:
        high += 0.001  # the reference code's guard against a zero-width ramp
    ramp = jnp.clip((jnp.arange(head_dim // 2, dtype=jnp.float32) - low) / (high - low), 0.0, 1.0)
    extrapolate = 1.0 - ramp
    return inv_freq / s * (1.0 - extrapolate) + inv_freq * extrapolate


def yarn_temperature(s: float) -> float:
    """YaRN's attention scaling ``0.1 ln(s) + 1``, applied to q and k (logits get its square)."""
    return 1.0 if s <= 1.0 else 0.1 * math.log(s) + 1.0


class YaRN(PositionEncoding):
    """YaRN (Peng et al., 2023): NTK-by-parts interpolation plus attention temperature.

    ``s = seq_len / train_len`` (or a fixed ``scale``); at ``s = 1`` it is exactly RoPE.
    """

    positive_options = ("base", "alpha", "beta")

    base: float = 10000.0  # rotation frequencies base^(-2k/d_head)
    scale: float = 0.0  # fixed interpolation factor s; 0: eval_len / train_len past training
    alpha: float = 1.0  # pairs rotating fewer times than this over train_len interpolate
    beta: float = 32.0  # pairs rotating more times than this keep their frequency

    def rotary(self, seq_len: int) -> Optional[Rotation]:
        s = extension_ratio(seq_len, self.train_len, self.scale)
        inv_freq = yarn_inv_freq(self.head_dim, self.base, s, self.train_len, self.alpha, self.beta)
        magnitude = yarn_temperature(s)
        return Rotation.same(lambda x, positions: rotate(x, positions, inv_freq, magnitude=magnitude))
