"""int4 weights: two codes per byte, unpacked to int8 once per GEMM call.

Layout (the same as ``refq.quant.packing.pack_bits(codes, 4)``): along the last axis, element
``2i`` goes to the low nibble and ``2i + 1`` to the high nibble of byte ``i``; each code in
``[-8, 7]`` is stored in two's complement in its 4 bits; an odd count is padded with a zero field.

    byte[i] = (c[2i] & 0xF) | ((c[2i+1] & 0xF) << 4)
    c       = nibble - 16 if nibble >= 8 else nibble                 (sign extension)

``pack_weight_int4`` stores the weight already in the GEMM kernel's order (``gemm.pack_layout``)
with its nibbles packed the same way, so the per-call unpacking (``unpack_nibbles``) is a straight
linear pass: half the weight memory, one O(N K) expansion per call next to the O(M N K) GEMM.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from refq.kernels.gemm import PackedWeight, pack_layout


def pack_int4(codes: np.ndarray) -> np.ndarray:
    """Pack int4 codes ``(..., K)`` (int8 values in [-8, 7]) into ``(..., ceil(K/2))`` uint8.

    >>> pack_int4(np.array([1, -1, 7], dtype=np.int8))   # 0xF1 = 241; 7 with a zero pad: 0x07
    array([241,   7], dtype=uint8)
    """
    codes = np.asarray(codes)
    if codes.dtype.kind not in "iu":
        raise TypeError(f"int4 codes must be integers, got {codes.dtype}")
    if codes.size and (codes.min() < -8 or codes.max() > 7):
        raise ValueError("int4 codes must be in [-8, 7]")
    k = codes.shape[-1]
    if k % 2:  # (..., K) -> (..., K + 1) with a zero field
        codes = np.concatenate([codes, np.zeros((*codes.shape[:-1], 1), codes.dtype)], axis=-1)
    u = (codes.astype(np.int16) & 0xF).astype(np.uint8)  # two's complement in 4 bits
    return u[..., 0::2] | (u[..., 1::2] << 4)  # (..., K/2) low | high


def unpack_int4(packed: np.ndarray, k: int) -> np.ndarray:
    """Inverse of ``pack_int4``: ``(..., ceil(k/2))`` uint8 -> ``(..., k)`` int8 codes.

    >>> unpack_int4(np.array([241, 7], dtype=np.uint8), 3)
    array([ 1, -1,  7], dtype=int8)
    """
    packed = np.asarray(packed)
    if packed.dtype != np.uint8:
        raise TypeError(f"packed int4 data must be uint8, got {packed.dtype}")
    if packed.shape[-1] != -(-k // 2):
        raise ValueError(f"{packed.shape[-1]} bytes cannot hold k = {k} int4 codes")
    lo = (packed & 0xF).astype(np.int8)
    hi = (packed >> 4).astype(np.int8)
    both = np.stack([lo, hi], axis=-1).reshape(*packed.shape[:-1], -1)  # (..., K/2, 2) -> (..., K)
    both = np.where(both >= 8, both - 16, both).astype(np.int8)  # sign-extend the nibble
    return both[..., :k]


@njit(parallel=True, cache=True)
def _unpack_nibbles(src, dst):  # (S,) uint8 -> (2 S,) int8
    for i in prange(src.size):
        b = np.int32(src[i])
        lo = b & 0xF
        hi = b >> 4
        dst[2 * i] = np.int8(lo - 16 if lo >= 8 else lo)
        dst[2 * i + 1] = np.int8(hi - 16 if hi >= 8 else hi)


def unpack_nibbles(data: np.ndarray, size: int) -> np.ndarray:
    """Jitted ``unpack_int4`` of a flat buffer holding ``size`` codes (``size`` even) -> int8.

    >>> unpack_nibbles(np.array([241, 8], dtype=np.uint8), 4)
    array([ 1, -1, -8,  0], dtype=int8)
    """
    if data.dtype != np.uint8 or data.ndim != 1 or 2 * data.size != size:
        raise ValueError(f"expected {size // 2} uint8 bytes, got {data.dtype} {data.shape}")
    out = np.empty(size, dtype=np.int8)
    _unpack_nibbles(data, out)
    return out


def pack_weight_int4(w_packed: np.ndarray, k: int) -> PackedWeight:
    """Prepare int4 weights for ``matmul_int8_packed``: ``w_packed (N, ceil(k/2))`` uint8.

    ``w_packed`` is in the contract layout (``pack_int4`` / ``refq.quant.packing.pack_bits``).
    The result holds the kernel-order codes, still two per byte (``bits == 4``), and the column
    sums; ``matmul_int8_packed`` unpacks them once per call.

    >>> codes = np.array([[1, -8, 7], [-1, 2, 0]], dtype=np.int8)      # (N=2, K=3)
    >>> pw = pack_weight_int4(pack_int4(codes), 3)
    >>> pw.bits, pw.shape, pw.col_sums
    (4, (2, 3), array([0, 1], dtype=int32))
    """
    if not isinstance(w_packed, np.ndarray) or w_packed.ndim != 2:
        raise ValueError("w_packed must be a 2-D uint8 array (N, ceil(K/2))")
    codes = unpack_int4(w_packed, k)  # (N, ceil(K/2)) uint8 -> (N, K) int8
    data8, n_pad, k_pad = pack_layout(codes)
    col_sums = codes.sum(axis=1, dtype=np.int64).astype(np.int32)  # (N, K) -> (N,)
    data4 = pack_int4(data8)  # n_pad * k_pad is a multiple of 256: no padding field
    return PackedWeight(data4, codes.shape[0], k, n_pad, k_pad, col_sums, 4)
