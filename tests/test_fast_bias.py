"""The fast bias paths equal the reference in value and in gradient: FIRE's MLP evaluated as
the piecewise-linear function it is, and distance tables (a bias that depends on ``i - j``
alone, computed once over the distances and read along the diagonals)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import encoding_params, grid, make_encoding

from fire.encodings.base import DistanceBias
from fire.encodings.fire import FIRE, mlp, piecewise_linear
from fire.model import ModelConfig, Transformer
from fire.model.position_bias import diagonal_tile, padded_distance_table, table_or_pairwise, toeplitz


def _layers(key, width=32, heads=8):
    """Random one-hidden-layer f_theta weights at PyTorch's init scale."""
    k = jax.random.split(key, 4)
    u = lambda k, shape, fan_in: jax.random.uniform(k, shape, minval=-(fan_in**-0.5), maxval=fan_in**-0.5)
    return [(u(k[0], (1, width), 1), u(k[1], (width,), 1)), (u(k[2], (width, heads), width), u(k[3], (heads,), width))]


def _assert_same_value_and_gradient(layers, x):
    """``piecewise_linear`` and ``mlp`` agree per element, in value and in the gradient of a
    random linear functional w.r.t. ``x``, in float32 within 1e-5; and in that functional's
    value and its gradient w.r.t. every weight, in float64 within 1e-9.

    The functional and its weight gradients are sums over every element (72,000 terms of
    magnitude ~1 at random weights, summing to ~0.4): in float32 their rounding, ~1e-5 of
    the result, depends on the order XLA sums in, which differs between machines. In float64
    it is ~1e-12, so a difference past 1e-9 is a difference between the two functions (a
    unit on the wrong piece changes the result by ~1e-2)."""
    H = layers[1][1].shape[0]
    cotangent = jax.random.normal(jax.random.key(7), x.shape + (H,))
    fast = lambda layers, x: piecewise_linear(layers)(x)
    functional = lambda f: lambda layers, x: jnp.sum(f(layers, x) * cotangent.astype(x.dtype))

    @jax.jit
    def per_element(layers, x):  # the input gradient sums over the H heads only
        return [(f(layers, x), jax.grad(functional(f), argnums=1)(layers, x)) for f in (fast, mlp)]

    for a, b in zip(*per_element(layers, x)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    with jax.enable_x64(True):
        layers, x = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), (layers, x))
        both = jax.jit(
            lambda layers, x: [jax.value_and_grad(functional(f), argnums=(0, 1))(layers, x) for f in (fast, mlp)]
        )
        (value_fast, grads_fast), (value_ref, grads_ref) = both(layers, x)
        np.testing.assert_allclose(value_fast, value_ref, rtol=1e-9)
        for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(grads_fast), jax.tree_util.tree_leaves(grads_ref)):
            assert a.dtype == np.float64
            np.testing.assert_allclose(
                a, b, rtol=1e-9, atol=1e-9 * float(np.abs(b).max()), err_msg=jax.tree_util.keystr(path)
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
        (table,) = m.distance_bias(T)  # one table, on every row
        assert table.from_row is None and table.up_to_row is None
        padded = padded_distance_table(table, T, block - 1)
        tiles = {
            (qi, ki): diagonal_tile(padded, (qi - ki) * block, block, block) for qi in range(3) for ki in range(qi + 1)
        }
        return tiles, m.bias_fn(T)(grid(T), grid(T))

    tiles, full = enc.apply({"params": params}, method=both)
    for (qi, ki), tile in tiles.items():
        expected = full[:, :, qi * block : (qi + 1) * block, ki * block : (ki + 1) * block]
        np.testing.assert_allclose(tile, expected, rtol=1e-6, atol=1e-6, err_msg=f"{pe} tile {qi, ki}")


def _bound(value):
    return None if value is None else float(value)


@pytest.mark.parametrize(
    "options,row_ranges",
    [
        (dict(), [(None, 16.0)]),  # the rows up to the threshold L = 16
        (dict(interpolate=False), [(None, None)]),  # psi(i - j) alone: every row
        (dict(normalizer_cap=8.0), [(None, np.inf), (8.0, None)]),  # cap below L: psi(cap) on every row
        (dict(normalizer_cap=48.0), [(None, 16.0), (48.0, None)]),  # cap above L: rows up to L, rows from the cap
        (dict(threshold=False, normalizer_cap=48.0), [(48.0, None)]),  # psi(min(i, cap)): rows from the cap
        (dict(threshold=False), []),  # psi(i) changes with every row: no table
    ],
)
def test_fire_distance_tables_hold_on_their_rows_and_only_there(options, row_ranges):
    """Each table equals the pairwise bias along the diagonals of its rows, bit for bit up to
    rounding; the rows between the threshold and the cap depend on the row as well."""
    T = 80
    enc = make_encoding("fire", train_len=16, **options)  # L = 16
    params = encoding_params(enc)

    def tables_and_full(m):
        found = m.distance_bias(T)
        return [(t.from_row, t.up_to_row) for t in found], [t.table(T) for t in found], m.bias_fn(T)(grid(T), grid(T))

    ranges, tables, full = enc.apply({"params": params}, method=tables_and_full)
    assert [(_bound(a), _bound(b)) for a, b in ranges] == row_ranges
    full = np.asarray(full)[0]
    for (from_row, up_to_row), table in zip(row_ranges, tables):
        first, last = int(from_row or 0), int(min(up_to_row or np.inf, T - 1))
        for i in range(first, last + 1):
            np.testing.assert_allclose(full[:, i, : i + 1], table[:, i::-1], rtol=1e-6, atol=1e-7, err_msg=f"row {i}")
    if options.get("interpolate", True) and options.get("normalizer_cap", 100.0) > 16.0:
        for table in tables:  # row 30 lies past L = 16 and below the cap (48)
            assert not np.allclose(full[:, 30, :31], table[:, 30::-1], atol=1e-4)


def test_each_tile_reads_the_first_table_that_holds_on_all_its_rows():
    """The choice for rows ``first..last``: a Python branch where the bounds are Python
    numbers, a switch on traced ones (FIRE's learned threshold), pairwise where none holds."""
    below_L = DistanceBias(None, up_to_row=jnp.float32(20.0))  # traced-like: a JAX scalar
    from_cap = DistanceBias(None, from_row=60.0)
    every_row = DistanceBias(None)
    choose = lambda tables, first, last: int(
        table_or_pairwise(tables, first, last, lambda k: jnp.int32(k), lambda: jnp.int32(-1))
    )
    tables = (below_L, from_cap)
    assert [choose(tables, *rows) for rows in [(0, 15), (16, 20), (16, 21), (48, 63), (60, 75), (64, 149)]] == [
        0, 0, -1, -1, 1, 1,
    ]  # fmt: skip
    assert choose((every_row, from_cap), 70, 80) == 0 and choose((), 0, 1) == -1
    assert choose((from_cap,), 59, 70) == -1 and choose((from_cap,), 60, 70) == 0
    traced = jax.jit(lambda first, last: table_or_pairwise(tables, first, last, lambda k: jnp.int32(k), lambda: -1))
    assert [int(traced(*rows)) for rows in [(0, 15), (16, 21), (64, 79)]] == [0, -1, 1]


def _model(pe, train_len, **options):
    cfg = ModelConfig(
        vocab_size=50, num_layers=1, d_model=32, num_heads=4, d_ff=64, train_len=train_len, pe=pe, block_size=16,
        pe_options=options,
    )  # fmt: skip
    model = Transformer(cfg)
    return model, model.init(jax.random.key(0), jnp.zeros((1, 8), jnp.int32))["params"]


# At T = 150 the dense path's row tiles are rows 0-63, 64-127 and 128-149, the blockwise
# path's blocks 16 rows (the last ragged): FIRE's tables hold on some of them.
T_MIXED = 150
FIRE_CASES = [
    ("fire", 64, {}),  # tables on rows 0-63: the first row tile, the first 4 blocks
    ("fire", 100, dict(threshold=False, normalizer_cap=60.0)),  # from the cap: rows 64-149 in both
    ("fire", 20, dict(normalizer_cap=100.0)),  # rows 0-15 (a block); from the cap: rows 128-149 / 112-149
    ("fire", 64, dict(normalizer_cap=16.0)),  # the cap below L: psi(cap) on every row
    ("fire_s", 64, {}),
]
CASES = [(pe, 64, {}) for pe in DISTANCE_ONLY] + FIRE_CASES


def _tables_and_pairwise(pe, train_len, options, impl, grad: bool):
    """Logits (and parameter gradients) with implicit positions (tables where they hold) and
    with the same positions given explicitly (pairwise everywhere), at ``T_MIXED`` tokens."""
    model, params = _model(pe, train_len, **options)
    T = T_MIXED
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
            # atol: the output bias's gradient is 0 (softmax ignores a constant per row), a sum
            # of ~1e4 float32 terms that leaves ~1e-6 of rounding.
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5, err_msg=jax.tree_util.keystr(path))


@pytest.mark.parametrize("pe,train_len,options", CASES)
def test_dense_path_with_tables_equals_pairwise_in_value_and_gradient(pe, train_len, options):
    _tables_and_pairwise(pe, train_len, options, "dense", grad=True)


@pytest.mark.parametrize("pe,train_len,options", CASES)
def test_blockwise_path_with_tables_equals_pairwise(pe, train_len, options):
    _tables_and_pairwise(pe, train_len, options, "blockwise", grad=False)


def test_fire_rows_past_the_cap_are_never_evaluated_pairwise(monkeypatch):
    """Without the threshold, the dense path's row tiles at or past the cap (rows 64-127 and
    128-149 with the cap at 60) read the table: ``bias_fn`` meets only the first tile."""
    model, params = _model("fire", 100, threshold=False, normalizer_cap=60.0)
    calls = []
    original = FIRE.bias_fn

    def counting_bias_fn(self, seq_len):
        fn = original(self, seq_len)
        return lambda q_pos, k_pos: calls.append(q_pos.shape) or fn(q_pos, k_pos)

    monkeypatch.setattr(FIRE, "bias_fn", counting_bias_fn)
    jax.eval_shape(lambda p, x: model.apply({"params": p}, x), params, jnp.zeros((2, T_MIXED), jnp.int32))
    assert calls == [(1, 64)]


@pytest.mark.slow  # 10 s
def test_blockwise_fire_gradient_with_tables_and_pairwise_blocks():
    """Blocks from both of FIRE's tables (rows up to L = 20, rows from the cap at 100) and
    pairwise blocks between."""
    _tables_and_pairwise("fire", 20, dict(normalizer_cap=100.0), "blockwise", grad=True)
