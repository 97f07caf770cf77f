"""Requantization: int32 accumulator -> int8/uint8 output, float and integer-only.

The real output of a quantized matmul is ``r = s_x s_w acc``; in the output's quantization it is
``q = round(r / s_out) + z_out = round(M acc) + z_out`` with ``M = s_x s_w / s_out`` (per output
channel when ``s_w`` is). Two ways to compute ``round(M acc)``:

- float (PyTorch fbgemm): ``rint(float32(acc) * float32(M))``, ties to even.
- fixed point (gemmlowp / TFLite; Jacob et al. 2018, arXiv:1712.05877, section 2.2):
  ``M = M0 * 2^-31 * 2^-shift`` with int32 ``M0`` in ``[2^30, 2^31)``, then
  ``RoundingDivideByPOT(SaturatingRoundingDoublingHighMul(acc, M0), shift)``: integers only,
  rounding twice (SRDHM: ties toward +inf; RDBPOT: ties away from zero), and ``M0`` itself is
  rounded to 31 bits, so it can differ from the float path by one step.

Each function has its NumPy specification in ``refq.kernels.spec``; tests check them bit-exact.
"""

from __future__ import annotations

import numpy as np
from numba import njit

INT32_MIN = -(2**31)
INT32_MAX = 2**31 - 1


def quantize_multiplier(m: float | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Split a real multiplier into ``(M0 int32, shift int)`` with ``M = M0 * 2^-31 * 2^-shift``.

    ``M = q 2^e`` (``frexp``, ``q`` in ``[0.5, 1)``), ``M0 = round_half_away(q 2^31)`` in
    ``[2^30, 2^31)`` (a carry to ``2^31`` is halved, ``e + 1``), ``shift = -e`` (negative: a left
    shift, for ``M >= 1``). ``M = 0`` and ``M < 2^-32`` (shift > 31) give ``(0, 0)`` (TFLite
    ``QuantizeMultiplier``). Works elementwise on arrays (per-channel multipliers).

    >>> quantize_multiplier(0.1)                  # 0.1 = 1717986918 * 2^-31 * 2^-3
    (array(1717986918, dtype=int32), array(3))
    >>> m0, s = quantize_multiplier(np.array([0.75, 2.0]))
    >>> m0.tolist(), s.tolist()                   # 0.75 = 0.75 * 2^0; 2.0 = 0.5 * 2^2
    ([1610612736, 1073741824], [0, -2])
    """
    m = np.asarray(m, dtype=np.float64)
    if not np.all(np.isfinite(m)):
        raise ValueError("quantize_multiplier: the multiplier must be finite")
    if np.any(m < 0):
        raise ValueError("quantize_multiplier: the multiplier must be >= 0 (scales are positive)")
    q, e = np.frexp(m)
    m0 = np.floor(q * 2.0**31 + 0.5).astype(np.int64)  # q >= 0: round half away from zero
    carry = m0 == 2**31
    m0 = np.where(carry, m0 // 2, m0)
    shift = -(e.astype(np.int64) + carry)
    if np.any(shift < -31):
        raise ValueError("quantize_multiplier: M >= 2^31 cannot be represented")
    tiny = (shift > 31) | (m == 0)
    m0 = np.where(tiny, 0, m0)
    shift = np.where(tiny, 0, shift)
    return m0.astype(np.int32), shift


# ------------------------------------------------------------------------------- scalar kernels


@njit(cache=True, inline="always")
def srdhm(a, b):
    """SaturatingRoundingDoublingHighMul on int64 scalars holding int32 values (see spec)."""
    if a == INT32_MIN and b == INT32_MIN:
        return np.int64(INT32_MAX)
    ab = np.int64(a) * np.int64(b)
    x = ab + ((1 << 30) if ab >= 0 else (1 - (1 << 30)))
    if x >= 0:  # C's truncating division by 2^31 (Python/Numba // floors)
        return x >> 31
    return -((-x) >> 31)


@njit(cache=True, inline="always")
def rdbpot(x, exponent):
    """RoundingDivideByPOT on int64 scalars (see spec): x / 2^exponent, ties away from zero."""
    mask = (np.int64(1) << exponent) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (1 if x < 0 else 0)
    return (x >> exponent) + (1 if remainder > threshold else 0)


@njit(cache=True, inline="always")
def requant_fixed_one(acc, m0, shift, zp, qmin, qmax):
    """One int64 accumulator -> clamp(RDBPOT(SRDHM(acc << left, M0), right) + zp)."""
    x = np.int64(acc)
    if shift < 0:  # M >= 1: saturating left shift first
        x = x << (-shift)
        x = min(max(x, INT32_MIN), INT32_MAX)
    y = rdbpot(srdhm(x, m0), shift if shift > 0 else 0) + zp
    return min(max(y, qmin), qmax)


@njit(cache=True, inline="always")
def requant_float_one(acc, mult, zp, qmin, qmax):
    """One accumulator -> clamp(rint(float32(acc) * mult) + zp) with ``mult`` float32."""
    y = np.rint(np.float32(acc) * mult)
    y = min(max(y, np.float32(-(2.0**31))), np.float32(2.0**31 - 128))  # in int range
    return min(max(np.int64(y) + zp, qmin), qmax)


# ------------------------------------------------------------------------------- array kernels


@njit(cache=True)
def _srdhm_flat(a, b, out):
    for i in range(a.size):
        out[i] = srdhm(np.int64(a[i]), np.int64(b[i]))


@njit(cache=True)
def _rdbpot_flat(x, e, out):
    for i in range(x.size):
        out[i] = rdbpot(np.int64(x[i]), np.int64(e[i]))


@njit(cache=True)
def _requant_fixed_2d(acc, m0, shift, zp, qmin, qmax, out):  # (R, N) int32, (N,), (N,)
    for r in range(acc.shape[0]):
        for n in range(acc.shape[1]):
            out[r, n] = requant_fixed_one(acc[r, n], np.int64(m0[n]), shift[n], zp, qmin, qmax)


@njit(cache=True)
def _requant_float_2d(acc, mult, zp, qmin, qmax, out):  # (R, N) int32, (N,) float32
    for r in range(acc.shape[0]):
        for n in range(acc.shape[1]):
            out[r, n] = requant_float_one(acc[r, n], mult[n], zp, qmin, qmax)


def _as_int32(x, name: str) -> np.ndarray:
    x = np.asarray(x)
    if x.dtype.kind not in "iu":
        raise TypeError(f"{name} must be an integer array, got {x.dtype}")
    if x.size and (x.min() < INT32_MIN or x.max() > INT32_MAX):
        raise ValueError(f"{name} has values outside int32")
    return x.astype(np.int32)


def out_dtype_for(qmin: int, qmax: int) -> np.dtype:
    """The smallest of int8 / uint8 / int32 that holds ``[qmin, qmax]``.

    >>> out_dtype_for(-128, 127), out_dtype_for(0, 255), out_dtype_for(-7, 7)
    (dtype('int8'), dtype('uint8'), dtype('int8'))
    """
    if qmin > qmax:
        raise ValueError(f"qmin = {qmin} > qmax = {qmax}")
    if qmin >= -128 and qmax <= 127:
        return np.dtype(np.int8)
    if qmin >= 0 and qmax <= 255:
        return np.dtype(np.uint8)
    if qmin >= INT32_MIN and qmax <= INT32_MAX:
        return np.dtype(np.int32)
    raise ValueError(f"[{qmin}, {qmax}] does not fit int32")


def saturating_rounding_doubling_high_mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """gemmlowp ``SaturatingRoundingDoublingHighMul``, elementwise on int32 (jitted).

    ``round(a * b / 2^31)``, ties toward +inf; ``(-2^31, -2^31) -> 2^31 - 1``.
    See ``spec.srdhm_spec`` for the formula.

    >>> saturating_rounding_doubling_high_mul(np.array([-3, 3]), np.array([2**30, 2**30]))
    array([-1,  2], dtype=int32)
    """
    a, b = np.broadcast_arrays(_as_int32(a, "a"), _as_int32(b, "b"))
    out = np.empty(a.shape, dtype=np.int32)
    _srdhm_flat(
        np.ascontiguousarray(a).reshape(-1), np.ascontiguousarray(b).reshape(-1), out.reshape(-1)
    )
    return out


def rounding_divide_by_pot(x: np.ndarray, exponent: int | np.ndarray) -> np.ndarray:
    """gemmlowp ``RoundingDivideByPOT``: ``x / 2^exponent`` rounded half away from zero (jitted).

    >>> rounding_divide_by_pot(np.array([5, -5, 6, -6]), 2)     # 1.25 -1.25 1.5 -1.5
    array([ 1, -1,  2, -2], dtype=int32)
    """
    e = np.asarray(exponent)
    if e.dtype.kind not in "iu" or (e.size and (e.min() < 0 or e.max() > 31)):
        raise ValueError(f"exponent must be an integer in [0, 31], got {exponent!r}")
    x, e = np.broadcast_arrays(_as_int32(x, "x"), e.astype(np.int64))
    out = np.empty(x.shape, dtype=np.int32)
    _rdbpot_flat(
        np.ascontiguousarray(x).reshape(-1), np.ascontiguousarray(e).reshape(-1), out.reshape(-1)
    )
    return out


def _per_channel(p, n: int, dtype, name: str) -> np.ndarray:
    p = np.asarray(p)
    if p.ndim == 0:
        return np.full(n, p, dtype=dtype)
    if p.shape != (n,):
        raise ValueError(f"{name} must be a scalar or have shape ({n},), got {p.shape}")
    return np.ascontiguousarray(p, dtype=dtype)


def requantize_fixed_point(
    acc: np.ndarray,
    m0: int | np.ndarray,
    shift: int | np.ndarray,
    out_zero_point: int,
    qmin: int,
    qmax: int,
) -> np.ndarray:
    """Integer-only requantization of ``acc (..., N) int32`` (per-channel ``M0``, ``shift``: (N,)).

        out = clamp(RDBPOT(SRDHM(acc << max(-shift, 0), M0), max(shift, 0)) + z_out, qmin, qmax)

    Output dtype: int8 if ``[qmin, qmax]`` fits it, else uint8, else int32 (``out_dtype_for``).

    >>> m0, s = quantize_multiplier(0.25)
    >>> requantize_fixed_point(np.array([100, -100, 150, -150]), m0, s, 3, -128, 127)
    array([ 28, -22,  41, -35], dtype=int8)
    """
    acc = _as_int32(acc, "acc")
    dt = out_dtype_for(qmin, qmax)
    n = acc.shape[-1] if acc.ndim else 1
    a2 = np.ascontiguousarray(acc).reshape(-1, n)  # (..., N) -> (R, N)
    m0v = _per_channel(_as_int32(m0, "m0"), n, np.int32, "m0")
    sv = _per_channel(shift, n, np.int64, "shift")
    if sv.size and (sv.min() < -31 or sv.max() > 31):
        raise ValueError("shift must be in [-31, 31] (use quantize_multiplier)")
    out = np.empty(a2.shape, dtype=dt)
    _requant_fixed_2d(a2, m0v, sv, int(out_zero_point), int(qmin), int(qmax), out)
    return out.reshape(acc.shape)


def requantize_float(
    acc: np.ndarray, multiplier: float | np.ndarray, out_zero_point: int, qmin: int, qmax: int
) -> np.ndarray:
    """Float requantization (fbgemm) of ``acc (..., N) int32``, multiplier scalar or (N,).

        out = clamp(rint(float32(acc) * float32(M)) + z_out, qmin, qmax)       (ties to even)

    >>> requantize_float(np.array([100, -100, 150, -150]), 0.25, 3, -128, 127)  # 37.5 -> 38
    array([ 28, -22,  41, -35], dtype=int8)
    >>> requantize_float(np.array([2, 6]), 0.25, 0, -128, 127)   # 0.5 -> 0, 1.5 -> 2 (to even)
    array([0, 2], dtype=int8)
    """
    acc = _as_int32(acc, "acc")
    dt = out_dtype_for(qmin, qmax)
    mult = np.asarray(multiplier, dtype=np.float64)
    if not np.all(np.isfinite(mult)) or np.any(mult < 0):
        raise ValueError("multiplier must be finite and >= 0")
    n = acc.shape[-1] if acc.ndim else 1
    a2 = np.ascontiguousarray(acc).reshape(-1, n)  # (..., N) -> (R, N)
    mv = _per_channel(mult.astype(np.float32), n, np.float32, "multiplier")
    out = np.empty(a2.shape, dtype=dt)
    _requant_float_2d(a2, mv, int(out_zero_point), int(qmin), int(qmax), out)
    return out.reshape(acc.shape)
