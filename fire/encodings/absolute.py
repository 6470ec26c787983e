"""Absolute position embeddings added to the token embeddings."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from fire.encodings.base import LengthError, PositionEncoding
from fire.errors import ConfigError


class Learned(PositionEncoding):
    """A learned table of ``max_len`` vectors; it cannot run past its table.

    ``max_len`` 0 means the training length.
    """

    positive_options = ("init_std",)

    max_len: int = 0  # positions in the table; 0: the training length
    init_std: float = 0.5  # token embeddings start at std 1 (GPT-2's 2:1 ratio)

    @classmethod
    def check(cls, options, train_len, max_position, head_dim):
        max_len = options.get("max_len", 0)
        if 0 < max_len < train_len:
            raise ConfigError(
                f"pe=learned has max_len {max_len} < train_len {train_len}: "
                f"it cannot represent its own training windows."
            )
        table = max_len or train_len
        if table < max_position:
            raise ConfigError(
                f"pe=learned has a table of {table} positions, but training uses position ids up to "
                f"{max_position - 1} (train_positions.randomize); set --config.encoding.max_len to at least "
                f"{max_position}."
            )

    @classmethod
    def max_length(cls, options, train_len):
        return options.get("max_len", 0) or train_len

    @classmethod
    def check_length(cls, options, train_len, seq_len):
        table = cls.max_length(options, train_len)
        if seq_len > table:
            raise LengthError(
                f"pe=learned has a table of {table} positions and cannot model a "
                f"window of {seq_len} tokens; evaluate it at lengths <= {table} "
                f"or train with a longer max_len."
            )

    @property
    def table_len(self) -> int:
        return self.max_len or self.train_len

    def setup(self):
        self.table = self.param(
            "table",
            nn.with_logical_partitioning(nn.initializers.normal(self.init_std), (None, "embed")),
            (self.table_len, self.d_model),
        )

    @classmethod
    def check_positions(cls, options, train_len, positions_BxT):
        """Raises :class:`LengthError` (as for a window past the table) if concrete position
        ids reach past the table. Traced ids cannot be inspected: under ``jit`` the bound is
        the run's, checked by :meth:`check` (``max_position``)."""
        if isinstance(positions_BxT, jax.core.Tracer) or not np.size(positions_BxT):
            return
        table, largest = cls.max_length(options, train_len), int(np.max(positions_BxT))
        if largest >= table or int(np.min(positions_BxT)) < 0:
            raise LengthError(
                f"pe=learned has a table of {table} positions and cannot model position id {largest} "
                f"(ids must be in [0, {table})); evaluate it at lengths <= {table} or train with a longer max_len."
            )

    def embed(self, positions_BxT, seq_len):
        """Rows of the table, ``BxTxD``. Ids must be in ``[0, table_len)``: ``jnp.take`` returns
        NaN rows past the table, so concrete ids are checked here (:meth:`check_positions`),
        windows by :meth:`check_length`, and traced ids by the run's :meth:`check`."""
        options = {"max_len": self.max_len}
        self.check_length(options, self.train_len, seq_len)
        self.check_positions(options, self.train_len, positions_BxT)
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

    positive_options = ("base",)

    base: float = 10000.0  # wavelengths base^(2k/d)

    def embed(self, positions_BxT, seq_len):
        return sinusoid_table(positions_BxT, self.d_model, self.base)
