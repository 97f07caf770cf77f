"""The fast int8 GEMM: bit-exact with the NumPy spec and the triple loop, on every ISA path."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from refq.kernels import gemm, simd
from refq.kernels.gemm import matmul_int8, matmul_int8_packed, max_safe_k, pack_layout, pack_weight
from refq.kernels.reference import matmul_reference
from refq.kernels.spec import matmul_spec

ISAS = [i for i in ("avx512vnni", "avxvnni", "portable") if i in simd.supported_isas()]


def rand(rng, shape, dtype):
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max + 1, size=shape).astype(dtype)


@pytest.fixture(params=ISAS)
def isa(request, monkeypatch):
    monkeypatch.setattr(simd, "ISA", request.param)
    return request.param


def test_hand_worked_example(isa):
    a = np.array([[1, 2, 3], [-1, 0, 127]], dtype=np.int8)
    w = np.array([[1, -2, 3], [4, 5, -6]], dtype=np.int8)  # (N, K)
    # [1 - 4 + 9, 4 + 10 - 18], [-1 + 381, -4 - 762]
    expected = np.array([[6, -4], [380, -766]], dtype=np.int32)
    np.testing.assert_array_equal(matmul_int8_packed(a, pack_weight(w)), expected)


@pytest.mark.parametrize("dtype", [np.int8, np.uint8])
@pytest.mark.parametrize(
    "m,k,n",
    [(1, 1, 1), (1, 4, 64), (5, 3, 7), (6, 8, 64), (7, 260, 65), (13, 130, 70), (64, 256, 128),
     (100, 513, 190), (2, 1030, 3)],
)  # fmt: skip
def test_bit_exact_with_spec_and_reference(isa, dtype, m, k, n):
    rng = np.random.default_rng(m * 1000 + k * 10 + n)
    a, b = rand(rng, (m, k), dtype), rand(rng, (k, n), np.int8)
    c = matmul_int8(a, b)
    assert c.dtype == np.int32 and c.shape == (m, n)
    np.testing.assert_array_equal(c, matmul_spec(a, b))
    np.testing.assert_array_equal(c, matmul_reference(a, b))


@settings(max_examples=40, deadline=None)
@given(
    m=st.integers(1, 20), k=st.integers(1, 300), n=st.integers(1, 140),
    unsigned=st.booleans(), seed=st.integers(0, 2**31),
)  # fmt: skip
def test_bit_exact_property(m, k, n, unsigned, seed):
    rng = np.random.default_rng(seed)
    a = rand(rng, (m, k), np.uint8 if unsigned else np.int8)
    b = rand(rng, (k, n), np.int8)
    np.testing.assert_array_equal(matmul_int8(a, b), matmul_spec(a, b))


def test_extreme_values_all_paths(isa):
    """-128 * -128 and 255 * -128 everywhere: the largest products (offset trick worst case)."""
    k = 1000
    a = np.full((7, k), -128, np.int8)
    b = np.full((k, 70), -128, np.int8)
    np.testing.assert_array_equal(matmul_int8(a, b), np.full((7, 70), 16384 * k, np.int32))
    au = np.full((7, k), 255, np.uint8)
    np.testing.assert_array_equal(matmul_int8(au, b), np.full((7, 70), -32640 * k, np.int32))


def test_offset_trick_identity_by_hand():
    """sum a w = sum (a + 128) w - 128 sum w; a + 128 is a XOR 0x80 on the byte."""
    a = np.array([-128, -1, 0, 127], dtype=np.int8)
    w = np.array([3, -2, 5, 1], dtype=np.int8)
    # direct: -384 + 2 + 0 + 127 = -255
    assert int(np.dot(a.astype(np.int64), w)) == -255
    a_u = a.view(np.uint8) ^ np.uint8(0x80)
    np.testing.assert_array_equal(a_u, [0, 127, 128, 255])  # = a + 128
    # (0*3 + 127*-2 + 128*5 + 255*1) - 128 * (3 - 2 + 5 + 1) = 641 - 896 = -255
    assert int(np.dot(a_u.astype(np.int64), w)) - 128 * int(w.sum()) == -255


def test_pack_layout_by_hand():
    w = np.arange(2 * 9, dtype=np.int8).reshape(2, 9)  # N=2, K=9 -> Np=64, Kp=12
    data, n_pad, k_pad = pack_layout(w)
    assert (n_pad, k_pad) == (64, 12) and data.size == 64 * 12
    blocks = data.reshape(1, 3, 64, 4)  # (P, G, 64, 4)
    np.testing.assert_array_equal(blocks[0, 0, 1], [9, 10, 11, 12])  # w[1, 0:4]
    np.testing.assert_array_equal(blocks[0, 2, 0], [8, 0, 0, 0])  # w[0, 8] then padding
    assert not blocks[0, :, 2:].any()  # padded columns are zero
    pw = pack_weight(w)
    np.testing.assert_array_equal(pw.col_sums, [36, 117])  # 0+..+8, 9+..+17


def test_max_safe_k_values_and_boundary():
    assert max_safe_k(np.int8) == 131071  # (2^31 - 1) // 2^14
    assert max_safe_k(np.uint8) == 65793  # 2^31 // 32640
    # at the bound the worst case still fits: 131071 * 16384 = 2^31 - 16384
    k = max_safe_k(np.int8)
    a = np.full((1, k), -128, np.int8)
    b = np.full((k, 1), -128, np.int8)
    assert matmul_int8(a, b)[0, 0] == 131071 * 16384
    with pytest.raises(ValueError, match="safe reduction length"):
        matmul_int8(np.zeros((1, k + 1), np.int8), np.zeros((k + 1, 1), np.int8))
    with pytest.raises(ValueError, match="65793"):
        matmul_int8(np.zeros((1, 65794), np.uint8), np.zeros((65794, 1), np.int8))


def test_errors_are_clear():
    a = np.zeros((2, 3), np.int8)
    with pytest.raises(TypeError, match="int8 or uint8"):
        matmul_int8(a.astype(np.int16), np.zeros((3, 2), np.int8))
    with pytest.raises(TypeError, match="b must be an int8"):
        matmul_int8(a, np.zeros((3, 2), np.float32))
    with pytest.raises(ValueError, match="K mismatch"):
        matmul_int8(a, np.zeros((4, 2), np.int8))
    with pytest.raises(ValueError, match="2-D"):
        matmul_int8(a[None], np.zeros((3, 2), np.int8))
    with pytest.raises(TypeError, match="PackedWeight"):
        matmul_int8_packed(a, np.zeros((2, 3), np.int8))
    with pytest.raises(TypeError, match="int8"):
        pack_weight(np.zeros((2, 3), np.uint8))
    with pytest.raises(TypeError, match="numpy array"):
        pack_weight([[1, 2]])


def test_non_contiguous_inputs_are_handled():
    rng = np.random.default_rng(1)
    big = rand(rng, (40, 300), np.int8)
    a = big[::2, 5:260]  # strided view (20, 255)
    b = rand(rng, (100, 255), np.int8).T  # transposed view (255, 100)
    assert not a.flags.c_contiguous and not b.flags.c_contiguous
    np.testing.assert_array_equal(matmul_int8(a, b), matmul_spec(a, b))


def test_empty_dimensions():
    assert matmul_int8(np.zeros((0, 5), np.int8), np.zeros((5, 3), np.int8)).shape == (0, 3)
    c = matmul_int8(np.zeros((2, 0), np.int8), np.zeros((0, 3), np.int8))
    np.testing.assert_array_equal(c, np.zeros((2, 3), np.int32))


def test_parallel_and_serial_agree(monkeypatch):
    rng = np.random.default_rng(2)
    a, w = rand(rng, (200, 256), np.int8), rand(rng, (192, 256), np.int8)
    pw = pack_weight(w)
    par = matmul_int8_packed(a, pw)
    monkeypatch.setattr(gemm, "PARALLEL_MIN_OPS", 1 << 62)
    np.testing.assert_array_equal(matmul_int8_packed(a, pw), par)
    np.testing.assert_array_equal(par, matmul_spec(a, w.T))


def test_deterministic():
    rng = np.random.default_rng(3)
    a, b = rand(rng, (50, 70), np.int8), rand(rng, (70, 90), np.int8)
    assert matmul_int8(a, b).tobytes() == matmul_int8(a, b).tobytes()
