"""The observer interface: collect statistics batch by batch, report a range, never keep data.

An observer answers one question for PTQ (seed document section 3, "PTQ: run a little
calibration data through the model and collect statistics, then choose range and scale"):
*which signed range ``(min_val, max_val)`` should this tensor be quantized to?*

    obs.observe(x) -> x                 accumulate statistics of one batch (returns x unchanged)
    obs(x)         -> x                 the same (so an observer can sit in a forward pass)
    obs.calculate_range() -> (lo, hi)   float32 arrays, shape () per tensor, (C,) per channel
    obs.reset()                         forget everything seen

This is the split of PyTorch's ``torch/ao/quantization/observer.py``: an observer only collects
statistics, a quantizer only maps values; the range is the seam between them (a quantizer's
``set_range(lo, hi)`` turns it into scale and zero point). Observers know nothing of layers.

Per channel (``axis=k``): one statistic per index along axis ``k`` of every batch, reduced over
all other axes; the batch is viewed as ``(C, N)`` with ``C = x.shape[k]``.
"""

from __future__ import annotations

import numpy as np

F32_MAX = float(np.finfo(np.float32).max)


def as_data(x: object) -> np.ndarray:
    """``x`` as a float32 or float64 array (integers become float64), checked for bad values.

    Raises TypeError for non-real data (bool, complex, object, strings) and ValueError for an
    empty array or NaN/Inf values.

    >>> as_data([1, 2]).dtype
    dtype('float64')
    >>> as_data(np.array([0.5, np.inf], np.float32))
    Traceback (most recent call last):
    ...
    ValueError: observed data contains NaN or infinite values (1 of 2 elements)
    """
    a = np.asarray(x)
    if a.dtype == bool or not (
        np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)
    ):
        raise TypeError(f"observers take real numeric arrays, got dtype {a.dtype}")
    if a.size == 0:
        raise ValueError("observed data is empty (size 0): nothing to calibrate on")
    if np.issubdtype(a.dtype, np.integer) or a.dtype == np.float16:
        a = a.astype(np.float64)
    elif a.dtype not in (np.float32, np.float64):
        a = a.astype(np.float64)  # longdouble and friends
    lo, hi = a.min(), a.max()  # NaN propagates into both
    if not (np.isfinite(lo) and np.isfinite(hi)):
        bad = int(np.count_nonzero(~np.isfinite(a)))
        raise ValueError(
            f"observed data contains NaN or infinite values ({bad} of {a.size} elements)"
        )
    if max(-float(lo), float(hi)) > F32_MAX:
        raise ValueError(
            f"observed data exceeds the float32 range (|x| up to {max(-lo, hi):.3g} > "
            f"{F32_MAX:.3g}): observers report float32 ranges"
        )
    return a


def channels_first(a: np.ndarray, axis: int | None) -> np.ndarray:
    """View a batch as ``(C, N)``: channels along ``axis`` first, everything else flattened.

    Per tensor (``axis=None``) the result is ``(1, size)``.

    >>> channels_first(np.arange(6.0).reshape(2, 3), 1).tolist()
    [[0.0, 3.0], [1.0, 4.0], [2.0, 5.0]]
    """
    if axis is None:
        return a.reshape(1, -1)  # (...) -> (1, N)
    if a.ndim == 0:
        raise ValueError(f"per-channel observer (axis={axis}) got a 0-d array")
    if not -a.ndim <= axis < a.ndim:
        raise ValueError(f"axis {axis} does not exist for an array with {a.ndim} dimensions")
    c = a.shape[axis]
    return np.moveaxis(a, axis, 0).reshape(c, -1)  # (.., C, ..) -> (C, N)


def to_float32_outward(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Round a float64 range to float32 *outward*, so the float32 range still contains it.

    >>> lo, hi = to_float32_outward(np.array(0.1), np.array(0.1))
    >>> bool(lo <= 0.1 <= hi), lo.dtype.name
    (True, 'float32')
    """
    lo = np.asarray(lo, dtype=np.float64)
    hi = np.asarray(hi, dtype=np.float64)
    lo32 = lo.astype(np.float32)
    hi32 = hi.astype(np.float32)
    lo32 = np.where(lo32 > lo, np.nextafter(lo32, np.float32(-np.inf)), lo32).astype(np.float32)
    hi32 = np.where(hi32 < hi, np.nextafter(hi32, np.float32(np.inf)), hi32).astype(np.float32)
    return lo32, hi32


class Observer:
    """Base class: input checks, per-channel layout, the no-data error, ``reset``.

    Subclasses implement ``_observe(xc)`` with ``xc`` a checked ``(C, N)`` float array and
    ``_calculate_range() -> (lo, hi)`` as float64 arrays of shape ``(C,)``; the base class
    squeezes them to ``()`` per tensor and converts them to float32.

    >>> class Last(Observer):  # the smallest possible observer: the last batch's range
    ...     def _observe(self, xc): self.lo, self.hi = xc.min(1), xc.max(1)
    ...     def _calculate_range(self): return self.lo, self.hi
    >>> obs = Last()
    >>> _ = obs.observe([3.0, -1.0]); obs.calculate_range()
    (array(-1., dtype=float32), array(3., dtype=float32))
    """

    def __init__(self, axis: int | None = None) -> None:
        if axis is not None and (isinstance(axis, bool) or not isinstance(axis, (int, np.integer))):
            raise TypeError(f"axis must be an int or None, got {type(axis).__name__}")
        self.axis = None if axis is None else int(axis)
        self.reset()

    def reset(self) -> None:
        """Forget every batch seen so far."""
        self.num_batches = 0
        self.num_channels: int | None = None

    def observe(self, x: np.ndarray) -> np.ndarray:
        """Accumulate the statistics of one batch; return ``x`` unchanged."""
        a = as_data(x)
        xc = channels_first(a, self.axis)  # (C, N)
        if self.num_channels is None:
            self.num_channels = xc.shape[0]
        elif xc.shape[0] != self.num_channels:
            raise ValueError(
                f"per-channel observer saw {self.num_channels} channels along axis {self.axis} "
                f"before, now {xc.shape[0]}"
            )
        self._observe(xc)
        self.num_batches += 1
        return x

    __call__ = observe

    def calculate_range(self) -> tuple[np.ndarray, np.ndarray]:
        """The range to quantize to: float32, shape ``()`` per tensor, ``(C,)`` per channel."""
        if self.num_batches == 0:
            raise ValueError(
                f"{type(self).__name__}.calculate_range: no data observed yet "
                "(run calibration batches through observe() first)"
            )
        lo, hi = self._calculate_range()
        lo, hi = to_float32_outward(lo, hi)
        if self.axis is None:
            return lo.reshape(()), hi.reshape(())  # (1,) -> ()
        return lo, hi

    def _observe(self, xc: np.ndarray) -> None:  # pragma: no cover - abstract
        raise NotImplementedError(f"abstract: {type(self).__name__} must define _observe")

    def _calculate_range(self) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover - abstract
        raise NotImplementedError(f"abstract: {type(self).__name__} must define _calculate_range")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(axis={self.axis}, batches={self.num_batches})"
