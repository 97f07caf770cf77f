"""``PowerOfTwoQuantizer``: the "exponential" quantizer, values ``sign * s * 2^e``.

Miyashita, Lee and Murmann 2016, "Convolutional Neural Networks using Logarithmic Data
Representation", arXiv:1603.01025: ``LogQuant(x) = 0 if x = 0, else sign(x) * 2^x~`` with
``x~ = clip(round(log2|x|), FSR - 2^b, FSR)``; multiplying by such a value is a bit shift.

refq's version (sign-magnitude code in a b-bit signed integer, as ``LogQuantizer``)::

    q = sign(x) * m,  m in [0, M],  M = 2^(b-1) - 1,  m = 0 means exactly zero
    e = m - 1 = clip( round( log2(|x| / s) ), 0, M - 1 )      for |x| >= s / 2
    x_hat = sign(q) * s * 2^(m - 1)  = np.ldexp(sign(q) * s, m - 1)   (exact: a shift)

``s`` is the smallest magnitude. ``set_range`` takes the signed data range, ``x_max = max(|min|,
|max|)``, and puts the top level ``s * 2^(M-1)`` at ``x_max`` rounded *up* to a power of two
(``pow2_scale=True``, the default, so every value is a pure power of two ``±2^k``, Miyashita's
FSR = ceil(log2 x_max)) or at ``x_max`` itself (``pow2_scale=False``: ``s`` any float32).

Below-range rule (same as ``LogQuantizer``): ``|x| < s / 2`` is flushed to exactly 0,
``s / 2 <= |x| < s`` clamps to ``s``; above the top level clamps to it. Rounding is in the log2
domain (nearest exponent); the relative error inside the range is at most ``sqrt(2) - 1``.

Bits 3..7: M - 1 = 2^(b-1) - 2 octaves must fit float32's exponent range (7 bits: 62 octaves).
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


class PowerOfTwoQuantizer:
    """Power-of-two quantizer: ``x_hat = sign(q) * s * 2^(|q| - 1)``, ``q = 0`` exactly zero.

    Formula: ``|q| = 1 + clip(round(log2(|x| / s)), 0, M - 1)`` (0 if ``|x| < s / 2``),
    ``M = 2^(b-1) - 1``. Source: Miyashita et al. 2016, arXiv:1603.01025.

    Args:
        bits: 3..7.
        pow2_scale: round the top level up to a power of two (values are exactly ``±2^k``).
        axis: per-channel along this axis, None per tensor.
        rounding: rounding of ``log2(|x| / s)``; seed: for stochastic rounding.

    Example, 3 bits (M = 3, exponents 0..2), range [-3, 1]: x_max = 3 -> top level 4, s = 1;
    values 0, ±1, ±2, ±4. 1.3: log2 1.3 = 0.38 -> e 0 -> 1; -3: 1.58 -> e 2 -> -4; 0.4 < s/2 -> 0;
    2.5: 1.32 -> e 1 -> 2; 0.6 >= s/2 -> clamped up to s = 1.

    >>> pq = PowerOfTwoQuantizer(bits=3).set_range(-3.0, 1.0)
    >>> float(pq.scale)
    1.0
    >>> pq.quantize(np.array([1.3, -3.0, 0.4, 0.6, 2.5]))
    array([ 1, -3,  0,  1,  2], dtype=int8)
    >>> pq.fake_quant(np.array([1.3, -3.0, 0.4, 0.6, 2.5]))
    array([ 1., -4.,  0.,  1.,  2.], dtype=float32)
    """

    def __init__(
        self,
        bits: int = 4,
        pow2_scale: bool = True,
        axis: int | None = None,
        rounding: str = "half_even",
        seed: int = 0,
    ) -> None:
        self.bits = check_bits(bits, 3, 7)
        self.levels = 2 ** (self.bits - 1) - 1  # M
        self.quant_min, self.quant_max = -self.levels, self.levels
        self.pow2_scale = bool(pow2_scale)
        self.axis = check_axis(axis)
        self.rounding = check_rounding(rounding)
        self.rng = np.random.default_rng(seed)
        self.scale: np.ndarray | None = None  # s, float32, the smallest magnitude

    def __repr__(self) -> str:
        return f"PowerOfTwoQuantizer(bits={self.bits}, pow2_scale={self.pow2_scale})"

    def set_range(self, min_val: ArrayLike, max_val: ArrayLike) -> PowerOfTwoQuantizer:
        """Top level at ``max(|min_val|, |max_val|)`` (rounded up to 2^k if pow2_scale)."""
        lo, hi = check_range(min_val, max_val)
        check_range_shape(lo, self.axis)
        top = np.maximum(np.maximum(np.abs(lo), np.abs(hi)).astype(np.float64), FLOAT32_TINY)
        if self.pow2_scale:
            top = np.ldexp(1.0, np.ceil(np.log2(top)).astype(np.int32))  # 2^ceil(log2 x_max)
        self.scale = np.ldexp(top, -(self.levels - 1)).astype(np.float32)  # s = top * 2^-(M-1)
        return self

    def fit(self, x: np.ndarray) -> PowerOfTwoQuantizer:
        """``set_range`` from x's own min and max (per tensor or per channel)."""
        return self.set_range(*reduce_minmax(as_float_array(x), self.axis, None))

    def _s(self, shape: tuple[int, ...]) -> np.ndarray:
        if self.scale is None:
            raise ValueError("quantizer has no range yet: call set_range(min, max) or fit(x)")
        return expand_param(self.scale, shape, self.axis, None)

    def quantize(self, x: np.ndarray) -> np.ndarray:
        """Signed codes ``sign(x) * (1 + e)`` in ``[-M, M]`` (int8)."""
        x = as_float_array(x).astype(np.float64)
        s = self._s(x.shape).astype(np.float64)
        mag = np.abs(x)
        e = round_values(np.log2(np.maximum(mag, FLOAT32_TINY) / s), self.rounding, self.rng)
        m = 1 + np.clip(e, 0, self.levels - 1)
        m = np.where(mag < s / 2, 0, m)  # below s / 2 (and x == 0): exactly zero
        return (np.sign(x) * m).astype(code_dtype(self.quant_min, self.quant_max))

    def exponents(self, q: np.ndarray) -> np.ndarray:
        """Integer exponents ``e = |q| - 1`` (int32; -1 where q == 0, unused)."""
        return np.abs(as_code_array(q).astype(np.int32)) - 1

    def dequantize(self, q: np.ndarray) -> np.ndarray:
        """``np.ldexp(sign(q) * s, |q| - 1)``: the integer mantissa ``sign(q)`` times ``s``, shifted
        by the exponent; exact in float32 (no multiply-rounding). 0 for q == 0."""
        q = as_code_array(q)
        if q.size and (q.min() < self.quant_min or q.max() > self.quant_max):
            raise ValueError(f"codes must lie in [{self.quant_min}, {self.quant_max}]")
        s = self._s(q.shape)
        e = self.exponents(q)
        mant = np.sign(q).astype(np.float32) * s  # float32: 0 or ±s
        return np.ldexp(mant, np.maximum(e, 0)).astype(np.float32)  # mant * 2^e, exact

    def fake_quant(self, x: np.ndarray) -> np.ndarray:
        """``dequantize(quantize(x))``, float32."""
        return self.dequantize(self.quantize(x))


def shift_multiply(a: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Multiply integers ``a`` by power-of-two codes ``q`` with shifts only: ``sign(q) * (a << e)``.

    With ``x_hat = s * sign(q) * 2^e`` (``e = |q| - 1``), ``a * x_hat = s * shift_multiply(a, q)``:
    the integer part needs no multiplier (Miyashita et al. 2016, arXiv:1603.01025, section 3).
    ``a`` is an integer array broadcastable with ``q``; the result is int64.

    >>> shift_multiply(np.array([3, -5, 7], dtype=np.int8), np.array([3, -2, 0], dtype=np.int8))
    array([12, 10,  0])
    """
    a = as_code_array(a, "a").astype(np.int64)
    q = as_code_array(q).astype(np.int64)
    e = np.abs(q) - 1  # int64 exponents, -1 for q == 0
    if e.size and e.max() > 62:
        raise ValueError("exponent too large for int64 shifts")
    shifted = np.left_shift(a, np.maximum(e, 0))  # a * 2^e, int64
    return np.where(q == 0, 0, np.sign(q) * shifted)
