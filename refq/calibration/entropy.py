"""Entropy (KL-divergence) calibration, as TensorRT does it.

Source: S. Migacz, "8-bit Inference with TensorRT" (GTC 2017); NVIDIA pytorch-quantization
``calib/histogram.py`` (``_compute_amax_entropy``); MXNet's ``_smooth_distribution`` for the
smoothing of zeros. The idea: choose the threshold ``t`` whose quantized distribution loses the
least information (KL divergence) relative to the clipped original.

Algorithm on the histogram of ``|x|`` (bins of width ``w`` from 0; here the power-of-two
streaming histogram, ``K`` occupied bins, 1025..2048 of 2048):

1. (pytorch-quantization) ``bins[0] = bins[1]``: the exact zeros (ReLU) would dominate P.
2. For every candidate ``i`` from ``start = levels`` (128 for 8 bits) to ``K``:
   P = bins[0:i], the clipped tail ``sum(bins[i:])`` folded into P[i-1];
   Q = bins[0:i] merged into ``levels`` groups (bin ``j`` -> group ``j * levels // i``), each
       group's total spread evenly over its non-empty bins, empty bins 0;
   smooth Q's zeros (``eps``, on counts) and take ``KL(P || Q)`` of the normalised pair.
3. ``t = i_best * w`` (the largest ``i`` among ties, as pytorch-quantization), range ``(-t, t)``.

``levels = 2**(bits - 1)`` for signed data (a sign bit: 128 levels for 8 bits) and ``2**bits``
for non-negative data (then the range is ``(0, t)``), as pytorch-quantization's ``unsigned``.
With ``quantizer=`` a linear (uniform-grid) quantizer, detected by a probe of its levels,
gets exactly TensorRT's merge with ``levels`` from its ``bits``; any other grid (log,
user-defined) merges the bins whose centres the quantizer (range ``(-t, t)``) maps to the same
value: the same rule for any grid, one ``fake_quant`` call per candidate.
"""

from __future__ import annotations

import copy

import numpy as np

from refq.calibration.base import Observer
from refq.calibration.binning import StreamingHistogram
from refq.calibration.histogram import check_quantizer, has_uniform_grid
from refq.calibration.numba_hist import kl_divergences

MAX_GENERIC_CANDIDATES = 256  # thresholds tried by the level-defined (non-linear grid) merge


def smooth_zeros(q: np.ndarray, eps: float = 1e-4) -> np.ndarray:
    """MXNet's smoothing: zeros become ``eps``, the others lose ``eps * n_zero / n_nonzero``.

    The total is unchanged. ``q`` holds counts (so ``eps`` is tiny next to any non-zero).

    >>> smooth_zeros(np.array([2.0, 0.0, 2.0]), eps=0.5).tolist()
    [1.75, 0.5, 1.75]
    """
    zero = q == 0
    n0, n1 = int(zero.sum()), int((~zero).sum())
    if n1 == 0:
        raise ValueError("cannot smooth an all-zero distribution")
    return np.where(zero, eps, q - eps * n0 / n1)


def kl_divergence(p: np.ndarray, q: np.ndarray) -> float:
    """``KL(P || Q) = sum_{p > 0} p log(p / q)`` of the normalised distributions (nats).

    >>> round(kl_divergence(np.array([1.0, 1.0]), np.array([1.0, 3.0])), 6)  # .5 ln(2) + .5 ln(2/3)
    0.143841
    """
    p = p / p.sum()
    q = q / q.sum()
    m = p > 0
    return float(np.sum(p[m] * np.log(p[m] / q[m])))


def entropy_divergences_reference(bins: np.ndarray, levels: int, start: int, eps: float = 1e-4):
    """Plain NumPy form of step 2 (the specification the Numba loop is tested against).

    >>> entropy_divergences_reference(np.array([4.0, 2.0, 0.0, 2.0]), 2, 2).round(4)
    array([0.0589, 2.2307, 0.0425])
    """
    bins = np.asarray(bins, np.float64)
    out = []
    for i in range(start, len(bins) + 1):
        p = bins[:i].copy()
        p[-1] += bins[i:].sum()
        group = np.arange(i) * levels // i  # (i,) merge group of each bin
        nonempty = bins[:i] > 0
        if not nonempty.any():
            out.append(np.inf)
            continue
        gsum = np.bincount(group[nonempty], weights=bins[:i][nonempty], minlength=levels)
        gcnt = np.bincount(group[nonempty], minlength=levels)
        q = np.where(nonempty, gsum[group] / np.maximum(gcnt[group], 1), 0.0)
        out.append(kl_divergence(p, smooth_zeros(q, eps)))
    return np.array(out)


class EntropyObserver(Observer):
    """Symmetric range ``(-t, t)`` minimising TensorRT's KL divergence (module docstring).

    Args:
        bins: bins of the ``|x|`` histogram (2048 as TensorRT).
        bits: target bits (default 8: 128 levels + sign); only without ``quantizer``.
        quantizer: a quantizer whose ``fake_quant`` defines the merge groups (``set_range(-t,
            t)``); its ``bits`` sets the first candidate. None: TensorRT's uniform merge.
            A uniform-grid quantizer (LinearQuantizer) takes TensorRT's fast path with its
            ``bits``. A per-channel quantizer (``axis`` set) is used through a per-tensor copy
            (``axis = None``) on each channel's histogram. For other grids each candidate
            threshold costs one ``set_range`` + ``fake_quant`` of up to ``bins`` values
            (~0.2 ms), so the stride is raised until at most 256 thresholds are tried
            (~50 ms per channel).
        unsigned: None (default) decides from the data (all ``x >= 0``: ``2**bits`` levels,
            range ``(0, t)``); True/False forces it.
        replace_zero_bin: pytorch-quantization's ``bins[0] = bins[1]`` (default True).
        eps: smoothing of Q's zeros (counts).
        stride: try every ``stride``-th threshold bin only (TensorRT's ``stride``; the cost
            is O(K / stride * levels) per channel, about 8 ms for K = 2048, 128 levels).
        axis: per channel (one ``|x|`` histogram per channel), or None.

    ``self.divergences`` keeps the last KL curve per channel (index ``(i - start) // stride``,
    with the stride actually used).

    >>> rng = np.random.default_rng(0)
    >>> obs = EntropyObserver()
    >>> _ = obs.observe(rng.standard_normal(100_000))
    >>> lo, hi = obs.calculate_range()
    >>> float(lo) == -float(hi), 2.0 < float(hi) < 4.3   # clips the Gaussian tails
    (True, True)
    """

    def __init__(
        self,
        bins: int = 2048,
        bits: int | None = None,
        quantizer: object | None = None,
        unsigned: bool | None = None,
        replace_zero_bin: bool = True,
        eps: float = 1e-4,
        stride: int = 1,
        axis: int | None = None,
        engine: str = "numba",
    ) -> None:
        if quantizer is not None:
            check_quantizer(quantizer)
            if bits is not None:
                raise ValueError("bits describes TensorRT's grid; with quantizer= it is not used")
            if getattr(quantizer, "axis", None) is not None:
                if axis is None:
                    raise ValueError(
                        f"quantizer is per-channel (axis={quantizer.axis}) but the observer is "
                        "per-tensor: give the observer axis= too"
                    )
                quantizer = copy.deepcopy(quantizer)
                quantizer.axis = None  # each channel's search uses a per-tensor copy
        bits = 8 if bits is None else bits
        if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or not 2 <= bits <= 16:
            raise ValueError(f"bits must be an integer in [2, 16], got {bits!r}")
        if not 0 < eps < 0.01:
            raise ValueError(f"eps must be in (0, 0.01), got {eps}")
        if isinstance(stride, bool) or not isinstance(stride, (int, np.integer)) or stride < 1:
            raise ValueError(f"stride must be a positive integer, got {stride!r}")
        self.stride = int(stride)
        self.bins, self.engine = bins, engine
        StreamingHistogram(bins, engine=engine)  # validate bins and engine now
        self.bits = int(getattr(quantizer, "bits", bits)) if quantizer is not None else int(bits)
        self.quantizer = quantizer
        # a linear grid merges exactly as TensorRT's (fast Numba path); others by their levels
        self.uniform_merge = quantizer is None or (
            hasattr(quantizer, "bits") and has_uniform_grid(quantizer)
        )
        self.unsigned = unsigned
        self.replace_zero_bin = bool(replace_zero_bin)
        self.eps = float(eps)
        self.divergences: list[np.ndarray] = []
        super().__init__(axis=axis)

    def reset(self) -> None:
        super().reset()
        self.hist = StreamingHistogram(self.bins, include_zero=True, engine=self.engine)
        self.min_val: np.ndarray | None = None  # (C,) float64: is the data signed?

    def _observe(self, xc: np.ndarray) -> None:
        lo = xc.min(axis=1).astype(np.float64)  # (C, N) -> (C,)
        self.min_val = lo if self.min_val is None else np.minimum(self.min_val, lo)
        self.hist.add(np.abs(xc))  # (C, N) histogram of |x|, lattice from 0

    def _calculate_range(self) -> tuple[np.ndarray, np.ndarray]:
        h = self.hist
        los, his = [], []
        self.divergences = []
        for r in range(h.counts.shape[0]):
            unsigned = bool(self.min_val[r] >= 0) if self.unsigned is None else self.unsigned
            levels = 2 ** (self.bits - 1 + int(unsigned))
            k = int(np.flatnonzero(h.counts[r])[-1]) + 1  # occupied bins [0, k)
            bins = h.counts[r, :k].astype(np.float64)
            if self.replace_zero_bin and k > 1:
                bins[0] = bins[1]
            amax = float(h.max_val[r])
            w = float(h.width[r])
            if k <= levels or amax == 0.0:  # fewer bins than levels: nothing to clip
                t, div = amax, np.zeros(1)
            else:
                stride = self._stride(k, levels)
                div = self._divergences(bins, levels, w, unsigned, stride)
                last_argmin = len(div) - 1 - int(np.argmin(div[::-1]))  # ties: largest t
                i_best = levels + stride * last_argmin
                t = min(i_best * w, amax)
            self.divergences.append(div)
            los.append(0.0 if unsigned else -t)
            his.append(t)
        return np.array(los), np.array(his)

    def _stride(self, k: int, levels: int) -> int:
        """``stride``, raised for the level-defined merge so that at most 256 thresholds run."""
        if self.uniform_merge:
            return self.stride
        return max(self.stride, -(-(k - levels) // MAX_GENERIC_CANDIDATES))

    def _divergences(self, bins, levels: int, w: float, unsigned: bool, stride: int):
        if self.uniform_merge:
            return kl_divergences(bins, levels, levels, self.eps, stride)
        qz = copy.deepcopy(self.quantizer)
        centers = ((np.arange(len(bins)) + 0.5) * w).astype(np.float32)  # (K,)
        out = []
        for i in range(levels, len(bins) + 1, stride):
            t = np.float32(i * w)
            qz.set_range(np.float32(0.0) if unsigned else -t, t)
            _, group = np.unique(qz.fake_quant(centers[:i]), return_inverse=True)  # (i,)
            p = bins[:i].copy()
            p[-1] += bins[i:].sum()
            nonempty = bins[:i] > 0
            if not nonempty.any():
                out.append(np.inf)
                continue
            gsum = np.bincount(group[nonempty], weights=bins[:i][nonempty], minlength=i)
            gcnt = np.bincount(group[nonempty], minlength=i)
            q = np.where(nonempty, gsum[group] / np.maximum(gcnt[group], 1), 0.0)
            out.append(kl_divergence(p, smooth_zeros(q, self.eps)))
        return np.array(out)
