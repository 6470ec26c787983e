"""The contract between position encodings and the model.

An encoding contributes to the model through up to three hooks, and attention never
asks which encoding it is talking to:

* ``embed(positions_BxT, seq_len)``: a vector added to the token embeddings (absolute
  encodings). Called once per forward, at the model level.
* ``rotary(seq_len)``: a pure function ``rotate(x_BxTxHxD, positions_BxT)`` applied to
  queries and keys (RoPE and its interpolations).
* ``bias_fn(seq_len)``: a pure function ``bias(q_pos_BxQ, k_pos_BxK) -> BxHxQxK`` added
  to the scaled logits ``q.k / sqrt(d_head)`` before the causal mask (additive encodings).

Hooks return pure closures over the encoding's parameters, read once outside any JAX
transform, so the blockwise attention path can evaluate them per block inside
``lax.scan``. Position ids are explicit and may have a batch dimension of 1 (shared by
all examples: the bias is then computed once, never per example) or B (per-example
positions, e.g. randomized). ``seq_len`` is the length of the window being modelled; it
sets the interpolation scale of ``rope_pi`` and ``yarn`` and the table check of
``learned``.
"""

from typing import Callable, Optional

import flax.linen as nn
import jax.numpy as jnp

Array = jnp.ndarray
BiasFn = Callable[[Array, Array], Array]
RotateFn = Callable[[Array, Array], Array]


class PositionEncoding(nn.Module):
    """Base class: contributes nothing (which is exactly NoPE).

    Attributes set by the model for every encoding:
      num_heads, head_dim, d_model: attention geometry.
      train_len: the training length (interpolating encodings scale from it).
    Class attribute ``shared``: one instance for the whole model (built at the model
    level and used by every layer) instead of one per layer.
    """

    num_heads: int
    head_dim: int
    d_model: int
    train_len: int

    shared = True

    def embed(self, positions_BxT: Array, seq_len: int) -> Optional[Array]:
        return None

    def rotary(self, seq_len: int) -> Optional[RotateFn]:
        return None

    def bias_fn(self, seq_len: int) -> Optional[BiasFn]:
        return None

    def summary(self) -> dict:
        """Learned parameters worth logging over training, as ``{name: scalar or [H]}``."""
        return {}


def relative_distance(q_pos_BxQ: Array, k_pos_BxK: Array) -> Array:
    """``i - j`` as float32 ``BxQxK``, clamped at 0.

    Keys after the query are masked by attention anyway; clamping keeps every encoding's
    formula finite there (``log`` and fractional powers of negative numbers would give NaN,
    and a NaN times a zero mask is still NaN in the gradient).
    """
    d = q_pos_BxQ[:, :, None].astype(jnp.float32) - k_pos_BxK[:, None, :].astype(jnp.float32)
    return jnp.maximum(d, 0.0)


def heads_first(x_BxQxKxH: Array) -> Array:
    return jnp.transpose(x_BxQxKxH, (0, 3, 1, 2))
