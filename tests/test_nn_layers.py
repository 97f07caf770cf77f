"""Hand-worked values of every layer formula, and bad-input errors."""

from __future__ import annotations

import math

import numpy as np
import pytest

from refq.nn import (
    GELU,
    CrossEntropyLoss,
    Dropout,
    Embedding,
    LayerNorm,
    LearnedPositionalEmbedding,
    Linear,
    MatMul,
    MultiHeadAttention,
    ReLU,
    SinusoidalPositionalEncoding,
    Softmax,
    causal_mask,
)


def test_linear_hand_worked():
    lin = Linear(3, 2)
    lin.params["weight"][...] = [[1, 0, -1], [2, 1, 0]]
    lin.params["bias"][...] = [0.5, -1]
    x = np.array([[1.0, 2.0, 3.0]], dtype=np.float32)
    # y0 = 1 - 3 + 0.5 = -1.5 ; y1 = 2 + 2 - 1 = 3
    np.testing.assert_array_equal(lin(x), [[-1.5, 3.0]])
    dx = lin.backward(np.array([[1.0, 2.0]], dtype=np.float32))
    np.testing.assert_array_equal(dx, [[1 + 4, 0 + 2, -1 + 0]])  # dy @ W
    np.testing.assert_array_equal(lin.grads["weight"], [[1, 2, 3], [2, 4, 6]])  # dy^T x
    np.testing.assert_array_equal(lin.grads["bias"], [1, 2])


def test_linear_grads_accumulate_until_zero_grad():
    lin = Linear(2, 1)
    x = np.ones((1, 2), np.float32)
    for _ in range(2):
        lin(x)
        lin.backward(np.ones((1, 1), np.float32))
    np.testing.assert_array_equal(lin.grads["bias"], [2.0])
    lin.zero_grad()
    np.testing.assert_array_equal(lin.grads["bias"], [0.0])


def test_matmul_hand_worked():
    a = np.array([[1.0, 2.0], [3.0, 4.0]])
    b = np.array([[5.0, 6.0], [7.0, 8.0]])
    mm = MatMul()
    np.testing.assert_array_equal(mm(a, b), [[19, 22], [43, 50]])
    da, db = mm.backward(np.array([[1.0, 0.0], [0.0, 0.0]]))
    np.testing.assert_array_equal(da, [[5, 7], [0, 0]])  # dC @ B^T
    np.testing.assert_array_equal(db, [[1, 0], [2, 0]])  # A^T @ dC


def test_layernorm_hand_worked():
    ln = LayerNorm(3, eps=0.0)
    ln.params["weight"][...] = [1, 2, 1]
    ln.params["bias"][...] = [0, 0, 1]
    y = ln(np.array([[1.0, 2.0, 3.0]]))
    # mean 2, var 2/3, xhat = [-1, 0, 1] * sqrt(3/2)
    s = math.sqrt(1.5)
    np.testing.assert_allclose(y, [[-s, 0.0, s + 1]], rtol=1e-12)


def test_relu_gelu_softmax_hand_worked():
    np.testing.assert_array_equal(ReLU()(np.array([-2.0, 0.0, 3.0])), [0, 0, 3])
    g = GELU()(np.array([1.0, -2.0]))
    u1 = math.sqrt(2 / math.pi) * (1 + 0.044715)
    u2 = math.sqrt(2 / math.pi) * (-2 - 0.044715 * 8)
    np.testing.assert_allclose(g, [0.5 * (1 + math.tanh(u1)), -1.0 * (1 + math.tanh(u2))])
    sm = Softmax()(np.array([[1.0, 2.0, 3.0]]))
    e = [math.exp(1), math.exp(2), math.exp(3)]
    np.testing.assert_allclose(sm, [[v / sum(e) for v in e]])


def test_softmax_huge_logits_stay_finite():
    y = Softmax()(np.array([[1000.0, 1000.0, -1000.0]]))
    np.testing.assert_allclose(y, [[0.5, 0.5, 0.0]])


def test_embedding_and_positional_hand_worked():
    emb = Embedding(4, 2)
    emb.params["weight"][...] = [[0, 0], [1, 1], [2, 3], [4, 5]]
    np.testing.assert_array_equal(emb(np.array([[3, 2]])), [[[4, 5], [2, 3]]])
    pe = SinusoidalPositionalEncoding(5, 4, dtype=np.float64)
    y = pe(np.zeros((1, 2, 4)))
    np.testing.assert_allclose(y[0, 1], [math.sin(1), math.cos(1), math.sin(0.01), math.cos(0.01)])
    lp = LearnedPositionalEmbedding(3, 2)
    lp.params["weight"][...] = [[1, 2], [3, 4], [5, 6]]
    np.testing.assert_array_equal(lp(np.zeros((1, 2, 2), np.float32)), [[[1, 2], [3, 4]]])


def test_dropout_scales_and_masks():
    d = Dropout(0.25, seed=0)
    x = np.full((200, 200), 2.0)
    y = d(x)
    kept = y != 0
    np.testing.assert_allclose(y[kept], 2.0 / 0.75)
    assert abs(kept.mean() - 0.75) < 0.01
    np.testing.assert_array_equal(d.backward(np.ones_like(x)), kept / 0.75)
    d.eval()
    np.testing.assert_array_equal(d(x), x)
    with pytest.raises(ValueError, match="probability"):
        Dropout(1.0)


def _identity_attention(d=2):
    mha = MultiHeadAttention(d, 1, dtype=np.float64)
    for name in ("q_proj", "k_proj", "v_proj", "out_proj"):
        lin = mha.get_submodule(name)
        lin.params["weight"][...] = np.eye(d)
        lin.params["bias"][...] = 0
    return mha


def test_attention_hand_worked():
    x = np.array([[[1.0, 0.0], [0.0, 1.0]]])  # Q = K = V = x with identity projections
    mha = _identity_attention()
    a = math.exp(1 / math.sqrt(2))  # scores = x x^T / sqrt(2) = [[1/sqrt2, 0], [0, 1/sqrt2]]
    p0 = [a / (a + 1), 1 / (a + 1)]
    np.testing.assert_allclose(mha(x)[0], [p0, p0[::-1]], rtol=1e-12)
    # causal: token 0 sees only itself
    np.testing.assert_allclose(mha(x, mask=causal_mask(2))[0], [[1, 0], p0[::-1]], rtol=1e-12)


def test_attention_padding_mask_ignores_pad_keys():
    rng = np.random.default_rng(0)
    mha = MultiHeadAttention(4, 2, rng=rng, dtype=np.float64)
    x = rng.standard_normal((1, 3, 4))
    mask = np.array([True, True, False])[None, None, None, :]
    y1 = mha(x, mask=mask)
    x2 = x.copy()
    x2[0, 2] = 100.0  # change the padded position
    y2 = mha(x2, mask=mask)
    np.testing.assert_allclose(y1[0, :2], y2[0, :2], rtol=1e-12)


def test_cross_entropy_hand_worked_with_smoothing_and_pad():
    ce = CrossEntropyLoss(ignore_index=0, label_smoothing=0.2)
    z = np.array([[math.log(3.0), 0.0], [5.0, -5.0]])  # second row: target 0 = pad, ignored
    loss = ce(z, np.array([1, 0]))
    # p = [0.75, 0.25]; q = 0.8 * onehot(1) + 0.2 / 2 = [0.1, 0.9]
    expected = -(0.1 * math.log(0.75) + 0.9 * math.log(0.25))
    assert loss == pytest.approx(expected, rel=1e-12)
    np.testing.assert_allclose(ce.backward(), [[0.65, -0.65], [0.0, 0.0]], atol=1e-12)


def test_cross_entropy_errors():
    ce = CrossEntropyLoss(ignore_index=0)
    with pytest.raises(ValueError, match="out of vocabulary"):
        ce(np.zeros((1, 3)), np.array([3]))
    with pytest.raises(ValueError, match="every target"):
        ce(np.zeros((1, 3)), np.array([0]))
    with pytest.raises(ValueError, match="shape"):
        ce(np.zeros((2, 3)), np.array([1]))


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="in_features=3"):
        Linear(3, 2)(np.zeros((2, 4), np.float32))
    with pytest.raises(TypeError, match="floating"):
        Linear(3, 2)(np.zeros((2, 3), np.int32))
    with pytest.raises(TypeError, match="numpy array"):
        Linear(3, 2)([[1.0, 2.0, 3.0]])
    with pytest.raises(ValueError, match="out of vocabulary"):
        Embedding(5, 2)(np.array([[1, 5]]))
    with pytest.raises(ValueError, match="out of vocabulary"):
        Embedding(5, 2)(np.array([[-1, 2]]))
    with pytest.raises(TypeError, match="integers"):
        Embedding(5, 2)(np.array([[1.0, 2.0]]))
    with pytest.raises(ValueError, match="max_len=4"):
        SinusoidalPositionalEncoding(4, 2)(np.zeros((1, 5, 2), np.float32))
    with pytest.raises(ValueError, match="divisible"):
        MultiHeadAttention(6, 4)
    mha = MultiHeadAttention(4, 2)
    x = np.zeros((1, 3, 4), np.float32)
    with pytest.raises(TypeError, match="boolean"):
        mha(x, mask=np.ones((3, 3)))
    with pytest.raises(ValueError, match="broadcast"):
        mha(x, mask=np.ones((2, 2), bool))
    with pytest.raises(ValueError, match="do not contract"):
        MatMul()(np.zeros((2, 3)), np.zeros((2, 3)))
