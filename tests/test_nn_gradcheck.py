"""Finite-difference gradient checks (float64, central differences) of every layer and of each
whole model: relative error below 1e-6 for input gradients and every parameter gradient."""

from __future__ import annotations

import numpy as np
import pytest

from refq.nn import (
    GELU,
    CrossEntropyLoss,
    DecoderLayer,
    Embedding,
    EncoderLayer,
    FeedForward,
    LayerNorm,
    LearnedPositionalEmbedding,
    Linear,
    MatMul,
    MultiHeadAttention,
    ReLU,
    SinusoidalPositionalEncoding,
    Softmax,
    TransformerConfig,
    TransformerDecoder,
    TransformerEncoder,
    build_model,
    causal_mask,
    padding_mask,
)
from refq.nn.gradcheck import numerical_grad, rel_error

TOL = 1e-6


def assert_grad_close(analytic, num, what):
    """Relative error < TOL; a gradient that is exactly zero in theory (e.g. the key bias of
    attention: softmax ignores a shift shared by all keys) is checked in absolute terms."""
    if np.abs(num).max(initial=0) < 1e-8:
        assert np.abs(analytic).max(initial=0) < 1e-8, f"{what}: expected a zero gradient"
        return
    err = rel_error(analytic, num)
    assert err < TOL, f"{what}: relative error {err}"


def _rng(seed=0):
    return np.random.default_rng(seed)


def check_module(module, inputs, n_out=1, param_sample=None, seed=0, **kw):
    """Check d(sum(out * R))/d(inputs) and /d(params) against central differences."""
    module.to_dtype(np.float64)
    rng = _rng(seed + 100)
    out = module.forward(*inputs, **kw)
    r = rng.standard_normal(out.shape)

    def f():
        return float((module.forward(*inputs, **kw) * r).sum())

    f()
    module.zero_grad()
    module.forward(*inputs, **kw)
    dins = module.backward(r)
    if not isinstance(dins, tuple):
        dins = (dins,)
    for x, dx in zip(inputs[:n_out], dins, strict=False):
        num = numerical_grad(f, x)
        assert_grad_close(dx, num, "input")
    for name, p in module.named_parameters():
        analytic = dict(module.named_grads())[name].copy()
        num = _sampled_numgrad(f, p, param_sample, rng)
        mask = ~np.isnan(num)
        assert_grad_close(analytic[mask], num[mask], name)


def _sampled_numgrad(f, p, sample, rng, h=1e-6):
    """Numerical d f / d p at ``sample`` random entries (all if None), NaN elsewhere."""
    if sample is None or p.size <= sample:
        return numerical_grad(f, p, h)
    out = np.full(p.shape, np.nan)
    flat, oflat = p.reshape(-1), out.reshape(-1)
    for i in rng.choice(p.size, size=sample, replace=False):
        old = flat[i]
        flat[i] = old + h
        fp = f()
        flat[i] = old - h
        fm = f()
        flat[i] = old
        oflat[i] = (fp - fm) / (2 * h)
    return out


def x64(*shape, seed=1):
    return _rng(seed).standard_normal(shape)


def test_linear():
    check_module(Linear(5, 3, rng=_rng()), [x64(2, 4, 5)])


def test_linear_no_bias():
    check_module(Linear(5, 3, bias=False, rng=_rng()), [x64(4, 5)])


def test_matmul_both_inputs():
    check_module(MatMul(), [x64(2, 3, 4, 5), x64(2, 3, 5, 2, seed=2)], n_out=2)


def test_matmul_broadcast():
    check_module(MatMul(), [x64(2, 3, 4, 5), x64(5, 2, seed=2)], n_out=2)


def test_layernorm():
    ln = LayerNorm(6)
    ln.params["weight"][...] = _rng(3).standard_normal(6)
    ln.params["bias"][...] = _rng(4).standard_normal(6)
    check_module(ln, [x64(3, 4, 6)])


def test_relu():
    x = x64(4, 5)
    x[np.abs(x) < 1e-3] = 0.5  # stay away from the kink
    check_module(ReLU(), [x])


def test_gelu():
    check_module(GELU(), [x64(4, 5) * 2])


def test_softmax():
    check_module(Softmax(axis=-1), [x64(3, 5)])
    check_module(Softmax(axis=0), [x64(3, 5)])


def test_embedding_param_grad():
    emb = Embedding(7, 4, rng=_rng())
    check_module(emb, [np.array([[1, 3, 3], [6, 0, 1]])], n_out=0)


def test_sinusoidal_and_learned_positional():
    check_module(SinusoidalPositionalEncoding(8, 4), [x64(2, 5, 4)])
    check_module(LearnedPositionalEmbedding(8, 4, rng=_rng()), [x64(2, 5, 4)])


@pytest.mark.parametrize("masked", [False, True])
def test_self_attention(masked):
    x = x64(2, 5, 8)
    mask = None
    if masked:
        tokens = np.array([[3, 4, 5, 0, 0], [3, 4, 5, 6, 7]])
        mask = causal_mask(5) & padding_mask(tokens, 0)
    check_module(MultiHeadAttention(8, 2, rng=_rng()), [x], mask=mask)


def test_cross_attention_both_inputs():
    tokens = np.array([[3, 4, 0], [5, 6, 7]])
    check_module(
        MultiHeadAttention(8, 2, rng=_rng()),
        [x64(2, 4, 8), x64(2, 3, 8, seed=5)],
        n_out=2,
        mask=padding_mask(tokens, 0),
    )


@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_feedforward(activation):
    check_module(FeedForward(6, 12, activation, rng=_rng()), [x64(2, 3, 6)])


@pytest.mark.parametrize("norm_first", [False, True])
def test_encoder_layer(norm_first):
    layer = EncoderLayer(8, 2, 16, activation="gelu", norm_first=norm_first, rng=_rng())
    check_module(layer, [x64(2, 4, 8)], mask=causal_mask(4), param_sample=10)


@pytest.mark.parametrize("norm_first", [False, True])
def test_decoder_layer(norm_first):
    layer = DecoderLayer(8, 2, 16, activation="gelu", norm_first=norm_first, rng=_rng())
    check_module(
        layer,
        [x64(2, 3, 8), x64(2, 4, 8, seed=7)],
        n_out=2,
        param_sample=8,
        self_mask=causal_mask(3),
    )


def test_stacks():
    check_module(
        TransformerEncoder(2, 8, 2, 16, activation="gelu", norm_first=True, rng=_rng()),
        [x64(2, 4, 8)],
        param_sample=5,
    )
    check_module(
        TransformerDecoder(2, 8, 2, 16, activation="gelu", rng=_rng()),
        [x64(2, 3, 8), x64(2, 4, 8, seed=7)],
        n_out=2,
        param_sample=5,
    )


def test_cross_entropy_grad_with_pad_and_smoothing():
    ce = CrossEntropyLoss(ignore_index=0, label_smoothing=0.1)
    z = x64(3, 4, 6)
    t = np.array([[1, 2, 0, 0], [5, 4, 3, 0], [1, 1, 1, 1]])
    ce(z, t)
    d = ce.backward()
    num = numerical_grad(lambda: ce(z, t), z)
    assert rel_error(d, num) < TOL
    assert np.all(d[t == 0] == 0)  # padded positions get no gradient


MODEL_CFGS = [
    dict(kind="seq2seq", norm_first=False, activation="gelu"),
    dict(kind="seq2seq", norm_first=True, activation="gelu", positional="learned"),
    dict(kind="classifier", n_classes=3, activation="gelu"),
    dict(kind="lm", norm_first=True, activation="gelu"),
]


@pytest.mark.parametrize("kw", MODEL_CFGS, ids=lambda kw: f"{kw['kind']}-{kw.get('norm_first')}")
def test_whole_model(kw):
    cfg = TransformerConfig(
        vocab_size=9,
        d_model=8,
        n_heads=2,
        d_ff=16,
        n_encoder_layers=1,
        n_decoder_layers=1,
        max_len=8,
        seed=3,
        **kw,
    )
    model = build_model(cfg).to_dtype(np.float64)
    ce = CrossEntropyLoss(ignore_index=0, label_smoothing=0.1)
    src = np.array([[3, 4, 5, 6, 0], [7, 8, 3, 4, 5]])
    if kw["kind"] == "seq2seq":
        tgt_in = np.array([[1, 6, 5, 4, 0], [1, 5, 4, 3, 8]])
        tgt_out = np.array([[6, 5, 4, 2, 0], [5, 4, 3, 8, 2]])

        def f():
            return ce(model(src, tgt_in), tgt_out)
    elif kw["kind"] == "classifier":
        labels = np.array([0, 2])

        def f():
            return ce(model(src), labels)
    else:

        def f():
            return ce(model(src[:, :-1]), src[:, 1:])

    model.zero_grad()
    f()
    model.backward(ce.backward())
    grads = {k: g.copy() for k, g in model.named_grads()}
    rng = _rng(11)
    assert len(grads) > 10
    for name, p in model.named_parameters():
        num = _sampled_numgrad(f, p, 6, rng)
        mask = ~np.isnan(num)
        assert_grad_close(grads[name][mask], num[mask], name)
