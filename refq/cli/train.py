"""``refq train``: train a float model on a built-in task, save it, print held-out metrics.

    refq train --task reverse --out model.npz [--seed 0] [--steps N] [--json]

Progress lines go to stdout while training; the run ends with the metrics of ``evaluate`` on the
task's held-out set. With ``--json`` the last line is one JSON object with the keys
token_accuracy, exact_match, precision, recall, f1, size_bytes, seconds (training + evaluation
wall time) and also steps, train_seconds, eval_seconds, final_loss, task, out.
"""

from __future__ import annotations

import argparse
import json
import time

from refq.train.blas import set_blas_threads
from refq.train.checkpoint import save_checkpoint, weights_size_bytes
from refq.train.evaluate import evaluate
from refq.train.tasks import TASKS, get_task
from refq.train.trainer import train_task


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "train",
        help="train a float Transformer on a built-in task",
        description=__doc__,
        formatter_class=argparse.RawTextHelpFormatter,
    )
    p.add_argument("--task", required=True, choices=sorted(TASKS), help="built-in task")
    p.add_argument("--out", required=True, help="checkpoint to write (.npz)")
    p.add_argument("--seed", type=int, default=0, help="seed of weights and data (default 0)")
    p.add_argument("--steps", type=int, default=None, help="training steps (default: per task)")
    p.add_argument("--batch-size", type=int, default=None, help="batch size (default: per task)")
    p.add_argument("--lr", type=float, default=None, help="peak learning rate (default: per task)")
    p.add_argument("--log-every", type=int, default=None, help="progress line every N steps")
    p.add_argument("--d-model", type=int, default=None, help="model width (default: per task)")
    p.add_argument("--d-ff", type=int, default=None, help="feed-forward width (default: per task)")
    p.add_argument("--layers", type=int, default=None, help="encoder and decoder depth")
    p.add_argument("--pre-ln", action="store_true", help="pre-LN blocks (default: post-LN)")
    p.add_argument(
        "--model",
        choices=["seq2seq", "lm"],
        default=None,
        help="for seq2seq tasks: encoder-decoder (default) or decoder-only LM on [src <bos> tgt]",
    )
    p.add_argument(
        "--blas-threads",
        type=int,
        default=None,
        help="set OpenBLAS threads for this run (1 is much faster on a busy machine)",
    )
    p.add_argument("--eval-n", type=int, default=1000, help="held-out examples to score")
    p.add_argument("--json", action="store_true", help="print a JSON object as the last line")
    return p


def run(args: argparse.Namespace) -> int:
    task = get_task(args.task)
    if args.blas_threads is not None and not set_blas_threads(args.blas_threads):
        print("note: could not find NumPy's OpenBLAS; --blas-threads ignored")
    t0 = time.perf_counter()

    def log(rec: dict) -> None:
        print(
            f"step {rec['step']:>6d}  loss {rec['loss']:.4f}  lr {rec['lr']:.2e}  "
            f"grad_norm {rec['grad_norm']:.3f}  {rec['seconds']:.1f}s",
            flush=True,
        )

    model_overrides = {
        "d_model": args.d_model,
        "d_ff": args.d_ff,
        "n_encoder_layers": args.layers,
        "n_decoder_layers": args.layers,
        "norm_first": True if args.pre_ln else None,
        "kind": args.model,
    }
    model, cfg, tcfg, history = train_task(
        task,
        seed=args.seed,
        log=log,
        model_overrides=model_overrides,
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        log_every=args.log_every,
    )
    train_seconds = time.perf_counter() - t0
    t1 = time.perf_counter()
    metrics = evaluate(model, task, n=args.eval_n)
    eval_seconds = time.perf_counter() - t1
    meta = {
        "task": {"name": task.name, "params": task.params()},
        "vocab": task.vocab,
        "train": tcfg.to_dict(),
        "metrics": metrics,
    }
    path = save_checkpoint(args.out, model, meta)
    result = {
        **metrics,
        "size_bytes": weights_size_bytes(path),
        "seconds": round(time.perf_counter() - t0, 3),
        "steps": tcfg.steps,
        "train_seconds": round(train_seconds, 3),
        "eval_seconds": round(eval_seconds, 3),
        "final_loss": history[-1]["loss"],
        "task": task.name,
        "out": str(path),
    }
    print(f"trained {task.name} for {tcfg.steps} steps in {train_seconds:.1f}s -> {path}")
    print("held-out: " + "  ".join(f"{k} {metrics[k]:.4f}" for k in metrics))
    if args.json:
        print(json.dumps(result))
    return 0
