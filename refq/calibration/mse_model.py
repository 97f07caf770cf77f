"""The built-in error model of the MSE (L2) range search, and its two search strategies.

A histogram bin ``i`` holds ``c_i`` values spread uniformly over its interval (centre ``m_i``,
width ``w_i``, clamped to the observed ``[min, max]``). Quantizing to a uniform grid of ``L``
levels (``L = 2**bits``) spanning ``[lo, hi]`` with step ``s = (hi - lo) / (L - 1)`` costs, in
expected squared error:

    inside  [lo, hi]:  s**2 / 12                       per value (rounding error, uniform)
    right of hi:       (m_i - hi)**2 + w_i**2 / 12     per value (clipping: mean of (x - hi)**2)
    left of lo:        (lo - m_i)**2 + w_i**2 / 12

    E(lo, hi) = s**2 / 12 * N_in + sum_right c_i ((m_i - hi)**2 + w_i**2/12)
                                 + sum_left  c_i ((lo - m_i)**2 + w_i**2/12)

(the clipping term is exact for a uniform bin: (1/w) * integral_a^b (x - hi)^2 dx). With
prefix sums ``P0 = sum c``, ``P1 = sum c m``, ``P2 = sum c (m**2 + w**2/12)`` each term is O(1):
``left(lo) = lo**2 P0 - 2 lo P1 + P2`` over the bins left of ``lo``.

Grids: affine (``[lo, hi]`` widened to contain 0 when ``include_zero``, as PyTorch's
qparams do, so the step is ``(max(hi,0) - min(lo,0)) / (L - 1)``), or symmetric ``[-t, t]``.
The symmetric model grid has ``L`` levels spanning exactly ``[-t, t]``; PyTorch's signed grid
``scale * [-2^(b-1), 2^(b-1) - 1]`` with ``scale = t / ((L - 1) / 2)`` differs by half a step
at the ends (use ``quantizer=`` for the exact grid).

Searches (candidates are histogram edges, clamped to ``[min, max]``):
  exhaustive: every pair (affine; Numba, O(K^2)) or every ``t`` (symmetric, vectorised O(K)).
  greedy: PyTorch ``HistogramObserver._non_linear_param_search``: narrow the range one
      ``1e-5`` quantile step at a time on the side where that step drops more bins, stop as
      soon as the error rises. Kept as the baseline: it is a local
      search, so it can stop early; the exhaustive search's error is never larger.
Source: PyTorch ``torch/ao/quantization/observer.py`` (HistogramObserver); Banner et al. 2019,
"Post-training 4-bit quantization" (arXiv:1810.05723) for the clipping + rounding MSE split.
Positions here are in *bin units* ``u = x / w - lo_index`` (edges at integers): errors in ``w^2``.
"""

from __future__ import annotations

import numpy as np

from refq.calibration.numba_hist import affine_pair_search


class BinStats:
    """Prefix sums of one row of a histogram, in bin units.

    ``counts`` ``(B,)``; ``edges`` ``(B + 1,)`` clamped edges (increasing, bin units).

    >>> st = BinStats(np.array([2.0, 0.0, 1.0]), np.array([0.0, 1.0, 2.0, 3.0]))
    >>> round(float(st.left(2, 1.0)), 9), round(float(st.right(2, 2.0)), 9)
    (0.666666667, 0.333333333)

    (``2 * (0.5**2 + 1/12)`` for the two values in bin ``[0, 1)`` clipped up to 1;
    ``0.5**2 + 1/12`` for the one in ``[2, 3)`` clipped down to 2.)
    """

    def __init__(self, counts: np.ndarray, edges: np.ndarray) -> None:
        c = np.asarray(counts, np.float64)
        a, b = edges[:-1], edges[1:]
        m, w = (a + b) / 2, b - a  # (B,) centres and widths
        zero = np.zeros(1)
        self.edges = np.asarray(edges, np.float64)
        self.p0 = np.concatenate([zero, np.cumsum(c)])  # (B + 1,) count left of edge k
        self.p1 = np.concatenate([zero, np.cumsum(c * m)])
        self.p2 = np.concatenate([zero, np.cumsum(c * (m * m + w * w / 12))])
        self.n = self.p0[-1]

    def left(self, k, lo):
        """Clipping error of the bins left of edge ``k`` when clipped up to ``lo``."""
        return lo * lo * self.p0[k] - 2 * lo * self.p1[k] + self.p2[k]

    def right(self, k, hi):
        """Clipping error of the bins right of edge ``k`` when clipped down to ``hi``."""
        s0, s1, s2 = self.n - self.p0[k], self.p1[-1] - self.p1[k], self.p2[-1] - self.p2[k]
        return hi * hi * s0 - 2 * hi * s1 + s2

    def error(self, k, j, levels, zero=None):
        """``E(lo, hi)`` of the module docstring for clip edges ``k < j`` (arrays broadcast)."""
        lo, hi = self.edges[k], self.edges[j]
        glo = lo if zero is None else np.minimum(lo, zero)
        ghi = hi if zero is None else np.maximum(hi, zero)
        s = (ghi - glo) / (levels - 1)
        return s * s / 12 * (self.p0[j] - self.p0[k]) + self.left(k, lo) + self.right(j, hi)


def search_affine(st: BinStats, levels: int, zero: float | None) -> tuple[int, int, float]:
    """Exhaustive affine search: the edge pair ``(k, j)`` of smallest ``E``.

    With ``zero`` (the position of 0, when the grid must contain it) only ``lo <= 0 <= hi``
    (or the data ends) are candidates: moving ``lo`` above 0 would clip without shrinking
    the step. Returns ``(k, j, error)``.

    Counts [1, 8, 8, 0, 1] on [0, 5), 4 levels: clipping to [1, 4] gives step 1, so
    16 * 1/12 inside + (0.5**2 + 1/12) on each side = 2.0, the least of all pairs
    (the full range [0, 5] costs 18 * (5/3)**2 / 12 = 4.17).

    >>> st = BinStats(np.array([1.0, 8.0, 8.0, 0.0, 1.0]), np.arange(6.0))
    >>> k, j, err = search_affine(st, 4, None); (k, j, round(err, 9))
    (1, 4, 2.0)
    """
    e = st.edges
    nb = len(e) - 1
    k_all = np.arange(nb + 1)
    if zero is None:
        ks, js = k_all, k_all
    else:
        ks = k_all[(e <= zero) | (k_all == 0)]
        js = k_all[(e >= zero) | (k_all == nb)]
    a, b, err = affine_pair_search(
        e[ks],
        st.p0[ks],
        st.left(ks, e[ks]),
        e[js],
        st.p0[js],
        st.right(js, e[js]),
        0.0 if zero is None else float(zero),
        float(levels),
        zero is not None,
    )
    if not np.isfinite(err):  # a single point (min == max): nothing to search
        return 0, nb, 0.0
    return int(ks[a]), int(js[b]), float(err)


def search_symmetric(st: BinStats, levels: int, zero: float, tmax: float) -> tuple[float, float]:
    """Exhaustive symmetric search over ``t`` = the distance from 0 of every clamped edge.

    ``zero`` is the bin-unit position of 0 (the lattice is aligned with 0, so ``-t`` and ``t``
    are both edges when the data spans 0), ``tmax`` the largest ``|x|`` in bin units (also an
    edge distance: the clamped last or first edge). Returns ``(t, error)``.

    Counts [1, 8, 8, 1] on [-2, 2] (0 at bin position 2), 4 levels: t = 1 gives step 2/3,
    16 * (4/9) / 12 inside + 2 * (0.5**2 + 1/12) clipped = 1.259.

    >>> st = BinStats(np.array([1.0, 8.0, 8.0, 1.0]), np.arange(5.0))
    >>> t, err = search_symmetric(st, 4, 2.0, 2.0); (t, round(err, 3))
    (1.0, 1.259)
    """
    e = st.edges
    nb = len(e) - 1
    t = np.unique(np.abs(e - zero))  # (T,) candidate thresholds, increasing
    t = t[(t > 0) & (t <= tmax)]
    if len(t) == 0:  # all data exactly 0
        return 0.0, 0.0
    lo, hi = zero - t, zero + t
    k = np.clip(np.ceil(lo), 0, nb).astype(np.int64)  # first edge >= lo: bins left of it clip
    k = np.where(lo <= e[0], 0, k)
    j = np.clip(np.floor(hi), 0, nb).astype(np.int64)
    j = np.where(hi >= e[-1], nb, j)
    s = 2 * t / (levels - 1)
    err = s * s / 12 * (st.p0[j] - st.p0[k]) + st.left(k, lo) + st.right(j, hi)
    i = int(np.argmin(err))
    return float(t[i]), float(err[i])


def search_greedy(st: BinStats, levels: int, zero: float | None, step: float = 1e-5):
    """PyTorch's greedy narrowing (``_non_linear_param_search``) on this error model.

    Start from the full range; each round move ``alpha`` (lower quantile) or ``beta`` (upper)
    by ``step`` on the side whose move drops more bins; stop as soon as the error rises.
    A Python loop, as in PyTorch: the baseline the exhaustive search is compared against.
    Returns ``(k, j, error)`` (edge indices). On the ``search_affine`` example it stops at
    [0, 4] (error 17 * (4/3)**2 / 12 + 1/3 = 2.85): the lower quantile step never passes the
    first value, so its next move narrows the upper side again, past the empty bin and the 8
    values of bin 2, to [0, 2] (error 9.33); the error rises and it stops, never trying the
    optimum [1, 4] (2.0).

    >>> st = BinStats(np.array([1.0, 8.0, 8.0, 0.0, 1.0]), np.arange(6.0))
    >>> k, j, err = search_greedy(st, 4, None); (k, j, round(err, 3))
    (0, 4, 2.852)
    """
    nb = len(st.edges) - 1
    csum = st.p0[1:]  # (B,) cumulative counts
    total = st.n
    alpha, beta = 0.0, 1.0
    start, end = 0, nb - 1  # bins (inclusive)
    norm_min = st.error(0, nb, levels, zero)
    while alpha < beta:
        na, nbeta = alpha + step, beta - step
        lft, rgt = start, end
        while lft < end and csum[lft] < na * total:
            lft += 1
        while rgt > start and csum[rgt] > nbeta * total:
            rgt -= 1
        ns, ne = start, end
        if (lft - start) > (end - rgt):
            ns, alpha = lft, na
        else:
            ne, beta = rgt, nbeta
        if ns == start and ne == end:
            continue
        norm = st.error(ns, ne + 1, levels, zero)
        if norm > norm_min:
            break
        norm_min, start, end = norm, ns, ne
    return start, end + 1, float(norm_min)
