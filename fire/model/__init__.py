"""The decoder-only LM: its config, layers, the position biases (``position_bias``: tables or
pairwise, per tile), the two attention paths and the loss; generation with a KV cache is
``fire.model.generate``.

from fire.model import ModelConfig, Transformer
"""

from fire.model.config import DTYPES, IMPLEMENTATIONS, SIZES, ModelConfig
from fire.model.losses import token_nll
from fire.model.transformer import (
    Transformer,
    abstract_params,
    count_params,
    encoding_scopes,
    encoding_summary,
    matmul_params,
    train_flops_per_token,
)

__all__ = [
    "DTYPES", "IMPLEMENTATIONS", "SIZES", "ModelConfig", "Transformer", "abstract_params", "count_params", "encoding_scopes",
    "encoding_summary", "matmul_params", "token_nll", "train_flops_per_token",
]  # fmt: skip
