"""The model's hyperparameters: :class:`ModelConfig`, the named sizes, compute dtypes."""

import dataclasses
from typing import Mapping

import jax.numpy as jnp
from flax.core import FrozenDict

from fire.encodings import build_encoding, check_length, is_shared
from fire.errors import ConfigError
from fire.utils import round_up

# name -> (num_layers, d_model, num_heads, d_ff)
SIZES = {
    "tiny": (2, 128, 4, 512),
    "small": (6, 512, 8, 2048),
    "base": (12, 768, 12, 3072),
    "large": (24, 1024, 16, 4096),
}
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
IMPLEMENTATIONS = ("dense", "blockwise")  # attention paths (fire.model.attention)


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """A decoder-only LM: its shape, its position encoding (``pe`` and its options) and the
    training length the encoding is built for.

    Raises:
      ConfigError: an unknown dtype or attention path, heads that do not divide
        ``d_model`` (without ``head_dim``), a non-positive size or a negative ``head_dim``.
    """

    vocab_size: int
    num_layers: int
    d_model: int
    num_heads: int
    d_ff: int
    train_len: int
    pe: str = "fire"
    pe_options: Mapping = FrozenDict()
    head_dim: int = 0  # 0: d_model // num_heads
    tie_embeddings: bool = False
    dtype: str = "float32"
    attention: str = "dense"  # default path; a call may choose another
    block_size: int = 512  # blockwise attention tile
    # Exclusive bound of the training position ids, for the encoding's check (a `learned`
    # table must hold them); 0: train_len. Randomized positions raise it.
    max_position: int = 0

    def __post_init__(self):
        object.__setattr__(self, "pe_options", FrozenDict(self.pe_options))
        if self.dtype not in DTYPES:
            raise ConfigError(f"model dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}.")
        if self.attention not in IMPLEMENTATIONS:
            raise ConfigError(f"model attention must be one of {', '.join(IMPLEMENTATIONS)}, got {self.attention!r}.")
        sizes = dict(vocab_size=self.vocab_size, num_layers=self.num_layers, d_model=self.d_model,
                     num_heads=self.num_heads, d_ff=self.d_ff, train_len=self.train_len, block_size=self.block_size)  # fmt: skip
        bad = [f"{k}={v}" for k, v in sizes.items() if isinstance(v, bool) or not (isinstance(v, int) and v > 0)]
        if bad:
            raise ConfigError(f"model sizes must be positive integers, got {', '.join(bad)}.")
        if isinstance(self.head_dim, bool) or not isinstance(self.head_dim, int) or self.head_dim < 0:
            raise ConfigError(
                f"model head_dim must be an integer >= 0 (0: d_model / num_heads), got {self.head_dim!r}."
            )
        if not self.head_dim and self.d_model % self.num_heads:
            raise ConfigError(f"d_model {self.d_model} does not divide into {self.num_heads} heads; set head_dim.")

    @property
    def dim_per_head(self) -> int:
        return self.head_dim or self.d_model // self.num_heads

    @property
    def shared_encoding(self) -> bool:
        """One encoding module for all layers (else one per layer)."""
        return is_shared(self.pe, self.pe_options)

    def check_length(self, seq_len: int) -> None:
        """Raises ``fire.encodings.LengthError`` if the encoding cannot model ``seq_len`` tokens."""
        check_length(self.pe, self.pe_options, self.train_len, seq_len)

    @classmethod
    def from_size(cls, size: str, **kwargs) -> "ModelConfig":
        if size not in SIZES:
            raise ConfigError(f"Unknown model size {size!r}; valid: {', '.join(SIZES)}.")
        num_layers, d_model, num_heads, d_ff = SIZES[size]
        return cls(num_layers=num_layers, d_model=d_model, num_heads=num_heads, d_ff=d_ff, **kwargs)

    @classmethod
    def from_run_config(cls, config, vocab_size: int) -> "ModelConfig":
        """The model of a run config (``fire.config``): its ``model`` block, ``pe`` with the
        ``encoding`` block, and ``train_len``; the vocabulary padded to ``vocab_multiple`` (an
        integer >= 0: :func:`fire.config.check` refuses others)."""
        m = config.model
        return cls(
            vocab_size=round_up(vocab_size, m.vocab_multiple or 1),
            num_layers=m.num_layers, d_model=m.d_model, num_heads=m.num_heads, d_ff=m.d_ff, head_dim=m.head_dim,
            tie_embeddings=m.tie_embeddings, dtype=m.dtype, attention=m.attention, block_size=m.block_size,
            train_len=config.train_len, pe=config.pe, pe_options=config.encoding.to_dict(),
        )  # fmt: skip

    def build_encoding(self, module_name=None):
        return build_encoding(
            self.pe,
            self.pe_options,
            num_heads=self.num_heads,
            head_dim=self.dim_per_head,
            d_model=self.d_model,
            train_len=self.train_len,
            max_position=self.max_position or None,
            module_name=module_name,
        )
