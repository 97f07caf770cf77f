"""The straight-through estimator for the log and power-of-two quantizers (refq's definition).

Both quantizers (``refq.quant.log.LogQuantizer``, ``refq.quant.pow2.PowerOfTwoQuantizer``) map
``x`` to ``sign(x) * level`` with magnitude levels ``{0} U {x_min, ..., x_max}``:

- ``x_min <= |x| <= x_max``: rounded to the nearest level in the log domain;
- ``|x| < x_min``: rounded to the nearer of the two representable values 0 and ``x_min``
  (``|x| < x_min / 2`` -> exactly 0, the reserved zero code; else ``x_min``);
- ``|x| > x_max``: clipped to ``x_max`` (x_max is the top level ``s * 2^(M-1)`` for the
  power-of-two quantizer, whose smallest magnitude is its ``scale`` s).

The STE (as for the linear quantizer, Bengio et al. 2013, arXiv:1308.3432) replaces *rounding*
by the identity and keeps the derivative of *clipping*. Every magnitude up to ``x_max`` lies
between two representable values and is rounded, so it passes; only the clipped magnitudes get
zero gradient::

    d x_hat / d x  ~=  1   where |x| <= x_max        (bounds inclusive; zero code included)
                       0   where |x| >  x_max        (clipped to +-x_max)

The zero code: ``|x| < x_min / 2`` is *rounded* to 0 (0 is a level), not clipped, so its
gradient passes, exactly as the linear STE passes values that round to the zero point. This
keeps small weights trainable: a weight flushed to zero still receives the gradient that lets it
grow back above ``x_min / 2``. The alternative (``underflow="zero"``: gradient 0 where
``|x| < x_min``, treating the region below the log grid as clipped) is available for comparison.

Difference from the linear STE: PyTorch's linear mask is taken on the rounded code, which lets
values up to half a step beyond ``quant_max`` pass. On a log grid half a step beyond ``x_max`` is
a factor ``sqrt(r)`` (41% above x_max for one octave per level), so refq measures the log STE on
the value itself: ``|x| <= x_max``, the representable range. This needs nothing but ``x_min`` and
``x_max``, so it is the same for every rounding mode (stochastic included).
"""

from __future__ import annotations

import numpy as np

from refq.quant.base import expand_param
from refq.quant.log import LogQuantizer
from refq.quant.pow2 import PowerOfTwoQuantizer

UNDERFLOW_RULES = ("pass", "zero")


def is_log_quantizer(quantizer: object) -> bool:
    """True for refq's ``LogQuantizer`` and ``PowerOfTwoQuantizer``.

    >>> is_log_quantizer(LogQuantizer(3)), is_log_quantizer(object())
    (True, False)
    """
    return isinstance(quantizer, (LogQuantizer, PowerOfTwoQuantizer))


def magnitude_range(quantizer: LogQuantizer | PowerOfTwoQuantizer) -> tuple[np.ndarray, np.ndarray]:
    """Smallest and largest nonzero magnitudes ``(x_min, x_max)`` (float64; ``()`` or ``(C,)``).

    LogQuantizer: its ``x_min``, ``x_max``. PowerOfTwoQuantizer: ``s`` and ``s * 2^(M - 1)``.

    Example: 3-bit power of two on [-3, 1]: s = 1, M = 3, levels 1, 2, 4.

    >>> lo, hi = magnitude_range(PowerOfTwoQuantizer(bits=3).set_range(-3.0, 1.0))
    >>> float(lo), float(hi)
    (1.0, 4.0)
    """
    if isinstance(quantizer, LogQuantizer):
        if quantizer.x_min is None:
            raise ValueError("quantizer has no range yet: call set_range(min, max) or fit(x)")
        return np.asarray(quantizer.x_min, np.float64), np.asarray(quantizer.x_max, np.float64)
    if isinstance(quantizer, PowerOfTwoQuantizer):
        if quantizer.scale is None:
            raise ValueError("quantizer has no range yet: call set_range(min, max) or fit(x)")
        s = np.asarray(quantizer.scale, np.float64)
        return s, np.ldexp(s, quantizer.levels - 1)  # s * 2^(M-1), exact
    raise TypeError(f"not a log or power-of-two quantizer: {type(quantizer).__name__}")


def log_ste_mask(
    quantizer: LogQuantizer | PowerOfTwoQuantizer, x: np.ndarray, underflow: str = "pass"
) -> np.ndarray:
    """Where the log STE lets the gradient through: ``|x| <= x_max`` (and, with
    ``underflow="zero"``, also ``|x| >= x_min``). Bool array of x's shape.

    Example: 3-bit log quantizer on [-8, 4]: levels 2, 4, 8 (x_min 2, x_max 8).
    8.0 is on the bound (passes), 8.5 is clipped; 0.5 is flushed to the zero code and passes
    under the default rule, not under ``underflow="zero"``.

    >>> lq = LogQuantizer(bits=3).set_range(-8.0, 4.0)
    >>> x = np.array([0.5, -3.0, 8.0, 8.5, -9.0])
    >>> log_ste_mask(lq, x).tolist()
    [True, True, True, False, False]
    >>> log_ste_mask(lq, x, underflow="zero").tolist()
    [False, True, True, False, False]
    """
    if underflow not in UNDERFLOW_RULES:
        raise ValueError(f"underflow must be one of {UNDERFLOW_RULES}, got {underflow!r}")
    x = np.asarray(x)
    lo, hi = magnitude_range(quantizer)
    lo = expand_param(lo, x.shape, quantizer.axis, None)  # () or (C,) -> broadcastable to x
    hi = expand_param(hi, x.shape, quantizer.axis, None)
    mag = np.abs(x.astype(np.float64))
    inside = mag <= hi  # bound inclusive: |x| == x_max passes
    if underflow == "zero":
        inside &= mag >= lo
    return np.broadcast_to(inside, x.shape).copy()


def log_ste_backward(
    dout: np.ndarray,
    x: np.ndarray,
    quantizer: LogQuantizer | PowerOfTwoQuantizer,
    underflow: str = "pass",
) -> np.ndarray:
    """``dx = dout * [|x| <= x_max]``: the log STE as a function (see the module docstring).

    >>> pq = PowerOfTwoQuantizer(bits=3).set_range(-3.0, 1.0)   # levels 1, 2, 4
    >>> log_ste_backward(np.ones(4), np.array([0.1, 3.9, -4.0, 4.5]), pq).tolist()
    [1.0, 1.0, 1.0, 0.0]
    """
    dout = np.asarray(dout)
    return dout * log_ste_mask(quantizer, x, underflow)  # STE: rounding passes, clipping blocks
