"""refq.calibration: observers that collect statistics and report a range (no model knowledge).

Every observer: ``observe(x) -> x`` (also ``obs(x)``), ``calculate_range() -> (lo, hi)`` as
float32 arrays of shape ``()`` per tensor or ``(C,)`` per channel (``axis=``), ``reset()``.
No data is kept; NaN/Inf batches and ``calculate_range`` before any data raise ValueError.

==========================  ==========================================================  =========
observer                    rule                                                        source
==========================  ==========================================================  =========
MinMaxObserver              running min and max (exact over batches)                    seed s.3
MovingAverageMinMaxObserver EMA of batch min/max, c = 0.01                              PyTorch
PercentileObserver          p-th percentile (two-sided, or of |x|) from a histogram     TensorRT
HistogramObserver           range of least expected squared error (exhaustive search)   PyTorch
EntropyObserver             (-t, t) minimising KL(P || Q) on the |x| histogram          TensorRT
==========================  ==========================================================  =========

The histogram observers share ``binning.StreamingHistogram``: bins on a power-of-two lattice
that re-bin exactly as the range grows (the counts do not depend on batching). The Numba loops
are in ``numba_hist``; the MSE error model in ``mse_model``. Searching observers take the target
grid from ``quantizer=`` (any object with ``set_range`` and ``fake_quant``: linear, log, or
user-defined); without it they use a built-in 8-bit linear grid.
"""

from refq.calibration.base import Observer
from refq.calibration.entropy import EntropyObserver
from refq.calibration.histogram import HistogramObserver
from refq.calibration.minmax import MinMaxObserver, MovingAverageMinMaxObserver
from refq.calibration.percentile import PercentileObserver

__all__ = [
    "Observer",
    "MinMaxObserver",
    "MovingAverageMinMaxObserver",
    "PercentileObserver",
    "HistogramObserver",
    "EntropyObserver",
]
