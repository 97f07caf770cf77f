"""Rounding modes: the one step of quantization that turns a real number into an integer.

Modes (strings, as every quantizer's ``rounding=`` argument):

- ``"half_even"``  round to nearest, ties to even (``np.rint``; PyTorch ``nearbyint``). Default.
- ``"half_away"``  round to nearest, ties away from zero: ``sign(v) * floor(|v| + 1/2)``
  (C ``round``; TensorFlow fake-quant).
- ``"floor"``      ``floor(v)`` (truncation towards -inf; biased by -1/2 on average).
- ``"stochastic"`` ``floor(v) + [u < v - floor(v)]`` with ``u ~ U[0, 1)`` from a seeded
  generator: rounds up with probability ``v - floor(v)``, so ``E[round(v)] = v`` (unbiased;
  Gupta et al. 2015, arXiv:1502.02551).

Source: CONVENTIONS.md "Rounding"; the seed document (section 4) writes ``round`` without
saying which; refq's default matches NumPy and PyTorch.
"""

from __future__ import annotations

import numpy as np

ROUNDING_MODES = ("half_even", "half_away", "floor", "stochastic")


def check_rounding(mode: object) -> str:
    """Return ``mode`` if it is a known rounding mode, else raise ValueError naming the choices.

    >>> check_rounding("floor")
    'floor'
    >>> check_rounding("up")
    Traceback (most recent call last):
    ...
    ValueError: unknown rounding mode 'up'; choose one of half_even, half_away, floor, stochastic
    """
    if mode not in ROUNDING_MODES:
        raise ValueError(
            f"unknown rounding mode {mode!r}; choose one of {', '.join(ROUNDING_MODES)}"
        )
    return str(mode)


def round_values(
    v: np.ndarray, mode: str = "half_even", rng: np.random.Generator | None = None
) -> np.ndarray:
    """Round ``v`` to integers (returned as floats of v's dtype) with the given mode.

    ``"stochastic"`` needs ``rng`` (a ``np.random.Generator``): the same seed gives the same
    result, bit for bit. The other modes ignore ``rng``.

    >>> v = np.array([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 0.7])
    >>> round_values(v, "half_even").tolist()
    [-2.0, -2.0, -0.0, 0.0, 2.0, 2.0, 1.0]
    >>> round_values(v, "half_away").tolist()
    [-3.0, -2.0, -1.0, 1.0, 2.0, 3.0, 1.0]
    >>> round_values(v, "floor").tolist()
    [-3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 0.0]
    >>> round_values(np.array([0.25] * 4), "stochastic", np.random.default_rng(0)).tolist()
    [0.0, 0.0, 1.0, 1.0]
    """
    check_rounding(mode)
    v = np.asarray(v)
    if mode == "half_even":
        return np.rint(v)
    if mode == "half_away":
        # not floor(|v| + 0.5): in float32 0.49999997 + 0.5 rounds up to 1.0. v - trunc(v) is exact.
        t = np.trunc(v)
        return t + np.sign(v) * (np.abs(v - t) >= 0.5)
    if mode == "floor":
        return np.floor(v)
    if rng is None:
        raise ValueError("stochastic rounding needs rng (a seeded np.random.Generator)")
    f = np.floor(v)
    u = rng.random(v.shape)  # U[0, 1) float64, same shape as v
    return f + (u < (v - f))  # up with probability frac(v); v - floor(v) is exact
