"""Element-wise activations (ReLU, GELU), softmax and dropout, each with its explicit backward."""

from __future__ import annotations

import numpy as np

from refq.nn._checks import check_float
from refq.nn.module import Module

_SQRT_2_OVER_PI = float(np.sqrt(2.0 / np.pi))


class ReLU(Module):
    """y = max(x, 0); dy/dx = 1 where x > 0, else 0 (0 at x = 0, as PyTorch).

    >>> r = ReLU(); r(np.array([-1.0, 0.0, 2.0]))
    array([0., 0., 2.])
    >>> r.backward(np.array([5.0, 5.0, 5.0]))
    array([0., 0., 5.])
    """

    def __init__(self) -> None:
        super().__init__()
        self._mask: np.ndarray | None = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        check_float(x, "ReLU.forward")
        self._mask = x > 0
        return x * self._mask

    def backward(self, dout: np.ndarray) -> np.ndarray:
        return dout * self._mask


class GELU(Module):
    """GELU, tanh form (Hendrycks & Gimpel 2016, arXiv:1606.08415; BERT/GPT-2;
    PyTorch ``GELU(approximate="tanh")``):
        y = 0.5 x (1 + tanh(u)),  u = sqrt(2/pi) (x + 0.044715 x^3)
        dy/dx = 0.5 (1 + t) + 0.5 x (1 - t^2) sqrt(2/pi) (1 + 3 * 0.044715 x^2),  t = tanh(u)
    (The exact erf form differs by < 1e-3; the tanh form needs no erf, which NumPy lacks.)

    >>> g = GELU(); np.round(g(np.array([-1.0, 0.0, 1.0])), 6)
    array([-0.158808,  0.      ,  0.841192])
    """

    def __init__(self) -> None:
        super().__init__()
        self._x: np.ndarray | None = None
        self._t: np.ndarray | None = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        check_float(x, "GELU.forward")
        t = np.tanh(_SQRT_2_OVER_PI * (x + 0.044715 * x**3))
        self._x, self._t = x, t
        return 0.5 * x * (1.0 + t)

    def backward(self, dout: np.ndarray) -> np.ndarray:
        x, t = self._x, self._t
        du = _SQRT_2_OVER_PI * (1.0 + 3 * 0.044715 * x * x)
        return dout * (0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * du)


class Softmax(Module):
    """y_i = exp(x_i - max x) / sum_j exp(x_j - max x) over ``axis``;
    backward dx = y * (dy - sum_j dy_j y_j).

    >>> s = Softmax(); np.round(s(np.array([0.0, np.log(3.0)])), 6)
    array([0.25, 0.75])
    >>> np.round(s.backward(np.array([1.0, 0.0])), 6)
    array([ 0.1875, -0.1875])
    """

    def __init__(self, axis: int = -1) -> None:
        super().__init__()
        self.axis = axis
        self._y: np.ndarray | None = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        check_float(x, "Softmax.forward")
        e = np.exp(x - x.max(axis=self.axis, keepdims=True))
        y = e / e.sum(axis=self.axis, keepdims=True)
        self._y = y
        return y

    def backward(self, dout: np.ndarray) -> np.ndarray:
        y = self._y
        return y * (dout - (dout * y).sum(axis=self.axis, keepdims=True))


class Dropout(Module):
    """Inverted dropout (Srivastava et al. 2014): in training y = x * m / (1 - p),
    m ~ Bernoulli(1 - p);
    in eval y = x. Backward dx = dy * m / (1 - p). The mask comes from the module's own
    ``np.random.Generator`` (seeded), so runs are reproducible.

    >>> d = Dropout(0.5, seed=0); d.eval(); d(np.ones(3)).tolist()
    Dropout(p=0.5)
    [1.0, 1.0, 1.0]
    """

    def __init__(self, p: float = 0.0, seed: int = 0) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"Dropout probability must be in [0, 1), got {p}")
        self.p = float(p)
        self.rng = np.random.default_rng(seed)
        self._scale_mask: np.ndarray | None = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        if not self.training or self.p == 0.0:
            self._scale_mask = None
            return x
        keep = self.rng.random(x.shape) >= self.p
        self._scale_mask = keep.astype(x.dtype) / (1.0 - self.p)
        return x * self._scale_mask

    def backward(self, dout: np.ndarray) -> np.ndarray:
        return dout if self._scale_mask is None else dout * self._scale_mask

    def __repr__(self) -> str:
        return f"Dropout(p={self.p})"


ACTIVATIONS = {"relu": ReLU, "gelu": GELU}


def make_activation(name: str) -> Module:
    """Build an activation by name: ``"relu"`` or ``"gelu"``."""
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; choose from {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]()
