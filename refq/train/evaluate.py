"""``evaluate``: the one function every command uses to score a model on a task's held-out set.

It needs only the model's interface, not its class: seq2seq tasks call ``model.encode`` and
``model.decode`` (greedy decoding), or, for a decoder-only LM (no ``encode``),
``model(tokens)`` on the prompt [src | <bos>]; classification tasks call ``model(src)``. So a
PTQ/QAT model (the same object with swapped submodules) or any object with those methods is
scored the same way.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from refq.train.decoding import beam_search, greedy_decode, lm_greedy_decode
from refq.train.metrics import classification_metrics, sequence_metrics
from refq.train.tasks import Batch, Task


def predict(model: Any, task: Task, batch: Batch, beam: int = 1) -> np.ndarray:
    """Predicted tokens (B, max_tgt_len) for seq2seq tasks, predicted classes (B,) otherwise."""
    if task.kind == "classification":
        return np.asarray(model(batch.src)).argmax(axis=-1)  # (B, n_classes) -> (B,)
    if not hasattr(model, "encode"):  # a decoder-only LM: prompt [src | <bos>]
        return lm_greedy_decode(model, batch.src, task.max_tgt_len)
    if beam > 1:
        return beam_search(model, batch.src, task.max_tgt_len, beam=beam)
    return greedy_decode(model, batch.src, task.max_tgt_len)


def evaluate(
    model: Any, task: Task, n: int = 1000, seed: int = 1234, batch_size: int = 500, beam: int = 1
) -> dict[str, float]:
    """Score ``model`` on ``n`` held-out examples of ``task`` (``task.heldout(n, seed)``).

    Returns {"token_accuracy", "exact_match", "precision", "recall", "f1"} (fractions, see
    ``refq.train.metrics``). The model is put in eval mode and its previous mode is restored.

    >>> from refq.nn import TransformerConfig, build_model
    >>> from refq.train.tasks import get_task
    >>> task = get_task("majority")
    >>> model = build_model(TransformerConfig(kind="classifier", vocab_size=task.vocab_size,
    ...                                       n_classes=4, d_model=8, n_heads=2, d_ff=16))
    >>> m = evaluate(model, task, n=50)
    >>> sorted(m), all(0.0 <= v <= 1.0 for v in m.values())
    (['exact_match', 'f1', 'precision', 'recall', 'token_accuracy'], True)
    """
    if n <= 0 or batch_size <= 0:
        raise ValueError(f"n and batch_size must be positive, got {n}, {batch_size}")
    data = task.heldout(n, seed)
    was_training = getattr(model, "training", False)
    if hasattr(model, "eval"):
        model.eval()
    try:
        preds = []
        for i in range(0, n, batch_size):
            part = slice(i, i + batch_size)
            preds.append(predict(model, task, data.slice(part), beam))
    finally:
        if was_training and hasattr(model, "train"):
            model.train()
    pred = np.concatenate(preds)
    if task.kind == "classification":
        return classification_metrics(pred, data.labels)
    return sequence_metrics(pred, data.tgt_out, task.pad_id)
