"""Batched int8 matmul (attention) and int4 weight packing."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from refq.kernels.bmm import bmm_int8, bmm_int8_acc
from refq.kernels.gemm import matmul_int8_packed
from refq.kernels.int4 import pack_int4, pack_weight_int4, unpack_int4, unpack_nibbles
from refq.kernels.reference import bmm_reference
from refq.kernels.spec import matmul_spec


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**31), b=st.integers(1, 6), m=st.integers(1, 40),
    k=st.integers(1, 70), n=st.integers(1, 80), unsigned=st.booleans(),
)  # fmt: skip
def test_bmm_bit_exact(seed, b, m, k, n, unsigned):
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 256, (b, m, k)) if unsigned else rng.integers(-128, 128, (b, m, k))
    a = a.astype(np.uint8 if unsigned else np.int8)
    w = rng.integers(-128, 128, (b, k, n)).astype(np.int8)
    np.testing.assert_array_equal(bmm_int8(a, w), matmul_spec(a, w))


def test_attention_shapes_with_transposed_keys():
    rng = np.random.default_rng(0)
    q = rng.integers(-128, 128, (8, 64, 32)).astype(np.int8)  # (B*nh, T, hs)
    k = rng.integers(-128, 128, (8, 64, 32)).astype(np.int8)
    kt = k.transpose(0, 2, 1)  # (B*nh, hs, T), a view
    s = bmm_int8(q, kt)
    np.testing.assert_array_equal(s, bmm_reference(q, np.ascontiguousarray(kt)))
    p = rng.integers(0, 256, (8, 64, 64)).astype(np.uint8)  # softmax probabilities, uint8
    np.testing.assert_array_equal(bmm_int8(p, k), matmul_spec(p, k))


def test_bmm_acc_zero_points_by_hand():
    a = np.array([[[130, 128], [0, 255]]], dtype=np.uint8)  # z_a = 128 -> [[2, 0], [-128, 127]]
    b = np.array([[[3], [5]]], dtype=np.int8)  # z_b = 1 -> [[2], [4]]
    # [2*2 + 0*4, -128*2 + 127*4] = [4, 252]
    np.testing.assert_array_equal(bmm_int8_acc(a, 128, b, 1).ravel(), [4, 252])


def test_bmm_errors():
    with pytest.raises(ValueError, match="3-D"):
        bmm_int8(np.zeros((2, 3), np.int8), np.zeros((2, 3), np.int8))
    with pytest.raises(ValueError, match="do not form"):
        bmm_int8(np.zeros((2, 3, 4), np.int8), np.zeros((3, 4, 5), np.int8))
    with pytest.raises(TypeError, match="int8"):
        bmm_int8(np.zeros((2, 3, 4), np.int8), np.zeros((2, 4, 5), np.uint8))


def test_int4_pack_by_hand():
    codes = np.array([[1, -1, 7, -8, 0]], dtype=np.int8)
    # bytes: 1 | (0xF << 4) = 0xF1; 7 | (0x8 << 4) = 0x87; 0 | pad 0 = 0x00
    np.testing.assert_array_equal(pack_int4(codes), [[0xF1, 0x87, 0x00]])
    np.testing.assert_array_equal(unpack_int4(pack_int4(codes), 5), codes)


@settings(max_examples=50, deadline=None)
@given(seed=st.integers(0, 2**31), n=st.integers(1, 5), k=st.integers(1, 41))
def test_int4_roundtrip(seed, n, k):
    codes = np.random.default_rng(seed).integers(-8, 8, (n, k)).astype(np.int8)
    packed = pack_int4(codes)
    assert packed.shape == (n, (k + 1) // 2)
    np.testing.assert_array_equal(unpack_int4(packed, k), codes)
    flat = pack_int4(codes.ravel()[: 2 * (codes.size // 2)])
    np.testing.assert_array_equal(
        unpack_nibbles(flat, 2 * flat.size), codes.ravel()[: 2 * flat.size]
    )


def test_int4_errors():
    with pytest.raises(ValueError, match=r"\[-8, 7\]"):
        pack_int4(np.array([8], np.int8))
    with pytest.raises(ValueError, match="cannot hold"):
        unpack_int4(np.zeros(2, np.uint8), 5)


def test_int4_gemm_exact():
    rng = np.random.default_rng(1)
    codes = rng.integers(-8, 8, (130, 77)).astype(np.int8)
    a = rng.integers(-128, 128, (21, 77)).astype(np.int8)
    c = matmul_int8_packed(a, pack_weight_int4(pack_int4(codes), 77))
    np.testing.assert_array_equal(c, matmul_spec(a, codes.T))


def test_int4_layout_agrees_with_refq_quant_packing():
    packing = pytest.importorskip("refq.quant.packing")
    rng = np.random.default_rng(2)
    codes = rng.integers(-8, 8, (6, 11)).astype(np.int8)
    ours = pack_int4(codes)
    theirs = packing.pack_bits(codes, 4)
    np.testing.assert_array_equal(np.asarray(theirs, dtype=np.uint8), ours)
    back = packing.unpack_bits(ours, 4, 11, True)
    np.testing.assert_array_equal(np.asarray(back), codes)
    a = rng.integers(-128, 128, (3, 11)).astype(np.int8)
    c = matmul_int8_packed(a, pack_weight_int4(np.asarray(theirs, dtype=np.uint8), 11))
    np.testing.assert_array_equal(c, matmul_spec(a, codes.T))
