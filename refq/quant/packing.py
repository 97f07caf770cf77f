"""Bit packing of low-bit codes: 8 / bits codes per byte, along the last axis.

Layout (also the layout of the kernels' int4 weights), for ``bits`` in {1, 2, 4, 8}:

- element ``k`` of a row goes to byte ``k // per`` (``per = 8 // bits``), at bit offset
  ``(k % per) * bits``: little-endian within the byte. For 4 bits, element ``2i`` is the low
  nibble and ``2i + 1`` the high nibble of byte ``i``.
- signed codes are stored in two's complement within their field (``-1`` in 4 bits is ``0xF``);
  unpacking sign-extends them.
- a row whose length is not a multiple of ``per`` is padded with zero fields.

Size accounting: ``packed_nbytes(shape, bits)`` is the exact number of bytes of the packed array,
``prod(shape[:-1]) * ceil(shape[-1] * bits / 8)``.
"""

from __future__ import annotations

import math

import numpy as np

from .base import as_code_array

PACK_BITS = (1, 2, 4, 8)


def _check_pack_bits(bits: object) -> int:
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)):
        raise TypeError(f"bits must be an int, got {type(bits).__name__}")
    if bits not in PACK_BITS:
        raise ValueError(
            f"bits must be one of {PACK_BITS} to pack whole fields into a byte, got {bits}"
        )
    return int(bits)


def packed_nbytes(shape: tuple[int, ...] | int, bits: int) -> int:
    """Exact bytes of ``pack_bits`` output for codes of ``shape``.

    >>> packed_nbytes((3, 5), 4), packed_nbytes(10, 2), packed_nbytes((2, 8), 8)
    (9, 3, 16)
    """
    b = _check_pack_bits(bits)
    shape = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)
    if len(shape) == 0:
        raise ValueError("codes must have at least one axis to pack along")
    return math.prod(shape[:-1]) * math.ceil(shape[-1] * b / 8)


def pack_bits(codes: np.ndarray, bits: int) -> np.ndarray:
    """Pack integer codes of ``bits`` bits into uint8, ``8 // bits`` per byte, along the last axis.

    Codes must fit their field: a signed dtype needs ``[-2^(b-1), 2^(b-1) - 1]``, an unsigned one
    ``[0, 2^b - 1]`` (ValueError otherwise). Output shape ``(..., ceil(n * bits / 8))``.

    Worked example, 4 bits: [1, -1, 7] -> fields 0x1, 0xF, 0x7, pad 0x0 -> bytes 0xF1, 0x07.

    >>> pack_bits(np.array([1, -1, 7], dtype=np.int8), 4)
    array([241,   7], dtype=uint8)
    >>> pack_bits(np.array([1, 2, 3, 0, 1], dtype=np.uint8), 2)   # 0b00111001, 0b00000001
    array([57,  1], dtype=uint8)
    """
    b = _check_pack_bits(bits)
    q = as_code_array(codes, "codes")
    if q.ndim == 0:
        raise ValueError("codes must have at least one axis to pack along")
    signed = np.issubdtype(q.dtype, np.signedinteger)
    lo, hi = (-(2 ** (b - 1)), 2 ** (b - 1) - 1) if signed else (0, 2**b - 1)
    if q.size and (q.min() < lo or q.max() > hi):
        kind = "signed" if signed else "unsigned"
        raise ValueError(f"codes out of range for {b}-bit {kind} fields [{lo}, {hi}]")
    per = 8 // b
    n = q.shape[-1]
    nbytes = math.ceil(n / per)
    fields = (q.astype(np.int64) & (2**b - 1)).astype(np.uint8)  # two's complement field
    pad = nbytes * per - n
    fields = np.concatenate([fields, np.zeros(q.shape[:-1] + (pad,), np.uint8)], axis=-1)
    fields = fields.reshape(q.shape[:-1] + (nbytes, per))  # (..., n) -> (..., nbytes, per)
    shifts = (np.arange(per, dtype=np.uint8) * b).astype(np.uint8)  # (per,) bit offsets
    packed = np.bitwise_or.reduce(fields << shifts, axis=-1)  # (..., nbytes, per) -> (..., nbytes)
    return packed.astype(np.uint8)


def unpack_bits(packed: np.ndarray, bits: int, n: int, signed: bool) -> np.ndarray:
    """Inverse of ``pack_bits``: the first ``n`` codes of each row, int8 (signed) or uint8.

    >>> unpack_bits(np.array([241, 7], dtype=np.uint8), 4, 3, signed=True)
    array([ 1, -1,  7], dtype=int8)
    >>> unpack_bits(np.array([241, 7], dtype=np.uint8), 4, 3, signed=False)
    array([ 1, 15,  7], dtype=uint8)
    """
    b = _check_pack_bits(bits)
    p = np.asarray(packed)
    if p.dtype != np.uint8:
        raise TypeError(f"packed must be a uint8 array, got dtype {p.dtype}")
    if p.ndim == 0:
        raise ValueError("packed must have at least one axis")
    per = 8 // b
    if not 0 <= n <= p.shape[-1] * per:
        raise ValueError(f"n={n} codes do not fit in {p.shape[-1]} bytes of {b}-bit fields")
    shifts = (np.arange(per, dtype=np.uint8) * b).astype(np.uint8)  # (per,)
    mask = np.uint8(2**b - 1)
    fields = (p[..., None] >> shifts) & mask  # (..., nbytes) -> (..., nbytes, per) uint8
    fields = fields.reshape(p.shape[:-1] + (p.shape[-1] * per,))[
        ..., :n
    ]  # (..., nbytes * per) -> (..., n)
    if not signed:
        return fields.astype(np.uint8)
    f = fields.astype(np.int16)
    return np.where(f >= 2 ** (b - 1), f - 2**b, f).astype(np.int8)  # sign-extend the field
