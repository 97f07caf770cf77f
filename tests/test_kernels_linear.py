"""The quantized linear layer: gemmlowp zero-point expansion, int32 bias, per-channel scales."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from refq.kernels import simd
from refq.kernels.gemm import pack_weight
from refq.kernels.int4 import pack_int4, pack_weight_int4
from refq.kernels.linear import (
    quantize_input,
    quantized_linear,
    quantized_linear_acc,
    quantized_linear_dequant,
)
from refq.kernels.requant import quantize_multiplier
from refq.kernels.spec import linear_acc_spec, requantize_fixed_point_spec, requantize_float_spec


def test_hand_worked_acc_with_both_zero_points():
    x = np.array([[3, 5], [0, 255]], dtype=np.uint8)  # z_x = 1
    w = np.array([[2, -1], [1, 1]], dtype=np.int8)  # z_w = [1, -1]
    bias = np.array([10, -3], dtype=np.int32)
    # row 0: (3-1)(2-1) + (5-1)(-1-1) + 10 = 2 - 8 + 10 = 4;  (2)(1+1) + (4)(1+1) - 3 = 9
    # row 1: (0-1)(1) + (254)(-2) + 10 = -1 - 508 + 10 = -499;  (-1)(2) + (254)(2) - 3 = 503
    acc = quantized_linear_acc(x, 1, pack_weight(w), np.array([1, -1]), bias)
    np.testing.assert_array_equal(acc, [[4, 9], [-499, 503]])
    np.testing.assert_array_equal(linear_acc_spec(x, 1, w, np.array([1, -1]), bias), acc)


def test_hand_worked_requantized_per_channel():
    x = np.array([[3, 5], [0, 255]], dtype=np.uint8)
    w = np.array([[2, -1], [1, 1]], dtype=np.int8)
    bias = np.array([10, -3], dtype=np.int32)
    mult = np.array([0.5, 0.25])  # s_x s_w[n] / s_out per channel
    # acc [[4, 9], [-499, 503]] -> [[2, 2.25], [-249.5, 125.75]] + 5
    out = quantized_linear(x, 1, pack_weight(w), np.array([1, -1]), bias, mult, 5, np.int8)
    np.testing.assert_array_equal(out, [[7, 7], [-128, 127]])  # -244.5, 131 clamp
    out = quantized_linear(x, 1, pack_weight(w), np.array([1, -1]), bias, mult * 0.1, 5, np.uint8)
    # [[0.2, 0.225], [-24.95, 12.575]] -> [[0, 0], [-25, 13]] + 5 -> [[5, 5], [0 (clamp -20), 18]]
    np.testing.assert_array_equal(out, [[5, 5], [0, 18]])
    assert out.dtype == np.uint8


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 2**31), m=st.integers(1, 30), k=st.integers(1, 200),
    n=st.integers(1, 100), unsigned=st.booleans(), per_channel=st.booleans(),
    mode=st.sampled_from(["float", "fixed_point"]), out_unsigned=st.booleans(),
)  # fmt: skip
def test_bit_exact_with_spec(seed, m, k, n, unsigned, per_channel, mode, out_unsigned):
    rng = np.random.default_rng(seed)
    xdt = np.uint8 if unsigned else np.int8
    info = np.iinfo(xdt)
    x = rng.integers(info.min, info.max + 1, (m, k)).astype(xdt)
    w = rng.integers(-128, 128, (n, k)).astype(np.int8)
    zx = int(rng.integers(info.min, info.max + 1))
    zw = rng.integers(-5, 6, n) if per_channel else int(rng.integers(-5, 6))
    bias = rng.integers(-5000, 5000, n).astype(np.int32)
    mult = rng.uniform(1e-4, 1e-2, n) if per_channel else float(rng.uniform(1e-4, 1e-2))
    odt = np.uint8 if out_unsigned else np.int8
    zo = int(rng.integers(0, 256)) if out_unsigned else int(rng.integers(-128, 128))
    pw = pack_weight(w)
    acc = linear_acc_spec(x, zx, w, zw, bias)
    np.testing.assert_array_equal(quantized_linear_acc(x, zx, pw, zw, bias), acc)
    oi = np.iinfo(odt)
    if mode == "float":
        ref = requantize_float_spec(acc, mult, zo, oi.min, oi.max)
    else:
        m0, s = quantize_multiplier(mult)
        ref = requantize_fixed_point_spec(acc, m0, s, zo, oi.min, oi.max)
    out = quantized_linear(x, zx, pw, zw, bias, mult, zo, odt, mode=mode)
    assert out.dtype == odt
    np.testing.assert_array_equal(out, ref)


def test_dequantized_output_approximates_float_layer():
    """The int32 accumulator times s_x s_w is the float layer up to the quantization error."""
    rng = np.random.default_rng(0)
    xf = rng.standard_normal((16, 64)).astype(np.float32)
    wf = (rng.standard_normal((32, 64)) * 0.1).astype(np.float32)
    bf = rng.standard_normal(32).astype(np.float32)
    s_x = float(np.abs(xf).max() / 127)
    s_w = np.abs(wf).max(axis=1) / 127  # per output channel
    x_q = quantize_input(xf, s_x, 0, np.int8)
    w_q = np.clip(np.rint(wf / s_w[:, None]), -127, 127).astype(np.int8)
    b_q = np.rint(bf / (s_x * s_w)).astype(np.int32)
    acc = quantized_linear_acc(x_q, 0, pack_weight(w_q), 0, b_q)
    y = acc * (s_x * s_w)  # (M, N) * (N,)
    ref = xf @ wf.T + bf
    assert np.abs(y - ref).max() < 0.05 * np.abs(ref).max()


def test_leading_dimensions_are_kept():
    rng = np.random.default_rng(1)
    x = rng.integers(-128, 128, (2, 3, 10)).astype(np.int8)  # (B, T, C)
    w = rng.integers(-128, 128, (4, 10)).astype(np.int8)
    out = quantized_linear_acc(x, 0, pack_weight(w), 0, None)
    assert out.shape == (2, 3, 4)
    np.testing.assert_array_equal(
        out.reshape(6, 4), linear_acc_spec(x.reshape(6, 10), 0, w, 0, None)
    )


def test_int4_weights_match_int8_weights():
    rng = np.random.default_rng(2)
    codes = rng.integers(-8, 8, (70, 33)).astype(np.int8)
    x = rng.integers(0, 256, (9, 33)).astype(np.uint8)
    bias = rng.integers(-100, 100, 70).astype(np.int32)
    p4 = pack_weight_int4(pack_int4(codes), 33)
    p8 = pack_weight(codes)
    assert p4.nbytes * 2 == p8.nbytes
    a4 = quantized_linear(x, 7, p4, 0, bias, 0.01, 0, np.int8, mode="fixed_point")
    a8 = quantized_linear(x, 7, p8, 0, bias, 0.01, 0, np.int8, mode="fixed_point")
    np.testing.assert_array_equal(a4, a8)


def test_overflow_bound_is_checked_before_computing():
    """Static bound K max|x - z_x| max|w - z_w| + max|bias| <= 2^31 - 1, checked by hand."""
    x = np.full((1, 4), 255, np.uint8)
    w = np.full((1, 4), 127, np.int8)
    big_bias = np.array([2**31 - 100], np.int32)  # 4 * 255 * 128 + bias > 2^31 - 1
    with pytest.raises(ValueError, match="could overflow int32"):
        quantized_linear_acc(x, 0, pack_weight(w), 0, big_bias)
    with pytest.raises(ValueError, match="could overflow int32"):
        quantized_linear(x, 0, pack_weight(w), 0, big_bias, 1e-6, 0, np.int8)
    # at the bound: K = 65793, 255 * (-128) each: -65793 * 32640 = -2147483520 >= -2^31, exact
    k = 65793
    xk, wk = np.full((1, k), 255, np.uint8), np.full((1, k), -128, np.int8)
    acc = quantized_linear_acc(xk, 0, pack_weight(wk), 0, np.array([0], np.int32))
    assert int(acc[0, 0]) == -65793 * 32640
    with pytest.raises(ValueError, match="could overflow"):  # 65793 * 255 * 128 + 200 > 2^31 - 1
        quantized_linear_acc(xk, 0, pack_weight(wk), 0, np.array([200], np.int32))
    with pytest.raises(ValueError, match="could overflow"):  # a zero point widens the range
        quantized_linear_acc(xk, 0, pack_weight(wk), 3, None)


def test_errors_are_clear():
    pw = pack_weight(np.zeros((3, 4), np.int8))
    x = np.zeros((2, 4), np.int8)
    with pytest.raises(ValueError, match="K = 4"):
        quantized_linear_acc(np.zeros((2, 5), np.int8), 0, pw, 0, None)
    with pytest.raises(TypeError, match="x_q"):
        quantized_linear_acc(x.astype(np.float32), 0, pw, 0, None)
    with pytest.raises(TypeError, match="bias_int32"):
        quantized_linear_acc(x, 0, pw, 0, np.zeros(3, np.int64))
    with pytest.raises(ValueError, match="w_zero_point"):
        quantized_linear_acc(x, 0, pw, np.zeros(2, np.int64), None)
    with pytest.raises(ValueError, match="mode"):
        quantized_linear(x, 0, pw, 0, None, 0.1, 0, np.int8, mode="double")
    with pytest.raises(TypeError, match="out_dtype"):
        quantized_linear(x, 0, pw, 0, None, 0.1, 0, np.int16)
    with pytest.raises(ValueError, match="multiplier"):
        quantized_linear(x, 0, pw, 0, None, -0.1, 0, np.int8)


def test_quantize_input_matches_formula():
    rng = np.random.default_rng(3)
    x = (rng.standard_normal((50, 37)) * 3).astype(np.float32)
    x[0, :4] = [0.5, 1.5, -0.5, 2.5]  # ties (scale 1 below): to even
    for dt, zp in ((np.int8, -3), (np.uint8, 128)):
        info = np.iinfo(dt)
        ref = np.clip(np.rint(x / np.float32(0.05)) + zp, info.min, info.max).astype(dt)
        np.testing.assert_array_equal(quantize_input(x, 0.05, zp, dt), ref)
    np.testing.assert_array_equal(quantize_input(x[0, :4], 1.0, 0), [0, 2, 0, 2])
    with pytest.raises(ValueError, match="scale"):
        quantize_input(x, 0.0, 0)


def test_dequant_output_equals_acc_times_scale_in_float32():
    rng = np.random.default_rng(4)
    x = rng.integers(0, 256, (2, 5, 40)).astype(np.uint8)
    w = rng.integers(-128, 128, (24, 40)).astype(np.int8)
    zw = rng.integers(-3, 4, 24)
    bias = rng.integers(-999, 999, 24).astype(np.int32)
    scale = rng.uniform(1e-4, 1e-3, 24).astype(np.float32)
    pw = pack_weight(w)
    acc = quantized_linear_acc(x, 100, pw, zw, bias)
    y = quantized_linear_dequant(x, 100, pw, zw, bias, scale)
    assert y.dtype == np.float32 and y.shape == (2, 5, 24)
    np.testing.assert_array_equal(y, acc.astype(np.float32) * scale)
    with pytest.raises(ValueError, match="out_scale"):
        quantized_linear_dequant(x, 100, pw, zw, bias, np.ones(3))


@pytest.mark.parametrize(
    "isa", [i for i in ("avx512vnni", "avxvnni", "portable") if i in simd.supported_isas()]
)
def test_fused_epilogue_on_every_isa(isa, monkeypatch):
    """The fused GEMM + requantization agrees with the spec on each micro-kernel path."""
    monkeypatch.setattr(simd, "ISA", isa)
    rng = np.random.default_rng(5)
    x = rng.integers(-128, 128, (13, 70)).astype(np.int8)
    w = rng.integers(-128, 128, (67, 70)).astype(np.int8)
    zw = rng.integers(-4, 5, 67)
    bias = rng.integers(-3000, 3000, 67).astype(np.int32)
    mult = rng.uniform(1e-4, 1e-3, 67)
    acc = linear_acc_spec(x, -7, w, zw, bias)
    pw = pack_weight(w)
    m0, s = quantize_multiplier(mult)
    for mode, ref in (
        ("float", requantize_float_spec(acc, mult, 3, -128, 127)),
        ("fixed_point", requantize_fixed_point_spec(acc, m0, s, 3, -128, 127)),
    ):
        out = quantized_linear(x, -7, pw, zw, bias, mult, 3, np.int8, mode=mode)
        np.testing.assert_array_equal(out, ref)
