"""Percentile calibration: clip the range at a percentile, from a streaming histogram.

Source: the percentile calibrator of NVIDIA's pytorch-quantization / TensorRT (clip at the
99.9th, 99.99th or 99.999th percentile of ``|x|``); Wu et al. 2020, "Integer quantization for
deep learning inference" (arXiv:2004.09602), section 4.2.
"""

from __future__ import annotations

import numpy as np

from refq.calibration.base import Observer
from refq.calibration.binning import StreamingHistogram


class PercentileObserver(Observer):
    """Range from the ``p``-th percentile of the data, accumulated without keeping the data.

    Rule:
      two-sided (``symmetric=False``): ``(P_{100 - p}(x), P_p(x))``;
      symmetric (``symmetric=True``): ``t = P_p(|x|)`` and the range ``(-t, t)`` intersected
      with the data range (so non-negative data gives ``(min, t)``, as an unsigned grid wants).

    The percentile comes from a ``bins``-bin ``StreamingHistogram`` (power-of-two lattice,
    exact re-binning as the range grows), read by linear interpolation inside the bin where the
    cumulative count reaches ``p / 100 * n``.

    Approximation and its bias: the estimate always lies in the bin that holds the
    ``ceil(p / 100 * n)``-th smallest value, so it is within one bin width ``w`` of that order
    statistic (and of ``np.percentile``'s linear estimate, up to the gap between neighbouring
    order statistics). ``w`` is between ``span / bins`` and ``2 * span / bins`` of the whole
    observed span, so one far outlier coarsens every bin. In a decreasing tail the values in a
    bin crowd its inner edge while the estimate assumes them uniform, so upper percentiles are
    biased *outward* (too large |value|), by less than ``w``.

    >>> obs = PercentileObserver(percentile=90.0)
    >>> _ = obs.observe(np.arange(11.0))           # 0, 1, ..., 10
    >>> [round(float(v), 2) for v in obs.calculate_range()]
    [1.0, 9.0]
    """

    def __init__(
        self,
        percentile: float = 99.99,
        symmetric: bool = False,
        bins: int = 2048,
        axis: int | None = None,
        engine: str = "numba",
    ) -> None:
        p = float(percentile)
        if not 50.0 < p <= 100.0:
            raise ValueError(f"percentile must be in (50, 100], got {percentile}")
        self.percentile = p
        self.symmetric = bool(symmetric)
        self.bins = bins
        self.engine = engine
        StreamingHistogram(bins, engine=engine)  # validate bins and engine now
        super().__init__(axis=axis)

    def reset(self) -> None:
        super().reset()
        self.hist = StreamingHistogram(self.bins, include_zero=self.symmetric, engine=self.engine)
        self.min_val: np.ndarray | None = None  # (C,) float64 signed data range
        self.max_val: np.ndarray | None = None

    def _observe(self, xc: np.ndarray) -> None:
        if not self.symmetric:  # the histogram tracks the exact signed range itself
            self.hist.add(xc)  # (C, N)
            self.min_val, self.max_val = self.hist.min_val, self.hist.max_val
            return
        lo = xc.min(axis=1).astype(np.float64)  # (C, N) -> (C,)
        hi = xc.max(axis=1).astype(np.float64)
        if self.min_val is None:
            self.min_val, self.max_val = lo, hi
        else:
            self.min_val = np.minimum(self.min_val, lo)
            self.max_val = np.maximum(self.max_val, hi)
        self.hist.add(np.abs(xc))  # (C, N) histogram of |x|

    def _calculate_range(self) -> tuple[np.ndarray, np.ndarray]:
        q = self.percentile / 100.0
        if self.symmetric:
            t = self.hist.quantile(q)  # (C,) percentile of |x|
            mn, mx = self.min_val, self.max_val
            t = np.maximum(t, np.where(mn > 0, mn, np.where(mx < 0, -mx, 0.0)))  # >= min|x|
            return np.maximum(-t, mn), np.minimum(t, mx)
        return self.hist.quantile(1.0 - q), self.hist.quantile(q)
