"""``prepare_qat`` -> train -> ``convert_qat``: the seed's QAT recipe (section 3.4).

    qat_model = prepare_qat(model, qconfig, lsq=False)   # fake-quant nodes around every matmul
    ... train qat_model like the float model (refq.qat.train.qat_train) ...
    qmodel = convert_qat(qat_model)                      # the same int8 model PTQ produces

``QATLinear`` replaces a ``Linear`` (by dotted name, like PTQ's observed wrappers):

    forward:  x_hat = FQ_in(x)             (B, T, K) activations, observer then frozen range
              w_hat = FQ_w(W)              (N, K) weight, per-channel range refit every step
              y     = FQ_out(x_hat @ w_hat^T + b)   the requantization the int8 layer will do
    backward: dy_hat = FQ_out.backward(dy)                 (STE)
              dW    += FQ_w.backward(dy_hat^T x_hat)        (STE on the weight)
              db    += sum dy_hat
              dx     = FQ_in.backward(dy_hat @ w_hat)       (STE on the input)

With ``lsq=True`` the weight and input nodes are ``LSQFakeQuantize`` (learned scales, Esser et al.
2019, arXiv:1902.08153); their scales are parameters (``...fc1.weight_fake_quant.scale``) that the
optimizer trains with the weights. ``convert_qat`` reads the final qparams and builds exactly the
``QuantizedLinear`` that PTQ's ``convert`` builds (``refq.ptq.convert.linear_state``).
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

from refq.calibration import MovingAverageMinMaxObserver
from refq.nn.linear import Linear, MatMul
from refq.nn.module import Module
from refq.ptq.convert import linear_state, matmul_state_from_quantizers
from refq.ptq.qconfig import QConfig
from refq.ptq.quantized import QuantizedLinear, QuantizedMatMul
from refq.qat.fake_quant import FakeQuantize, fake_quant_modules
from refq.qat.lsq import LSQFakeQuantize


def _act_node(qc: QConfig, name: str, lsq: bool) -> Module:
    observer = MovingAverageMinMaxObserver()  # PyTorch's QAT default for activations
    if lsq:
        return LSQFakeQuantize(qc.activation(), observer, name=name)
    return FakeQuantize(qc.activation(), observer, name=name)


class QATLinear(Module):
    """A ``Linear`` with fake quantization of input, weight and output (see module docstring)."""

    def __init__(self, linear: Linear, qconfig: QConfig, name: str, lsq: bool = False) -> None:
        super().__init__()
        self.name, self.qconfig, self.lsq = name, qconfig, bool(lsq)
        object.__setattr__(self, "linear", linear)
        self.params, self.grads = linear.params, linear.grads  # names stay "<name>.weight"
        self.in_features, self.out_features = linear.in_features, linear.out_features
        wq = qconfig.weight()
        if lsq:
            self.weight_fake_quant = LSQFakeQuantize(wq, name=f"{name}.weight")
        else:  # no observer: the quantizer refits its range to the current weight every step
            self.weight_fake_quant = FakeQuantize(wq, name=f"{name}.weight")
        self.input_fake_quant = _act_node(qconfig, f"{name}.input", lsq)
        self.output_fake_quant = _act_node(qconfig, f"{name}.output", False)
        self._cache: tuple[np.ndarray, np.ndarray, tuple[int, ...]] | None = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        w = self.params["weight"]
        x2 = x.reshape(-1, self.in_features)  # (..., K) -> (M, K)
        x_hat = self.input_fake_quant(x2)  # (M, K)
        w_hat = self.weight_fake_quant(w)  # (N, K)
        y = x_hat @ w_hat.T  # (M, K) @ (K, N) -> (M, N)
        if "bias" in self.params:
            y += self.params["bias"]
        y = self.output_fake_quant(y)
        self._cache = (x_hat, w_hat, x.shape)
        return y.reshape(*x.shape[:-1], self.out_features)  # (M, N) -> (..., N)

    def backward(self, dout: np.ndarray) -> np.ndarray:
        if self._cache is None:
            raise RuntimeError(f"QATLinear {self.name!r}: backward called before forward")
        x_hat, w_hat, xshape = self._cache
        d2 = self.output_fake_quant.backward(dout.reshape(-1, self.out_features))  # (M, N)
        self.grads["weight"] += self.weight_fake_quant.backward(d2.T @ x_hat)  # (N, M)@(M, K)
        if "bias" in self.params:
            self.grads["bias"] += d2.sum(axis=0)  # (M, N) -> (N,)
        dx = self.input_fake_quant.backward(d2 @ w_hat)  # (M, N) @ (N, K) -> (M, K)
        return dx.reshape(xshape)

    def fake_quant_nodes(self) -> list[Module]:
        return [self.input_fake_quant, self.weight_fake_quant, self.output_fake_quant]

    def __repr__(self) -> str:
        return f"QATLinear({self.in_features}, {self.out_features}, lsq={self.lsq})"


class QATMatMul(Module):
    """An attention ``MatMul`` with both operands fake-quantized (STE on each)."""

    def __init__(self, matmul: MatMul, qconfig: QConfig, name: str, lsq: bool = False) -> None:
        super().__init__()
        self.name, self.qconfig = name, qconfig
        object.__setattr__(self, "matmul", matmul)
        self.a_fake_quant = _act_node(qconfig, f"{name}.a", lsq)
        self.b_fake_quant = _act_node(qconfig, f"{name}.b", lsq)

    def forward(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return self.matmul.forward(self.a_fake_quant(a), self.b_fake_quant(b))

    def backward(self, dout: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        da, db = self.matmul.backward(dout)
        return self.a_fake_quant.backward(da), self.b_fake_quant.backward(db)

    def fake_quant_nodes(self) -> list[Module]:
        return [self.a_fake_quant, self.b_fake_quant]

    def __repr__(self) -> str:
        return "QATMatMul()"


def prepare_qat(model: Module, qconfig: QConfig, lsq: bool = False) -> Module:
    """Copy ``model`` and put fake-quantization nodes around every Linear (and, with
    ``qconfig.quantize_attention``, every attention MatMul). The copy is in training mode."""
    if not isinstance(qconfig, QConfig):
        raise TypeError(f"qconfig must be a QConfig, got {type(qconfig).__name__}")
    qat = copy.deepcopy(model)
    for name, m in list(qat.named_modules()):
        if type(m) is Linear:
            qat.set_submodule(name, QATLinear(m, qconfig, name, lsq))
        elif type(m) is MatMul and qconfig.quantize_attention:
            qat.set_submodule(name, QATMatMul(m, qconfig, name, lsq))
    return qat.train()


def freeze_observers(model: Module, frozen: bool = True) -> None:
    """Disable (or re-enable) every activation observer: ranges stop moving (PyTorch
    ``disable_observer``). With LSQ this is also when the learned scales take over."""
    for _, node in fake_quant_modules(model):
        if node.observer is not None:  # weight nodes (no observer) keep refitting every step
            node.enable_observer(not frozen)


def _exported(node: Any) -> Any:
    return node.export_quantizer() if isinstance(node, LSQFakeQuantize) else node.quantizer


def convert_qat(qat_model: Module) -> Module:
    """The int8 model of a trained QAT model: same ``QuantizedLinear`` as PTQ's ``convert``."""
    layers = [(n, m) for n, m in qat_model.named_modules() if isinstance(m, (QATLinear, QATMatMul))]
    if not layers:
        raise ValueError("convert_qat needs a model returned by prepare_qat(): no QAT layers found")
    qmodel = copy.deepcopy(qat_model)
    for name, m in list(qmodel.named_modules()):
        if isinstance(m, QATLinear):
            for node in m.fake_quant_nodes():
                if node.num_forward == 0:
                    raise ValueError(f"layer {name!r}: no forward pass yet, so no ranges")
            wq = _exported(m.weight_fake_quant)
            if isinstance(m.weight_fake_quant, FakeQuantize) and hasattr(wq, "fit"):
                wq.fit(m.params["weight"])  # the final weights (the last step updated them)
            state, _ = linear_state(
                name, m.params["weight"], m.params.get("bias"), _exported(m.input_fake_quant),
                _exported(m.output_fake_quant), wq, m.qconfig.requant,
            )  # fmt: skip
            qmodel.set_submodule(name, QuantizedLinear(state, name))
        elif isinstance(m, QATMatMul):
            st = matmul_state_from_quantizers(
                name, _exported(m.a_fake_quant), _exported(m.b_fake_quant)
            )
            qmodel.set_submodule(name, QuantizedMatMul(st, name))
    return qmodel.eval()
