"""The two formulas of the seed document (section 4), exactly as written.

Linear (seed 4.1)::

    Q(x) = round( (x - x_min) / (x_max - x_min) * (2^b - 1) ),  clipped to [0, 2^b - 1]
    x_hat = x_min + Q * (x_max - x_min) / (2^b - 1)

Log (seed 4.2), positive data only::

    Q(x) = round( (log x - log x_min) / (log x_max - log x_min) * (2^b - 1) ),  clipped
    x_hat = exp( log x_min + Q / (2^b - 1) * (log x_max - log x_min) )

Everything is computed in float64 so results can be checked by hand to the last bit; codes are
returned in the smallest unsigned dtype holding ``2^b - 1`` (uint8 up to 8 bits, uint16 up to 16).

A constant tensor (``x_max == x_min``) is not an error: every code is 0 and dequantization
returns ``x_min`` exactly (no division by zero happens: the quotient is never formed).

How the seed's linear form relates to the PyTorch scale/zero-point form
----------------------------------------------------------------------
With ``s = (x_max - x_min) / (2^b - 1)`` the seed form is ``Q(x) = round(x / s + z_real)`` with a
*real* zero point ``z_real = -x_min / s``. PyTorch rounds the zero point to an integer first,
``z = round(z_real)``, and uses ``Q(x) = round(x / s) + z``. Consequences (``minmax_zero_error``):

- seed form: ``x = 0`` dequantizes to ``s * (round(z_real) - z_real)``, an error of up to ``s / 2``
  (zero is generally not representable, which matters for zero padding and ReLU outputs);
- PyTorch form: ``x = 0`` dequantizes to exactly 0; instead the whole grid is shifted by
  ``(z - z_real) * s`` (also at most ``s / 2``), so ``x_min`` and ``x_max`` are the ones that become
  inexact. For the same ``(x_min, x_max, b)`` the two forms' codes differ by at most 1.
"""

from __future__ import annotations

import numpy as np

from .base import as_code_array, as_float_array, check_bits
from .rounding import check_rounding, round_values


def seed_code_dtype(bits: int) -> np.dtype:
    """Smallest unsigned dtype holding ``2**bits - 1``: uint8 for bits <= 8, else uint16.

    >>> seed_code_dtype(4), seed_code_dtype(9)
    (dtype('uint8'), dtype('uint16'))
    """
    return np.dtype(np.uint8) if check_bits(bits, 1, 16) <= 8 else np.dtype(np.uint16)


def _check_seed_range(x_min: object, x_max: object) -> tuple[np.ndarray, np.ndarray]:
    lo = as_float_array(x_min, "x_min").astype(np.float64)
    hi = as_float_array(x_max, "x_max").astype(np.float64)
    if np.any(hi < lo):
        raise ValueError(f"x_max < x_min: got x_min={lo.tolist()}, x_max={hi.tolist()}")
    return lo, hi


def minmax_quantize(
    x: np.ndarray, x_min: float, x_max: float, bits: int, rounding: str = "half_even"
) -> np.ndarray:
    """Seed formula 4.1: ``Q(x) = round((x - x_min) / (x_max - x_min) * (2^b - 1))``, clipped.

    Source: seed document section 4 (linear quantization). Codes are unsigned, in
    ``[0, 2^b - 1]``, dtype uint8 (bits <= 8) or uint16. If ``x_max == x_min`` all codes are 0.

    Worked example, b = 2 (levels 0..3), range [-1, 2]: (x + 1) / 3 * 3 = x + 1.

    >>> minmax_quantize(np.array([-1.0, 0.0, 0.4, 0.6, 2.0, 5.0]), -1.0, 2.0, 2)
    array([0, 1, 1, 2, 3, 3], dtype=uint8)
    """
    b = check_bits(bits, 1, 16)
    check_rounding(rounding)
    if rounding == "stochastic":
        raise ValueError("the seed formula takes a deterministic rounding mode")
    x = as_float_array(x).astype(np.float64)
    lo, hi = _check_seed_range(x_min, x_max)
    levels = 2**b - 1
    width = hi - lo
    safe = np.where(width > 0, width, 1.0)  # constant tensor: never divide by zero
    v = np.where(width > 0, (x - lo) / safe * levels, 0.0)
    q = np.clip(round_values(v, rounding), 0, levels)
    return q.astype(seed_code_dtype(b))


def minmax_dequantize(q: np.ndarray, x_min: float, x_max: float, bits: int) -> np.ndarray:
    """Inverse of seed 4.1: ``x_hat = x_min + q * (x_max - x_min) / (2^b - 1)`` (float64).

    >>> minmax_dequantize(np.array([0, 1, 3], dtype=np.uint8), -1.0, 2.0, 2).tolist()
    [-1.0, 0.0, 2.0]
    """
    b = check_bits(bits, 1, 16)
    q = as_code_array(q)
    levels = 2**b - 1
    if q.size and (q.min() < 0 or q.max() > levels):
        raise ValueError(f"codes must lie in [0, {levels}] for bits={b}")
    lo, hi = _check_seed_range(x_min, x_max)
    return lo + q.astype(np.float64) * (hi - lo) / levels


def minmax_zero_error(x_min: float, x_max: float, bits: int) -> tuple[float, float]:
    """Error of the seed form at ``x = 0``, and its bound ``s / 2``: ``(x_hat(0) - 0, s / 2)``.

    ``x_hat(0) = x_min + round(-x_min / s) * s = s * (round(z_real) - z_real)`` with
    ``s = (x_max - x_min) / (2^b - 1)`` and ``z_real = -x_min / s``. The PyTorch affine form has
    error exactly 0 here (its zero point is an integer). Needs ``x_min <= 0 <= x_max``.

    Worked example: range [-1, 1.5], b = 2: s = 2.5 / 3, z_real = 1.2, round -> 1,
    x_hat(0) = -1 + 2.5 / 3 = -1/6; bound s / 2 = 5/12.

    >>> err, bound = minmax_zero_error(-1.0, 1.5, 2)
    >>> round(err, 6), round(bound, 6)
    (-0.166667, 0.416667)
    """
    lo, hi = _check_seed_range(x_min, x_max)
    if not (lo <= 0 <= hi):
        raise ValueError(f"the range must contain zero, got [{float(lo)}, {float(hi)}]")
    b = check_bits(bits, 1, 16)
    x_hat = minmax_dequantize(minmax_quantize(np.zeros(()), lo, hi, b), lo, hi, b)
    return float(x_hat), float((hi - lo) / (2**b - 1) / 2)


def log_quantize(
    x: np.ndarray, x_min: float, x_max: float, bits: int, rounding: str = "half_even"
) -> np.ndarray:
    """Seed formula 4.2: ``Q(x) = round((log x - log x_min) / (log x_max - log x_min) * (2^b-1))``.

    Source: seed document section 4 (logarithmic quantization). Positive data only; ``x_min`` must
    be positive. Codes are clipped to ``[0, 2^b - 1]`` (unsigned, uint8/uint16). If
    ``x_max == x_min`` every code is 0. For signed data see ``LogQuantizer``.

    Worked example, b = 2, range [1, 8]: log x / log 8 * 3 = log2 x, so Q = round(log2 x):
    1.5 -> 0.585 -> 1, 3 -> 1.585 -> 2, 0.5 -> -1 -> clipped 0, 100 -> clipped 3.

    >>> log_quantize(np.array([1.0, 1.5, 3.0, 8.0, 0.5, 100.0]), 1.0, 8.0, 2)
    array([0, 1, 2, 3, 0, 3], dtype=uint8)
    """
    b = check_bits(bits, 1, 16)
    check_rounding(rounding)
    if rounding == "stochastic":
        raise ValueError("the seed formula takes a deterministic rounding mode")
    x = as_float_array(x).astype(np.float64)
    lo, hi = _check_seed_range(x_min, x_max)
    if np.any(lo <= 0):
        raise ValueError(f"log formula needs a positive x_min, got {lo.tolist()}")
    if np.any(x <= 0):
        raise ValueError("log formula needs positive data: x contains values <= 0")
    levels = 2**b - 1
    width = np.log(hi) - np.log(lo)
    safe = np.where(width > 0, width, 1.0)  # constant tensor: never divide by zero
    v = np.where(width > 0, (np.log(x) - np.log(lo)) / safe * levels, 0.0)
    q = np.clip(round_values(v, rounding), 0, levels)
    return q.astype(seed_code_dtype(b))


def log_dequantize(q: np.ndarray, x_min: float, x_max: float, bits: int) -> np.ndarray:
    """Inverse of seed 4.2: ``x_hat = exp(log x_min + q / (2^b - 1) * (log x_max - log x_min))``.

    Equivalently ``x_min * (x_max / x_min) ** (q / (2^b - 1))``: a geometric grid.

    >>> log_dequantize(np.array([0, 1, 2, 3], dtype=np.uint8), 1.0, 8.0, 2).round(12).tolist()
    [1.0, 2.0, 4.0, 8.0]
    """
    b = check_bits(bits, 1, 16)
    q = as_code_array(q)
    levels = 2**b - 1
    if q.size and (q.min() < 0 or q.max() > levels):
        raise ValueError(f"codes must lie in [0, {levels}] for bits={b}")
    lo, hi = _check_seed_range(x_min, x_max)
    if np.any(lo <= 0):
        raise ValueError(f"log formula needs a positive x_min, got {lo.tolist()}")
    return np.exp(np.log(lo) + q.astype(np.float64) / levels * (np.log(hi) - np.log(lo)))
