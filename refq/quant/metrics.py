"""Error metrics of a quantizer and the theory they are checked against.

Measured (float64)::

    MSE        = mean( (x - x_hat)^2 )
    max error  = max |x - x_hat|
    SQNR (dB)  = 10 log10( sum x^2 / sum (x - x_hat)^2 )
    rel. error = |x - x_hat| / |x|                     (x != 0)

Theory:

- uniform rounding noise (Widrow; Bennett 1948): if the error is uniform on
  ``[-scale/2, scale/2]``, its power is ``scale^2 / 12``.
- full-range uniform signal on ``[-A, A]`` with ``2^b - 1`` steps (``scale = 2A / (2^b - 1)``):
  signal power ``A^2 / 3``, so ``SQNR = 20 log10(2^b - 1)`` dB, about ``6.02 b`` dB
  (``20 log10 2 = 6.0206`` dB per bit).
- log grid with level ratio ``r`` (``LogQuantizer``, r = 2 for ``PowerOfTwoQuantizer``),
  rounding to the nearest level in the log domain: ``x_hat / x = r^u`` with ``|u| <= 1/2``, so the
  relative error is at most ``sqrt(r) - 1``. For log-uniform magnitudes (density ~ 1/|x|) over
  whole cells, ``x = x_hat * r^v`` with v uniform on [-1/2, 1/2] independent of the level, so
  ``SQNR = E[r^(2v)] / E[(r^v - 1)^2]`` with ``E[r^(2v)] = (r - 1/r) / (2 ln r)`` and
  ``E[(r^v - 1)^2] = E[r^(2v)] - 2 (sqrt r - 1/sqrt r) / ln r + 1``: independent of the signal's
  amplitude (the point of log quantization).
"""

from __future__ import annotations

import math

import numpy as np

from .base import as_float_array

DB_PER_BIT = 20 * math.log10(2)  # 6.0206 dB


def _pair(x, x_hat) -> tuple[np.ndarray, np.ndarray]:
    a = as_float_array(x, "x").astype(np.float64)
    b = as_float_array(x_hat, "x_hat").astype(np.float64)
    if a.shape != b.shape:
        raise ValueError(f"x shape {a.shape} and x_hat shape {b.shape} differ")
    if a.size == 0:
        raise ValueError("x is empty")
    return a, b


def mse(x: np.ndarray, x_hat: np.ndarray) -> float:
    """``mean((x - x_hat)^2)``.

    >>> mse(np.array([0.0, 1.0]), np.array([0.5, 1.0]))
    0.125
    """
    a, b = _pair(x, x_hat)
    return float(np.mean((a - b) ** 2))


def max_abs_error(x: np.ndarray, x_hat: np.ndarray) -> float:
    """``max |x - x_hat|``.

    >>> max_abs_error(np.array([0.0, 1.0]), np.array([0.5, 1.25]))
    0.5
    """
    a, b = _pair(x, x_hat)
    return float(np.max(np.abs(a - b)))


def sqnr_db(x: np.ndarray, x_hat: np.ndarray) -> float:
    """``10 log10(sum x^2 / sum (x - x_hat)^2)``; ``inf`` when the error is zero.

    Worked example: signal power 1 + 4 = 5, error power 0.01 + 0.04 = 0.05 -> 10 log10(100) = 20.

    >>> round(sqnr_db(np.array([1.0, 2.0]), np.array([1.1, 2.2])), 9)
    20.0
    """
    a, b = _pair(x, x_hat)
    sig = float(np.sum(a**2))
    err = float(np.sum((a - b) ** 2))
    if sig == 0:
        raise ValueError("SQNR is undefined for an all-zero signal")
    return math.inf if err == 0 else 10 * math.log10(sig / err)


def max_relative_error(x: np.ndarray, x_hat: np.ndarray) -> float:
    """``max |x - x_hat| / |x|`` over the nonzero entries of x.

    >>> max_relative_error(np.array([2.0, -4.0, 0.0]), np.array([2.5, -4.0, 0.0]))
    0.25
    """
    a, b = _pair(x, x_hat)
    nz = a != 0
    if not np.any(nz):
        raise ValueError("relative error needs at least one nonzero x")
    return float(np.max(np.abs(a[nz] - b[nz]) / np.abs(a[nz])))


def uniform_noise_power(scale: float | np.ndarray) -> float | np.ndarray:
    """Theoretical rounding-noise power ``scale^2 / 12`` (error uniform on [-scale/2, scale/2]).

    >>> uniform_noise_power(0.5)
    0.020833333333333332
    """
    s = np.asarray(scale, dtype=np.float64)
    if np.any(s <= 0) or not np.all(np.isfinite(s)):
        raise ValueError("scale must be finite and > 0")
    out = s**2 / 12
    return float(out) if out.ndim == 0 else out


def sqnr_uniform_theory_db(bits: int) -> float:
    """SQNR of a full-range uniform signal with ``2^b - 1`` steps: ``20 log10(2^b - 1)`` dB.

    About ``6.02 b`` dB (``DB_PER_BIT`` per bit) for large b: 8 bits give 48.13 dB.

    >>> round(sqnr_uniform_theory_db(8), 2), round(8 * DB_PER_BIT, 2)
    (48.13, 48.16)
    """
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or bits < 1:
        raise ValueError(f"bits must be a positive integer, got {bits}")
    return 20 * math.log10(2**bits - 1)


def log_relative_error_bound(ratio: float) -> float:
    """Worst relative error of a log grid with level ratio ``r``: ``sqrt(r) - 1``.

    ``r = 2`` (power-of-two levels): 41.4 %.

    >>> round(log_relative_error_bound(2.0), 4)
    0.4142
    """
    r = float(ratio)
    if not r > 1:
        raise ValueError(f"level ratio must be > 1, got {ratio}")
    return math.sqrt(r) - 1


def log_sqnr_theory_db(ratio: float) -> float:
    """SQNR (dB) of a log grid with level ratio ``r`` for log-uniform magnitudes over whole cells.

    ``10 log10(E[r^(2v)] / E[(r^v - 1)^2])``, v ~ U(-1/2, 1/2) (``x = x_hat * r^v``):
    ``E[r^(2v)] = (r - 1/r) / (2 ln r)``, ``E[(r^v - 1)^2] = E[r^(2v)] - 2 (sqrt r - 1/sqrt r) /
    ln r + 1``. For r = 2 (power-of-two levels): 14.14 dB. As r -> 1 this tends to the uniform-noise
    law in the log domain, ``-10 log10((ln r)^2 / 12)``.

    >>> round(log_sqnr_theory_db(2.0), 2)
    14.14
    """
    r = float(ratio)
    if not r > 1:
        raise ValueError(f"level ratio must be > 1, got {ratio}")
    lr = math.log(r)
    e2 = (r - 1 / r) / (2 * lr)  # E[r^(2v)]
    nsr = e2 - 2 * (math.sqrt(r) - 1 / math.sqrt(r)) / lr + 1  # E[(r^v - 1)^2]
    return 10 * math.log10(e2 / nsr)


def quantization_report(quantizer, x: np.ndarray) -> dict[str, float]:
    """MSE, max abs error and SQNR of ``quantizer.fake_quant`` on x (any Quantizer works).

    >>> from refq.quant import LinearQuantizer
    >>> r = quantization_report(LinearQuantizer(bits=8).set_range(-1, 1), np.linspace(-1, 1, 9))
    >>> sorted(r), r["max_abs_error"] < 1 / 255
    (['max_abs_error', 'mse', 'sqnr_db'], True)
    """
    x = as_float_array(x)
    x_hat = quantizer.fake_quant(x)
    return {
        "mse": mse(x, x_hat),
        "max_abs_error": max_abs_error(x, x_hat),
        "sqnr_db": sqnr_db(x, x_hat),
    }
