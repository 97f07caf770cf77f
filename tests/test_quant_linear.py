"""LinearQuantizer and the affine functional forms: PyTorch's qparams by hand, granularity,
properties over random inputs (hypothesis), and bad input."""

import copy

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from refq.quant import (
    LinearQuantizer,
    QParams,
    calculate_qparams,
    dequantize_affine,
    fake_quantize_affine,
    quant_range,
    quantize_affine,
)

F32 = np.float32
EPS = np.finfo(np.float32).eps

# ---- PyTorch's qparams rules, by hand --------------------------------------------------------


def test_qparams_affine_quint8_by_hand():
    # [-1, 3]: scale = 4 / 255 (float32), zero_point = 0 - round(-1 / scale) = round(63.75) = 64
    s, z = calculate_qparams(-1.0, 3.0, 0, 255)
    assert s == F32(4) / F32(255) and s.dtype == np.float32
    assert z == 64 and z.dtype == np.int32


def test_qparams_affine_qint8_by_hand():
    # same range on [-128, 127]: zero_point = -128 + 64 = -64
    s, z = calculate_qparams(-1.0, 3.0, -128, 127)
    assert s == F32(4) / F32(255) and z == -64


def test_qparams_range_widened_to_include_zero():
    # [0.5, 2] -> [0, 2]: scale 2 / 255, zero_point 0
    s, z = calculate_qparams(0.5, 2.0, 0, 255)
    assert s == F32(2) / F32(255) and z == 0
    # [-3, -1] -> [-3, 0]: scale 3 / 255, zero_point 0 - round(-255) = 255
    s, z = calculate_qparams(-3.0, -1.0, 0, 255)
    assert s == F32(3) / F32(255) and z == 255


def test_qparams_symmetric_by_hand():
    # signed full range: scale = max|x| / ((127 + 128) / 2) = 2 / 127.5, zero point 0
    s, z = calculate_qparams(-2.0, 1.0, -128, 127, symmetric=True)
    assert s == F32(2) / F32(127.5) and z == 0
    # narrow [-127, 127]: 2 / 127
    s, z = calculate_qparams(-2.0, 1.0, -127, 127, symmetric=True)
    assert s == F32(2) / F32(127) and z == 0
    # unsigned 8-bit symmetric: zero point 128
    s, z = calculate_qparams(-2.0, 1.0, 0, 255, symmetric=True)
    assert s == F32(2) / F32(127.5) and z == 128


def test_qparams_scale_floored_at_eps_for_zero_tensor():
    s, z = calculate_qparams(0.0, 0.0, -128, 127)
    assert s == EPS and z == -128
    s, z = calculate_qparams(0.0, 0.0, -128, 127, symmetric=True)
    assert s == EPS and z == 0
    # tiny ranges are floored too
    s, _ = calculate_qparams(-1e-12, 1e-12, -128, 127)
    assert s == EPS


def test_qparams_per_channel_elementwise():
    s, z = calculate_qparams(np.array([-1.0, 0.0]), np.array([3.0, 2.0]), 0, 255)
    assert s.shape == (2,) and z.tolist() == [64, 0]


def test_quant_range_table():
    assert quant_range(8, True) == (-128, 127)
    assert quant_range(8, False) == (0, 255)
    assert quant_range(8, True, narrow_range=True) == (-127, 127)
    assert quant_range(8, False, narrow_range=True) == (1, 255)
    assert quant_range(2, True) == (-2, 1)
    assert quant_range(16, False) == (0, 65535)


# ---- the functional forms, by hand ---------------------------------------------------------------


def test_quantize_affine_by_hand():
    # scale 0.5, zero point 3, [0, 15]: x / 0.5 + 3: -1 -> 1; 0.74 -> 1.48 -> 1 -> 4;
    # 0.75 -> 1.5 -> 2 -> 5 (tie to even); 1.25 -> 2.5 -> 2 -> 5; 100 -> 15; -100 -> 0
    x = np.array([-1.0, 0.74, 0.75, 1.25, 100.0, -100.0])
    q = quantize_affine(x, F32(0.5), np.int32(3), 0, 15)
    assert q.tolist() == [1, 4, 5, 5, 15, 0] and q.dtype == np.uint8
    assert dequantize_affine(q, F32(0.5), np.int32(3)).tolist() == [-1, 0.5, 1, 1, 6, -1.5]
    assert fake_quantize_affine(x, F32(0.5), np.int32(3), 0, 15).dtype == np.float32


def test_quantize_affine_half_away():
    q = quantize_affine(np.array([0.75, 1.25]), F32(0.5), np.int32(3), 0, 15, rounding="half_away")
    assert q.tolist() == [5, 6]


def test_dequantize_subtraction_is_integer():
    # uint8 codes minus a zero point must not wrap around (uint8 arithmetic would give 246)
    q = np.array([0], dtype=np.uint8)
    assert dequantize_affine(q, F32(1.0), np.int32(10))[0] == -10.0


def test_linear_quantizer_by_hand():
    # 4-bit signed affine on [-1, 2]: scale 3/15 = 0.2, zero point -8 - round(-5) = -3
    qz = LinearQuantizer(bits=4).set_range(-1.0, 2.0)
    assert qz.qparams == QParams(qz.qparams.scale, qz.qparams.zero_point, -8, 7, None, None)
    assert qz.qparams.scale == F32(3) / F32(15) and qz.qparams.zero_point == -3
    x = np.array([-1.0, -0.1, 0.0, 0.45, 2.0, 5.0])
    # x / 0.2 - 3: -5 -3 = -8; -0.5 -> -0 -> -3; 0 -> -3; 2.25 -> 2 -> -1; 10 -> 7; clamp 7
    assert qz.quantize(x).tolist() == [-8, -3, -3, -1, 7, 7]


def test_symmetric_narrow_and_unsigned_quantizers():
    qz = LinearQuantizer(bits=8, symmetric=True, narrow_range=True).set_range(-2.0, 1.0)
    assert (qz.quant_min, qz.quant_max) == (-127, 127)
    assert qz.quantize(np.array([-2.0, 2.0, -5.0])).tolist() == [-127, 127, -127]
    uq = LinearQuantizer(bits=8, symmetric=True, signed=False).set_range(-1.0, 1.0)
    assert uq.qparams.zero_point == 128
    # -1 / float32(1 / 127.5) = -127.49999... (the float32 scale is slightly above 1 / 127.5),
    # so -1 maps to 1, not 0; -1.01 clamps to 0
    assert uq.quantize(np.array([0.0, -1.0, -1.01])).tolist() == [128, 1, 0]
    assert uq.quantize(np.array([0.0])).dtype == np.uint8


@pytest.mark.parametrize(
    "bits,signed,dt",
    [(2, True, np.int8), (8, True, np.int8), (8, False, np.uint8), (9, True, np.int16),
     (16, True, np.int16), (16, False, np.uint16)],
)  # fmt: skip
def test_code_dtypes(bits, signed, dt):
    qz = LinearQuantizer(bits=bits, signed=signed).set_range(-1.0, 1.0)
    q = qz.quantize(np.linspace(-2, 2, 11))
    assert q.dtype == dt
    assert q.min() == qz.quant_min and q.max() == qz.quant_max


def test_16_bit_error_is_tiny():
    x = np.random.default_rng(0).uniform(-1, 1, 1000)
    qz = LinearQuantizer(bits=16).fit(x)
    assert np.abs(qz.fake_quant(x) - x).max() <= float(qz.qparams.scale) / 2 + 1e-7


# ---- granularity -------------------------------------------------------------------------------


@pytest.mark.parametrize("axis", [0, 1, 2, -1])
@pytest.mark.parametrize("symmetric", [False, True])
def test_per_channel_equals_loop_of_per_tensor(axis, symmetric):
    rng = np.random.default_rng(axis + 10)
    x = rng.normal(size=(3, 4, 5)) * rng.uniform(0.1, 5, size=(1, 4, 1))
    pc = LinearQuantizer(bits=6, symmetric=symmetric, axis=axis).fit(x)
    C = x.shape[axis]
    assert pc.qparams.scale.shape == (C,)
    q = pc.quantize(x)
    xh = pc.fake_quant(x)
    for c in range(C):
        xc = np.take(x, c, axis=axis)
        pt = LinearQuantizer(bits=6, symmetric=symmetric).fit(xc)
        assert np.array_equal(np.take(q, c, axis=axis), pt.quantize(xc))
        assert np.array_equal(np.take(xh, c, axis=axis), pt.fake_quant(xc))


def test_per_group_equals_loop_of_per_tensor():
    rng = np.random.default_rng(3)
    w = rng.normal(size=(4, 12)) * np.array([1, 10, 0.1, 3])[:, None]  # (out, in)
    gq = LinearQuantizer(bits=4, axis=1, group_size=3).fit(w)
    assert gq.qparams.scale.shape == (4, 4)  # (out, in // 3)
    assert gq.qparams.group_size == 3 and gq.qparams.axis == 1
    q = gq.quantize(w)
    for o in range(4):
        for g in range(4):
            blk = w[o, 3 * g : 3 * g + 3]
            pt = LinearQuantizer(bits=4).fit(blk)
            assert np.array_equal(q[o, 3 * g : 3 * g + 3], pt.quantize(blk))


def test_per_group_along_axis_0_and_group_size_equal_to_axis_is_per_channel():
    rng = np.random.default_rng(4)
    w = rng.normal(size=(6, 3))
    g = LinearQuantizer(bits=8, axis=0, group_size=6).fit(w)  # one group per column
    c = LinearQuantizer(bits=8, axis=1).fit(w)
    assert g.qparams.scale.shape == (1, 3)
    assert np.array_equal(g.quantize(w), c.quantize(w))


def test_per_channel_set_range_from_observer_style_arrays():
    qz = LinearQuantizer(bits=8, axis=0).set_range(np.array([-1.0, 0.0]), np.array([1.0, 4.0]))
    x = np.array([[0.5, -1.0], [4.0, 2.0]])
    # channel 1: [0, 4] -> scale float32(4 / 255) = 0.0156862754 (> 4 / 255), zero point -128;
    # 4 -> 254.99999 -> 255 - 128 = 127; 2 -> 127.4999996 -> 127 - 128 = -1
    assert float(qz.qparams.scale[1]) > 4 / 255
    assert qz.quantize(x)[1].tolist() == [127, -1]
    # channel 0: [-1, 1] -> scale float32(2 / 255) (also > 2 / 255), -1 / scale = -127.4999...
    # -> -127, zero point -128 + 127 = -1 (not the "expected" 0); 0.5 -> 63.75 -> 64 - 1 = 63;
    # -1 -> -127 - 1 = -128
    assert qz.qparams.zero_point.tolist() == [-1, -128]
    assert qz.quantize(x)[0].tolist() == [63, -128]


# ---- properties (hypothesis) -------------------------------------------------------------------

configs = st.fixed_dictionaries(
    {
        "bits": st.integers(2, 16),
        "symmetric": st.booleans(),
        "signed": st.booleans(),
        "narrow_range": st.booleans(),
    }
)
ranges = st.tuples(st.floats(-100, 100), st.floats(-100, 100)).map(sorted)
data = hnp.arrays(np.float64, st.integers(1, 40), elements=st.floats(-200, 200))


@settings(max_examples=60, deadline=None)
@given(configs, ranges, data)
def test_properties(cfg, rng_, x):
    lo, hi = rng_
    qz = LinearQuantizer(**cfg).set_range(lo, hi)
    s = float(qz.qparams.scale)
    q = qz.quantize(x)
    # codes stay in range
    assert q.min() >= qz.quant_min and q.max() <= qz.quant_max
    # zero is exact
    assert qz.fake_quant(np.zeros(3)).tolist() == [0.0, 0.0, 0.0]
    # fake_quant is idempotent (bit for bit)
    fq = qz.fake_quant(x)
    assert np.array_equal(qz.fake_quant(fq), fq)
    # monotone
    xs = np.sort(x)
    assert np.all(np.diff(qz.quantize(xs).astype(np.int64)) >= 0)
    # inside the representable range the error is at most scale / 2 (+ float32 rounding)
    z = int(qz.qparams.zero_point)
    lo_r, hi_r = (qz.quant_min - z) * s, (qz.quant_max - z) * s
    inside = (x >= lo_r) & (x <= hi_r)
    err = np.abs(fq.astype(np.float64) - x)[inside]
    assert np.all(err <= s / 2 + 1e-6 * np.maximum(1.0, np.abs(x[inside])))


@settings(max_examples=40, deadline=None)
@given(st.integers(2, 16), ranges)
def test_error_bound_on_the_observed_range(bits, rng_):
    """Affine: every x in [min(lo, 0), max(hi, 0)] is within scale / 2 of its fake_quant."""
    lo, hi = rng_
    qz = LinearQuantizer(bits=bits).set_range(lo, hi)
    s = float(qz.qparams.scale)
    x = np.linspace(min(lo, 0.0), max(hi, 0.0), 257)
    err = np.abs(qz.fake_quant(x).astype(np.float64) - x)
    assert np.all(err <= s / 2 + 1e-6 * np.maximum(1.0, np.abs(x)))


# ---- interface details -------------------------------------------------------------------------


def test_deepcopy_then_set_range_leaves_original():
    qz = LinearQuantizer(bits=8).set_range(-1.0, 1.0)
    cp = copy.deepcopy(qz).set_range(-5.0, 5.0)
    assert qz.qparams.scale == F32(2) / F32(255)
    assert cp.qparams.scale == F32(10) / F32(255)


def test_float32_input_stays_float32_output_is_float32():
    x = np.linspace(-1, 1, 7, dtype=np.float32)
    qz = LinearQuantizer(bits=8).fit(x)
    assert qz.fake_quant(x).dtype == np.float32
    assert qz.fake_quant(x.astype(np.float64)).dtype == np.float32


# ---- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize("bits", [1, 17, 0])
def test_bits_out_of_range(bits):
    with pytest.raises(ValueError, match=r"bits must be an integer in \[2, 16\]"):
        LinearQuantizer(bits=bits)


def test_range_errors():
    with pytest.raises(ValueError, match="x_max < x_min"):
        LinearQuantizer().set_range(1.0, -1.0)
    with pytest.raises(ValueError, match="NaN or infinite"):
        LinearQuantizer().set_range(np.nan, 1.0)
    with pytest.raises(ValueError, match="NaN or infinite"):
        LinearQuantizer().set_range(0.0, np.inf)
    with pytest.raises(ValueError, match="scalar min/max"):
        LinearQuantizer().set_range(np.zeros(2), np.ones(2))


def test_data_errors():
    qz = LinearQuantizer().set_range(-1.0, 1.0)
    with pytest.raises(ValueError, match="NaN or infinite"):
        qz.quantize(np.array([0.0, np.nan]))
    with pytest.raises(ValueError, match="NaN or infinite"):
        qz.fit(np.array([np.inf]))
    with pytest.raises(TypeError, match="numeric"):
        qz.quantize(np.array(["a"]))
    with pytest.raises(TypeError, match="integer array of codes"):
        qz.dequantize(np.array([0.5]))
    with pytest.raises(ValueError, match="no range yet"):
        LinearQuantizer().quantize(np.ones(2))


def test_axis_and_group_errors():
    with pytest.raises(ValueError, match="axis 2 does not exist"):
        LinearQuantizer(axis=2).fit(np.ones((3, 4)))
    with pytest.raises(ValueError, match="axis -3 does not exist"):
        LinearQuantizer(axis=-3).fit(np.ones((3, 4)))
    with pytest.raises(ValueError, match="group_size 5 does not divide axis 1 of length 12"):
        LinearQuantizer(axis=1, group_size=5).fit(np.ones((2, 12)))
    with pytest.raises(ValueError, match="group_size needs axis"):
        LinearQuantizer(group_size=4)
    with pytest.raises(ValueError, match="group_size must be >= 1"):
        LinearQuantizer(axis=0, group_size=0)
    with pytest.raises(TypeError, match="axis must be an int"):
        LinearQuantizer(axis=1.0)
    qz = LinearQuantizer(axis=0).set_range(np.zeros(3), np.ones(3))
    with pytest.raises(ValueError, match="does not match axis 0 of length 4"):
        qz.quantize(np.ones((4, 2)))


def test_functional_errors():
    with pytest.raises(ValueError, match="scale must be finite and > 0"):
        quantize_affine(np.ones(2), F32(0.0), np.int32(0), -128, 127)
    with pytest.raises(ValueError, match="zero_point must lie in"):
        quantize_affine(np.ones(2), F32(1.0), np.int32(300), 0, 255)
    with pytest.raises(TypeError, match="zero_point must be an integer"):
        quantize_affine(np.ones(2), F32(1.0), 0.5, 0, 255)
    with pytest.raises(ValueError, match="quant_min .* must be < quant_max"):
        quantize_affine(np.ones(2), F32(1.0), np.int32(0), 5, 5)


def test_constant_tensor_does_not_divide_by_zero():
    """x_max == x_min: the range is widened to contain 0, so a constant c != 0 gets the range
    [0, c] (c is representable: affine maps it to quant_max); an all-zero tensor gets the eps
    scale and comes back as exact zeros."""
    c = np.full(6, 3.25)
    with np.errstate(all="raise"):
        qz = LinearQuantizer(bits=8).fit(c)
        assert qz.fake_quant(c).tolist() == [3.25] * 6
        assert qz.quantize(c).tolist() == [127] * 6
        zq = LinearQuantizer(bits=8, symmetric=True).fit(np.zeros(4))
        assert zq.qparams.scale == EPS
        assert zq.fake_quant(np.zeros(4)).tolist() == [0.0] * 4


def test_qparams_equality_per_channel():
    a = LinearQuantizer(bits=8, axis=0).set_range(np.array([-1.0, 0.0]), np.array([1.0, 2.0]))
    b = LinearQuantizer(bits=8, axis=0).set_range(np.array([-1.0, 0.0]), np.array([1.0, 2.0]))
    c = LinearQuantizer(bits=8, axis=0).set_range(np.array([-1.0, 0.0]), np.array([1.0, 3.0]))
    assert a.qparams == b.qparams
    assert a.qparams != c.qparams
