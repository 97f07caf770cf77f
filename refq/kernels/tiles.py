"""The loops around the VNNI micro-kernel: tiles, ``k`` blocks, fused epilogue, runners.

``gemm.py`` decides the tiling and calls a runner; the runner spreads tiles over Numba's threads
(``prange``) and, per tile, ``_rows*`` calls the micro-kernel (``simd``) for ``MR = 6`` rows at a
time over ``k`` blocks of ``KC`` bytes. One set of functions per instruction set, because a
function that names an AVX-512 intrinsic can only be compiled on a CPU that has it:

- ``*16``: 512-bit ``vpdpbusd`` (AVX512-VNNI), ``*8``: 256-bit (AVX-VNNI or AVX512-VL),
  ``*_portable``: plain loops, any CPU.
- ``_run*``: int32 output (matmul, bmm). ``_frun*``: each tile goes to a small scratch buffer and
  straight through ``_epilogue_tile`` (zero-point corrections, requantization) while it is hot in
  cache: the quantized linear layer without an (M, N) int32 round trip through memory.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from refq.kernels import simd
from refq.kernels.simd import MR, NR

KC = 256  # k bytes per cache block (64 groups of 4): the weight block is 256 * 64 B = 16 KiB
_MAGIC = np.float32(12582912.0)  # 1.5 * 2^23


@njit(cache=True, inline="always")
def _tile16(mr, a, ao, lda, b, bo, c, co, ldc, kg, init, io, first, ax):
    if mr == 6:
        simd.mk16_6(a, ao, lda, b, bo, c, co, ldc, kg, init, io, first, ax)
    elif mr == 5:
        simd.mk16_5(a, ao, lda, b, bo, c, co, ldc, kg, init, io, first, ax)
    elif mr == 4:
        simd.mk16_4(a, ao, lda, b, bo, c, co, ldc, kg, init, io, first, ax)
    elif mr == 3:
        simd.mk16_3(a, ao, lda, b, bo, c, co, ldc, kg, init, io, first, ax)
    elif mr == 2:
        simd.mk16_2(a, ao, lda, b, bo, c, co, ldc, kg, init, io, first, ax)
    else:
        simd.mk16_1(a, ao, lda, b, bo, c, co, ldc, kg, init, io, first, ax)


@njit(cache=True, inline="always")
def _tile8(mr, a, ao, lda, b, bo, c, co, ldc, kg, init, io, first, ax):
    if mr == 6:
        simd.mk8_6(a, ao, lda, b, bo, c, co, ldc, kg, init, io, first, ax)
    elif mr == 5:
        simd.mk8_5(a, ao, lda, b, bo, c, co, ldc, kg, init, io, first, ax)
    elif mr == 4:
        simd.mk8_4(a, ao, lda, b, bo, c, co, ldc, kg, init, io, first, ax)
    elif mr == 3:
        simd.mk8_3(a, ao, lda, b, bo, c, co, ldc, kg, init, io, first, ax)
    elif mr == 2:
        simd.mk8_2(a, ao, lda, b, bo, c, co, ldc, kg, init, io, first, ax)
    else:
        simd.mk8_1(a, ao, lda, b, bo, c, co, ldc, kg, init, io, first, ax)


@njit(cache=True)
def _rows16(a, ao, lda, nrows, b, bo, kg, init, io, ax, c, co, ldc):
    # rows [0, nrows) of one 64-column panel: k blocks of KC bytes, MR rows per micro-kernel
    kcg = KC // 4
    for k0 in range(0, kg, kcg):
        kn = min(kcg, kg - k0)
        i = 0
        while i < nrows:
            mr = min(MR, nrows - i)
            _tile16(
                mr, a, ao + i * lda + 4 * k0, lda, b, bo + k0 * 4 * NR,
                c, co + i * ldc, ldc, kn, init, io, k0 == 0, ax,
            )  # fmt: skip
            i += mr


@njit(cache=True)
def _rows8(a, ao, lda, nrows, b, bo, kg, init, io, ax, c, co, ldc):
    kcg = KC // 4
    for k0 in range(0, kg, kcg):
        kn = min(kcg, kg - k0)
        i = 0
        while i < nrows:
            mr = min(MR, nrows - i)
            _tile8(
                mr, a, ao + i * lda + 4 * k0, lda, b, bo + k0 * 4 * NR,
                c, co + i * ldc, ldc, kn, init, io, k0 == 0, ax,
            )  # fmt: skip
            i += mr


@njit(cache=True)
def _rows_portable(a, ao, lda, nrows, b, bo, kg, init, io, ax, c, co, ldc):
    # the same contract with plain loops: acc[n] += sum_t a[4g+t] * packed[g, n, t]
    acc = np.empty(NR, dtype=np.int32)
    for i in range(nrows):
        ab = ao + i * lda
        for n in range(NR):
            acc[n] = init[io + n]
        for g in range(kg):
            a0 = np.int32(a[ab + 4 * g] ^ ax)  # ax = 0 here: a is read as its own dtype
            a1 = np.int32(a[ab + 4 * g + 1] ^ ax)
            a2 = np.int32(a[ab + 4 * g + 2] ^ ax)
            a3 = np.int32(a[ab + 4 * g + 3] ^ ax)
            o = bo + g * 4 * NR
            for n in range(NR):
                acc[n] += (
                    a0 * np.int32(b[o + 4 * n])
                    + a1 * np.int32(b[o + 4 * n + 1])
                    + a2 * np.int32(b[o + 4 * n + 2])
                    + a3 * np.int32(b[o + 4 * n + 3])
                )
        for n in range(NR):
            c[co + i * ldc + n] = acc[n]


@njit(cache=True, inline="always")
def _tile_coords(t, n_panels, m_blocks, mb, M):
    # tile t -> (batch i_b, panel p, first row i0, row count)
    p = t % n_panels
    i_m = (t // n_panels) % m_blocks
    i_b = t // (n_panels * m_blocks)
    i0 = i_m * mb
    return i_b, p, i0, min(M, i0 + mb) - i0


@njit(cache=True)
def _epilogue_tile(sc, i0, nrows, n0, ncols, rs, ct, zw, mode, mult, m0, lsh, rsh, zo, lo, hi, out):
    """Corrections + requantization of one tile held in ``sc`` (nrows x 64 int32), see linear.py.

    v = acc + ct[n] - zw[n] rs[m]  (fits int32: bound checked by the caller), then by ``mode``:
    0: out = v (int32); 1: clamp(rint(float32(v) * mult[n]) + zo); 2: gemmlowp fixed point;
    3: out = float32(v) * mult[n] (dequantized float32). One loop per mode, no branches inside.
    """
    # Slices first: every index below is a bare loop counter j >= 0, which LLVM can prove
    # non-negative (Numba's negative-index wraparound would otherwise block vectorization).
    flo, fhi, fzo = np.float32(lo), np.float32(hi), np.float32(zo)
    ctv, zwv = ct[n0 : n0 + ncols], zw[n0 : n0 + ncols]
    for r in range(nrows):
        rm = rs[i0 + r]
        acc = sc[r * NR : r * NR + ncols]
        row = out[i0 + r, n0 : n0 + ncols]
        if mode == 0:
            for j in range(ncols):
                row[j] = acc[j] + ctv[j] - zwv[j] * rm
        elif mode == 1:
            mv = mult[n0 : n0 + ncols]
            for j in range(ncols):
                v = np.int32(acc[j] + ctv[j] - zwv[j] * rm)
                y = np.float32(v) * mv[j]
                # rint(y), ties to even, as (y + 1.5 2^23) - 1.5 2^23 in float32: exact for
                # |y| < 2^22; larger |y| stay beyond [lo, hi] and are clamped the same way.
                # (np.rint here is a libm call that blocks vectorization.)
                y = (y + _MAGIC) - _MAGIC + fzo
                row[j] = min(max(y, flo), fhi)  # (float ternaries here run 10x slower)
        elif mode == 2:
            m0v, lv, rv = m0[n0 : n0 + ncols], lsh[n0 : n0 + ncols], rsh[n0 : n0 + ncols]
            for j in range(ncols):
                x = (acc[j] + ctv[j] - zwv[j] * rm) << lv[j]  # lv > 0 only if M >= 1
                x = min(max(x, -(2**31)), 2**31 - 1)  # saturate (int ternaries run slower)
                # SRDHM(x, M0) = trunc((ab + nudge) / 2^31) with nudge = 2^30 or 1 - 2^30; for
                # ab < 0, trunc(z / 2^31) = floor((z + 2^31 - 1) / 2^31), and the two nudges
                # meet: SRDHM = floor((ab + 2^30) / 2^31), one add and one arithmetic shift
                # (no saturation case: M0 < 2^31). Tested bit-exact against spec.srdhm_spec.
                q = (x * m0v[j] + (1 << 30)) >> 31
                e = rv[j]  # RDBPOT: arithmetic shift, + 1 when the remainder passes half
                mask = (np.int64(1) << e) - 1
                up = np.int64((q & mask) > ((mask >> 1) + np.int64(q < 0)))
                row[j] = min(max((q >> e) + up + zo, lo), hi)
        else:
            mv = mult[n0 : n0 + ncols]
            for j in range(ncols):
                v = np.int32(acc[j] + ctv[j] - zwv[j] * rm)
                row[j] = np.float32(v) * mv[j]


# Runners, one set per micro-kernel (each is compiled only if its ISA is used). ``_plain*``:
# int32 output (matmul, bmm). ``_fused*``: each tile goes to a small scratch buffer and straight
# through ``_epilogue_tile`` while it is hot in cache (the quantized linear layer).


@njit(cache=True)
def _plain16(t, a, a_bs, lda, M, b, b_bs, kg, n_panels, init, ax, c, c_bs, ldc, mb, mblk):
    i_b, p, i0, nr = _tile_coords(t, n_panels, mblk, mb, M)
    _rows16(
        a, i_b * a_bs + i0 * lda, lda, nr, b, i_b * b_bs + p * kg * 4 * NR, kg,
        init, (i_b * n_panels + p) * NR, ax, c, i_b * c_bs + i0 * ldc + p * NR, ldc,
    )  # fmt: skip


@njit(parallel=True, cache=True)
def _run16(ntiles, par, a, a_bs, lda, M, b, b_bs, kg, n_panels, init, ax, c, c_bs, ldc, mb, mblk):
    if par:
        for t in prange(ntiles):
            _plain16(t, a, a_bs, lda, M, b, b_bs, kg, n_panels, init, ax, c, c_bs, ldc, mb, mblk)
    else:
        for t in range(ntiles):
            _plain16(t, a, a_bs, lda, M, b, b_bs, kg, n_panels, init, ax, c, c_bs, ldc, mb, mblk)


@njit(cache=True)
def _fused16(
    t,
    a,
    lda,
    M,
    N,
    b,
    kg,
    n_panels,
    init,
    ax,
    mb,
    mblk,
    rs,
    ct,
    zw,
    mode,
    mult,
    m0,
    lsh,
    rsh,
    zo,
    lo,
    hi,
    out,
):
    _, p, i0, nr = _tile_coords(t, n_panels, mblk, mb, M)
    sc = np.empty(nr * NR, dtype=np.int32)  # (nr, 64) int32 scratch tile
    _rows16(a, i0 * lda, lda, nr, b, p * kg * 4 * NR, kg, init, p * NR, ax, sc, 0, NR)
    n0 = p * NR
    _epilogue_tile(
        sc, i0, nr, n0, min(NR, N - n0), rs, ct, zw, mode, mult, m0, lsh, rsh, zo, lo, hi, out
    )


@njit(parallel=True, cache=True)
def _frun16(
    ntiles,
    par,
    a,
    lda,
    M,
    N,
    b,
    kg,
    n_panels,
    init,
    ax,
    mb,
    mblk,
    rs,
    ct,
    zw,
    mode,
    mult,
    m0,
    lsh,
    rsh,
    zo,
    lo,
    hi,
    out,
):
    if par:
        for t in prange(ntiles):
            _fused16(
                t,
                a,
                lda,
                M,
                N,
                b,
                kg,
                n_panels,
                init,
                ax,
                mb,
                mblk,
                rs,
                ct,
                zw,
                mode,
                mult,
                m0,
                lsh,
                rsh,
                zo,
                lo,
                hi,
                out,
            )
    else:
        for t in range(ntiles):
            _fused16(
                t,
                a,
                lda,
                M,
                N,
                b,
                kg,
                n_panels,
                init,
                ax,
                mb,
                mblk,
                rs,
                ct,
                zw,
                mode,
                mult,
                m0,
                lsh,
                rsh,
                zo,
                lo,
                hi,
                out,
            )


@njit(cache=True)
def _plain8(t, a, a_bs, lda, M, b, b_bs, kg, n_panels, init, ax, c, c_bs, ldc, mb, mblk):
    i_b, p, i0, nr = _tile_coords(t, n_panels, mblk, mb, M)
    _rows8(
        a, i_b * a_bs + i0 * lda, lda, nr, b, i_b * b_bs + p * kg * 4 * NR, kg,
        init, (i_b * n_panels + p) * NR, ax, c, i_b * c_bs + i0 * ldc + p * NR, ldc,
    )  # fmt: skip


@njit(parallel=True, cache=True)
def _run8(ntiles, par, a, a_bs, lda, M, b, b_bs, kg, n_panels, init, ax, c, c_bs, ldc, mb, mblk):
    if par:
        for t in prange(ntiles):
            _plain8(t, a, a_bs, lda, M, b, b_bs, kg, n_panels, init, ax, c, c_bs, ldc, mb, mblk)
    else:
        for t in range(ntiles):
            _plain8(t, a, a_bs, lda, M, b, b_bs, kg, n_panels, init, ax, c, c_bs, ldc, mb, mblk)


@njit(cache=True)
def _fused8(
    t,
    a,
    lda,
    M,
    N,
    b,
    kg,
    n_panels,
    init,
    ax,
    mb,
    mblk,
    rs,
    ct,
    zw,
    mode,
    mult,
    m0,
    lsh,
    rsh,
    zo,
    lo,
    hi,
    out,
):
    _, p, i0, nr = _tile_coords(t, n_panels, mblk, mb, M)
    sc = np.empty(nr * NR, dtype=np.int32)  # (nr, 64) int32 scratch tile
    _rows8(a, i0 * lda, lda, nr, b, p * kg * 4 * NR, kg, init, p * NR, ax, sc, 0, NR)
    n0 = p * NR
    _epilogue_tile(
        sc, i0, nr, n0, min(NR, N - n0), rs, ct, zw, mode, mult, m0, lsh, rsh, zo, lo, hi, out
    )


@njit(parallel=True, cache=True)
def _frun8(
    ntiles,
    par,
    a,
    lda,
    M,
    N,
    b,
    kg,
    n_panels,
    init,
    ax,
    mb,
    mblk,
    rs,
    ct,
    zw,
    mode,
    mult,
    m0,
    lsh,
    rsh,
    zo,
    lo,
    hi,
    out,
):
    if par:
        for t in prange(ntiles):
            _fused8(
                t,
                a,
                lda,
                M,
                N,
                b,
                kg,
                n_panels,
                init,
                ax,
                mb,
                mblk,
                rs,
                ct,
                zw,
                mode,
                mult,
                m0,
                lsh,
                rsh,
                zo,
                lo,
                hi,
                out,
            )
    else:
        for t in range(ntiles):
            _fused8(
                t,
                a,
                lda,
                M,
                N,
                b,
                kg,
                n_panels,
                init,
                ax,
                mb,
                mblk,
                rs,
                ct,
                zw,
                mode,
                mult,
                m0,
                lsh,
                rsh,
                zo,
                lo,
                hi,
                out,
            )


@njit(cache=True)
def _plain_portable(t, a, a_bs, lda, M, b, b_bs, kg, n_panels, init, ax, c, c_bs, ldc, mb, mblk):
    i_b, p, i0, nr = _tile_coords(t, n_panels, mblk, mb, M)
    _rows_portable(
        a, i_b * a_bs + i0 * lda, lda, nr, b, i_b * b_bs + p * kg * 4 * NR, kg,
        init, (i_b * n_panels + p) * NR, ax, c, i_b * c_bs + i0 * ldc + p * NR, ldc,
    )  # fmt: skip


@njit(parallel=True, cache=True)
def _run_portable(
    ntiles, par, a, a_bs, lda, M, b, b_bs, kg, n_panels, init, ax, c, c_bs, ldc, mb, mblk
):
    if par:
        for t in prange(ntiles):
            _plain_portable(
                t, a, a_bs, lda, M, b, b_bs, kg, n_panels, init, ax, c, c_bs, ldc, mb, mblk
            )
    else:
        for t in range(ntiles):
            _plain_portable(
                t, a, a_bs, lda, M, b, b_bs, kg, n_panels, init, ax, c, c_bs, ldc, mb, mblk
            )


@njit(cache=True)
def _fused_portable(
    t,
    a,
    lda,
    M,
    N,
    b,
    kg,
    n_panels,
    init,
    ax,
    mb,
    mblk,
    rs,
    ct,
    zw,
    mode,
    mult,
    m0,
    lsh,
    rsh,
    zo,
    lo,
    hi,
    out,
):
    _, p, i0, nr = _tile_coords(t, n_panels, mblk, mb, M)
    sc = np.empty(nr * NR, dtype=np.int32)  # (nr, 64) int32 scratch tile
    _rows_portable(a, i0 * lda, lda, nr, b, p * kg * 4 * NR, kg, init, p * NR, ax, sc, 0, NR)
    n0 = p * NR
    _epilogue_tile(
        sc, i0, nr, n0, min(NR, N - n0), rs, ct, zw, mode, mult, m0, lsh, rsh, zo, lo, hi, out
    )


@njit(parallel=True, cache=True)
def _frun_portable(
    ntiles,
    par,
    a,
    lda,
    M,
    N,
    b,
    kg,
    n_panels,
    init,
    ax,
    mb,
    mblk,
    rs,
    ct,
    zw,
    mode,
    mult,
    m0,
    lsh,
    rsh,
    zo,
    lo,
    hi,
    out,
):
    if par:
        for t in prange(ntiles):
            _fused_portable(
                t,
                a,
                lda,
                M,
                N,
                b,
                kg,
                n_panels,
                init,
                ax,
                mb,
                mblk,
                rs,
                ct,
                zw,
                mode,
                mult,
                m0,
                lsh,
                rsh,
                zo,
                lo,
                hi,
                out,
            )
    else:
        for t in range(ntiles):
            _fused_portable(
                t,
                a,
                lda,
                M,
                N,
                b,
                kg,
                n_panels,
                init,
                ax,
                mb,
                mblk,
                rs,
                ct,
                zw,
                mode,
                mult,
                m0,
                lsh,
                rsh,
                zo,
                lo,
                hi,
                out,
            )


_RUNNERS = {"avx512vnni": _run16, "avxvnni": _run8, "portable": _run_portable}
_FUSED = {"avx512vnni": _frun16, "avxvnni": _frun8, "portable": _frun_portable}
