"""What quantization did to a model: per-layer output SQNR, sensitivity, size in bytes.

- ``layer_sqnr``: for every converted layer, the SQNR of its int8 output against the float layer
  applied to the *same* input (the local error of that layer alone), in dB:
  ``SQNR = 10 log10( sum y^2 / sum (y - y_q)^2 )``.
- ``sensitivity``: quantize one layer at a time (all others float) and measure what the model
  loses: the seed (section 8) names mixed precision as the next step, and this report is how one
  picks the layers to keep at higher precision.
- ``model_size_bytes``: the bytes a checkpoint stores for the weights (float32 params at 4 bytes,
  int8 codes at 1, packed int4 at 1/2, plus scales, zero points and int32 biases).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import numpy as np

from refq.nn.module import Module
from refq.ptq.quantized import QuantizedLinear, QuantizedMatMul


def sqnr_db(signal_power: float, noise_power: float) -> float:
    """``10 log10(signal / noise)``; +inf when the noise is exactly zero.

    >>> sqnr_db(100.0, 1.0)
    20.0
    """
    if noise_power == 0:
        return float("inf")
    return float(10.0 * np.log10(signal_power / noise_power))


class _Probe(Module):
    """Runs a quantized layer and its float original on the same input; accumulates powers."""

    def __init__(self, qlayer: Any, flayer: Any) -> None:
        super().__init__()
        object.__setattr__(self, "qlayer", qlayer)
        object.__setattr__(self, "flayer", flayer)
        self.signal = 0.0
        self.noise = 0.0

    def forward(self, *args: np.ndarray) -> np.ndarray:
        yq = self.qlayer.forward(*args)
        yf = self.flayer.forward(*args).astype(np.float64)
        self.signal += float(np.sum(yf**2))
        self.noise += float(np.sum((yf - yq) ** 2))
        return yq

    def backward(self, dout: np.ndarray) -> Any:
        raise RuntimeError("probes are for inference only")


def layer_sqnr(
    float_model: Module, qmodel: Module, batches: list[Any], run: Callable[[Module, Any], Any]
) -> dict[str, float]:
    """Per converted layer: SQNR (dB) of its output vs the float layer on the same input."""
    probed = copy.deepcopy(qmodel)
    probes: dict[str, _Probe] = {}
    for name, m in list(probed.named_modules()):
        if isinstance(m, (QuantizedLinear, QuantizedMatMul)):
            probes[name] = _Probe(m, float_model.get_submodule(name))
            probed.set_submodule(name, probes[name])
    if not probes:
        raise ValueError("layer_sqnr needs a converted model: no quantized layers found")
    for b in batches:
        run(probed, b)
    return {name: sqnr_db(p.signal, p.noise) for name, p in probes.items()}


def output_sqnr(
    float_model: Module, qmodel: Module, batches: list[Any], run: Callable[[Module, Any], Any]
) -> float:
    """SQNR (dB) of the whole model's outputs (logits), quantized vs float, over ``batches``."""
    sig = noise = 0.0
    for b in batches:
        yf = np.asarray(run(float_model, b), dtype=np.float64)
        yq = np.asarray(run(qmodel, b), dtype=np.float64)
        sig += float(np.sum(yf**2))
        noise += float(np.sum((yf - yq) ** 2))
    return sqnr_db(sig, noise)


def model_size_bytes(model: Module) -> int:
    """Bytes of the stored weights: float params as stored, quantized layers as packed."""
    total = sum(p.nbytes for _, p in model.named_parameters())
    for _, m in model.named_modules():
        if isinstance(m, (QuantizedLinear, QuantizedMatMul)):
            total += m.storage_nbytes()
    return int(total)


def sensitivity(
    float_model: Module,
    prepared: Module,
    batches: list[Any],
    run: Callable[[Module, Any], Any],
    score: Callable[[Module], dict[str, float]] | None = None,
) -> list[dict[str, Any]]:
    """Quantize one layer at a time (the others float) and measure the damage.

    For every observed layer of a calibrated ``prepared`` model: the model's output SQNR (dB) on
    ``batches`` and, if ``score`` is given (e.g. ``lambda m: evaluate(m, task, n=200)``), its
    metrics. Sorted from the most sensitive layer (lowest SQNR) to the least.
    """
    from refq.ptq.convert import convert
    from refq.ptq.observed import ObservedLinear, ObservedMatMul

    names = [
        n for n, m in prepared.named_modules() if isinstance(m, (ObservedLinear, ObservedMatMul))
    ]
    rows = []
    for name in names:
        one = convert(prepared, layers={name})
        row: dict[str, Any] = {
            "layer": name,
            "output_sqnr_db": output_sqnr(float_model, one, batches, run),
        }
        if score is not None:
            row.update(score(one))
        rows.append(row)
    return sorted(rows, key=lambda r: r["output_sqnr_db"])
