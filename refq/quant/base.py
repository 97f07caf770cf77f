"""The quantizer interface and the input checks every quantizer shares.

A quantizer is anything with three methods (the contract of ``refq.quant``)::

    quantize(x)    -> integer codes
    dequantize(q)  -> float32 values
    fake_quant(x)  -> float32 values, = dequantize(quantize(x))

Calibratable quantizers add ``set_range(min_val, max_val) -> self`` (the *signed* data range an
observer reports) and ``fit(x) -> self``. Nothing here knows about models or observers.

The helpers below (bit checks, finite checks, axis normalisation, broadcasting per-channel and
per-group parameters, min/max reduction at a granularity) are the small shared pieces; each
quantizer file stays about its own formula.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np
from numpy.typing import ArrayLike

MIN_BITS = 2
MAX_BITS = 16
FLOAT32_TINY = float(np.finfo(np.float32).tiny)  # smallest normal float32: floor before a log


@runtime_checkable
class Quantizer(Protocol):
    """Structural type of a quantizer: any object with these three methods is one.

    >>> class Halves:
    ...     def quantize(self, x): return np.round(np.asarray(x) * 2).astype(np.int8)
    ...     def dequantize(self, q): return (np.asarray(q) / 2).astype(np.float32)
    ...     def fake_quant(self, x): return self.dequantize(self.quantize(x))
    >>> isinstance(Halves(), Quantizer)
    True
    >>> Halves().fake_quant([0.3, 0.8]).tolist()
    [0.5, 1.0]
    """

    def quantize(self, x: np.ndarray) -> np.ndarray: ...

    def dequantize(self, q: np.ndarray) -> np.ndarray: ...

    def fake_quant(self, x: np.ndarray) -> np.ndarray: ...


@runtime_checkable
class CalibratableQuantizer(Quantizer, Protocol):
    """A quantizer whose range can be set from an observer: ``set_range`` and ``fit``."""

    bits: int
    quant_min: int
    quant_max: int
    axis: int | None

    def set_range(self, min_val: ArrayLike, max_val: ArrayLike) -> CalibratableQuantizer: ...

    def fit(self, x: np.ndarray) -> CalibratableQuantizer: ...


def check_bits(bits: object, lo: int = MIN_BITS, hi: int = MAX_BITS) -> int:
    """Return ``bits`` as an int if it is an integer in ``[lo, hi]``, else raise.

    >>> check_bits(8)
    8
    >>> check_bits(1)
    Traceback (most recent call last):
    ...
    ValueError: bits must be an integer in [2, 16], got 1
    """
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)):
        raise TypeError(f"bits must be an int, got {type(bits).__name__}")
    if not lo <= int(bits) <= hi:
        raise ValueError(f"bits must be an integer in [{lo}, {hi}], got {bits}")
    return int(bits)


def as_float_array(x: object, name: str = "x") -> np.ndarray:
    """``x`` as a floating array (float32 stays float32, float64 stays float64, ints -> float64).

    Raises TypeError for non-numeric data and ValueError for NaN or infinite values.

    >>> as_float_array([1, 2]).dtype
    dtype('float64')
    >>> as_float_array(np.array([np.nan], np.float32))
    Traceback (most recent call last):
    ...
    ValueError: x contains NaN or infinite values
    """
    a = np.asarray(x)
    if a.dtype == object or not (
        np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)
    ):
        raise TypeError(f"{name} must be a real numeric array, got dtype {a.dtype}")
    if np.issubdtype(a.dtype, np.integer):
        a = a.astype(np.float64)
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return a


def as_code_array(q: object, name: str = "q") -> np.ndarray:
    """``q`` as an integer array (codes must be integers: floats raise TypeError).

    >>> as_code_array([1, -2]).tolist()
    [1, -2]
    >>> as_code_array([0.5])
    Traceback (most recent call last):
    ...
    TypeError: q must be an integer array of codes, got dtype float64
    """
    a = np.asarray(q)
    if not np.issubdtype(a.dtype, np.integer):
        raise TypeError(f"{name} must be an integer array of codes, got dtype {a.dtype}")
    return a


def check_range(min_val: ArrayLike, max_val: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Validate a (min_val, max_val) pair: finite, same shape, ``max_val >= min_val``.

    Returns both as float32 arrays. ``max_val == min_val`` (a constant tensor) is allowed.

    >>> check_range(-1.0, 2.0)
    (array(-1., dtype=float32), array(2., dtype=float32))
    >>> check_range(1.0, 0.0)
    Traceback (most recent call last):
    ...
    ValueError: x_max < x_min: max_val must be >= min_val (got min 1.0, max 0.0)
    """
    lo = np.asarray(as_float_array(min_val, "min_val"), dtype=np.float32)
    hi = np.asarray(as_float_array(max_val, "max_val"), dtype=np.float32)
    if lo.shape != hi.shape:
        raise ValueError(f"min_val shape {lo.shape} and max_val shape {hi.shape} differ")
    if np.any(hi < lo):
        i = int(np.argmax(hi < lo))
        raise ValueError(
            "x_max < x_min: max_val must be >= min_val "
            f"(got min {float(lo.flat[i])!r}, max {float(hi.flat[i])!r})"
        )
    return lo, hi


def check_axis(axis: object) -> int | None:
    """A quantizer's ``axis`` argument: None (per tensor) or an int (per channel / group).

    >>> check_axis(0), check_axis(None)
    (0, None)
    >>> check_axis(True)
    Traceback (most recent call last):
    ...
    TypeError: axis must be an int or None, got bool
    """
    if axis is None:
        return None
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
        raise TypeError(f"axis must be an int or None, got {type(axis).__name__}")
    return int(axis)


def check_range_shape(lo: np.ndarray, axis: int | None, grouped: bool = False) -> None:
    """``set_range`` arguments must match the granularity: ``()`` per tensor, ``(C,)`` per channel
    (groups have their own shape, checked when the parameters are broadcast).

    >>> check_range_shape(np.zeros(3), None)
    Traceback (most recent call last):
    ...
    ValueError: per-tensor quantizer needs scalar min/max, got shape (3,)
    """
    if axis is None and lo.shape != ():
        raise ValueError(f"per-tensor quantizer needs scalar min/max, got shape {lo.shape}")
    if axis is not None and not grouped and lo.ndim != 1:
        raise ValueError(f"per-channel quantizer needs min/max of shape (C,), got {lo.shape}")


def normalize_axis(axis: int, ndim: int) -> int:
    """Return ``axis`` in ``[0, ndim)`` (negative axes count from the end), else ValueError.

    >>> normalize_axis(-1, 3)
    2
    >>> normalize_axis(3, 2)
    Traceback (most recent call last):
    ...
    ValueError: axis 3 does not exist for an array with 2 dimensions
    """
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
        raise TypeError(f"axis must be an int or None, got {type(axis).__name__}")
    if not -ndim <= axis < ndim:
        raise ValueError(f"axis {axis} does not exist for an array with {ndim} dimensions")
    return int(axis) % ndim


def check_group(shape: tuple[int, ...], axis: int, group_size: int) -> int:
    """Number of groups when ``shape[axis]`` is split into groups of ``group_size``.

    >>> check_group((4, 6), 1, 3)
    2
    >>> check_group((4, 6), 1, 4)
    Traceback (most recent call last):
    ...
    ValueError: group_size 4 does not divide axis 1 of length 6
    """
    n = shape[axis]
    if n % group_size:
        raise ValueError(f"group_size {group_size} does not divide axis {axis} of length {n}")
    return n // group_size


def expand_param(p: np.ndarray, shape: tuple[int, ...], axis: int | None, group_size: int | None):
    """Broadcast a quantization parameter to an array of ``shape``.

    - per tensor (``axis`` None): ``p`` has shape ``()``.
    - per channel: ``p`` has shape ``(C,)`` with ``C = shape[axis]``; it is reshaped to
      ``(1, .., C, .., 1)``.
    - per group: ``p`` has ``shape`` with ``shape[axis]`` replaced by ``G = shape[axis] //
      group_size``; element ``i`` along ``axis`` uses entry ``i // group_size``.

    >>> expand_param(np.array([1.0, 2.0]), (2, 3), 0, None).shape
    (2, 1)
    >>> expand_param(np.array([[1.0, 2.0]]), (1, 4), 1, 2).tolist()
    [[1.0, 1.0, 2.0, 2.0]]
    """
    p = np.asarray(p)
    if axis is None:
        if p.shape != ():
            raise ValueError(f"per-tensor parameter must be a scalar, got shape {p.shape}")
        return p
    ax = normalize_axis(axis, len(shape))
    if group_size is None:
        if p.shape != (shape[ax],):
            raise ValueError(
                f"per-channel parameter shape {p.shape} does not match axis {axis} "
                f"of length {shape[ax]}"
            )
        bshape = [1] * len(shape)
        bshape[ax] = shape[ax]
        return p.reshape(bshape)  # (C,) -> (1, .., C, .., 1)
    g = check_group(shape, ax, group_size)
    gshape = shape[:ax] + (g,) + shape[ax + 1 :]
    if p.shape != gshape:
        raise ValueError(f"per-group parameter shape {p.shape} does not match {gshape}")
    return np.repeat(p, group_size, axis=ax)  # (.., G, ..) -> (.., G * group_size, ..)


def reduce_minmax(
    x: np.ndarray, axis: int | None, group_size: int | None
) -> tuple[np.ndarray, np.ndarray]:
    """Min and max of ``x`` at a granularity: the shapes ``expand_param`` expects.

    >>> lo, hi = reduce_minmax(np.array([[1.0, -2.0, 3.0, 4.0]]), 1, 2)
    >>> lo.tolist(), hi.tolist()
    ([[-2.0, 3.0]], [[1.0, 4.0]])
    """
    if x.size == 0:
        raise ValueError("cannot take the range of an empty array")
    if axis is None:
        return x.min(), x.max()
    ax = normalize_axis(axis, x.ndim)
    if group_size is None:
        others = tuple(i for i in range(x.ndim) if i != ax)
        return x.min(axis=others), x.max(axis=others)  # (.., C, ..) -> (C,)
    g = check_group(x.shape, ax, group_size)
    xg = x.reshape(x.shape[:ax] + (g, group_size) + x.shape[ax + 1 :])  # (.., G, gs, ..)
    return xg.min(axis=ax + 1), xg.max(axis=ax + 1)  # (.., G, gs, ..) -> (.., G, ..)


def code_dtype(quant_min: int, quant_max: int) -> np.dtype:
    """Smallest integer dtype holding ``[quant_min, quant_max]`` (int8/uint8/int16/uint16/int32).

    >>> code_dtype(-128, 127), code_dtype(0, 255), code_dtype(0, 65535)
    (dtype('int8'), dtype('uint8'), dtype('uint16'))
    """
    for dt in (np.uint8, np.int8, np.uint16, np.int16, np.int32):
        info = np.iinfo(dt)
        if info.min <= quant_min and quant_max <= info.max:
            if quant_min < 0 and info.min == 0:
                continue
            return np.dtype(dt)
    raise ValueError(f"no integer dtype holds [{quant_min}, {quant_max}]")
