"""Every encoding's math against hand-computed values."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import bias, encoding_params, grid, make_encoding

from fire.encodings import NAMES, LengthError, UnknownEncodingError, alibi_slopes, encoding_options, t5_bucket
from fire.encodings.absolute import sinusoid_table
from fire.encodings.kerple import inverse_softplus
from fire.encodings.rotary import rope_inv_freq, rotate, yarn_inv_freq, yarn_temperature
from fire.errors import ConfigError

H = 4


def test_import_fire_is_this_repository():
    import os

    import fire

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    assert os.path.dirname(os.path.abspath(fire.__file__)) == os.path.join(repo, "fire")
    assert hasattr(fire, "__version__") and not hasattr(fire, "Fire")  # python-fire's entry point


def test_registry_lists_every_encoding_and_rejects_unknown():
    assert set(NAMES) == set(
        "nope learned sinusoidal rope rope_pi yarn t5 alibi kerple_log kerple_power sandwich fire fire_s".split()
    )
    with pytest.raises(UnknownEncodingError, match="Did you mean fire"):
        make_encoding("fier")
    with pytest.raises(UnknownEncodingError, match="(?i)valid: .*mlp_width"):
        make_encoding("fire", mlp_widht=3)
    assert encoding_options("fire_s")["shared"] is True and encoding_options("fire")["shared"] is False


# ---------------------------------------------------------------- T5


def test_t5_bucket_check_values():
    expected = {**{d: d for d in range(16)}, 16: 16, 20: 17, 32: 21, 64: 26, 100: 30, 127: 31, 128: 31, 5000: 31}
    got = np.asarray(t5_bucket(jnp.array(list(expected))))
    assert got.tolist() == list(expected.values())


def test_t5_bias_is_table_lookup_by_bucket():
    enc = make_encoding("t5")
    params = encoding_params(enc)
    b = bias(enc, params, [[0, 20, 200]], [[0, 0, 100]])[0]  # distances (0,20,100) on the diagonal-ish
    table = np.asarray(params["table"])
    assert np.allclose(b[:, 1, 0], table[17])  # d = 20
    assert np.allclose(b[:, 2, 2], table[30])  # d = 100
    assert np.allclose(b[:, 0, 0], table[0])


# ---------------------------------------------------------------- ALiBi


def test_alibi_slopes_8_and_12_heads():
    assert np.allclose(alibi_slopes(8), [2.0**-k for k in range(1, 9)])
    expected_12 = [2.0**-k for k in range(1, 9)] + [2.0**-0.5, 2.0**-1.5, 2.0**-2.5, 2.0**-3.5]
    assert np.allclose(alibi_slopes(12), expected_12)


def test_alibi_bias_closed_form():
    enc = make_encoding("alibi", num_heads=8)
    b = bias(enc, {}, grid(10), grid(10))[0]
    for h in range(8):
        for i, j in [(0, 0), (5, 2), (9, 0), (9, 9)]:
            assert b[h, i, j] == pytest.approx(-(2.0 ** -(h + 1)) * (i - j))


# ---------------------------------------------------------------- KERPLE


@pytest.mark.parametrize("name", ["kerple_log", "kerple_power"])
def test_kerple_closed_forms(name):
    enc = make_encoding(name)
    r1 = np.array([0.3, 0.9, 1.5, 2.0], np.float32)
    r2 = np.array([0.1, 0.5, 0.9, 1.7], np.float32)
    raw_r2 = inverse_softplus(r2) if name == "kerple_log" else np.log(r2 / (2 - r2))
    params = {"raw_r1": inverse_softplus(jnp.asarray(r1)), "raw_r2": jnp.asarray(raw_r2)}
    b = bias(enc, params, grid(40), grid(40))[0]
    for h in range(H):
        for i, j in [(0, 0), (3, 1), (17, 2), (39, 0)]:
            d = i - j
            expected = -r1[h] * (math.log(1 + r2[h] * d) if name == "kerple_log" else d ** r2[h])
            assert b[h, i, j] == pytest.approx(expected, rel=1e-5, abs=1e-6)


def test_kerple_init_ranges_and_finite_gradients():
    for name, r2_high in [("kerple_log", 1.0), ("kerple_power", 1.0)]:
        enc = make_encoding(name, num_heads=64)
        params = encoding_params(enc)
        r1, r2 = enc.apply({"params": params}, method=lambda m: m.params_r1_r2())
        assert 0 < float(r1.min()) and float(r1.max()) <= 2.0 and float(r1.max()) > 1.0
        assert 0 < float(r2.min()) and float(r2.max()) <= r2_high
        # Gradients through the masked future (d < 0 clamped) and d = 0 stay finite.
        loss = lambda p: jnp.sum(enc.apply({"params": p}, method=lambda m: m.bias_fn(8)(grid(8), grid(8))))
        grads = jax.grad(loss)(params)
        assert all(np.isfinite(np.asarray(g)).all() for g in jax.tree_util.tree_leaves(grads))


# ---------------------------------------------------------------- Sandwich


def test_sandwich_closed_form():
    enc = make_encoding("sandwich", num_heads=4, head_dim=16)
    b = bias(enc, {}, grid(50), grid(50))[0]
    d_head = 16
    for h in range(1, 5):
        for i, j in [(0, 0), (1, 0), (7, 3), (49, 0)]:
            s = sum(math.cos((i - j) / 10000 ** (2 * k / d_head)) for k in range(1, d_head // 2 + 1)) - d_head / 2
            assert b[h - 1, i, j] == pytest.approx(s / (8 * h / 4), abs=1e-5)
    assert np.all(b[:, np.tril_indices(50)[0], np.tril_indices(50)[1]] <= 1e-6)


def test_sandwich_with_its_own_dim_by_hand():
    """d = 6 on 2 heads: three frequencies 10000^(-2/6), 10000^(-4/6), 10000^(-1), minus 3,
    divided by 8h/H = 4 (h = 1) and 8 (h = 2)."""
    b = bias(make_encoding("sandwich", num_heads=2, head_dim=16, dim=6), {}, grid(12), grid(12))[0]
    w = [10000 ** (-1 / 3), 10000 ** (-2 / 3), 1e-4]
    for d in (0, 1, 11):
        kernel = sum(math.cos(d * wk) for wk in w) - 3
        assert b[0, d, 0] == pytest.approx(kernel / 4, abs=1e-6) and b[1, d, 0] == pytest.approx(kernel / 8, abs=1e-6)
    # Distance 1: (cos(0.046416) + cos(0.0021544) + cos(1e-4) - 3) / 4 = -(0.0021544 + 4.6e-6) / 8 + 0.0464^4 / 96.
    assert b[0, 1, 0] == pytest.approx(-2.6984e-4, abs=2e-7)
    np.testing.assert_array_equal(np.diagonal(b, axis1=1, axis2=2), 0.0)


def test_sandwich_refuses_an_odd_sinusoid_dimension():
    """An odd d leaves one sine without its cosine: the inner product would not depend on
    i - j alone, and the formula's d/2 frequencies do not exist."""
    with pytest.raises(ConfigError, match="even sinusoid dimension.*got dim=5"):
        make_encoding("sandwich", dim=5)
    with pytest.raises(ConfigError, match="got d_head=15"):  # dim 0: d_head, odd here; refused when built
        make_encoding("sandwich", head_dim=15)


# ---------------------------------------------------------------- absolute


def test_sinusoidal_is_interleaved_vaswani():
    table = np.asarray(sinusoid_table(jnp.array([[0, 1, 7]]), 8))[0]
    for p_idx, p in enumerate([0, 1, 7]):
        for k in range(4):
            w = 10000 ** (-2 * k / 8)
            assert table[p_idx, 2 * k] == pytest.approx(math.sin(p * w), abs=1e-6)
            assert table[p_idx, 2 * k + 1] == pytest.approx(math.cos(p * w), abs=1e-6)


def test_learned_returns_rows_and_refuses_past_its_table():
    enc = make_encoding("learned", train_len=16)
    params = encoding_params(enc)
    rows = enc.apply({"params": params}, jnp.array([[3, 0]]), 16, method=lambda m, p, t: m.embed(p, t))
    assert np.allclose(rows[0], params["table"][jnp.array([3, 0])])
    with pytest.raises(LengthError, match="table of 16 positions.*window of 17"):
        enc.apply({"params": params}, grid(17), 17, method=lambda m, p, t: m.embed(p, t))


# ---------------------------------------------------------------- rotary


def _rotated(name, positions, seq_len=64, **options):
    enc = make_encoding(name, **options)
    x = jax.random.normal(jax.random.key(1), (1, positions.shape[-1], H, 16))
    return x, enc.apply({}, method=lambda m: m.rotary(seq_len).query(x, positions))


@pytest.mark.parametrize("name", ["rope", "rope_pi", "yarn"])
def test_rotary_logits_depend_only_on_relative_position(name):
    q = jax.random.normal(jax.random.key(2), (1, 1, H, 16))
    k = jax.random.normal(jax.random.key(3), (1, 1, H, 16))
    rot = make_encoding(name).apply({}, method=lambda m: m.rotary(256))  # s = 4 for rope_pi/yarn

    def logit(i, j):
        return jnp.einsum("bthd,bthd->bh", rot.query(q, jnp.array([[i]])), rot.key(k, jnp.array([[j]])))

    assert np.allclose(logit(5, 2), logit(105, 102), atol=1e-4)
    assert np.allclose(logit(40, 0), logit(77, 37), atol=1e-4)
    assert not np.allclose(logit(5, 2), logit(5, 3), atol=1e-3)


def test_rope_rotates_half_split_pairs_by_hand():
    x, y = _rotated("rope", jnp.array([[3]]))
    x, y = np.asarray(x)[0, 0, 0], np.asarray(y)[0, 0, 0]
    for k in range(8):
        angle = 3 * 10000 ** (-2 * k / 16)
        assert y[k] == pytest.approx(x[k] * math.cos(angle) - x[k + 8] * math.sin(angle), abs=1e-5)
        assert y[k + 8] == pytest.approx(x[k + 8] * math.cos(angle) + x[k] * math.sin(angle), abs=1e-5)


def test_rope_pi_scale_one_equals_rope_and_interpolates_beyond():
    positions = grid(64)
    _, rope = _rotated("rope", positions)
    _, pi_implicit = _rotated("rope_pi", positions, seq_len=64)  # seq_len == train_len: s = 1
    _, pi_fixed = _rotated("rope_pi", positions, seq_len=512, scale=1.0)
    assert np.allclose(rope, pi_implicit) and np.allclose(rope, pi_fixed)
    # At 4x the training length positions are divided by 4.
    _, pi_long = _rotated("rope_pi", jnp.array([[8, 40]]), seq_len=256)
    x = jax.random.normal(jax.random.key(1), (1, 2, H, 16))
    expected = rotate(x, jnp.array([[2.0, 10.0]]), rope_inv_freq(16, 10000.0))
    assert np.allclose(pi_long, expected, atol=1e-5)


def test_yarn_matches_reference_formulas():
    # At s = 1 YaRN is RoPE.
    _, rope = _rotated("rope", grid(64))
    _, yarn = _rotated("yarn", grid(64), seq_len=64)
    assert np.allclose(rope, yarn)
    # Frequencies for d_head 64, base 10000, train_len 512, s = 4, by the reference code's formulas.
    d, base, L, s = 64, 10000.0, 512, 4.0
    corr = lambda rot: d * math.log(L / (rot * 2 * math.pi)) / (2 * math.log(base))
    low, high = max(math.floor(corr(32)), 0), min(math.ceil(corr(1)), d - 1)
    freqs = []
    for k in range(d // 2):
        theta = base ** (-2 * k / d)
        ramp = min(max((k - low) / (high - low), 0.0), 1.0)
        freqs.append(theta / s * ramp + theta * (1 - ramp))
    assert (low, high) == (3, 16)  # 64 ln(512 / 64 pi) / 2 ln 1e4 = 3.25; ... = 15.29
    assert np.allclose(yarn_inv_freq(d, base, s, L, 1.0, 32.0), freqs, rtol=1e-6)
    assert yarn_temperature(4.0) == pytest.approx(0.1 * math.log(4) + 1)
    # q and k are each multiplied by the temperature: logits scale by its square.
    x, y = _rotated("yarn", jnp.array([[0]]), seq_len=256)
    assert np.allclose(np.linalg.norm(y), np.linalg.norm(x) * yarn_temperature(4.0), rtol=1e-5)


# ---------------------------------------------------------------- FIRE


def _fire(**options):
    enc = make_encoding("fire", **options)
    return enc, encoding_params(enc)


def _fire_inputs(enc, params, T):
    return np.asarray(enc.apply({"params": params}, method=lambda m: m.inputs_fn()(grid(T), grid(T))))[0]


def test_fire_input_is_in_unit_interval_for_every_causal_pair():
    for L0 in (8.0, 64.0, 512.0):
        enc, params = _fire(L0=L0)
        x = _fire_inputs(enc, params, 200)
        causal = np.tril(np.ones((200, 200), bool))
        assert x[causal].min() >= 0.0 and x[causal].max() <= 1.0
        assert x[causal].max() > 0.5 if L0 <= 200 else True


def test_fire_is_toeplitz_up_to_threshold_and_not_beyond():
    enc, params = _fire(L0=32.0)
    b = bias(enc, params, grid(64), grid(64))[0]
    for d in range(0, 32):
        rows = np.arange(d, 33)  # query positions i <= L with i - d >= 0
        assert np.allclose(b[:, rows, rows - d], b[:, rows[:1], rows[:1] - d], atol=1e-6)
    # Beyond L the normaliser grows with i: the same distance maps to a smaller input.
    x = _fire_inputs(enc, params, 64)
    assert x[60, 50] < x[40, 30] and x[40, 30] < x[32, 22] + 1e-7 and np.isclose(x[32, 22], x[20, 10])


def test_fire_ablation_flags_change_exactly_their_piece():
    T, c, L, eps = 100, 0.1, 40.0, 1e-6
    i, j = np.meshgrid(np.arange(T), np.arange(T), indexing="ij")
    d = np.maximum(i - j, 0).astype(np.float64)
    expected = {
        (): np.log1p(c * d) / (np.log1p(c * np.maximum(i, L)) + eps),
        ("log_transform",): d / (np.maximum(i, L) + eps),
        ("threshold",): np.log1p(c * d) / (np.log1p(c * i) + eps),
        ("interpolate",): np.log1p(c * d),
    }
    causal = np.tril(np.ones((T, T), bool))
    for off, want in expected.items():
        enc, params = _fire(L0=L, **{flag: False for flag in off})
        got = _fire_inputs(enc, params, T)
        assert np.allclose(got[causal], want[causal], rtol=1e-5, atol=1e-6), off


def test_fire_learns_c_and_L_and_L0_can_be_fixed():
    enc, params = _fire(L0=50.0, init_c=0.3)
    assert float(params["c"]) == pytest.approx(0.3) and float(params["L_multiplier"]) == 1.0
    # |c| and |m L0| as in the listing; a negative multiplier acts as its absolute value.
    x1 = _fire_inputs(enc, {**params, "L_multiplier": jnp.float32(2.0)}, 120)
    x2 = _fire_inputs(enc, {**params, "L_multiplier": jnp.float32(-2.0), "c": jnp.float32(-0.3)}, 120)
    assert np.allclose(x1, x2)
    assert x1[99, 0] < 1.0 and x1[119, 0] == pytest.approx(np.log1p(0.3 * 119) / (np.log1p(0.3 * 119) + 1e-6))
    enc_fixed, params_fixed = _fire(L0=50.0, learn_L=False)
    assert "L_multiplier" not in params_fixed


def test_fire_bias_is_the_mlp_of_its_input():
    enc, params = _fire(L0=16.0, mlp_depth=2, mlp_width=8)
    x = _fire_inputs(enc, params, 20)
    h = x[..., None]
    p = {k: np.asarray(v) for k, v in params.items()}
    h = np.maximum(h @ p["kernel_0"] + p["bias_0"], 0)
    h = np.maximum(h @ p["kernel_1"] + p["bias_1"], 0)
    out = h @ p["kernel_2"] + p["bias_2"]
    assert np.allclose(bias(enc, params, grid(20), grid(20))[0], out.transpose(2, 0, 1), atol=1e-5)


@pytest.mark.parametrize("threshold", [True, False])
def test_fire_normalizer_cap_above_every_position_is_plain_fire(threshold):
    enc, params = _fire(threshold=threshold)
    capped = make_encoding("fire", threshold=threshold, normalizer_cap=100.0)
    np.testing.assert_array_equal(bias(capped, params, grid(100), grid(100)), bias(enc, params, grid(100), grid(100)))


@pytest.mark.parametrize("threshold", [True, False])
def test_fire_normalizer_cap_makes_rows_past_it_depend_on_distance_only(threshold):
    T, cap = 64, 32
    enc, params = _fire(L0=8.0, threshold=threshold)  # the threshold (8) is below the cap
    plain = bias(enc, params, grid(T), grid(T))[0]
    b = bias(make_encoding("fire", L0=8.0, threshold=threshold, normalizer_cap=float(cap)), params, grid(T), grid(T))[0]
    for i in range(cap, T):
        d = np.arange(cap + 1)
        np.testing.assert_allclose(b[:, i, i - d], b[:, cap, cap - d], rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(b[:, :cap], plain[:, :cap])
    assert not np.allclose(b[:, T - 1], plain[:, T - 1])  # plain FIRE keeps interpolating there


def test_fire_normalizer_cap_gradients_are_finite_and_bad_caps_refused():
    for L0 in (8.0, 64.0):  # the cap above and below the threshold
        enc, params = _fire(L0=L0, normalizer_cap=32.0)
        loss = lambda p: jnp.sum(enc.apply({"params": p}, method=lambda m: m.bias_fn(64)(grid(64), grid(64))))
        grads = jax.grad(loss)(params)
        assert all(np.isfinite(np.asarray(g)).all() for g in jax.tree_util.tree_leaves(grads))
    with pytest.raises(ConfigError, match="normalizer_cap must be >= 0"):
        make_encoding("fire", normalizer_cap=-1.0)
    with pytest.raises(ConfigError, match="set interpolate=True"):
        make_encoding("fire", normalizer_cap=64.0, interpolate=False)


# ------------------------------------------------ FIRE represents T5, ALiBi and KERPLE


def _fire_with_mlp(c, L0, kernel_0, bias_0, kernel_1, bias_1):
    width = kernel_0.shape[1]
    enc = make_encoding("fire", L0=L0, init_c=c, mlp_width=width)
    params = dict(encoding_params(enc))
    params.update(
        kernel_0=jnp.asarray(kernel_0, jnp.float32),
        bias_0=jnp.asarray(bias_0, jnp.float32),
        kernel_1=jnp.asarray(kernel_1, jnp.float32),
        bias_1=jnp.asarray(bias_1, jnp.float32),
    )
    return enc, params


def _causal(b):
    idx = np.tril_indices(b.shape[-1])
    return b[:, idx[0], idx[1]]


def test_fire_reproduces_kerple_log_exactly():
    """With L above every position, x = log(1 + c d) / N: a linear f with c = r2 is KERPLE-log."""
    T, L0, r2 = 64, 64.0, 0.3
    r1 = np.array([0.5, 1.0, 1.5, 2.0])
    N = np.log1p(np.float32(r2) * np.float32(L0)) + 1e-6
    k0 = np.zeros((1, 32))
    k0[0, 0] = 1.0
    k1 = np.zeros((32, H))
    k1[0] = -r1 * N
    fire, fire_params = _fire_with_mlp(r2, L0, k0, np.zeros(32), k1, np.zeros(H))
    kerple = make_encoding("kerple_log")
    kerple_params = {
        "raw_r1": inverse_softplus(jnp.asarray(r1, jnp.float32)),
        "raw_r2": inverse_softplus(jnp.full((H,), r2, jnp.float32)),
    }
    b_fire = _causal(bias(fire, fire_params, grid(T), grid(T))[0])
    b_kerple = _causal(bias(kerple, kerple_params, grid(T), grid(T))[0])
    assert np.allclose(b_fire, b_kerple, rtol=1e-5, atol=1e-5)


def test_fire_reproduces_alibi_in_the_small_c_limit():
    """As c -> 0, log(1 + c d) / c -> d: f(x) = -m_h x N / c is ALiBi to O(c d^2)."""
    T, L0, c = 64, 64.0, 1e-8
    slopes = np.array(alibi_slopes(H))
    N = float(np.log1p(np.float32(c) * np.float32(L0))) + 1e-6
    k0 = np.zeros((1, 32))
    k0[0, 0] = 1.0
    k1 = np.zeros((32, H))
    k1[0] = -slopes * N / c
    fire, params = _fire_with_mlp(c, L0, k0, np.zeros(32), k1, np.zeros(H))
    b_fire = _causal(bias(fire, params, grid(T), grid(T))[0])
    b_alibi = _causal(bias(make_encoding("alibi"), {}, grid(T), grid(T))[0])
    assert np.abs(b_fire - b_alibi).max() < 1e-3


def test_fire_reproduces_a_t5_table_with_a_relu_staircase():
    """x is monotone in d: each bucket boundary is a clamped ramp made of two ReLUs placed
    between the inputs of the last distance of one bucket and the first of the next."""
    T, L0, c, width = 200, 256.0, 0.1, 64
    t5 = make_encoding("t5")
    table = np.asarray(jax.random.normal(jax.random.key(7), (32, H)))
    distances = np.arange(T)
    buckets = np.asarray(t5_bucket(distances))
    fire_probe, probe_params = _fire_with_mlp(
        c, L0, np.zeros((1, width)), np.zeros(width), np.zeros((width, H)), np.zeros(H)
    )
    x_of_d = _fire_inputs(fire_probe, probe_params, T)[T - 1, ::-1]  # row i = T-1: x(d) for d = 0..T-1
    k0, b0, k1 = np.zeros((1, width)), np.zeros(width), np.zeros((width, H))
    for b in range(1, 32):
        first = np.argmax(buckets == b)
        lo, hi = x_of_d[first - 1], x_of_d[first]
        scale = 1.0 / (hi - lo)
        k0[0, 2 * b - 2], b0[2 * b - 2] = scale, -lo * scale  # relu((x - lo) / (hi - lo))
        k0[0, 2 * b - 1], b0[2 * b - 1] = scale, -hi * scale  # relu((x - hi) / (hi - lo))
        k1[2 * b - 2], k1[2 * b - 1] = table[b] - table[b - 1], -(table[b] - table[b - 1])
    fire, params = _fire_with_mlp(c, L0, k0, b0, k1, table[0])
    b_fire = _causal(bias(fire, params, grid(T), grid(T))[0])
    b_t5 = _causal(bias(t5, {"table": jnp.asarray(table)}, grid(T), grid(T))[0])
    assert np.abs(b_fire - b_t5).max() < 1e-3
