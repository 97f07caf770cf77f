"""The guided tour: train a small Transformer, quantize it every way, compare, draw figures.

``refq tour`` runs this. Every number it prints is measured in the run; figures are written into
``figures/`` and a JSON summary (``tour.json``) with the checkpoints into ``--out`` (default
``runs/tour``). The steps follow the seed document:

1. train the float encoder-decoder on a built-in task (section 2: the Transformer);
2. quantize one weight matrix with every formula and plot the error distributions
   (section 4: linear min-max, log; and the power-of-two quantizer of section 3);
3. PTQ with every observer at 8 and 4 bits, per tensor, log weights, quantized attention,
   and the integer model saved and reloaded (section 3.3 and 5: prepare, calibrate, convert, save);
4. where PTQ breaks (2-3 bit weights, 4-bit activations), QAT with the straight-through estimator
   and with LSQ recovers (section 3.4);
5. the comparison table with accuracy, F1, size in bytes and SQNR (section 9: metrics).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from refq import plots
from refq.ptq import get_qconfig
from refq.ptq.analysis import layer_sqnr, model_size_bytes, output_sqnr
from refq.ptq.flow import calibration_batches, quantize_model, run_batch
from refq.ptq.serialize import save_quantized
from refq.qat.prepare import convert_qat
from refq.qat.train import qat_train
from refq.quant import LinearQuantizer, LogQuantizer, PowerOfTwoQuantizer
from refq.quant.seed import minmax_dequantize, minmax_quantize
from refq.train.checkpoint import load_checkpoint, save_checkpoint, weights_size_bytes
from refq.train.evaluate import evaluate
from refq.train.tasks import get_task
from refq.train.trainer import train_task

METRICS = ("token_accuracy", "exact_match", "precision", "recall", "f1")

PTQ_CONFIGS: list[tuple[str, dict[str, Any]]] = [
    *[
        (f"PTQ W8A8 {o}", dict(weight_bits=8, observer=o))
        for o in ("minmax", "ema", "percentile", "mse", "entropy")
    ],  # fmt: skip
    ("PTQ W8A8 minmax per-tensor", dict(weight_bits=8, per_channel=False)),
    ("PTQ W8A8 log weights", dict(weight_bits=8, log=True)),
    ("PTQ W8A8 + attention", dict(weight_bits=8, quantize_attention=True)),
    ("PTQ W8A8 fixed-point requant", dict(weight_bits=8, requant="fixed_point")),
    ("PTQ W4A8 minmax", dict(weight_bits=4)),
    ("PTQ W4A8 mse (w+a)", dict(weight_bits=4, observer="mse", weight_observer="mse")),
    ("PTQ W4A8 minmax per-tensor", dict(weight_bits=4, per_channel=False)),
    ("PTQ W4A8 log weights", dict(weight_bits=4, log=True)),
    ("PTQ W3A8 minmax", dict(weight_bits=3)),
    ("PTQ W2A8 minmax", dict(weight_bits=2)),
    ("PTQ W8A4 minmax", dict(weight_bits=8, act_bits=4)),
    ("PTQ W4A4 minmax", dict(weight_bits=4, act_bits=4)),
]
QAT_CONFIGS: list[tuple[str, dict[str, Any], bool]] = [
    ("QAT W3A8 STE", dict(weight_bits=3), False),
    ("QAT W2A8 STE", dict(weight_bits=2), False),
    ("QAT W2A8 LSQ", dict(weight_bits=2), True),
    ("QAT W4A4 STE", dict(weight_bits=4, act_bits=4), False),
]
SQNR_LINES = ("PTQ W8A8 minmax", "PTQ W8A8 entropy", "PTQ W4A8 minmax", "PTQ W4A8 mse (w+a)")


def weight_errors(w: np.ndarray) -> dict[str, np.ndarray]:
    """``w - w_hat`` of one weight matrix (out, in) under every formula refq has."""
    lo, hi = float(w.min()), float(w.max())
    quantizers = {
        "affine per-tensor, 4 bit": LinearQuantizer(4),
        "symmetric per-channel, 4 bit": LinearQuantizer(4, symmetric=True, axis=0),
        "log (seed 4.2, signed), 4 bit": LogQuantizer(4, axis=0),
        "power of two, 4 bit": PowerOfTwoQuantizer(4, axis=0),
        "symmetric per-channel, 8 bit": LinearQuantizer(8, symmetric=True, axis=0),
    }
    seed_hat = minmax_dequantize(minmax_quantize(w, lo, hi, 4), lo, hi, 4)
    out = {"seed 4.1 min-max, 4 bit": w - seed_hat}
    out.update({k: w - q.fit(w).fake_quant(w) for k, q in quantizers.items()})
    return {k: np.asarray(v, dtype=np.float64) for k, v in out.items()}


def run_tour(
    task_name: str = "reverse",
    steps: int | None = None,
    qat_steps: int = 400,
    eval_n: int = 1000,
    out_dir: str | Path = "runs/tour",
    figures_dir: str | Path = "figures",
    seed: int = 0,
    log: Callable[[str], None] = print,
    model_overrides: dict[str, Any] | None = None,
    calib_batches: int = 8,
) -> dict[str, Any]:
    """Run the tour; returns the summary that is also written to ``out_dir/tour.json``.

    ``model_overrides`` (e.g. ``{"d_model": 16}``) and ``calib_batches`` shrink it for tests.
    """
    t_start = time.perf_counter()
    out_dir, figures_dir = Path(out_dir), Path(figures_dir)
    task = get_task(task_name)
    log(f"[1/5] training a float Transformer on {task_name!r} ...")
    model, cfg, tcfg, hist = train_task(
        task, seed=seed, steps=steps, model_overrides=model_overrides,
        log=lambda r: log(f"      step {r['step']:>5d}  loss {r['loss']:.4f}  {r['seconds']:.0f}s"),
    )  # fmt: skip
    task_meta = {"name": task.name, "params": task.params()}
    float_path = save_checkpoint(
        out_dir / "float.npz", model, {"task": task_meta, "vocab": task.vocab}
    )
    float_m = evaluate(model, task, n=eval_n)
    float_size = weights_size_bytes(float_path)
    log(f"      float32: exact {float_m['exact_match']:.4f}, {float_size} bytes, "
        f"{tcfg.steps} steps in {hist[-1]['seconds']:.0f}s")  # fmt: skip

    log("[2/5] one weight matrix under every formula (figures/tour_weight_errors.png)")
    w = model.get_submodule("encoder.layers.0.ff.fc1").params["weight"]
    errs = weight_errors(w)
    plots.error_histograms(errs, figures_dir / "tour_weight_errors.png", "w - w_hat")
    for k, e in errs.items():
        log(f"      {k:<32s} RMS error {np.sqrt(np.mean(e**2)):.2e}")

    log("[3/5] post-training quantization (int8 kernels) ...")
    probe = list(calibration_batches(task, 2, 64, seed=99))
    rows: list[dict[str, Any]] = []
    for label, kw in PTQ_CONFIGS:
        q = quantize_model(model, task, get_qconfig(**kw), n_batches=calib_batches)
        rows.append(_row(label, q, task, eval_n, float_size, model, probe))
        log("      " + _fmt(rows[-1]))
        if label == "PTQ W8A8 minmax":  # save it, load it back: the file is the model
            qpath = save_quantized(
                out_dir / "w8a8.npz", q, {"task": task_meta, "vocab": task.vocab}
            )
            reloaded, _ = load_checkpoint(qpath)
            same = bool(np.array_equal(run_batch(reloaded, probe[0]), run_batch(q, probe[0])))
            log(f"      saved {qpath} ({weights_size_bytes(qpath)} bytes); "
                f"reloaded outputs identical: {same}")  # fmt: skip

    log(f"[4/5] quantization-aware training ({qat_steps} steps each) ...")
    for label, kw, lsq in QAT_CONFIGS:
        t0 = time.perf_counter()
        qc = get_qconfig(**kw)
        qat = qat_train(model, task, qc, steps=qat_steps, lsq=lsq, seed=seed,
                        calib_batches=min(4, calib_batches))  # fmt: skip
        q = convert_qat(qat)
        rows.append(_row(label, q, task, eval_n, float_size, model, probe))
        rows[-1]["train_seconds"] = round(time.perf_counter() - t0, 1)
        log("      " + _fmt(rows[-1]))

    log("[5/5] comparison")
    by = {r["method"]: r for r in rows}
    bits_rows = []
    for wb, ab in ((3, 8), (2, 8), (4, 4)):
        ptq, qat = by[f"PTQ W{wb}A{ab} minmax"], by[f"QAT W{wb}A{ab} STE"]
        bits_rows.append({"weight_bits": wb, "act_bits": ab, "float": float_m["exact_match"],
                          "ptq": ptq["exact_match"], "qat": qat["exact_match"]})  # fmt: skip
    plots.accuracy_bars(rows, float_m["exact_match"], figures_dir / "tour_accuracy.png")
    plots.layer_sqnr_lines(
        {k: by[k]["layer_sqnr_db"] for k in SQNR_LINES}, figures_dir / "tour_layer_sqnr.png"
    )
    plots.ptq_qat_bits(bits_rows, figures_dir / "tour_ptq_vs_qat.png")
    table = _table(float_m, float_size, rows)
    log(table)
    summary = {"task": task_name, "float": {**float_m, "size_bytes": float_size}, "rows": rows,
               "ptq_vs_qat": bits_rows, "reload_identical": same,
               "seconds": round(time.perf_counter() - t_start, 1)}  # fmt: skip
    (out_dir / "tour.json").write_text(json.dumps(summary, indent=1))
    log(f"figures written to {figures_dir}/tour_*.png; summary {out_dir / 'tour.json'}; "
        f"total {summary['seconds']:.0f}s")  # fmt: skip
    return summary


def _row(label, q, task, eval_n, float_size, model, probe) -> dict[str, Any]:
    m = evaluate(q, task, n=eval_n)
    size = model_size_bytes(q)
    sq = layer_sqnr(model, q, probe, run_batch)
    return {"method": label, **m, "size_bytes": size, "size_ratio": round(float_size / size, 2),
            "output_sqnr_db": round(output_sqnr(model, q, probe, run_batch), 2),
            "layer_sqnr_db": sq, "min_layer_sqnr_db": round(min(sq.values()), 2)}  # fmt: skip


def _fmt(r: dict[str, Any]) -> str:
    return (f"{r['method']:<28s} exact {r['exact_match']:.4f}  f1 {r['f1']:.4f}  "
            f"SQNR {r['output_sqnr_db']:5.1f} dB  {r['size_ratio']:.2f}x smaller")  # fmt: skip


def _table(float_m: dict, float_size: int, rows: list[dict]) -> str:
    head = (f"| {'method':<28s} | exact | token |   F1  | out SQNR dB "
            f"| min layer SQNR dB |   bytes | ratio |")  # fmt: skip
    sep = "|" + "|".join("-" * (len(c)) for c in head.split("|")[1:-1]) + "|"
    lines = [head, sep,
             f"| {'float32':<28s} | {float_m['exact_match']:.3f} | "
             f"{float_m['token_accuracy']:.3f} | {float_m['f1']:.3f} | {'':>11s} | {'':>17s} | "
             f"{float_size:7d} | {1.0:5.2f} |"]  # fmt: skip
    for r in rows:
        lines.append(
            f"| {r['method']:<28s} | {r['exact_match']:.3f} | {r['token_accuracy']:.3f} | "
            f"{r['f1']:.3f} | {r['output_sqnr_db']:11.1f} | {r['min_layer_sqnr_db']:17.1f} | "
            f"{r['size_bytes']:7d} | {r['size_ratio']:5.2f} |"
        )
    return "\n".join(lines)
