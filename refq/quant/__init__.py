"""refq.quant: the formula layer (pure NumPy, no model knowledge).

- ``seed``      the seed document's two formulas (section 4), exactly as written:
                ``minmax_quantize``/``minmax_dequantize``, ``log_quantize``/``log_dequantize``.
- ``rounding``  half_even (default), half_away, floor, stochastic (seeded).
- ``affine``    the PyTorch/gemmlowp scale + zero-point form, functional, and PyTorch's qparams.
- ``linear``    ``LinearQuantizer`` (affine/symmetric, per tensor/channel/group) and ``QParams``.
- ``log``       ``LogQuantizer``: the seed's log formula for signed data.
- ``pow2``      ``PowerOfTwoQuantizer``: values sign * s * 2^e, dequantize is a shift.
- ``packing``   int4/int2/int1 codes packed into bytes, exact size accounting.
- ``metrics``   MSE, max error, SQNR, and the theory they are checked against.

Every quantizer has ``quantize``, ``dequantize`` and ``fake_quant``; any object with those three
methods is a ``Quantizer`` and works wherever a built-in one does.
"""

from .affine import (
    calculate_qparams,
    dequantize_affine,
    fake_quantize_affine,
    quant_range,
    quantize_affine,
)
from .base import CalibratableQuantizer, Quantizer
from .linear import LinearQuantizer, QParams
from .log import LogQuantizer
from .metrics import (
    DB_PER_BIT,
    log_relative_error_bound,
    log_sqnr_theory_db,
    max_abs_error,
    max_relative_error,
    mse,
    quantization_report,
    sqnr_db,
    sqnr_uniform_theory_db,
    uniform_noise_power,
)
from .packing import pack_bits, packed_nbytes, unpack_bits
from .pow2 import PowerOfTwoQuantizer, shift_multiply
from .rounding import ROUNDING_MODES, round_values
from .seed import (
    log_dequantize,
    log_quantize,
    minmax_dequantize,
    minmax_quantize,
    minmax_zero_error,
)

__all__ = [
    "CalibratableQuantizer",
    "DB_PER_BIT",
    "LinearQuantizer",
    "LogQuantizer",
    "PowerOfTwoQuantizer",
    "QParams",
    "Quantizer",
    "ROUNDING_MODES",
    "calculate_qparams",
    "dequantize_affine",
    "fake_quantize_affine",
    "log_dequantize",
    "log_quantize",
    "log_relative_error_bound",
    "log_sqnr_theory_db",
    "max_abs_error",
    "max_relative_error",
    "minmax_dequantize",
    "minmax_quantize",
    "minmax_zero_error",
    "mse",
    "pack_bits",
    "packed_nbytes",
    "quant_range",
    "quantization_report",
    "quantize_affine",
    "round_values",
    "shift_multiply",
    "sqnr_db",
    "sqnr_uniform_theory_db",
    "unpack_bits",
    "uniform_noise_power",
]
