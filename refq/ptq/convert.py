"""``prepare`` -> calibrate -> ``convert``: the seed document's PTQ recipe (section 3.3).

    prepared = prepare(model, qconfig)       # observers around every quantizable matmul
    calibrate(prepared, batches, run)        # run a little data through it (no training)
    qmodel = convert(prepared)               # int8 weights, int32 biases, int8 kernels

``prepare`` copies the model (like PyTorch's ``inplace=False``) and swaps each ``Linear`` (and,
with ``qconfig.quantize_attention``, each attention ``MatMul``) for an observed wrapper by dotted
name; the model code is never edited. ``convert`` reads the observers, fixes the qparams and
swaps the wrappers for ``QuantizedLinear``/``QuantizedMatMul``.

Mixed precision: ``overrides={"decoder.out_proj": W8A8, "encoder.layers.0.ff.fc1": None}``
gives a layer its own QConfig (``None`` keeps it float). Keys match a dotted name exactly or as
a prefix ending at a dot.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from refq.nn.linear import Linear, MatMul
from refq.nn.module import Module
from refq.ptq.observed import ObservedLinear, ObservedMatMul
from refq.ptq.qconfig import QConfig
from refq.ptq.quantized import INT32_MAX, INT32_MIN, QuantizedLinear, QuantizedMatMul, _per_tensor


def _qconfig_for(
    name: str, default: QConfig, overrides: dict[str, QConfig | None]
) -> QConfig | None:
    best, best_len = default, -1
    for key, qc in overrides.items():
        if (name == key or name.startswith(key + ".")) and len(key) > best_len:
            best, best_len = qc, len(key)
    return best


def quantizable_layers(model: Module, attention: bool = False) -> list[str]:
    """Dotted names of the modules PTQ/QAT replace: every Linear (and MatMul if ``attention``)."""
    kinds = (Linear, MatMul) if attention else (Linear,)
    return [n for n, m in model.named_modules() if type(m) in kinds]


def prepare(
    model: Module, qconfig: QConfig, overrides: dict[str, QConfig | None] | None = None
) -> Module:
    """Copy ``model`` and wrap every quantizable matmul with observers (outputs unchanged)."""
    if not isinstance(qconfig, QConfig):
        raise TypeError(f"qconfig must be a QConfig, got {type(qconfig).__name__}")
    overrides = dict(overrides or {})
    names = {n for n, _ in model.named_modules()}
    for key in overrides:
        if key not in names:
            raise ValueError(f"override names no submodule: {key!r}")
    prepared = copy.deepcopy(model)
    prepared.eval()
    for name, m in list(prepared.named_modules()):
        qc = _qconfig_for(name, qconfig, overrides)
        if qc is None:
            continue
        if type(m) is Linear:
            prepared.set_submodule(name, ObservedLinear(m, qc, name))
        elif type(m) is MatMul and qc.quantize_attention:
            prepared.set_submodule(name, ObservedMatMul(m, qc, name))
    return prepared


def calibrate(prepared: Module, batches: Iterable[Any], run: Callable[[Module, Any], Any]) -> int:
    """Run ``run(prepared, batch)`` for every batch (the seed's "calibration data"); returns the
    number of batches. Raises ValueError if there were none."""
    n = 0
    for batch in batches:
        run(prepared, batch)
        n += 1
    if n == 0:
        raise ValueError("calibration needs at least one batch of data, got none")
    return n


def _range(obs: Any, what: str, name: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        return obs.calculate_range()
    except ValueError as e:
        raise ValueError(f"layer {name!r}: {what} observer has no range ({e})") from e


def calibrate_weight(w: np.ndarray, quantizer: Any, observer: Any | None, name: str) -> None:
    """Give a weight quantizer its range: from ``observer`` if given, else its own ``fit``."""
    if not hasattr(quantizer, "set_range"):
        return  # a user-defined quantizer that needs no range
    if observer is not None:
        observer.observe(w)
        quantizer.set_range(*_range(observer, "weight", name))
    else:
        quantizer.fit(w)


def int8_grid_scale(decoded: np.ndarray) -> np.ndarray:
    """Per-row scale putting decoded (non-uniform) weight levels on the int8 grid s * [-127, 127].

    If every nonzero level of a row is an integer multiple (<= 127) of the row's smallest nonzero
    magnitude, that magnitude is the scale and the mapping is exact (power-of-two levels over at
    most 7 octaves: 1, 2, 4, ..., 64); otherwise ``max|w| / 127``.

    >>> int8_grid_scale(np.array([[0.5, -0.125, 0.0, 0.25], [0.3, 0.7, 0.11, 0.0]], np.float32))
    array([0.125     , 0.00551181], dtype=float32)
    """
    mag = np.abs(decoded.astype(np.float64))  # (N, K)
    amax = mag.max(axis=1)
    smallest = np.where(mag > 0, mag, np.inf).min(axis=1)  # (N,)
    ratio = mag / np.where(np.isfinite(smallest), smallest, 1.0)[:, None]
    exact = (np.abs(ratio - np.rint(ratio)) < 1e-6).all(axis=1) & (ratio.max(axis=1) <= 127)
    scale = np.where(exact & np.isfinite(smallest), smallest, amax / 127.0)
    return np.where(amax > 0, scale, 1.0).astype(np.float32)


def quantize_weight(
    w: np.ndarray, quantizer: Any, name: str
) -> tuple[dict[str, np.ndarray], float]:
    """Integer weight codes for the kernels from a calibrated quantizer: ``(state, sqnr_db)``.

    A uniform quantizer gives its codes directly (``weight`` int8 (N, K), scale/zero point per
    output channel). Any other quantizer (log, power-of-two, user-defined) is applied first and its
    decoded values are put on a symmetric int8 grid per output channel, the only grid an int8 GEMM
    multiplies; this is exact when the levels are integers times one scale (power-of-two levels
    spanning at most 7 octaves), otherwise it adds a rounding error that the returned SQNR shows.
    """
    n = w.shape[0]
    p = getattr(quantizer, "qparams", None)
    uniform = p is not None and hasattr(p, "zero_point") and p.group_size is None
    if uniform and p.quant_min >= -128 and p.quant_max <= 127:
        codes = quantizer.quantize(w).astype(np.int8)  # (N, K) int8
        scale = np.broadcast_to(p.scale, (n,)).astype(np.float32)
        zp = np.broadcast_to(p.zero_point, (n,)).astype(np.int32)
        bits = int(np.ceil(np.log2(p.quant_max - p.quant_min + 1)))
        w_hat = (codes.astype(np.float32) - zp[:, None]) * scale[:, None]
    else:
        if uniform:
            raise ValueError(
                f"layer {name!r}: weight codes [{p.quant_min}, {p.quant_max}] exceed int8"
            )
        if p is not None and getattr(p, "group_size", None) is not None:
            raise ValueError(f"layer {name!r}: per-group weights have no int8 kernel path")
        decoded = np.asarray(quantizer.fake_quant(w), dtype=np.float32)  # (N, K)
        scale = int8_grid_scale(decoded)  # (N,)
        codes = np.clip(np.rint(decoded / scale[:, None]), -127, 127).astype(np.int8)
        zp = np.zeros(n, np.int32)
        bits = 8
        w_hat = codes.astype(np.float32) * scale[:, None]
    err = float(np.mean((w.astype(np.float64) - w_hat) ** 2))
    sig = float(np.mean(w.astype(np.float64) ** 2))
    sqnr = 10 * np.log10(sig / err) if err > 0 else float("inf")
    state = {"weight": codes, "weight_scale": scale, "weight_zero_point": zp,
             "weight_bits": np.int32(bits)}  # fmt: skip
    return state, sqnr


def linear_state(
    name: str,
    weight: np.ndarray,
    bias: np.ndarray | None,
    input_quantizer: Any,
    output_quantizer: Any,
    weight_quantizer: Any,
    requant: str,
) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """Everything a ``QuantizedLinear`` needs, from calibrated quantizers (PTQ and QAT share it).

    ``weight_quantizer`` must already have its range (``quantize_weight`` gives it one).
    """
    state, w_sqnr = quantize_weight(weight, weight_quantizer, name)
    s_in, z_in, qmin, qmax = _per_tensor(input_quantizer, "input", name)
    s_out, z_out, _, _ = _per_tensor(output_quantizer, "output", name)
    state.update(
        input_scale=s_in, input_zero_point=z_in, output_scale=s_out, output_zero_point=z_out,
        act_qmin=np.int32(qmin), act_qmax=np.int32(qmax), requant=np.str_(requant),
    )  # fmt: skip
    if bias is not None:
        bias_scale = s_in.astype(np.float64) * state["weight_scale"]  # (N,), TFLite: s_in * s_w
        q = np.rint(bias.astype(np.float64) / bias_scale)
        state["bias"] = np.clip(q, INT32_MIN, INT32_MAX).astype(np.int32)
    return state, {"weight_sqnr_db": w_sqnr}


def observed_linear_state(obs: ObservedLinear) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """Fix the qparams of a calibrated ``ObservedLinear`` from its observers; build the state."""
    name, qc = obs.name, obs.qconfig
    if obs.batches_seen == 0:
        raise ValueError(f"layer {name!r} saw no calibration data: calibrate before convert")
    w = obs.params["weight"]
    wobs = qc.weight_observer(obs.weight_quantizer) if qc.weight_observer else None
    calibrate_weight(w, obs.weight_quantizer, wobs, name)
    obs.input_quantizer.set_range(*_range(obs.input_observer, "input", name))
    obs.output_quantizer.set_range(*_range(obs.output_observer, "output", name))
    return linear_state(
        name, w, obs.params.get("bias"), obs.input_quantizer, obs.output_quantizer,
        obs.weight_quantizer, qc.requant,
    )  # fmt: skip


def matmul_state_from_quantizers(
    name: str, a_quantizer: Any, b_quantizer: Any
) -> dict[str, np.ndarray]:
    """Everything a ``QuantizedMatMul`` needs, from the two calibrated operand quantizers."""
    s_a, z_a, qmin, qmax = _per_tensor(a_quantizer, "left operand", name)
    s_b, z_b, _, _ = _per_tensor(b_quantizer, "right operand", name)
    return dict(a_scale=s_a, a_zero_point=z_a, b_scale=s_b, b_zero_point=z_b,
                act_qmin=np.int32(qmin), act_qmax=np.int32(qmax))  # fmt: skip


def matmul_state(obs: ObservedMatMul) -> dict[str, np.ndarray]:
    """Fix the operand qparams of a calibrated ``ObservedMatMul`` and build its state."""
    name = obs.name
    if obs.batches_seen == 0:
        raise ValueError(f"layer {name!r} saw no calibration data: calibrate before convert")
    obs.a_quantizer.set_range(*_range(obs.a_observer, "left operand", name))
    obs.b_quantizer.set_range(*_range(obs.b_observer, "right operand", name))
    return matmul_state_from_quantizers(name, obs.a_quantizer, obs.b_quantizer)


def convert(prepared: Module, report: dict | None = None, layers: set[str] | None = None) -> Module:
    """Return a copy of a calibrated prepared model whose observed matmuls run on int8 kernels.

    ``report``, if given, receives per-layer facts (weight SQNR in dB). ``layers``, if given,
    converts only those observed layers and puts the float originals back elsewhere (used by the
    one-layer-at-a-time sensitivity analysis).
    """
    observed = {n for n, m in prepared.named_modules()
                if isinstance(m, (ObservedLinear, ObservedMatMul))}  # fmt: skip
    if not observed:
        raise ValueError("convert needs a model returned by prepare(): no observed layers found")
    if layers is not None and not set(layers) <= observed:
        raise ValueError(f"not observed layers: {sorted(set(layers) - observed)}")
    qmodel = copy.deepcopy(prepared)
    for name, m in list(qmodel.named_modules()):
        if layers is not None and name in observed and name not in layers:
            inner = m.linear if isinstance(m, ObservedLinear) else m.matmul
            qmodel.set_submodule(name, inner)
        elif isinstance(m, ObservedLinear):
            state, facts = observed_linear_state(m)
            qmodel.set_submodule(name, QuantizedLinear(state, name))
            if report is not None:
                report[name] = facts
        elif isinstance(m, ObservedMatMul):
            qmodel.set_submodule(name, QuantizedMatMul(matmul_state(m), name))
    qmodel.eval()
    return qmodel


def quantized_layers(model: Module) -> dict[str, Module]:
    """The converted layers of a model, by dotted name."""
    return {
        n: m for n, m in model.named_modules() if isinstance(m, (QuantizedLinear, QuantizedMatMul))
    }
