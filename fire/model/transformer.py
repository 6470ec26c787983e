"""A pre-norm decoder-only Transformer LM whose position encoding is pluggable.

Parameters are float32 and carry logical axis names (``vocab``, ``embed``, ``mlp``,
``heads``, ``kv``) so a training loop can shard them by rules; compute runs in float32 or
bfloat16 with float32 softmax, norms and logits.

Besides the forward, :meth:`Transformer.prefill` and :meth:`Transformer.decode` are the two
halves of generation with a KV cache (driven by ``fire.model.generate``); all three run
the same blocks.
"""

import math
from typing import Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from fire.model.attention import CausalSelfAttention, KVCache, cache_positions
from fire.model.config import DTYPES, ModelConfig
from fire.model.layers import Projection, partitioned_normal
from fire.model.position_bias import position_bias


class MLP(nn.Module):
    cfg: ModelConfig

    @nn.compact
    def __call__(self, x_BxTxD):
        cfg, dtype = self.cfg, DTYPES[self.cfg.dtype]
        h = Projection((cfg.d_model, cfg.d_ff), ("embed", "mlp"), 1.0 / math.sqrt(cfg.d_model), dtype=dtype, name="wi")(
            x_BxTxD
        )
        h = nn.with_logical_constraint(jax.nn.gelu(h), ("batch", "length", "act_mlp"))
        out_std = 1.0 / math.sqrt(cfg.d_ff) / math.sqrt(2 * cfg.num_layers)
        return Projection((cfg.d_ff, cfg.d_model), ("mlp", "embed"), out_std, dtype=dtype, name="wo")(h)


def _norm(name):
    return nn.RMSNorm(
        dtype=jnp.float32, scale_init=nn.with_logical_partitioning(nn.initializers.ones, ("embed",)), name=name
    )


class Block(nn.Module):
    """Pre-norm block. ``shared_encoding`` is the model's encoding when one instance
    serves every layer; otherwise the block owns its own."""

    cfg: ModelConfig
    shared_encoding: Optional[nn.Module] = None

    def setup(self):
        if self.shared_encoding is None:
            self.own_encoding = self.cfg.build_encoding()
        self.attn_norm = _norm("attn_norm")
        self.attention = CausalSelfAttention(
            self.cfg.num_heads,
            self.cfg.dim_per_head,
            DTYPES[self.cfg.dtype],
            out_init_scale=1.0 / math.sqrt(2 * self.cfg.num_layers),
        )
        self.mlp_norm = _norm("mlp_norm")
        self.mlp = MLP(self.cfg)

    @property
    def encoding(self):
        return self.shared_encoding if self.shared_encoding is not None else self.own_encoding

    def __call__(
        self,
        x_BxTxD,
        positions_BxT,
        seq_len: int,
        impl: str,
        shared_bias=None,
        cache=None,
        cache_index=None,
        ordinary_positions: bool = False,
    ):
        """``(x_BxTxD, KVCache)``; ``cache`` and ``cache_index`` decode (see CausalSelfAttention);
        ``ordinary_positions``: ``positions_BxT`` is ``0..T-1`` (distance tables apply)."""
        dtype = DTYPES[self.cfg.dtype]
        enc = self.encoding
        bias = (
            shared_bias
            if self.shared_encoding is not None
            else _bias(enc, seq_len, positions_BxT, impl, self.cfg.block_size, cache, ordinary_positions)
        )
        h, kv = self.attention(
            self.attn_norm(x_BxTxD).astype(dtype),
            positions_BxT,
            impl=impl,
            block_size=self.cfg.block_size,
            rotation=enc.rotary(seq_len),
            bias=bias,
            cache=cache,
            cache_index=cache_index,
        )
        x_BxTxD = x_BxTxD + h.astype(jnp.float32)
        x_BxTxD = x_BxTxD + self.mlp(self.mlp_norm(x_BxTxD).astype(dtype)).astype(jnp.float32)
        return nn.with_logical_constraint(x_BxTxD, ("batch", "length", "act_embed")), kv


def _bias(enc, seq_len, positions_BxT, impl, block_size, cache, ordinary_positions):
    tables = enc.distance_bias(seq_len) if ordinary_positions and cache is None else ()
    return position_bias(enc.bias_fn(seq_len), positions_BxT, impl, cache_positions(cache), tables, block_size)


class Transformer(nn.Module):
    """``tokens_BxT -> logits_BxTxV`` (float32).

    ``positions_BxT`` defaults to ``0..T-1`` shared by the batch (shape ``1xT``: position
    biases are then computed once, not per example). ``seq_len`` (default T) is the window
    length the encodings see (interpolation scale, table checks). ``impl`` picks the
    attention path (default ``cfg.attention``).
    """

    cfg: ModelConfig

    def setup(self):
        cfg = self.cfg
        self.embed = nn.Embed(cfg.vocab_size, cfg.d_model, embedding_init=partitioned_normal(1.0, ("vocab", "embed")))
        self.encoding = cfg.build_encoding() if cfg.shared_encoding else None
        self.blocks = [Block(cfg, shared_encoding=self.encoding) for _ in range(cfg.num_layers)]
        self.final_norm = _norm("final_norm")
        if not cfg.tie_embeddings:
            self.head = Projection((cfg.d_model, cfg.vocab_size), ("embed", "vocab"), 1.0 / math.sqrt(cfg.d_model))

    def __call__(
        self,
        tokens_BxT,
        positions_BxT=None,
        *,
        seq_len: Optional[int] = None,
        impl: Optional[str] = None,
        return_hidden: bool = False,
    ):
        hidden = self.hidden(tokens_BxT, positions_BxT, seq_len=seq_len, impl=impl)
        return hidden if return_hidden else self.logits(hidden)

    def hidden(self, tokens_BxT, positions_BxT=None, *, seq_len=None, impl=None):
        """The final-normed hidden states ``BxTxD`` (float32)."""
        T = tokens_BxT.shape[1]
        ordinary = positions_BxT is None
        if ordinary:
            positions_BxT = jnp.arange(T, dtype=jnp.int32)[None]
        return self._forward(tokens_BxT, positions_BxT, seq_len or T, impl or self.cfg.attention, ordinary=ordinary)[0]

    def prefill(self, prompt_BxP, max_len: int, *, impl: Optional[str] = None):
        """The start of generation: the ordinary forward over a prompt at positions ``0..P-1``.

        Returns ``(logits_BxV, caches)``: the last position's logits and one
        :class:`KVCache` per layer of ``max_len`` slots (``BxSxHxD``, S = max_len), the
        prompt's keys (rotated) and values in slots ``0..P-1``, zeros after. The encodings
        see ``seq_len = max_len``, the total length generation will reach.

        Raises:
          fire.encodings.LengthError: ``max_len`` is past what the encoding can model.
        """
        P = prompt_BxP.shape[1]
        positions_1xP = jnp.arange(P, dtype=jnp.int32)[None]
        hidden_BxPxD, kvs = self._forward(prompt_BxP, positions_1xP, max_len, impl or self.cfg.attention, ordinary=True)
        pad = lambda x: jnp.pad(x, [(0, 0), (0, max_len - P), (0, 0), (0, 0)])
        return self.logits(hidden_BxPxD[:, -1]), tuple(KVCache(pad(kv.k), pad(kv.v)) for kv in kvs)

    def decode(self, token_Bx1, index, caches):
        """One step of generation: the token at position ``index`` (an int32 scalar, traced
        or not) attends over cache slots ``0..index``, its own keys and values written at
        slot ``index``. Returns ``(logits_BxV, caches)`` with the caches updated. The
        encodings see ``seq_len`` = the caches' size, as in :meth:`prefill`; a position bias is
        one row per step (per layer for per-layer encodings), never per example."""
        positions_1x1 = jnp.reshape(index, (1, 1)).astype(jnp.int32)
        seq_len = caches[0].k.shape[1]
        hidden_Bx1xD, caches = self._forward(token_Bx1, positions_1x1, seq_len, "dense", caches, index)
        return self.logits(hidden_Bx1xD[:, 0]), caches

    def _forward(
        self, tokens_BxT, positions_BxT, seq_len: int, impl: str, caches=None, cache_index=None, ordinary=False
    ):
        """Embedding, blocks and final norm: ``(hidden_BxTxD, per-layer KVCache)``. ``ordinary``:
        ``positions_BxT`` is ``0..T-1`` (position biases may then come from distance tables)."""
        x = self.embed(tokens_BxT).astype(jnp.float32)
        shared_bias = None
        if self.encoding is not None:
            absolute = self.encoding.embed(positions_BxT, seq_len)
            if absolute is not None:
                x = x + absolute
            # Once, for all layers (a decode step's: one row against every cache slot).
            first_cache = caches[0] if caches else None
            shared_bias = _bias(self.encoding, seq_len, positions_BxT, impl, self.cfg.block_size, first_cache, ordinary)
        x = nn.with_logical_constraint(x, ("batch", "length", "act_embed"))
        kvs = []
        for block, cache in zip(self.blocks, caches or [None] * len(self.blocks)):
            x, kv = block(x, positions_BxT, seq_len, impl, shared_bias, cache, cache_index, ordinary)
            kvs.append(kv)
        return self.final_norm(x), tuple(kvs)

    def logits(self, hidden_BxTxD):
        if self.cfg.tie_embeddings:
            # Scaled so that logits start O(1) with unit-variance embeddings.
            return self.embed.attend(hidden_BxTxD) / math.sqrt(self.cfg.d_model)
        return self.head(hidden_BxTxD)


def abstract_params(cfg: ModelConfig):
    """The model's parameters as shapes and dtypes (``jax.ShapeDtypeStruct``), unboxed, with
    no memory allocated."""
    tokens = jnp.zeros((1, 8), jnp.int32)
    return nn.meta.unbox(jax.eval_shape(lambda: Transformer(cfg).init(jax.random.key(0), tokens)["params"]))


def count_params(params) -> int:
    return sum(x.size for x in jax.tree_util.tree_leaves(params))


def matmul_params(cfg: ModelConfig) -> int:
    """Parameters that take part in a matmul per token (the input lookup does not)."""
    attn = 4 * cfg.d_model * cfg.num_heads * cfg.dim_per_head
    mlp = 2 * cfg.d_model * cfg.d_ff
    return cfg.num_layers * (attn + mlp) + cfg.d_model * cfg.vocab_size


def train_flops_per_token(cfg: ModelConfig, seq_len: int) -> float:
    """PaLM's model FLOPs (Chowdhery et al., App. B): ``6 N + 12 L H Q T`` per token, the
    attention counted without a causal discount. Encoding costs are not counted."""
    return 6 * matmul_params(cfg) + 12 * cfg.num_layers * cfg.num_heads * cfg.dim_per_head * seq_len


def encoding_scopes(params) -> dict:
    """The encoding's parameters: ``{'shared': ...}`` for an encoding shared by all layers,
    else ``{'blocks_<k>': ...}`` in layer order; empty for parameter-free encodings."""
    if "encoding" in params:
        return {"shared": params["encoding"]} if params["encoding"] else {}
    return {
        name: block["own_encoding"]
        for name, block in sorted(params.items())
        if name.startswith("blocks_") and block.get("own_encoding")
    }


def encoding_summary(cfg: ModelConfig, params) -> dict:
    """The learned encoding parameters worth watching (FIRE's c and L, KERPLE's r1 and r2),
    as ``{'pe/<layer>/<name>[/h<k>]': scalar}``; empty for parameter-free encodings."""
    out = {}
    for layer, enc_params in encoding_scopes(params).items():
        values = cfg.build_encoding().apply({"params": enc_params}, method=lambda m: m.summary())
        for name, value in values.items():
            value = jnp.atleast_1d(value)
            if value.size == 1:
                out[f"pe/{layer}/{name}"] = value[0]
            else:
                out.update({f"pe/{layer}/{name}/h{h}": v for h, v in enumerate(value)})
    return out
