"""HistogramObserver: the MSE error model by hand, exhaustive vs brute force vs greedy, real
quantizers (linear 8/4-bit, symmetric and affine, log, user-defined), batching, per-channel."""

import copy

import numpy as np
import pytest

from refq.calibration import HistogramObserver, MinMaxObserver
from refq.calibration.mse_model import BinStats, search_affine, search_greedy, search_symmetric
from refq.quant import LinearQuantizer, LogQuantizer


def actual_mse(quantizer, x, lo, hi):
    q = copy.deepcopy(quantizer).set_range(lo, hi)
    return float(np.mean((q.fake_quant(x).astype(np.float64) - x) ** 2))


def test_error_model_hand_worked():
    # Bins [0,1), [1,2), [2,3), [3,4) with counts 1, 2, 0, 1; L = 4 levels, clip [1, 3]:
    # step = 2 / 3, inside (bin 1, 2 values): 2 * (4/9) / 12 = 2/27
    # left (bin 0 clipped up to 1, centre 0.5): 1 * (0.5**2 + 1/12) = 1/3
    # right (bin 3 clipped down to 3, centre 3.5): 1 * (0.5**2 + 1/12) = 1/3
    st = BinStats(np.array([1.0, 2.0, 0.0, 1.0]), np.arange(5.0))
    assert st.error(1, 3, 4) == pytest.approx(2 / 27 + 2 / 3, abs=1e-12)
    # with the grid widened to contain 0 (at position 0): step = 3 / 3 = 1, inside 2/12
    assert st.error(1, 3, 4, zero=0.0) == pytest.approx(2 / 12 + 2 / 3, abs=1e-12)
    # no clipping, full range [0, 4]: step 4/3, 4 values inside: 4 * 16/9 / 12
    assert st.error(0, 4, 4) == pytest.approx(4 * 16 / 9 / 12, abs=1e-12)


def test_clipping_term_is_the_exact_uniform_integral():
    # A bin [2, 3) holding 1 value uniformly, clipped to hi = 1.5: integral_2^3 (x-1.5)^2 dx
    # = ((1.5)^3 - (0.5)^3) / 3 = 13/12
    st = BinStats(np.array([0.0, 0.0, 1.0]), np.array([0.0, 1.0, 2.0, 3.0]))
    assert float(st.right(2, 1.5)) == pytest.approx(13 / 12, abs=1e-12)
    xs = np.linspace(2, 3, 200001)
    assert np.mean((xs - 1.5) ** 2) == pytest.approx(13 / 12, rel=1e-6)


@pytest.mark.parametrize("bits", [2, 4, 8])
@pytest.mark.parametrize("symmetric", [False, True])
def test_uniform_data_optimum_is_L_minus_1_over_L(bits, symmetric):
    # Uniform on [-1, 1], clip [-t, t], L levels: E(t) = t (2t/(L-1))^2 / 12 + (1-t)^3 / 3,
    # dE/dt = t^2 / (L-1)^2 - (1-t)^2 = 0  =>  t = (L-1) / L: 0.75, 0.9375, 0.99609375.
    L = 2**bits
    obs = HistogramObserver(bits=bits, symmetric=symmetric)
    obs.observe(np.linspace(-1, 1, 200001))
    lo, hi = obs.calculate_range()
    w = obs.hist.width[0]
    assert float(hi) == pytest.approx((L - 1) / L, abs=w)
    assert float(lo) == pytest.approx(-(L - 1) / L, abs=w)


def _random_hist(rng, n):
    c = rng.integers(0, 20, n).astype(np.float64)
    c[rng.integers(0, n)] += 50
    c[0] = max(c[0], 1)
    c[-1] = max(c[-1], 1)
    return BinStats(c, np.arange(n + 1.0))


@pytest.mark.parametrize("seed", range(6))
def test_exhaustive_equals_brute_force_and_beats_greedy(seed):
    rng = np.random.default_rng(seed)
    st = _random_hist(rng, 40)
    for zero, levels in ((None, 16), (17.0, 16), (0.0, 4), (40.0, 256)):
        k, j, err = search_affine(st, levels, zero)
        kk, jj = np.meshgrid(np.arange(41), np.arange(41), indexing="ij")
        brute = st.error(kk, jj, levels, zero)  # (41, 41)
        valid = jj > kk
        if zero is not None:
            e = st.edges
            valid &= ((e[kk] <= zero) | (kk == 0)) & ((e[jj] >= zero) | (jj == 40))
        brute = np.where(valid, brute, np.inf)
        assert err == pytest.approx(brute.min(), rel=1e-12)
        assert st.error(k, j, levels, zero) == pytest.approx(err, rel=1e-12)
        gk, gj, gerr = search_greedy(st, levels, zero)
        assert gerr >= err - 1e-9
        assert st.error(gk, gj, levels, zero) == pytest.approx(gerr, rel=1e-12)


def test_symmetric_search_equals_brute_force():
    rng = np.random.default_rng(7)
    st = _random_hist(rng, 64)
    zero = 20.0  # data spans [-20, 44] in bin units
    t, err = search_symmetric(st, 16, zero, 44.0)
    ts = np.append(np.arange(1.0, 44.0), 44.0)
    brute = []
    for tt in ts:
        xs_lo, xs_hi = zero - tt, zero + tt
        k = 0 if xs_lo <= 0 else int(np.ceil(xs_lo))
        j = 64 if xs_hi >= 64 else int(np.floor(xs_hi))
        s = 2 * tt / 15
        brute.append(s * s / 12 * (st.p0[j] - st.p0[k]) + st.left(k, xs_lo) + st.right(j, xs_hi))
    assert t == ts[int(np.argmin(brute))] and err == pytest.approx(min(brute))


@pytest.mark.parametrize("bits", [4, 8])
def test_mse_beats_minmax_on_gaussian_with_outliers(bits):
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.standard_normal(200_000), [25.0, -18.0, 30.0]]).astype(np.float32)
    x64 = x.astype(np.float64)
    for symmetric in (False, True):
        q = LinearQuantizer(bits, symmetric=symmetric)
        mse_obs = HistogramObserver(bits=bits, symmetric=symmetric)
        mm = MinMaxObserver()
        for b in np.array_split(x, 4):
            mse_obs.observe(b)
            mm.observe(b)
        lo, hi = mse_obs.calculate_range()
        e_mse = actual_mse(q, x64, lo, hi)
        e_mm = actual_mse(q, x64, *mm.calculate_range())
        if bits == 4:  # at 4 bits the step costs more than clipping 3 outliers: clipped
            assert -10 < float(lo) and float(hi) < 10
        assert e_mse < 0.8 * e_mm
        # the model's predicted error is close to the real quantizer's error
        assert mse_obs.error[0] == pytest.approx(e_mse, rel=0.15)


def test_batches_equal_one_pass_histogram_and_range():
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.standard_normal(30_000), rng.standard_normal(300) * 8]).astype(
        np.float32
    )
    rng.shuffle(x)
    one = HistogramObserver(bits=4)
    one.observe(x)
    many = HistogramObserver(bits=4)
    for b in sorted(np.array_split(x, 7), key=lambda b: np.ptp(b)):  # growing ranges
        many.observe(b)
    np.testing.assert_array_equal(many.hist.counts, one.hist.counts)
    for a, b in zip(many.calculate_range(), one.calculate_range(), strict=True):
        np.testing.assert_array_equal(a, b)  # within one bin: here exactly equal


def test_per_channel_equals_loop_of_per_tensor():
    rng = np.random.default_rng(2)
    w = (rng.standard_normal((5, 64, 3)) * np.array([0.5, 2.0, 9.0])).astype(np.float32)
    w[0, 0, 2] = 80.0
    for kw in (dict(bits=4), dict(bits=8, symmetric=True), dict(bits=8, search="greedy")):
        pc = HistogramObserver(axis=-1, bins=256, **kw)
        pc.observe(w[:3])
        pc.observe(w[3:])
        lo, hi = pc.calculate_range()
        assert lo.shape == (3,) and lo.dtype == np.float32
        for c in range(3):
            t = HistogramObserver(bins=256, **kw)
            t.observe(w[:3, :, c])
            t.observe(w[3:, :, c])
            assert (lo[c], hi[c]) == t.calculate_range()


QUANTIZERS = [
    LinearQuantizer(8),
    LinearQuantizer(8, symmetric=True),
    LinearQuantizer(4),
    LinearQuantizer(4, symmetric=True),
    LogQuantizer(4),
    LogQuantizer(8),
]


@pytest.mark.parametrize("quantizer", QUANTIZERS, ids=repr)
def test_quantizer_search_beats_minmax_with_real_quantizers(quantizer):
    rng = np.random.default_rng(3)
    x = np.concatenate([rng.standard_normal(50_000), [12.0, -9.0]]).astype(np.float32)
    x64 = x.astype(np.float64)
    obs = HistogramObserver(quantizer=quantizer)
    obs.observe(x)
    lo, hi = obs.calculate_range()
    e = actual_mse(quantizer, x64, lo, hi)
    assert e <= actual_mse(quantizer, x64, float(x.min()), float(x.max()))
    assert obs.error[0] == pytest.approx(e, rel=0.1)  # bin-centre estimate vs the real error
    assert quantizer.__dict__.get("qparams", None) is None  # the given quantizer is not touched


@pytest.mark.parametrize("bits,symmetric", [(8, False), (4, False), (8, True), (4, True)])
def test_quantizer_search_agrees_with_builtin_model(bits, symmetric):
    rng = np.random.default_rng(4)
    x = np.concatenate([rng.laplace(size=40_000), [15.0]]).astype(np.float64)
    a = HistogramObserver(bits=bits, symmetric=symmetric)
    b = HistogramObserver(quantizer=LinearQuantizer(bits, symmetric=symmetric))
    a.observe(x)
    b.observe(x)
    q = LinearQuantizer(bits, symmetric=symmetric)
    ea = actual_mse(q, x, *a.calculate_range())
    eb = actual_mse(q, x, *b.calculate_range())
    assert eb == pytest.approx(ea, rel=0.1)


def test_user_defined_quantizer_and_per_channel_quantizer():
    class Ternary:  # levels {-a, 0, a} with a = max|range|: a toy user quantizer
        def set_range(self, lo, hi):
            self.a = max(abs(float(lo)), abs(float(hi)), 1e-12)
            return self

        def fake_quant(self, x):
            return (np.clip(np.round(x / self.a), -1, 1) * self.a).astype(np.float32)

    rng = np.random.default_rng(5)
    x = rng.uniform(-1, 1, 20_000)
    obs = HistogramObserver(quantizer=Ternary())
    obs.observe(x)
    lo, hi = obs.calculate_range()
    # detected as range-symmetric: (-t, t) (intersected with the data range)
    assert float(lo) == pytest.approx(-float(hi), abs=1e-6)
    # Ternary on U(-1, 1): E(a) = (a^3 / 4 + (1 - a)^3) / 3 (values below a/2 go to 0),
    # dE/da = a^2 / 4 - (1 - a)^2 = 0  =>  a = 2/3, E = 1/27.
    assert float(hi) == pytest.approx(2 / 3, abs=0.01)
    assert obs.error[0] == pytest.approx(1 / 27, rel=0.05)

    w = (rng.standard_normal((4, 200)) * np.array([[1.0], [3.0], [0.2], [5.0]])).astype(np.float32)
    pc = HistogramObserver(quantizer=LinearQuantizer(4, symmetric=True, axis=0), axis=0)
    pc.observe(w)
    lo, hi = pc.calculate_range()
    for c in range(4):
        t = HistogramObserver(quantizer=LinearQuantizer(4, symmetric=True))
        t.observe(w[c])
        tl, th = t.calculate_range()
        assert float(lo[c]) == pytest.approx(float(tl), rel=1e-6)
        assert float(hi[c]) == pytest.approx(float(th), rel=1e-6)


def test_constant_and_tiny_inputs():
    obs = HistogramObserver()
    obs.observe(np.full(10, 3.5, np.float32))
    assert [float(v) for v in obs.calculate_range()] == [3.5, 3.5]
    z = HistogramObserver(symmetric=True)
    z.observe(np.zeros(4))
    assert [float(v) for v in z.calculate_range()] == [0.0, 0.0]
    q = HistogramObserver(quantizer=LinearQuantizer(8))
    q.observe(np.array([1.0, 1.0]))
    lo, hi = q.calculate_range()
    assert float(lo) <= 1.0 <= float(hi) + 1e-6


def test_bad_arguments():
    with pytest.raises(TypeError, match="has no set_range"):
        HistogramObserver(quantizer=object())
    with pytest.raises(ValueError, match="built-in grid"):
        HistogramObserver(quantizer=LinearQuantizer(8), bits=8)
    with pytest.raises(ValueError, match="per-channel"):
        HistogramObserver(quantizer=LinearQuantizer(8, axis=0))
    with pytest.raises(ValueError, match="greedy"):
        HistogramObserver(quantizer=LinearQuantizer(8), search="greedy")
    with pytest.raises(ValueError, match="per-group"):
        HistogramObserver(quantizer=LinearQuantizer(8, axis=1, group_size=4), axis=0)
    with pytest.raises(ValueError, match="search"):
        HistogramObserver(search="random")
    with pytest.raises(ValueError, match="bits"):
        HistogramObserver(bits=0)
    with pytest.raises(ValueError, match="no data observed"):
        HistogramObserver().calculate_range()
    with pytest.raises(ValueError, match="NaN"):
        HistogramObserver().observe(np.array([1.0, np.nan]))


def _brute_force_quantizer_search(obs, quantizer, symmetric):
    """Every pair of clamped edges (or every |edge| for a symmetric grid), by the quantizer."""
    h = obs.hist
    k = int(np.flatnonzero(h.counts[0])[-1]) + 1
    edges = np.clip(h.edges()[0, : k + 1], h.min_val[0], h.max_val[0])
    centers, counts = (edges[:-1] + edges[1:]) / 2, h.counts[0, :k]
    within = np.sum(counts * np.diff(edges) ** 2) / 12

    def err(lo, hi):
        q = copy.deepcopy(quantizer).set_range(np.float32(lo), np.float32(hi))
        fq = q.fake_quant(centers.astype(np.float32)).astype(np.float64)
        return (np.sum(counts * (fq - centers) ** 2) + within) / counts.sum()

    if symmetric:
        ts = np.unique(np.abs(edges))
        return min(err(max(-t, edges[0]), min(t, edges[-1])) for t in ts if t > 0)
    return min(err(a, b) for i, a in enumerate(edges) for b in edges[i + 1 :])


@pytest.mark.parametrize(
    "quantizer,symmetric",
    [
        (LinearQuantizer(4), False),
        (LinearQuantizer(3, symmetric=True), True),
        (LogQuantizer(4), True),
    ],
    ids=["linear4", "linear3sym", "log4"],
)
def test_quantizer_pattern_search_close_to_brute_force(quantizer, symmetric):
    rng = np.random.default_rng(8)
    x = np.concatenate([rng.laplace(size=5000), rng.normal(6, 0.5, 300)])
    obs = HistogramObserver(bins=64, quantizer=quantizer)
    obs.observe(x)
    obs.calculate_range()
    best = _brute_force_quantizer_search(obs, quantizer, symmetric)
    # the coarse-to-fine search reaches off-edge ranges too, so it may even beat the edge grid
    assert obs.error[0] <= best * 1.03


class _NoBits:
    """A LinearQuantizer seen through a wrapper without ``bits``: forces the generic search."""

    def __init__(self, q):
        self.q = q
        self.axis = q.axis

    def set_range(self, lo, hi):
        self.q.set_range(lo, hi)
        return self

    def fake_quant(self, x):
        return self.q.fake_quant(x)


@pytest.mark.parametrize("quantizer", [LinearQuantizer(8), LinearQuantizer(4, symmetric=True)])
def test_seeded_search_for_linear_grids_is_no_worse_than_generic(quantizer):
    rng = np.random.default_rng(9)
    x = np.concatenate([rng.standard_normal(100_000), rng.standard_normal(40) * 15])
    seeded = HistogramObserver(quantizer=quantizer)
    generic = HistogramObserver(quantizer=_NoBits(copy.deepcopy(quantizer)))
    for obs in (seeded, generic):
        obs.observe(x)
        obs.calculate_range()
    assert seeded.error[0] <= generic.error[0] * 1.002  # both local in the fine stage
