"""Small helpers shared by the tests."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from fire.encodings import build_encoding

GEOMETRY = dict(num_heads=4, head_dim=16, d_model=64, train_len=64)


def make_encoding(name, **options):
    geometry = {k: options.pop(k) for k in list(options) if k in GEOMETRY}
    return build_encoding(name, options, **{**GEOMETRY, **geometry})


def encoding_params(enc, seq_len=64):
    """Initial (unboxed) parameters of a standalone encoding module."""
    # Parameters are created in setup(), which any hook call runs.
    variables = enc.init(jax.random.key(0), method=lambda m: m.bias_fn(seq_len) and None)
    return nn.meta.unbox(variables).get("params", {})


def bias(enc, params, q_pos, k_pos, seq_len=64):
    """``BxHxQxK`` bias of ``enc`` with ``params`` on explicit position grids."""
    q_pos, k_pos = jnp.atleast_2d(jnp.asarray(q_pos)), jnp.atleast_2d(jnp.asarray(k_pos))
    return np.asarray(enc.apply({"params": params}, method=lambda m: m.bias_fn(seq_len)(q_pos, k_pos)))


def grid(T):
    return jnp.arange(T, dtype=jnp.int32)[None]
