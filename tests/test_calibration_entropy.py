"""EntropyObserver: TensorRT's KL calibration, by hand, against a literal port, per channel."""

import numpy as np
import pytest

from refq.calibration import EntropyObserver
from refq.calibration.entropy import entropy_divergences_reference, kl_divergence, smooth_zeros
from refq.calibration.numba_hist import kl_divergences
from refq.quant import LinearQuantizer, LogQuantizer


def test_kl_on_a_tiny_histogram_by_hand():
    # bins [4, 2, 0, 2], 2 levels, candidates i = 2, 3, 4.
    # i=2: P = [4, 2+0+2] = [.5, .5]; Q groups {0}, {1}: [4, 2] = [2/3, 1/3]
    #      KL = .5 ln(.5 / (2/3)) + .5 ln(.5 / (1/3)) = .5 ln(9/8)
    # i=3: P = [4, 2, 0+2] = [.5, .25, .25]; groups j*2//3 = 0, 0, 1: {0,1} -> 3, 3; bin 2 is
    #      empty so Q = [3, 3, 0] -> smoothed [3 - eps/2, 3 - eps/2, eps] (sum 6):
    #      with q = (3 - eps/2) / 6:  KL = .5 ln(.5 / q) + .25 ln(.25 / q) + .25 ln(.25 / (eps/6))
    # i=4: P = [4, 2, 0, 2] / 8; groups 0, 0, 1, 1: {0,1} -> 3, 3; {2,3} has one non-empty bin
    #      -> Q = [3, 3, 0, 2] -> smoothed [3 - eps/3, 3 - eps/3, eps, 2 - eps/3] (sum 8):
    #      KL = .5 ln(.5 / q0) + .25 ln(.25 / q1) + .25 ln(.25 / q3)
    eps = 1e-4
    q = (3 - eps / 2) / 6
    kl3 = 0.5 * np.log(0.5 / q) + 0.25 * np.log(0.25 / q) + 0.25 * np.log(0.25 / (eps / 6))
    q0, q3 = (3 - eps / 3) / 8, (2 - eps / 3) / 8
    kl4 = 0.5 * np.log(0.5 / q0) + 0.25 * np.log(0.25 / q0) + 0.25 * np.log(0.25 / q3)
    expected = [0.5 * np.log(9 / 8), kl3, kl4]
    bins = np.array([4.0, 2.0, 0.0, 2.0])
    np.testing.assert_allclose(kl_divergences(bins, 2, 2, eps), expected, rtol=1e-12)
    np.testing.assert_allclose(entropy_divergences_reference(bins, 2, 2, eps), expected, rtol=1e-12)
    assert int(np.argmin(expected)) == 2  # threshold at bin 4: t = 4 w (no clipping)


def test_observer_on_the_tiny_histogram():
    # |x| values put 4, 2, 0, 2 counts in bins of width 1 (bins=4: w = 1 fits max 3.5 in
    # floor(3.5) = 3 <= 3; w = 0.5 would need floor(7) = 7 > 3):
    x = np.array([0.5, 0.5, 0.5, 0.5, 1.5, 1.5, -3.5, 3.5])
    obs = EntropyObserver(bins=4, bits=2, replace_zero_bin=False)  # levels 2**(2-1) = 2
    obs.observe(x)
    assert obs.hist.counts.tolist() == [[4, 2, 0, 2]]
    lo, hi = obs.calculate_range()
    assert (float(lo), float(hi)) == (-3.5, 3.5)  # t = min(4 w, max|x|)
    assert len(obs.divergences[0]) == 3


def test_smoothing_and_kl_helpers():
    s = smooth_zeros(np.array([3.0, 0.0, 0.0, 1.0]), eps=0.1)
    np.testing.assert_allclose(s, [2.9, 0.1, 0.1, 0.9])
    assert s.sum() == pytest.approx(4.0)
    assert kl_divergence(np.array([1.0, 2.0]), np.array([2.0, 4.0])) == pytest.approx(0.0)
    with pytest.raises(ValueError, match="all-zero"):
        smooth_zeros(np.zeros(3))


def test_numba_loop_equals_numpy_reference():
    rng = np.random.default_rng(0)
    for levels in (4, 16, 128):
        bins = rng.integers(0, 30, 300).astype(np.float64)
        bins[rng.integers(0, 300, 40)] = 0
        np.testing.assert_allclose(
            kl_divergences(bins, levels, levels, 1e-4),
            entropy_divergences_reference(bins, levels, levels),
            rtol=1e-10,
        )


def trt_literal_amax(x, num_bits=8, num_bins=2048):
    """pytorch-quantization's HistogramCalibrator + _compute_amax_entropy, ported literally
    (np.histogram from 0 to max|x|, np.digitize merge, no smoothing: inf where Q = 0 < P)."""
    hist, edges = np.histogram(np.abs(x), bins=num_bins, range=(0, np.abs(x).max()))
    bins = hist.astype(np.float64)
    bins[0] = bins[1]
    nbins = 1 << (num_bits - 1)
    divs = []
    for i in range(nbins, len(bins) + 1):
        space = np.linspace(0, i, num=nbins + 1)
        dig = np.digitize(range(i), space) - 1
        dig[bins[:i] == 0] = -1
        ok = dig != -1  # the two Python loops of the original, as bincounts
        dens = np.bincount(dig[ok], weights=bins[:i][ok], minlength=nbins)
        cnt = np.bincount(dig[ok], minlength=nbins)
        q = np.where(ok, dens[dig] / np.maximum(cnt[dig], 1), 0.0)
        p = bins[:i].copy()
        p[-1] += bins[i:].sum()
        p, q = p / p.sum(), q / q.sum()
        m = p > 0
        with np.errstate(divide="ignore"):
            divs.append(np.sum(p[m] * np.log(p[m] / q[m])))
    divs = np.array(divs)
    last = len(divs) - 1 - np.argmin(divs[::-1])
    return edges[last + nbins]


@pytest.mark.parametrize("dist", ["normal", "laplace"])
def test_threshold_close_to_literal_tensorrt_port(dist):
    rng = np.random.default_rng(1)
    x = getattr(rng, dist)(size=200_000).astype(np.float32)
    obs = EntropyObserver()
    for b in np.array_split(x, 4):
        obs.observe(b)
    lo, hi = obs.calculate_range()
    assert float(lo) == -float(hi)
    ref = trt_literal_amax(x)
    # different bin lattices (power-of-two width here, max|x| / 2048 there): close, not equal
    assert float(hi) == pytest.approx(ref, rel=0.06)
    if dist == "laplace":
        assert float(hi) < 0.8 * np.abs(x).max()  # the long tail is clipped


def test_uniform_data_keeps_the_full_range_and_nonnegative_is_unsigned():
    obs = EntropyObserver()
    obs.observe(np.linspace(-1, 1, 100_001))
    lo, hi = obs.calculate_range()
    assert (float(lo), float(hi)) == (-1.0, 1.0)  # Q == P at i = K: KL ~ 0
    relu = EntropyObserver()
    relu.observe(np.maximum(np.random.default_rng(2).standard_normal(50_000), 0))
    lo, hi = relu.calculate_range()
    assert float(lo) == 0.0 and 1.5 < float(hi) < 4.5
    assert len(relu.divergences[0]) > 0
    signed = EntropyObserver(unsigned=False)
    signed.observe(np.linspace(0, 1, 5000))
    assert float(signed.calculate_range()[0]) == -1.0


def test_stride_subsamples_the_same_curve():
    rng = np.random.default_rng(6)
    bins = rng.integers(1, 40, 500).astype(np.float64)
    full = kl_divergences(bins, 16, 16, 1e-4)
    np.testing.assert_allclose(kl_divergences(bins, 16, 16, 1e-4, 7), full[::7], rtol=1e-12)
    x = rng.laplace(size=20_000)
    a, b = EntropyObserver(stride=1), EntropyObserver(stride=4)
    a.observe(x)
    b.observe(x)
    a.calculate_range()
    tb = float(b.calculate_range()[1])
    np.testing.assert_allclose(b.divergences[0], a.divergences[0][::4], rtol=1e-12)
    assert min(b.divergences[0]) >= min(a.divergences[0])  # a coarser search, never better
    assert tb in [(16 * 8 + 4 * k) * b.hist.width[0] for k in range(len(b.divergences[0]))]
    with pytest.raises(ValueError, match="stride"):
        EntropyObserver(stride=0)


def test_fewer_bits_clip_more():
    x = np.random.default_rng(3).standard_normal(100_000)
    t = []
    for bits in (8, 6, 4):
        obs = EntropyObserver(bits=bits)
        obs.observe(x)
        t.append(float(obs.calculate_range()[1]))
    assert t[0] >= t[1] > t[2]  # non-increasing (8 and 6 bits can pick the same bin)


def test_per_channel_equals_loop_of_per_tensor():
    rng = np.random.default_rng(4)
    w = (rng.standard_normal((3, 2000)) * np.array([[1.0], [5.0], [0.1]])).astype(np.float32)
    pc = EntropyObserver(axis=0, bits=6)
    pc.observe(w[:, :1000])
    pc.observe(w[:, 1000:])
    lo, hi = pc.calculate_range()
    assert lo.shape == (3,)
    for c in range(3):
        t = EntropyObserver(bits=6)
        t.observe(w[c, :1000])
        t.observe(w[c, 1000:])
        assert (lo[c], hi[c]) == t.calculate_range()


@pytest.mark.parametrize("quantizer", [LinearQuantizer(8, symmetric=True), LogQuantizer(4)])
def test_quantizer_defined_merge(quantizer):
    x = np.random.default_rng(5).laplace(size=50_000)
    obs = EntropyObserver(quantizer=quantizer)
    obs.observe(x)
    lo, hi = obs.calculate_range()
    assert float(lo) == -float(hi) and 0 < float(hi) <= np.abs(x).max()
    ref = EntropyObserver(bits=quantizer.bits)
    ref.observe(x)
    if isinstance(quantizer, LinearQuantizer):  # a uniform grid: exactly TensorRT's merge
        assert obs.uniform_merge
        assert (lo, hi) == ref.calculate_range()
    else:  # a log grid merges by its own levels: a different threshold
        assert not obs.uniform_merge
        assert float(hi) != float(ref.calculate_range()[1])


def test_quantizer_merge_groups_by_hand():
    # Force the level-defined merge on a uniform grid: bins [4, 2, 0, 2] (w = 1), grid with
    # levels at multiples of t / 2 (round half to even); candidate i = 2, t = 2: centres 0.5, 1.5
    # -> 0 (0.5 rounds to 0) and 2 (1.5 -> 2): two groups {0}, {1}: same as TensorRT's i = 2.
    class Halves:
        bits = 2

        def set_range(self, lo, hi):
            self.s = max(abs(float(lo)), abs(float(hi))) / 2
            return self

        def fake_quant(self, x):
            return (np.round(np.asarray(x) / self.s) * self.s).astype(np.float32)

    obs = EntropyObserver(bins=4, quantizer=Halves(), replace_zero_bin=False)
    obs.uniform_merge = False  # the generic path, for the hand check
    obs.observe(np.array([0.5, 0.5, 0.5, 0.5, 1.5, 1.5, -3.5, 3.5]))
    obs.calculate_range()
    assert obs.divergences[0][0] == pytest.approx(0.5 * np.log(9 / 8), rel=1e-9)


def test_per_channel_quantizer_used_per_channel():
    rng = np.random.default_rng(7)
    w = rng.laplace(size=(2, 3000)) * np.array([[1.0], [4.0]])
    q = LinearQuantizer(8, symmetric=True, axis=0)
    pc = EntropyObserver(quantizer=q, axis=0, stride=8)
    pc.observe(w)
    lo, hi = pc.calculate_range()
    assert q.axis == 0  # the caller's quantizer is untouched
    for c in range(2):
        t = EntropyObserver(quantizer=LinearQuantizer(8, symmetric=True), stride=8)
        t.observe(w[c])
        assert (lo[c], hi[c]) == t.calculate_range()


def test_level_defined_merge_caps_the_number_of_thresholds():
    x = np.random.default_rng(8).laplace(size=30_000)
    obs = EntropyObserver(quantizer=LogQuantizer(4))  # levels 8: K - 8 > 1000 thresholds
    obs.observe(x)
    obs.calculate_range()
    k = int(np.flatnonzero(obs.hist.counts[0])[-1]) + 1
    assert k - 8 > 256 and len(obs.divergences[0]) <= 256 + 1


def test_bad_arguments():
    with pytest.raises(ValueError, match="bits"):
        EntropyObserver(bits=1)
    with pytest.raises(ValueError, match="quantizer="):
        EntropyObserver(bits=8, quantizer=LinearQuantizer(8))
    with pytest.raises(ValueError, match="give the observer axis="):
        EntropyObserver(quantizer=LinearQuantizer(8, axis=0))
    with pytest.raises(TypeError, match="set_range"):
        EntropyObserver(quantizer="linear")
    with pytest.raises(ValueError, match="eps"):
        EntropyObserver(eps=0.5)
    with pytest.raises(ValueError, match="no data observed"):
        EntropyObserver().calculate_range()
    with pytest.raises(ValueError, match="NaN"):
        EntropyObserver().observe(np.array([np.inf]))
    z = EntropyObserver()
    z.observe(np.zeros(10))
    assert [float(v) for v in z.calculate_range()] == [0.0, 0.0]
