"""A streaming histogram on a power-of-two lattice: batch order never changes the counts.

Histogram observers must accumulate many batches without keeping the data, while the range of
the data keeps growing. PyTorch's ``HistogramObserver`` re-bins by interpolation, spreading
old counts over new bins (an approximation that depends on the batch order). refq instead
puts every bin edge on a fixed lattice:

    width  w = 2**e                     (e an integer)
    bin of x: i = floor(x / w) - lo     (lo = floor(min_seen / w); exact: x / 2**e is exact)
    e = the smallest integer with floor(max_seen / w) - floor(min_seen / w) <= bins - 1

When the range grows, ``e`` grows by ``d`` and old bin ``i`` maps to new bin
``((lo_old + i) >> d) - lo_new``: old bins nest exactly inside new ones, nothing is split.
So the final histogram is a function of the data *multiset* only: it is bit-identical whatever
the batching or order, and equal to one pass over the concatenated data. The price is
resolution: the data spans between ``bins / 2`` and ``bins`` bins (not always all of them).

Bins are treated as holding values uniformly spread over their interval, clamped to the exact
``[min_seen, max_seen]`` (tracked exactly), which is what the percentile, MSE and entropy
searches assume. Per channel, each row has its own ``e`` and ``lo``.
"""

from __future__ import annotations

import numpy as np

from refq.calibration.numba_hist import rows_bin_add, rows_minmax

E_MIN = -1000  # the smallest exponent; only all-zero data ends here (2**-1000 is representable)
HEADROOM = 40  # |x| / w < 2**40 always (e >= exponent(max|x|) - 40): indices exact as float64
#                even after adding a bin offset; caps the resolution at 2**-40 relative to
#                max|x| (reached only by constant or nearly constant data)


def _fits(lo: np.ndarray, hi: np.ndarray, e: np.ndarray, bins: int) -> np.ndarray:
    span = np.floor(np.ldexp(hi, -e)) - np.floor(np.ldexp(lo, -e))  # (C,) exact integers
    return span <= bins - 1


def lattice_exponent(lo: np.ndarray, hi: np.ndarray, bins: int) -> np.ndarray:
    """Smallest ``e`` (>= the floors above) putting ``[lo, hi]`` in ``bins`` bins of width ``2**e``.

    >>> lattice_exponent(np.array([0.0]), np.array([1.0]), 4).tolist()  # w = 0.5: bins 0, 1, 2
    [-1]
    """
    lo = np.asarray(lo, np.float64)
    hi = np.asarray(hi, np.float64)
    absmax = np.maximum(np.abs(lo), np.abs(hi))
    e_floor = np.where(absmax > 0, np.frexp(absmax)[1] - HEADROOM, E_MIN)
    span = hi - lo
    with np.errstate(divide="ignore"):
        guess = np.where(span > 0, np.floor(np.log2(np.maximum(span, 1e-300) / bins)) - 1, E_MIN)
    e = np.maximum(np.maximum(guess, e_floor), E_MIN).astype(np.int64)
    while True:  # at most a few steps: guess is within 2 of the answer
        ok = _fits(lo, hi, e, bins)
        if ok.all():
            return e
        e = e + (~ok)


class StreamingHistogram:
    """Per-row (channel) histograms of ``bins`` bins on the power-of-two lattice.

    ``add(xc)`` takes a ``(C, N)`` batch. With ``include_zero=True`` the range always contains
    0 (used for histograms of ``|x|`` that must start at 0, as TensorRT's do).

    >>> h = StreamingHistogram(bins=4)
    >>> h.add(np.array([[0.0, 0.25, 1.0]]))   # w = 0.5: bins [0, .5), [.5, 1), [1, 1.5), ...
    >>> h.counts.tolist(), h.edges().tolist()
    ([[2, 0, 1, 0]], [[0.0, 0.5, 1.0, 1.5, 2.0]])
    >>> h.add(np.array([[3.0]]))              # range grows: w = 1, old bins merge exactly
    >>> h.counts.tolist(), h.edges().tolist()
    ([[2, 1, 0, 1]], [[0.0, 1.0, 2.0, 3.0, 4.0]])
    """

    def __init__(self, bins: int = 2048, include_zero: bool = False, engine: str = "numba") -> None:
        if isinstance(bins, bool) or not isinstance(bins, (int, np.integer)) or bins < 2:
            raise ValueError(f"bins must be an integer >= 2, got {bins!r}")
        if engine not in ("numba", "numpy"):
            raise ValueError(f"engine must be 'numba' or 'numpy', got {engine!r}")
        self.bins = int(bins)
        self.engine = engine
        self.include_zero = bool(include_zero)
        self.counts: np.ndarray | None = None  # (C, bins) int64
        self.exp: np.ndarray | None = None  # (C,) int64, bin width 2**exp
        self.lo: np.ndarray | None = None  # (C,) int64, absolute lattice index of bin 0
        self.min_val: np.ndarray | None = None  # (C,) float64, exact
        self.max_val: np.ndarray | None = None

    def add(self, xc: np.ndarray) -> None:
        """Count one ``(C, N)`` batch, growing (and exactly re-binning) the range if needed."""
        if self.engine == "numba":
            xc = np.ascontiguousarray(xc)
            if xc.dtype not in (np.float32, np.float64):
                xc = xc.astype(np.float64)
            bmin, bmax = rows_minmax(xc)  # (C, N) -> (C,), (C,) float64
        else:
            xc = np.asarray(xc, dtype=np.float64)  # exact for float32 input
            bmin, bmax = xc.min(axis=1), xc.max(axis=1)  # (C, N) -> (C,)
        if self.include_zero:
            bmin, bmax = np.minimum(bmin, 0.0), np.maximum(bmax, 0.0)
        if self.counts is None:
            c = xc.shape[0]
            self.min_val, self.max_val = bmin, bmax
            self.exp = lattice_exponent(bmin, bmax, self.bins)
            self.lo = np.floor(np.ldexp(bmin, -self.exp)).astype(np.int64)
            self.counts = np.zeros((c, self.bins), np.int64)
        else:
            self._grow(np.minimum(self.min_val, bmin), np.maximum(self.max_val, bmax))
        if self.engine == "numba":
            rows_bin_add(xc, self.exp, self.lo, self.counts)  # in place, (C, bins) int64
        else:
            self.counts += self._bin_numpy(xc)

    def _bin_numpy(self, xc: np.ndarray) -> np.ndarray:
        """The specification of the binning (``rows_bin_add`` must match it bit for bit)."""
        c, b = self.counts.shape
        idx = np.floor(np.ldexp(xc, -self.exp[:, None])).astype(np.int64)  # (C, N) abs index
        idx -= self.lo[:, None]  # (C, N) index within the row, in [0, bins)
        idx += (np.arange(c, dtype=np.int64) * b)[:, None]  # (C, N) flat index into (C * bins)
        return np.bincount(idx.ravel(), minlength=c * b).reshape(c, b)  # -> (C, bins) int64

    def _grow(self, new_min: np.ndarray, new_max: np.ndarray) -> None:
        e_new = np.maximum(self.exp, lattice_exponent(new_min, new_max, self.bins))
        lo_new = np.floor(np.ldexp(new_min, -e_new)).astype(np.int64)
        self.min_val, self.max_val = new_min, new_max
        if np.array_equal(e_new, self.exp) and np.array_equal(lo_new, self.lo):
            return
        c, b = self.counts.shape
        d = (e_new - self.exp)[:, None]  # (C, 1) exponent increase
        absidx = self.lo[:, None] + np.arange(b, dtype=np.int64)  # (C, bins) old abs index
        newidx = (absidx >> d) - lo_new[:, None]  # (C, bins) floor division by 2**d
        np.clip(newidx, 0, b - 1, out=newidx)  # only empty old bins can fall outside
        newidx += (np.arange(c, dtype=np.int64) * b)[:, None]  # flat into (C * bins)
        merged = np.zeros(c * b, np.int64)
        np.add.at(merged, newidx.ravel(), self.counts.ravel())
        self.counts = merged.reshape(c, b)
        self.exp, self.lo = e_new, lo_new

    @property
    def width(self) -> np.ndarray:
        """Bin width per row, ``2**exp``: ``(C,)`` float64."""
        return np.ldexp(1.0, self.exp)

    def edges(self) -> np.ndarray:
        """Lattice edges ``(C, bins + 1)``: ``(lo + k) * 2**exp``."""
        k = self.lo[:, None] + np.arange(self.bins + 1)  # (C, bins + 1)
        return np.ldexp(k.astype(np.float64), self.exp[:, None])

    def clamped_edges(self) -> np.ndarray:
        """Edges clamped to the exact ``[min_seen, max_seen]``: ``(C, bins + 1)``."""
        return np.clip(self.edges(), self.min_val[:, None], self.max_val[:, None])

    def quantile(self, q: float) -> np.ndarray:
        """The ``q``-quantile (``0 <= q <= 1``) per row, values uniform within each bin.

        Rule: with ``n`` values and target mass ``t = q * n``, find the bin ``j`` where the
        cumulative count first reaches ``t`` and interpolate linearly inside its clamped
        interval: ``a_j + (t - cum_{j-1}) / c_j * (b_j - a_j)``. The estimate lies in the bin
        that holds the ``ceil(t)``-th smallest value, so it is within one bin width of it.

        >>> h = StreamingHistogram(bins=8); h.add(np.array([[0.0, 1.0, 2.0, 3.0]]))
        >>> h.quantile(0.5).tolist(), h.quantile(1.0).tolist()
        ([1.5], [3.0])
        """
        q = float(q)
        if not 0.0 <= q <= 1.0:
            raise ValueError(f"quantile must be in [0, 1], got {q}")
        cum = np.cumsum(self.counts, axis=1)  # (C, bins)
        n = cum[:, -1].astype(np.float64)
        t = q * n  # (C,)
        j = np.minimum((cum < t[:, None]).sum(axis=1), self.bins - 1)  # (C,) first cum >= t
        rows = np.arange(len(j))
        prev = np.where(j > 0, cum[rows, np.maximum(j - 1, 0)], 0).astype(np.float64)
        cnt = self.counts[rows, j].astype(np.float64)
        ce = self.clamped_edges()
        a, b = ce[rows, j], ce[rows, j + 1]
        frac = np.where(cnt > 0, (t - prev) / np.maximum(cnt, 1.0), 0.0)
        est = np.clip(a + frac * (b - a), a, b)  # inside the bin despite rounding
        return np.where(t <= 0, self.min_val, est)
