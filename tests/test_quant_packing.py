"""Bit packing: the byte layout by hand, lossless round trips, exact size accounting, bad input."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from refq.quant import LinearQuantizer, pack_bits, packed_nbytes, unpack_bits


def test_int4_layout_by_hand():
    # element 2i -> low nibble, 2i+1 -> high nibble; two's complement: -1 = 0xF, -8 = 0x8.
    # byte 0 = 0x1 | 0xF << 4 = 0xF1 = 241; byte 1 = 0x7 | 0x8 << 4 = 0x87 = 135
    p = pack_bits(np.array([1, -1, 7, -8], dtype=np.int8), 4)
    assert p.tolist() == [241, 135] and p.dtype == np.uint8
    assert unpack_bits(p, 4, 4, signed=True).tolist() == [1, -1, 7, -8]


def test_int4_odd_count_padded_with_zero_field():
    p = pack_bits(np.array([3, 5, 9], dtype=np.uint8), 4)  # 0x53, then 0x09 (high nibble 0)
    assert p.tolist() == [0x53, 0x09]
    assert unpack_bits(p, 4, 3, signed=False).tolist() == [3, 5, 9]


def test_int2_layout_by_hand():
    # unsigned [1, 2, 3, 0, 1]: 1 | 2 << 2 | 3 << 4 | 0 << 6 = 57; then 1
    assert pack_bits(np.array([1, 2, 3, 0, 1], dtype=np.uint8), 2).tolist() == [57, 1]
    # signed [-2, -1, 0, 1]: fields 2, 3, 0, 1 -> 2 | 3 << 2 | 0 << 4 | 1 << 6 = 78
    p = pack_bits(np.array([-2, -1, 0, 1], dtype=np.int8), 2)
    assert p.tolist() == [78]
    assert unpack_bits(p, 2, 4, signed=True).tolist() == [-2, -1, 0, 1]


def test_int1_and_int8_by_hand():
    bits1 = np.array([1, 0, 1, 1, 0, 0, 0, 1, 1], dtype=np.uint8)
    assert pack_bits(bits1, 1).tolist() == [1 + 4 + 8 + 128, 1]
    assert pack_bits(np.array([-1, 5], dtype=np.int8), 8).tolist() == [255, 5]


def test_packs_along_last_axis():
    codes = np.array([[1, 2, 3], [-4, -3, -2]], dtype=np.int8)
    p = pack_bits(codes, 4)
    assert p.shape == (2, 2)
    assert p[1].tolist() == [0xC | 0xD << 4, 0xE]
    assert np.array_equal(unpack_bits(p, 4, 3, signed=True), codes)


@pytest.mark.parametrize(
    "shape,bits,nbytes", [((3, 5), 4, 9), (10, 2, 3), ((2, 8), 8, 16), ((4, 4, 9), 1, 32)]
)
def test_packed_nbytes_exact(shape, bits, nbytes):
    assert packed_nbytes(shape, bits) == nbytes
    codes = np.zeros(shape, dtype=np.uint8)
    assert pack_bits(codes, bits).nbytes == nbytes


def test_linear_quantizer_int4_codes_pack_losslessly():
    w = np.random.default_rng(0).normal(size=(8, 33))
    qz = LinearQuantizer(bits=4, symmetric=True, axis=0).fit(w)
    q = qz.quantize(w)
    p = pack_bits(q, 4)
    assert p.nbytes == 8 * 17 and q.nbytes == 8 * 33
    assert np.array_equal(qz.dequantize(unpack_bits(p, 4, 33, signed=True)), qz.dequantize(q))


@settings(max_examples=60, deadline=None)
@given(
    st.sampled_from([1, 2, 4, 8]),
    st.booleans(),
    st.integers(0, 3),
    st.integers(0, 37),
    st.integers(0, 2**32 - 1),
)
def test_round_trip(bits, signed, rows, n, seed):
    rng = np.random.default_rng(seed)
    lo, hi = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
    codes = rng.integers(lo, hi + 1, size=(rows, n)).astype(np.int8 if signed else np.uint8)
    p = pack_bits(codes, bits)
    assert p.shape == (rows, -(-n * bits // 8))
    assert p.nbytes == packed_nbytes((rows, n), bits)
    back = unpack_bits(p, bits, n, signed)
    assert back.dtype == codes.dtype
    assert np.array_equal(back, codes)


def test_errors():
    with pytest.raises(ValueError, match=r"bits must be one of \(1, 2, 4, 8\)"):
        pack_bits(np.zeros(4, np.uint8), 3)
    with pytest.raises(ValueError, match=r"out of range for 4-bit signed fields \[-8, 7\]"):
        pack_bits(np.array([8], dtype=np.int8), 4)
    with pytest.raises(ValueError, match=r"out of range for 4-bit unsigned fields \[0, 15\]"):
        pack_bits(np.array([16], dtype=np.uint8), 4)
    with pytest.raises(TypeError, match="integer array"):
        pack_bits(np.array([1.0]), 4)
    with pytest.raises(TypeError, match="uint8"):
        unpack_bits(np.array([1], dtype=np.int16), 4, 2, signed=True)
    with pytest.raises(ValueError, match="do not fit"):
        unpack_bits(np.array([1], dtype=np.uint8), 4, 3, signed=True)
    with pytest.raises(ValueError, match="at least one axis"):
        pack_bits(np.int8(1), 4)
