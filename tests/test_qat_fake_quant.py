"""FakeQuantize: forward = the quantizer's fake_quant, backward = the clipped STE (inclusive).

Every expected value below is worked out by hand in the comments.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from refq.calibration import MinMaxObserver
from refq.nn.linear import Linear
from refq.nn.module import Module
from refq.qat import FakeQuantize, fake_quant_modules, set_fake_quant, set_observers, ste_for
from refq.quant.linear import LinearQuantizer, QParams
from refq.quant.log import LogQuantizer
from refq.quant.pow2 import PowerOfTwoQuantizer

F32 = np.float32


def frozen(q) -> FakeQuantize:
    return FakeQuantize(q, name="layer.fq").disable_observer()


# -- the STE on hand-made tensors ------------------------------------------------------------------


def test_ste_symmetric_inclusive_bounds_by_hand():
    # 4-bit signed symmetric on [-3.75, 3.75]: scale = 3.75 / 7.5 = 0.5, zero point 0,
    # codes [-8, 7].
    q = LinearQuantizer(bits=4, symmetric=True).set_range(-3.75, 3.75)
    assert float(q.qparams.scale) == 0.5 and int(q.qparams.zero_point) == 0
    x = np.array(
        [
            3.5,  # v = 7        -> code 7 = quant_max        inside (bound inclusive)
            3.7,  # v = 7.4      -> 7                         inside
            3.75,  # v = 7.5     -> 8 (half to even)          outside, clamped to 7
            4.5,  # v = 9        -> 9                         outside
            -4.0,  # v = -8      -> -8 = quant_min            inside (bound inclusive)
            -4.25,  # v = -8.5   -> -8 (half to even)         inside
            -4.5,  # v = -9      -> -9                        outside
            -4.75,  # v = -9.5   -> -10 (half to even)        outside
            0.2,  # v = 0.4      -> 0                         inside
        ],
        dtype=F32,
    )
    fq = frozen(q)
    y = fq(x)
    np.testing.assert_array_equal(y, F32([3.5, 3.5, 3.5, 3.5, -4.0, -4.0, -4.0, -4.0, 0.0]))
    dout = np.arange(1, 10, dtype=F32)  # distinct values: a wrong position would show
    dx = fq.backward(dout)
    np.testing.assert_array_equal(dx, F32([1, 2, 0, 0, 5, 6, 0, 0, 9]))
    assert dx.dtype == np.float32


def test_ste_affine_with_zero_point_by_hand():
    # 4-bit affine on [-1.25, 2.5]: scale = 3.75 / 15 = 0.25, zero point = -8 - round(-5) = -3.
    # Code = round(x / 0.25) - 3 must lie in [-8, 7], i.e. round(x / 0.25) in [-5, 10].
    q = LinearQuantizer(bits=4).set_range(-1.25, 2.5)
    assert float(q.qparams.scale) == 0.25 and int(q.qparams.zero_point) == -3
    x = F32([2.5, 2.625, 2.75, -1.25, -1.375, -1.3, 0.0])
    # 2.5: 10 -> 7 in; 2.625: 10.5 -> 10 -> 7 in; 2.75: 11 -> 8 out;
    # -1.25: -5 -> -8 in; -1.375: -5.5 -> -6 -> -9 out; -1.3: -5.2 -> -5 -> -8 in; 0 -> -3 in.
    fq = frozen(q)
    y = fq(x)
    np.testing.assert_array_equal(y, F32([2.5, 2.5, 2.5, -1.25, -1.25, -1.25, 0.0]))
    dx = fq.backward(np.ones(7, F32))
    np.testing.assert_array_equal(dx, F32([1, 1, 0, 1, 0, 1, 1]))


def test_ste_follows_the_rounding_mode():
    # Same grid (scale 0.5, codes [-8, 7]); -4.25 / 0.5 = -8.5 is a tie: half to even gives -8
    # (inside), half away from zero gives -9 (outside). 3.75 -> 7.5: even 8 (out), away 8 (out).
    # floor: 3.75 -> 7 (in), -4.25 -> -9 (out), 3.99 -> 7.98 -> 7 (in).
    x = F32([-4.25, 3.75, 3.99])
    expected = {"half_even": [1, 0, 0], "half_away": [0, 0, 0], "floor": [0, 1, 1]}
    for mode, mask in expected.items():
        q = LinearQuantizer(bits=4, symmetric=True, rounding=mode).set_range(-3.75, 3.75)
        fq = frozen(q)
        fq(x)
        np.testing.assert_array_equal(fq.backward(np.ones(3, F32)), F32(mask), err_msg=mode)


def test_ste_per_channel_by_hand():
    # 4-bit symmetric per channel (axis 0): row 0 scale 0.5 (amax 3.75), row 1 scale 0.25 (1.875).
    q = LinearQuantizer(bits=4, symmetric=True, axis=0).set_range(F32([-3.75, -1]), F32([1, 1.875]))
    np.testing.assert_array_equal(q.qparams.scale, F32([0.5, 0.25]))
    x = F32([[3.5, 3.75, -4.0], [1.75, 1.875, -2.0]])
    # row 0: 7 in, 7.5 -> 8 out, -8 in.  row 1: 7 in, 7.5 -> 8 out, -8 in.
    fq = frozen(q)
    fq(x)
    np.testing.assert_array_equal(fq.backward(np.ones((2, 3), F32)), F32([[1, 0, 1], [1, 0, 1]]))


# -- forward is exactly the quantizer's --------------------------------------------------------


@pytest.mark.parametrize("rounding", ["half_even", "half_away", "floor", "stochastic"])
@pytest.mark.parametrize(
    "kwargs, shape",
    [
        ({"bits": 8}, (5, 7)),
        ({"bits": 3, "symmetric": True}, (5, 7)),
        ({"bits": 8, "signed": False}, (5, 7)),
        ({"bits": 4, "axis": 0}, (5, 7)),
        ({"bits": 4, "axis": 1, "symmetric": True, "narrow_range": True}, (3, 6, 2)),
        ({"bits": 4, "axis": 1, "group_size": 3}, (5, 6)),
        ({"bits": 16}, (4, 4)),
    ],
)
def test_forward_bit_identical_to_quantizer(kwargs, shape, rounding):
    rng = np.random.default_rng(1)
    x = (rng.standard_normal(shape) * 2).astype(F32)
    calib = (rng.standard_normal(shape) * 1.5).astype(F32)  # narrower: some x get clipped
    q_ref = LinearQuantizer(rounding=rounding, seed=7, **kwargs).fit(calib)
    q_fq = LinearQuantizer(rounding=rounding, seed=7, **kwargs).fit(calib)
    fq = frozen(q_fq)
    for _ in range(2):  # twice: the stochastic generator advances identically
        np.testing.assert_array_equal(fq(x), q_ref.fake_quant(x))


def test_float64_input_keeps_dtype_and_values():
    q = LinearQuantizer(bits=4).set_range(-1.0, 2.0)
    fq = frozen(q)
    x = np.linspace(-2, 3, 11)
    y = fq(x)
    assert y.dtype == np.float64
    np.testing.assert_array_equal(y, q.fake_quant(x).astype(np.float64))
    assert fq.backward(np.ones(11)).dtype == np.float64


# -- properties of the STE mask ------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    bits=st.integers(2, 8),
    symmetric=st.booleans(),
    seed=st.integers(0, 2**31 - 1),
    spread=st.floats(0.1, 5.0),
)
def test_mask_property_inside_half_step_outside_on_the_edge(bits, symmetric, seed, spread):
    """Mask 1 <=> the value is within half a step of the grid it is rounded to; mask 0 => the
    output is an end of the grid and the value lies at least half a step beyond it."""
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(200) * spread).astype(np.float64)
    q = LinearQuantizer(bits=bits, symmetric=symmetric).set_range(-1.0, 0.7)
    fq = frozen(q)
    y = fq(x)
    mask = fq.backward(np.ones_like(x)).astype(bool)
    s = float(q.qparams.scale)
    lo = (q.quant_min - int(q.qparams.zero_point)) * s
    hi = (q.quant_max - int(q.qparams.zero_point)) * s
    err = np.abs(y - x)
    assert np.all(err[mask] <= s / 2 * (1 + 1e-5))
    assert np.all(np.isclose(y[~mask], lo, rtol=1e-6) | np.isclose(y[~mask], hi, rtol=1e-6))
    assert np.all(err[~mask] >= s / 2 * (1 - 1e-5))
    # and the mask is monotone in x: inside values form one interval
    order = np.argsort(x)
    m = mask[order].astype(int)
    assert np.sum(np.abs(np.diff(m))) <= 2


# -- ranges: observer, fit, freezing ---------------------------------------------------------------


def test_observer_sets_range_then_freezes():
    obs = MinMaxObserver()
    q = LinearQuantizer(bits=8)
    fq = FakeQuantize(q, obs, name="enc.fc1.act")
    fq(F32([-1.0, 0.5]))
    fq(F32([0.0, 2.0]))  # running range [-1, 2]: scale = 3 / 255
    assert np.isclose(float(q.qparams.scale), 3 / 255, rtol=1e-6)
    frozen_qp = q.qparams
    fq.disable_observer()
    y = fq(F32([-10.0, 10.0]))  # frozen: clipped to the old range, no update
    assert q.qparams is frozen_qp
    np.testing.assert_allclose(y, [-1.0, 2.0], atol=3 / 255)
    np.testing.assert_array_equal(fq.backward(F32([1, 1])), F32([0, 0]))


def test_without_observer_fits_each_batch():
    q = LinearQuantizer(bits=8, symmetric=True)
    fq = FakeQuantize(q)
    fq(F32([-1.0, 1.0]))
    assert np.isclose(float(q.qparams.scale), 1 / 127.5)
    fq(F32([-4.0, 2.0]))
    assert np.isclose(float(q.qparams.scale), 4 / 127.5)


def test_fake_quant_disabled_is_identity_both_ways():
    q = LinearQuantizer(bits=2).set_range(-1.0, 1.0)
    fq = frozen(q).disable_fake_quant()
    x = F32([-5.0, 0.1234, 7.0])
    np.testing.assert_array_equal(fq(x), x)
    np.testing.assert_array_equal(fq.backward(F32([1, 2, 3])), F32([1, 2, 3]))
    fq.enable_fake_quant(True)
    assert not np.array_equal(fq(x), x)


def test_flags_not_train_eval_decide_behaviour():
    q = LinearQuantizer(bits=4).set_range(-1.0, 1.0)
    fq = frozen(q)
    x = F32([0.3, 5.0])
    y_train = fq(x)
    fq.eval()
    assert fq.training is False
    np.testing.assert_array_equal(fq(x), y_train)


# -- other quantizers ----------------------------------------------------------------------------


def test_user_defined_quantizer_gets_identity_ste():
    class Halves:  # the three methods only
        def quantize(self, x):
            return np.round(np.asarray(x) * 2).astype(np.int8)

        def dequantize(self, q):
            return (np.asarray(q) / 2).astype(F32)

        def fake_quant(self, x):
            return self.dequantize(self.quantize(x))

    fq = FakeQuantize(Halves())
    assert ste_for(Halves()) == "identity"
    np.testing.assert_array_equal(fq(F32([0.3, 0.8])), F32([0.5, 1.0]))
    np.testing.assert_array_equal(fq.backward(F32([2, 3])), F32([2, 3]))


def test_quantizer_own_ste_mask_and_custom_mask_are_used():
    class Clip01:
        def quantize(self, x):
            return np.clip(np.round(np.asarray(x) * 4), 0, 4).astype(np.int8)

        def dequantize(self, q):
            return (np.asarray(q) / 4).astype(F32)

        def fake_quant(self, x):
            return self.dequantize(self.quantize(x))

        def ste_mask(self, x):
            return (np.asarray(x) >= 0) & (np.asarray(x) <= 1)

    fq = FakeQuantize(Clip01())
    x = F32([-0.5, 0.3, 1.0, 1.5])
    np.testing.assert_array_equal(fq(x), F32([0.0, 0.25, 1.0, 1.0]))
    np.testing.assert_array_equal(fq.backward(np.ones(4, F32)), F32([0, 1, 1, 0]))
    custom = FakeQuantize(Clip01(), ste_mask=lambda q, x: x > 0.5)
    custom(x)
    np.testing.assert_array_equal(custom.backward(np.ones(4, F32)), F32([0, 0, 1, 1]))


def test_log_and_pow2_quantizers_use_log_ste():
    lq = LogQuantizer(bits=3).set_range(-8.0, 4.0)  # levels 2, 4, 8
    fq = frozen(lq)
    assert ste_for(lq) == "log"
    x = F32([0.5, -3.0, 8.0, 8.5])
    np.testing.assert_array_equal(fq(x), lq.fake_quant(x))
    np.testing.assert_array_equal(fq.backward(np.ones(4, F32)), F32([1, 1, 1, 0]))
    pq = PowerOfTwoQuantizer(bits=3).set_range(-3.0, 1.0)  # levels 1, 2, 4
    fq = frozen(pq)
    x = F32([4.0, -4.5, 0.1])
    np.testing.assert_array_equal(fq(x), F32([4.0, -4.0, 0.0]))
    np.testing.assert_array_equal(fq.backward(np.ones(3, F32)), F32([1, 0, 1]))


# -- the module seam -----------------------------------------------------------------------------


def test_is_a_module_with_empty_params_inside_a_model():
    class QLinear(Module):  # what prepare_qat builds: fake-quant the weight, then the matmul
        def __init__(self):
            super().__init__()
            self.lin = Linear(3, 2, rng=np.random.default_rng(0))
            self.wfq = FakeQuantize(LinearQuantizer(bits=4, symmetric=True, axis=0), name="w")

        def forward(self, x):
            w = self.lin.params["weight"]
            self._x = x
            return x @ self.wfq(w).T

        def backward(self, dout):
            dw_hat = dout.reshape(-1, 2).T @ self._x.reshape(-1, 3)  # (2, N) @ (N, 3) -> (2, 3)
            self.lin.grads["weight"] += self.wfq.backward(dw_hat)
            return dout @ self.wfq(self.lin.params["weight"])

    m = QLinear()
    names = [n for n, _ in m.named_modules()]
    assert names == ["", "lin", "wfq"]
    assert m.wfq.params == {} and m.wfq.grads == {}
    assert sorted(m.state_dict()) == ["lin.bias", "lin.weight"]
    m.lin.params["weight"][...] = [[3.75, -1.0, 0.5], [-3.75, 2.0, 3.75]]  # scales 0.5, 0.5
    x = np.random.default_rng(1).standard_normal((4, 3)).astype(F32)
    m(x)
    m.backward(np.ones((4, 2), F32))
    # Symmetric 4-bit per row, fit on the row: scale = amax / 7.5, so +amax sits at v = 7.5,
    # which rounds (half to even) to 8 > 7: clipped, no gradient. -amax -> -7.5 -> -8: inside.
    # Every other weight has |v| < 7.5 and rounds into [-7, 7]: inside.
    w = m.lin.params["weight"]
    amax = np.abs(w).max(axis=1, keepdims=True)
    mask = ~((w == amax) & (w > 0))
    np.testing.assert_array_equal(mask, [[False, True, True], [True, True, False]])
    expected = (np.ones((2, 4), F32) @ x) * mask  # (2, 4) @ (4, 3) -> (2, 3)
    np.testing.assert_allclose(m.lin.grads["weight"], expected, rtol=1e-6)
    m.eval()
    assert m.wfq.training is False


def test_qparams_property_for_convert():
    q = LinearQuantizer(bits=8).set_range(-1.0, 1.0)
    fq = frozen(q)
    assert isinstance(fq.qparams, QParams) and fq.qparams is q.qparams
    assert frozen(LogQuantizer(3)).qparams is None


# -- divergence guard and bad input ----------------------------------------------------------------


def test_nan_input_names_module_and_call():
    fq = FakeQuantize(LinearQuantizer(bits=8), name="decoder.layers.1.ff.fc2")
    fq(F32([0.0, 1.0]))
    with pytest.raises(ValueError, match=r"'decoder\.layers\.1\.ff\.fc2' \(forward call 2\).*NaN"):
        fq(F32([0.0, np.nan]))
    with pytest.raises(ValueError, match="fc2.*input contains NaN or Inf"):
        fq(F32([np.inf]))


def test_nan_scale_and_nan_gradient_name_module():
    q = LinearQuantizer(bits=8)
    q.qparams = QParams(F32(np.nan), np.int32(0), -128, 127, None, None)
    fq = frozen(q)
    fq.name = "enc.attn.q_proj.weight"
    with pytest.raises(ValueError, match=r"q_proj\.weight.*scale contains NaN"):
        fq(F32([1.0]))
    fq2 = frozen(LinearQuantizer(bits=8).set_range(-1, 1))
    fq2(F32([0.5]))
    with pytest.raises(ValueError, match="incoming gradient dout contains NaN"):
        fq2.backward(F32([np.nan]))


def test_no_range_yet_is_a_clear_error():
    fq = frozen(LinearQuantizer(bits=8))
    fq.name = "head"
    with pytest.raises(ValueError, match="'head'.*no range yet"):
        fq(F32([1.0]))


def test_bad_arguments():
    with pytest.raises(TypeError, match="quantize\\(\\), dequantize\\(\\) and fake_quant"):
        FakeQuantize(object())
    with pytest.raises(TypeError, match="observe"):
        FakeQuantize(LinearQuantizer(), observer=object())

    class NoRange:
        def quantize(self, x):
            return x

        dequantize = fake_quant = quantize

    with pytest.raises(TypeError, match="calibratable"):
        FakeQuantize(NoRange(), MinMaxObserver())
    with pytest.raises(TypeError, match="name"):
        FakeQuantize(LinearQuantizer(), name=3)
    fq = frozen(LinearQuantizer(bits=8).set_range(-1, 1))
    with pytest.raises(TypeError, match="float array"):
        fq(np.array([1, 2]))
    with pytest.raises(RuntimeError, match="before forward"):
        fq.backward(F32([1.0]))
    fq(F32([0.1, 0.2]))
    with pytest.raises(ValueError, match="dout shape"):
        fq.backward(F32([1.0]))
    bad = FakeQuantize(LinearQuantizer().set_range(-1, 1), ste_mask=lambda q, x: np.ones(3))
    bad.disable_observer()
    with pytest.raises(ValueError, match="STE mask must be a bool array"):
        bad(F32([0.1, 0.2]))


def test_switch_every_node_of_a_model():
    class Block(Module):
        def __init__(self):
            super().__init__()
            self.w = FakeQuantize(LinearQuantizer(bits=4), name="w")
            self.inner = Module()
            self.inner.a = FakeQuantize(LinearQuantizer(bits=8), MinMaxObserver(), name="a")
            self.lin = Linear(2, 2)

    b = Block()
    assert [n for n, _ in fake_quant_modules(b)] == ["w", "inner.a"]
    assert set_observers(b, False) == 2
    assert not b.w.observer_enabled and not b.inner.a.observer_enabled
    assert set_fake_quant(b, False) == 2 and not b.inner.a.fake_quant_enabled
    set_observers(b, True)
    assert b.w.observer_enabled and b.inner.a.observer_enabled
