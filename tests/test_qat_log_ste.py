"""The log / power-of-two STE: pass where |x| <= x_max (zero code included), block where clipped."""

from __future__ import annotations

import functools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from refq.qat import FakeQuantize, log_ste_backward, log_ste_mask, magnitude_range
from refq.quant.linear import LinearQuantizer
from refq.quant.log import LogQuantizer
from refq.quant.pow2 import PowerOfTwoQuantizer

F32 = np.float32


def test_log_mask_by_hand_bounds_inclusive():
    # 3-bit log (M = 3 magnitudes) on [-8, 4]: x_max = 8, x_min = 8 / 4 = 2; levels 2, 4, 8.
    lq = LogQuantizer(bits=3).set_range(-8.0, 4.0)
    lo, hi = magnitude_range(lq)
    assert (float(lo), float(hi)) == (2.0, 8.0)
    above = float(np.nextafter(F32(8.0), F32(np.inf)))  # the next float32 after x_max
    x = np.array([0.0, 0.5, 0.99, 1.0, 1.99, 2.0, 5.0, 8.0, above, 8.5, -8.0, -above, -20.0])
    fq = FakeQuantize(lq).disable_observer()
    y = fq(x)
    # forward: <1 -> 0 (zero code), [1, 2) -> 2, 5 -> 4 (log2 5/2 = 1.32 -> level 1), >8 -> 8
    np.testing.assert_array_equal(y, [0, 0, 0, 2, 2, 2, 4, 8, 8, 8, -8, -8, -8])
    default = [1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 1, 0, 0]  # |x| <= 8 passes, 8 itself included
    np.testing.assert_array_equal(log_ste_mask(lq, x), np.array(default, bool))
    np.testing.assert_array_equal(fq.backward(np.ones_like(x)), default)
    zero_rule = [0, 0, 0, 0, 0, 1, 1, 1, 0, 0, 1, 0, 0]  # also blocked below x_min = 2
    np.testing.assert_array_equal(log_ste_mask(lq, x, underflow="zero"), np.array(zero_rule, bool))


def test_pow2_mask_by_hand():
    # 3-bit power of two on [-3, 1]: x_max 3 -> top level 4, s = 4 / 2^2 = 1; levels 1, 2, 4.
    pq = PowerOfTwoQuantizer(bits=3).set_range(-3.0, 1.0)
    assert [float(v) for v in magnitude_range(pq)] == [1.0, 4.0]
    x = F32([0.1, 0.6, 3.0, 4.0, 4.0000005, -4.0, -6.0])
    fq = FakeQuantize(pq).disable_observer()
    np.testing.assert_array_equal(fq(x), F32([0, 1, 4, 4, 4, -4, -4]))
    np.testing.assert_array_equal(fq.backward(np.ones(7, F32)), F32([1, 1, 1, 1, 0, 1, 0]))
    np.testing.assert_array_equal(log_ste_backward(F32([5] * 7), x, pq), F32([5] * 4 + [0, 5, 0]))
    # pow2_scale=False puts the top level at x_max itself: 3 -> s = 0.75, levels 0.75, 1.5, 3
    pq2 = PowerOfTwoQuantizer(bits=3, pow2_scale=False).set_range(-3.0, 1.0)
    np.testing.assert_array_equal(log_ste_mask(pq2, F32([3.0, 3.5])), [True, False])


def test_per_channel_masks():
    # axis 1: column 0 has x_max 8, column 1 has x_max 2 (3-bit log: levels x_max / 4 .. x_max)
    lq = LogQuantizer(bits=3, axis=1).set_range(F32([-8, -1]), F32([1, 2]))
    x = F32([[8.0, 2.0], [9.0, 2.5], [-0.1, -0.1]])
    np.testing.assert_array_equal(log_ste_mask(lq, x), [[1, 1], [0, 0], [1, 1]])
    np.testing.assert_array_equal(log_ste_mask(lq, x, "zero"), [[1, 1], [0, 0], [0, 0]])
    pq = PowerOfTwoQuantizer(bits=4, axis=0).set_range(F32([-1, -16]), F32([1, 1]))
    # M = 7 levels, exponents 0..6: row 0 top 1 (s = 2^-6), row 1 top 16 (s = 2^-2)
    x = F32([[1.0, 1.5], [16.0, 17.0]])
    np.testing.assert_array_equal(log_ste_mask(pq, x), [[1, 0], [1, 0]])


@settings(max_examples=50, deadline=None)
@given(
    bits=st.integers(3, 6),
    pow2=st.booleans(),
    seed=st.integers(0, 2**31 - 1),
    spread=st.floats(0.05, 20.0),
)
def test_blocked_where_the_forward_is_the_clip_and_passed_where_it_rounds(bits, pow2, seed, spread):
    """The definition's justification, checked on data: where the mask blocks, the forward is
    exactly the clip to +-x_max (a constant: derivative 0); where it passes, the forward is a
    rounding of the identity (within half a level gap in the log domain, or x_min / 2 below the
    grid), whose straight-through derivative is 1."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(300) * spread
    calib = rng.standard_normal(300) * spread * 0.5  # narrower: some x are clipped
    q = PowerOfTwoQuantizer(bits=bits) if pow2 else LogQuantizer(bits=bits)
    q.fit(calib)
    lo, hi = (float(v) for v in magnitude_range(q))
    y = q.fake_quant(x).astype(np.float64)
    mask = log_ste_mask(q, x)
    assert np.all(np.abs(x[~mask]) > hi)
    np.testing.assert_allclose(y[~mask], np.sign(x[~mask]) * hi, rtol=1e-6)
    ratio = 2.0 if pow2 else float(q.level_ratio())
    small = np.abs(x) < lo
    on_grid = mask & ~small
    assert np.all(np.abs(y[small & mask] - x[small & mask]) <= lo / 2 * (1 + 1e-6))
    rel = np.abs(y[on_grid] - x[on_grid]) / np.abs(x[on_grid])
    assert np.all(rel <= (np.sqrt(ratio) - 1) * (1 + 1e-5))


def test_pass_rule_lets_a_flushed_weight_recover_zero_rule_does_not():
    """A weight below x_min / 2 is flushed to the zero code. With the default rule its gradient
    passes and gradient descent moves it onto the grid; with underflow="zero" it is stuck."""
    target = 2.0  # a level of the 3-bit grid on [-8, 8]: levels 2, 4, 8
    finals = {}
    for rule in ("pass", "zero"):
        lq = LogQuantizer(bits=3).set_range(-8.0, 8.0)
        fq = FakeQuantize(lq, ste_mask=functools.partial(log_ste_mask, underflow=rule))
        fq.disable_observer()
        w = np.array([0.3])
        for _ in range(20):
            y = fq(w)
            w = w - 0.1 * fq.backward(2 * (y - target))  # d/dw (y - target)^2 through the STE
        finals[rule] = (float(w[0]), float(fq(w)[0]))
    assert finals["zero"] == (0.3, 0.0)  # no gradient ever reached it
    assert finals["pass"][1] == target  # it grew past x_min / 2 = 1 and now sits on level 2


def test_errors():
    lq = LogQuantizer(bits=3).set_range(-1.0, 1.0)
    with pytest.raises(ValueError, match="underflow must be one of"):
        log_ste_mask(lq, F32([1.0]), underflow="block")
    with pytest.raises(ValueError, match="no range yet"):
        log_ste_mask(LogQuantizer(bits=3), F32([1.0]))
    with pytest.raises(ValueError, match="no range yet"):
        magnitude_range(PowerOfTwoQuantizer(bits=3))
    with pytest.raises(TypeError, match="not a log or power-of-two quantizer"):
        magnitude_range(LinearQuantizer(bits=4))
    fq = FakeQuantize(LogQuantizer(bits=3), name="blocks.2.fc").disable_observer()
    with pytest.raises(ValueError, match="'blocks.2.fc'.*no range yet"):
        fq(F32([1.0]))
