"""QAT on a refq task: prepare_qat, calibrate the ranges, fine-tune with fake quant, convert.

Schedule (PyTorch's recipe, Krishnamoorthi 2018, arXiv:1806.08342, section 3.2):

1. ``prepare_qat`` the trained float model;
2. run ``calib_batches`` forward passes so every activation observer has a range (PTQ's start);
3. fine-tune for ``steps`` with fake quantization in the loss (STE backward); activation
   observers (EMA) keep tracking until ``freeze_fraction * steps``, then the ranges freeze so the
   weights adapt to fixed grids. With ``lsq=True`` the ranges freeze right after step 2 and the
   scales are learned instead;
4. ``convert_qat`` to the int8 model (the same ``QuantizedLinear`` PTQ produces).

A diverging run (NaN/Inf) stops with ``QATDiverged`` naming the step and every layer whose
learned scale collapsed (clamped to its floor) or became non-finite.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from refq.compress.distill import DistillationLoss, distill_step
from refq.nn.module import Module
from refq.ptq.flow import calibration_batches, run_batch
from refq.ptq.qconfig import QConfig
from refq.qat.fake_quant import fake_quant_modules
from refq.qat.lsq import LSQFakeQuantize
from refq.qat.prepare import freeze_observers, prepare_qat
from refq.train.trainer import TrainConfig, TrainingDiverged, train


class QATDiverged(TrainingDiverged):
    """QAT training produced NaN/Inf: the message names the step and the suspect layers."""


def collapsed_scales(qat_model: Module) -> list[str]:
    """Names of LSQ nodes whose scale is non-finite or was clamped to its floor."""
    bad = []
    for _, node in fake_quant_modules(qat_model):
        if isinstance(node, LSQFakeQuantize) and node.initialized:
            s = node.params["scale"]
            if not np.all(np.isfinite(s)) or node.num_scale_clamps > 0:
                bad.append(str(node.name))
    return bad


def qat_train(
    model: Module,
    task: Any,
    qconfig: QConfig,
    steps: int = 400,
    lr: float = 5e-4,
    lsq: bool = False,
    calib_batches: int = 4,
    freeze_fraction: float = 0.5,
    batch_size: int = 64,
    seed: int = 0,
    log: Callable[[dict[str, Any]], None] | None = None,
    teacher: Module | None = None,
    distill_alpha: float = 0.5,
    temperature: float = 2.0,
) -> Module:
    """Quantization-aware fine-tuning of a float ``model``; returns the trained QAT model.

    ``teacher`` (usually the float ``model`` itself): train by knowledge distillation instead of
    plain cross-entropy, loss = distill_alpha * T^2 * KL(softmax(t/T) || softmax(s/T)) +
    (1 - distill_alpha) * CE(s, y) with T = ``temperature`` (``refq.compress.DistillationLoss``,
    Hinton et al. 2015, arXiv:1503.02531); the teacher runs forward only, in eval mode.
    """
    if steps <= 0:
        raise ValueError(f"steps must be positive, got {steps}")
    if not 0.0 <= freeze_fraction <= 1.0:
        raise ValueError(f"freeze_fraction must be in [0, 1], got {freeze_fraction}")
    step_fn = None
    if teacher is not None:  # knowledge distillation from the (float) teacher
        ignore = None if task.kind == "classification" else task.pad_id
        step_fn = distill_step(teacher, DistillationLoss(temperature, distill_alpha, ignore))
    qat = prepare_qat(model, qconfig, lsq=lsq)
    for batch in calibration_batches(task, calib_batches, batch_size, seed=seed):
        run_batch(qat, batch)  # observers set the initial ranges (and LSQ's initial scales)
    freeze_at = 1 if lsq else max(1, int(round(freeze_fraction * steps)))
    current = [0]

    def on_step(step: int) -> None:
        current[0] = step
        if step == freeze_at:
            freeze_observers(qat)

    cfg = TrainConfig(steps=steps, batch_size=batch_size, lr=lr, warmup=min(50, steps // 10),
                      weight_decay=0.0, seed=seed + 1, log_every=max(1, steps // 10))  # fmt: skip
    try:
        train(qat, task, cfg, log=log, on_step=on_step, step_fn=step_fn)
    except (TrainingDiverged, ValueError) as e:
        suspects = collapsed_scales(qat)
        where = f"; scales collapsed in: {', '.join(suspects)}" if suspects else ""
        raise QATDiverged(f"QAT diverged at step {current[0]}: {e}{where}") from e
    return qat.eval()
