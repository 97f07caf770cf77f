"""Finite-difference gradient checks (central differences, float64) for refq.nn modules."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def numerical_grad(f: Callable[[], float], x: np.ndarray, h: float = 1e-6) -> np.ndarray:
    """Central difference d f / d x_i ~ (f(x + h e_i) - f(x - h e_i)) / (2h), x edited in place.

    >>> x = np.array([1.0, 2.0])
    >>> np.round(numerical_grad(lambda: float((x**2).sum()), x), 6)
    array([2., 4.])
    """
    g = np.zeros_like(x, dtype=np.float64)
    flat, gflat = x.reshape(-1), g.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + h
        fp = f()
        flat[i] = old - h
        fm = f()
        flat[i] = old
        gflat[i] = (fp - fm) / (2 * h)
    return g


def rel_error(a: np.ndarray, b: np.ndarray) -> float:
    """max |a - b| / max(|a|_max, |b|_max, 1e-12): one relative error for a whole array.

    >>> rel_error(np.array([1.0, 4.0]), np.array([1.0, 4.004]))
    0.000999
    """
    scale = max(float(np.abs(a).max(initial=0)), float(np.abs(b).max(initial=0)), 1e-12)
    return float(np.abs(a - b).max(initial=0) / scale)
