"""The fast int8 GEMM: ``C (M, N) int32 = A (M, K) int8|uint8 @ B (K, N) int8``, bit-exact.

Weights are packed once (``pack_weight``, at convert time) into the layout of the VNNI
micro-kernel (``refq.kernels.simd``): panels of ``NR = 64`` output columns, inside a panel
``k``-groups of 4, inside a group the 64 columns with their 4 consecutive ``k`` bytes:

    packed[p, g, n, t] = w[64 p + n, 4 g + t]        (w: PyTorch's (out, in) = (N, K), zero-padded)

The column sums ``colsum[n] = sum_k w[n, k]`` are kept with it: the int8-activation trick (the
zero-point algebra of Jacob et al. 2018, arXiv:1712.05877, section 2.3, with an offset of 128;
the same trick lets gemmlowp / fbgemm feed signed data to uint8 x int8 instructions) computes

    sum_k a[m,k] w[n,k] = sum_k (a[m,k] + 128) w[n,k] - 128 colsum[n]

with ``a + 128`` in uint8, which is what ``vpdpbusd`` (uint8 x int8) multiplies.

Blocking (loops in ``refq.kernels.tiles``): the output is cut into tiles of ``MB`` rows x 64
columns, spread over Numba's threads with ``prange``; inside a tile, ``k`` is cut into blocks of
``KC`` bytes so that the weight block (``KC * 64`` bytes, 16 KiB) stays in L1 while ``MR = 6``
rows of ``A`` at a time stream past it; the micro-kernel holds the 6 x 64 int32 tile in 24 zmm
registers for the whole block.

Overflow: the int32 accumulator wraps modulo 2^32 inside the instruction, and the result is exact
whenever the true sum fits int32 (two's-complement addition is exact modulo 2^32). The true sum
is bounded by ``K * max|a| * max|w|``: 2^14 K for int8 x int8 (K <= 131071) and 32640 K for
uint8 x int8 (K <= 65793). ``max_safe_k`` gives the bound; larger K raises ValueError.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from refq.kernels import simd
from refq.kernels.simd import MR, NR
from refq.kernels.threads import get_num_threads
from refq.kernels.tiles import _FUSED, _RUNNERS, KC  # noqa: F401 (KC: documented here)

INT32_MAX = 2**31 - 1


def max_safe_k(a_dtype: np.dtype | type, b_dtype: np.dtype | type = np.int8) -> int:
    """Largest K for which ``sum_k a[k] b[k]`` always fits int32, for any codes of these dtypes.

    Bound: ``K * max|a * b| <= 2^31 - 1`` (and ``>= -2^31`` on the negative side):
    int8 x int8: max product (-128)(-128) = 16384, so K <= floor((2^31 - 1) / 16384) = 131071;
    uint8 x int8: min product 255 * (-128) = -32640, so K <= floor(2^31 / 32640) = 65793.

    >>> max_safe_k(np.int8), max_safe_k(np.uint8)
    (131071, 65793)
    """
    ia, ib = np.iinfo(np.dtype(a_dtype)), np.iinfo(np.dtype(b_dtype))
    prods = [x * y for x in (ia.min, ia.max) for y in (ib.min, ib.max)]
    hi, lo = max(prods), min(prods)
    k_hi = INT32_MAX // hi if hi > 0 else INT32_MAX
    k_lo = (2**31) // (-lo) if lo < 0 else INT32_MAX
    return int(min(k_hi, k_lo))


# ---------------------------------------------------------------------------------------------
# weight packing


@dataclass(frozen=True)
class PackedWeight:
    """An int8 weight ``w (N, K)`` in the GEMM kernel's layout, with its column sums.

    Attributes: ``data`` (1-D int8, ``n_pad * k_pad`` bytes, or half as many bytes of int4
    nibbles when ``bits == 4``), ``n``, ``k`` (the logical shape of ``w``), ``n_pad`` (N rounded
    up to 64), ``k_pad`` (K rounded up to 4), ``col_sums`` (int32 (N,): ``sum_k w[n, k]``, needed
    for zero-point corrections and the int8-activation offset), ``bits`` (8 or 4).
    """

    data: np.ndarray
    n: int
    k: int
    n_pad: int
    k_pad: int
    col_sums: np.ndarray
    bits: int = 8

    @property
    def shape(self) -> tuple[int, int]:
        """The logical weight shape ``(N, K)``."""
        return (self.n, self.k)

    @property
    def nbytes(self) -> int:
        """Bytes held by the packed data (int4: half of int8)."""
        return int(self.data.nbytes)


def _check_int8_weight(w: np.ndarray, name: str = "w") -> np.ndarray:
    if not isinstance(w, np.ndarray):
        raise TypeError(f"{name} must be a numpy array, got {type(w).__name__}")
    if w.dtype != np.int8:
        raise TypeError(f"{name} must be int8, got {w.dtype}")
    if w.ndim != 2:
        raise ValueError(f"{name} must be 2-D (N, K) = (out, in), got shape {w.shape}")
    return w


def pack_layout(w: np.ndarray) -> tuple[np.ndarray, int, int]:
    """Rearrange ``w (N, K)`` int8 into the kernel layout; returns ``(data, n_pad, k_pad)``.

    ``data[((p * G + g) * 64 + n) * 4 + t] = w[64 p + n, 4 g + t]`` (zero where padded).

    >>> w = np.arange(8, dtype=np.int8).reshape(1, 8)          # N=1, K=8
    >>> data, n_pad, k_pad = pack_layout(w)
    >>> n_pad, k_pad, data.reshape(2, 64, 4)[:, 0]             # two k-groups of column 0
    (64, 8, array([[0, 1, 2, 3],
           [4, 5, 6, 7]], dtype=int8))
    """
    n, k = w.shape
    n_pad, k_pad = -(-n // NR) * NR, -(-k // 4) * 4
    wp = np.zeros((n_pad, k_pad), dtype=np.int8)
    wp[:n, :k] = w
    # (Np, Kp) -> (P, 64, G, 4) -> (P, G, 64, 4)
    data = wp.reshape(n_pad // NR, NR, k_pad // 4, 4).transpose(0, 2, 1, 3)
    return np.ascontiguousarray(data).reshape(-1), n_pad, k_pad


def pack_weight(w: np.ndarray) -> PackedWeight:
    """Pack an int8 weight ``w (N, K)`` (PyTorch's ``(out, in)``) once, for ``matmul_int8_packed``.

    Holds the kernel layout (see ``pack_layout``) and ``col_sums[n] = sum_k w[n, k]`` (int32).
    For int4 codes use ``refq.kernels.int4.pack_weight_int4``.

    >>> pw = pack_weight(np.array([[1, -2, 3], [4, 5, -6]], dtype=np.int8))
    >>> pw.shape, pw.col_sums
    ((2, 3), array([2, 3], dtype=int32))
    """
    w = _check_int8_weight(w)
    data, n_pad, k_pad = pack_layout(w)
    col_sums = w.sum(axis=1, dtype=np.int64).astype(np.int32)  # (N, K) -> (N,)
    return PackedWeight(data, w.shape[0], w.shape[1], n_pad, k_pad, col_sums, 8)


# ---------------------------------------------------------------------------------------------
# public entry points

PARALLEL_MIN_OPS = 1 << 21  # below ~2 M multiply-adds the thread launch costs more than it saves


def _check_activation(a: np.ndarray, ndim: int, name: str = "a") -> np.ndarray:
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{name} must be a numpy array, got {type(a).__name__}")
    if a.dtype not in (np.int8, np.uint8):
        raise TypeError(f"{name} must be int8 or uint8, got {a.dtype}")
    if a.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {a.shape}")
    # documented choice: a non-C-contiguous input (a transpose, a strided slice) is copied
    return np.ascontiguousarray(a)


def _check_k(k: int, a_dtype: np.dtype) -> None:
    limit = max_safe_k(a_dtype, np.int8)
    if k > limit:
        raise ValueError(
            f"K = {k} exceeds the safe reduction length {limit} for {np.dtype(a_dtype)} x int8: "
            "the int32 accumulator could overflow; split K and add the partial sums in int64"
        )


def _tiling(nb: int, m: int, n_panels: int, threads: int) -> tuple[int, int]:
    """Rows per tile ``mb`` (a multiple of MR) and the number of row blocks."""
    mb = min(-(-m // MR) * MR, 32 * MR)
    want = 4 * threads  # enough tiles to balance the threads
    while nb * n_panels * (-(-m // mb)) < want and mb > 4 * MR:
        mb = -(-(mb // 2) // MR) * MR
    return mb, -(-m // mb)


def gemm_batched(
    a: np.ndarray, data: np.ndarray, n: int, n_pad: int, k_pad: int, col_sums: np.ndarray
) -> np.ndarray:
    """``a (B, M, K) int8|uint8`` times packed weights of ``B`` problems -> ``(B, M, N) int32``.

    ``data`` holds the ``B`` packed weights one after the other (each ``n_pad * k_pad`` bytes, int8
    layout of ``pack_layout``), ``col_sums`` is ``(B, N)`` int32. Internal: use ``matmul_int8``,
    ``matmul_int8_packed`` or ``bmm_int8``.
    """
    nb, m, k = a.shape
    _check_k(k, a.dtype)
    if m == 0 or n == 0:
        return np.zeros((nb, m, n), dtype=np.int32)
    if k_pad != k:  # (B, M, K) -> (B, M, Kp), zero pad: the padded weight rows are zero too
        ap = np.zeros((nb, m, k_pad), dtype=a.dtype)
        ap[:, :, :k] = a
        a = ap
    isa = simd.ISA
    n_panels = n_pad // NR
    init = np.zeros((nb, n_pad), dtype=np.int32)
    ax = 0
    if a.dtype == np.int8 and isa != "portable":
        # the offset trick: accumulators start at -128 colsum
        init[:, :n] = col_sums.astype(np.int32) * np.int32(-128)
        ax = 0x80808080 - (1 << 32)  # the xor mask as a signed int32 value
    if isa != "portable":
        a = a.view(np.uint8)  # the micro-kernel reads raw bytes: one compiled variant, not two
    c = np.empty((nb, m, n_pad), dtype=np.int32)
    threads = get_num_threads()
    mb, m_blocks = _tiling(nb, m, n_panels, threads)
    ntiles = nb * m_blocks * n_panels
    par = threads > 1 and ntiles > 1 and nb * m * n_pad * k_pad >= PARALLEL_MIN_OPS
    kg = k_pad // 4
    _RUNNERS[isa](
        ntiles, par, a.reshape(-1), m * k_pad, k_pad, m,
        data.reshape(-1), n_panels * kg * 4 * NR, kg, n_panels,
        init.reshape(-1), ax, c.reshape(-1), m * n_pad, n_pad, mb, m_blocks,
    )  # fmt: skip
    if n_pad != n:  # (B, M, Np) -> (B, M, N)
        c = np.ascontiguousarray(c[:, :, :n])
    return c


def matmul_int8_packed(a: np.ndarray, packed: PackedWeight) -> np.ndarray:
    """``a (M, K) int8|uint8 @ w.T`` for a weight packed by ``pack_weight`` -> ``(M, N) int32``.

    Exact: ``C[m, n] = sum_k a[m, k] w[n, k]`` computed in int32 (see ``max_safe_k``).
    A non-contiguous ``a`` is copied (documented choice); wrong dtype/ndim or K raise.
    int4 weights (``bits == 4``) are unpacked to int8 once per call.

    >>> w = np.array([[1, -2, 3], [4, 5, -6]], dtype=np.int8)     # (N=2, K=3)
    >>> a = np.array([[1, 2, 3], [-1, 0, 127]], dtype=np.int8)    # (M=2, K=3)
    >>> matmul_int8_packed(a, pack_weight(w))                     # a @ w.T, by hand:
    array([[   6,   -4],
           [ 380, -766]], dtype=int32)
    """
    if not isinstance(packed, PackedWeight):
        raise TypeError(f"packed must be a PackedWeight (from pack_weight), got {type(packed)}")
    a = _check_activation(a, 2)
    if a.shape[1] != packed.k:
        raise ValueError(
            f"K mismatch: a is {a.shape} but the packed weight is (N, K) = {packed.shape}"
        )
    data = packed.data
    if packed.bits == 4:
        from refq.kernels.int4 import unpack_nibbles

        data = unpack_nibbles(data, packed.n_pad * packed.k_pad)
    c = gemm_batched(a[None], data, packed.n, packed.n_pad, packed.k_pad, packed.col_sums[None])
    return c[0]  # (1, M, N) -> (M, N)


def matmul_int8(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a (M, K) int8|uint8 @ b (K, N) int8 -> (M, N) int32``, exact, with the fast kernel.

    Packs ``b`` on every call (O(K N)); when ``b`` is a weight used many times, pack it once with
    ``pack_weight(w)`` (``w = b.T``, shape ``(N, K)``) and call ``matmul_int8_packed``.
    ``b`` may have any strides; a non-contiguous ``a`` is copied.

    >>> a = np.array([[1, 2], [3, 4]], dtype=np.int8)
    >>> b = np.array([[5, -6], [7, 8]], dtype=np.int8)
    >>> matmul_int8(a, b)                 # [[1*5+2*7, -1*6+2*8], [3*5+4*7, -3*6+4*8]]
    array([[19, 10],
           [43, 14]], dtype=int32)
    """
    if not isinstance(b, np.ndarray) or b.dtype != np.int8:
        raise TypeError(f"b must be an int8 numpy array, got {getattr(b, 'dtype', type(b))}")
    if b.ndim != 2:
        raise ValueError(f"b must be 2-D (K, N), got shape {b.shape}")
    a = _check_activation(a, 2)
    if a.shape[1] != b.shape[0]:
        raise ValueError(f"K mismatch: a is {a.shape}, b is {b.shape}")
    return matmul_int8_packed(a, pack_weight(b.T))  # (K, N) -> w (N, K)


def gemm_fused(
    a: np.ndarray,
    packed: PackedWeight,
    mode: int,
    rs: np.ndarray,
    ct: np.ndarray,
    zw: np.ndarray,
    mult: np.ndarray,
    m0: np.ndarray,
    lsh: np.ndarray,
    rsh: np.ndarray,
    zo: int,
    lo: int,
    hi: int,
    out: np.ndarray,
) -> np.ndarray:
    """GEMM with the quantized-linear epilogue fused per tile (internal; see ``linear``).

    ``a (M, K)`` int8|uint8 contiguous; ``out (M, N)`` receives, per ``mode``, the corrected
    int32 accumulator (0), requantized codes float/fixed (1/2) or dequantized float32 (3).
    The caller has checked that every corrected value fits int32.
    """
    m, k = a.shape
    _check_k(k, a.dtype)
    n = packed.n
    if m == 0 or n == 0:
        return out
    data = packed.data
    if packed.bits == 4:
        from refq.kernels.int4 import unpack_nibbles

        data = unpack_nibbles(data, packed.n_pad * packed.k_pad)
    if packed.k_pad != k:  # (M, K) -> (M, Kp), zero pad
        ap = np.zeros((m, packed.k_pad), dtype=a.dtype)
        ap[:, :k] = a
        a = ap
    isa = simd.ISA
    n_panels = packed.n_pad // NR
    init = np.zeros(packed.n_pad, dtype=np.int32)
    ax = 0
    if a.dtype == np.int8 and isa != "portable":
        init[:n] = packed.col_sums * np.int32(-128)  # offset trick: start at -128 colsum
        ax = 0x80808080 - (1 << 32)
    if isa != "portable":
        a = a.view(np.uint8)  # raw bytes (see gemm_batched)
    threads = get_num_threads()
    mb, m_blocks = _tiling(1, m, n_panels, threads)
    ntiles = m_blocks * n_panels
    par = threads > 1 and ntiles > 1 and m * packed.n_pad * packed.k_pad >= PARALLEL_MIN_OPS
    kg = packed.k_pad // 4
    _FUSED[isa](
        ntiles, par, a.reshape(-1), packed.k_pad, m, n, data.reshape(-1), kg, n_panels, init, ax,
        mb, m_blocks, rs, ct, zw, mode, mult, m0, lsh, rsh, zo, lo, hi, out,
    )  # fmt: skip
    return out
