"""LogQuantizer and PowerOfTwoQuantizer: hand-worked codes, the zero / below-x_min rule, the
relative-error bound, shifts, properties and bad input."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from refq.quant import LogQuantizer, PowerOfTwoQuantizer, shift_multiply
from refq.quant.log import default_min_ratio

# ---- LogQuantizer, by hand ---------------------------------------------------------------------


def test_log_quantizer_by_hand_4bit():
    # bits 4: M = 7 magnitude levels; default min_ratio 2^-6. Range [-8, 3]: x_max = 8,
    # x_min = 0.125, levels 0.125 * 2^k, k = 0..6 (r = 2), all exact in float32.
    lq = LogQuantizer(bits=4).set_range(-8.0, 3.0)
    assert (lq.quant_min, lq.quant_max) == (-7, 7)
    assert float(lq.x_min) == 0.125 and float(lq.x_max) == 8.0
    assert float(lq.level_ratio()) == pytest.approx(2.0)
    # x:      0 -> 0 (reserved code)
    #      0.06 -> below x_min / 2 = 0.0625 -> flushed to 0
    #    0.0625 -> exactly x_min / 2 -> clamped up to x_min, m = 1
    #       0.3 -> log2(0.3 / 0.125) = 1.263 -> 1 -> m = 2 -> 0.25
    #       0.7 -> log2(5.6) = 2.485 -> 2 -> m = 3 -> 0.5
    #        -3 -> log2(24) = 4.585 -> 5 -> m = 6 -> -4
    #       100 -> clamped to m = 7 -> 8
    x = np.array([0.0, 0.06, 0.0625, 0.3, 0.7, -3.0, 100.0])
    q = lq.quantize(x)
    assert q.tolist() == [0, 0, 1, 2, 3, -6, 7] and q.dtype == np.int8
    assert lq.dequantize(q).tolist() == [0.0, 0.0, 0.125, 0.25, 0.5, -4.0, 8.0]


def test_log_quantizer_fixed_x_min_by_hand():
    # bits 3 (M = 3), x_min fixed at 0.5, range [-4, 2] -> x_max 4; r = (4 / 0.5)^(1/2) = 2.828;
    # levels 0.5, sqrt(2) = 1.41421, 4. x = 1 -> log(2) / log(8) * 2 = 0.667 -> 1 -> m = 2.
    lq = LogQuantizer(bits=3, x_min=0.5).set_range(-4.0, 2.0)
    q = lq.quantize(np.array([1.0, -0.6, 3.0, 0.2]))
    assert q.tolist() == [2, -1, 3, 0]
    np.testing.assert_allclose(lq.dequantize(q), [np.sqrt(2), -0.5, 4.0, 0.0], rtol=1e-7)


def test_log_quantizer_is_the_seed_formula_on_magnitudes():
    """m - 1 = round((log|x| - log x_min) / (log x_max - log x_min) * (M - 1)) inside the range."""
    rng = np.random.default_rng(0)
    lq = LogQuantizer(bits=6, min_ratio=1e-3).set_range(-2.0, 1.0)
    lo, hi, M = 2e-3, 2.0, 31
    x = rng.choice([-1, 1], 5000) * np.exp(rng.uniform(np.log(lo), np.log(hi), 5000))
    expected = 1 + np.rint((np.log(np.abs(x)) - np.log(lo)) / (np.log(hi) - np.log(lo)) * (M - 1))
    assert np.array_equal(lq.quantize(x), np.sign(x) * expected)


def test_default_min_ratio():
    assert default_min_ratio(3) == 2.0**-2  # M = 3: 2 octaves
    assert default_min_ratio(5) == 2.0**-14  # M = 15
    assert default_min_ratio(6) == 2.0**-24  # capped at 24 octaves
    assert default_min_ratio(16) == 2.0**-24
    assert float(LogQuantizer(bits=8).set_range(-1, 1).level_ratio()) == pytest.approx(
        2 ** (24 / 126)
    )


def test_log_relative_error_bound():
    """|x_hat - x| / |x| <= sqrt(r) - 1 for x_min <= |x| <= x_max (float32 slack 1e-6)."""
    rng = np.random.default_rng(1)
    for bits, ratio in [(3, None), (4, None), (6, 1e-4), (8, None)]:
        lq = LogQuantizer(bits=bits, min_ratio=ratio).set_range(-10.0, 10.0)
        lo, hi = float(lq.x_min), float(lq.x_max)
        x = rng.choice([-1, 1], 20_000) * np.exp(rng.uniform(np.log(lo), np.log(hi), 20_000))
        rel = np.abs(lq.fake_quant(x) - x) / np.abs(x)
        bound = np.sqrt(float(lq.level_ratio())) - 1
        assert rel.max() <= bound + 1e-6
        assert rel.max() > 0.9 * bound  # the bound is tight on dense data


def test_log_below_x_min_rule():
    lq = LogQuantizer(bits=4, x_min=1.0).set_range(-64.0, 64.0)
    x = np.array([0.49, 0.4999, 0.5, 0.75, 0.99, -0.49, -0.5])
    assert lq.fake_quant(x).tolist() == [0, 0, 1, 1, 1, 0, -1]


def test_log_zero_range_and_single_level():
    lq = LogQuantizer(bits=4).set_range(0.0, 0.0)  # an all-zero tensor
    with np.errstate(all="raise"):
        assert lq.fake_quant(np.zeros(4)).tolist() == [0.0] * 4
    one = LogQuantizer(bits=4, x_min=2.0).set_range(-1.0, 1.0)  # x_max < x_min: one level
    assert one.fake_quant(np.array([0.9, 1.5, -7.0, 0.1])).tolist() == [0.0, 2.0, -2.0, 0.0]


def test_log_per_channel_equals_loop():
    rng = np.random.default_rng(2)
    x = rng.standard_t(3, size=(5, 4)) * np.array([0.1, 1, 10, 100])
    pc = LogQuantizer(bits=5, axis=1).fit(x)
    assert pc.x_max.shape == (4,)
    for c in range(4):
        pt = LogQuantizer(bits=5).fit(x[:, c])
        assert np.array_equal(pc.quantize(x)[:, c], pt.quantize(x[:, c]))


logcfg = st.fixed_dictionaries({"bits": st.integers(3, 12), "seed": st.integers(0, 3)})
logdata = hnp.arrays(np.float64, st.integers(1, 40), elements=st.floats(-1e4, 1e4))


@settings(max_examples=50, deadline=None)
@given(logcfg, st.floats(1e-3, 1e3), logdata)
def test_log_properties(cfg, amax, x):
    lq = LogQuantizer(bits=cfg["bits"]).set_range(-amax, amax)
    q = lq.quantize(x)
    assert q.min() >= lq.quant_min and q.max() <= lq.quant_max
    assert np.array_equal(lq.quantize(-x), -q)  # odd symmetry
    assert lq.fake_quant(np.zeros(2)).tolist() == [0.0, 0.0]  # zero exact
    fq = lq.fake_quant(x)
    assert np.array_equal(lq.fake_quant(fq), fq)  # idempotent
    xs = np.sort(x)
    assert np.all(np.diff(lq.quantize(xs).astype(np.int64)) >= 0)  # monotone


def test_log_errors():
    with pytest.raises(ValueError, match=r"bits must be an integer in \[3, 16\]"):
        LogQuantizer(bits=2)
    with pytest.raises(ValueError, match="x_min must be a finite positive"):
        LogQuantizer(x_min=0.0)
    with pytest.raises(ValueError, match="x_min must be a finite positive"):
        LogQuantizer(x_min=-1.0)
    with pytest.raises(ValueError, match=r"min_ratio must lie in \(0, 1\)"):
        LogQuantizer(min_ratio=1.5)
    with pytest.raises(ValueError, match="either x_min"):
        LogQuantizer(x_min=0.1, min_ratio=0.1)
    lq = LogQuantizer().set_range(-1.0, 1.0)
    with pytest.raises(ValueError, match="NaN or infinite"):
        lq.quantize(np.array([np.nan]))
    with pytest.raises(ValueError, match=r"codes must lie in \[-7, 7\]"):
        lq.dequantize(np.array([-8], dtype=np.int8))
    with pytest.raises(ValueError, match="x_max < x_min"):
        LogQuantizer().set_range(1.0, -1.0)
    with pytest.raises(ValueError, match="axis 1 does not exist"):
        LogQuantizer(axis=1).fit(np.ones(3))
    with pytest.raises(ValueError, match="no range yet"):
        LogQuantizer().quantize(np.ones(2))


# ---- PowerOfTwoQuantizer -----------------------------------------------------------------------


def test_pow2_by_hand():
    # bits 4: M = 7, exponents 0..6. Range [-5, 3]: x_max 5 -> top 2^ceil(log2 5) = 8,
    # s = 8 * 2^-6 = 0.125. x = 5 -> log2(40) = 5.32 -> 5 -> 4; 6 -> log2(48) = 5.58 -> 6 -> 8;
    # 0.05 < s/2 -> 0; 0.07 -> clamped to s; -0.3 -> log2(2.4) = 1.26 -> 1 -> -0.25
    pq = PowerOfTwoQuantizer(bits=4).set_range(-5.0, 3.0)
    assert float(pq.scale) == 0.125
    x = np.array([5.0, 6.0, 0.05, 0.07, -0.3])
    q = pq.quantize(x)
    assert q.tolist() == [6, 7, 0, 1, -2]
    assert pq.dequantize(q).tolist() == [4.0, 8.0, 0.0, 0.125, -0.25]


def test_pow2_without_pow2_scale():
    # top level at x_max = 5 itself: s = 5 / 64 = 0.078125, values 5 * 2^-k
    pq = PowerOfTwoQuantizer(bits=4, pow2_scale=False).set_range(-5.0, 3.0)
    assert float(pq.scale) == 5 / 64
    assert pq.fake_quant(np.array([5.0, -2.4, 0.1])).tolist() == [5.0, -2.5, 0.078125]


def test_pow2_values_are_powers_of_two_and_dequantize_is_a_shift():
    rng = np.random.default_rng(3)
    x = rng.standard_t(2, size=10_000)
    pq = PowerOfTwoQuantizer(bits=5).fit(x)
    q = pq.quantize(x)
    v = pq.dequantize(q)
    nz = v != 0
    mant, _ = np.frexp(v[nz])
    assert np.all(np.abs(mant) == 0.5)  # every nonzero value is exactly +-2^k
    # dequantize = integer mantissa sign(q) shifted by e = |q| - 1, scaled by s (exact)
    e = np.abs(q.astype(np.int64)) - 1
    by_hand = np.where(q == 0, 0.0, np.sign(q) * float(pq.scale) * 2.0 ** np.maximum(e, 0))
    assert np.array_equal(v.astype(np.float64), by_hand)


def test_shift_multiply_equals_float_product():
    rng = np.random.default_rng(4)
    a = rng.integers(-128, 128, size=1000).astype(np.int8)
    pq = PowerOfTwoQuantizer(bits=4).set_range(-3.0, 3.0)
    q = pq.quantize(rng.normal(size=1000))
    prod = shift_multiply(a, q)
    assert prod.dtype == np.int64
    exact = a.astype(np.float64) * pq.dequantize(q).astype(np.float64)
    assert np.array_equal(float(pq.scale) * prod, exact)
    # by hand: 3 << 2 = 12, -(-5 << 1) = 10, 7 * 0 = 0
    assert shift_multiply(np.array([3, -5, 7]), np.array([3, -2, 0])).tolist() == [12, 10, 0]


def test_pow2_relative_error_bound():
    rng = np.random.default_rng(5)
    pq = PowerOfTwoQuantizer(bits=5).set_range(-1.0, 1.0)
    lo, hi = float(pq.scale), float(pq.scale) * 2**14
    x = rng.choice([-1, 1], 20_000) * np.exp(rng.uniform(np.log(lo), np.log(hi), 20_000))
    rel = np.abs(pq.fake_quant(x) - x) / np.abs(x)
    assert rel.max() <= np.sqrt(2) - 1 + 1e-6


def test_pow2_matches_log_quantizer_with_octave_levels():
    """pow2_scale=False is LogQuantizer's default geometric grid (r = 2) for bits <= 5."""
    x = np.random.default_rng(6).standard_t(3, size=5000)
    for bits in (3, 4, 5):
        pq = PowerOfTwoQuantizer(bits=bits, pow2_scale=False).fit(x)
        lq = LogQuantizer(bits=bits).fit(x)
        assert np.array_equal(pq.quantize(x), lq.quantize(x))
        np.testing.assert_allclose(pq.fake_quant(x), lq.fake_quant(x), rtol=1e-6)


def test_pow2_per_channel_equals_loop():
    x = np.random.default_rng(7).normal(size=(3, 6)) * np.array([[1], [8], [0.01]])
    pc = PowerOfTwoQuantizer(bits=4, axis=0).fit(x)
    for c in range(3):
        assert np.array_equal(
            pc.quantize(x)[c], PowerOfTwoQuantizer(bits=4).fit(x[c]).quantize(x[c])
        )


@settings(max_examples=50, deadline=None)
@given(st.integers(3, 7), st.floats(1e-3, 1e3), logdata)
def test_pow2_properties(bits, amax, x):
    pq = PowerOfTwoQuantizer(bits=bits).set_range(-amax, amax)
    q = pq.quantize(x)
    assert q.min() >= pq.quant_min and q.max() <= pq.quant_max
    fq = pq.fake_quant(x)
    assert np.array_equal(pq.fake_quant(fq), fq)
    assert np.all(np.diff(pq.quantize(np.sort(x)).astype(np.int64)) >= 0)
    assert pq.fake_quant(np.zeros(1))[0] == 0.0


def test_pow2_errors():
    with pytest.raises(ValueError, match=r"bits must be an integer in \[3, 7\]"):
        PowerOfTwoQuantizer(bits=8)
    pq = PowerOfTwoQuantizer(bits=3).set_range(-1.0, 1.0)
    with pytest.raises(ValueError, match=r"codes must lie in \[-3, 3\]"):
        pq.dequantize(np.array([4]))
    with pytest.raises(TypeError, match="integer"):
        shift_multiply(np.array([1.5]), np.array([1]))
    with pytest.raises(ValueError, match="NaN or infinite"):
        PowerOfTwoQuantizer().fit(np.array([1.0, np.inf]))


def test_log_stochastic_rounding_seeded_and_between_neighbours():
    x = np.random.default_rng(8).standard_t(3, size=2000)
    a = LogQuantizer(bits=5, rounding="stochastic", seed=1).fit(x).quantize(x)
    b = LogQuantizer(bits=5, rounding="stochastic", seed=1).fit(x).quantize(x)
    near = LogQuantizer(bits=5).fit(x).quantize(x)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, near)  # some codes do round the other way
    assert np.abs(a.astype(int) - near.astype(int)).max() <= 1  # but only to a neighbour
