"""Affine (scale + zero point) quantization, functional form: the PyTorch / gemmlowp convention.

Equations (gemmlowp ``doc/quantization.md``; Jacob et al. 2018, arXiv:1712.05877; PyTorch
``torch.quantize_per_tensor``)::

    (A1) q     = clamp( round(x / scale) + zero_point, quant_min, quant_max )
    (A2) x_hat = (q - zero_point) * scale
    (A3) fake_quant(x) = x_hat(q(x))

Parameters from a range (PyTorch ``torch/ao/quantization/observer.py``, ``_calculate_qparams``;
computed in float32 like PyTorch)::

    (P1) min' = min(min_val, 0),  max' = max(max_val, 0)            # zero is always in range
    (P2) affine:    scale = (max' - min') / (quant_max - quant_min)
                    zero_point = clamp(quant_min - round(min' / scale), quant_min, quant_max)
    (P3) symmetric: scale = max(-min', max') / ((quant_max - quant_min) / 2)
                    zero_point = 0 for signed codes, (quant_min + quant_max + 1) // 2 for
                    unsigned ones (128 for 8 bits)
    (P4) scale = max(scale, float32 eps)                              # never divide by zero

Because ``zero_point`` is an integer, ``x = 0`` maps to the code ``zero_point`` and back to
exactly ``0.0`` (zero padding and ReLU zeros are exact). refq divides by ``scale`` (as written in
A1); PyTorch's kernels multiply by ``1 / scale``, which can differ by one code at exact ties.

Granularity (``axis``, ``group_size``): ``scale``/``zero_point`` have shape ``()`` per tensor,
``(C,)`` per channel along ``axis``, or ``x.shape`` with ``x.shape[axis]`` replaced by
``x.shape[axis] // group_size`` per group (see ``base.expand_param``).
"""

from __future__ import annotations

import numpy as np

from .base import as_code_array, as_float_array, check_range, code_dtype, expand_param
from .rounding import check_rounding, round_values

FLOAT32_EPS = np.float32(np.finfo(np.float32).eps)


def quant_range(bits: int, signed: bool, narrow_range: bool = False) -> tuple[int, int]:
    """Integer code range ``(quant_min, quant_max)`` for ``bits``.

    signed: ``[-2^(b-1), 2^(b-1) - 1]``; unsigned: ``[0, 2^b - 1]``. ``narrow_range`` drops the
    lowest code: ``[-2^(b-1) + 1, 2^(b-1) - 1]`` (symmetric int8 [-127, 127]) or ``[1, 2^b - 1]``
    (TensorFlow's unsigned narrow range).

    >>> quant_range(8, True), quant_range(8, False), quant_range(8, True, True), quant_range(4, 1)
    ((-128, 127), (0, 255), (-127, 127), (-8, 7))
    """
    from .base import check_bits

    b = check_bits(bits)
    lo, hi = (-(2 ** (b - 1)), 2 ** (b - 1) - 1) if signed else (0, 2**b - 1)
    return (lo + 1 if narrow_range else lo), hi


def _check_qrange(quant_min: int, quant_max: int) -> None:
    if not (isinstance(quant_min, (int, np.integer)) and isinstance(quant_max, (int, np.integer))):
        raise TypeError("quant_min and quant_max must be integers")
    if quant_min >= quant_max:
        raise ValueError(f"quant_min ({quant_min}) must be < quant_max ({quant_max})")


def _check_params(scale, zero_point, quant_min=None, quant_max=None):
    s = np.asarray(scale, dtype=np.float32)
    if not np.all(np.isfinite(s)) or np.any(s <= 0):
        raise ValueError("scale must be finite and > 0")
    z = np.asarray(zero_point)
    if not np.issubdtype(z.dtype, np.integer):
        raise TypeError(f"zero_point must be an integer array, got dtype {z.dtype}")
    if quant_min is not None and z.size and (z.min() < quant_min or z.max() > quant_max):
        raise ValueError(
            f"zero_point must lie in [quant_min, quant_max] = [{quant_min}, {quant_max}]"
        )
    return s, z.astype(np.int32)


def calculate_qparams(
    min_val: float | np.ndarray,
    max_val: float | np.ndarray,
    quant_min: int,
    quant_max: int,
    symmetric: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Scale (float32) and zero point (int32) from a signed data range, PyTorch's rules P1-P4.

    Works elementwise: scalars per tensor, arrays per channel or per group.

    Worked examples: range [-1, 3] on quint8 [0, 255]: scale = 4 / 255 = 0.015686275,
    zero_point = 0 - round(-1 / scale) = round(63.75) = 64. Range [0.5, 2] on qint8, symmetric:
    min' = 0, scale = 2 / 127.5 = 0.015686275, zero_point 0.

    >>> s, z = calculate_qparams(-1.0, 3.0, 0, 255)
    >>> float(s), int(z)
    (0.01568627543747425, 64)
    >>> s, z = calculate_qparams(0.5, 2.0, -128, 127, symmetric=True)
    >>> float(s), int(z)
    (0.01568627543747425, 0)
    >>> int(calculate_qparams(-1.0, 1.0, 0, 255, symmetric=True)[1])
    128
    """
    _check_qrange(quant_min, quant_max)
    lo, hi = check_range(min_val, max_val)  # float32
    min_neg = np.minimum(lo, np.float32(0))  # P1
    max_pos = np.maximum(hi, np.float32(0))
    if symmetric:  # P3
        amax = np.maximum(-min_neg, max_pos)
        scale = amax / np.float32((quant_max - quant_min) / 2)
        scale = np.maximum(scale, FLOAT32_EPS)  # P4
        z0 = 0 if quant_min < 0 else (quant_min + quant_max + 1) // 2
        zero_point = np.full(scale.shape, z0, dtype=np.int32)
    else:  # P2
        scale = (max_pos - min_neg) / np.float32(quant_max - quant_min)
        scale = np.maximum(scale, FLOAT32_EPS)  # P4
        zp = np.float32(quant_min) - np.rint(min_neg / scale)
        zero_point = np.clip(zp, quant_min, quant_max).astype(np.int32)
    return scale.astype(np.float32), zero_point


def quantize_affine(
    x: np.ndarray,
    scale: np.ndarray,
    zero_point: np.ndarray,
    quant_min: int,
    quant_max: int,
    axis: int | None = None,
    rounding: str = "half_even",
    rng: np.random.Generator | None = None,
    group_size: int | None = None,
) -> np.ndarray:
    """(A1) ``q = clamp(round(x / scale) + zero_point, quant_min, quant_max)``.

    Codes come back in the smallest integer dtype holding ``[quant_min, quant_max]`` (int8 for
    qint8, uint8 for quint8, int16/uint16 up to 16 bits). ``x / scale`` is computed in x's float
    dtype (float32 data stays float32). ``rng`` is needed for ``rounding="stochastic"``.

    Worked example: scale 0.5, zero point 10 on [0, 255]: 1.2 / 0.5 = 2.4 -> 2 -> 12;
    -0.25 / 0.5 = -0.5 -> -0 (half to even) -> 10; 200 -> 410 -> clamped 255.

    >>> quantize_affine(np.array([1.2, -0.25, 0.0, 200.0]), np.float32(0.5), np.int32(10), 0, 255)
    array([ 12,  10,  10, 255], dtype=uint8)
    >>> quantize_affine(np.array([[1.0, 1.0], [1.0, 1.0]]), np.array([0.5, 0.25]),
    ...                 np.array([0, 0]), -8, 7, axis=1)
    array([[2, 4],
           [2, 4]], dtype=int8)
    """
    _check_qrange(quant_min, quant_max)
    check_rounding(rounding)
    x = as_float_array(x)
    s, z = _check_params(scale, zero_point, quant_min, quant_max)
    s = expand_param(s, x.shape, axis, group_size)  # broadcastable to x.shape
    z = expand_param(z, x.shape, axis, group_size)
    v = round_values(x / s.astype(x.dtype), rounding, rng) + z.astype(x.dtype)
    return np.clip(v, quant_min, quant_max).astype(code_dtype(quant_min, quant_max))


def dequantize_affine(
    q: np.ndarray,
    scale: np.ndarray,
    zero_point: np.ndarray,
    axis: int | None = None,
    group_size: int | None = None,
) -> np.ndarray:
    """(A2) ``x_hat = (q - zero_point) * scale`` as float32 (the subtraction is in int32).

    >>> dequantize_affine(np.array([12, 10, 255], dtype=np.uint8), np.float32(0.5), np.int32(10))
    array([  1. ,   0. , 122.5], dtype=float32)
    """
    q = as_code_array(q)
    s, z = _check_params(scale, zero_point)
    s = expand_param(s, q.shape, axis, group_size)
    z = expand_param(z, q.shape, axis, group_size)
    d = q.astype(np.int32) - z  # int32, exact
    return d.astype(np.float32) * s  # float32


def fake_quantize_affine(
    x: np.ndarray,
    scale: np.ndarray,
    zero_point: np.ndarray,
    quant_min: int,
    quant_max: int,
    axis: int | None = None,
    rounding: str = "half_even",
    rng: np.random.Generator | None = None,
    group_size: int | None = None,
) -> np.ndarray:
    """(A3) ``dequantize_affine(quantize_affine(x, ...))``: float in, float32 out, on the grid.

    >>> fake_quantize_affine(np.array([0.3, 0.26, -5.0]), np.float32(0.25), np.int32(0), -4, 3)
    array([ 0.25,  0.25, -1.  ], dtype=float32)
    """
    q = quantize_affine(x, scale, zero_point, quant_min, quant_max, axis, rounding, rng, group_size)
    return dequantize_affine(q, scale, zero_point, axis, group_size)
