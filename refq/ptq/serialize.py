"""Quantized checkpoints: integer arrays stored as integers, ``.npz`` + JSON, no pickle.

Layout (same container as float checkpoints, ``refq.train.checkpoint``; kind ``"quantized"``):

    "<dotted param name>"                   float32 arrays of the layers that stay float
                                            (embeddings, LayerNorm, layers kept float)
    "quantized/<layer>/weight"              int8 codes (N, K)             (8-bit weights)
    "quantized/<layer>/weight_packed"       uint8, codes packed along K   (2/4-bit weights;
                                            refq.quant.packing layout, two's complement fields)
    "quantized/<layer>/bias"                int32 (N,)
    "quantized/<layer>/weight_scale" ...    float32 scales, int32 zero points, int32 code range
    "__meta__"                              JSON: config, task, {"layers": {name: {"type",
                                            "requant", "weight_shape"}}, "qconfig": ...}

``size_bytes`` of such a file (the sum of its arrays' bytes) is what the model really stores.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from refq.nn import TransformerConfig, build_model
from refq.nn.module import Module
from refq.ptq.quantized import QuantizedLinear, QuantizedMatMul, storage_bits
from refq.quant.packing import unpack_bits
from refq.train.checkpoint import register_loader, save_checkpoint

PREFIX = "quantized/"


def save_quantized(
    path: str | os.PathLike, qmodel: Module, meta: dict[str, Any] | None = None
) -> Path:
    """Write a converted model: float params, integer layers, metadata (atomic write)."""
    arrays = dict(qmodel.state_dict())
    layers: dict[str, dict[str, Any]] = {}
    for name, m in qmodel.named_modules():
        if isinstance(m, (QuantizedLinear, QuantizedMatMul)):
            for k, v in m.stored_arrays().items():
                arrays[f"{PREFIX}{name}/{k}"] = v
            info: dict[str, Any] = {
                "type": "linear" if isinstance(m, QuantizedLinear) else "matmul"
            }
            if isinstance(m, QuantizedLinear):
                info.update(requant=m.requant, weight_shape=[m.out_features, m.in_features])
            layers[name] = info
    if not layers:
        raise ValueError("save_quantized needs a converted model: no quantized layers found")
    meta = dict(meta or {}, layers=layers)
    return save_checkpoint(path, qmodel, meta, arrays=arrays, kind="quantized")


def _load_quantized(arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> Module:
    if "config" not in meta or "layers" not in meta:
        raise ValueError("quantized checkpoint has no model config or layer list")
    model = build_model(TransformerConfig.from_dict(meta["config"]))
    layer_state: dict[str, dict[str, np.ndarray]] = {}
    floats = {}
    for key, v in arrays.items():
        if key.startswith(PREFIX):
            name, _, field = key[len(PREFIX) :].rpartition("/")
            layer_state.setdefault(name, {})[field] = v
        else:
            floats[key] = v
    for name, info in meta["layers"].items():
        st = layer_state.get(name)
        if st is None:
            raise ValueError(f"quantized layer {name!r} has no arrays in the file")
        model.get_submodule(name)  # ValueError if the config has no such layer
        if info["type"] == "linear":
            if "weight_packed" in st:
                n, k = info["weight_shape"]
                field = storage_bits(int(st["weight_bits"]))
                st["weight"] = unpack_bits(st.pop("weight_packed"), field, k, signed=True)
                st["weight"] = st["weight"].astype(np.int8).reshape(n, k)
            st["requant"] = np.str_(info["requant"])
            model.set_submodule(name, QuantizedLinear(st, name))
        elif info["type"] == "matmul":
            model.set_submodule(name, QuantizedMatMul(st, name))
        else:
            raise ValueError(f"unknown quantized layer type {info['type']!r} for {name!r}")
    extra = sorted(set(layer_state) - set(meta["layers"]))
    if extra:
        raise ValueError(f"arrays for layers not in the metadata: {extra}")
    model.load_state_dict(floats)
    return model.eval()


register_loader("quantized", _load_quantized)
