"""The streaming power-of-two histogram and the percentile observer."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from refq.calibration import PercentileObserver
from refq.calibration.binning import StreamingHistogram, lattice_exponent


def test_lattice_hand_worked_growth_down_and_up():
    # bins=4, data [-1, 0.5]: w = 1 puts floor(-1) = -1 .. floor(0.5) = 0 in 2 bins; w = 0.5
    # gives -2 .. 1 (3 <= bins - 1, fits); w = 0.25 gives -4 .. 2 (6 > 3). So e = -1, lo = -2.
    h = StreamingHistogram(bins=4)
    h.add(np.array([[-1.0, 0.5, 0.4]]))
    assert h.exp.tolist() == [-1] and h.lo.tolist() == [-2]
    assert h.edges().tolist() == [[-1.0, -0.5, 0.0, 0.5, 1.0]]
    assert h.counts.tolist() == [[1, 0, 1, 1]]  # -1 | 0.4 | 0.5
    # -3 arrives: w = 1: floor(-3) = -3 .. 0: 3 <= 3 fits; old abs bins -2,-1,0,1 -> -1,-1,0,0
    h.add(np.array([[-3.0]]))
    assert h.exp.tolist() == [0] and h.lo.tolist() == [-3]
    assert h.counts.tolist() == [[1, 0, 1, 2]]  # -3 | -1 | 0.4, 0.5
    assert (h.min_val.tolist(), h.max_val.tolist()) == ([-3.0], [0.5])


def test_lattice_exponent_is_minimal():
    rng = np.random.default_rng(0)
    lo = rng.uniform(-100, 10, 200)
    hi = lo + rng.exponential(5.0, 200)
    e = lattice_exponent(lo, hi, 64)

    def span(a, b, k):
        return np.floor(b / 2.0**k) - np.floor(a / 2.0**k)

    for a, b, k in zip(lo, hi, e, strict=True):
        assert span(a, b, k) <= 63 and span(a, b, k - 1) > 63


def _batches(rng, n_batches):
    """Batches whose range grows in both directions, with very different scales."""
    out = []
    for i in range(n_batches):
        scale = 10.0 ** rng.uniform(-3, 3)
        out.append((rng.standard_normal(rng.integers(1, 300)) * scale + i).astype(np.float32))
    return out


@pytest.mark.parametrize("include_zero", [False, True])
def test_histogram_independent_of_batching_and_order(include_zero):
    rng = np.random.default_rng(1)
    batches = _batches(rng, 12)
    one = StreamingHistogram(256, include_zero=include_zero)
    one.add(np.concatenate(batches)[None])
    for order in (range(12), reversed(range(12)), rng.permutation(12)):
        h = StreamingHistogram(256, include_zero=include_zero)
        for i in order:
            h.add(batches[i][None])
        np.testing.assert_array_equal(h.counts, one.counts)
        np.testing.assert_array_equal(h.exp, one.exp)
        np.testing.assert_array_equal(h.lo, one.lo)
    assert one.counts.sum() == sum(len(b) for b in batches)


def test_numba_binning_matches_numpy_spec_bit_for_bit():
    rng = np.random.default_rng(2)
    batches = _batches(rng, 8)
    for dt in (np.float32, np.float64):
        a = StreamingHistogram(512, engine="numba")
        b = StreamingHistogram(512, engine="numpy")
        for x in batches:
            xc = np.stack([x, -x * 3]).astype(dt)  # (2, N)
            a.add(xc)
            b.add(xc)
        np.testing.assert_array_equal(a.counts, b.counts)
        np.testing.assert_array_equal(a.exp, b.exp)


def test_every_value_lands_in_its_bin():
    rng = np.random.default_rng(3)
    x = (rng.standard_normal(5000) * 7).astype(np.float32)
    h = StreamingHistogram(128)
    h.add(x[None])
    edges = h.edges()[0]
    expected, _ = np.histogram(x, bins=edges)  # numpy's last bin is closed: fine, x < edge[-1]
    np.testing.assert_array_equal(h.counts[0], expected)
    occupied = np.flatnonzero(h.counts[0])
    assert occupied[-1] - occupied[0] + 1 > 128 // 2 - 1  # at least half the bins are spanned


def test_extreme_magnitudes_and_constants():
    h = StreamingHistogram(64)
    h.add(np.array([[0.0, 0.0]]))
    assert h.counts.sum() == 2 and h.exp[0] == -1000
    h.add(np.array([[3e38]], np.float32))  # grows from the all-zero lattice in one step
    assert h.counts[0, 0] == 2 and h.counts.sum() == 3
    tiny = StreamingHistogram(64)
    tiny.add(np.array([[1e-30, 2e-30, 1e-30]], np.float32))
    assert tiny.counts.sum() == 3 and np.count_nonzero(tiny.counts) == 2


def test_quantile_hand_worked():
    # values 0..9, bins=16: w = 1 (floor(9) - floor(0) = 9 <= 15; w = 0.5 gives 18 > 15).
    # q = 0.25: t = 2.5 -> bin of value 2 ([2, 3)), cum before = 2: 2 + 0.5 * 1 = 2.5
    h = StreamingHistogram(16)
    h.add(np.arange(10.0)[None])
    assert h.quantile(0.25).tolist() == [2.5]
    assert h.quantile(0.0).tolist() == [0.0] and h.quantile(1.0).tolist() == [9.0]
    with pytest.raises(ValueError, match="quantile"):
        h.quantile(1.5)


@pytest.mark.parametrize("p", [99.0, 99.9, 99.99])
def test_percentile_close_to_numpy(p):
    rng = np.random.default_rng(4)
    x = rng.standard_normal(100_000).astype(np.float32)
    obs = PercentileObserver(p)
    for b in np.array_split(x, 5):
        obs.observe(b)
    lo, hi = obs.calculate_range()
    w = obs.hist.width[0]
    xs = np.sort(x.astype(np.float64))
    for est, q in ((float(hi), p), (float(lo), 100 - p)):
        k = q / 100 * len(x)
        j = int(np.ceil(k)) - 1  # the ceil(k)-th smallest (0-based index)
        gap = xs[min(j + 1, len(x) - 1)] - xs[max(j - 1, 0)]
        assert abs(est - xs[j]) <= w  # within one bin of its order statistic
        assert abs(est - np.percentile(xs, q)) <= w + gap


def test_percentile_bias_is_outward_in_gaussian_tails():
    up, down = [], []
    for seed in range(20):
        x = np.random.default_rng(seed).standard_normal(50_000)
        obs = PercentileObserver(99.9)
        obs.observe(x)
        lo, hi = obs.calculate_range()
        w = obs.hist.width[0]
        up.append((float(hi) - np.percentile(x, 99.9)) / w)
        down.append((float(lo) - np.percentile(x, 0.1)) / w)
    assert np.mean(up) > 0.05 and np.mean(down) < -0.05  # stated bias: outward
    assert np.mean(np.abs(up)) < 1 and np.mean(np.abs(down)) < 1


def test_percentile_symmetric_and_nonnegative():
    x = np.concatenate([np.linspace(-1, 1, 1001), [-50.0]])
    obs = PercentileObserver(99.0, symmetric=True)
    obs.observe(x)
    lo, hi = obs.calculate_range()
    assert float(lo) == -float(hi)
    assert float(hi) == pytest.approx(np.percentile(np.abs(x), 99.0), abs=0.05)
    relu = PercentileObserver(99.0, symmetric=True)
    relu.observe(np.linspace(0.5, 2.0, 1000))
    lo, hi = relu.calculate_range()
    assert float(lo) == 0.5 and 1.9 < float(hi) <= 2.0  # (min, t): not (-t, t)


def test_percentile_100_is_minmax_and_per_channel_equals_loop():
    rng = np.random.default_rng(5)
    w = (rng.standard_normal((6, 40)) * np.arange(1, 7)[:, None]).astype(np.float32)
    full = PercentileObserver(100.0, axis=0)
    full.observe(w)
    lo, hi = full.calculate_range()
    np.testing.assert_array_equal(lo, w.min(1).astype(np.float32))
    np.testing.assert_array_equal(hi, w.max(1).astype(np.float32))
    pc = PercentileObserver(95.0, axis=0, bins=64)
    pc.observe(w[:, :20])
    pc.observe(w[:, 20:])
    lo, hi = pc.calculate_range()
    for c in range(6):
        t = PercentileObserver(95.0, bins=64)
        t.observe(w[c, :20])
        t.observe(w[c, 20:])
        assert (lo[c], hi[c]) == t.calculate_range()


@settings(max_examples=30, deadline=None)
@given(
    st.lists(st.floats(-1e6, 1e6, allow_nan=False, width=32), min_size=1, max_size=60),
    st.floats(50.5, 100.0),
)
def test_percentile_inside_data_range_and_ordered(values, p):
    x = np.array(values, np.float32)
    obs = PercentileObserver(p, bins=32)
    obs.observe(x)
    lo, hi = obs.calculate_range()
    assert x.min() <= lo <= hi <= x.max()


def test_percentile_bad_arguments():
    with pytest.raises(ValueError, match="percentile"):
        PercentileObserver(40.0)
    with pytest.raises(ValueError, match="bins"):
        PercentileObserver(bins=1)
    with pytest.raises(ValueError, match="engine"):
        PercentileObserver(engine="cuda")
    with pytest.raises(ValueError, match="no data"):
        PercentileObserver().calculate_range()
    with pytest.raises(ValueError, match="NaN"):
        PercentileObserver().observe(np.array([np.nan]))
