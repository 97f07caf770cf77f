"""The whole quantized linear layer on arrays: quantize input, int8 GEMM, corrections, requantize.

With ``x = s_x (x_q - z_x)`` and ``w[n] = s_w[n] (w_q[n] - z_w[n])`` (per output channel ``n``),

    y[m, n] = s_x s_w[n] (sum_k (x_q - z_x)(w_q - z_w) + bias_q[n])            (bias_q int32)

and the sum expands (gemmlowp ``doc/low-precision.md``; Jacob et al. 2018, arXiv:1712.05877,
eq. 7) so that the inner loop stays a pure int8 x int8 product:

    acc[m, n] = sum_k x_q w_q - z_w[n] rowsum(x_q)[m] - z_x colsum(w_q)[n]
                + K z_x z_w[n] + bias_q[n]

``colsum`` is computed once in ``pack_weight``; ``rowsum`` once per call, and only when some
``z_w != 0`` (symmetric weights, the usual case, skip it). The corrections are added in int64 in
a fused pass that also requantizes: ``q_out = round(M[n] acc) + z_out`` with
``M[n] = s_x s_w[n] / s_out`` (float or fixed point, ``refq.kernels.requant``). Before the GEMM,
the static bound ``K max|x - z_x| max|w - z_w| + max|bias|`` is checked against 2^31 - 1
(ValueError beyond), so every corrected value fits int32 and the fused loops need no test.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from refq.kernels.gemm import PackedWeight, gemm_fused
from refq.kernels.requant import (
    INT32_MAX,
    quantize_multiplier,
)


@njit(parallel=True, cache=True)
def _row_sums(x):  # (M, K) int8|uint8 -> (M,) int64
    out = np.empty(x.shape[0], dtype=np.int64)
    for m in prange(x.shape[0]):
        s = np.int64(0)
        for k in range(x.shape[1]):
            s += np.int64(x[m, k])
        out[m] = s
    return out


@njit(parallel=True, cache=True)
def _quantize_rows(x, scale, zp, qmin, qmax, out):  # (R, K) float32 -> (R, K) int8|uint8
    for r in prange(x.shape[0]):
        for k in range(x.shape[1]):
            q = np.rint(x[r, k] / scale) + zp
            out[r, k] = min(max(q, qmin), qmax)


def quantize_input(
    x: np.ndarray, scale: float, zero_point: int, out_dtype: type | np.dtype = np.int8
) -> np.ndarray:
    """Per-tensor affine quantization of activations, jitted (PyTorch convention, float32):

        q = clamp(rint(x / scale) + zero_point, qmin, qmax)         (ties to even)

    with ``[qmin, qmax]`` the range of ``out_dtype`` (int8 or uint8). Same numbers as
    ``refq.quant.affine.quantize_affine`` per tensor.

    >>> quantize_input(np.array([0.5, 1.5, -0.26, 300.0], np.float32), 1.0, 0)
    array([  0,   2,   0, 127], dtype=int8)
    """
    dt = np.dtype(out_dtype)
    if dt not in (np.int8, np.uint8):
        raise TypeError(f"out_dtype must be int8 or uint8, got {dt}")
    if not (np.isfinite(scale) and scale > 0):
        raise ValueError(f"scale must be finite and > 0, got {scale}")
    info = np.iinfo(dt)
    x = np.ascontiguousarray(x, dtype=np.float32)
    out = np.empty(x.shape, dtype=dt)
    k = x.shape[-1] if x.ndim else 1
    _quantize_rows(
        x.reshape(-1, k), np.float32(scale), np.float32(zero_point),
        np.float32(info.min), np.float32(info.max), out.reshape(-1, k),
    )  # fmt: skip
    return out


def _prepare(x_q, x_zero_point, packed_w, w_zero_point, bias_int32):
    """Validate and build the correction terms: ``(x2 (M, K), rs, ct, zw, lead shape)``."""
    if not isinstance(packed_w, PackedWeight):
        raise TypeError(f"packed_w must be a PackedWeight (from pack_weight), got {type(packed_w)}")
    if not isinstance(x_q, np.ndarray) or x_q.dtype not in (np.int8, np.uint8):
        raise TypeError(f"x_q must be an int8 or uint8 array, got {getattr(x_q, 'dtype', x_q)}")
    if x_q.ndim < 1 or x_q.shape[-1] != packed_w.k:
        raise ValueError(f"x_q shape {x_q.shape}: last axis must be K = {packed_w.k}")
    n, k = packed_w.shape
    lead = x_q.shape[:-1]
    x2 = x_q.reshape(-1, k)  # (..., K) -> (M, K)
    zw = np.asarray(w_zero_point)
    if zw.dtype.kind not in "iu" or zw.shape not in ((), (n,)):
        raise ValueError(f"w_zero_point must be an integer scalar or shape ({n},), got {zw!r}")
    zw = np.ascontiguousarray(np.broadcast_to(zw.astype(np.int64), (n,)))
    if int(x_zero_point) != x_zero_point:
        raise TypeError(f"x_zero_point must be an integer, got {x_zero_point!r}")
    zx = int(x_zero_point)
    if bias_int32 is None:
        bias = np.zeros(n, dtype=np.int64)
    else:
        b = np.asarray(bias_int32)
        if b.dtype != np.int32 or b.shape != (n,):
            raise TypeError(f"bias_int32 must be int32 of shape ({n},), got {b.dtype} {b.shape}")
        bias = b.astype(np.int64)
    # static bound on |sum_k (x - z_x)(w - z_w) + bias|: beyond int32 we refuse, never wrap
    xi = np.iinfo(x_q.dtype)
    ax = max(abs(xi.min - zx), abs(xi.max - zx))
    aw = int(np.maximum(np.abs(-128 - zw), np.abs(127 - zw)).max()) if n else 0
    bound = k * ax * aw + (int(np.abs(bias).max()) if n else 0)
    if bound > INT32_MAX:
        raise ValueError(
            f"the zero-point-corrected accumulator could overflow int32: K * max|x - z_x| * "
            f"max|w - z_w| + max|bias| = {k} * {ax} * {aw} + max|bias| = {bound} > 2^31 - 1; "
            "check the zero points and the int32 bias, or split K"
        )
    x2 = np.ascontiguousarray(x2)  # documented: a strided input is copied
    rs = _row_sums(x2) if np.any(zw) else np.zeros(x2.shape[0], np.int64)  # (M,)
    ct = bias - zx * packed_w.col_sums.astype(np.int64) + k * zx * zw  # (N,)
    # int32 is enough: ct[n] is the corrected value of an all-zero input row and |rs| <= 255 K,
    # both within the bound just checked; the epilogue's arithmetic is exact modulo 2^32
    i32 = np.int32
    return x2, rs.astype(i32), ct.astype(i32), zw.astype(i32), lead


_NONE_F = np.zeros(0, dtype=np.float32)
_NONE_I = np.zeros(0, dtype=np.int64)


def _run_fused(x2, packed_w, mode, rs, ct, zw, out, mult=_NONE_F, m0=_NONE_I, lsh=_NONE_I,
               rsh=_NONE_I, zo=0, lo=0, hi=0):  # fmt: skip
    # (M, K) @ (K, N) -> (M, N) with the epilogue applied tile by tile
    return gemm_fused(x2, packed_w, mode, rs, ct, zw, mult, m0, lsh, rsh, zo, lo, hi, out)


def quantized_linear_acc(
    x_q: np.ndarray,
    x_zero_point: int,
    packed_w: PackedWeight,
    w_zero_point: int | np.ndarray,
    bias_int32: np.ndarray | None,
) -> np.ndarray:
    """``acc = sum_k (x_q - z_x)(w_q - z_w[n]) + bias_q[n]`` as int32 ``(..., N)``.

    Dequantize with ``acc * (s_x * s_w)`` (``s_w`` scalar or (N,)). Computed by the expansion
    in the module docstring; raises ValueError if a corrected value leaves int32.

    >>> from refq.kernels.gemm import pack_weight
    >>> w = pack_weight(np.array([[2, -1]], np.int8))
    >>> quantized_linear_acc(np.array([[3, 5]], np.uint8), 1, w, 0, np.array([10], np.int32))
    array([[10]], dtype=int32)

    By hand: (3 - 1) * 2 + (5 - 1) * (-1) + 10 = 4 - 4 + 10 = 10.
    """
    x2, rs, ct, zw, lead = _prepare(x_q, x_zero_point, packed_w, w_zero_point, bias_int32)
    out = _run_fused(x2, packed_w, 0, rs, ct, zw, np.empty((x2.shape[0], packed_w.n), np.int32))
    return out.reshape(*lead, packed_w.n)


def quantized_linear(
    x_q: np.ndarray,
    x_zero_point: int,
    packed_w: PackedWeight,
    w_zero_point: int | np.ndarray,
    bias_int32: np.ndarray | None,
    multiplier: float | np.ndarray,
    out_zero_point: int,
    out_dtype: type | np.dtype = np.int8,
    mode: str = "float",
) -> np.ndarray:
    """The quantized linear layer: ``x_q (..., K) -> q_out (..., N)`` of ``out_dtype``.

        acc[m, n]   = sum_k (x_q - z_x)(w_q - z_w[n]) + bias_q[n]                  (int32)
        q_out[m, n] = clamp(round(M[n] acc[m, n]) + z_out, qmin, qmax)
        M[n]        = s_x s_w[n] / s_out

    ``mode="float"``: fbgemm's ``rint(float32(acc) * float32(M))``; ``mode="fixed_point"``:
    gemmlowp's ``RDBPOT(SRDHM(acc, M0), shift)`` with ``(M0, shift) = quantize_multiplier(M)``.
    ``[qmin, qmax]`` is the range of ``out_dtype`` (int8 or uint8).

    >>> from refq.kernels.gemm import pack_weight
    >>> w = pack_weight(np.array([[2, -1], [1, 1]], np.int8))
    >>> x = np.array([[3, 5]], np.uint8)
    >>> quantized_linear(x, 1, w, 0, np.array([10, 0], np.int32), 0.5, 4, np.int8)
    array([[9, 7]], dtype=int8)

    By hand: acc = [10, (3-1) + (5-1)] = [10, 6]; 0.5 * acc + 4 = [9, 7].
    """
    dt = np.dtype(out_dtype)
    if dt not in (np.int8, np.uint8):
        raise TypeError(f"out_dtype must be int8 or uint8, got {dt}")
    if mode not in ("float", "fixed_point"):
        raise ValueError(f"mode must be 'float' or 'fixed_point', got {mode!r}")
    n = packed_w.n if isinstance(packed_w, PackedWeight) else -1
    mult = np.asarray(multiplier, dtype=np.float64)
    if mult.shape not in ((), (n,)) or not np.all(np.isfinite(mult)) or np.any(mult < 0):
        raise ValueError(f"multiplier must be finite, >= 0, scalar or shape ({n},)")
    mult = np.ascontiguousarray(np.broadcast_to(mult, (n,)))
    x2, rs, ct, zw, lead = _prepare(x_q, x_zero_point, packed_w, w_zero_point, bias_int32)
    info = np.iinfo(dt)
    qmin, qmax = int(info.min), int(info.max)
    out = np.empty((x2.shape[0], n), dtype=dt)
    zo = int(out_zero_point)
    if mode == "fixed_point":
        m0, shift = quantize_multiplier(mult)
        lsh = np.maximum(-shift, 0).astype(np.int64)  # M >= 1: left shift first
        rsh = np.maximum(shift, 0).astype(np.int64)
        m0 = m0.astype(np.int64)
        _run_fused(
            x2, packed_w, 2, rs, ct, zw, out, m0=m0, lsh=lsh, rsh=rsh, zo=zo, lo=qmin, hi=qmax
        )
    else:
        mult = mult.astype(np.float32)
        _run_fused(x2, packed_w, 1, rs, ct, zw, out, mult=mult, zo=zo, lo=qmin, hi=qmax)
    return out.reshape(*lead, n)


def quantized_linear_dequant(
    x_q: np.ndarray,
    x_zero_point: int,
    packed_w: PackedWeight,
    w_zero_point: int | np.ndarray,
    bias_int32: np.ndarray | None,
    out_scale: float | np.ndarray,
) -> np.ndarray:
    """The quantized linear layer with a float32 output, fused: ``y = float32(acc) * out_scale[n]``.

        acc[m, n] = sum_k (x_q - z_x)(w_q - z_w[n]) + bias_q[n]          (int32, exact)
        y[m, n]   = float32(acc[m, n]) * float32(s_x s_w[n])

    Same numbers as ``quantized_linear_acc(...).astype(np.float32) * out_scale`` in float32, in
    one pass (no int32 / float64 temporaries).

    >>> from refq.kernels.gemm import pack_weight
    >>> w = pack_weight(np.array([[2, -1]], np.int8))
    >>> x = np.array([[3, 5]], np.uint8)
    >>> quantized_linear_dequant(x, 1, w, 0, np.array([10], np.int32), 0.5)   # 0.5 * 10
    array([[5.]], dtype=float32)
    """
    x2, rs, ct, zw, lead = _prepare(x_q, x_zero_point, packed_w, w_zero_point, bias_int32)
    n = packed_w.n
    sc = np.asarray(out_scale, dtype=np.float64)
    if sc.shape not in ((), (n,)) or not np.all(np.isfinite(sc)):
        raise ValueError(f"out_scale must be finite, scalar or shape ({n},)")
    sc = np.ascontiguousarray(np.broadcast_to(sc, (n,)), dtype=np.float32)
    out = np.empty((x2.shape[0], n), dtype=np.float32)
    _run_fused(x2, packed_w, 3, rs, ct, zw, out, mult=sc)
    return out.reshape(*lead, n)
