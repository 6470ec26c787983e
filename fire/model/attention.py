"""Causal multi-head attention with two interchangeable paths.

* ``dense``: the reference (:func:`dense_attention`). Materialises the logits and the full
  bias; training runs it in tiles of query rows, each against the keys up to its last row
  (:func:`causal_attention_in_row_tiles`).
* ``blockwise``: query blocks x key blocks with an online softmax (Milakov & Gimelshein;
  Rabe & Staats; FlashAttention's recurrence). Each encoding's bias is computed per block
  from position ids, so peak memory grows linearly with the length: what lets a CPU
  evaluate at 32K+ tokens. Key blocks wholly after the query block are skipped.

How the bias is computed for each path (once per forward or per tile, from distance tables
or pairwise) is ``fire.model.position_bias``'s; attention only adds what it is given.

The causal mask is by index in the sequence; the bias is by position id. The two are the
same for ordinary inputs, and position ids may differ (offsets, randomized positions).
Every additive bias goes on the *scaled* logits ``q.k / sqrt(d_head)``.

Generation (``fire.model.generate``) adds a third use of the dense path: a decode step's
query attends over a :class:`KVCache` of keys and values written by earlier steps.
"""

import functools
import math
from typing import Callable, NamedTuple, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from fire.encodings.base import Rotation
from fire.model.config import IMPLEMENTATIONS
from fire.model.layers import Projection
from fire.model.position_bias import PositionBias, causal_bias_tile, causal_row_tiles
from fire.utils import ceil_div

# Finite, so that fully masked entries give exp(-big) = 0 rather than NaN from inf - inf.
_MASKED = -0.7 * float(jnp.finfo(jnp.float32).max)
# The collection a probe makes mutable to receive each layer's attention weights (dense path
# only; fire.evaluation.attention_probe): nothing is computed unless it is mutable.
ATTENTION_PROBE = "attention_probe"


class KVCache(NamedTuple):
    """One layer's keys (rotated) and values, ``BxSxHxD``: slot ``j`` holds position ``j``."""

    k: jnp.ndarray
    v: jnp.ndarray


def cache_positions(cache: Optional[KVCache]):
    """The position of every slot of ``cache``, ``1xS`` int32 (None without a cache)."""
    return None if cache is None else jnp.arange(cache.k.shape[1], dtype=jnp.int32)[None]


def dense_attention(q_BxQxHxD, k_BxKxHxD, v_BxKxHxD, bias_BxHxQxK=None, q_index_Q=None):
    """Reference causal attention; softmax in float32.

    Query row ``i`` sees keys ``0 .. q_index_Q[i]`` (by index); the default ``0 .. Q-1`` is
    ordinary causal attention with ``Q == K``. A decode step passes its slot in a cache.
    """
    if q_index_Q is None:
        q_index_Q = jnp.arange(q_BxQxHxD.shape[1])
    q, k, v = (jnp.transpose(x, (0, 2, 1, 3)) for x in (q_BxQxHxD, k_BxKxHxD, v_BxKxHxD))
    return jnp.transpose(_attend(q, k, v, bias_BxHxQxK, q_index_Q), (0, 2, 1, 3))


def _probs(q_BxHxQxD, k_BxHxKxD, bias_BxHxQxK, q_index_Q):
    """Causal softmax weights of query rows at indices ``q_index_Q`` over keys ``0..K-1``,
    float32 ``BxHxQxK``."""
    logits = jnp.einsum("bhqd,bhkd->bhqk", q_BxHxQxD, k_BxHxKxD, preferred_element_type=jnp.float32)
    logits = logits / math.sqrt(q_BxHxQxD.shape[-1])
    if bias_BxHxQxK is not None:
        logits = logits + bias_BxHxQxK
    causal_QxK = q_index_Q[:, None] >= jnp.arange(k_BxHxKxD.shape[2])[None, :]
    return jax.nn.softmax(jnp.where(causal_QxK, logits, _MASKED), axis=-1)


def _attend(q_BxHxQxD, k_BxHxKxD, v_BxHxKxD, bias_BxHxQxK, q_index_Q):
    """Softmax attention of query rows at indices ``q_index_Q`` over keys ``0..K-1``, heads
    leading (each head's rows contiguous): ``BxHxQxD`` in ``v``'s dtype."""
    probs = _probs(q_BxHxQxD, k_BxHxKxD, bias_BxHxQxK, q_index_Q).astype(v_BxHxKxD.dtype)
    out = jnp.einsum("bhqk,bhkd->bhqd", probs, v_BxHxKxD, preferred_element_type=jnp.float32)
    return out.astype(v_BxHxKxD.dtype)


def causal_attention_weights(q_BxTxHxD, k_BxTxHxD, bias_tiles=None) -> jnp.ndarray:
    """The causal attention weights of ordinary inputs summed over the batch and the heads,
    float32 ``TxT`` (row ``i``: query ``i``'s weights over keys ``0..i``, each row summing to
    ``B x H``), computed in the row tiles of :func:`causal_attention_in_row_tiles` with the
    same bias. For probes (``ATTENTION_PROBE``), not for training: it holds ``T x T``."""
    T = q_BxTxHxD.shape[1]
    tile = bias_tiles[0].shape[-2] if bias_tiles is not None else causal_bias_tile(T)
    q, k = (jnp.transpose(x, (0, 2, 1, 3)) for x in (q_BxTxHxD, k_BxTxHxD))
    rows = []
    for i, (start, stop) in enumerate(causal_row_tiles(T, tile)):
        bias = None if bias_tiles is None else bias_tiles[i]
        probs = _probs(q[:, :, start:stop], k[:, :, :stop], bias, jnp.arange(start, stop)).sum((0, 1))
        rows.append(jnp.pad(probs, ((0, 0), (0, T - stop))))
    return jnp.concatenate(rows, axis=0)


def causal_attention_in_row_tiles(q_BxTxHxD, k_BxTxHxD, v_BxTxHxD, bias_tiles=None, tile: Optional[int] = None):
    """:func:`dense_attention` over ordinary causal inputs (``Q == K``), ``tile`` query rows at
    a time (default ``causal_bias_tile(T)``), each tile against the keys up to its last row
    only: the logits, softmax and both attention matmuls skip the masked keys right of each
    tile (a little over half of the ``T x T`` grid with many tiles). Heads are moved ahead of
    the sequence once, so that every tile's rows are contiguous slices. The values equal the
    untiled softmax's up to float32 rounding. Measured on a 2-core CPU, forward and backward:
    0.6-0.7x the untiled time at ``8x4x512x32`` and ``8x8x512x64``.

    ``bias_tiles``: the bias in row tiles, as ``fire.model.position_bias`` computes it (tile
    ``i``: ``BxHx(stop - start)xstop`` for rows ``start..stop-1``; ``B`` may be 1), or None.
    Its first tile's rows set the tile size; ``tile`` is for attention without a bias.

    Raises:
      ValueError: ``tile`` given and different from the bias tiles' rows.
    """
    T = q_BxTxHxD.shape[1]
    if bias_tiles is not None:
        rows = bias_tiles[0].shape[-2]
        if tile is not None and min(tile, T) != rows:
            raise ValueError(f"tile={tile} but the bias comes in tiles of {rows} rows: pass one of the two")
        tile = rows
    tile = tile or causal_bias_tile(T)
    q, k, v = (jnp.transpose(x, (0, 2, 1, 3)) for x in (q_BxTxHxD, k_BxTxHxD, v_BxTxHxD))
    outs = []
    for i, (start, stop) in enumerate(causal_row_tiles(T, tile)):
        bias = None if bias_tiles is None else bias_tiles[i]
        outs.append(_attend(q[:, :, start:stop], k[:, :, :stop], v[:, :, :stop], bias, jnp.arange(start, stop)))
    out_BxHxTxD = jnp.concatenate(outs, axis=2) if len(outs) > 1 else outs[0]
    return jnp.transpose(out_BxHxTxD, (0, 2, 1, 3))


def _blocks(x, n_blocks, block):
    """``[B, n*block, ...]`` -> ``[n, B, block, ...]``."""
    x = x.reshape(x.shape[0], n_blocks, block, *x.shape[2:])
    return jnp.moveaxis(x, 1, 0)


def blockwise_attention(
    q_BxTxHxD,
    k_BxTxHxD,
    v_BxTxHxD,
    positions_BxT,
    tile_bias: Optional[Callable] = None,
    block_size: int = 512,
):
    """Causal attention in ``block_size`` tiles with the bias of each tile from
    ``tile_bias(qi, ki, qpos_BxQ, kpos_BxK)`` (:class:`PositionBias`'s ``tile``, built for the
    same ``block_size``). A pairwise bias is evaluated per tile in one piece: FIRE's
    piecewise-linear bias has no wide intermediates to keep in cache, and one call per tile
    measured 1.2x faster than row tiles of 64 at 16K tokens.

    ``positions_BxT`` may have batch 1 (broadcast over examples). Lengths that are not a
    multiple of the block are padded at the end: padded keys come after every real query,
    so the causal mask already hides them, and padded query rows are dropped.
    """
    B, T, H, D = q_BxTxHxD.shape
    block = min(block_size, T)
    n = ceil_div(T, block)
    pad = n * block - T
    if pad:
        pad_seq = lambda x: jnp.pad(x, [(0, 0), (0, pad)] + [(0, 0)] * (x.ndim - 2))
        q_BxTxHxD, k_BxTxHxD, v_BxTxHxD = map(pad_seq, (q_BxTxHxD, k_BxTxHxD, v_BxTxHxD))
        positions_BxT = jnp.pad(positions_BxT, [(0, 0), (0, pad)], mode="edge")
    q_blocks, k_blocks, v_blocks = (_blocks(x, n, block) for x in (q_BxTxHxD, k_BxTxHxD, v_BxTxHxD))
    pos_blocks = _blocks(positions_BxT, n, block)
    scale = 1.0 / math.sqrt(D)
    offsets = jnp.arange(block)

    def query_block(_, xs):
        qi, q_BxQxHxD, qpos_BxQ = xs
        q_idx = qi * block + offsets

        def key_block(carry, ys):
            ki, k_BxKxHxD, v_BxKxHxD, kpos_BxK = ys

            def accumulate(carry):
                max_BxHxQ, norm_BxHxQ, acc_BxHxQxD = carry
                s = jnp.einsum("bqhd,bkhd->bhqk", q_BxQxHxD, k_BxKxHxD, preferred_element_type=jnp.float32)
                s = s * scale
                if tile_bias is not None:
                    s = s + tile_bias(qi, ki, qpos_BxQ, kpos_BxK)
                k_idx = ki * block + offsets
                s = jnp.where(q_idx[:, None] >= k_idx[None, :], s, _MASKED)
                new_max = jnp.maximum(max_BxHxQ, s.max(-1))
                correction = jnp.exp(max_BxHxQ - new_max)
                p = jnp.exp(s - new_max[..., None])
                norm = norm_BxHxQ * correction + p.sum(-1)
                pv = jnp.einsum(
                    "bhqk,bkhd->bhqd", p.astype(v_BxKxHxD.dtype), v_BxKxHxD, preferred_element_type=jnp.float32
                )
                return new_max, norm, acc_BxHxQxD * correction[..., None] + pv

            return jax.lax.cond(ki <= qi, accumulate, lambda c: c, carry), None

        init = (
            jnp.full((B, H, block), -jnp.inf, jnp.float32),
            jnp.zeros((B, H, block), jnp.float32),
            jnp.zeros((B, H, block, D), jnp.float32),
        )
        (_, norm, acc), _ = jax.lax.scan(key_block, init, (jnp.arange(n), k_blocks, v_blocks, pos_blocks))
        out_BxQxHxD = jnp.transpose(acc / norm[..., None], (0, 2, 1, 3))
        return None, out_BxQxHxD.astype(v_BxTxHxD.dtype)

    _, out = jax.lax.scan(query_block, None, (jnp.arange(n), q_blocks, pos_blocks))
    return jnp.moveaxis(out, 0, 1).reshape(B, n * block, H, D)[:, :T]


class CausalSelfAttention(nn.Module):
    """Projections around :func:`dense_attention` / :func:`blockwise_attention`.

    The encoding enters only through ``rotation`` (applied to q and k) and ``bias`` (from
    ``fire.model.position_bias.position_bias``, which also fixes the path: dense with a
    dense bias, blockwise with a per-tile one; ``impl`` picks the path when there is no
    bias).

    Returns ``(out_BxTxD, KVCache)``: the keys (rotated) and values of these ``T`` tokens,
    which a prefill keeps. Given a ``cache`` (decoding), they are written at slots
    ``cache_index .. cache_index + T - 1`` (a traced int32 scalar), the queries attend over
    the whole cache on the dense path with later slots masked, and the updated cache is
    returned.
    """

    num_heads: int
    head_dim: int
    dtype: jnp.dtype = jnp.float32
    out_init_scale: float = 1.0

    @nn.compact
    def __call__(
        self,
        x_BxTxD,
        positions_BxT,
        *,
        impl: str = "dense",
        block_size: int = 512,
        rotation: Optional[Rotation] = None,
        bias: Optional[PositionBias] = None,
        cache: Optional[KVCache] = None,
        cache_index=None,
    ):
        d_model, H, D = x_BxTxD.shape[-1], self.num_heads, self.head_dim
        project_in = functools.partial(
            Projection, (d_model, H, D), ("embed", "heads", "kv"), 1.0 / math.sqrt(d_model), dtype=self.dtype
        )
        q, k, v = (project_in(name=n)(x_BxTxD) for n in ("query", "key", "value"))
        q, k, v = (nn.with_logical_constraint(t, ("batch", "length", "act_heads", "kv")) for t in (q, k, v))
        if rotation is not None:
            q, k = rotation.query(q, positions_BxT), rotation.key(k, positions_BxT)
        if bias is not None:
            impl = "blockwise" if bias.tile is not None else "dense"
        if cache is not None:  # a decode step: write this step's slots, attend over the whole cache
            write = lambda slots, new: jax.lax.dynamic_update_slice_in_dim(
                slots, new.astype(slots.dtype), cache_index, 1
            )
            k, v = write(cache.k, k), write(cache.v, v)
            q_index_T = cache_index + jnp.arange(q.shape[1])
            out_BxTxHxD = dense_attention(q, k, v, None if bias is None else bias.dense, q_index_T)
        elif impl == "dense":
            out_BxTxHxD = causal_attention_in_row_tiles(q, k, v, None if bias is None else bias.causal_tiles)
            if self.is_mutable_collection(ATTENTION_PROBE):  # a probe asked for the weights
                weights = causal_attention_weights(q, k, None if bias is None else bias.causal_tiles)
                self.sow(ATTENTION_PROBE, "weights_TxT", weights)
                self.sow(ATTENTION_PROBE, "rows_per_query", jnp.float32(q.shape[0] * H))
        elif impl == "blockwise":
            if bias is None:
                out_BxTxHxD = blockwise_attention(q, k, v, positions_BxT, None, block_size)
            else:
                out_BxTxHxD = blockwise_attention(q, k, v, positions_BxT, bias.tile, bias.block)
        else:
            raise ValueError(f"Unknown attention implementation {impl!r}; valid: {', '.join(IMPLEMENTATIONS)}.")
        out_std = self.out_init_scale / math.sqrt(H * D)
        out = Projection((H, D, d_model), ("heads", "kv", "embed"), out_std, n_in=2, dtype=self.dtype, name="out")
        return out(out_BxTxHxD), KVCache(k, v)
