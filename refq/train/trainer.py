"""Training loop: batches from a task, forward, cross-entropy, explicit backward, AdamW.

One step (seq2seq): logits = model(src, tgt_in); loss = CE(logits, tgt_out) with <pad> ignored and
label smoothing; model.backward(dloss/dlogits); clip the global gradient norm; AdamW with
warm-up + cosine learning rate. A non-finite loss or gradient norm stops training with
``TrainingDiverged`` naming the step.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from refq.nn import CrossEntropyLoss, TransformerConfig, build_model
from refq.nn.module import Module
from refq.train.optim import AdamW, clip_grad_norm, warmup_cosine
from refq.train.tasks import Batch, Task, lm_sequences


class TrainingDiverged(ValueError):
    """The loss (or gradient norm) became NaN/Inf: training stopped."""


@dataclass
class TrainConfig:
    """Training hyper-parameters (stored in checkpoints as JSON)."""

    steps: int = 2000
    batch_size: int = 64
    lr: float = 1e-3
    warmup: int = 100
    weight_decay: float = 0.01
    clip: float = 1.0
    label_smoothing: float = 0.0
    seed: int = 0
    log_every: int = 100

    def validate(self) -> TrainConfig:
        if self.steps <= 0 or self.batch_size <= 0 or self.lr <= 0:
            raise ValueError(f"steps, batch_size and lr must be positive: {self}")
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# Per-task defaults used by ``refq train`` (model sizes and steps chosen to reach the accuracy
# targets in well under the few minutes allowed on 2 cores; see the report in the tests).
DEFAULTS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "reverse": (
        dict(d_model=64, n_heads=4, d_ff=128, n_encoder_layers=2, n_decoder_layers=2),
        dict(steps=1000, batch_size=64, lr=2e-3, warmup=100),
    ),
    "sort": (
        dict(d_model=64, n_heads=4, d_ff=128, n_encoder_layers=2, n_decoder_layers=2),
        dict(steps=1500, batch_size=64, lr=2e-3, warmup=100),
    ),
    "addition": (
        dict(d_model=64, n_heads=4, d_ff=128, n_encoder_layers=2, n_decoder_layers=2),
        dict(steps=3000, batch_size=64, lr=2e-3, warmup=100),
    ),
    "majority": (
        dict(kind="classifier", d_model=64, n_heads=4, d_ff=128, n_encoder_layers=2),
        dict(steps=800, batch_size=64, lr=2e-3, warmup=50),
    ),
}


def default_configs(
    task: Task,
    seed: int = 0,
    model_overrides: dict[str, Any] | None = None,
    **train_overrides: Any,
) -> tuple[TransformerConfig, TrainConfig]:
    """The model and training configuration ``refq train`` uses for ``task``; None-valued
    overrides are ignored."""
    model_kw, train_kw = DEFAULTS.get(task.name, ({}, {}))
    model_kw = {**model_kw, **{k: v for k, v in (model_overrides or {}).items() if v is not None}}
    if model_kw.get("kind") == "lm" and task.kind != "seq2seq":
        raise ValueError(f"a decoder-only LM needs a seq2seq task, not {task.name!r}")
    if task.kind == "classification":
        model_kw.update(kind="classifier", n_classes=task.n_classes)
    max_len = max(task.max_src_len, task.max_tgt_len, 1)
    if model_kw.get("kind") == "lm":  # decoder-only on [src | <bos> | tgt]
        max_len = task.max_src_len + 1 + task.max_tgt_len
    cfg = TransformerConfig(
        vocab_size=task.vocab_size,
        pad_id=task.pad_id,
        max_len=max_len,
        seed=seed,
        **model_kw,
    )
    tkw = {**train_kw, "seed": seed, **{k: v for k, v in train_overrides.items() if v is not None}}
    return cfg.validate(), TrainConfig(**tkw).validate()


def loss_and_backward(model: Module, batch: Batch, loss_fn: CrossEntropyLoss) -> float:
    """Forward, loss, and the full explicit backward for one batch; returns the loss."""
    if batch.labels is not None:
        logits = model(batch.src)  # (B, n_classes)
        loss = loss_fn(logits, batch.labels)
    elif getattr(getattr(model, "config", None), "kind", None) == "lm":
        x, y = lm_sequences(batch)  # (B, S + T), target tokens only in y
        logits = model(x)  # (B, S + T, V)
        loss = loss_fn(logits, y)
    else:
        logits = model(batch.src, batch.tgt_in)  # (B, T, V)
        loss = loss_fn(logits, batch.tgt_out)
    model.backward(loss_fn.backward())
    return loss


def train(
    model: Module,
    task: Task,
    cfg: TrainConfig,
    log: Callable[[dict[str, Any]], None] | None = None,
    on_step: Callable[[int], None] | None = None,
    step_fn: Callable[[Module, Batch], float] | None = None,
) -> list[dict[str, Any]]:
    """Train ``model`` in place on ``task`` for ``cfg.steps`` steps; returns the logged history
    (one dict per ``log_every`` steps: step, loss (mean since the last log), lr, grad_norm,
    seconds). ``on_step(step)``, if given, runs before each step (QAT freezes observers with it).
    ``step_fn(model, batch) -> loss``, if given, replaces the forward + cross-entropy + backward
    of one step (e.g. knowledge distillation); it must leave the gradients in ``model.grads``.

    >>> from refq.train.tasks import get_task
    >>> task = get_task("reverse", min_len=2, max_len=4)
    >>> model = build_model(TransformerConfig(vocab_size=task.vocab_size, d_model=8, n_heads=2,
    ...                                       d_ff=16, n_encoder_layers=1, n_decoder_layers=1))
    >>> hist = train(model, task, TrainConfig(steps=4, batch_size=8, log_every=2))
    >>> [h["step"] for h in hist], hist[0]["loss"] > 0
    ([2, 4], True)
    """
    cfg.validate()
    model.train()
    # class labels are never padding: class 0 must not be ignored like the <pad> token
    ignore = None if task.kind == "classification" else task.pad_id
    loss_fn = CrossEntropyLoss(ignore_index=ignore, label_smoothing=cfg.label_smoothing)
    opt = AdamW.for_model(model, lr=cfg.lr, weight_decay=cfg.weight_decay)
    grads = [g for _, g in model.named_grads()]
    history: list[dict[str, Any]] = []
    t0, acc, n_acc = time.perf_counter(), 0.0, 0
    batches = task.batches(cfg.batch_size, cfg.steps, seed=cfg.seed)
    for step, batch in enumerate(batches, start=1):
        if on_step is not None:
            on_step(step)
        model.zero_grad()
        if step_fn is None:
            loss = loss_and_backward(model, batch, loss_fn)
        else:
            loss = float(step_fn(model, batch))
        norm = clip_grad_norm(grads, cfg.clip)
        if not (math.isfinite(loss) and math.isfinite(norm)):
            what = "loss" if not math.isfinite(loss) else "gradient norm"
            raise TrainingDiverged(
                f"training diverged at step {step}: {what} is {loss if what == 'loss' else norm} "
                f"(try a lower --lr than {cfg.lr})"
            )
        lr = warmup_cosine(step - 1, cfg.lr, cfg.warmup, cfg.steps)
        opt.step(lr)
        acc, n_acc = acc + loss, n_acc + 1
        if step % cfg.log_every == 0 or step == cfg.steps:
            rec = {
                "step": step,
                "loss": acc / n_acc,
                "lr": lr,
                "grad_norm": norm,
                "seconds": time.perf_counter() - t0,
            }
            history.append(rec)
            acc, n_acc = 0.0, 0
            if log is not None:
                log(rec)
    model.eval()
    return history


def train_task(
    task: Task,
    seed: int = 0,
    log: Callable[[dict[str, Any]], None] | None = None,
    model_overrides: dict[str, Any] | None = None,
    **train_overrides: Any,
) -> tuple[Module, TransformerConfig, TrainConfig, list]:
    """Build the default model for ``task`` and train it.

    Returns (model, cfg, train_cfg, history)."""
    cfg, tcfg = default_configs(task, seed, model_overrides, **train_overrides)
    model = build_model(cfg)
    history = train(model, task, tcfg, log)
    return model, cfg, tcfg, history


__all__ = [
    "DEFAULTS",
    "TrainConfig",
    "TrainingDiverged",
    "default_configs",
    "loss_and_backward",
    "train",
    "train_task",
]
