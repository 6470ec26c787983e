"""ALiBi (Press et al., 2022): a fixed linear penalty per head."""

import math

import jax.numpy as jnp

from fire.encodings.base import PositionEncoding, relative_distance


def alibi_slopes(num_heads: int) -> list:
    """The official slopes: ``2^(-8k/H)``, k = 1..H, for H a power of two; otherwise the
    slopes of the next lower power of two followed by every other slope of twice that."""

    def power_of_two(n):
        start = 2.0 ** (-(2.0 ** -(math.log2(n) - 3)))
        return [start * start**i for i in range(n)]

    if math.log2(num_heads).is_integer():
        return power_of_two(num_heads)
    lower = 2 ** math.floor(math.log2(num_heads))
    return power_of_two(lower) + alibi_slopes(2 * lower)[0::2][: num_heads - lower]


class ALiBi(PositionEncoding):
    """``b[h, i, j] = -m_h (i - j)``. The official code's ``+m_h j`` differs by a per-row
    constant and so gives the same softmax; this form makes the bias itself comparable."""

    additive = True
    distance_only = True

    def bias_fn(self, seq_len):
        slopes_H = jnp.asarray(alibi_slopes(self.num_heads), jnp.float32)

        def bias(q_pos, k_pos):
            return -slopes_H[None, :, None, None] * relative_distance(q_pos, k_pos)[:, None]

        return bias
