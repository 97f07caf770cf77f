"""The ``refq`` command line: one subcommand per module in this package.

Each subcommand module defines ``add_parser(subparsers)`` (which registers its arguments) and
``run(args) -> int`` (which does the work and returns the exit code). Commands that evaluate a
model print, with ``--json``, one JSON object as their last line with at least the keys
``token_accuracy``, ``exact_match``, ``precision``, ``recall``, ``f1``, ``size_bytes``, ``seconds``.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

COMMANDS = ["train", "eval", "ptq", "qat", "prune", "tour"]


class CLIError(Exception):
    """An error caused by the user's input: printed as ``refq: error: ...`` with exit code 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="refq", description="Transformer quantization, formula by formula."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"refq.cli.{name}")
        except ModuleNotFoundError as e:  # a command still being written
            if e.name != f"refq.cli.{name}":
                raise
            continue
        p = module.add_parser(sub)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    import refq.ptq  # noqa: F401  (registers the loader of quantized checkpoints)
    from refq.train.blas import set_blas_threads

    # refq's float GEMMs are small ((704, 64) @ (64, 128)): one OpenBLAS thread is faster, and it
    # leaves the cores to the Numba int8 kernels (refq.kernels.threads). REFQ_BLAS_THREADS=0
    # keeps OpenBLAS's own default; ``refq train --blas-threads N`` overrides per run.
    n = int(os.environ.get("REFQ_BLAS_THREADS", "1"))
    if n > 0:
        set_blas_threads(n)
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except (CLIError, ValueError, TypeError, FileNotFoundError) as e:
        print(f"refq {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
