"""The readable reference kernel: the triple loop, jitted, int32 accumulator.

    C[m, n] = sum_k int32(a[m, k]) * int32(b[k, n])

No blocking, no packing, no threads: this is the kernel a student should read first; the fast
kernel (``refq.kernels.gemm``) must agree with it (and with ``spec.matmul_spec``) bit for bit.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def _matmul_loops(a, b, c):  # (M, K) int8|uint8, (K, N) int8 -> c (M, N) int32
    m_, k_ = a.shape
    n_ = b.shape[1]
    for m in range(m_):
        for n in range(n_):
            acc = np.int32(0)
            for k in range(k_):
                acc += np.int32(a[m, k]) * np.int32(b[k, n])
            c[m, n] = acc


def matmul_reference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a (M, K) int8|uint8 @ b (K, N) int8 -> (M, N) int32`` by the triple loop.

    >>> a = np.array([[1, 2], [3, 4]], dtype=np.int8)
    >>> b = np.array([[5, -6], [7, 8]], dtype=np.int8)
    >>> matmul_reference(a, b)
    array([[19, 10],
           [43, 14]], dtype=int32)
    """
    if a.dtype not in (np.int8, np.uint8) or b.dtype != np.int8:
        raise TypeError(f"expected int8|uint8 @ int8, got {a.dtype} @ {b.dtype}")
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[0]:
        raise ValueError(f"shapes {a.shape} @ {b.shape} do not form (M, K) @ (K, N)")
    c = np.empty((a.shape[0], b.shape[1]), dtype=np.int32)
    _matmul_loops(a, b, c)
    return c


def bmm_reference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Batched triple loop: ``(B, M, K) @ (B, K, N) -> (B, M, N) int32``.

    >>> bmm_reference(np.ones((2, 1, 3), np.int8), np.full((2, 3, 1), -2, np.int8)).ravel()
    array([-6, -6], dtype=int32)
    """
    if a.ndim != 3 or b.ndim != 3 or a.shape[0] != b.shape[0]:
        raise ValueError(f"shapes {a.shape} @ {b.shape} do not form (B, M, K) @ (B, K, N)")
    return np.stack([matmul_reference(a[i], b[i]) for i in range(a.shape[0])])
