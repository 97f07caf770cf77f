"""The modules ``prepare`` inserts: a matmul plus observers, outputs unchanged.

``ObservedLinear`` wraps a ``refq.nn.Linear``; it shares the wrapped layer's ``params`` and
``grads`` dicts, so parameter names (``...fc1.weight``) and optimizers are unaffected, and it
records the range of its input (for the input quantizer) and of its output (for the requantizer).
``ObservedMatMul`` does the same for an attention matmul (two inputs and the output).

Observers only see the data; nothing is quantized here. ``convert`` reads the observers.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from refq.nn.linear import Linear, MatMul
from refq.nn.module import Module
from refq.ptq.qconfig import QConfig


def _observe(obs: Any, x: np.ndarray, what: str, name: str) -> None:
    if not np.all(np.isfinite(x)):
        raise ValueError(
            f"layer {name!r}: {what} contains NaN or infinite values during calibration"
        )
    obs.observe(x)


class ObservedLinear(Module):
    """``Linear`` with observers on its input and output (PyTorch: a prepared ``nn.Linear``).

    forward(x (..., in)) -> (..., out): exactly the wrapped layer's output.
    backward: the wrapped layer's backward (so a prepared model still trains).
    """

    def __init__(self, linear: Linear, qconfig: QConfig, name: str) -> None:
        super().__init__()
        self.name = name
        self.qconfig = qconfig
        object.__setattr__(self, "linear", linear)  # not a child: its params are ours
        self.params, self.grads = linear.params, linear.grads
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.weight_quantizer = qconfig.weight()
        self.input_quantizer = qconfig.activation()
        self.output_quantizer = qconfig.activation()
        self.input_observer = qconfig.activation_observer(self.input_quantizer)
        self.output_observer = qconfig.activation_observer(self.output_quantizer)
        self.batches_seen = 0

    def forward(self, x: np.ndarray) -> np.ndarray:
        _observe(self.input_observer, x, "input", self.name)
        y = self.linear.forward(x)
        _observe(self.output_observer, y, "output", self.name)
        self.batches_seen += 1
        return y

    def backward(self, dout: np.ndarray) -> np.ndarray:
        return self.linear.backward(dout)

    def __repr__(self) -> str:
        return f"ObservedLinear({self.in_features}, {self.out_features})"


class ObservedMatMul(Module):
    """``MatMul`` with observers on both inputs (attention: Q and K^T, or P and V)."""

    def __init__(self, matmul: MatMul, qconfig: QConfig, name: str) -> None:
        super().__init__()
        self.name = name
        self.qconfig = qconfig
        object.__setattr__(self, "matmul", matmul)
        self.a_quantizer = qconfig.activation()
        self.b_quantizer = qconfig.activation()
        self.a_observer = qconfig.activation_observer(self.a_quantizer)
        self.b_observer = qconfig.activation_observer(self.b_quantizer)
        self.batches_seen = 0

    def forward(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        _observe(self.a_observer, a, "left operand", self.name)
        _observe(self.b_observer, b, "right operand", self.name)
        self.batches_seen += 1
        return self.matmul.forward(a, b)

    def backward(self, dout: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.matmul.backward(dout)

    def __repr__(self) -> str:
        return "ObservedMatMul()"
