"""Min-max and EMA observers: hand-worked values, batching, per-channel, bad input."""

import numpy as np
import pytest

from refq.calibration import MinMaxObserver, MovingAverageMinMaxObserver


def test_minmax_hand_worked_and_dtypes():
    obs = MinMaxObserver()
    obs.observe(np.array([0.5, -0.25, 1.0], np.float32))
    obs.observe(np.array([[2.0, 0.0]], np.float32))
    lo, hi = obs.calculate_range()
    assert lo.dtype == np.float32 and hi.dtype == np.float32
    assert lo.shape == () and hi.shape == ()
    assert (float(lo), float(hi)) == (-0.25, 2.0)


def test_minmax_batches_equal_one_pass_exactly():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((7, 5, 6)).astype(np.float32)
    for axis in (None, 0, 1, -1):
        a = MinMaxObserver(axis=axis)
        for b in np.array_split(x, 3, axis=0 if axis not in (0,) else 1):
            a.observe(b)
        one = MinMaxObserver(axis=axis)
        one.observe(x)
        for u, v in zip(a.calculate_range(), one.calculate_range(), strict=True):
            np.testing.assert_array_equal(u, v)


def test_minmax_per_channel_equals_loop_of_per_tensor():
    rng = np.random.default_rng(1)
    w = rng.standard_normal((4, 3, 5))
    pc = MinMaxObserver(axis=1)
    pc.observe(w)
    lo, hi = pc.calculate_range()
    assert lo.shape == (3,)
    for c in range(3):
        t = MinMaxObserver()
        t.observe(w[:, c, :])
        assert (lo[c], hi[c]) == t.calculate_range()


def test_float64_range_rounded_outward_to_float32():
    obs = MinMaxObserver()
    obs.observe(np.array([0.1, 0.7]))  # neither is a float32 number
    lo, hi = obs.calculate_range()
    assert float(lo) <= 0.1 and float(hi) >= 0.7
    assert float(hi) - 0.7 < 1e-7


def test_ema_three_batches_by_hand():
    # c = 0.01 (PyTorch's default). Batch mins -1, -3, 0; maxes 2, 6, 1.
    # min: -1 -> -1 + 0.01 * (-3 - -1) = -1.02 -> -1.02 + 0.01 * (0 - -1.02) = -1.0098
    # max:  2 ->  2 + 0.01 * ( 6 -  2) =  2.04 ->  2.04 + 0.01 * (1 -  2.04) =  2.0296
    obs = MovingAverageMinMaxObserver()
    assert obs.averaging_constant == 0.01
    for b in ([-1.0, 2.0], [-3.0, 6.0, 0.0], [1.0, 0.0]):
        obs.observe(np.array(b))
    lo, hi = obs.calculate_range()
    # float32 output, rounded outward: within one float32 ulp (2.4e-7 at 2) and containing it
    assert float(lo) == pytest.approx(-1.0098, abs=2.4e-7) and float(lo) <= -1.0098 + 1e-12
    assert float(hi) == pytest.approx(2.0296, abs=2.4e-7) and float(hi) >= 2.0296 - 1e-12
    assert obs.min_val[0] == pytest.approx(-1.0098, abs=1e-14)  # the float64 state
    assert obs.max_val[0] == pytest.approx(2.0296, abs=1e-14)


def test_ema_per_channel_by_hand():
    # c = 0.5. Channel 0 mins 0, 4 -> 0 + .5 * 4 = 2; maxes 1, 8 -> 4.5
    # Channel 1 mins -2, -6 -> -4; maxes 3, -1 -> 1
    obs = MovingAverageMinMaxObserver(averaging_constant=0.5, axis=-1)
    obs.observe(np.array([[0.0, -2.0], [1.0, 3.0]]))
    obs.observe(np.array([[4.0, -6.0], [8.0, -1.0]]))
    lo, hi = obs.calculate_range()
    assert lo.tolist() == [2.0, -4.0] and hi.tolist() == [4.5, 1.0]


def test_ema_reacts_less_to_an_outlier_batch_than_minmax():
    ema, mm = MovingAverageMinMaxObserver(), MinMaxObserver()
    for obs in (ema, mm):
        obs.observe(np.array([-1.0, 1.0]))
        obs.observe(np.array([-1.0, 101.0]))
    assert float(mm.calculate_range()[1]) == 101.0
    assert float(ema.calculate_range()[1]) == pytest.approx(2.0)  # 1 + 0.01 * 100


@pytest.mark.parametrize("cls", [MinMaxObserver, MovingAverageMinMaxObserver])
def test_bad_input(cls):
    obs = cls()
    with pytest.raises(ValueError, match="no data observed"):
        obs.calculate_range()
    with pytest.raises(ValueError, match="NaN or infinite"):
        obs.observe(np.array([1.0, np.nan]))
    with pytest.raises(ValueError, match="NaN or infinite"):
        obs.observe(np.array([np.inf], np.float32))
    with pytest.raises(ValueError, match="exceeds the float32 range"):
        obs.observe(np.array([1.0, -1e300]))
    with pytest.raises(ValueError, match="empty"):
        obs.observe(np.array([]))
    with pytest.raises(TypeError, match="real numeric"):
        obs.observe(np.array([True, False]))
    with pytest.raises(TypeError, match="real numeric"):
        obs.observe(np.array([1j]))
    with pytest.raises(ValueError, match="no data observed"):  # bad batches were not counted
        obs.calculate_range()
    pc = cls(axis=1)
    pc.observe(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="3 channels"):
        pc.observe(np.zeros((2, 4)))
    with pytest.raises(ValueError, match="axis 2 does not exist"):
        cls(axis=2).observe(np.zeros((2, 3)))
    with pytest.raises(TypeError, match="axis must be an int"):
        cls(axis=1.0)


def test_reset_and_call():
    obs = MinMaxObserver()
    x = np.array([1.0, 2.0])
    assert obs(x) is x
    obs.reset()
    with pytest.raises(ValueError, match="no data"):
        obs.calculate_range()


def test_ema_constant_checked():
    with pytest.raises(ValueError, match="averaging_constant"):
        MovingAverageMinMaxObserver(averaging_constant=0.0)
