"""``refq qat``: quantization-aware fine-tuning of a float checkpoint (seed section 3.4).

    refq qat model.npz --out q.npz [--weight-bits 4] [--act-bits 8] [--lsq] [--log]
             [--steps 400] [--lr 5e-4] [--attention] [--json] [--compare]

Starts from a float checkpoint, inserts fake-quantization nodes (straight-through estimator),
fine-tunes on the task, converts to the same int8 model PTQ produces and saves it; prints the
float, PTQ (same qconfig, min-max calibration) and QAT metrics side by side. ``refq eval q.npz``
scores the saved file again. ``--compare`` runs PTQ and QAT at 8, 4, 3 and 2-bit weights
(A8) and 4-bit weights with 4-bit activations, and prints the table.

With ``--json`` the last line is one JSON object: token_accuracy, exact_match, precision,
recall, f1, size_bytes, seconds (of the QAT model), plus float and ptq (their metrics),
train_seconds, steps, qconfig, and with --compare the list ``compare``.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from refq.cli.report import HEADER, load_float, metrics_row
from refq.ptq import get_qconfig
from refq.ptq.analysis import model_size_bytes
from refq.ptq.flow import quantize_model
from refq.ptq.serialize import save_quantized
from refq.qat.prepare import convert_qat
from refq.qat.train import qat_train
from refq.train.checkpoint import weights_size_bytes
from refq.train.evaluate import evaluate


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "qat",
        help="quantization-aware training from a float checkpoint",
        description=__doc__,
        formatter_class=argparse.RawTextHelpFormatter,
    )
    p.add_argument("checkpoint", help="a float .npz written by refq train")
    p.add_argument("--out", required=True, help="quantized checkpoint to write (.npz)")
    p.add_argument("--weight-bits", type=int, default=4, help="2..8 (default 4)")
    p.add_argument("--act-bits", type=int, default=8, help="2..8 (default 8)")
    p.add_argument("--lsq", action="store_true", help="learned step size (Esser et al. 2019)")
    p.add_argument("--log", action="store_true", help="log-scale weights (seed formula 4.2)")
    p.add_argument("--attention", action="store_true", help="also quantize Q.K^T and P.V")
    p.add_argument("--steps", type=int, default=400, help="fine-tuning steps (default 400)")
    p.add_argument("--lr", type=float, default=5e-4, help="peak learning rate (default 5e-4)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eval-n", type=int, default=1000, help="held-out examples to score")
    p.add_argument("--compare", action="store_true", help="PTQ vs QAT at 8/4/3/2-bit weights")
    p.add_argument("--json", action="store_true", help="print a JSON object as the last line")
    return p


def ptq_vs_qat(model, task, qc, args) -> dict[str, Any]:
    """PTQ (min-max) and QAT with the same qconfig: both int8 models and their metrics."""
    ptq = quantize_model(model, task, qc)
    t0 = time.perf_counter()

    def log(rec: dict) -> None:
        print(f"  qat step {rec['step']:>5d}  loss {rec['loss']:.4f}  {rec['seconds']:.1f}s",
              flush=True)  # fmt: skip

    qat_model = qat_train(model, task, qc, steps=args.steps, lr=args.lr, lsq=args.lsq,
                          seed=args.seed, log=log)  # fmt: skip
    train_seconds = time.perf_counter() - t0
    qmodel = convert_qat(qat_model)
    t1 = time.perf_counter()
    qat_metrics = evaluate(qmodel, task, n=args.eval_n)
    return {
        "qmodel": qmodel,
        "ptq": evaluate(ptq, task, n=args.eval_n),
        "qat": qat_metrics,
        "seconds": round(time.perf_counter() - t1, 3),
        "train_seconds": round(train_seconds, 3),
        "size_bytes": model_size_bytes(qmodel),
    }


def run(args: argparse.Namespace) -> int:
    t_start = time.perf_counter()
    model, meta, task = load_float(args.checkpoint, "qat")
    if args.lsq and args.log:
        raise ValueError("--lsq learns the step of a uniform grid; it does not apply to --log")
    float_metrics = evaluate(model, task, n=args.eval_n)
    float_size = weights_size_bytes(args.checkpoint)
    qc = get_qconfig(
        args.weight_bits, args.act_bits, log=args.log, quantize_attention=args.attention
    )
    print(f"QAT of {args.checkpoint} ({task.name}), {json.dumps(qc.describe())}, lsq={args.lsq}")
    res = ptq_vs_qat(model, task, qc, args)
    meta_out = {k: meta[k] for k in ("task", "vocab") if k in meta}
    meta_out.update(qconfig=qc.describe(), lsq=args.lsq, steps=args.steps,
                    float_metrics=float_metrics, metrics=res["qat"])  # fmt: skip
    path = save_quantized(args.out, res["qmodel"], meta_out)
    size = weights_size_bytes(path)
    print(HEADER)
    print(metrics_row("float32", float_metrics, float_size))
    label = f"W{args.weight_bits}A{args.act_bits}"
    print(metrics_row(f"{label} PTQ (minmax)", res["ptq"], ""))
    print(metrics_row(f"{label} QAT" + (" LSQ" if args.lsq else ""), res["qat"], size))
    print(f"QAT: {args.steps} steps in {res['train_seconds']:.1f}s -> {path}")
    result: dict[str, Any] = {**res["qat"]}
    result.update(
        size_bytes=size, seconds=res["seconds"], float={**float_metrics, "size_bytes": float_size},
        ptq=res["ptq"], train_seconds=res["train_seconds"], steps=args.steps,
        qconfig=qc.describe(), lsq=args.lsq, out=str(path),
    )  # fmt: skip
    if args.compare:
        result["compare"] = []
        print(f"\n{'weights/acts':<12s} {'float':>7s} {'PTQ':>7s} {'QAT':>7s}   (exact match)")
        for wb, ab in ((8, 8), (4, 8), (3, 8), (2, 8), (4, 4)):
            r = ptq_vs_qat(model, task, get_qconfig(wb, ab, log=args.log), args)
            row = {"weight_bits": wb, "act_bits": ab, "float": float_metrics["exact_match"],
                   "ptq": r["ptq"]["exact_match"], "qat": r["qat"]["exact_match"],
                   "ptq_f1": r["ptq"]["f1"], "qat_f1": r["qat"]["f1"]}  # fmt: skip
            result["compare"].append(row)
            print(f"W{wb}A{ab:<10d} {row['float']:7.4f} {row['ptq']:7.4f} {row['qat']:7.4f}")
    result["total_seconds"] = round(time.perf_counter() - t_start, 3)
    if args.json:
        print(json.dumps(result))
    return 0
