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
    """Per-row min and max in one pass.

    >>> rows_minmax(np.array([[3.0, -1.0, 2.0]]))
    (array([-1.]), array([3.]))
    """
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

    >>> counts = np.zeros((1, 4), np.int64)    # w = 2**-1: 0 and 0.25 -> bin 0, 1.0 -> bin 2
    >>> rows_bin_add(np.array([[0.0, 0.25, 1.0]]), np.array([-1]), np.array([0]), counts)
    >>> counts
    array([[2, 0, 1, 0]])
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

    >>> e = np.array([0.0, 1.0])   # lo candidates 0, 1 (left errors 0, 0.5), hi candidates 2, 3
    >>> affine_pair_search(e, e, np.array([0.0, 0.5]), e + 2, e + 2, np.array([0.5, 0.0]),
    ...                    0.0, 4.0, False)
    (0, 1, 0.25)
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
def kl_divergences(bins, levels, start, eps, stride=1):  # (K,) float64 -> (n,) float64
    """TensorRT's KL divergence for threshold bins ``i = start, start + stride, ..., <= K``.

    O(K / stride * levels).

    P = bins[:i] with the clipped tail sum(bins[i:]) added to P[i-1];
    Q = bins[:i] merged into ``levels`` groups (bin j -> group j * levels // i, so group g is
        bins [ceil(g i / levels), ceil((g + 1) i / levels))), each group's total G_g spread
        evenly over its n_g non-empty bins (empty bins stay 0);
    zeros of Q smoothed: q_j = eps where q_j == 0, q_j - eps * n0 / n1 elsewhere (counts);
    KL(P || Q) = sum_{p_j > 0} p_j/T log((p_j/T) / (q_j/S)),  T = sum(bins), S = sum(bins[:i]).

    Every non-empty bin of a group has the same q, so with prefix sums the sum is per group:
        sum p log q = sum_g G_g log(G_g / n_g - eps1) + tail * log(q_{i-1})
        KL = (sum p log p - sum p log q) / T - log T + log S
    ``entropy.entropy_divergences_reference`` is the bin-by-bin NumPy form (tested equal).

    >>> kl_divergences(np.array([4.0, 2.0, 0.0, 2.0]), 2, 2, 1e-4).round(4)
    array([0.0589, 2.2307, 0.0425])
    """
    k = bins.shape[0]
    out = np.full((k - start) // stride + 1, np.inf)
    csum = np.zeros(k + 1)  # counts left of edge j
    cnz = np.zeros(k + 1)  # non-empty bins left of edge j
    cplogp = np.zeros(k + 1)  # sum of b log b left of edge j
    for j in range(k):
        b = bins[j]
        csum[j + 1] = csum[j] + b
        cnz[j + 1] = cnz[j] + (1.0 if b > 0 else 0.0)
        cplogp[j + 1] = cplogp[j] + (b * math.log(b) if b > 0 else 0.0)
    total = csum[k]
    for i in range(start, k + 1, stride):
        n1 = cnz[i]
        if n1 == 0:
            continue
        eps1 = eps * (i - n1) / n1
        tail = total - csum[i]
        last = bins[i - 1]
        p_last = last + tail
        plogp = cplogp[i - 1] + (p_last * math.log(p_last) if p_last > 0 else 0.0)
        plogq = 0.0
        q_last = eps
        for g in range(levels):
            a = (g * i + levels - 1) // levels  # first bin of group g
            b = ((g + 1) * i + levels - 1) // levels  # one past its last bin
            ng = cnz[b] - cnz[a]
            if ng == 0:
                continue
            gsum = csum[b] - csum[a]
            q = gsum / ng - eps1
            plogq += gsum * math.log(q)
            if a <= i - 1 < b and last > 0:
                q_last = q
        if tail > 0:
            plogq += tail * math.log(q_last)
        out[(i - start) // stride] = (plogp - plogq) / total - math.log(total) + math.log(csum[i])
    return out
