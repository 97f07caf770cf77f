"""NumPy specifications: what every kernel in ``refq.kernels`` must reproduce bit for bit.

Written for reading, not for speed: each function is the formula with no tricks, computed in
int64 (or float32 where the convention is float32) so that nothing can overflow silently.

Sources: gemmlowp ``doc/quantization.md`` and ``fixedpoint/fixedpoint.h``; Jacob et al. 2018,
"Quantization and Training of Neural Networks for Efficient Integer-Arithmetic-Only Inference",
arXiv:1712.05877 (equations 4-7); TFLite ``QuantizeMultiplier``; PyTorch fbgemm requantization.
"""

from __future__ import annotations

import math

import numpy as np

INT32_MIN = -(2**31)
INT32_MAX = 2**31 - 1


def matmul_spec(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Integer matmul in int64: ``C[m, n] = sum_k a[m, k] b[k, n]``, exact for any K.

    >>> matmul_spec(np.array([[1, 2]], np.int8), np.array([[3], [-4]], np.int8))
    array([[-5]])
    """
    return a.astype(np.int64) @ b.astype(np.int64)  # (..., M, K) @ (..., K, N) -> (..., M, N)


def linear_acc_spec(
    x_q: np.ndarray, x_zp: int, w_q: np.ndarray, w_zp: int | np.ndarray, bias: np.ndarray | None
) -> np.ndarray:
    """The zero-point-corrected accumulator of a quantized linear layer, from the definition.

        acc[m, n] = sum_k (x_q[m, k] - x_zp) (w_q[n, k] - w_zp[n]) + bias[n]       (int64)

    (Jacob et al. 2018, arXiv:1712.05877, eq. 4 with the bias of eq. 8). The real output is
    ``acc * s_x * s_w[n]``. Kernels compute it by the expansion of eq. 7 (row and column sums);
    this spec does not, so that the two are checked against each other.

    >>> linear_acc_spec(np.array([[3, 5]]), 1, np.array([[2, -1]]), 0, np.array([10]))
    array([[10]])
    """
    x = x_q.astype(np.int64) - np.int64(x_zp)  # (M, K)
    w = w_q.astype(np.int64) - np.asarray(w_zp, dtype=np.int64).reshape(-1, 1)  # (N, K)
    acc = x @ w.T  # (M, K) @ (K, N) -> (M, N) int64
    if bias is not None:
        acc = acc + bias.astype(np.int64)  # (M, N) + (N,)
    return acc


def quantize_multiplier_spec(m: float) -> tuple[int, int]:
    """``M = M0 * 2^-31 * 2^-shift``, ``M0`` in ``[2^30, 2^31)`` (TFLite ``QuantizeMultiplier``).

    ``M = q * 2^e`` with ``q`` in ``[0.5, 1)`` (``frexp``); ``M0 = round_half_away(q * 2^31)``;
    if rounding gives ``2^31``, halve it and raise ``e``; ``shift = -e``. ``M = 0`` gives
    ``(0, 0)``; a shift above 31 (M < 2^-32) gives ``(0, 0)`` as TFLite does.

    >>> quantize_multiplier_spec(0.5)          # 0.5 = 2^30 * 2^-31 * 2^0
    (1073741824, 0)
    >>> quantize_multiplier_spec(0.1)          # 0.1 = 0.8 * 2^-3
    (1717986918, 3)
    """
    if m == 0.0:
        return 0, 0
    q, e = math.frexp(m)
    m0 = int(math.floor(q * 2**31 + 0.5))  # q > 0: floor(x + 1/2) is round half away from zero
    if m0 == 2**31:
        m0 //= 2
        e += 1
    if -e > 31:
        return 0, 0
    return m0, -e


def srdhm_spec(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """gemmlowp ``SaturatingRoundingDoublingHighMul(a, b)`` on int32, elementwise.

        ab    = a * b                                   (exact, int64)
        nudge = 2^30 if ab >= 0 else 1 - 2^30
        out   = trunc((ab + nudge) / 2^31)              (C division: rounds toward zero)
        out   = 2^31 - 1 if a == b == -2^31             (the one overflowing case)

    i.e. ``round(a * b / 2^31)``: correct rounding, but ties go toward +infinity (1.5 -> 2,
    -1.5 -> -1: the negative nudge is one less than 2^30). Python's ``//`` floors, which is why
    the truncation toward zero is written out.

    >>> srdhm_spec(np.int32(2**30), np.int32(2**30)) # 2^60 / 2^31 = 2^29
    array(536870912, dtype=int32)
    >>> srdhm_spec(np.int32(-3), np.int32(2**30))    # -1.5 -> -1 (tie toward +inf)
    array(-1, dtype=int32)
    >>> srdhm_spec(np.int32(-2**31), np.int32(-2**31))
    array(2147483647, dtype=int32)
    """
    a64, b64 = np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64)
    ab = a64 * b64
    x = ab + np.where(ab >= 0, np.int64(1 << 30), np.int64(1 - (1 << 30)))
    d = np.int64(1 << 31)
    q = np.where(x >= 0, x // d, -((-x) // d))  # truncating division
    q = np.where((a64 == INT32_MIN) & (b64 == INT32_MIN), INT32_MAX, q)
    return q.astype(np.int32)


def rdbpot_spec(x: np.ndarray, exponent: int | np.ndarray) -> np.ndarray:
    """gemmlowp ``RoundingDivideByPOT(x, exponent)``: ``x / 2^exponent``, ties away from zero.

        mask      = 2^exponent - 1
        remainder = x & mask
        threshold = (mask >> 1) + (1 if x < 0 else 0)
        out       = (x >> exponent) + (1 if remainder > threshold else 0)

    ``>>`` is the arithmetic shift (floor division by 2^exponent). ``exponent`` in [0, 31].

    >>> rdbpot_spec(np.array([5, -5, 6, -6, 7, -7], np.int32), 2)   # /4: 1.25 -1.25 1.5 -1.5 ...
    array([ 1, -1,  2, -2,  2, -2], dtype=int32)
    """
    x64 = np.asarray(x, dtype=np.int64)
    e = np.asarray(exponent, dtype=np.int64)
    mask = (np.int64(1) << e) - 1
    remainder = x64 & mask
    threshold = (mask >> 1) + (x64 < 0)
    return ((x64 >> e) + (remainder > threshold)).astype(np.int32)


def requantize_fixed_point_spec(
    acc: np.ndarray, m0: int | np.ndarray, shift: int | np.ndarray, zp: int, qmin: int, qmax: int
) -> np.ndarray:
    """Integer-only requantization (TFLite ``MultiplyByQuantizedMultiplier``), in int64.

        x   = saturate_int32(acc * 2^max(-shift, 0))                 (left shift when M >= 1)
        y   = RoundingDivideByPOT(SaturatingRoundingDoublingHighMul(x, M0), max(shift, 0))
        out = clamp(y + zp, qmin, qmax)

    >>> requantize_fixed_point_spec(np.array([100, -100, 150]), 2**30, 1, 3, -128, 127)  # M=1/4
    array([ 28, -22,  41])
    """
    s = np.asarray(shift, dtype=np.int64)
    x = np.asarray(acc, dtype=np.int64) << np.maximum(-s, 0)
    x = np.clip(x, INT32_MIN, INT32_MAX)
    y = rdbpot_spec(srdhm_spec(x, np.asarray(m0, dtype=np.int64)), np.maximum(s, 0))
    return np.clip(y.astype(np.int64) + zp, qmin, qmax)


def requantize_float_spec(
    acc: np.ndarray, multiplier: float | np.ndarray, zp: int, qmin: int, qmax: int
) -> np.ndarray:
    """Float requantization as PyTorch's fbgemm does it, in float32.

        out = clamp(rint(float32(acc) * float32(multiplier)) + zp, qmin, qmax)

    ``rint`` rounds half to even (``lrintf`` / ``nearbyint``).

    >>> requantize_float_spec(np.array([2, 6, -2, 10]), 0.25, 0, -128, 127)  # 0.5 1.5 -0.5 2.5
    array([0, 2, 0, 2])
    """
    y = np.rint(np.asarray(acc).astype(np.float32) * np.asarray(multiplier, dtype=np.float32))
    return np.clip(y.astype(np.float64) + zp, qmin, qmax).astype(np.int64)
