"""Numba loops for the histogram observers: one pass over the data, no temporaries.

The NumPy form of the same computation is the specification and lives beside each use
(``binning.StreamingHistogram._bin_numpy``); tests check these loops against it bit for bit.
Kernels know only arrays: rows are channels, ``(C, N)`` float32/float64 in, int64 counts out.
"""

from __future__ import annotations

import math

import numba
import numpy as np


@numba.njit(cache=False, nogil=True)
def rows_minmax(xc):  # (C, N) float -> (C,) float64, (C,) float64
    """Per-row min and max in one pass."""
    c, n = xc.shape
    lo = np.empty(c, np.float64)
    hi = np.empty(c, np.float64)
    for r in range(c):
        a = np.float64(xc[r, 0])
        b = a
        for i in range(1, n):
            v = np.float64(xc[r, i])
            if v < a:
                a = v
            elif v > b:
                b = v
        lo[r] = a
        hi[r] = b
    return lo, hi


@numba.njit(cache=False, nogil=True)
def rows_bin_add(xc, exp, lo, counts):  # (C, N) float, (C,) int64, (C,) int64, (C, B) int64
    """``counts[r, floor(x / 2**exp[r]) - lo[r]] += 1`` for every ``x`` of row ``r``.

    ``x * 2**-exp`` is exact in float64 (a power-of-two scaling), so the bin is exact.
    """
    c, n = xc.shape
    nb = counts.shape[1]
    for r in range(c):
        inv = math.ldexp(1.0, -exp[r])  # 2**-exp, float64
        off = lo[r]
        for i in range(n):
            k = np.int64(math.floor(np.float64(xc[r, i]) * inv)) - off
            if k < 0:
                k = 0
            elif k >= nb:
                k = nb - 1
            counts[r, k] += 1
