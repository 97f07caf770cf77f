"""What the evaluating commands share: the metric keys and one table row format."""

from __future__ import annotations

from typing import Any

METRICS = ("token_accuracy", "exact_match", "precision", "recall", "f1")
HEADER = f"{'model':<30s} {'exact':>7s} {'token':>7s} {'f1':>7s} {'bytes':>9s}"


def metrics_row(label: str, m: dict[str, float], size: int | str = "") -> str:
    """One line of the comparison table.

    >>> metrics_row("float32", {"exact_match": 1.0, "token_accuracy": 1.0, "f1": 0.5}, 12)
    'float32                         1.0000  1.0000  0.5000        12'
    """
    return (
        f"{label:<30s} {m['exact_match']:7.4f} {m['token_accuracy']:7.4f} {m['f1']:7.4f} "
        f"{size!s:>9s}"
    )


def load_float(path: str, command: str) -> tuple[Any, dict, Any]:
    """``(model, meta, task)`` of a float checkpoint; ValueError naming ``command`` otherwise."""
    from refq.train.checkpoint import load_checkpoint, task_from_meta

    model, meta = load_checkpoint(path)
    if meta.get("kind") != "float":
        raise ValueError(
            f"{path}: refq {command} needs a float checkpoint, got {meta.get('kind')!r}"
        )
    return model, meta, task_from_meta(meta)
