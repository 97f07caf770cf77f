"""Residual blocks and stacks: encoder layer, decoder layer, encoder, decoder.

Post-LN (the paper, Vaswani et al. 2017 arXiv:1706.03762):  y = LN(x + Dropout(Sublayer(x)))
Pre-LN (Xiong et al. 2020 arXiv:2002.04745):                 y = x + Dropout(Sublayer(LN(x)))
Pre-LN stacks end with a final LayerNorm (``norm``); post-LN stacks have none.

Child names (with the ``MultiHeadAttention`` and ``FeedForward`` children below them):
    EncoderLayer: self_attn, ff, norm1, norm2, drop1, drop2
    DecoderLayer: self_attn, cross_attn, ff, norm1, norm2, norm3, drop1, drop2, drop3
    TransformerEncoder / TransformerDecoder: layers.0, layers.1, ..., norm (pre-LN only)
"""

from __future__ import annotations

import numpy as np

from refq.nn.activations import Dropout
from refq.nn.attention import MultiHeadAttention
from refq.nn.feedforward import FeedForward
from refq.nn.layernorm import LayerNorm
from refq.nn.module import Module, ModuleList


def _residual_forward(block, norm, drop, x, norm_first, *args, **kw):
    """One residual sub-layer, post-LN or pre-LN (see the module docstring)."""
    if norm_first:
        return x + drop(block(norm(x), *args, **kw))
    return norm(x + drop(block(x, *args, **kw)))


class EncoderLayer(Module):
    """Self-attention sub-layer then feed-forward sub-layer, each residual (post- or pre-LN).

    forward(x (B, T, C), mask) -> (B, T, C). With a causal mask this is also the decoder-only
    (GPT-style) block. Backward of one post-LN sub-layer y = LN(x + D(F(x))):
        dh = LN.backward(dy);  dx = dh + F.backward(D.backward(dh))
    and of one pre-LN sub-layer y = x + D(F(LN(x))):
        dx = dy + LN.backward(F.backward(D.backward(dy)))

    >>> layer = EncoderLayer(8, 2, 16, rng=np.random.default_rng(0))
    >>> layer(np.zeros((1, 5, 8), dtype=np.float32)).shape
    (1, 5, 8)
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        d_ff: int,
        dropout: float = 0.0,
        activation: str = "relu",
        norm_first: bool = False,
        rng: np.random.Generator | None = None,
        dtype: type = np.float32,
    ) -> None:
        super().__init__()
        rng = rng if rng is not None else np.random.default_rng(0)
        self.norm_first = norm_first
        self.self_attn = MultiHeadAttention(d_model, n_heads, dropout, rng=rng, dtype=dtype)
        self.ff = FeedForward(d_model, d_ff, activation, dropout, rng=rng, dtype=dtype)
        self.norm1 = LayerNorm(d_model, dtype=dtype)
        self.norm2 = LayerNorm(d_model, dtype=dtype)
        self.drop1 = Dropout(dropout, seed=int(rng.integers(2**31)))
        self.drop2 = Dropout(dropout, seed=int(rng.integers(2**31)))

    def forward(self, x: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        x = _residual_forward(self.self_attn, self.norm1, self.drop1, x, self.norm_first, mask=mask)
        return _residual_forward(self.ff, self.norm2, self.drop2, x, self.norm_first)

    def backward(self, dout: np.ndarray) -> np.ndarray:
        if self.norm_first:
            d = dout + self.norm2.backward(self.ff.backward(self.drop2.backward(dout)))
            return d + self.norm1.backward(self.self_attn.backward(self.drop1.backward(d)))
        dh2 = self.norm2.backward(dout)
        dy1 = dh2 + self.ff.backward(self.drop2.backward(dh2))
        dh1 = self.norm1.backward(dy1)
        return dh1 + self.self_attn.backward(self.drop1.backward(dh1))


class DecoderLayer(Module):
    """Masked self-attention, cross-attention over the encoder output ``memory``, feed-forward;
    each a residual sub-layer (post- or pre-LN).

    forward(x (B, T, C), memory (B, S, C), self_mask, cross_mask) -> (B, T, C);
    backward(dy) -> (dx, dmemory).

    >>> layer = DecoderLayer(8, 2, 16, rng=np.random.default_rng(0))
    >>> y = layer(np.zeros((1, 3, 8), np.float32), np.ones((1, 4, 8), np.float32))
    >>> [a.shape for a in layer.backward(np.ones_like(y))]
    [(1, 3, 8), (1, 4, 8)]
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        d_ff: int,
        dropout: float = 0.0,
        activation: str = "relu",
        norm_first: bool = False,
        rng: np.random.Generator | None = None,
        dtype: type = np.float32,
    ) -> None:
        super().__init__()
        rng = rng if rng is not None else np.random.default_rng(0)
        self.norm_first = norm_first
        self.self_attn = MultiHeadAttention(d_model, n_heads, dropout, rng=rng, dtype=dtype)
        self.cross_attn = MultiHeadAttention(d_model, n_heads, dropout, rng=rng, dtype=dtype)
        self.ff = FeedForward(d_model, d_ff, activation, dropout, rng=rng, dtype=dtype)
        self.norm1 = LayerNorm(d_model, dtype=dtype)
        self.norm2 = LayerNorm(d_model, dtype=dtype)
        self.norm3 = LayerNorm(d_model, dtype=dtype)
        self.drop1 = Dropout(dropout, seed=int(rng.integers(2**31)))
        self.drop2 = Dropout(dropout, seed=int(rng.integers(2**31)))
        self.drop3 = Dropout(dropout, seed=int(rng.integers(2**31)))

    def forward(
        self,
        x: np.ndarray,
        memory: np.ndarray,
        self_mask: np.ndarray | None = None,
        cross_mask: np.ndarray | None = None,
    ) -> np.ndarray:
        nf = self.norm_first
        x = _residual_forward(self.self_attn, self.norm1, self.drop1, x, nf, mask=self_mask)
        x = _residual_forward(
            self.cross_attn, self.norm2, self.drop2, x, nf, memory, mask=cross_mask
        )
        return _residual_forward(self.ff, self.norm3, self.drop3, x, nf)

    def backward(self, dout: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.norm_first:
            d = dout + self.norm3.backward(self.ff.backward(self.drop3.backward(dout)))
            dq, dmem = self.cross_attn.backward(self.drop2.backward(d))
            d = d + self.norm2.backward(dq)
            d = d + self.norm1.backward(self.self_attn.backward(self.drop1.backward(d)))
            return d, dmem
        dh3 = self.norm3.backward(dout)
        d = dh3 + self.ff.backward(self.drop3.backward(dh3))
        dh2 = self.norm2.backward(d)
        dq, dmem = self.cross_attn.backward(self.drop2.backward(dh2))
        dh1 = self.norm1.backward(dh2 + dq)
        return dh1 + self.self_attn.backward(self.drop1.backward(dh1)), dmem


class TransformerEncoder(Module):
    """A stack of ``EncoderLayer``s (``layers.i``) plus a final LayerNorm ``norm`` when pre-LN.

    >>> enc = TransformerEncoder(2, 8, 2, 16, rng=np.random.default_rng(0))
    >>> [n for n, _ in enc.named_children()]
    ['layers']
    """

    def __init__(
        self,
        n_layers: int,
        d_model: int,
        n_heads: int,
        d_ff: int,
        dropout: float = 0.0,
        activation: str = "relu",
        norm_first: bool = False,
        rng: np.random.Generator | None = None,
        dtype: type = np.float32,
    ) -> None:
        super().__init__()
        rng = rng if rng is not None else np.random.default_rng(0)
        self.layers = ModuleList(
            [
                EncoderLayer(d_model, n_heads, d_ff, dropout, activation, norm_first, rng, dtype)
                for _ in range(n_layers)
            ]
        )
        self.norm_first = norm_first
        if norm_first:
            self.norm = LayerNorm(d_model, dtype=dtype)

    def forward(self, x: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        for layer in self.layers:
            x = layer(x, mask)
        return self.norm(x) if self.norm_first else x

    def backward(self, dout: np.ndarray) -> np.ndarray:
        d = self.norm.backward(dout) if self.norm_first else dout
        for layer in reversed(list(self.layers)):
            d = layer.backward(d)
        return d


class TransformerDecoder(Module):
    """A stack of ``DecoderLayer``s (``layers.i``) plus a final LayerNorm ``norm`` when pre-LN.
    backward(dy) -> (dx, dmemory), dmemory summed over the layers' cross-attentions.

    >>> dec = TransformerDecoder(1, 8, 2, 16, rng=np.random.default_rng(0))
    >>> dec(np.zeros((1, 2, 8), np.float32), np.zeros((1, 3, 8), np.float32)).shape
    (1, 2, 8)
    """

    def __init__(
        self,
        n_layers: int,
        d_model: int,
        n_heads: int,
        d_ff: int,
        dropout: float = 0.0,
        activation: str = "relu",
        norm_first: bool = False,
        rng: np.random.Generator | None = None,
        dtype: type = np.float32,
    ) -> None:
        super().__init__()
        rng = rng if rng is not None else np.random.default_rng(0)
        self.layers = ModuleList(
            [
                DecoderLayer(d_model, n_heads, d_ff, dropout, activation, norm_first, rng, dtype)
                for _ in range(n_layers)
            ]
        )
        self.norm_first = norm_first
        if norm_first:
            self.norm = LayerNorm(d_model, dtype=dtype)

    def forward(
        self,
        x: np.ndarray,
        memory: np.ndarray,
        self_mask: np.ndarray | None = None,
        cross_mask: np.ndarray | None = None,
    ) -> np.ndarray:
        for layer in self.layers:
            x = layer(x, memory, self_mask, cross_mask)
        return self.norm(x) if self.norm_first else x

    def backward(self, dout: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        d = self.norm.backward(dout) if self.norm_first else dout
        dmem = None
        for layer in reversed(list(self.layers)):
            d, dm = layer.backward(d)
            dmem = dm if dmem is None else dmem + dm
        return d, dmem
