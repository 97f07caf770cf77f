"""``refq prune``: magnitude pruning of a float checkpoint, fine-tuned with the masks kept
(seed section 1: pruning, the first of the three compression families).

    refq prune model.npz --out pruned.npz [--sparsity 0.5] [--scope layer|global]
               [--structured] [--steps 300] [--gradual] [--json]

The pruned model is a float checkpoint: ``refq eval`` scores it, ``refq ptq`` / ``refq qat``
quantize it (pruned weights stay exactly zero, int8 code 0). With ``--json`` the last line is one
JSON object with token_accuracy, exact_match, precision, recall, f1, size_bytes, seconds, plus
sparsity (the fraction of zero Linear weights), before (the metrics of the unpruned model) and
pruned_no_finetune (the metrics right after pruning, before fine-tuning).
"""

from __future__ import annotations

import argparse
import copy
import json
import time

from refq.cli.report import HEADER, load_float, metrics_row
from refq.compress.pruning import magnitude_prune, prune_and_finetune, sparsity_report
from refq.train.checkpoint import (
    save_checkpoint,
    weights_size_bytes,
)
from refq.train.evaluate import evaluate


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "prune", help="magnitude pruning + fine-tuning of a float checkpoint",
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter,
    )  # fmt: skip
    p.add_argument("checkpoint", help="a float .npz written by refq train")
    p.add_argument("--out", required=True, help="pruned float checkpoint to write (.npz)")
    p.add_argument("--sparsity", type=float, default=0.5, help="fraction of weights to zero")
    p.add_argument("--scope", default="layer", choices=("layer", "global"))
    p.add_argument("--structured", action="store_true", help="prune whole output rows")
    p.add_argument("--gradual", action="store_true", help="cubic schedule (Zhu & Gupta 2017)")
    p.add_argument("--steps", type=int, default=300, help="fine-tuning steps (default 300)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eval-n", type=int, default=1000, help="held-out examples to score")
    p.add_argument("--json", action="store_true", help="print a JSON object as the last line")
    return p


def run(args: argparse.Namespace) -> int:
    t0 = time.perf_counter()
    model, meta, task = load_float(args.checkpoint, "prune")
    if not 0.0 <= args.sparsity < 1.0:
        raise ValueError(f"--sparsity must be in [0, 1), got {args.sparsity}")
    if args.steps < 0:
        raise ValueError(f"--steps must be >= 0, got {args.steps}")
    before = evaluate(model, task, n=args.eval_n)
    oneshot = copy.deepcopy(model)
    magnitude_prune(oneshot, args.sparsity, args.scope, args.structured)
    no_ft = evaluate(oneshot, task, n=args.eval_n)
    if args.steps > 0:
        prune_and_finetune(
            model, task, args.sparsity, args.steps, scope=args.scope,
            structured=args.structured, gradual=args.gradual, seed=args.seed,
        )  # fmt: skip
        pruned = model
    else:
        pruned = oneshot
    after = evaluate(pruned, task, n=args.eval_n)
    report = sparsity_report(pruned)
    meta_out = {k: meta[k] for k in ("task", "vocab") if k in meta}
    meta_out.update(pruning={"sparsity": args.sparsity, "scope": args.scope, "steps": args.steps,
                             "structured": args.structured, "gradual": args.gradual})  # fmt: skip
    path = save_checkpoint(args.out, pruned, meta_out)
    size = weights_size_bytes(path)
    zero = f"{report['sparsity']:.1%} of Linear weights zero"
    print(f"{args.checkpoint} -> {path}  ({task.name}; {zero})")
    print(HEADER)
    print(metrics_row("float32", before, size))
    print(metrics_row(f"pruned {args.sparsity:.0%}, no fine-tuning", no_ft))
    print(metrics_row(f"pruned {args.sparsity:.0%}, {args.steps} steps", after, size))
    result = {**after, "size_bytes": size, "seconds": round(time.perf_counter() - t0, 3),
              "sparsity": report["sparsity"], "before": before, "pruned_no_finetune": no_ft,
              "out": str(path)}  # fmt: skip
    if args.json:
        print(json.dumps(result))
    return 0
