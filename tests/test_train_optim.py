"""AdamW, clipping and the warm-up schedule, by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from refq.train.optim import AdamW, clip_grad_norm, warmup_cosine


def test_adamw_two_steps_by_hand():
    p = np.array([[1.0, -1.0]])
    g = np.array([[0.5, 2.0]])
    opt = AdamW([("w", p, g)], lr=0.1, betas=(0.9, 0.99), eps=0.0, weight_decay=0.5)
    opt.step()
    # decay: p * (1 - 0.1 * 0.5) = [0.95, -0.95]; then m_hat = g, v_hat = g^2 -> step lr * sign(g)
    np.testing.assert_allclose(p, [[0.85, -1.05]])
    g[...] = [[0.5, -2.0]]
    opt.step()
    m = 0.9 * np.array([0.05, 0.2]) + 0.1 * np.array([0.5, -2.0])  # [0.095, -0.02]
    v = 0.99 * np.array([0.0025, 0.04]) + 0.01 * np.array([0.25, 4.0])
    expected = np.array([0.85, -1.05]) * 0.95 - 0.1 * (m / (1 - 0.81)) / np.sqrt(v / (1 - 0.9801))
    np.testing.assert_allclose(p[0], expected)


def test_bias_not_decayed_and_classic_adam_l2():
    b = np.array([1.0])
    opt = AdamW([("bias", b, np.zeros(1))], lr=0.1, weight_decay=1.0, eps=1e-12)
    opt.step()
    assert b[0] == 1.0  # zero gradient, no decay for 1-D arrays
    w = np.array([[2.0]])
    opt = AdamW([("w", w, np.zeros((1, 1)))], lr=0.1, weight_decay=0.5, decoupled=False, eps=0.0)
    opt.step()  # g = 0 + 0.5 * 2 = 1 -> moves by lr
    assert w[0, 0] == pytest.approx(1.9)


def test_clip_grad_norm():
    g = [np.array([6.0, 0.0]), np.array([[8.0]])]
    assert clip_grad_norm(g, 5.0) == pytest.approx(10.0)
    assert math.sqrt(sum((x**2).sum() for x in g)) == pytest.approx(5.0, rel=1e-5)
    g = [np.array([0.3, 0.4])]
    clip_grad_norm(g, 5.0)
    np.testing.assert_array_equal(g[0], [0.3, 0.4])  # under the limit: untouched


def test_warmup_cosine():
    assert warmup_cosine(4, 1.0, 10, 110) == pytest.approx(0.5)
    assert warmup_cosine(60, 1.0, 10, 110, min_ratio=0.0) == pytest.approx(0.5)  # half-way
    lrs = [warmup_cosine(s, 1.0, 10, 110) for s in range(10, 111)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:], strict=False))  # monotone decay


def test_optimizer_rejects_bad_settings():
    with pytest.raises(ValueError, match="bad AdamW"):
        AdamW([], lr=-1.0)
