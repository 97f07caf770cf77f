"""HistogramObserver: a 2048-bin histogram over all batches, then the MSE (L2) range search.

Source: PyTorch ``HistogramObserver`` (torch/ao/quantization/observer.py), which keeps a
2048-bin histogram and greedily narrows the range to minimise the L2 quantization error of the
histogram. refq keeps the idea and changes two things, both tested:

- the histogram lives on a power-of-two lattice (``binning.StreamingHistogram``): growing the
  range re-bins exactly, so batching never changes the counts (PyTorch interpolates);
- the default search is exhaustive over all candidate clipping ranges (every pair of bin edges,
  O(K^2) with prefix sums in a Numba loop; every threshold for a symmetric grid), so it finds
  the global minimum of the error model; ``search="greedy"`` is PyTorch's local narrowing.

The target grid: ``quantizer=None`` uses the built-in uniform-grid model (``mse_model``: step**2
/ 12 inside, squared clipping distance outside) for an affine (``symmetric=False``) or
symmetric grid of ``2**bits`` levels. With ``quantizer=<instance>`` the error of a candidate
range is measured on the quantizer itself::

    E(lo, hi) = sum_i c_i * (fq(m_i) - m_i)**2,   fq = deepcopy(quantizer).set_range(lo, hi)
                                                        .fake_quant

over the bin centres ``m_i`` weighted by their counts ``c_i``, so log quantizers and
user-defined ones work too. Each candidate costs a call of the quantizer, so the search is
coarse-to-fine (a grid of ranges, then local refinement to bin resolution; a local search in
the fine stage). A linear quantizer (equally spaced levels, found by a probe, with ``bits``)
starts instead from the built-in model's exhaustive optimum for its bits and symmetry and is
refined on the quantizer itself: the global search of the model, the exact error of the grid.
"""

from __future__ import annotations

import copy

import numpy as np

from refq.calibration.base import Observer
from refq.calibration.binning import StreamingHistogram
from refq.calibration.mse_model import BinStats, search_affine, search_greedy, search_symmetric


def check_quantizer(quantizer: object) -> None:
    """A search target must have ``set_range`` and ``fake_quant``; group quantizers are refused.

    >>> check_quantizer("int8")
    Traceback (most recent call last):
    ...
    TypeError: quantizer= needs set_range(lo, hi) and fake_quant(x); str has no set_range()
    """
    for name in ("set_range", "fake_quant"):
        if not callable(getattr(quantizer, name, None)):
            raise TypeError(
                f"quantizer= needs set_range(lo, hi) and fake_quant(x); "
                f"{type(quantizer).__name__} has no {name}()"
            )
    if getattr(quantizer, "group_size", None) is not None:
        raise ValueError("observers report (C,) ranges; per-group quantizers are not supported")


def has_uniform_grid(quantizer: object) -> bool:
    """True if ``quantizer`` on the range (-1, 1) produces equally spaced levels (a linear grid).

    >>> class Thirds:
    ...     def set_range(self, lo, hi): return self
    ...     def fake_quant(self, x): return np.round(np.asarray(x) * 3) / 3
    >>> has_uniform_grid(Thirds())
    True
    """
    q = copy.deepcopy(quantizer)
    if getattr(q, "axis", None) is not None:
        q.axis = None  # probe the grid per tensor
    q.set_range(np.float32(-1.0), np.float32(1.0))
    levels = np.unique(np.asarray(q.fake_quant(np.linspace(-1, 1, 8193, dtype=np.float32))))
    if len(levels) < 3:
        return False
    d = np.diff(levels.astype(np.float64))
    return bool(d.max() - d.min() <= 1e-3 * d.mean())


class _QuantizerError:
    """``E(lo, hi)`` per row, measured by a quantizer on bin centres (vectorised over rows).

    A per-tensor quantizer is called once per row; a per-channel one (``axis``) once for all
    rows, with the centres laid out so that the rows lie along its channel axis.
    """

    def __init__(self, quantizer: object, centers: np.ndarray, counts: np.ndarray) -> None:
        self.q = copy.deepcopy(quantizer)
        self.axis = getattr(quantizer, "axis", None)
        self.centers, self.counts = centers, counts  # (R, K) float64, (R, K) float64
        if self.axis is not None:
            self.x = self._layout(centers.astype(np.float32))

    def _layout(self, a: np.ndarray) -> np.ndarray:
        r, k = a.shape
        ax = self.axis
        if ax in (0, -2):
            return a  # (R, K): rows on axis 0
        if ax in (1, -1):
            return a.T  # (R, K) -> (K, R): rows on axis 1 / -1
        if ax >= 2:
            return a.T.reshape((1,) * (ax - 1) + (k, r))  # rows on axis ax
        return a.reshape((r, k) + (1,) * (-ax - 2))  # rows on axis ax < -2

    def _unlayout(self, a: np.ndarray) -> np.ndarray:
        r = self.centers.shape[0]
        return np.moveaxis(np.asarray(a, np.float64), self.axis, 0).reshape(r, -1)  # -> (R, K)

    def __call__(self, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        lo32, hi32 = lo.astype(np.float32), np.maximum(hi, lo).astype(np.float32)
        if self.axis is None:
            fq = np.empty_like(self.centers)
            for r in range(len(lo)):
                self.q.set_range(lo32[r], hi32[r])
                fq[r] = self.q.fake_quant(self.centers[r].astype(np.float32))
        else:
            self.q.set_range(lo32, hi32)
            fq = self._unlayout(self.q.fake_quant(self.x))
        return ((fq - self.centers) ** 2 * self.counts).sum(axis=1)  # (R, K) -> (R,)


def _pattern_search(f, points: np.ndarray, bins: int, seed=None, d0=None) -> np.ndarray:
    """Coarse-to-fine minimisation of ``f(p) -> (R,)`` over parameters ``p`` in ``[0, 1]^D``.

    ``points`` ``(G, D)`` is the coarse grid (plus, if given, a per-row ``seed`` ``(R, D)``);
    then around each row's best point a 5-point stencil per dimension at spacing ``d`` is
    tried, ``d`` halving from ``d0`` (default: the grid spacing) to ``1 / bins``. Returns the
    best ``(R, D)`` parameters.
    """
    errs = np.stack([f(p) for p in points])  # (G, R)
    best = points[np.argmin(errs, axis=0)].copy()  # (R, D)
    best_err = errs.min(axis=0)
    if seed is not None:
        e = f(seed)
        better = e < best_err
        best[better], best_err[better] = seed[better], e[better]
    d = d0 if d0 is not None else 1.0 / (len(points) ** (1.0 / points.shape[1]))
    dim = points.shape[1]
    steps = np.array(np.meshgrid(*[np.arange(-2, 3)] * dim)).reshape(dim, -1).T  # (5^D, D)
    while d >= 0.5 / bins:
        for s in steps:
            if not s.any():
                continue
            cand = np.clip(best + s * d / 2, 0.0, 1.0)  # (R, D)
            e = f(cand)
            better = e < best_err
            best[better], best_err[better] = cand[better], e[better]
        d /= 2
    return best


class HistogramObserver(Observer):
    """Histogram of all batches, then the clipping range of least expected squared error.

    Rule: accumulate a ``bins``-bin histogram (exact power-of-two re-binning as the range
    grows); then choose ``(lo, hi) = argmin E(lo, hi)`` where ``E`` is the expected squared
    quantization error of the histogram (module docstring): the built-in uniform-grid model of
    ``2**bits`` levels (affine or ``symmetric``), or the given ``quantizer`` itself.

    Args:
        bins: histogram bins (2048 as PyTorch).
        quantizer: target grid (any object with ``set_range`` and ``fake_quant``); None for the
            built-in model. A per-channel quantizer needs ``axis=`` here too.
        bits, symmetric: the built-in model's grid (default 8 bits, affine); only without
            ``quantizer``.
        include_zero: the built-in affine grid contains 0 (PyTorch's qparams widen the range
            to contain 0), so the step is computed on ``[min(lo, 0), max(hi, 0)]``.
        search: "exhaustive" (default) or "greedy" (PyTorch's, built-in model only).
        axis: per channel along this axis (one histogram per channel), or None.

    After ``calculate_range``, ``self.error`` holds the model's expected squared error per
    value of the chosen range, ``(C,)``.

    Uniform data on [-1, 1], 4 bits (L = 16 levels), clip at [-t, t]: E(t) = t * (2t / 15)**2
    / 12 + (1 - t)**3 / 3, dE/dt = t**2 / 15**2 - (1 - t)**2 = 0 gives t = 15 / 16 = 0.9375
    (clipping costs nothing at first order, the smaller step does): the search finds it.

    >>> obs = HistogramObserver(bits=4)
    >>> _ = obs.observe(np.linspace(-1, 1, 100001))
    >>> [float(v) for v in obs.calculate_range()]
    [-0.9375, 0.9375]
    """

    def __init__(
        self,
        bins: int = 2048,
        quantizer: object | None = None,
        bits: int | None = None,
        symmetric: bool | None = None,
        include_zero: bool = True,
        search: str = "exhaustive",
        axis: int | None = None,
        engine: str = "numba",
    ) -> None:
        if quantizer is not None:
            check_quantizer(quantizer)
            if bits is not None or symmetric is not None:
                raise ValueError(
                    "bits/symmetric describe the built-in grid; with quantizer= the grid comes "
                    "from the quantizer"
                )
            if search != "exhaustive":
                raise ValueError("search='greedy' works on the built-in model (quantizer=None)")
            q_axis = getattr(quantizer, "axis", None)
            if q_axis is not None and axis is None:
                raise ValueError(
                    f"quantizer is per-channel (axis={q_axis}) but the observer is per-tensor: "
                    "give the observer axis= too"
                )
        bits = 8 if bits is None else bits
        if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or not 1 <= bits <= 16:
            raise ValueError(f"bits must be an integer in [1, 16], got {bits!r}")
        if search not in ("exhaustive", "greedy"):
            raise ValueError(f"search must be 'exhaustive' or 'greedy', got {search!r}")
        self.bins, self.engine = bins, engine
        StreamingHistogram(bins, engine=engine)  # validate bins and engine now
        self.quantizer = quantizer
        self.bits = int(bits)
        self.symmetric = bool(symmetric)
        self.include_zero = bool(include_zero)
        self.search = search
        self.error: np.ndarray | None = None
        super().__init__(axis=axis)

    def reset(self) -> None:
        super().reset()
        self.hist = StreamingHistogram(self.bins, engine=self.engine)

    def _observe(self, xc: np.ndarray) -> None:
        self.hist.add(xc)  # (C, N)

    def _rows(self):
        """Per row: (occupied counts, clamped edges in bin units, lattice offset, width)."""
        h = self.hist
        w = h.width
        for r in range(h.counts.shape[0]):
            k = int(np.flatnonzero(h.counts[r])[-1]) + 1  # occupied bins [0, k)
            umin = h.min_val[r] / w[r] - h.lo[r]  # exact: power-of-two scaling
            umax = h.max_val[r] / w[r] - h.lo[r]
            edges = np.clip(np.arange(k + 1, dtype=np.float64), umin, umax)  # (k + 1,)
            yield h.counts[r, :k].astype(np.float64), edges, float(h.lo[r]), float(w[r])

    def _calculate_range(self) -> tuple[np.ndarray, np.ndarray]:
        if self.quantizer is not None:
            return self._quantizer_search()
        lo, hi, self.error = self._builtin_search(self.bits, self.symmetric, self.search)
        return lo, hi

    def _builtin_search(self, bits: int, symmetric: bool, search: str):
        """The built-in model's best range per row: ``(lo, hi, error per value)``."""
        levels = 2**bits
        los, his, errs = [], [], []
        for counts, edges, off, w in self._rows():
            st = BinStats(counts, edges)
            zero = -off  # bin-unit position of 0
            if symmetric:
                tmax = max(abs(edges[0] - zero), abs(edges[-1] - zero))
                t, err = search_symmetric(st, levels, zero, tmax)
                lo, hi = max(zero - t, edges[0]), min(zero + t, edges[-1])
            else:
                z = zero if self.include_zero else None
                searcher = search_greedy if search == "greedy" else search_affine
                k, j, err = searcher(st, levels, z)
                lo, hi = edges[k], edges[j]
            los.append((lo + off) * w)  # bin units -> values
            his.append((hi + off) * w)
            errs.append(err * w * w / st.n)
        # bin units -> values can round the data ends by an ulp: clamp to the exact range
        mn, mx = self.hist.min_val, self.hist.max_val
        return np.clip(np.array(los), mn, mx), np.clip(np.array(his), mn, mx), np.array(errs)

    def _quantizer_search(self) -> tuple[np.ndarray, np.ndarray]:
        rows = list(self._rows())
        kmax = max(len(c) for c, *_ in rows)
        centers = np.zeros((len(rows), kmax))  # (R, K) bin centres in values, padded
        counts = np.zeros((len(rows), kmax))  # (R, K), zero weight on padding
        within = np.zeros(len(rows))  # (R,) sum c_i w_i**2 / 12: spread inside the bins
        for r, (c, e, off, w) in enumerate(rows):
            centers[r, : len(c)] = ((e[:-1] + e[1:]) / 2 + off) * w
            centers[r, len(c) :] = (e[-1] + off) * w
            counts[r, : len(c)] = c
            within[r] = np.sum(c * (np.diff(e) * w) ** 2) / 12
        mn, mx = self.hist.min_val, self.hist.max_val  # (R,)
        err_of = _QuantizerError(self.quantizer, centers, counts)
        amax = np.maximum(np.abs(mn), np.abs(mx))
        # smallest useful t: below min|x| of one-signed data, (-t, t) misses all the data
        tmin = np.where(mn > 0, mn, np.where(mx < 0, -mx, 0.0))
        symmetric = np.array_equal(err_of(-0.5 * amax, amax), err_of(-amax, amax))
        # a linear grid: start from the built-in model's exhaustive optimum, refine locally
        seeded = hasattr(self.quantizer, "bits") and has_uniform_grid(self.quantizer)
        if seeded:
            slo, shi, _ = self._builtin_search(int(self.quantizer.bits), symmetric, "exhaustive")
        d0 = 32.0 / self.bins if seeded else None
        if symmetric:

            def f(p):  # p (D=1,) or (R, 1): t = tmin + p * (amax - tmin)
                t = tmin + np.broadcast_to(p, (len(amax), 1))[:, 0] * (amax - tmin)
                return err_of(np.maximum(-t, mn), np.minimum(t, mx))

            grid = np.linspace(1 / 64, 1.0, 9 if seeded else 64)[:, None]  # (G, 1)
            seed = None
            if seeded:
                span = np.where(amax > tmin, amax - tmin, 1.0)
                seed = np.clip((np.maximum(-slo, shi) - tmin) / span, 0, 1)[:, None]  # (R, 1)
            p = _pattern_search(f, grid, self.bins, seed, d0)
            t = tmin + p[:, 0] * (amax - tmin)
            lo, hi = np.maximum(-t, mn), np.minimum(t, mx)
        else:

            def f(p):  # p (2,) or (R, 2): lo = mn + p0 * span, hi = mn + p1 * span
                p = np.broadcast_to(p, (len(mn), 2))
                return np.where(
                    p[:, 0] < p[:, 1],
                    err_of(mn + p[:, 0] * (mx - mn), mn + p[:, 1] * (mx - mn)),
                    np.inf,
                )

            g = np.linspace(0.0, 1.0, 9 if seeded else 25)
            grid = np.array([(a, b) for a in g for b in g if a < b])  # (36 or 300, 2)
            seed = None
            if seeded:
                span = np.where(mx > mn, mx - mn, 1.0)
                seed = np.clip(np.stack([(slo - mn) / span, (shi - mn) / span], 1), 0, 1)
            p = _pattern_search(f, grid, self.bins, seed, d0)
            lo, hi = mn + p[:, 0] * (mx - mn), mn + p[:, 1] * (mx - mn)
        self.error = (err_of(lo, hi) + within) / counts.sum(axis=1)
        return lo, hi
