"""refq.qat: fake-quantization modules for quantization-aware training (seed section 3, "QAT").

- ``FakeQuantize``     forward ``dequantize(quantize(x))``, backward the clipped straight-through
                       estimator (Bengio et al. 2013, arXiv:1308.3432), PyTorch's flags
                       ``observer_enabled`` / ``fake_quant_enabled``.
- ``LSQFakeQuantize``  learned step size (Esser et al. 2019, arXiv:1902.08153): the scale (and
                       optionally the zero point) is a parameter with its own gradient.
- ``log_ste``          the STE refq defines for the log and power-of-two quantizers.

These modules act on arrays and know nothing of layers. ``refq.qat.prepare`` wraps model layers
with them (``prepare_qat``, ``convert_qat``) and ``refq.qat.train.qat_train`` runs the schedule:

>>> from refq.qat import prepare_qat, qat_train, convert_qat
"""

from refq.qat.fake_quant import (
    FakeQuantBase,
    FakeQuantize,
    check_quantizer,
    fake_quant_modules,
    set_fake_quant,
    set_observers,
    ste_for,
)
from refq.qat.log_ste import is_log_quantizer, log_ste_backward, log_ste_mask, magnitude_range
from refq.qat.lsq import LSQFakeQuantize, lsq_grad_scale, lsq_init_scale
from refq.qat.prepare import QATLinear, QATMatMul, convert_qat, freeze_observers, prepare_qat
from refq.qat.train import QATDiverged, qat_train

__all__ = [
    "FakeQuantBase",
    "FakeQuantize",
    "LSQFakeQuantize",
    "QATDiverged",
    "QATLinear",
    "QATMatMul",
    "check_quantizer",
    "convert_qat",
    "fake_quant_modules",
    "freeze_observers",
    "is_log_quantizer",
    "log_ste_backward",
    "log_ste_mask",
    "lsq_grad_scale",
    "lsq_init_scale",
    "magnitude_range",
    "prepare_qat",
    "qat_train",
    "set_fake_quant",
    "set_observers",
    "ste_for",
]
