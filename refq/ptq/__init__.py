"""Post-training quantization (seed document section 3.3): prepare -> calibrate -> convert.

>>> import numpy as np
>>> from refq.nn.linear import Linear
>>> from refq.nn.module import Module
>>> class Net(Module):
...     def __init__(self):
...         super().__init__()
...         self.fc = Linear(8, 4, rng=np.random.default_rng(0))
...     def forward(self, x):
...         return self.fc(x)
>>> rng = np.random.default_rng(0)
>>> prepared = prepare(Net(), W8A8)
>>> calibrate(prepared, [rng.normal(size=(16, 8)).astype(np.float32)], lambda m, x: m(x))
1
>>> qnet = convert(prepared)
>>> qnet.fc
QuantizedLinear(8, 4, w8, float)
>>> qnet.fc.state["weight"].dtype, qnet.fc.state["bias"].dtype
(dtype('int8'), dtype('int32'))
"""

from refq.ptq.convert import (
    calibrate,
    convert,
    linear_state,
    prepare,
    quantizable_layers,
    quantize_weight,
    quantized_layers,
)
from refq.ptq.observed import ObservedLinear, ObservedMatMul
from refq.ptq.qconfig import OBSERVERS, W4A8, W8A8, W8A8_LOG, QConfig, get_qconfig, make_observer
from refq.ptq.quantized import QuantizedLinear, QuantizedMatMul
from refq.ptq.serialize import save_quantized  # also registers the quantized loader

__all__ = [
    "OBSERVERS",
    "ObservedLinear",
    "ObservedMatMul",
    "QConfig",
    "QuantizedLinear",
    "QuantizedMatMul",
    "W4A8",
    "W8A8",
    "W8A8_LOG",
    "calibrate",
    "convert",
    "get_qconfig",
    "linear_state",
    "make_observer",
    "prepare",
    "quantizable_layers",
    "quantize_weight",
    "quantized_layers",
    "save_quantized",
]
