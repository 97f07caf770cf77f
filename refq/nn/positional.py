"""Positional encodings added to token embeddings: sinusoidal (fixed) and learned.

Both map x (B, T, C) -> x + P[:T] with P of shape (max_len, C), and raise ValueError when
T > max_len (a sequence longer than the table).
"""

from __future__ import annotations

import numpy as np

from refq.nn._checks import check_float
from refq.nn.module import Module


def sinusoidal_table(max_len: int, dim: int) -> np.ndarray:
    """P[pos, 2i] = sin(pos / 10000^(2i/dim)), P[pos, 2i+1] = cos(pos / 10000^(2i/dim)).

    Source: Vaswani et al. 2017 (arXiv:1706.03762), section 3.5. Returned in float64.

    >>> np.round(sinusoidal_table(2, 4), 4)
    array([[0.    , 1.    , 0.    , 1.    ],
           [0.8415, 0.5403, 0.01  , 1.    ]])
    """
    pos = np.arange(max_len, dtype=np.float64)[:, None]  # (L, 1)
    i2 = np.arange(0, dim, 2, dtype=np.float64)[None, :]  # (1, ceil(C/2))
    angle = pos / np.power(10000.0, i2 / dim)  # (L, ceil(C/2))
    table = np.zeros((max_len, dim), dtype=np.float64)
    table[:, 0::2] = np.sin(angle)
    table[:, 1::2] = np.cos(angle[:, : dim // 2])
    return table


def _check_len(x: np.ndarray, max_len: int, dim: int, where: str) -> None:
    check_float(x, where)
    if x.ndim != 3 or x.shape[-1] != dim:
        raise ValueError(f"{where}: expected (B, T, {dim}), got shape {x.shape}")
    if x.shape[1] > max_len:
        raise ValueError(
            f"{where}: sequence length {x.shape[1]} exceeds the positional table max_len={max_len}"
        )


class SinusoidalPositionalEncoding(Module):
    """y = x + P[:T] with the fixed table of ``sinusoidal_table``; backward dx = dy.

    >>> pe = SinusoidalPositionalEncoding(max_len=4, dim=2)
    >>> pe(np.zeros((1, 2, 2), dtype=np.float32))
    array([[[0.       , 1.       ],
            [0.84147096, 0.5403023 ]]], dtype=float32)
    """

    def __init__(self, max_len: int, dim: int, dtype: type = np.float32) -> None:
        super().__init__()
        self.max_len, self.dim = int(max_len), int(dim)
        self.buffers["table"] = sinusoidal_table(max_len, dim).astype(dtype)

    def forward(self, x: np.ndarray) -> np.ndarray:
        _check_len(x, self.max_len, self.dim, "SinusoidalPositionalEncoding")
        return x + self.buffers["table"][: x.shape[1]]  # (B, T, C) + (T, C)

    def backward(self, dout: np.ndarray) -> np.ndarray:
        return dout


class LearnedPositionalEmbedding(Module):
    """y = x + W[:T], W (max_len, C) trained; backward dx = dy, dW[:T] += sum_b dy[b].

    >>> pe = LearnedPositionalEmbedding(max_len=3, dim=1)
    >>> pe.params["weight"][...] = [[1.0], [2.0], [3.0]]
    >>> pe(np.zeros((2, 2, 1), dtype=np.float32))[1].ravel()
    array([1., 2.], dtype=float32)
    >>> _ = pe.backward(np.ones((2, 2, 1), dtype=np.float32)); pe.grads["weight"].ravel()
    array([2., 2., 0.], dtype=float32)
    """

    def __init__(
        self,
        max_len: int,
        dim: int,
        rng: np.random.Generator | None = None,
        dtype: type = np.float32,
    ) -> None:
        super().__init__()
        rng = rng if rng is not None else np.random.default_rng(0)
        self.max_len, self.dim = int(max_len), int(dim)
        self.add_param("weight", (rng.standard_normal((max_len, dim)) * 0.02).astype(dtype))
        self._t = 0

    def forward(self, x: np.ndarray) -> np.ndarray:
        _check_len(x, self.max_len, self.dim, "LearnedPositionalEmbedding")
        self._t = x.shape[1]
        return x + self.params["weight"][: self._t]  # (B, T, C) + (T, C)

    def backward(self, dout: np.ndarray) -> np.ndarray:
        self.grads["weight"][: self._t] += dout.sum(axis=0)  # (B, T, C) -> (T, C)
        return dout
