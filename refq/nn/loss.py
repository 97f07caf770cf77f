"""Cross-entropy with a padding mask and label smoothing (Szegedy et al. 2016, arXiv:1512.00567)."""

from __future__ import annotations

import numpy as np

from refq.nn._checks import check_float, check_tokens


class CrossEntropyLoss:
    """loss = -(1 / N) sum_{valid n} sum_v q_{n,v} log softmax(z_n)_v,
    q_n = (1 - eps) onehot(y_n) + eps / V   (PyTorch's label-smoothing convention),
    valid n: y_n != ignore_index, N = number of valid targets.
    Backward: dz_n = (softmax(z_n) - q_n) / N at valid n, 0 elsewhere.

    forward(logits (..., V), targets (...) int) -> float; backward() -> dlogits (..., V).

    >>> ce = CrossEntropyLoss()
    >>> z = np.array([[0.0, 0.0]]); round(ce(z, np.array([1])), 6)   # log 2
    0.693147
    >>> ce.backward()
    array([[ 0.5, -0.5]])
    """

    def __init__(self, ignore_index: int | None = None, label_smoothing: float = 0.0) -> None:
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        self.ignore_index = ignore_index
        self.eps = float(label_smoothing)
        self._cache: tuple | None = None

    def forward(self, logits: np.ndarray, targets: np.ndarray) -> float:
        check_float(logits, "CrossEntropyLoss(logits)")
        v = logits.shape[-1]
        if targets.shape != logits.shape[:-1]:
            raise ValueError(
                f"targets shape {targets.shape} must be logits shape {logits.shape[:-1]}"
            )
        valid = (
            np.ones(targets.shape, bool)
            if self.ignore_index is None
            else targets != self.ignore_index
        )
        check_tokens(np.where(valid, targets, 0), v, "CrossEntropyLoss(targets)")
        n = int(valid.sum())
        if n == 0:
            raise ValueError("CrossEntropyLoss: every target is ignore_index, nothing to average")
        z = logits - logits.max(axis=-1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(axis=-1, keepdims=True))  # (..., V)
        t = np.where(valid, targets, 0)
        nll = -np.take_along_axis(logp, t[..., None], axis=-1)[..., 0]  # (...)
        smooth = -logp.mean(axis=-1)  # (...) = -sum_v (1/V) log p_v
        per = (1.0 - self.eps) * nll + self.eps * smooth
        self._cache = (logp, t, valid, n)
        return float((per * valid).sum() / n)

    __call__ = forward

    def backward(self) -> np.ndarray:
        if self._cache is None:
            raise RuntimeError("CrossEntropyLoss.backward called before forward")
        logp, t, valid, n = self._cache
        v = logp.shape[-1]
        d = np.exp(logp)  # softmax
        d -= self.eps / v
        np.put_along_axis(
            d, t[..., None], np.take_along_axis(d, t[..., None], -1) - (1 - self.eps), -1
        )
        d *= valid[..., None] / n
        return d.astype(logp.dtype, copy=False)
