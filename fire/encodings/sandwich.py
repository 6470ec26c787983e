"""Sandwich (Chi et al., 2023): the inner product of sinusoidal embeddings as a bias."""

import jax.numpy as jnp

from fire.encodings.base import PositionEncoding, relative_distance
from fire.errors import ConfigError


class Sandwich(PositionEncoding):
    """``b[h, i, j] = (sum_{k=1}^{d/2} cos((i-j) / 10000^(2k/d)) - d/2) / (8h/H)``.

    Parameter-free. ``d`` is ``dim`` (0 means ``d_head``); the sum starts at k = 1 (one
    frequency off the Vaswani sinusoid); the ``- d/2`` makes the bias 0 at distance 0
    and non-positive elsewhere; head h (1-based) is divided by ``8h/H`` like ALiBi's
    slopes.

    ``d`` must be even: the bias is the inner product of two sinusoids of ``d`` dimensions,
    ``d/2`` (sin, cos) pairs whose products sum to the cosines of the distance. An odd ``d``
    would leave one sine unpaired, whose product ``sin(i w) sin(j w)`` depends on ``i`` and
    ``j`` and not on ``i - j`` alone, so the paper's formula has no odd-``d`` form.
    """

    additive = True
    distance_only = True

    positive_options = ("base",)

    dim: int = 0  # sinusoid dimension d, even; 0: d_head
    base: float = 10000.0  # wavelengths base^(2k/d)

    @classmethod
    def check(cls, options, train_len, max_position, head_dim):
        """Raises ConfigError for an odd ``d``: ``dim``, or ``head_dim`` where ``dim`` is 0."""
        d, name = (options["dim"], "dim") if options.get("dim") else (head_dim, "d_head")
        if d % 2:
            raise ConfigError(
                f"pe=sandwich needs an even sinusoid dimension (d/2 sin-cos pairs), got {name}={d}; "
                "set --config.encoding.dim to an even number (0: d_head, if even)."
            )

    def bias_fn(self, seq_len):
        d = self.dim or self.head_dim
        half = d // 2  # d is even: check()
        inv_freq_F = self.base ** (-2.0 * jnp.arange(1, half + 1, dtype=jnp.float32) / d)
        head_scale_H = 8.0 * jnp.arange(1, self.num_heads + 1, dtype=jnp.float32) / self.num_heads

        def bias(q_pos, k_pos):
            dist = relative_distance(q_pos, k_pos)
            kernel = jnp.cos(dist[..., None] * inv_freq_F).sum(-1) - half
            return kernel[:, None] / head_scale_H[None, :, None, None]

        return bias
