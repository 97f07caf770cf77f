"""``Linear`` and ``MatMul``: the two modules through which every quantizable matmul runs.

Parameter layout (PyTorch convention, so weights load from other implementations):
    weight: (out_features, in_features)      bias: (out_features,)
PTQ/QAT replace these modules by dotted name (``Module.set_submodule``) with wrappers that keep
the same ``forward``/``backward`` signatures.
"""

from __future__ import annotations

import numpy as np

from refq.nn._checks import check_float
from refq.nn.module import Module


class Linear(Module):
    """Affine map ``y = x W^T + b`` over the last axis.

    Shapes: x (..., in) -> y (..., out); W (out, in); b (out,).
    Backward, with dy of shape (..., out) flattened to (N, out) and x to (N, in):
        dx = dy W            (N, in)
        dW += dy^T x         (out, in)
        db += sum_n dy       (out,)
    Initialisation (PyTorch ``nn.Linear``): W, b ~ U(-1/sqrt(in), 1/sqrt(in)) from ``rng``.

    >>> lin = Linear(2, 1)
    >>> lin.params["weight"][...] = [[1.0, -2.0]]; lin.params["bias"][...] = [0.5]
    >>> lin(np.array([[3.0, 1.0]], dtype=np.float32))
    array([[1.5]], dtype=float32)
    >>> lin.backward(np.array([[1.0]], dtype=np.float32))
    array([[ 1., -2.]], dtype=float32)
    >>> lin.grads["weight"], lin.grads["bias"]
    (array([[3., 1.]], dtype=float32), array([1.], dtype=float32))
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        rng: np.random.Generator | None = None,
        dtype: type = np.float32,
    ) -> None:
        super().__init__()
        if in_features <= 0 or out_features <= 0:
            raise ValueError(f"Linear needs positive sizes, got ({in_features}, {out_features})")
        rng = rng if rng is not None else np.random.default_rng(0)
        bound = 1.0 / np.sqrt(in_features)
        self.in_features, self.out_features = int(in_features), int(out_features)
        w = rng.uniform(-bound, bound, size=(out_features, in_features)).astype(dtype)
        self.add_param("weight", w)
        if bias:
            self.add_param("bias", rng.uniform(-bound, bound, size=out_features).astype(dtype))
        self._x2: np.ndarray | None = None
        self._xshape: tuple[int, ...] = ()

    def forward(self, x: np.ndarray) -> np.ndarray:
        check_float(x, "Linear.forward")
        if x.ndim < 1 or x.shape[-1] != self.in_features:
            raise ValueError(
                f"Linear.forward: last axis must be in_features={self.in_features}, "
                f"got shape {x.shape}"
            )
        w = self.params["weight"]
        x2 = x.reshape(-1, self.in_features).astype(w.dtype, copy=False)  # (..., in) -> (N, in)
        y = x2 @ w.T  # (N, in) @ (in, out) -> (N, out)
        if "bias" in self.params:
            y += self.params["bias"]
        self._x2, self._xshape = x2, x.shape
        return y.reshape(*x.shape[:-1], self.out_features)  # (N, out) -> (..., out)

    def backward(self, dout: np.ndarray) -> np.ndarray:
        if self._x2 is None:
            raise RuntimeError("Linear.backward called before forward")
        d2 = dout.reshape(-1, self.out_features)  # (..., out) -> (N, out)
        self.grads["weight"] += d2.T @ self._x2  # (out, N) @ (N, in) -> (out, in)
        if "bias" in self.params:
            ones = np.ones(d2.shape[0], dtype=d2.dtype)
            self.grads["bias"] += ones @ d2  # (N,) @ (N, out) -> (out,): a GEMV, 5x a .sum(0)
        dx = d2 @ self.params["weight"]  # (N, out) @ (out, in) -> (N, in)
        return dx.reshape(self._xshape)

    def __repr__(self) -> str:
        return f"Linear({self.in_features}, {self.out_features}, bias={'bias' in self.params})"


def _unbroadcast(grad: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Sum ``grad`` over the axes that broadcasting added or stretched, to get ``shape``."""
    while grad.ndim > len(shape):
        grad = grad.sum(axis=0)
    for ax, n in enumerate(shape):
        if n == 1 and grad.shape[ax] != 1:
            grad = grad.sum(axis=ax, keepdims=True)
    return grad


class MatMul(Module):
    """Batched matrix product of two activations, ``c = a @ b`` (no parameters).

    Shapes: a (..., M, K), b (..., K, N) -> c (..., M, N) (leading axes broadcast).
    Backward: da = dc b^T (..., M, K), db = a^T dc (..., K, N), each summed over broadcast axes.
    Used for the two attention matmuls, Q K^T and P V, so that they can be quantized too.

    >>> mm = MatMul()
    >>> a = np.array([[1.0, 2.0]]); b = np.array([[3.0], [4.0]])
    >>> mm(a, b)
    array([[11.]])
    >>> da, db = mm.backward(np.array([[1.0]]))
    >>> da, db.ravel()
    (array([[3., 4.]]), array([1., 2.]))
    """

    def __init__(self) -> None:
        super().__init__()
        self._a: np.ndarray | None = None
        self._b: np.ndarray | None = None

    def forward(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        check_float(a, "MatMul.forward(a)")
        check_float(b, "MatMul.forward(b)")
        if a.ndim < 2 or b.ndim < 2 or a.shape[-1] != b.shape[-2]:
            raise ValueError(f"MatMul.forward: shapes {a.shape} and {b.shape} do not contract")
        self._a, self._b = a, b
        return a @ b  # (..., M, K) @ (..., K, N) -> (..., M, N)

    def backward(self, dout: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self._a is None or self._b is None:
            raise RuntimeError("MatMul.backward called before forward")
        a, b = self._a, self._b
        da = dout @ b.swapaxes(-1, -2)  # (..., M, N) @ (..., N, K) -> (..., M, K)
        db = a.swapaxes(-1, -2) @ dout  # (..., K, M) @ (..., M, N) -> (..., K, N)
        return _unbroadcast(da, a.shape), _unbroadcast(db, b.shape)

    def __repr__(self) -> str:
        return "MatMul()"
