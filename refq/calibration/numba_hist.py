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


@numba.njit(cache=False, nogil=True)
def affine_pair_search(e_lo, p0_lo, left, e_hi, p0_hi, right, z, levels, include_zero):
    """Exhaustive search over clipping pairs ``(lo = e_lo[a], hi = e_hi[b])`` with ``lo < hi``.

    err(a, b) = left[a] + right[b] + s**2 / 12 * (p0_hi[b] - p0_lo[a]),
    s = (max(hi, z) - min(lo, z)) / (levels - 1)   (include_zero; else (hi - lo) / (levels - 1))

    All arrays float64, 1-D. Returns ``(a, b, err)`` of the smallest error (first on ties).
    """
    best = np.inf
    ba = 0
    bb = 0
    inv = 1.0 / (12.0 * (levels - 1) * (levels - 1))
    for a in range(e_lo.shape[0]):
        lo = e_lo[a]
        glo = min(lo, z) if include_zero else lo
        la = left[a]
        pa = p0_lo[a]
        for b in range(e_hi.shape[0]):
            hi = e_hi[b]
            if hi <= lo:
                continue
            ghi = max(hi, z) if include_zero else hi
            d = ghi - glo
            err = la + right[b] + d * d * inv * (p0_hi[b] - pa)
            if err < best:
                best = err
                ba = a
                bb = b
    return ba, bb, best
