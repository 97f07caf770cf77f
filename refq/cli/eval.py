"""``refq eval``: score a checkpoint on its task's held-out set.

    refq eval model.npz [--json] [--n 1000] [--beam 1]

Reports token accuracy, exact-sequence accuracy and macro precision/recall/F1 (seed FAQ 9.3).
With ``--json`` the last line is one JSON object with token_accuracy, exact_match, precision,
recall, f1, size_bytes (bytes of the stored weight arrays) and seconds (evaluation wall time).
Any checkpoint kind with a registered loader (``refq.train.checkpoint.register_loader``) works.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from refq.train.checkpoint import load_checkpoint, read_checkpoint, task_from_meta
from refq.train.evaluate import evaluate


def evaluate_checkpoint(
    path: str, n: int = 1000, seed: int = 1234, beam: int = 1
) -> dict[str, Any]:
    """Load ``path``, evaluate it on its task: metrics + size_bytes + seconds + kind + task."""
    arrays, _ = read_checkpoint(path)
    size = int(sum(a.nbytes for a in arrays.values()))
    model, meta = load_checkpoint(path)
    task = task_from_meta(meta)
    t0 = time.perf_counter()
    metrics = evaluate(model, task, n=n, seed=seed, beam=beam)
    seconds = time.perf_counter() - t0
    return {
        **metrics,
        "size_bytes": size,
        "seconds": round(seconds, 3),
        "kind": meta.get("kind"),
        "task": task.name,
    }


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "eval",
        help="evaluate a checkpoint on its task's held-out set",
        description=__doc__,
        formatter_class=argparse.RawTextHelpFormatter,
    )
    p.add_argument("checkpoint", help="a .npz written by refq train (or ptq/qat)")
    p.add_argument("--n", type=int, default=1000, help="held-out examples (default 1000)")
    p.add_argument("--seed", type=int, default=1234, help="held-out sampling seed")
    p.add_argument("--beam", type=int, default=1, help="beam width (1 = greedy; enc-dec only)")
    p.add_argument("--json", action="store_true", help="print a JSON object as the last line")
    return p


def run(args: argparse.Namespace) -> int:
    result = evaluate_checkpoint(args.checkpoint, n=args.n, seed=args.seed, beam=args.beam)
    print(
        f"{args.checkpoint} ({result['kind']}, task {result['task']}, "
        f"{result['size_bytes']} bytes of weights)"
    )
    for k in ("token_accuracy", "exact_match", "precision", "recall", "f1"):
        print(f"  {k:<15s} {result[k]:.4f}")
    print(f"  evaluated {args.n} held-out examples in {result['seconds']:.2f}s")
    if args.json:
        print(json.dumps(result))
    return 0
