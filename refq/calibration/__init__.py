"""refq.calibration: observers that collect statistics and report a range (no model knowledge).

Every observer: ``observe(x) -> x`` (also ``obs(x)``), ``calculate_range() -> (lo, hi)`` as
float32 arrays of shape ``()`` per tensor or ``(C,)`` per channel (``axis=``), ``reset()``.
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
