"""``LogQuantizer``: the seed's log formula (section 4.2) generalised to signed data.

Code layout (sign-magnitude in a ``b``-bit signed integer): ``q = sign(x) * m`` with a magnitude
code ``m`` in ``[0, M]``, ``M = 2^(b-1) - 1``. The code ``-2^(b-1)`` is never produced, so codes
fit (and bit-pack) as ordinary b-bit two's-complement integers.

- ``m = 0`` is reserved: it means exactly zero (``x = 0`` -> 0.0, and back).
- ``m = 1..M`` are magnitudes on the seed's geometric grid from ``x_min`` to ``x_max``::

      m     = 1 + round( (log|x| - log x_min) / (log x_max - log x_min) * (M - 1) ),  clip [1, M]
      |x_hat| = x_min * (x_max / x_min) ** ((m - 1) / (M - 1))

  i.e. seed formula 4.2 applied to ``|x|`` with ``M - 1`` steps instead of ``2^b - 1`` (one bit
  goes to the sign, one code to zero). Neighbouring levels differ by the factor
  ``r = (x_max / x_min) ** (1 / (M - 1))``, so for ``x_min <= |x| <= x_max`` the relative error
  is at most ``sqrt(r) - 1`` (round to nearest in the log domain).
- Magnitudes below ``x_min`` (the rule, chosen and tested): they go to the nearer of the two
  representable values 0 and ``x_min`` in absolute terms: ``|x| < x_min / 2`` is flushed to
  exactly zero, ``x_min / 2 <= |x| < x_min`` is clamped up to ``x_min``. Magnitudes above
  ``x_max`` are clamped to ``x_max``.

How ``x_min`` is chosen (constructor option): ``set_range(min_val, max_val)`` takes the signed
data range like every quantizer and sets ``x_max = max(|min_val|, |max_val|)``; then either

- ``x_min=<float>``: a fixed smallest magnitude, or
- ``min_ratio=<float>`` in (0, 1): ``x_min = min_ratio * x_max``. Default (``None``): levels one
  octave apart (``r = 2``, ``min_ratio = 2^-(M-1)``) while that spans at most 24 octaves (the
  float32 mantissa); beyond that (b >= 6) the span is ``2^-24`` and ``r = 2^(24 / (M - 1))``.

Both are floored at the smallest normal float32 so a zero tensor never takes ``log 0``; a zero
range (all-zero data) gives all codes 0. Sources: seed document section 4; Miyashita et al. 2016,
arXiv:1603.01025 (log-domain quantization, 3-bit activations).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from .base import (
    FLOAT32_TINY,
    as_code_array,
    as_float_array,
    check_axis,
    check_bits,
    check_range,
    check_range_shape,
    code_dtype,
    expand_param,
    reduce_minmax,
)
from .rounding import check_rounding, round_values


def default_min_ratio(bits: int) -> float:
    """Default ``x_min / x_max``: one octave per level, at most 24 octaves in total.

    >>> default_min_ratio(3), default_min_ratio(4), default_min_ratio(8)
    (0.25, 0.015625, 5.960464477539063e-08)
    """
    m = 2 ** (check_bits(bits, 3) - 1) - 1
    return 2.0 ** -min(m - 1, 24)


class LogQuantizer:
    """Signed log quantizer: ``q = sign(x) * m``, ``m = 1 + round((log|x| - log x_min) /
    (log x_max - log x_min) * (M - 1))``, ``m = 0`` exactly zero (see the module docstring).

    Args:
        bits: 3..16 (one sign bit; ``M = 2^(b-1) - 1`` magnitude levels plus zero).
        x_min: fixed smallest magnitude (> 0), or None to derive it from ``min_ratio``.
        min_ratio: ``x_min / x_max`` in (0, 1); default ``default_min_ratio(bits)``.
        axis: per-channel along this axis (ranges of shape ``(C,)``), None per tensor.
        rounding: rounding of the log-domain index ("half_even", ..., "stochastic").
        seed: seed for stochastic rounding.

    Example, 3 bits (M = 3), range [-8, 4]: x_max = 8, x_min = 8 / 4 = 2, levels 2, 4, 8.
    0.9 < x_min / 2 -> 0; 1.2 -> x_min; -3 -> log2(3/2) = 0.58 -> m = 2 -> -4; 100 -> 8.

    >>> lq = LogQuantizer(bits=3).set_range(-8.0, 4.0)
    >>> lq.quantize(np.array([0.0, 0.9, 1.2, -3.0, 100.0]))
    array([ 0,  0,  1, -2,  3], dtype=int8)
    >>> lq.fake_quant(np.array([0.0, 0.9, 1.2, -3.0, 100.0]))
    array([ 0.,  0.,  2., -4.,  8.], dtype=float32)
    """

    def __init__(
        self,
        bits: int = 4,
        x_min: float | None = None,
        min_ratio: float | None = None,
        axis: int | None = None,
        rounding: str = "half_even",
        seed: int = 0,
    ) -> None:
        self.bits = check_bits(bits, 3, 16)
        self.levels = 2 ** (self.bits - 1) - 1  # M
        self.quant_min, self.quant_max = -self.levels, self.levels
        if x_min is not None and min_ratio is not None:
            raise ValueError("give either x_min (fixed) or min_ratio (relative to x_max), not both")
        if x_min is not None and not (np.isfinite(x_min) and x_min > 0):
            raise ValueError(f"x_min must be a finite positive number, got {x_min}")
        if min_ratio is not None and not (0 < min_ratio < 1):
            raise ValueError(f"min_ratio must lie in (0, 1), got {min_ratio}")
        self.fixed_x_min = None if x_min is None else float(x_min)
        self.min_ratio = default_min_ratio(self.bits) if min_ratio is None else float(min_ratio)
        self.axis = check_axis(axis)
        self.rounding = check_rounding(rounding)
        self.rng = np.random.default_rng(seed)
        self.x_min: np.ndarray | None = None
        self.x_max: np.ndarray | None = None

    def __repr__(self) -> str:
        return f"LogQuantizer(bits={self.bits}, levels={self.levels}, axis={self.axis})"

    def set_range(self, min_val: ArrayLike, max_val: ArrayLike) -> LogQuantizer:
        """``x_max = max(|min_val|, |max_val|)``, ``x_min`` by the constructor's rule (float64)."""
        lo, hi = check_range(min_val, max_val)
        check_range_shape(lo, self.axis)
        amax = np.maximum(np.abs(lo), np.abs(hi)).astype(np.float64)
        x_max = np.maximum(amax, FLOAT32_TINY)
        if self.fixed_x_min is not None:
            x_min = np.full_like(x_max, self.fixed_x_min)
            x_max = np.maximum(x_max, x_min)  # a range inside (0, x_min]: one magnitude level
        else:
            x_min = np.maximum(self.min_ratio * x_max, FLOAT32_TINY)
        self.x_min, self.x_max = x_min, x_max
        return self

    def fit(self, x: np.ndarray) -> LogQuantizer:
        """``set_range`` from x's own min and max (per tensor or per channel)."""
        return self.set_range(*reduce_minmax(as_float_array(x), self.axis, None))

    def _grid(self, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
        if self.x_min is None:
            raise ValueError("quantizer has no range yet: call set_range(min, max) or fit(x)")
        lo = expand_param(self.x_min, shape, self.axis, None)
        hi = expand_param(self.x_max, shape, self.axis, None)
        return lo, hi

    def quantize(self, x: np.ndarray) -> np.ndarray:
        """Signed codes ``sign(x) * m`` in ``[-M, M]`` (int8 up to 8 bits, else int16)."""
        x = as_float_array(x).astype(np.float64)
        lo, hi = self._grid(x.shape)
        mag = np.abs(x)
        width = np.log(hi) - np.log(lo)  # 0 when x_max == x_min: every nonzero |x| -> top level
        safe = np.where(width > 0, width, 1.0)
        t = np.where(
            width > 0, (np.log(np.maximum(mag, FLOAT32_TINY)) - np.log(lo)) / safe, 1.0
        ) * (self.levels - 1)
        m = 1 + np.clip(round_values(t, self.rounding, self.rng), 0, self.levels - 1)
        m = np.where(mag < lo / 2, 0, m)  # below x_min / 2 (and x == 0): exactly zero
        return (np.sign(x) * m).astype(code_dtype(self.quant_min, self.quant_max))

    def dequantize(self, q: np.ndarray) -> np.ndarray:
        """``sign(q) * x_min * (x_max / x_min) ** ((|q| - 1) / (M - 1))``, 0 for q = 0; float32."""
        q = as_code_array(q)
        if q.size and (q.min() < self.quant_min or q.max() > self.quant_max):
            raise ValueError(f"codes must lie in [{self.quant_min}, {self.quant_max}]")
        lo, hi = self._grid(q.shape)
        m = np.abs(q.astype(np.int32))
        mag = lo * np.exp((m - 1) / (self.levels - 1) * (np.log(hi) - np.log(lo)))
        return np.where(m == 0, 0.0, np.sign(q) * mag).astype(np.float32)

    def fake_quant(self, x: np.ndarray) -> np.ndarray:
        """``dequantize(quantize(x))``, float32."""
        return self.dequantize(self.quantize(x))

    def level_ratio(self) -> np.ndarray:
        """Ratio of neighbouring magnitude levels ``r = (x_max / x_min) ** (1 / (M - 1))``."""
        if self.x_min is None:
            raise ValueError("quantizer has no range yet: call set_range(min, max) or fit(x)")
        return (self.x_max / self.x_min) ** (1.0 / (self.levels - 1))
