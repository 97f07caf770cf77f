"""``LinearQuantizer``: uniform (affine or symmetric) quantization as an object, and ``QParams``.

The object holds a configuration (bits, scheme, granularity, rounding) and, once given a range
(``set_range`` or ``fit``), its ``qparams``. The arithmetic is ``refq.quant.affine``::

    q     = clamp(round(x / scale) + zero_point, quant_min, quant_max)      (A1)
    x_hat = (q - zero_point) * scale                                         (A2)

with scale and zero point from PyTorch's observer rules (P1-P4 in ``affine.py``).

Granularity:

- per tensor (``axis=None``): one scale;
- per channel (``axis=k``): one scale per index along axis ``k``; ranges have shape ``(C,)``;
- per group (``axis=k, group_size=g``): axis ``k`` is cut into groups of ``g`` consecutive
  elements, one scale per group; ranges have ``x.shape`` with ``x.shape[k]`` replaced by
  ``x.shape[k] // g`` (a weight ``(out, in)`` with ``axis=1`` gets ``(out, in // g)``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from .affine import calculate_qparams, dequantize_affine, quant_range, quantize_affine
from .base import (
    as_float_array,
    check_axis,
    check_bits,
    check_range,
    check_range_shape,
    reduce_minmax,
)
from .rounding import check_rounding


@dataclass(frozen=True)
class QParams:
    """Quantization parameters of a uniform quantizer (what an int8 kernel needs).

    ``scale`` float32 and ``zero_point`` int32 have shape ``()`` per tensor, ``(C,)`` per
    channel, or the group shape per group.

    >>> QParams(np.float32(0.5), np.int32(0), -128, 127, None, None).quant_max
    127
    """

    scale: np.ndarray
    zero_point: np.ndarray
    quant_min: int
    quant_max: int
    axis: int | None
    group_size: int | None

    def __eq__(self, other: object) -> bool:
        """Equal when every field is equal (arrays compared with ``np.array_equal``)."""
        if not isinstance(other, QParams):
            return NotImplemented
        return (
            np.array_equal(self.scale, other.scale)
            and np.array_equal(self.zero_point, other.zero_point)
            and (self.quant_min, self.quant_max, self.axis, self.group_size)
            == (other.quant_min, other.quant_max, other.axis, other.group_size)
        )

    __hash__ = None  # arrays are not hashable


class LinearQuantizer:
    """Uniform quantizer: affine (``symmetric=False``) or symmetric, signed or unsigned codes.

    Formula: ``q = clamp(round(x / scale) + zero_point, quant_min, quant_max)``,
    ``x_hat = (q - zero_point) * scale``; scale/zero point from the signed range by PyTorch's
    rules (observer.py): the range is widened to contain 0, affine ``scale = (max - min) /
    (quant_max - quant_min)``, symmetric ``scale = max|x| / ((quant_max - quant_min) / 2)``,
    scale floored at float32 eps. Sources: gemmlowp ``doc/quantization.md``; arXiv:1712.05877.

    Args:
        bits: 2..16. Codes are ``[-2^(b-1), 2^(b-1) - 1]`` (signed) or ``[0, 2^b - 1]``.
        symmetric: zero point 0 (signed) or the mid code (unsigned, 128 for 8 bits).
        signed: signed (int8/int16) or unsigned (uint8/uint16) codes.
        narrow_range: drop the lowest code ([-127, 127] for 8-bit signed).
        axis: channel axis (per channel), or the axis cut into groups when ``group_size`` is set.
        group_size: group length along ``axis`` (needs ``axis``).
        rounding: "half_even" (default), "half_away", "floor" or "stochastic".
        seed: seed of the generator used by stochastic rounding (same seed, same codes).

    Example: 4-bit affine on the range [-1, 2]: scale = 3 / 15 = 0.2, zero point =
    -8 - round(-1 / 0.2) = -3; x = 0.5 -> round(2.5) - 3 = -1 (half to even) -> 0.4.

    >>> qz = LinearQuantizer(bits=4).set_range(-1.0, 2.0)
    >>> float(qz.qparams.scale), int(qz.qparams.zero_point)
    (0.20000000298023224, -3)
    >>> qz.quantize(np.array([0.0, 0.5, 2.0, 9.0]))
    array([-3, -1,  7,  7], dtype=int8)
    >>> qz.fake_quant(np.array([0.0, 0.5, 2.0, 9.0]))
    array([0. , 0.4, 2. , 2. ], dtype=float32)
    """

    def __init__(
        self,
        bits: int = 8,
        symmetric: bool = False,
        signed: bool = True,
        narrow_range: bool = False,
        axis: int | None = None,
        group_size: int | None = None,
        rounding: str = "half_even",
        seed: int = 0,
    ) -> None:
        self.bits = check_bits(bits)
        self.symmetric = bool(symmetric)
        self.signed = bool(signed)
        self.narrow_range = bool(narrow_range)
        self.axis = check_axis(axis)
        if group_size is not None:
            if isinstance(group_size, bool) or not isinstance(group_size, (int, np.integer)):
                raise TypeError(f"group_size must be an int or None, got {type(group_size)}")
            if group_size < 1:
                raise ValueError(f"group_size must be >= 1, got {group_size}")
            if axis is None:
                raise ValueError("group_size needs axis: the axis that is cut into groups")
        self.group_size = None if group_size is None else int(group_size)
        self.rounding = check_rounding(rounding)
        self.seed = int(seed)
        self.rng = np.random.default_rng(self.seed)
        self.quant_min, self.quant_max = quant_range(self.bits, self.signed, self.narrow_range)
        self.qparams: QParams | None = None

    def __repr__(self) -> str:
        kind = "symmetric" if self.symmetric else "affine"
        return (
            f"LinearQuantizer(bits={self.bits}, {kind}, [{self.quant_min}, {self.quant_max}], "
            f"axis={self.axis}, group_size={self.group_size}, rounding={self.rounding!r})"
        )

    def set_range(self, min_val: ArrayLike, max_val: ArrayLike) -> LinearQuantizer:
        """Set qparams from the signed data range: scalars, ``(C,)`` per channel, groups shape."""
        lo, hi = check_range(min_val, max_val)
        check_range_shape(lo, self.axis, grouped=self.group_size is not None)
        scale, zp = calculate_qparams(lo, hi, self.quant_min, self.quant_max, self.symmetric)
        self.qparams = QParams(
            scale, zp, self.quant_min, self.quant_max, self.axis, self.group_size
        )
        return self

    def fit(self, x: np.ndarray) -> LinearQuantizer:
        """``set_range`` from x's own min and max at this quantizer's granularity."""
        lo, hi = reduce_minmax(as_float_array(x), self.axis, self.group_size)
        return self.set_range(lo, hi)

    def _params(self) -> QParams:
        if self.qparams is None:
            raise ValueError("quantizer has no range yet: call set_range(min, max) or fit(x)")
        return self.qparams

    def quantize(self, x: np.ndarray) -> np.ndarray:
        """Integer codes (int8/uint8/int16/uint16) of ``x``: equation A1."""
        p = self._params()
        return quantize_affine(
            x, p.scale, p.zero_point, p.quant_min, p.quant_max,
            p.axis, self.rounding, self.rng, p.group_size,
        )  # fmt: skip

    def dequantize(self, q: np.ndarray) -> np.ndarray:
        """float32 values of codes ``q``: equation A2."""
        p = self._params()
        return dequantize_affine(q, p.scale, p.zero_point, p.axis, p.group_size)

    def fake_quant(self, x: np.ndarray) -> np.ndarray:
        """``dequantize(quantize(x))``, float32."""
        return self.dequantize(self.quantize(x))
