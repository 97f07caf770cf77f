"""``refq tour``: the main job. Train a small Transformer on a built-in task, quantize it every
way (PTQ with every observer, 8/4/3/2 bits, log, per tensor, attention; QAT with STE and LSQ),
print the comparison and write figures.

    refq tour [--task reverse] [--steps N] [--qat-steps 400] [--eval-n 1000]
              [--out runs/tour] [--figures figures] [--json]
"""

from __future__ import annotations

import argparse
import json

from refq.train.tasks import TASKS


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "tour", help="train, quantize every way, compare, draw figures", description=__doc__,
        formatter_class=argparse.RawTextHelpFormatter,
    )  # fmt: skip
    seq2seq = sorted(k for k in TASKS if k != "majority")
    p.add_argument("--task", default="reverse", choices=seq2seq, help="built-in seq2seq task")
    p.add_argument("--steps", type=int, default=None,
                   help="float training steps (default: the task's, 1000 for reverse)")  # fmt: skip
    p.add_argument("--qat-steps", type=int, default=400, help="QAT steps per run (default 400)")
    p.add_argument("--eval-n", type=int, default=1000, help="held-out examples per evaluation")
    p.add_argument("--out", default="runs/tour", help="checkpoints and tour.json go here")
    p.add_argument("--figures", default="figures", help="figures go here")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print the summary as the last line")
    return p


def run(args: argparse.Namespace) -> int:
    from refq.tour import run_tour

    for name in ("steps", "qat_steps", "eval_n"):
        if getattr(args, name) is not None and getattr(args, name) <= 0:
            raise ValueError(f"--{name.replace('_', '-')} must be positive")
    summary = run_tour(args.task, args.steps, args.qat_steps, args.eval_n, args.out,
                       args.figures, args.seed)  # fmt: skip
    if args.json:
        print(json.dumps(summary))
    return 0
