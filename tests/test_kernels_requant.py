"""Requantization: gemmlowp fixed point and fbgemm float, by hand and bit-exact with the spec."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from refq.kernels.requant import (
    quantize_multiplier,
    requantize_fixed_point,
    requantize_float,
    rounding_divide_by_pot,
    saturating_rounding_doubling_high_mul,
)
from refq.kernels.spec import (
    quantize_multiplier_spec,
    rdbpot_spec,
    requantize_fixed_point_spec,
    requantize_float_spec,
    srdhm_spec,
)

I32MIN, I32MAX = -(2**31), 2**31 - 1
int32s = st.integers(I32MIN, I32MAX)


def test_srdhm_hand_worked():
    a = np.array([2**30, -3, 3, -1, 1, 5, -(2**31), -(2**31), I32MAX, 0])
    b = np.array([2**30, 2**30, 2**30, 2**30, 2**30, 2**29, -(2**31), I32MAX, I32MAX, 7])
    # 2^60/2^31 = 2^29; -1.5 -> -1 (negative tie toward +inf); 1.5 -> 2; -0.5 -> 0; 0.5 -> 1;
    # 5 * 2^29 / 2^31 = 1.25 -> 1; INT32_MIN^2 saturates; -2^31 (2^31 - 1) / 2^31 = -(2^31 - 1);
    # (2^31-1)^2 / 2^31 = 2^31 - 2 + 2^-31 -> 2^31 - 2; 0.
    expected = [2**29, -1, 2, 0, 1, 1, I32MAX, -(2**31) + 1, I32MAX - 1, 0]
    np.testing.assert_array_equal(saturating_rounding_doubling_high_mul(a, b), expected)
    np.testing.assert_array_equal(srdhm_spec(a, b), expected)


def test_srdhm_differs_from_python_floor_division():
    """A literal port with Python's // (floor) is wrong for negative products."""
    a, b = -3, 2**30
    ab = a * b
    naive = (ab + (1 - (1 << 30))) // (1 << 31)  # floors: -2
    assert naive == -2
    assert int(saturating_rounding_doubling_high_mul(np.array([a]), np.array([b]))[0]) == -1


def test_rdbpot_hand_worked():
    x = np.array([5, -5, 6, -6, 7, -7, 4, -4, 0, I32MIN, I32MAX, 1, -1])
    # /4: 1.25 -1.25 1.5 -1.5 1.75 -1.75 1 -1 0 -2^29 (2^31-1)/4=536870911.75 0.25 -0.25
    expected = [1, -1, 2, -2, 2, -2, 1, -1, 0, -(2**29), 2**29, 0, 0]
    np.testing.assert_array_equal(rounding_divide_by_pot(x, 2), expected)
    np.testing.assert_array_equal(rdbpot_spec(x, 2), expected)
    np.testing.assert_array_equal(rounding_divide_by_pot(np.array([-3, 3]), 0), [-3, 3])
    np.testing.assert_array_equal(rounding_divide_by_pot(np.array([I32MIN]), 31), [-1])


@settings(max_examples=300, deadline=None)
@given(a=int32s, b=int32s, e=st.integers(0, 31))
def test_jitted_equals_spec(a, b, e):
    a_, b_ = np.array([a]), np.array([b])
    assert saturating_rounding_doubling_high_mul(a_, b_)[0] == srdhm_spec(a_, b_)[0]
    assert rounding_divide_by_pot(a_, e)[0] == rdbpot_spec(a_, e)[0]


@settings(max_examples=200, deadline=None)
@given(a=int32s, b=int32s)
def test_srdhm_is_correctly_rounded(a, b):
    """|SRDHM(a, b) - a b / 2^31| <= 1/2 (exact rational arithmetic), except the saturation."""
    if a == b == I32MIN:
        return
    r = int(saturating_rounding_doubling_high_mul(np.array([a]), np.array([b]))[0])
    assert abs(2 * (r * 2**31 - a * b)) <= 2**31


def test_quantize_multiplier_hand_worked():
    cases = {
        0.5: (2**30, 0),
        0.25: (2**30, 1),
        0.75: (3 * 2**29, 0),
        0.1: (1717986918, 3),  # 0.8 * 2^31 = 1717986918.4 -> 1717986918
        1.0: (2**30, -1),
        3.0: (3 * 2**29, -2),
        0.0: (0, 0),
        2.0**-40: (0, 0),  # below 2^-32: zero, as TFLite
    }
    for m, (m0, s) in cases.items():
        assert quantize_multiplier_spec(m) == (m0, s), m
        got_m0, got_s = quantize_multiplier(m)
        assert (int(got_m0), int(got_s)) == (m0, s), m
    # rounding carry: q = 1 - 2^-40 rounds to 2^31 -> halved, exponent + 1
    assert quantize_multiplier_spec(1 - 2.0**-40) == (2**30, -1)
    assert tuple(map(int, quantize_multiplier(1 - 2.0**-40))) == (2**30, -1)


@settings(max_examples=200, deadline=None)
@given(m=st.floats(2.0**-31, 100.0))
def test_quantize_multiplier_reconstructs(m):
    m0, s = quantize_multiplier(m)
    assert 2**30 <= int(m0) < 2**31
    assert (int(m0), int(s)) == quantize_multiplier_spec(m)
    approx = int(m0) * 2.0**-31 * 2.0 ** (-int(s))
    assert abs(approx - m) <= 2.0**-31 * 2.0 ** (-int(s)) / 2 * (1 + 1e-12)


def test_quantize_multiplier_errors():
    with pytest.raises(ValueError, match=">= 0"):
        quantize_multiplier(-0.5)
    with pytest.raises(ValueError, match="finite"):
        quantize_multiplier(np.array([0.5, np.nan]))


def test_requantize_hand_worked_both_modes():
    acc = np.array([100, -100, 150, -150, 2, -2, 6, 1000])
    m0, s = quantize_multiplier(0.25)
    # fixed: 25 -25 37.5->38 -37.5->-38 0.5->1 -0.5->-1 1.5->2 250->clamp ; + 3
    fx = requantize_fixed_point(acc, m0, s, 3, -128, 127)
    np.testing.assert_array_equal(fx, [28, -22, 41, -35, 4, 2, 5, 127])
    assert fx.dtype == np.int8
    # float: ties to even: 0.5->0, -0.5->0, 1.5->2, 37.5->38, -37.5->-38
    fl = requantize_float(acc, 0.25, 3, -128, 127)
    np.testing.assert_array_equal(fl, [28, -22, 41, -35, 3, 3, 5, 127])
    # uint8 output range
    u = requantize_float(acc, 0.25, 128, 0, 255)
    assert u.dtype == np.uint8
    np.testing.assert_array_equal(u, [153, 103, 166, 90, 128, 128, 130, 255])


def test_requantize_int32_min_accumulator():
    acc = np.array([I32MIN, I32MAX])
    m0, s = quantize_multiplier(2.0**-24)  # M0 = 2^30, shift = 23
    # -2^31 * 2^-24 = -128 exactly; (2^31 - 1) 2^-24 = 127.99999994 -> 128 -> clamp 127
    np.testing.assert_array_equal(requantize_fixed_point(acc, m0, s, 0, -128, 127), [-128, 127])
    np.testing.assert_array_equal(requantize_float(acc, 2.0**-24, 0, -128, 127), [-128, 127])
    m0, s = quantize_multiplier(0.5)  # SRDHM(INT32_MIN, 2^30) = -2^30, no saturation
    np.testing.assert_array_equal(
        requantize_fixed_point(acc, m0, s, 0, I32MIN, I32MAX), [-(2**30), 2**30]
    )


def test_requantize_left_shift_for_multiplier_above_one():
    m0, s = quantize_multiplier(3.0)  # shift = -2
    np.testing.assert_array_equal(
        requantize_fixed_point(np.array([5, -5, 40, -50]), m0, s, 0, -128, 127),
        [15, -15, 120, -128],
    )


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**31), n=st.integers(1, 40), zp=st.integers(-20, 20),
    lo=st.floats(1e-6, 1e-2),
)  # fmt: skip
def test_requantize_bit_exact_with_spec_per_channel(seed, n, zp, lo):
    rng = np.random.default_rng(seed)
    acc = rng.integers(-(2**24), 2**24, size=(7, n)).astype(np.int32)
    mult = rng.uniform(lo, 2 * lo, size=n)
    m0, s = quantize_multiplier(mult)
    np.testing.assert_array_equal(
        requantize_fixed_point(acc, m0, s, zp, -128, 127),
        requantize_fixed_point_spec(acc, m0, s[None, :], zp, -128, 127),
    )
    np.testing.assert_array_equal(
        requantize_float(acc, mult, zp, -128, 127), requantize_float_spec(acc, mult, zp, -128, 127)
    )


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**31), m=st.floats(1e-5, 0.9))
def test_fixed_and_float_differ_by_at_most_one_step(seed, m):
    """Both round M acc; the float path rounds the product in float32 and ties to even, the
    fixed path rounds M to 31 bits and rounds twice: they agree to within one step."""
    rng = np.random.default_rng(seed)
    acc = rng.integers(-(2**20), 2**20, size=500).astype(np.int32)
    m0, s = quantize_multiplier(m)
    wide = -(2**31), 2**31 - 1
    fx = requantize_fixed_point(acc, m0, s, 0, *wide).astype(np.int64)
    fl = requantize_float(acc, m, 0, *wide).astype(np.int64)
    assert np.abs(fx - fl).max() <= 1
    exact = np.asarray([math.floor(float(a) * m + 0.5) for a in acc])
    assert np.abs(fx - exact).max() <= 1


def test_requantize_errors():
    with pytest.raises(ValueError, match="shape"):
        requantize_float(np.zeros((2, 3), np.int32), np.ones(4), 0, -128, 127)
    with pytest.raises(TypeError, match="integer"):
        requantize_float(np.zeros(3), 0.5, 0, -128, 127)
    with pytest.raises(ValueError, match="outside int32"):
        requantize_float(np.array([2**40]), 0.5, 0, -128, 127)
    with pytest.raises(ValueError, match=r"\[0, 31\]"):
        rounding_divide_by_pot(np.array([1]), 32)
    with pytest.raises(ValueError, match="qmin"):
        requantize_float(np.array([1]), 0.5, 0, 5, 2)


@settings(max_examples=300, deadline=None)
@given(a=int32s, b=st.integers(0, I32MAX))
def test_srdhm_equals_floor_form_used_in_the_fused_epilogue(a, b):
    """For b = M0 >= 0 (no saturation case): SRDHM(a, b) = floor((a b + 2^30) / 2^31)."""
    floor_form = (a * b + (1 << 30)) >> 31  # Python ints: exact, >> floors
    assert int(srdhm_spec(np.array([a]), np.array([b]))[0]) == floor_form
