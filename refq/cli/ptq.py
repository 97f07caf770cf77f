"""``refq ptq``: post-training quantization of a float checkpoint (seed section 3.3).

    refq ptq model.npz --out q.npz [--observer minmax|ema|percentile|mse|entropy]
             [--weight-bits 8] [--act-bits 8] [--per-tensor] [--log] [--attention]
             [--requant float|fixed_point] [--keep-float LAYER ...] [--calib-batches 8]
             [--sensitivity] [--auto-mixed DB] [--sweep] [--json]

Calibrates on training-split batches, converts to int8 (weights per output channel unless
``--per-tensor``; ``--log`` uses the signed log quantizer for weights), saves the quantized
checkpoint and scores it next to the float model on the held-out set. ``refq eval q.npz`` scores
the saved file again. ``--sweep`` also runs every observer at 8 and 4 bits, per channel and per
tensor, linear and log, and prints the comparison table.

With ``--json`` the last line is one JSON object: token_accuracy, exact_match, precision,
recall, f1, size_bytes, seconds (of the quantized model), plus float (the float model's
metrics and size_bytes), size_ratio, layer_sqnr_db, output_sqnr_db, qconfig, and with
--sensitivity / --sweep the lists ``sensitivity`` / ``sweep``.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import numpy as np

from refq.cli.report import HEADER, METRICS, load_float, metrics_row
from refq.ptq import OBSERVERS, get_qconfig
from refq.ptq.analysis import layer_sqnr, model_size_bytes, output_sqnr, sensitivity
from refq.ptq.convert import convert
from refq.ptq.flow import calibration_batches, prepare_calibrated, run_batch
from refq.ptq.mixed import auto_mixed_precision
from refq.ptq.serialize import save_quantized
from refq.train.checkpoint import weights_size_bytes
from refq.train.evaluate import evaluate


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "ptq",
        help="post-training quantization of a float checkpoint to int8",
        description=__doc__,
        formatter_class=argparse.RawTextHelpFormatter,
    )
    p.add_argument("checkpoint", help="a float .npz written by refq train")
    p.add_argument("--out", required=True, help="quantized checkpoint to write (.npz)")
    p.add_argument("--observer", default="minmax", choices=OBSERVERS, help="activation ranges")
    p.add_argument("--weight-observer", default="minmax", choices=OBSERVERS,
                   help="weight ranges (default minmax)")  # fmt: skip
    p.add_argument("--weight-bits", type=int, default=8, help="2..8 (default 8)")
    p.add_argument("--act-bits", type=int, default=8, help="2..8 (default 8)")
    p.add_argument("--per-tensor", action="store_true", help="one weight scale per tensor")
    p.add_argument("--log", action="store_true", help="log-scale weights (seed formula 4.2)")
    p.add_argument("--attention", action="store_true", help="also quantize Q.K^T and P.V")
    p.add_argument("--requant", default="float", choices=("float", "fixed_point"),
                   help="float multiplier (fbgemm, default) or integer-only (TFLite)")  # fmt: skip
    p.add_argument("--keep-float", nargs="*", default=[], metavar="LAYER",
                   help="layers to keep in float (mixed precision)")  # fmt: skip
    p.add_argument("--calib-batches", type=int, default=8, help="calibration batches (x64)")
    p.add_argument("--eval-n", type=int, default=1000, help="held-out examples to score")
    p.add_argument("--sensitivity", action="store_true", help="one-layer-at-a-time report")
    p.add_argument("--auto-mixed", type=float, default=None, metavar="DB",
                   help="keep the most sensitive layers at 8 bits until the output SQNR "
                   "reaches DB (automatic mixed precision)")  # fmt: skip
    p.add_argument("--sweep", action="store_true", help="compare every observer and variant")
    p.add_argument("--json", action="store_true", help="print a JSON object as the last line")
    return p


def ptq_once(model, task, qc, args, overrides=None, batches=None) -> dict[str, Any]:
    """Quantize ``model`` with ``qc``; return the converted model, metrics and SQNRs."""
    t0 = time.perf_counter()
    prepared = prepare_calibrated(model, task, qc, args.calib_batches, overrides=overrides)
    qmodel = convert(prepared)
    quant_seconds = time.perf_counter() - t0
    t1 = time.perf_counter()
    metrics = evaluate(qmodel, task, n=args.eval_n)
    return {
        "qmodel": qmodel,
        "prepared": prepared,
        **metrics,
        "size_bytes": model_size_bytes(qmodel),
        "seconds": round(time.perf_counter() - t1, 3),
        "quantize_seconds": round(quant_seconds, 3),
        "layer_sqnr_db": layer_sqnr(model, qmodel, batches, run_batch),
        "output_sqnr_db": output_sqnr(model, qmodel, batches, run_batch),
    }


def _sweep_configs(act_bits: int) -> list[tuple[str, dict[str, Any]]]:
    rows = []
    for bits in (8, 4):
        for obs in OBSERVERS:
            rows.append(
                (f"W{bits}A{act_bits} {obs} per-channel", dict(weight_bits=bits, observer=obs))
            )
        rows.append(
            (f"W{bits}A{act_bits} minmax per-tensor", dict(weight_bits=bits, per_channel=False))
        )
        rows.append((f"W{bits}A{act_bits} minmax log", dict(weight_bits=bits, log=True)))
        rows.append((f"W{bits}A{act_bits} mse-weights per-channel",
                     dict(weight_bits=bits, observer="mse", weight_observer="mse")))  # fmt: skip
    return rows


def _fmt_sqnr(d: dict[str, float]) -> str:
    v = np.array(list(d.values()))
    return f"{v.mean():6.1f} / {v.min():6.1f}"


def run(args: argparse.Namespace) -> int:
    t_start = time.perf_counter()
    model, meta, task = load_float(args.checkpoint, "ptq")
    qc = get_qconfig(args.weight_bits, args.act_bits, args.observer, not args.per_tensor,
                     args.log, args.weight_observer, args.attention, args.requant)  # fmt: skip
    overrides: dict = {name: None for name in args.keep_float}
    mixed_report = None
    if args.auto_mixed is not None:
        high = get_qconfig(8, args.act_bits, args.observer, not args.per_tensor, False,
                           args.weight_observer, args.attention, args.requant)  # fmt: skip
        auto, mixed_report = auto_mixed_precision(model, task, qc, high, args.auto_mixed,
                                                  n_batches=args.calib_batches)  # fmt: skip
        overrides = {**auto, **overrides}
        print(f"automatic mixed precision: {len(auto)} layer(s) at 8 bits reach "
              f"{mixed_report['output_sqnr_db']:.1f} dB (target {args.auto_mixed} dB): "
              f"{', '.join(mixed_report['promoted']) or 'none'}")  # fmt: skip
    batches = list(calibration_batches(task, 2, 64, seed=99))  # SQNR probe batches
    float_metrics = evaluate(model, task, n=args.eval_n)
    float_size = weights_size_bytes(args.checkpoint)
    res = ptq_once(model, task, qc, args, overrides, batches)
    meta_out = {k: meta[k] for k in ("task", "vocab") if k in meta}
    meta_out.update(qconfig=qc.describe(), float_checkpoint=str(args.checkpoint),
                    float_metrics=float_metrics, metrics={k: res[k] for k in METRICS})  # fmt: skip
    path = save_quantized(args.out, res["qmodel"], meta_out)
    size = weights_size_bytes(path)
    print(f"{args.checkpoint} -> {path}  ({task.name}; {json.dumps(qc.describe())})")
    print(HEADER)
    print(metrics_row("float32", float_metrics, float_size))
    label = f"W{args.weight_bits}A{args.act_bits} {args.observer}"
    print(metrics_row(label, res, size) + f"   ({float_size / size:.2f}x smaller)")
    print(f"output SQNR {res['output_sqnr_db']:.1f} dB; per-layer SQNR (dB):")
    for name, v in res["layer_sqnr_db"].items():
        print(f"  {name:<40s} {v:6.1f}")
    result: dict[str, Any] = {k: res[k] for k in METRICS}
    result.update(
        size_bytes=size, seconds=res["seconds"], float={**float_metrics, "size_bytes": float_size},
        size_ratio=round(float_size / size, 3), output_sqnr_db=res["output_sqnr_db"],
        layer_sqnr_db=res["layer_sqnr_db"], qconfig=qc.describe(), out=str(path),
    )  # fmt: skip
    if mixed_report is not None:
        keys = ("promoted", "output_sqnr_db", "target_sqnr_db", "reached")
        result["auto_mixed"] = {k: mixed_report[k] for k in keys}
    if args.sensitivity:

        def score(m):
            return evaluate(m, task, n=min(args.eval_n, 200))

        rows = sensitivity(model, res["prepared"], batches, run_batch, score)
        print("sensitivity (one layer quantized at a time, most sensitive first):")
        for r in rows:
            print(f"  {r['layer']:<40s} output SQNR {r['output_sqnr_db']:6.1f} dB  "
                  f"exact {r['exact_match']:.4f}")  # fmt: skip
        result["sensitivity"] = rows
    if args.sweep:
        result["sweep"] = []
        print(f"\n{'configuration':<34s} {'exact':>7s} {'f1':>7s} {'SQNR out':>8s} "
              f"{'layer SQNR mean/min':>20s} {'bytes':>8s} {'ratio':>6s}")  # fmt: skip
        for label, kw in _sweep_configs(args.act_bits):
            kw = {"act_bits": args.act_bits, **kw}
            r = ptq_once(model, task, get_qconfig(**kw), args, None, batches)
            row = {k: r[k] for k in (*METRICS, "size_bytes", "output_sqnr_db", "layer_sqnr_db")}
            row.update(config=label, size_ratio=round(float_size / r["size_bytes"], 3))
            result["sweep"].append(row)
            print(f"{label:<34s} {r['exact_match']:7.4f} {r['f1']:7.4f} {r['output_sqnr_db']:8.1f} "
                  f"{_fmt_sqnr(r['layer_sqnr_db']):>20s} {r['size_bytes']:8d} "
                  f"{row['size_ratio']:6.2f}")  # fmt: skip
    result["total_seconds"] = round(time.perf_counter() - t_start, 3)
    if args.json:
        print(json.dumps(result))
    return 0
