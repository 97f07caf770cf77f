"""Numba loops for the histogram observers: one pass over the data, no temporaries.

The NumPy form of the same computation is the specification and lives beside each use
(``binning.StreamingHistogram._bin_numpy``); tests check these loops against it bit for bit.
Kernels know only arrays: rows are channels, ``(C, N)`` float32/float64 in, int64 counts out.
"""

from __future__ import annotations

import math

import numba
import numpy as np


@numba.njit(cache=True, nogil=True)
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


@numba.njit(cache=True, nogil=True)
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


@numba.njit(cache=True, nogil=True)
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


@numba.njit(cache=True, nogil=True)
def kl_divergences(bins, levels, start, eps):  # (K,) float64 -> (K - start + 1,) float64
    """TensorRT's KL divergence for every threshold bin ``i`` in ``[start, K]``.

    P = bins[:i] with the clipped tail sum(bins[i:]) added to P[i-1];
    Q = bins[:i] merged into ``levels`` groups (bin j -> group j * levels // i), each group's
        total spread evenly over its non-empty bins (empty bins stay 0);
    zeros of Q smoothed: q_j = eps where q_j == 0, q_j - eps * n0 / n1 elsewhere (counts);
    KL(P || Q) = sum_{p_j > 0} p_j log(p_j / q_j) with P, Q normalised to sum 1.
    """
    k = bins.shape[0]
    out = np.full(k - start + 1, np.inf)
    suffix = np.zeros(k + 1)
    for j in range(k - 1, -1, -1):
        suffix[j] = suffix[j + 1] + bins[j]
    total = suffix[0]
    gsum = np.zeros(levels)
    gcnt = np.zeros(levels)
    for i in range(start, k + 1):
        gsum[:] = 0.0
        gcnt[:] = 0.0
        n1 = 0
        qtot = 0.0
        for j in range(i):
            if bins[j] > 0:
                g = (j * levels) // i
                gsum[g] += bins[j]
                gcnt[g] += 1.0
                n1 += 1
                qtot += bins[j]
        if n1 == 0:
            continue
        eps1 = eps * (i - n1) / n1
        kl = 0.0
        for j in range(i):
            p = bins[j]
            if j == i - 1:
                p += suffix[i]
            if p <= 0:
                continue
            if bins[j] > 0:
                g = (j * levels) // i
                q = gsum[g] / gcnt[g] - eps1
            else:
                q = eps
            kl += (p / total) * math.log((p / total) / (q / qtot))
        out[i - start] = kl
    return out
