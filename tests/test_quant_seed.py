"""The seed formulas (section 4), checked by hand, and their relation to the PyTorch form."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from refq.quant import (
    LinearQuantizer,
    log_dequantize,
    log_quantize,
    minmax_dequantize,
    minmax_quantize,
    minmax_zero_error,
)

# ---- formula 4.1, hand-worked ------------------------------------------------------------------


def test_minmax_hand_worked_3bit():
    # b = 3: 2^3 - 1 = 7 steps over [0, 1], so Q = round(7x) (all products below are exact).
    # x = 0.0625 -> 0.4375 -> 0; 0.25 -> 1.75 -> 2; 0.375 -> 2.625 -> 3; 0.5 -> 3.5 -> 4 (tie to
    # even); 0.9375 -> 6.5625 -> 7; -3 -> clipped 0; 9 -> clipped 7.
    x = np.array([0.0625, 0.25, 0.375, 0.5, 0.9375, -3.0, 9.0])
    q = minmax_quantize(x, 0.0, 1.0, 3)
    assert q.tolist() == [0, 2, 3, 4, 7, 0, 7]
    assert q.dtype == np.uint8
    # dequantize: 0 + q * 1 / 7
    np.testing.assert_allclose(
        minmax_dequantize(q, 0.0, 1.0, 3), np.array([0, 2, 3, 4, 7, 0, 7]) / 7
    )
    # half away from zero breaks the tie upwards too, floor truncates: 3.5 -> 4 / 3
    assert minmax_quantize(np.array([0.5]), 0.0, 1.0, 3, rounding="half_away")[0] == 4
    assert minmax_quantize(np.array([0.5]), 0.0, 1.0, 3, rounding="floor")[0] == 3
    # a tie that rounds down to even: b = 1 on [0, 1], Q = round(x), x = 0.5 -> 0
    assert minmax_quantize(np.array([0.5]), 0.0, 1.0, 1)[0] == 0


def test_minmax_hand_worked_negative_range_bits8():
    # [-1, 1], b = 8: (x + 1) / 2 * 255. x = 0 -> 127.5 -> 128 (half to even); x = -1 -> 0;
    # x = 0.5 -> 191.25 -> 191. Dequantize 128 -> -1 + 128 * 2 / 255 = 1 / 255.
    q = minmax_quantize(np.array([0.0, -1.0, 0.5, 1.0]), -1.0, 1.0, 8)
    assert q.tolist() == [128, 0, 191, 255]
    assert minmax_dequantize(np.array([128], np.uint8), -1.0, 1.0, 8)[0] == -1.0 + 128 * 2.0 / 255


def test_minmax_dtype_is_smallest_unsigned():
    x = np.linspace(0, 1, 5)
    for bits, dt in [(1, np.uint8), (2, np.uint8), (8, np.uint8), (9, np.uint16), (16, np.uint16)]:
        q = minmax_quantize(x, 0.0, 1.0, bits)
        assert q.dtype == dt
        assert q.max() == 2**bits - 1


def test_minmax_constant_tensor_gives_zero_codes_and_exact_x_min():
    x = np.full(5, 3.25)
    with np.errstate(all="raise"):  # any division by zero would raise here
        q = minmax_quantize(x, 3.25, 3.25, 4)
        xh = minmax_dequantize(q, 3.25, 3.25, 4)
    assert q.tolist() == [0] * 5
    assert xh.tolist() == [3.25] * 5


def test_minmax_roundtrip_error_bound_and_monotone():
    rng = np.random.default_rng(0)
    x = np.sort(rng.uniform(-2, 3, 10_000))
    for bits in (2, 4, 8, 12):
        s = 5.0 / (2**bits - 1)
        q = minmax_quantize(x, -2.0, 3.0, bits)
        assert np.all(np.diff(q.astype(np.int64)) >= 0)
        err = np.abs(minmax_dequantize(q, -2.0, 3.0, bits) - x)
        assert err.max() <= s / 2 * (1 + 1e-12)


# ---- seed form vs. PyTorch scale/zero-point form ---------------------------------------------


def test_zero_error_hand_worked():
    # [-1, 1.5], b = 2: s = 2.5/3, -x_min/s = 1.2 -> 1; x_hat(0) = -1 + 2.5/3 = -1/6.
    err, bound = minmax_zero_error(-1.0, 1.5, 2)
    assert err == pytest.approx(-1 / 6, abs=1e-15)
    assert bound == pytest.approx(2.5 / 3 / 2)
    # 8 bits on [-1, 1]: s = 2/255, -x_min/s = 127.5 -> 128, x_hat(0) = s * 0.5 = 1/255.
    err8, bound8 = minmax_zero_error(-1.0, 1.0, 8)
    assert err8 == pytest.approx(1 / 255, rel=1e-12)
    assert bound8 == pytest.approx(1 / 255)  # the worst case is attained here


def test_seed_vs_affine_zero_exact_and_codes_within_one():
    """Same range, same bits: PyTorch's form has exact zero, the seed's does not; codes differ
    by at most 1; the seed form's error at 0 is bounded by s / 2."""
    rng = np.random.default_rng(1)
    for _ in range(200):
        lo, hi = -rng.uniform(0.01, 3), rng.uniform(0.01, 3)
        bits = int(rng.integers(2, 9))
        x = np.concatenate([[0.0], rng.uniform(lo, hi, 100)]).astype(np.float32)
        seed_codes = minmax_quantize(x, lo, hi, bits).astype(np.int64)
        aq = LinearQuantizer(bits=bits, signed=False).set_range(lo, hi)
        pt_codes = aq.quantize(x).astype(np.int64)
        assert np.abs(seed_codes - pt_codes).max() <= 1
        assert aq.fake_quant(np.zeros(1))[0] == 0.0
        err, bound = minmax_zero_error(lo, hi, bits)
        assert abs(err) <= bound * (1 + 1e-9)


def test_seed_zero_error_is_not_zero_in_general():
    errs = [abs(minmax_zero_error(-1.0, hi, 8)[0]) for hi in np.linspace(0.3, 3.0, 50)]
    assert max(errs) > 0.1 * (4.0 / 255)  # a visible fraction of a step
    assert min(errs) >= 0


# ---- formula 4.2, hand-worked ------------------------------------------------------------------


def test_log_hand_worked():
    # [1, 8], b = 2: log x / log 8 * 3 = log2 x. 1 -> 0; 1.5 -> 0.585 -> 1; 2.9 -> 1.536 -> 2;
    # 5.5 -> 2.459 -> 2; 6 -> 2.585 -> 3; 0.5 -> -1 -> clipped 0; 100 -> clipped 3.
    x = np.array([1.0, 1.5, 2.9, 5.5, 6.0, 0.5, 100.0])
    q = log_quantize(x, 1.0, 8.0, 2)
    assert q.tolist() == [0, 1, 2, 2, 3, 0, 3]
    np.testing.assert_allclose(log_dequantize(q, 1.0, 8.0, 2), [1, 2, 4, 4, 8, 1, 8], rtol=1e-14)


def test_log_hand_worked_4bit_decade():
    # [0.01, 10], b = 4: 15 steps over 3 decades, 5 steps per decade: Q = 5 * log10(x / 0.01).
    # x = 1 -> 10; x = 0.1 -> 5; x = 0.03 -> 5 * 0.477 = 2.39 -> 2.
    q = log_quantize(np.array([1.0, 0.1, 0.03]), 0.01, 10.0, 4)
    assert q.tolist() == [10, 5, 2]
    np.testing.assert_allclose(log_dequantize(q, 0.01, 10.0, 4), [1.0, 0.1, 0.01 * 10**0.4])


def test_log_constant_range():
    with np.errstate(all="raise"):
        q = log_quantize(np.array([2.0, 2.0]), 2.0, 2.0, 3)
        xh = log_dequantize(q, 2.0, 2.0, 3)
    assert q.tolist() == [0, 0]
    assert xh.tolist() == [2.0, 2.0]


def test_log_relative_error_bound_inside_range():
    rng = np.random.default_rng(2)
    x = np.exp(rng.uniform(np.log(0.01), np.log(100.0), 20_000))
    for bits in (3, 5, 8):
        r = (100 / 0.01) ** (1 / (2**bits - 1))
        xh = log_dequantize(log_quantize(x, 0.01, 100.0, bits), 0.01, 100.0, bits)
        rel = np.abs(xh - x) / x
        assert rel.max() <= np.sqrt(r) - 1 + 1e-12


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.floats(0.001, 1000.0), min_size=2, max_size=30),
    st.integers(1, 12),
)
def test_log_monotone_and_in_range(xs, bits):
    x = np.sort(np.array(xs))
    q = log_quantize(x, 0.01, 100.0, bits).astype(np.int64)
    assert np.all(np.diff(q) >= 0)
    assert q.min() >= 0 and q.max() <= 2**bits - 1


# ---- bad input -----------------------------------------------------------------------------------


@pytest.mark.parametrize("bits", [0, 17, -3])
def test_bits_out_of_range(bits):
    with pytest.raises(ValueError, match="bits"):
        minmax_quantize(np.ones(2), 0.0, 1.0, bits)
    with pytest.raises(ValueError, match="bits"):
        log_quantize(np.ones(2), 0.5, 1.0, bits)


def test_bits_wrong_type():
    with pytest.raises(TypeError, match="bits"):
        minmax_quantize(np.ones(2), 0.0, 1.0, 8.0)


def test_x_max_below_x_min():
    with pytest.raises(ValueError, match="x_max < x_min"):
        minmax_quantize(np.ones(2), 1.0, 0.0, 8)
    with pytest.raises(ValueError, match="x_max < x_min"):
        log_quantize(np.ones(2), 2.0, 1.0, 8)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_inf_data_and_ranges(bad):
    with pytest.raises(ValueError, match="NaN or infinite"):
        minmax_quantize(np.array([0.0, bad]), 0.0, 1.0, 8)
    with pytest.raises(ValueError, match="x_min contains NaN or infinite"):
        minmax_quantize(np.ones(2), bad, 1.0, 8)
    with pytest.raises(ValueError, match="x_max contains NaN or infinite"):
        log_quantize(np.ones(2), 0.5, bad, 8)


def test_log_non_positive_data_and_x_min():
    with pytest.raises(ValueError, match="positive data"):
        log_quantize(np.array([1.0, 0.0]), 0.5, 2.0, 4)
    with pytest.raises(ValueError, match="positive data"):
        log_quantize(np.array([-1.0]), 0.5, 2.0, 4)
    with pytest.raises(ValueError, match="positive x_min"):
        log_quantize(np.array([1.0]), 0.0, 2.0, 4)
    with pytest.raises(ValueError, match="positive x_min"):
        log_dequantize(np.array([1], np.uint8), -1.0, 2.0, 4)


def test_dequantize_rejects_float_or_out_of_range_codes():
    with pytest.raises(TypeError, match="integer"):
        minmax_dequantize(np.array([1.0]), 0.0, 1.0, 4)
    with pytest.raises(ValueError, match=r"\[0, 15\]"):
        minmax_dequantize(np.array([16]), 0.0, 1.0, 4)


def test_zero_error_needs_zero_in_range():
    with pytest.raises(ValueError, match="contain zero"):
        minmax_zero_error(0.5, 1.0, 8)
