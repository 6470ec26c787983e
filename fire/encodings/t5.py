"""T5's relative position bias (Raffel et al., 2020), causal buckets."""

import math

import flax.linen as nn
import jax.numpy as jnp

from fire.encodings.base import PositionEncoding, heads_first, relative_distance


def t5_bucket(distance, num_buckets: int = 32, max_distance: int = 128):
    """Causal T5 bucket of a distance ``i - j >= 0``: exact below ``num_buckets // 2``,
    log-spaced up to ``max_distance``, the last bucket beyond (as in T5's
    ``_relative_position_bucket`` with ``bidirectional=False``)."""
    n = jnp.maximum(jnp.asarray(distance), 0).astype(jnp.int32)
    max_exact = num_buckets // 2
    log_ratio = jnp.log(jnp.maximum(n, 1).astype(jnp.float32) / max_exact) / math.log(max_distance / max_exact)
    large = max_exact + (log_ratio * (num_buckets - max_exact)).astype(jnp.int32)
    large = jnp.minimum(large, num_buckets - 1)
    return jnp.where(n < max_exact, n, large)


class T5Bias(PositionEncoding):
    """A learned scalar per (bucket, head); shared across layers as in T5."""

    additive = True
    distance_only = True

    positive_options = ("num_buckets", "max_distance")

    num_buckets: int = 32  # causal buckets: exact below half of them, log-spaced above
    max_distance: int = 128  # distances at and past this share the last bucket
    init_std: float = 0.02  # initial table values ~ N(0, init_std^2)

    def setup(self):
        self.table = self.param(
            "table",
            nn.with_logical_partitioning(nn.initializers.normal(self.init_std), (None, None)),
            (self.num_buckets, self.num_heads),
        )

    def bias_fn(self, seq_len):
        table_NxH = self.table

        def bias(q_pos, k_pos):
            buckets = t5_bucket(relative_distance(q_pos, k_pos), self.num_buckets, self.max_distance)
            return heads_first(jnp.take(table_NxH, buckets, axis=0))

        return bias
