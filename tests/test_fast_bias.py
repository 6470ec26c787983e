"""The fast bias paths equal the reference in value and in gradient: FIRE's MLP evaluated as
the piecewise-linear function it is, and distance tables (a bias that depends on ``i - j``
alone, computed once over the distances and read along the diagonals)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import encoding_params, grid, make_encoding

from fire.encodings.fire import mlp, piecewise_linear
from fire.model import ModelConfig, Transformer
from fire.model.attention import diagonal_tile, padded_distance_table, toeplitz


def _layers(key, width=32, heads=8):
    """Random one-hidden-layer f_theta weights at PyTorch's init scale."""
    k = jax.random.split(key, 4)
    u = lambda k, shape, fan_in: jax.random.uniform(k, shape, minval=-(fan_in**-0.5), maxval=fan_in**-0.5)
    return [(u(k[0], (1, width), 1), u(k[1], (width,), 1)), (u(k[2], (width, heads), width), u(k[3], (heads,), width))]


def _assert_same_value_and_gradient(layers, x):
    """``piecewise_linear`` and ``mlp`` agree in value and in the gradient of a random linear
    functional, w.r.t. every weight and ``x``, within 1e-5."""
    cotangent = jax.random.normal(jax.random.key(7), x.shape + (layers[1][1].shape[0],))
    functional = lambda f: lambda layers, x: jnp.sum(f(layers, x) * cotangent)
    reference = jax.jit(jax.value_and_grad(functional(mlp), argnums=(0, 1)))
    fast = jax.jit(jax.value_and_grad(functional(lambda layers, x: piecewise_linear(layers)(x)), argnums=(0, 1)))
    np.testing.assert_allclose(piecewise_linear(layers)(x), mlp(layers, x), rtol=1e-5, atol=1e-5)
    (value_ref, grads_ref), (value_fast, grads_fast) = reference(layers, x), fast(layers, x)
    np.testing.assert_allclose(value_fast, value_ref, rtol=1e-5)
    for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(grads_fast), jax.tree_util.tree_leaves(grads_ref)):
        np.testing.assert_allclose(
            a, b, rtol=1e-5, atol=1e-5 * float(np.abs(b).max()), err_msg=jax.tree_util.keystr(path)
        )


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_piecewise_linear_equals_the_mlp_at_random_weights(seed):
    """Inputs of FIRE at 4x its threshold (x up to about 1.2) and beyond the unit interval."""
    x = jax.random.uniform(jax.random.key(100 + seed), (3, 50, 60), minval=-0.5, maxval=3.0)
    _assert_same_value_and_gradient(_layers(jax.random.key(seed)), x)


def test_piecewise_linear_equals_the_mlp_at_its_knots():
    """Inputs exactly at knots of rising and falling units (relu'(0) = 0 on both sides),
    repeated knots, and flat units (a = 0) with b > 0, b = 0 and b < 0."""
    (kernel, b), (W2, c2) = _layers(jax.random.key(3), width=10, heads=3)
    a = jnp.array([1.0, 2.0, -1.0, -2.0, 4.0, -4.0, 0.0, 0.0, 0.0, 0.5])
    b = jnp.array([-0.5, -1.0, 0.5, 1.0, 0.0, 0.0, 0.3, 0.0, -0.3, -0.5])  # knots 0.5 0.5 0.5 0.5 0 0 - - - 1
    layers = [(a[None], b), (W2, c2)]
    x = jnp.array([[-1.0, 0.0, 0.25, 0.5, 0.75, 1.0, 1.5]])
    _assert_same_value_and_gradient(layers, x)


def test_fire_bias_runs_the_mlp_only_when_deeper():
    """The encoding's bias equals the reference MLP on its own inputs, for the one-layer
    (piecewise-linear) and the two-layer (MLP) f_theta."""
    for depth in (1, 2):
        enc = make_encoding("fire", mlp_depth=depth, train_len=16)
        params = encoding_params(enc)

        def both(m):
            x = m.inputs_fn()(grid(48), grid(48))
            return m.bias_fn(48)(grid(48), grid(48)), jnp.transpose(mlp(m.layers, x), (0, 3, 1, 2))

        fast, reference = enc.apply({"params": params}, method=both)
        np.testing.assert_allclose(fast, reference, rtol=1e-5, atol=1e-6)


DISTANCE_ONLY = ["t5", "alibi", "kerple_log", "kerple_power", "sandwich"]
TABLED = DISTANCE_ONLY + ["fire", "fire_s"]


@pytest.mark.parametrize("Q,K", [(1, 1), (1, 5), (4, 4), (3, 7), (6, 2)])
def test_toeplitz_reads_the_diagonals_and_its_gradient_sums_them(Q, K):
    window = jax.random.normal(jax.random.key(Q * 10 + K), (2, Q + K - 1))
    out = np.asarray(toeplitz(window, Q, K))
    expected = np.stack([[[window[h, a - b + K - 1] for b in range(K)] for a in range(Q)] for h in range(2)])
    np.testing.assert_array_equal(out, expected)
    cotangent = jax.random.normal(jax.random.key(1), (2, Q, K))
    grad = jax.grad(lambda w: jnp.sum(toeplitz(w, Q, K) * cotangent))(window)
    by_diagonal = np.zeros((2, Q + K - 1))
    for a in range(Q):
        for b in range(K):
            by_diagonal[:, a - b + K - 1] += cotangent[:, a, b]
    np.testing.assert_allclose(grad, by_diagonal, rtol=1e-6, atol=1e-6)


def test_toeplitz_refuses_a_window_of_the_wrong_size():
    with pytest.raises(ValueError, match="needs 7 diagonal values"):
        toeplitz(jnp.zeros((1, 6)), 3, 5)


@pytest.mark.parametrize("pe", DISTANCE_ONLY)
def test_distance_table_tiles_equal_the_pairwise_bias(pe):
    """Every tile at every offset, including diagonal tiles whose keys after the query read
    distance 0 (as ``relative_distance`` clamps)."""
    enc = make_encoding(pe)
    params = encoding_params(enc)
    T, block = 48, 16

    def both(m):
        padded = padded_distance_table(m.distance_bias(T), T, block - 1)
        tiles = {
            (qi, ki): diagonal_tile(padded, (qi - ki) * block, block, block) for qi in range(3) for ki in range(qi + 1)
        }
        return tiles, m.bias_fn(T)(grid(T), grid(T))

    tiles, full = enc.apply({"params": params}, method=both)
    for (qi, ki), tile in tiles.items():
        expected = full[:, :, qi * block : (qi + 1) * block, ki * block : (ki + 1) * block]
        np.testing.assert_allclose(tile, expected, rtol=1e-6, atol=1e-6, err_msg=f"{pe} tile {qi, ki}")


def _fire_distance(enc, params, T):
    return enc.apply({"params": params}, method=lambda m: m.distance_bias(T))


def test_fire_distance_table_covers_the_rows_up_to_its_threshold():
    enc = make_encoding("fire", train_len=16)  # L = 16
    params = encoding_params(enc)
    distance = _fire_distance(enc, params, 32)
    assert float(distance.up_to_row) == 16.0
    table = np.asarray(enc.apply({"params": params}, method=lambda m: m.distance_bias(32).table(32)))
    full = np.asarray(enc.apply({"params": params}, method=lambda m: m.bias_fn(32)(grid(32), grid(32))))[0]
    for i in range(17):  # rows 0..L: the table on the diagonals, bit for bit
        np.testing.assert_allclose(full[:, i, : i + 1], table[:, i::-1], rtol=1e-6, atol=1e-7)
    assert not np.allclose(full[:, 20, :21], table[:, 20::-1], atol=1e-4)  # past L it does not hold


@pytest.mark.parametrize(
    "options,up_to_row",
    [
        (dict(interpolate=False), None),  # psi(i - j) alone: every row
        (dict(normalizer_cap=8.0), np.inf),  # cap below L: psi(cap) on every row
        (dict(normalizer_cap=64.0), 16.0),  # cap above L: the threshold decides
        (dict(threshold=False), "none"),  # psi(i) changes with every row: no table
    ],
)
def test_fire_distance_table_by_option(options, up_to_row):
    enc = make_encoding("fire", train_len=16, **options)
    params = encoding_params(enc)
    distance = _fire_distance(enc, params, 32)
    if up_to_row == "none":
        assert distance is None
        return
    assert (distance.up_to_row is None) if up_to_row is None else float(distance.up_to_row) == up_to_row
    rows = 32 if up_to_row is None or np.isinf(up_to_row) else int(up_to_row) + 1
    table = np.asarray(enc.apply({"params": params}, method=lambda m: m.distance_bias(32).table(32)))
    full = np.asarray(enc.apply({"params": params}, method=lambda m: m.bias_fn(32)(grid(32), grid(32))))[0]
    for i in range(rows):
        np.testing.assert_allclose(full[:, i, : i + 1], table[:, i::-1], rtol=1e-6, atol=1e-7)


def _model(pe, train_len):
    cfg = ModelConfig(
        vocab_size=50, num_layers=1, d_model=32, num_heads=4, d_ff=64, train_len=train_len, pe=pe, block_size=16
    )
    model = Transformer(cfg)
    return model, model.init(jax.random.key(0), jnp.zeros((1, 8), jnp.int32))["params"]


CASES = [(pe, 64) for pe in DISTANCE_ONLY] + [(pe, L) for pe in ("fire", "fire_s") for L in (64, 20)]


def _tables_and_pairwise(pe, train_len, impl, grad: bool):
    """Logits (and parameter gradients) with implicit positions (tables) and with the same
    positions given explicitly (pairwise), at 40 tokens (blockwise: 3 blocks, one ragged)."""
    model, params = _model(pe, train_len)
    T = 40
    x = jax.random.randint(jax.random.key(1), (2, T), 0, 50)
    explicit = jnp.broadcast_to(jnp.arange(T), (2, T))

    def loss(p, positions):
        logits = model.apply({"params": p}, x, positions, impl=impl)
        return jnp.mean(jax.nn.log_softmax(logits)[..., 0] * jnp.arange(T)), logits

    run = jax.value_and_grad(loss, has_aux=True) if grad else lambda p, positions: ((None, loss(p, positions)[1]), None)
    ((_, tables), grads_tables), ((_, pairwise), grads_pairwise) = jax.jit(lambda p: (run(p, None), run(p, explicit)))(
        params
    )
    np.testing.assert_allclose(tables, pairwise, rtol=1e-5, atol=1e-5)
    if grad:
        leaves = zip(jax.tree_util.tree_leaves_with_path(grads_tables), jax.tree_util.tree_leaves(grads_pairwise))
        for (path, a), b in leaves:
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6, err_msg=jax.tree_util.keystr(path))


@pytest.mark.parametrize("pe,train_len", CASES)  # FIRE's L above every row (64), or below some (20: pairwise rows)
def test_dense_path_with_tables_equals_pairwise_in_value_and_gradient(pe, train_len):
    _tables_and_pairwise(pe, train_len, "dense", grad=True)


@pytest.mark.parametrize("pe,train_len", CASES)
def test_blockwise_path_with_tables_equals_pairwise(pe, train_len):
    _tables_and_pairwise(pe, train_len, "blockwise", grad=False)


def test_blockwise_fire_gradient_with_tables_and_pairwise_blocks():
    _tables_and_pairwise("fire", 20, "blockwise", grad=True)
