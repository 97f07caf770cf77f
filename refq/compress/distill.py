"""Knowledge distillation: a student learns from a teacher's softened outputs.

Seed document, section 1: knowledge distillation ("move a large model's knowledge into a small
one") is the third compression family. Hinton, Vinyals & Dean 2015 (arXiv:1503.02531):

    p = softmax(t / T)      teacher, softened by the temperature T
    q = softmax(s / T)      student, at the same temperature
    loss = alpha * T^2 * KL(p || q) + (1 - alpha) * CE(s, y)

averaged over the N valid positions (targets != ignore_index). The T^2 keeps the soft term's
gradient magnitude independent of T (its gradient scales as 1/T^2 otherwise, section 2 of the
paper). The student learns not only the right token but the teacher's ranking of wrong ones
("dark knowledge").

Used three ways: ``distill_train`` (a small float student from a trained float teacher),
``distill_step`` (the ``step_fn`` of ``refq.train.train``), and ``qat_train(..., teacher=...)``
(quantization-aware training that distills from the float model, common practice in
quantized BERT work, e.g. TernaryBERT, Zhang et al. 2020, arXiv:2009.12812).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from refq.nn import CrossEntropyLoss
from refq.nn._checks import check_float
from refq.nn.module import Module
from refq.train.tasks import Batch, Task, lm_sequences
from refq.train.trainer import TrainConfig, train


def _log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=-1, keepdims=True)  # (..., V), stable
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


class DistillationLoss:
    """loss = alpha * T^2 * KL(softmax(t/T) || softmax(s/T)) + (1 - alpha) * CE(s, y)
    (Hinton et al. 2015, arXiv:1503.02531), mean over the N positions with y != ignore_index.

        KL_n = sum_v p_nv (log p_nv - log q_nv),   p = softmax(t/T), q = softmax(s/T)

    Backward (t is a constant: no gradient flows into the teacher):

        d loss / d s_n = alpha * T * (q_n - p_n) / N + (1 - alpha) * dCE_n

    with dCE_n = (softmax(s_n) - onehot(y_n)) / N (``CrossEntropyLoss``, label smoothing
    optional), and 0 at ignored positions.

    forward(student_logits (..., V), teacher_logits (..., V), targets (...) int) -> float;
    backward() -> d loss / d student_logits (..., V).

    Worked example (T = 1, alpha = 1: pure KL): p = softmax([ln 3, 0]) = [0.75, 0.25],
    q = [0.5, 0.5], KL = 0.75 ln 1.5 + 0.25 ln 0.5 = 0.130812; gradient q - p = [-0.25, 0.25].

    >>> loss = DistillationLoss(temperature=1.0, alpha=1.0)
    >>> round(loss(np.zeros((1, 2)), np.array([[np.log(3.0), 0.0]]), np.array([0])), 6)
    0.130812
    >>> loss.backward()
    array([[-0.25,  0.25]])
    """

    def __init__(
        self,
        temperature: float = 2.0,
        alpha: float = 0.5,
        ignore_index: int | None = None,
        label_smoothing: float = 0.0,
    ) -> None:
        if not (isinstance(temperature, (int, float)) and np.isfinite(temperature)):
            raise TypeError(f"temperature must be a finite number, got {temperature!r}")
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha (weight of the teacher term) must be in [0, 1], got {alpha}")
        self.temperature, self.alpha = float(temperature), float(alpha)
        self.ignore_index = ignore_index
        self.ce = CrossEntropyLoss(ignore_index=ignore_index, label_smoothing=label_smoothing)
        self._cache: tuple | None = None

    def forward(
        self, student_logits: np.ndarray, teacher_logits: np.ndarray, targets: np.ndarray
    ) -> float:
        check_float(student_logits, "DistillationLoss(student_logits)")
        check_float(teacher_logits, "DistillationLoss(teacher_logits)")
        if teacher_logits.shape != student_logits.shape:
            raise ValueError(
                f"teacher logits shape {teacher_logits.shape} must equal student logits shape "
                f"{student_logits.shape} (same vocabulary, same positions)"
            )
        # computed in the student's dtype (a float32 teacher for a float64 QAT student, say)
        teacher_logits = np.asarray(teacher_logits).astype(student_logits.dtype, copy=False)
        ce = self.ce(student_logits, targets)  # checks targets; raises if all are ignored
        valid = (
            np.ones(targets.shape, bool)
            if self.ignore_index is None
            else targets != self.ignore_index
        )  # (...)
        n = int(valid.sum())
        T = self.temperature
        log_p = _log_softmax(teacher_logits / T)  # (..., V)
        log_q = _log_softmax(student_logits / T)  # (..., V)
        p = np.exp(log_p)
        kl = (p * (log_p - log_q)).sum(axis=-1)  # (..., V) -> (...)
        kl_mean = float((kl * valid).sum() / n)
        self._cache = (np.exp(log_q), p, valid, n)
        self.last_kl, self.last_ce = kl_mean, ce
        return self.alpha * T * T * kl_mean + (1.0 - self.alpha) * ce

    __call__ = forward

    def backward(self) -> np.ndarray:
        if self._cache is None:
            raise RuntimeError("DistillationLoss.backward called before forward")
        q, p, valid, n = self._cache
        soft = (self.alpha * self.temperature / n) * (q - p) * valid[..., None]  # (..., V)
        d = soft + (1.0 - self.alpha) * self.ce.backward()
        return d.astype(q.dtype, copy=False)


def model_logits(model: Any, batch: Batch) -> tuple[np.ndarray, np.ndarray]:
    """Teacher-forced logits and their targets for one batch, as ``train`` computes them:
    classifier (B, n_classes) vs labels (B,); decoder-only LM (B, S + T, V) on [src | tgt_in]
    vs targets padded outside tgt; seq2seq (B, T, V) vs tgt_out (B, T)."""
    if batch.labels is not None:
        return model(batch.src), batch.labels  # (B, n_classes), (B,)
    if getattr(getattr(model, "config", None), "kind", None) == "lm":
        x, y = lm_sequences(batch)  # (B, S + T), target tokens only in y
        return model(x), y  # (B, S + T, V)
    return model(batch.src, batch.tgt_in), batch.tgt_out  # (B, T, V), (B, T)


def distill_step(teacher: Any, loss: DistillationLoss) -> Callable[[Module, Batch], float]:
    """``step_fn(student, batch) -> loss`` for ``refq.train.train``: the teacher runs forward
    only, in eval mode (no dropout, no backward, its weights untouched); the student runs
    forward, ``loss``, and its explicit backward from ``loss.backward()``.

    >>> from refq.nn import TransformerConfig, build_model
    >>> from refq.train.tasks import get_task
    >>> task = get_task("reverse", min_len=2, max_len=4)
    >>> cfg = dict(vocab_size=task.vocab_size, n_heads=2, n_encoder_layers=1, n_decoder_layers=1)
    >>> teacher = build_model(TransformerConfig(d_model=16, d_ff=32, **cfg))
    >>> student = build_model(TransformerConfig(d_model=8, d_ff=16, seed=1, **cfg))
    >>> step = distill_step(teacher, DistillationLoss(2.0, 0.5, ignore_index=task.pad_id))
    >>> hist = train(student, task, TrainConfig(steps=2, batch_size=8, log_every=1),
    ...              step_fn=step)
    >>> len(hist), hist[0]["loss"] > 0
    (2, True)
    """
    if not isinstance(loss, DistillationLoss):
        raise TypeError(f"loss must be a DistillationLoss, got {type(loss).__name__}")
    if not callable(getattr(teacher, "forward", None)):
        raise TypeError(f"teacher must be a model with forward(), got {type(teacher).__name__}")

    def step_fn(student: Module, batch: Batch) -> float:
        if student is teacher:
            raise ValueError("the student and the teacher must be different model objects")
        if hasattr(teacher, "eval"):
            teacher.eval()
        t_logits, _ = model_logits(teacher, batch)  # constant: no teacher backward
        s_logits, targets = model_logits(student, batch)
        value = loss(s_logits, t_logits, targets)
        student.backward(loss.backward())
        return value

    return step_fn


def distill_train(
    student: Module,
    teacher: Any,
    task: Task,
    cfg: TrainConfig,
    temperature: float = 2.0,
    alpha: float = 0.5,
    log: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Train ``student`` in place by distillation from ``teacher`` (``train`` with
    ``distill_step``); ``cfg.label_smoothing`` applies to the hard-label term. Returns the
    history (its "loss" is the distillation loss)."""
    ignore = None if task.kind == "classification" else task.pad_id
    loss = DistillationLoss(temperature, alpha, ignore, label_smoothing=cfg.label_smoothing)
    return train(student, task, cfg, log=log, step_fn=distill_step(teacher, loss))


def teacher_agreement(
    student: Any, teacher: Any, task: Task, n: int = 500, seed: int = 1234
) -> float:
    """Fraction of the held-out positions (targets != pad) where the student's teacher-forced
    argmax equals the teacher's: ``mean_n [argmax s_n == argmax t_n]``.

    >>> from refq.nn import TransformerConfig, build_model
    >>> from refq.train.tasks import get_task
    >>> task = get_task("reverse", min_len=2, max_len=4)
    >>> m = build_model(TransformerConfig(vocab_size=task.vocab_size, d_model=8, n_heads=2,
    ...                                   d_ff=16, n_encoder_layers=1, n_decoder_layers=1))
    >>> teacher_agreement(m, m, task, n=20)
    1.0
    """
    if n <= 0:
        raise ValueError(f"n must be positive, got {n}")
    data = task.heldout(n, seed)
    modes = [(m, getattr(m, "training", False)) for m in (student, teacher)]
    for m, _ in modes:
        if hasattr(m, "eval"):
            m.eval()
    try:
        s, y = model_logits(student, data)
        t, _ = model_logits(teacher, data)
    finally:
        for m, was in modes:
            if was and hasattr(m, "train"):
                m.train()
    valid = np.ones(y.shape, bool) if task.kind == "classification" else y != task.pad_id
    same = s.argmax(axis=-1) == t.argmax(axis=-1)  # (..., V) -> (...)
    return float(same[valid].mean())


__all__ = [
    "DistillationLoss",
    "distill_step",
    "distill_train",
    "model_logits",
    "teacher_agreement",
]
