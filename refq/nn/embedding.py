"""Token embedding: a lookup table, ``y[..., :] = W[ids[...], :]``."""

from __future__ import annotations

import numpy as np

from refq.nn._checks import check_tokens
from refq.nn.module import Module


class Embedding(Module):
    """Lookup ``y = W[ids]``; W has shape (num_embeddings, dim), ids (...) -> y (..., dim).

    Backward: dW[v] += sum of dy over every position whose id is v (scatter-add, ``np.add.at``);
    the ids are integers, so there is no input gradient (returns None).
    Initialisation: W ~ N(0, 1) (PyTorch ``nn.Embedding``), times ``init_std``.

    >>> emb = Embedding(3, 2)
    >>> emb.params["weight"][...] = [[0, 0], [1, 2], [3, 4]]
    >>> emb(np.array([[2, 1, 2]]))
    array([[[3., 4.],
            [1., 2.],
            [3., 4.]]], dtype=float32)
    >>> emb.backward(np.ones((1, 3, 2), dtype=np.float32)); emb.grads["weight"]
    array([[0., 0.],
           [1., 1.],
           [2., 2.]], dtype=float32)
    """

    def __init__(
        self,
        num_embeddings: int,
        dim: int,
        rng: np.random.Generator | None = None,
        init_std: float = 1.0,
        dtype: type = np.float32,
    ) -> None:
        super().__init__()
        if num_embeddings <= 0 or dim <= 0:
            raise ValueError(f"Embedding needs positive sizes, got ({num_embeddings}, {dim})")
        rng = rng if rng is not None else np.random.default_rng(0)
        self.num_embeddings, self.dim = int(num_embeddings), int(dim)
        self.add_param(
            "weight", (rng.standard_normal((num_embeddings, dim)) * init_std).astype(dtype)
        )
        self._ids: np.ndarray | None = None

    def forward(self, ids: np.ndarray) -> np.ndarray:
        check_tokens(ids, self.num_embeddings, "Embedding.forward")
        self._ids = ids
        return self.params["weight"][ids]  # (...) -> (..., dim)

    def backward(self, dout: np.ndarray) -> None:
        if self._ids is None:
            raise RuntimeError("Embedding.backward called before forward")
        ids = self._ids.reshape(-1)  # (N,)
        rows = dout.reshape(-1, self.dim)  # (N, dim)
        # scatter-add rows into the table; sort + segment sums (np.add.reduceat) instead of
        # np.add.at, which is ~10x slower: order ids, sum each run of equal ids, add once
        order = np.argsort(ids, kind="stable")
        sorted_ids = ids[order]
        starts = np.flatnonzero(np.r_[True, sorted_ids[1:] != sorted_ids[:-1]])  # (U,)
        sums = np.add.reduceat(rows[order], starts, axis=0)  # (U, dim)
        self.grads["weight"][sorted_ids[starts]] += sums
        return None

    def __repr__(self) -> str:
        return f"Embedding({self.num_embeddings}, {self.dim})"
