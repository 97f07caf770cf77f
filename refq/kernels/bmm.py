"""Batched int8 matmul for attention: ``Q K^T`` and ``P V``, with zero-point corrections.

    C[b, m, n] = sum_k a[b, m, k] w[b, k, n]                                 (int32)

Each batch's right operand is packed per call (it is an activation, not a weight): O(B K N)
next to the O(B M K N) product. All batches and tiles share one parallel loop, so small
per-head problems (T = 64, head size 32) still keep both cores busy.

With zero points (``bmm_int8_acc``), the gemmlowp expansion as in ``linear``:

    sum_k (a - z_a)(b - z_b) = sum_k a b - z_b rowsum(a)[m] - z_a colsum(b)[n] + K z_a z_b
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from refq.kernels.gemm import NR, _check_activation, gemm_batched

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1


@njit(parallel=True, cache=True)
def _pack_batch_jit(b, n_pad, k_pad, data, col_sums):  # (B, K, N) int8, any strides
    nb, k_, n_ = b.shape
    kg = k_pad // 4
    for i in prange(nb):
        base = i * n_pad * k_pad
        data[base : base + n_pad * k_pad] = 0  # padding rows / columns
        s = np.zeros(n_, dtype=np.int32)
        for k in range(k_):
            g, t = k // 4, k % 4
            for n in range(n_):  # b[i, k, :] is contiguous for a C-ordered b
                v = b[i, k, n]
                s[n] += np.int32(v)
                # packed[i, p, g, j, t] = b[i, 4g + t, 64p + j]
                data[base + (((n // NR) * kg + g) * NR + n % NR) * 4 + t] = v
        col_sums[i, :] = s


def _pack_batch(b: np.ndarray) -> tuple[np.ndarray, int, int, np.ndarray]:
    """``b (B, K, N)`` int8 -> (kernel layout of each ``b[i].T`` one after the other, n_pad,
    k_pad, column sums ``(B, N)`` int32), in one jitted pass (any strides)."""
    nb, k, n = b.shape
    n_pad, k_pad = -(-n // NR) * NR, -(-k // 4) * 4
    data = np.empty(nb * n_pad * k_pad, dtype=np.int8)
    col_sums = np.empty((nb, n), dtype=np.int32)
    _pack_batch_jit(b, n_pad, k_pad, data, col_sums)
    return data, n_pad, k_pad, col_sums


def bmm_int8(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a (B, M, K) int8|uint8 @ b (B, K, N) int8 -> (B, M, N) int32``, exact.

    ``b`` may be a transposed view (``k.transpose(0, 2, 1)`` for ``Q K^T``); ``a`` is copied if
    not C-contiguous.

    >>> a = np.array([[[1, 2]], [[3, -4]]], dtype=np.int8)        # (B=2, M=1, K=2)
    >>> b = np.array([[[1], [1]], [[2], [1]]], dtype=np.int8)     # (B=2, K=2, N=1)
    >>> bmm_int8(a, b).ravel()                                    # 1+2, 6-4
    array([3, 2], dtype=int32)
    """
    a = _check_activation(a, 3)
    if not isinstance(b, np.ndarray) or b.dtype != np.int8:
        raise TypeError(f"b must be an int8 numpy array, got {getattr(b, 'dtype', type(b))}")
    if b.ndim != 3:
        raise ValueError(f"b must be 3-D (B, K, N), got shape {b.shape}")
    if a.shape[0] != b.shape[0] or a.shape[2] != b.shape[1]:
        raise ValueError(f"shapes {a.shape} @ {b.shape} do not form (B, M, K) @ (B, K, N)")
    data, n_pad, k_pad, col_sums = _pack_batch(b)  # col_sums: (B, K, N) -> (B, N)
    return gemm_batched(a, data, b.shape[2], n_pad, k_pad, col_sums)


def bmm_int8_acc(a: np.ndarray, a_zero_point: int, b: np.ndarray, b_zero_point: int) -> np.ndarray:
    """``sum_k (a - z_a)(b - z_b)`` batched, int32 ``(B, M, N)`` (per-tensor zero points).

    Dequantize with ``acc * s_a * s_b``. Raises ValueError if a value leaves int32.

    >>> a = np.array([[[130, 128]]], dtype=np.uint8)               # z_a = 128: [2, 0]
    >>> b = np.array([[[3], [5]]], dtype=np.int8)                  # z_b = 1:   [2, 4]
    >>> bmm_int8_acc(a, 128, b, 1).ravel()                         # 2*2 + 0*4
    array([4], dtype=int32)
    """
    acc = bmm_int8(a, b).astype(np.int64)  # (B, M, N)
    k = a.shape[2]
    za, zb = np.int64(a_zero_point), np.int64(b_zero_point)
    if zb:
        acc -= zb * a.sum(axis=2, dtype=np.int64)[:, :, None]  # (B, M) -> (B, M, 1)
    if za:
        acc -= za * b.sum(axis=1, dtype=np.int64)[:, None, :]  # (B, N) -> (B, 1, N)
    acc += k * za * zb
    if acc.size and (acc.min() < INT32_MIN or acc.max() > INT32_MAX):
        raise ValueError("the zero-point-corrected accumulator overflows int32")
    return acc.astype(np.int32)
