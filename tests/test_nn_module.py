"""The Module seam: names of the quantizable matmuls, set_submodule, state dicts, dtypes."""

from __future__ import annotations

import numpy as np
import pytest

from refq.nn import (
    Linear,
    MatMul,
    Module,
    TransformerConfig,
    build_model,
    quantizable_modules,
)

SMALL = dict(
    vocab_size=9, d_model=8, n_heads=2, d_ff=16, n_encoder_layers=1, n_decoder_layers=1, max_len=8
)
SRC = np.array([[3, 4, 5, 0], [6, 7, 8, 3]])
TGT = np.array([[1, 5, 4, 3], [1, 3, 8, 7]])


def attn_names(prefix):
    return [
        f"{prefix}.{n}"
        for n in ("q_proj", "k_proj", "v_proj", "out_proj", "qk_matmul", "pv_matmul")
    ]


def test_seq2seq_quantizable_matmul_names_are_stable():
    model = build_model(TransformerConfig(**SMALL))
    names = [n for n, _ in quantizable_modules(model)]
    expected = (
        attn_names("encoder.layers.0.self_attn")
        + ["encoder.layers.0.ff.fc1", "encoder.layers.0.ff.fc2"]
        + attn_names("decoder.layers.0.self_attn")
        + attn_names("decoder.layers.0.cross_attn")
        + ["decoder.layers.0.ff.fc1", "decoder.layers.0.ff.fc2", "lm_head"]
    )
    assert names == expected
    kinds = {n: type(m) for n, m in quantizable_modules(model)}
    assert kinds["encoder.layers.0.self_attn.qk_matmul"] is MatMul
    assert kinds["lm_head"] is Linear


def test_param_layout_out_in():
    cfg = TransformerConfig(**SMALL)
    sd = build_model(cfg).state_dict()
    assert sd["encoder.layers.0.ff.fc1.weight"].shape == (16, 8)  # (out, in)
    assert sd["encoder.layers.0.ff.fc2.weight"].shape == (8, 16)
    assert sd["lm_head.weight"].shape == (9, 8)
    assert sd["src_input.embed.weight"].shape == (9, 8)
    assert sd["decoder.layers.0.norm3.bias"].shape == (8,)
    assert all(v.dtype == np.float32 for v in sd.values())


class Recording(Module):
    """A wrapper like PTQ/QAT will write: same signature, scales the output by 2."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner
        self.calls = 0

    def forward(self, *args):
        self.calls += 1
        return 2 * self.inner(*args)

    def backward(self, dout):
        self.calls += 1
        return self.inner.backward(2 * dout)


def test_set_submodule_swaps_without_editing_the_model():
    model = build_model(TransformerConfig(**SMALL))
    ref = model(SRC, TGT)
    for name in ("encoder.layers.0.ff.fc1", "decoder.layers.0.cross_attn.qk_matmul", "lm_head"):
        model.set_submodule(name, Recording(model.get_submodule(name)))
    out = model(SRC, TGT)
    assert not np.allclose(out, ref)
    model.backward(np.ones_like(out))
    for name in ("encoder.layers.0.ff.fc1", "decoder.layers.0.cross_attn.qk_matmul", "lm_head"):
        w = model.get_submodule(name)
        assert isinstance(w, Recording) and w.calls == 2
    # the wrapped module's params keep their names under the wrapper
    assert "lm_head.inner.weight" in model.state_dict()
    names = [n for n, _ in quantizable_modules(model)]
    assert "encoder.layers.0.ff.fc1.inner" in names


def test_set_submodule_errors():
    model = build_model(TransformerConfig(**SMALL))
    with pytest.raises(ValueError, match="no submodule"):
        model.set_submodule("encoder.layers.5.ff", Linear(2, 2))
    with pytest.raises(TypeError, match="forward"):
        model.set_submodule("lm_head", object())
    with pytest.raises(ValueError, match="no submodule"):
        model.get_submodule("encoder.nothing")


def test_load_state_dict_from_plain_dict():
    a = build_model(TransformerConfig(**SMALL, seed=1))
    b = build_model(TransformerConfig(**SMALL, seed=2))
    assert not np.array_equal(a(SRC, TGT), b(SRC, TGT))
    plain = {k: v.astype(np.float64) for k, v in a.state_dict().items()}  # another framework
    w_before = b.get_submodule("lm_head").params["weight"]
    b.load_state_dict(plain)
    assert b.get_submodule("lm_head").params["weight"] is w_before  # in place
    np.testing.assert_array_equal(a(SRC, TGT), b(SRC, TGT))


def test_load_state_dict_errors():
    m = build_model(TransformerConfig(**SMALL))
    sd = m.state_dict()
    bad = dict(sd)
    bad.pop("lm_head.bias")
    with pytest.raises(ValueError, match="missing keys \\['lm_head.bias'\\]"):
        m.load_state_dict(bad)
    bad = dict(sd, extra=np.zeros(2))
    with pytest.raises(ValueError, match="unexpected keys \\['extra'\\]"):
        m.load_state_dict(bad)
    bad = dict(sd)
    bad["lm_head.weight"] = np.zeros((3, 3))
    with pytest.raises(ValueError, match="shape mismatch for 'lm_head.weight'"):
        m.load_state_dict(bad)


def test_to_dtype_and_train_eval_flags():
    m = build_model(TransformerConfig(**SMALL, dropout=0.1))
    m.to_dtype(np.float64)
    assert all(v.dtype == np.float64 for _, v in m.named_parameters())
    assert all(v.dtype == np.float64 for _, v in m.named_grads())
    assert m(SRC, TGT).dtype == np.float64
    m.eval()
    assert not any(sub.training for _, sub in m.named_modules())
    y1, y2 = m(SRC, TGT), m(SRC, TGT)
    np.testing.assert_array_equal(y1, y2)  # dropout off in eval
    m.train()
    assert all(sub.training for _, sub in m.named_modules())
    with pytest.raises(TypeError, match="floating"):
        m.to_dtype(np.int32)


def test_same_seed_bit_identical_weights():
    a = build_model(TransformerConfig(**SMALL, seed=7)).state_dict()
    b = build_model(TransformerConfig(**SMALL, seed=7)).state_dict()
    c = build_model(TransformerConfig(**SMALL, seed=8)).state_dict()
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not all(np.array_equal(a[k], c[k]) for k in a)


def test_model_bad_inputs():
    m = build_model(TransformerConfig(**SMALL))
    with pytest.raises(ValueError, match="out of vocabulary"):
        m(np.array([[3, 9]]), TGT[:1])
    with pytest.raises(TypeError, match="integers"):
        m(SRC.astype(np.float32), TGT)
    with pytest.raises(ValueError, match="max_len=8"):
        m(np.ones((1, 9), dtype=np.int64), TGT[:1])
    with pytest.raises(ValueError, match="tgt_in"):
        m(SRC, TGT[:1])
    with pytest.raises(ValueError, match="n_classes"):
        build_model(TransformerConfig(**dict(SMALL, vocab_size=5), kind="classifier"))
    with pytest.raises(ValueError, match="unknown model kind"):
        TransformerConfig(kind="rnn").validate()


def test_causality_of_decoder_only_lm():
    m = build_model(TransformerConfig(**SMALL, kind="lm"))
    x = np.array([[3, 4, 5, 6]])
    y = m(x)
    x2 = x.copy()
    x2[0, 3] = 8  # a later token cannot change earlier logits
    np.testing.assert_array_equal(m(x2)[0, :3], y[0, :3])
