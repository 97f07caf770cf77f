"""Weights loaded from a plain dict give the outputs of an independent implementation: a
from-the-equations NumPy forward of a post-LN encoder layer and of a pre-LN decoder-only LM,
written here without refq.nn, with weights laid out as PyTorch does (packed in_proj)."""

from __future__ import annotations

import numpy as np

from refq.nn import EncoderLayer, TransformerConfig, build_model

C, H, F = 8, 2, 16


def ref_ln(x, w, b, eps=1e-5):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


def ref_mha(x, in_w, in_b, out_w, out_b, mask):
    """PyTorch layout: in_proj_weight (3C, C), in_proj_bias (3C,). Loops over batch and head."""
    b, t, _ = x.shape
    hs = C // H
    qkv = x @ in_w.T + in_b
    q, k, v = qkv[..., :C], qkv[..., C : 2 * C], qkv[..., 2 * C :]
    out = np.zeros_like(x)
    for i in range(b):
        for h in range(H):
            sl = slice(h * hs, (h + 1) * hs)
            s = q[i, :, sl] @ k[i, :, sl].T / np.sqrt(hs)
            s = np.where(mask, s, -np.inf)
            p = np.exp(s - s.max(-1, keepdims=True))
            p /= p.sum(-1, keepdims=True)
            out[i, :, sl] = p @ v[i, :, sl]
    return out @ out_w.T + out_b


def torch_style_weights(rng, prefix):
    g = lambda *s: rng.standard_normal(s) * 0.3  # noqa: E731
    return {
        f"{prefix}self_attn.in_proj_weight": g(3 * C, C),
        f"{prefix}self_attn.in_proj_bias": g(3 * C),
        f"{prefix}self_attn.out_proj.weight": g(C, C),
        f"{prefix}self_attn.out_proj.bias": g(C),
        f"{prefix}linear1.weight": g(F, C),
        f"{prefix}linear1.bias": g(F),
        f"{prefix}linear2.weight": g(C, F),
        f"{prefix}linear2.bias": g(C),
        f"{prefix}norm1.weight": 1 + g(C),
        f"{prefix}norm1.bias": g(C),
        f"{prefix}norm2.weight": 1 + g(C),
        f"{prefix}norm2.bias": g(C),
    }


def to_refq(tw, src, dst):
    """Map PyTorch TransformerEncoderLayer names to refq names (split the packed projection)."""
    w, b = tw[f"{src}self_attn.in_proj_weight"], tw[f"{src}self_attn.in_proj_bias"]
    out = {}
    for j, name in enumerate(("q_proj", "k_proj", "v_proj")):
        out[f"{dst}self_attn.{name}.weight"] = w[j * C : (j + 1) * C]
        out[f"{dst}self_attn.{name}.bias"] = b[j * C : (j + 1) * C]
    for a, r in [
        ("self_attn.out_proj", "self_attn.out_proj"),
        ("linear1", "ff.fc1"),
        ("linear2", "ff.fc2"),
        ("norm1", "norm1"),
        ("norm2", "norm2"),
    ]:
        out[f"{dst}{r}.weight"] = tw[f"{src}{a}.weight"]
        out[f"{dst}{r}.bias"] = tw[f"{src}{a}.bias"]
    return out


def ref_layer(x, tw, p, mask, norm_first):
    def attn(y):
        return ref_mha(
            y,
            tw[p + "self_attn.in_proj_weight"],
            tw[p + "self_attn.in_proj_bias"],
            tw[p + "self_attn.out_proj.weight"],
            tw[p + "self_attn.out_proj.bias"],
            mask,
        )

    def ff(y):
        h = np.maximum(y @ tw[p + "linear1.weight"].T + tw[p + "linear1.bias"], 0)
        return h @ tw[p + "linear2.weight"].T + tw[p + "linear2.bias"]

    def n1(y):
        return ref_ln(y, tw[p + "norm1.weight"], tw[p + "norm1.bias"])

    def n2(y):
        return ref_ln(y, tw[p + "norm2.weight"], tw[p + "norm2.bias"])

    if norm_first:
        x = x + attn(n1(x))
        return x + ff(n2(x))
    x = n1(x + attn(x))
    return n2(x + ff(x))


def test_post_ln_encoder_layer_matches_reference():
    rng = np.random.default_rng(0)
    tw = torch_style_weights(rng, "")
    layer = EncoderLayer(C, H, F, norm_first=False, dtype=np.float64)
    layer.load_state_dict(to_refq(tw, "", ""))
    x = rng.standard_normal((2, 5, C))
    full = np.ones((5, 5), bool)
    np.testing.assert_allclose(layer(x), ref_layer(x, tw, "", full, False), rtol=1e-12, atol=1e-12)


def test_pre_ln_decoder_only_lm_matches_reference():
    rng = np.random.default_rng(1)
    cfg = TransformerConfig(
        kind="lm",
        vocab_size=7,
        d_model=C,
        n_heads=H,
        d_ff=F,
        n_decoder_layers=2,
        norm_first=True,
        max_len=6,
        positional="learned",
    )
    model = build_model(cfg).to_dtype(np.float64)
    emb, pos = rng.standard_normal((7, C)), rng.standard_normal((6, C))
    head_w, head_b = rng.standard_normal((7, C)), rng.standard_normal(7)
    fn_w, fn_b = 1 + rng.standard_normal(C) * 0.3, rng.standard_normal(C) * 0.3
    tws = [torch_style_weights(rng, f"layers.{i}.") for i in range(2)]
    sd = {
        "src_input.embed.weight": emb,
        "src_input.pos.weight": pos,
        "blocks.norm.weight": fn_w,
        "blocks.norm.bias": fn_b,
        "lm_head.weight": head_w,
        "lm_head.bias": head_b,
    }
    for i, tw in enumerate(tws):
        sd.update(to_refq(tw, f"layers.{i}.", f"blocks.layers.{i}."))
    model.load_state_dict(sd)

    tokens = np.array([[3, 4, 5, 6, 1], [2, 2, 3, 0, 0]])
    t = tokens.shape[1]
    expected = []
    for row in tokens:  # one sequence at a time, pad keys removed by the mask
        x = emb[row] * np.sqrt(C) + pos[:t]
        mask = np.tril(np.ones((t, t), bool)) & (row != 0)[None, :]
        for i, tw in enumerate(tws):
            x = ref_layer(x[None], tw, f"layers.{i}.", mask, True)[0]
        expected.append(ref_ln(x, fn_w, fn_b) @ head_w.T + head_b)
    got = model(tokens)
    np.testing.assert_allclose(got, np.stack(expected), rtol=1e-10, atol=1e-10)
