"""Position-wise feed-forward network (Vaswani et al. 2017, arXiv:1706.03762, section 3.3)."""

from __future__ import annotations

import numpy as np

from refq.nn.activations import Dropout, make_activation
from refq.nn.linear import Linear
from refq.nn.module import Module


class FeedForward(Module):
    """FFN(x) = fc2(dropout(act(fc1(x)))), fc1: C -> d_ff, fc2: d_ff -> C, act ReLU (paper) or GELU.

    Children: fc1 Linear weight (d_ff, C); fc2 Linear weight (C, d_ff); act; dropout.
    Backward: the chain rule through the four children in reverse order.

    >>> ff = FeedForward(4, 8, rng=np.random.default_rng(0))
    >>> ff(np.zeros((2, 3, 4), dtype=np.float32)).shape
    (2, 3, 4)
    """

    def __init__(
        self,
        d_model: int,
        d_ff: int,
        activation: str = "relu",
        dropout: float = 0.0,
        rng: np.random.Generator | None = None,
        dtype: type = np.float32,
    ) -> None:
        super().__init__()
        rng = rng if rng is not None else np.random.default_rng(0)
        self.fc1 = Linear(d_model, d_ff, rng=rng, dtype=dtype)
        self.act = make_activation(activation)
        self.dropout = Dropout(dropout, seed=int(rng.integers(2**31)))
        self.fc2 = Linear(d_ff, d_model, rng=rng, dtype=dtype)

    def forward(self, x: np.ndarray) -> np.ndarray:
        return self.fc2(self.dropout(self.act(self.fc1(x))))  # (B,T,C)->(B,T,d_ff)->(B,T,C)

    def backward(self, dout: np.ndarray) -> np.ndarray:
        d = self.dropout.backward(self.fc2.backward(dout))
        return self.fc1.backward(self.act.backward(d))
