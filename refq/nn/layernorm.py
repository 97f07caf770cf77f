"""Layer normalisation over the last axis (Ba et al. 2016, arXiv:1607.06450)."""

from __future__ import annotations

import numpy as np

from refq.nn._checks import check_float
from refq.nn.module import Module


class LayerNorm(Module):
    """y = gamma * xhat + beta,  xhat = (x - mean(x)) / sqrt(var(x) + eps), over the last axis C.

    var is the biased variance (divide by C), as in PyTorch. Backward, with g = dy * gamma:
        dx = rstd * (g - mean(g) - xhat * mean(g * xhat))       (means over C)
        dgamma += sum over rows of dy * xhat;   dbeta += sum over rows of dy
    params: weight (gamma, ones) and bias (beta, zeros), both (C,).

    >>> ln = LayerNorm(2)
    >>> ln(np.array([[1.0, 3.0]], dtype=np.float32))
    array([[-0.999995,  0.999995]], dtype=float32)
    """

    def __init__(self, dim: int, eps: float = 1e-5, dtype: type = np.float32) -> None:
        super().__init__()
        self.dim, self.eps = int(dim), float(eps)
        self.add_param("weight", np.ones(dim, dtype=dtype))
        self.add_param("bias", np.zeros(dim, dtype=dtype))
        self._xhat: np.ndarray | None = None
        self._rstd: np.ndarray | None = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        check_float(x, "LayerNorm.forward")
        if x.shape[-1] != self.dim:
            raise ValueError(
                f"LayerNorm.forward: last axis must be {self.dim}, got shape {x.shape}"
            )
        mu = x.mean(axis=-1, keepdims=True)  # (..., 1)
        xc = x - mu
        var = np.mean(xc * xc, axis=-1, keepdims=True)  # (..., 1)
        rstd = 1.0 / np.sqrt(var + self.eps)
        xhat = xc * rstd
        self._xhat, self._rstd = xhat, rstd
        return xhat * self.params["weight"] + self.params["bias"]

    def backward(self, dout: np.ndarray) -> np.ndarray:
        if self._xhat is None or self._rstd is None:
            raise RuntimeError("LayerNorm.backward called before forward")
        xhat, rstd = self._xhat, self._rstd
        lead = tuple(range(dout.ndim - 1))
        self.grads["weight"] += (dout * xhat).sum(axis=lead)  # (..., C) -> (C,)
        self.grads["bias"] += dout.sum(axis=lead)
        g = dout * self.params["weight"]
        gm = g.mean(axis=-1, keepdims=True)
        gxm = (g * xhat).mean(axis=-1, keepdims=True)
        return rstd * (g - gm - xhat * gxm)

    def __repr__(self) -> str:
        return f"LayerNorm({self.dim}, eps={self.eps})"
