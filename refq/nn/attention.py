"""Multi-head attention (Vaswani et al. 2017, arXiv:1706.03762, section 3.2), self and cross.

Every projection is a ``Linear`` and both attention products are ``MatMul`` modules, so a model's
``named_modules()`` lists each quantizable matmul. Children of ``MultiHeadAttention``:
    q_proj, k_proj, v_proj, out_proj   Linear(d_model, d_model): weight (C, C), bias (C,)
    qk_matmul                          MatMul: q (B, nh, Tq, hs) @ k^T (B, nh, hs, Tk) -> scores
    pv_matmul                          MatMul: p (B, nh, Tq, Tk) @ v (B, nh, Tk, hs) -> context
    softmax, attn_dropout              Softmax over keys, Dropout on the probabilities
with C = d_model, nh = n_heads, hs = C / nh.

Masks are boolean, True = may attend, broadcastable to (B, nh, Tq, Tk): ``causal_mask`` and
``padding_mask`` build them; combine with ``&``.
"""

from __future__ import annotations

import math

import numpy as np

from refq.nn._checks import check_float
from refq.nn.activations import Dropout, Softmax
from refq.nn.linear import Linear, MatMul
from refq.nn.module import Module

MASK_VALUE = -1e9  # added in place of masked scores: exp underflows to exactly 0, no NaN


def causal_mask(t: int) -> np.ndarray:
    """(1, 1, T, T) bool, True where key position <= query position.

    >>> causal_mask(3)[0, 0].astype(int)
    array([[1, 0, 0],
           [1, 1, 0],
           [1, 1, 1]])
    """
    return np.tril(np.ones((t, t), dtype=bool))[None, None]


def padding_mask(tokens: np.ndarray, pad_id: int) -> np.ndarray:
    """(B, 1, 1, T) bool, True at real (non-pad) key positions of ``tokens`` (B, T).

    >>> padding_mask(np.array([[5, 6, 0]]), pad_id=0).ravel()
    array([ True,  True, False])
    """
    return (tokens != pad_id)[:, None, None, :]


class MultiHeadAttention(Module):
    """out = Concat_h(softmax(Q_h K_h^T / sqrt(hs) + M) V_h) W_o^T + b_o,
    Q = x_q W_q^T + b_q, K = x_kv W_k^T + b_k, V = x_kv W_v^T + b_v (x_kv = x_q for self-attention),
    M = 0 where the mask is True, -1e9 elsewhere. The 1/sqrt(hs) scale is applied to the output of
    ``qk_matmul`` (so that matmul sees the raw projections).

    Backward (S = scores after scaling, P = softmax(S), dctx from out_proj.backward):
        dP, dV = pv_matmul.backward(dctx);  dS = P * (dP - sum_k dP P)   (softmax backward)
        dQ, dK^T = qk_matmul.backward(dS / sqrt(hs));  then through the three projections.
    ``backward`` returns dx for self-attention (the three input paths summed) and
    ``(dx_q, dx_kv)`` for cross-attention (when ``forward`` got ``x_kv``).

    >>> mha = MultiHeadAttention(4, 2, rng=np.random.default_rng(0))
    >>> x = np.ones((1, 3, 4), dtype=np.float32)
    >>> mha(x, mask=causal_mask(3)).shape
    (1, 3, 4)
    >>> mha.backward(np.ones((1, 3, 4), dtype=np.float32)).shape
    (1, 3, 4)
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        dropout: float = 0.0,
        rng: np.random.Generator | None = None,
        dtype: type = np.float32,
    ) -> None:
        super().__init__()
        if d_model % n_heads != 0:
            raise ValueError(f"d_model={d_model} is not divisible by n_heads={n_heads}")
        rng = rng if rng is not None else np.random.default_rng(0)
        self.d_model, self.n_heads, self.head_size = d_model, n_heads, d_model // n_heads
        self.q_proj = Linear(d_model, d_model, rng=rng, dtype=dtype)
        self.k_proj = Linear(d_model, d_model, rng=rng, dtype=dtype)
        self.v_proj = Linear(d_model, d_model, rng=rng, dtype=dtype)
        self.out_proj = Linear(d_model, d_model, rng=rng, dtype=dtype)
        self.qk_matmul = MatMul()
        self.pv_matmul = MatMul()
        self.softmax = Softmax(axis=-1)
        self.attn_dropout = Dropout(dropout, seed=int(rng.integers(2**31)))
        self._cache: tuple | None = None

    def _split(self, y: np.ndarray) -> np.ndarray:
        b, t, _ = y.shape
        return y.reshape(b, t, self.n_heads, self.head_size).transpose(0, 2, 1, 3)
        # (B, T, C) -> (B, T, nh, hs) -> (B, nh, T, hs)   (a view)

    def _merge(self, y: np.ndarray) -> np.ndarray:
        b, _, t, _ = y.shape
        return y.transpose(0, 2, 1, 3).reshape(b, t, self.d_model)
        # (B, nh, T, hs) -> (B, T, nh, hs) -> (B, T, C)

    def forward(
        self, x_q: np.ndarray, x_kv: np.ndarray | None = None, mask: np.ndarray | None = None
    ) -> np.ndarray:
        check_float(x_q, "MultiHeadAttention.forward(x_q)")
        cross = x_kv is not None
        x_kv = x_q if x_kv is None else check_float(x_kv, "MultiHeadAttention.forward(x_kv)")
        if x_q.ndim != 3 or x_kv.ndim != 3 or x_q.shape[-1] != self.d_model:
            raise ValueError(
                f"MultiHeadAttention: expected (B, T, {self.d_model}) inputs, got {x_q.shape} "
                f"and {x_kv.shape}"
            )
        if x_kv.shape[0] != x_q.shape[0] or x_kv.shape[-1] != self.d_model:
            raise ValueError(
                f"MultiHeadAttention: x_kv shape {x_kv.shape} does not match {x_q.shape}"
            )
        q = self._split(self.q_proj(x_q))  # (B, nh, Tq, hs)
        k = self._split(self.k_proj(x_kv))  # (B, nh, Tk, hs)
        v = self._split(self.v_proj(x_kv))  # (B, nh, Tk, hs)
        scale = 1.0 / math.sqrt(self.head_size)  # a Python float: keeps float32 float32 (NEP 50)
        scores = self.qk_matmul(q, k.swapaxes(-1, -2)) * scale  # (B,nh,Tq,hs)@(B,nh,hs,Tk)
        if mask is not None:
            if mask.dtype != np.bool_:
                raise TypeError(f"attention mask must be boolean, got dtype {mask.dtype}")
            try:
                np.broadcast_shapes(mask.shape, scores.shape)
            except ValueError:
                raise ValueError(
                    f"attention mask shape {mask.shape} does not broadcast to {scores.shape}"
                ) from None
            scores = np.where(mask, scores, scores.dtype.type(MASK_VALUE))
        p = self.attn_dropout(self.softmax(scores))  # (B, nh, Tq, Tk)
        ctx = self.pv_matmul(p, v)  # (B,nh,Tq,Tk) @ (B,nh,Tk,hs) -> (B,nh,Tq,hs)
        self._cache = (cross, scale, x_q.shape, x_kv.shape)
        return self.out_proj(self._merge(ctx))  # (B, Tq, C) -> (B, Tq, C)

    def backward(self, dout: np.ndarray) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        if self._cache is None:
            raise RuntimeError("MultiHeadAttention.backward called before forward")
        cross, scale, _, _ = self._cache
        dctx = self._split(self.out_proj.backward(dout))  # (B, Tq, C) -> (B, nh, Tq, hs)
        dp, dv = self.pv_matmul.backward(dctx)  # (B,nh,Tq,Tk), (B,nh,Tk,hs)
        dscores = self.softmax.backward(self.attn_dropout.backward(dp)) * scale
        dq, dkt = self.qk_matmul.backward(dscores)  # (B,nh,Tq,hs), (B,nh,hs,Tk)
        dx_q = self.q_proj.backward(self._merge(dq))
        dx_k = self.k_proj.backward(self._merge(dkt.swapaxes(-1, -2)))
        dx_v = self.v_proj.backward(self._merge(dv))
        if cross:
            return dx_q, dx_k + dx_v
        return dx_q + dx_k + dx_v
