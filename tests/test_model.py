"""The decoder-only LM with every encoding: causality, the two attention paths, lengths."""

import dataclasses
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import encoding_params, encodings_in_tiers, make_encoding

from fire import xla
from fire.encodings import NAMES, LengthError
from fire.encodings.fire import FIRE
from fire.model import SIZES, ModelConfig, Transformer, count_params
from fire.model.attention import causal_attention_in_row_tiles, dense_attention
from fire.model.layers import project
from fire.model.position_bias import causal_row_tiles, position_bias

TRAIN_LEN = 32
VOCAB = 50


def tiny(pe, **kwargs):
    defaults = dict(
        vocab_size=VOCAB, num_layers=2, d_model=32, num_heads=4, d_ff=64, train_len=TRAIN_LEN, pe=pe, block_size=16
    )
    cfg = ModelConfig(**{**defaults, **kwargs})
    model = Transformer(cfg)
    params = model.init(jax.random.key(0), jnp.zeros((1, 8), jnp.int32))["params"]
    return model, params


def tokens(B, T, seed=0):
    return jax.random.randint(jax.random.key(seed), (B, T), 0, VOCAB)


# In the fast tier: per-layer and shared biases, a distance table, rotary, a learned table, none.
@pytest.fixture(scope="module", params=encodings_in_tiers(("fire", "fire_s", "t5", "alibi", "rope", "learned", "nope")))
def pe_model(request):
    return request.param, *tiny(request.param)


def test_no_future_leakage(pe_model):
    pe, model, params = pe_model
    x = tokens(2, 24)
    changed = x.at[:, 13:].set((x[:, 13:] + 7) % VOCAB)
    for impl in ("dense", "blockwise"):
        a = model.apply({"params": params}, x, impl=impl)
        b = model.apply({"params": params}, changed, impl=impl)
        assert np.allclose(a[:, :13], b[:, :13], atol=1e-5), impl
        assert not np.allclose(a[:, 13:], b[:, 13:], atol=1e-3), impl


def test_dense_and_blockwise_agree_off_block_multiple(pe_model):
    pe, model, params = pe_model
    T = 27 if pe == "learned" else 37  # not multiples of the 16-token block
    x = tokens(3, T, seed=1)
    dense = model.apply({"params": params}, x, impl="dense")
    blockwise = model.apply({"params": params}, x, impl="blockwise")
    assert np.allclose(dense, blockwise, atol=2e-5), float(jnp.abs(dense - blockwise).max())
    # Per-example position ids (offsets) take the same two paths.
    positions = jnp.arange(T)[None] + jnp.array([[0], [5], [11]])
    if pe != "learned":
        dense = model.apply({"params": params}, x, positions, impl="dense")
        blockwise = model.apply({"params": params}, x, positions, impl="blockwise")
        assert np.allclose(dense, blockwise, atol=2e-5)


# Encodings with an additive bias: t5 alibi kerple_log kerple_power sandwich fire fire_s.
BIASED = [
    pe
    for pe in NAMES
    if make_encoding(pe).apply(
        {"params": encoding_params(make_encoding(pe))}, method=lambda m: m.bias_fn(64) is not None
    )
]


@pytest.mark.parametrize("pe", BIASED)
def test_the_dense_path_bias_is_the_full_grid_on_the_causal_triangle(pe):
    enc = make_encoding(pe)
    params = encoding_params(enc)
    bias_fn = lambda q, k: enc.apply({"params": params}, method=lambda m: m.bias_fn(64)(q, k))
    T = 150  # row tiles of 64 (BIAS_TILE_ROWS): 0-63, 64-127, 128-149 (ragged)
    positions_BxT = jnp.arange(T)[None] + jnp.array([[0], [29]])  # per-example offsets
    full = np.asarray(bias_fn(positions_BxT, positions_BxT))
    tiles = position_bias(bias_fn, positions_BxT, "dense").causal_tiles  # no tables: pairwise
    assert [t.shape for t in tiles] == [(2, 4, 64, 64), (2, 4, 64, 128), (2, 4, 22, 150)]
    for (start, stop), tile in zip([(0, 64), (64, 128), (128, 150)], tiles):
        lower = np.tril(np.ones((T, T), bool))[start:stop, :stop]
        want = np.where(lower, full[:, :, start:stop, :stop], 0)
        np.testing.assert_allclose(np.where(lower, tile, 0), want, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("T,tile", [(20, 8), (16, 4), (5, 64)])
def test_attention_in_row_tiles_equals_the_untiled_softmax_in_value_and_gradient(T, tile):
    """Tiles skip the keys right of their last row; a ragged last tile and a single tile
    included. The bias's entries right of the diagonal are garbage: attention masks them."""
    B, H, D = 2, 3, 4
    q, k, v, g = (jax.random.normal(jax.random.key(i), (B, T, H, D)) for i in range(4))
    bias = jax.random.normal(jax.random.key(5), (1, H, T, T))

    def loss(attend, q, k, v, bias):
        return jnp.sum(attend(q, k, v, bias) * g)

    def tiled(q, k, v, bias):
        tiles = [bias[:, :, start:stop, :stop] for start, stop in causal_row_tiles(T, tile)]
        return causal_attention_in_row_tiles(q, k, v, tiles)  # the tiles set the tile size

    want = jax.jit(jax.value_and_grad(functools.partial(loss, dense_attention), argnums=(0, 1, 2, 3)))(q, k, v, bias)
    got = jax.jit(jax.value_and_grad(functools.partial(loss, tiled), argnums=(0, 1, 2, 3)))(q, k, v, bias)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    assert float(jnp.abs(got[1][3][0, :, 0, 1:]).max()) == 0.0  # no gradient reaches masked entries
    without_bias = causal_attention_in_row_tiles(q, k, v, tile=tile)
    np.testing.assert_allclose(without_bias, dense_attention(q, k, v), rtol=1e-5, atol=1e-5)


def test_attention_in_row_tiles_refuses_a_tile_size_other_than_the_bias_tiles():
    q = jnp.zeros((1, 8, 2, 4))
    tiles = [jnp.zeros((1, 2, stop - start, stop)) for start, stop in causal_row_tiles(8, 4)]
    with pytest.raises(ValueError, match="tiles of 4 rows"):
        causal_attention_in_row_tiles(q, q, q, tiles, tile=2)


def test_forward_at_four_times_training_length_is_finite(pe_model):
    pe, model, params = pe_model
    x = tokens(1, 4 * TRAIN_LEN)
    if pe == "learned":
        with pytest.raises(LengthError):
            model.apply({"params": params}, x)
        return
    for impl in ("dense", "blockwise"):
        assert np.isfinite(model.apply({"params": params}, x, impl=impl)).all()


def test_explicit_position_grid_equals_implicit(pe_model):
    pe, model, params = pe_model
    x = tokens(2, 20)
    implicit = model.apply({"params": params}, x)
    explicit = model.apply({"params": params}, x, jnp.broadcast_to(jnp.arange(20), (2, 20)))
    assert np.allclose(implicit, explicit, atol=1e-6)


def test_positions_matter_except_for_nope(pe_model):
    pe, model, params = pe_model
    x = tokens(1, 20)
    shift = 3 if pe == "learned" else 600  # FIRE is shift-invariant only below its threshold L (512)
    shifted = model.apply({"params": params}, x, jnp.arange(20)[None] + shift)
    same = np.allclose(model.apply({"params": params}, x), shifted, atol=1e-5)
    # Relative encodings are shift-invariant; absolute ones and FIRE's normaliser are not.
    invariant = {"nope", "rope", "t5", "alibi", "kerple_log", "kerple_power", "sandwich", "rope_pi", "yarn"}
    assert same == (pe in invariant), pe


@pytest.mark.parametrize("pe,per_layer_sets", [("fire", 2), ("fire_s", 1), ("t5", 1), ("kerple_log", 2)])
def test_encoding_parameter_sets(pe, per_layer_sets):
    model, params = tiny(pe)
    flat = jax.tree_util.tree_flatten_with_path(nn.meta.unbox(params))[0]
    owners = {
        tuple(str(k.key) for k in path[:-1])
        for path, _ in flat
        if any(name in str(path[-1]) for name in ("L_multiplier", "table", "raw_r1"))
    }
    assert len(owners) == per_layer_sets, owners


def test_fire_bias_computed_once_per_layer_never_per_example(monkeypatch):
    """Once per layer (fire) or per forward (fire_s), in causal row tiles, with position
    batch 1 however many examples there are."""
    calls = []
    original = FIRE.bias_fn

    def counting_bias_fn(self, seq_len):
        fn = original(self, seq_len)

        def counted(q_pos, k_pos):
            calls.append(q_pos.shape)
            return fn(q_pos, k_pos)

        return counted

    monkeypatch.setattr(FIRE, "bias_fn", counting_bias_fn)
    T = 150  # row tiles 0-63, 64-127, 128-149
    for pe, computations in [("fire", 2), ("fire_s", 1)]:
        model, params = tiny(pe)
        calls.clear()
        jax.make_jaxpr(lambda p, x: model.apply({"params": p}, x))(params, tokens(4, T))
        assert calls == [(1, 64), (1, 64), (1, 22)] * computations, (pe, calls)


@pytest.mark.parametrize(
    "equation, n_in, x_shape, k_shape",
    [
        ("btd,df->btf", 1, (2, 5, 6), (6, 7)),
        ("btd,dhk->bthk", 1, (2, 5, 6), (6, 3, 4)),
        ("bthk,hkd->btd", 2, (2, 5, 3, 4), (3, 4, 6)),
    ],
)
def test_projection_backward_equals_autodiff(equation, n_in, x_shape, k_shape):
    kx, kk, kg = jax.random.split(jax.random.key(0), 3)
    x, kernel = jax.random.normal(kx, x_shape), jax.random.normal(kk, k_shape)
    out = jnp.einsum(equation, x, kernel)
    g = jax.random.normal(kg, out.shape)
    np.testing.assert_allclose(project(x, kernel, n_in), out, rtol=1e-5, atol=1e-5)
    ours = jax.grad(lambda x, k: jnp.sum(project(x, k, n_in) * g), argnums=(0, 1))(x, kernel)
    autodiff = jax.grad(lambda x, k: jnp.sum(jnp.einsum(equation, x, k) * g), argnums=(0, 1))(x, kernel)
    for a, b in zip(ours, autodiff):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_cpu_compiler_options_yield_to_xla_flags(monkeypatch):
    monkeypatch.delenv("XLA_FLAGS", raising=False)
    assert xla.compiler_options() == {"xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT"}
    assert float(xla.jit(lambda a: (a @ a).sum(0).max())(jnp.eye(3))) == 1.0  # the option compiles
    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_experimental_ynn_fusion_type=")
    assert xla.compiler_options() == {}


def test_deterministic_given_seed_and_seed_matters():
    cfg = ModelConfig(vocab_size=VOCAB, num_layers=1, d_model=32, num_heads=4, d_ff=64, train_len=16, pe="fire")
    init = lambda seed: Transformer(cfg).init(jax.random.key(seed), jnp.zeros((1, 4), jnp.int32))
    a, b, c = init(0), init(0), init(1)
    same = jax.tree_util.tree_map(lambda u, v: bool(jnp.array_equal(u, v)), a, b)
    assert all(jax.tree_util.tree_leaves(same))
    assert not all(jax.tree_util.tree_leaves(jax.tree_util.tree_map(lambda u, v: bool(jnp.array_equal(u, v)), a, c)))


@pytest.mark.slow
def test_bfloat16_compute_tracks_float32():
    model32, params = tiny("fire")
    model16 = Transformer(dataclasses.replace(model32.cfg, dtype="bfloat16"))
    x = tokens(2, 24)
    a = model32.apply({"params": params}, x)
    b = model16.apply({"params": params}, x)
    assert b.dtype == jnp.float32 and float(jnp.abs(a - b).max()) < 0.1
    assert np.allclose(b, model16.apply({"params": params}, x, impl="blockwise"), atol=0.05)


def test_tied_embeddings_share_the_table():
    model, params = tiny("rope", tie_embeddings=True)
    assert "head" not in params
    assert count_params(params) < count_params(tiny("rope")[1])
    assert np.isfinite(model.apply({"params": params}, tokens(1, 8))).all()


def test_every_weight_matrix_has_logical_axis_names():
    _, params = tiny("fire")
    names = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(params, is_leaf=lambda x: isinstance(x, nn.Partitioned))[0]:
        key = "/".join(str(k.key) for k in path if hasattr(k, "key"))
        names[key] = leaf.names if isinstance(leaf, nn.Partitioned) else None
    for key, axes in names.items():
        if "encoding" in key or "L_multiplier" in key or key.endswith(("c", "_0", "_1")):
            continue
        assert axes is not None, key
    assert names["embed/embedding"] == ("vocab", "embed")
    assert names["blocks_0/attention/query/kernel"] == ("embed", "heads", "kv")


def test_named_sizes():
    assert SIZES["base"] == (12, 768, 12, 3072) and SIZES["large"] == (24, 1024, 16, 4096)
    cfg = ModelConfig.from_size("tiny", vocab_size=259, train_len=64)
    assert cfg.num_layers == 2 and cfg.dim_per_head == 32
    with pytest.raises(ValueError, match="Unknown model size 'huge'"):
        ModelConfig.from_size("huge", vocab_size=259, train_len=64)
    with pytest.raises(ValueError, match="does not divide"):
        ModelConfig(vocab_size=10, num_layers=1, d_model=30, num_heads=4, d_ff=8, train_len=8)
