"""Absolute position embeddings added to the token embeddings."""

import flax.linen as nn
import jax.numpy as jnp

from fire.encodings.base import PositionEncoding


class LengthError(ValueError):
    """A window is longer than an encoding can represent."""


class Learned(PositionEncoding):
    """A learned table of ``max_len`` vectors; it cannot run past its table.

    ``max_len`` 0 means the training length.
    """

    max_len: int = 0
    init_std: float = 0.5  # token embeddings start at std 1 (GPT-2's 2:1 ratio)

    @property
    def table_len(self) -> int:
        return self.max_len or self.train_len

    def setup(self):
        self.table = self.param(
            "table",
            nn.with_logical_partitioning(nn.initializers.normal(self.init_std), (None, "embed")),
            (self.table_len, self.d_model),
        )

    def embed(self, positions_BxT, seq_len):
        if seq_len > self.table_len:
            raise LengthError(
                f"pe=learned has a table of {self.table_len} positions and cannot model a "
                f"window of {seq_len} tokens; evaluate it at lengths <= {self.table_len} "
                f"or train with a longer max_len."
            )
        return jnp.take(self.table, positions_BxT, axis=0)


def sinusoid_table(positions_BxT, dim: int, base: float = 10000.0):
    """Vaswani et al.'s interleaved embedding: ``[sin(p w_0), cos(p w_0), sin(p w_1), ...]``
    with ``w_k = base^(-2k/dim)``."""
    inv_freq = base ** (-jnp.arange(0, dim, 2, dtype=jnp.float32) / dim)
    angles_BxTxF = positions_BxT[..., None].astype(jnp.float32) * inv_freq
    table = jnp.stack([jnp.sin(angles_BxTxF), jnp.cos(angles_BxTxF)], axis=-1)
    return table.reshape(*positions_BxT.shape, -1)[..., :dim]


class Sinusoidal(PositionEncoding):
    """Fixed sin/cos absolute embedding (Vaswani et al., 2017), base 10000."""

    base: float = 10000.0

    def embed(self, positions_BxT, seq_len):
        return sinusoid_table(positions_BxT, self.d_model, self.base)
