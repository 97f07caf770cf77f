"""Optimisers and schedules: Adam / AdamW, gradient-norm clipping, linear warm-up.

All updates are in place on the model's parameter arrays (so ``params`` dicts stay valid).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np


class AdamW:
    """Adam (Kingma & Ba 2014, arXiv:1412.6980) with decoupled weight decay (AdamW, Loshchilov &
    Hutter 2017, arXiv:1711.05101), as ``torch.optim.AdamW``; per parameter p with gradient g,
    step t >= 1:
        p <- p - lr * wd * p                          (decoupled decay; only ndim >= 2 weights)
        m <- b1 m + (1 - b1) g;   v <- b2 v + (1 - b2) g^2
        p <- p - lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)
    ``decoupled=False`` gives classic Adam with L2: g <- g + wd * p before the moments.
    Biases, LayerNorm gains and 1-D arrays are never decayed; embeddings and 2-D weights are.

    >>> p = np.array([1.0]); g = np.array([0.5])
    >>> opt = AdamW([("w", p, g)], lr=0.1, weight_decay=0.0)
    >>> opt.step(); p            # first step moves by lr * sign(g)
    array([0.9])
    """

    def __init__(
        self,
        params: Iterable[tuple[str, np.ndarray, np.ndarray]],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.98),
        eps: float = 1e-9,
        weight_decay: float = 0.0,
        decoupled: bool = True,
    ) -> None:
        if lr <= 0 or eps < 0 or weight_decay < 0 or not all(0 <= b < 1 for b in betas):
            raise ValueError(
                f"bad AdamW settings lr={lr}, betas={betas}, eps={eps}, wd={weight_decay}"
            )
        self.params = list(params)
        self.lr, self.betas, self.eps = float(lr), betas, float(eps)
        self.weight_decay, self.decoupled = float(weight_decay), decoupled
        self.m = [np.zeros_like(p) for _, p, _ in self.params]
        self.v = [np.zeros_like(p) for _, p, _ in self.params]
        self.t = 0

    @classmethod
    def for_model(cls, model, **kw) -> AdamW:
        """Optimise every ``(name, param, grad)`` of a refq.nn Module."""
        grads = dict(model.named_grads())
        return cls([(k, p, grads[k]) for k, p in model.named_parameters()], **kw)

    def step(self, lr: float | None = None) -> None:
        lr = self.lr if lr is None else float(lr)
        b1, b2 = self.betas
        self.t += 1
        c1, c2 = 1 - b1**self.t, 1 - b2**self.t
        for (_, p, g), m, v in zip(self.params, self.m, self.v, strict=True):
            decay = self.weight_decay if p.ndim >= 2 else 0.0
            if decay and not self.decoupled:
                g = g + decay * p
            m *= b1
            m += (1 - b1) * g
            v *= b2
            v += (1 - b2) * (g * g)
            if decay and self.decoupled:
                p -= lr * decay * p
            p -= (lr / c1) * m / (np.sqrt(v / c2) + self.eps)


def clip_grad_norm(grads: Iterable[np.ndarray], max_norm: float) -> float:
    """Scale all gradients in place by min(1, max_norm / ||g||_2), ||g|| over all of them
    together (``torch.nn.utils.clip_grad_norm_``). Returns the norm before clipping.

    >>> g = [np.array([3.0]), np.array([4.0])]
    >>> clip_grad_norm(g, 1.0), g[0], g[1]
    (5.0, array([0.6]), array([0.8]))
    """
    grads = list(grads)
    total = math.sqrt(sum(float(np.vdot(g, g)) for g in grads))
    if max_norm > 0 and total > max_norm:
        s = max_norm / (total + 1e-6 * max_norm)
        for g in grads:
            g *= s
    return total


def warmup_cosine(
    step: int, base_lr: float, warmup: int, total: int, min_ratio: float = 0.1
) -> float:
    """Learning rate at ``step`` (0-based): linear warm-up to base_lr over ``warmup`` steps, then
    cosine decay to min_ratio * base_lr at ``total``:
        lr = base_lr * (step + 1) / warmup                             for step < warmup
        lr = base_lr * (r + (1 - r) * (1 + cos(pi * s)) / 2)                  otherwise,
    with s = (step - warmup) / (total - warmup) and r = min_ratio.

    >>> [warmup_cosine(s, 1.0, 10, 100) for s in (0, 9, 100)]
    [0.1, 1.0, 0.1]
    """
    if step < warmup:
        return base_lr * (step + 1) / warmup
    s = min(1.0, (step - warmup) / max(1, total - warmup))
    return base_lr * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * s)))
