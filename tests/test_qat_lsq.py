"""LSQFakeQuantize: the scale gradient by hand, by finite differences, per channel, and the guards.

What the finite-difference tests check, exactly:

1. The *true* derivative. Where no ``x / s`` crosses a rounding transition between ``s - h`` and
   ``s + h``, ``x_hat(s) = (q - z) * s`` with constant codes ``q``, so ``sum(w * x_hat)`` is
   linear in ``s`` and its central difference is exactly ``sum(w * (q - z))``. LSQ's gradient
   differs from it by the straight-through term ``-x/s`` on the unclamped elements, and by
   nothing on the clamped ones.
2. The *STE-smoothed* objective. Replace ``round(v)`` near ``v0 = x / s0`` by
   ``round(v0) + (v - v0)``; the smoothed ``x_hat`` is ``(round(v0) + x/s - v0) * s`` inside and
   ``(q_clamp - z) * s`` where clamped. Its central difference at ``s0`` (float64, computed here
   independently of refq) equals LSQ's gradient ``round(x/s) - x/s`` / ``q_clamp - z``.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from refq.calibration import MinMaxObserver
from refq.qat import FakeQuantize, LSQFakeQuantize, lsq_grad_scale, lsq_init_scale
from refq.quant.affine import FLOAT32_EPS
from refq.quant.linear import LinearQuantizer

F32 = np.float32


def sym4(**kw) -> LinearQuantizer:
    return LinearQuantizer(bits=4, symmetric=True, **kw)  # codes [-8, 7], zero point 0


def elementwise_scale_grad(m: LSQFakeQuantize, x: np.ndarray) -> np.ndarray:
    """d x_hat_i / d s for each i, read from the module with one-hot upstream gradients."""
    out = np.zeros(x.size)
    for i in range(x.size):
        m.zero_grad()
        m(x)
        d = np.zeros_like(x)
        d.flat[i] = 1
        m.backward(d)
        out[i] = float(m.grads["scale"])
    return out


# -- hand-worked gradients ------------------------------------------------------------------------


def test_scale_gradient_elementwise_by_hand_symmetric():
    # scale 0.5, codes [-8, 7], z = 0. v = x / 0.5; inside d/ds = round(v) - v; clamped: qmin/qmax.
    x = F32([0.75, -1.25, 0.125, 3.5, 3.75, -4.0, -4.25, -5.0, 0.0])
    expected = [
        2 - 1.5,  # 0.75: v 1.5 -> 2 (half even): 0.5
        -2 + 2.5,  # -1.25: v -2.5 -> -2: 0.5
        0 - 0.25,  # 0.125: v 0.25 -> 0: -0.25
        7 - 7.0,  # 3.5: v 7 -> 7 = quant_max, inside (inclusive): 0
        7,  # 3.75: v 7.5 -> 8 > 7: clamped above: quant_max - z = 7
        -8 + 8.0,  # -4.0: v -8 = quant_min, inside: 0
        -8 + 8.5,  # -4.25: v -8.5 -> -8 (half even), inside: 0.5
        -8,  # -5.0: v -10: clamped below: quant_min - z = -8
        0.0,  # 0: v 0 -> 0: 0
    ]
    m = LSQFakeQuantize(sym4(), scale=0.5, grad_scale=False)
    np.testing.assert_array_equal(elementwise_scale_grad(m, x), expected)
    y = m(x)
    np.testing.assert_array_equal(y, F32([1.0, -1.0, 0.0, 3.5, 3.5, -4.0, -4.0, -4.0, 0.0]))
    np.testing.assert_array_equal(m.backward(np.ones(9, F32)), F32([1, 1, 1, 1, 0, 1, 1, 0, 1]))


def test_scale_and_zero_point_gradient_by_hand_affine():
    # 4-bit affine codes [-8, 7], learned zero point z = -3, scale 0.25.
    # code = round(x / 0.25) - 3; inside iff round(v) in [-5, 10].
    x = F32([0.375, 2.5, 2.75, -1.25, -1.5])
    # 0.375: v 1.5 -> 2, inside: ds = 2 - 1.5 = 0.5, dz = 0
    # 2.5: v 10 -> code 7 (inclusive): ds = 10 - 10 = 0, dz = 0
    # 2.75: v 11 -> code 8 > 7: ds = quant_max - z = 7 + 3 = 10, dz = -s = -0.25
    # -1.25: v -5 -> code -8 (inclusive): ds = 0, dz = 0
    # -1.5: v -6 -> code -9 < -8: ds = quant_min - z = -8 + 3 = -5, dz = -0.25
    m = LSQFakeQuantize(
        LinearQuantizer(bits=4), scale=0.25, zero_point=-3, learn_zero_point=True, grad_scale=False
    )
    np.testing.assert_array_equal(elementwise_scale_grad(m, x), [0.5, 0.0, 10.0, 0.0, -5.0])
    dz = []
    for i in range(5):
        m.zero_grad()
        m(x)
        d = np.zeros(5, F32)
        d[i] = 1
        m.backward(d)
        dz.append(float(m.grads["zero_point"]))
    assert dz == [0.0, 0.0, -0.25, 0.0, -0.25]
    np.testing.assert_array_equal(m(x), F32([0.5, 2.5, 2.5, -1.25, -1.25]))


def test_gradient_scale_value_by_hand():
    # N = 4 elements, quant_max = 7: g = 1 / sqrt(28).
    # Elementwise ds: 0.5, -0.25, 7, -8 -> sum -0.75
    x = F32([0.75, 0.125, 3.75, -5.0])
    m = LSQFakeQuantize(sym4(), scale=0.5)
    m(x)
    m.backward(np.ones(4, F32))
    assert lsq_grad_scale(4, 7) == 1 / np.sqrt(28)
    np.testing.assert_allclose(float(m.grads["scale"]), -0.75 / np.sqrt(28), rtol=1e-6)
    m.backward(np.ones(4, F32))  # accumulates, as refq.nn grads do
    np.testing.assert_allclose(float(m.grads["scale"]), -1.5 / np.sqrt(28), rtol=1e-6)


def test_lsq_init_by_hand_and_on_first_forward():
    # mean |x| = (1 + 3 + 0.5 + 0.5) / 4 = 1.25; quant_max 7: s = 2.5 / sqrt(7)
    x = F32([1.0, -3.0, 0.5, -0.5])
    m = LSQFakeQuantize(sym4())
    assert not m.initialized and m.params == {}
    m(x)
    np.testing.assert_allclose(float(m.params["scale"]), 2.5 / np.sqrt(7), rtol=1e-6)
    assert m.params["scale"].dtype == np.float32 and m.grads["scale"].shape == ()
    x2 = F32([[1.0, -3.0], [0.5, 0.5]])  # per channel along axis 0: means 2 and 0.5
    np.testing.assert_allclose(lsq_init_scale(x2, 7, axis=0), [4 / np.sqrt(7), 1 / np.sqrt(7)])
    m2 = LSQFakeQuantize(sym4(axis=0))
    m2(x2)
    np.testing.assert_allclose(m2.params["scale"], [4 / np.sqrt(7), 1 / np.sqrt(7)], rtol=1e-6)


# -- finite differences (float64) -----------------------------------------------------------------


def _away_from_ties(x: np.ndarray, s: float, margin: float) -> np.ndarray:
    v = x / s
    return x[np.abs(v - np.floor(v) - 0.5) > margin]


def test_true_derivative_by_finite_differences_is_lsq_minus_the_ste_term():
    rng = np.random.default_rng(0)
    s0, h = 0.25, 2.0**-12  # dyadic: s0 +- h and every (q - z) * s are exact in float32
    x = _away_from_ties(rng.uniform(-3, 3, 400), s0, 0.05)  # some clamp at -2 and 1.75
    w = rng.standard_normal(x.size)
    m = LSQFakeQuantize(sym4(), scale=s0, grad_scale=False).to_dtype(np.float64)

    def f(s):
        m.params["scale"][...] = s
        return float(np.sum(w * m(x)))

    fd = (f(s0 + h) - f(s0 - h)) / (2 * h)
    m.params["scale"][...] = s0
    m.zero_grad()
    m(x)
    m.backward(w)
    v = x / s0
    q = np.clip(np.rint(v), -8, 7)
    inside = (np.rint(v) >= -8) & (np.rint(v) <= 7)
    assert 0 < inside.sum() < x.size  # both kinds present
    assert fd == pytest.approx(np.sum(w * q), rel=1e-12)  # true derivative: sum w (q - z)
    ste_term = np.sum(w * np.where(inside, -v, 0.0))
    assert float(m.grads["scale"]) == pytest.approx(fd + ste_term, rel=1e-9)


@pytest.mark.parametrize("learn_zp", [False, True])
def test_lsq_gradient_matches_finite_differences_of_the_smoothed_objective(learn_zp):
    rng = np.random.default_rng(1)
    s0, z = 0.1, (-3 if learn_zp else 0)
    quantizer = LinearQuantizer(bits=4) if learn_zp else sym4()
    x = rng.uniform(-1.5, 1.5, 300)
    w = rng.standard_normal(x.size)
    m = LSQFakeQuantize(
        quantizer, scale=s0, zero_point=z, learn_zero_point=learn_zp, grad_scale=False
    ).to_dtype(np.float64)
    m(x)
    m.backward(w)
    s_used = float(np.float32(s0))  # refq.quant uses the scale in float32

    def smoothed(s):  # independent of refq: round(v) -> round(v0) + (v - v0) near v0
        v0 = x / s_used
        r0 = np.rint(v0)
        code0 = r0 + z
        below, above = code0 < -8, code0 > 7
        inside_val = (r0 + (x / s - v0)) * s
        return np.sum(w * np.where(below, (-8 - z) * s, np.where(above, (7 - z) * s, inside_val)))

    h = 1e-6
    fd = (smoothed(s_used + h) - smoothed(s_used - h)) / (2 * h)
    assert float(m.grads["scale"]) == pytest.approx(fd, rel=1e-7)


# -- per channel = a loop of per tensor -----------------------------------------------------------


@pytest.mark.parametrize("axis, shape", [(0, (4, 9)), (1, (3, 5, 6)), (-1, (7, 3))])
@pytest.mark.parametrize("learn_zp", [False, True])
def test_per_channel_equals_loop_of_per_tensor(axis, shape, learn_zp):
    rng = np.random.default_rng(2)
    x = (rng.standard_normal(shape) * rng.uniform(0.2, 3, shape[axis]).reshape(
        [-1 if i == axis % len(shape) else 1 for i in range(len(shape))]
    )).astype(F32)  # fmt: skip
    dout = rng.standard_normal(shape).astype(F32)
    q = (lambda **kw: LinearQuantizer(bits=3, **kw)) if learn_zp else (lambda **kw: sym4(**kw))
    kw = {"learn_zero_point": learn_zp}
    pc = LSQFakeQuantize(q(axis=axis), name="pc", **kw)
    y = pc(x)
    dx = pc.backward(dout)
    ax = axis % len(shape)
    for c in range(shape[ax]):
        pt = LSQFakeQuantize(q(), name=f"pt{c}", **kw)
        xc, dc = np.take(x, c, axis=ax), np.take(dout, c, axis=ax)
        np.testing.assert_array_equal(pt(xc), np.take(y, c, axis=ax))
        np.testing.assert_array_equal(pt.backward(dc), np.take(dx, c, axis=ax))
        assert float(pt.params["scale"]) == pc.params["scale"][c]
        np.testing.assert_allclose(float(pt.grads["scale"]), pc.grads["scale"][c], rtol=1e-5)
        if learn_zp:
            np.testing.assert_allclose(
                float(pt.grads["zero_point"]), pc.grads["zero_point"][c], rtol=1e-5, atol=1e-7
            )


def test_per_channel_gradient_scale_uses_elements_per_channel():
    # PyTorch divides by sqrt(x.size * quant_max) even per channel; refq by sqrt(x.size / C * qmax).
    x = F32([[0.75, 0.75], [0.75, 0.75], [0.75, 0.75]])  # C = 3 channels of 2 elements
    m = LSQFakeQuantize(sym4(axis=0), scale=F32([0.5, 0.5, 0.5]))
    m(x)
    m.backward(np.ones_like(x))
    # each element: ds = 0.5 (v = 1.5 -> 2); per channel sum 1.0; g = 1 / sqrt(2 * 7)
    np.testing.assert_allclose(m.grads["scale"], [1 / np.sqrt(14)] * 3, rtol=1e-6)


# -- observer initialisation, learning, export ----------------------------------------------------


def test_observer_initialises_then_learning_moves_the_scale():
    rng = np.random.default_rng(3)
    obs = MinMaxObserver()
    m = LSQFakeQuantize(LinearQuantizer(bits=4), obs, learn_zero_point=True, name="act")
    x = rng.uniform(-1, 2, 50).astype(F32)
    m(x)
    ref = LinearQuantizer(bits=4).set_range(float(x.min()), float(x.max())).qparams
    assert float(m.params["scale"]) == float(ref.scale)
    assert int(m.zero_point_int()) == int(ref.zero_point)
    m.disable_observer()
    s_before = float(m.params["scale"])
    m.zero_grad()
    m(x * 3)  # much wider data: many values clamp above, the scale gradient is positive
    m.backward(np.ones_like(x))
    assert float(m.grads["scale"]) > 0
    m.params["scale"] -= -0.01 * m.grads["scale"]  # gradient *ascent* on sum(x_hat)
    m(x)
    assert float(m.params["scale"]) > s_before  # the observer no longer overwrites it


def test_learning_the_scale_reduces_quantization_error():
    """A few SGD steps on ||x_hat - x||^2 from a too-small scale: LSQ grows the scale and the
    error drops (the gradient carries the clipping error back to s)."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal(2000).astype(F32)
    m = LSQFakeQuantize(sym4(), scale=0.02, name="w")
    losses = []
    for _ in range(60):
        m.zero_grad()
        y = m(x)
        losses.append(float(np.mean((y - x) ** 2)))
        m.backward(2 * (y - x) / x.size * x.size**0.5)  # MSE gradient (rescaled for speed)
        m.params["scale"] -= 0.05 * m.grads["scale"]
    assert losses[-1] < 0.2 * losses[0]
    assert float(m.params["scale"]) > 0.1


def test_export_quantizer_reproduces_the_forward():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((4, 6)).astype(F32)
    m = LSQFakeQuantize(LinearQuantizer(bits=4, axis=0), learn_zero_point=True)
    m(x)
    m.params["scale"] *= 0.8
    m.params["zero_point"][...] = [1.4, -2.6, 0.0, 7.9]  # rounded: 1, -3, 0, 7 (clamped at 7)
    qp = m.qparams
    np.testing.assert_array_equal(qp.zero_point, [1, -3, 0, 7])
    assert qp.scale.dtype == np.float32 and qp.zero_point.dtype == np.int32
    q = m.export_quantizer()
    assert q is not m.quantizer and m.quantizer.qparams is None
    np.testing.assert_array_equal(q.fake_quant(x), m(x))


def test_fake_quant_disabled_and_float64():
    m = LSQFakeQuantize(sym4(), scale=0.5).disable_fake_quant()
    x = F32([3.0, 10.0])
    np.testing.assert_array_equal(m(x), x)
    np.testing.assert_array_equal(m.backward(F32([1, 2])), F32([1, 2]))
    assert float(m.grads["scale"]) == 0.0
    m.enable_fake_quant().to_dtype(np.float64)
    assert m.params["scale"].dtype == np.float64 == m.grads["scale"].dtype
    y = m(np.array([3.0, 10.0]))
    assert y.dtype == np.float64 and y.tolist() == [3.0, 3.5]


def test_stochastic_rounding_is_deterministic_per_seed():
    x = np.random.default_rng(6).standard_normal(100).astype(F32)
    a = LSQFakeQuantize(sym4(rounding="stochastic", seed=3), scale=0.3)
    b = LSQFakeQuantize(sym4(rounding="stochastic", seed=3), scale=0.3)
    np.testing.assert_array_equal(a(x), b(x))
    c = LSQFakeQuantize(sym4(rounding="stochastic", seed=4), scale=0.3)
    assert not np.array_equal(a(x), c(x))


# -- the scale floor and the divergence guard -----------------------------------------------------


def test_negative_or_zero_scale_is_clamped_and_reported():
    m = LSQFakeQuantize(sym4(), scale=0.5, name="enc.0.fc1.weight")
    m.params["scale"][...] = -0.1  # e.g. an optimizer step overshot
    with pytest.warns(RuntimeWarning, match=r"'enc\.0\.fc1\.weight'.*-0\.1.*raised to the floor"):
        y = m(F32([1e-7, 1.0]))
    assert float(m.params["scale"]) == float(FLOAT32_EPS) and m.num_scale_clamps == 1
    assert np.all(np.isfinite(y))
    pc = LSQFakeQuantize(sym4(axis=0), scale=F32([0.5, 0.0, 0.25]), name="pc")
    with pytest.warns(RuntimeWarning, match=r"channel\(s\) \[1\]"):
        pc(np.ones((3, 2), F32))
    np.testing.assert_array_equal(pc.params["scale"], F32([0.5, FLOAT32_EPS, 0.25]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert pc.clamp_scale() == 0  # healthy now: silent


def test_all_zero_data_init_is_floored_not_zero():
    m = LSQFakeQuantize(sym4(), name="dead")
    with pytest.warns(RuntimeWarning, match="'dead'"):
        y = m(np.zeros(4, F32))
    assert float(m.params["scale"]) > 0 and np.all(y == 0)


def test_nan_scale_stops_with_name_and_call():
    m = LSQFakeQuantize(sym4(), scale=0.5, name="dec.1.attn.v_proj.weight")
    m(F32([0.1]))
    m.params["scale"][...] = np.nan
    with pytest.raises(ValueError, match=r"v_proj\.weight' \(forward call 2\).*learned scale"):
        m(F32([0.1]))


def test_nan_input_and_gradient_stop_with_name():
    m = LSQFakeQuantize(sym4(), scale=0.5, name="x")
    with pytest.raises(ValueError, match="'x'.*input contains NaN"):
        m(F32([np.nan]))
    m(F32([0.1]))
    with pytest.raises(ValueError, match="'x'.*dout contains NaN"):
        m.backward(F32([np.inf]))


def test_bad_arguments():
    with pytest.raises(ValueError, match="not groups"):
        LSQFakeQuantize(LinearQuantizer(bits=4, axis=1, group_size=2))
    with pytest.raises(ValueError, match="fixed zero point"):
        LSQFakeQuantize(sym4(), learn_zero_point=True)
    with pytest.raises(ValueError, match="must hold zero"):
        LSQFakeQuantize(LinearQuantizer(bits=8, signed=False, narrow_range=True))  # [1, 255]
    with pytest.raises(ValueError, match=r"shape \(\) per tensor"):
        LSQFakeQuantize(sym4(), scale=[0.1, 0.2])
    with pytest.raises(ValueError, match="zero_point must lie"):
        LSQFakeQuantize(LinearQuantizer(bits=4), scale=0.1, zero_point=9)
    with pytest.raises(ValueError, match="scale_floor"):
        LSQFakeQuantize(sym4(), scale_floor=0.0)
    with pytest.raises(TypeError, match="quant_min"):

        class Bare:
            def quantize(self, x):
                return x

            dequantize = fake_quant = quantize

        LSQFakeQuantize(Bare())
    m = LSQFakeQuantize(sym4(axis=0), scale=F32([0.1, 0.2]), name="pc")
    with pytest.raises(ValueError, match="'pc'.*2 channels in the scale, input has 3"):
        m(np.ones((3, 4), F32))
    with pytest.raises(ValueError, match="not initialised"):
        LSQFakeQuantize(sym4()).qparams  # noqa: B018


# -- LSQ and FakeQuantize agree: what convert relies on ----------------------------------------


@settings(max_examples=40, deadline=None)
@given(
    bits=st.integers(2, 8),
    per_channel=st.booleans(),
    learn_zp=st.booleans(),
    seed=st.integers(0, 2**31 - 1),
)
def test_lsq_forward_and_ste_equal_fakequantize_with_its_qparams(bits, per_channel, learn_zp, seed):
    """With the learned (scale, zero point) frozen into a LinearQuantizer, FakeQuantize gives
    bit-identical outputs and the same input gradient: a converted LSQ model is a PTQ-style one."""
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((5, 8)) * rng.uniform(0.1, 4)).astype(F32)
    axis = 0 if per_channel else None
    q = LinearQuantizer(bits=bits, axis=axis, symmetric=not learn_zp)
    m = LSQFakeQuantize(q, learn_zero_point=learn_zp)
    m(x)  # LSQ init from the data
    m.params["scale"] *= rng.uniform(0.3, 1.5)  # as if trained
    if learn_zp:
        m.params["zero_point"] += rng.uniform(-3, 3)
    y = m(x)
    dout = rng.standard_normal(x.shape).astype(F32)
    dx = m.backward(dout)
    fq = FakeQuantize(m.export_quantizer()).disable_observer()
    np.testing.assert_array_equal(fq(x), y)
    np.testing.assert_array_equal(fq.backward(dout), dx)


def test_lazy_init_after_to_dtype_float64():
    m = LSQFakeQuantize(sym4(axis=0), learn_zero_point=False).to_dtype(np.float64)
    m(np.ones((2, 3)))
    assert m.params["scale"].dtype == np.float64 and m.grads["scale"].shape == (2,)


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
def test_huge_clipped_values_with_a_tiny_scale_give_finite_gradients():
    # x / s overflows float32 to inf for 1e33 / 1.19e-7; the element is clamped, so its scale
    # gradient is quant_max - z = 7 (no x / s term), not inf * 0 = NaN.
    m = LSQFakeQuantize(sym4(), scale=float(FLOAT32_EPS), grad_scale=False)
    m(F32([1e33, -1e33]))
    m.backward(F32([1.0, 1.0]))
    assert float(m.grads["scale"]) == 7 - 8
