"""Property tests (hypothesis): invariants of the layers and metrics on random inputs."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from refq.nn import CrossEntropyLoss, LayerNorm, MultiHeadAttention, Softmax
from refq.train.metrics import macro_prf, sequence_metrics

seeds = st.integers(0, 2**31 - 1)


@settings(max_examples=30, deadline=None)
@given(seeds, st.integers(1, 6), st.integers(1, 9), st.floats(0.1, 50.0))
def test_softmax_is_a_distribution_and_shift_invariant(seed, rows, cols, scale):
    x = np.random.default_rng(seed).standard_normal((rows, cols)) * scale
    y = Softmax()(x)
    assert np.all(y >= 0)
    np.testing.assert_allclose(y.sum(-1), 1.0, rtol=1e-12)
    np.testing.assert_allclose(Softmax()(x + 123.0), y, rtol=1e-9, atol=1e-15)


@settings(max_examples=30, deadline=None)
@given(seeds, st.integers(2, 16), st.floats(0.01, 100.0))
def test_layernorm_normalises_and_ignores_affine_input_changes(seed, c, scale):
    x = np.random.default_rng(seed).standard_normal((3, c)) * scale
    ln = LayerNorm(c, eps=0.0, dtype=np.float64)  # eps = 0: exact unit variance
    y = ln(x)
    np.testing.assert_allclose(y.mean(-1), 0.0, atol=1e-9)
    np.testing.assert_allclose(y.var(-1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(ln(3.0 * x + 7.0), y, atol=1e-6)


@settings(max_examples=30, deadline=None)
@given(seeds, st.integers(2, 8), st.floats(0.0, 0.9))
def test_cross_entropy_nonnegative_and_minimised_by_the_target(seed, v, eps):
    rng = np.random.default_rng(seed)
    t = rng.integers(0, v, size=5)
    ce = CrossEntropyLoss(label_smoothing=eps)
    random_loss = ce(rng.standard_normal((5, v)), t)
    confident = np.where(np.arange(v) == t[:, None], 20.0, 0.0)
    assert random_loss >= 0 and ce(confident, t) >= 0
    if eps == 0.0:
        assert ce(confident, t) < random_loss


@settings(max_examples=20, deadline=None)
@given(seeds, st.integers(1, 5), st.integers(1, 6))
def test_causal_attention_ignores_the_future(seed, t_keep, t_extra):
    rng = np.random.default_rng(seed)
    mha = MultiHeadAttention(8, 2, rng=rng, dtype=np.float64)
    x = rng.standard_normal((1, t_keep + t_extra, 8))
    t = x.shape[1]
    mask = np.tril(np.ones((t, t), bool))[None, None]
    full = mha(x, mask=mask)
    short = mha(x[:, :t_keep], mask=mask[..., :t_keep, :t_keep])
    np.testing.assert_allclose(full[:, :t_keep], short, rtol=1e-10, atol=1e-12)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 5), min_size=1, max_size=30), seeds)
def test_metrics_bounds_and_perfect_prediction(labels, seed):
    y = np.array(labels)
    assert macro_prf(y, y) == (1.0, 1.0, 1.0)
    pred = np.random.default_rng(seed).integers(0, 6, size=y.size)
    assert all(0.0 <= v <= 1.0 for v in macro_prf(y, pred))
    ref = np.array([labels + [2]]) + 3
    m = sequence_metrics(np.array([list(pred + 3) + [5]]), ref)
    assert all(0.0 <= v <= 1.0 for v in m.values())


def test_attention_head_split_is_a_view():
    mha = MultiHeadAttention(8, 2)
    y = np.zeros((2, 3, 8), np.float32)
    assert np.shares_memory(mha._split(y), y)  # (B, T, C) -> (B, nh, T, hs) without a copy
