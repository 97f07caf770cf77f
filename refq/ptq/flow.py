"""The PTQ recipe on a refq task, end to end: calibration data, prepare, calibrate, convert.

``quantize_model(model, task, qconfig)`` is what ``refq ptq`` runs; calibration uses training-
split examples (never the held-out ones that ``evaluate`` scores) and teacher forcing, so the
decoder sees realistic inputs without decoding.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from refq.nn.module import Module
from refq.ptq.convert import calibrate, convert, prepare
from refq.ptq.qconfig import QConfig


def run_batch(model: Any, batch: Any) -> np.ndarray:
    """One forward pass (no loss, no backward): logits for a task batch."""
    if getattr(batch, "labels", None) is not None or getattr(batch, "tgt_in", None) is None:
        return model(batch.src)  # classifier: (B, T) -> (B, n_classes)
    return model(batch.src, batch.tgt_in)  # seq2seq: (B, S), (B, T) -> (B, T, V)


def calibration_batches(
    task: Any, n_batches: int = 8, batch_size: int = 64, seed: int = 0
) -> Iterator[Any]:
    """``n_batches`` training-split batches of ``task`` (the seed's "a little calibration data")."""
    if n_batches <= 0 or batch_size <= 0:
        raise ValueError(
            f"n_batches and batch_size must be positive, got {n_batches}, {batch_size}"
        )
    rng = np.random.default_rng(seed)
    for _ in range(n_batches):
        yield task.sample(batch_size, rng, split="train")


def prepare_calibrated(
    model: Module,
    task: Any,
    qconfig: QConfig,
    n_batches: int = 8,
    batch_size: int = 64,
    seed: int = 0,
    overrides: dict[str, QConfig | None] | None = None,
) -> Module:
    """prepare, then calibrate on ``n_batches`` training batches: ready for ``convert``."""
    prepared = prepare(model, qconfig, overrides)
    calibrate(prepared, calibration_batches(task, n_batches, batch_size, seed), run_batch)
    return prepared


def quantize_model(
    model: Module,
    task: Any,
    qconfig: QConfig,
    n_batches: int = 8,
    batch_size: int = 64,
    seed: int = 0,
    overrides: dict[str, QConfig | None] | None = None,
    report: dict | None = None,
) -> Module:
    """prepare -> calibrate on ``n_batches`` training batches -> convert; returns the int8 model."""
    prepared = prepare_calibrated(model, task, qconfig, n_batches, batch_size, seed, overrides)
    return convert(prepared, report=report)
