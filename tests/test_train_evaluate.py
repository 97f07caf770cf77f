"""``evaluate`` scores any object with the model interface: an oracle scores 1, a corrupted
oracle scores exactly what the corruption predicts."""

from __future__ import annotations

import numpy as np
import pytest

from refq.train.evaluate import evaluate
from refq.train.tasks import get_task


class ReverseOracle:
    """encode/decode that emit the right next token of the reversal (no weights at all)."""

    def __init__(self, vocab_size, wrong_first=False):
        self.v, self.wrong_first = vocab_size, wrong_first

    def encode(self, src):
        return src

    def decode(self, tgt_in, memory, src):
        b, t = tgt_in.shape
        lengths = (src != 0).sum(1)
        logits = np.zeros((b, t, self.v))
        for i in range(b):
            target = list(src[i, : lengths[i]][::-1]) + [2]
            for j in range(t):
                tok = target[j] if j < len(target) else 0
                if self.wrong_first and j == 0:
                    tok = 3 if tok != 3 else 4
                logits[i, j, tok] = 1.0
        return logits


def test_oracle_scores_one():
    task = get_task("reverse")
    m = evaluate(ReverseOracle(task.vocab_size), task, n=200)
    assert m == {
        "token_accuracy": 1.0,
        "exact_match": 1.0,
        "precision": 1.0,
        "recall": 1.0,
        "f1": 1.0,
    }


def test_first_token_always_wrong():
    task = get_task("reverse")
    data = task.heldout(200)
    n_tokens = int((data.tgt_out != 0).sum())
    m = evaluate(ReverseOracle(task.vocab_size, wrong_first=True), task, n=200)
    assert m["exact_match"] == 0.0
    assert m["token_accuracy"] == pytest.approx((n_tokens - 200) / n_tokens)


class MajorityOracle:
    def __call__(self, src):
        counts = np.stack([(src == 3 + c).sum(1) for c in range(4)], axis=1)
        return counts.astype(float)  # logits: argmax = most frequent symbol


def test_classification_oracle_and_batching():
    task = get_task("majority")
    m = evaluate(MajorityOracle(), task, n=300, batch_size=70)  # batches of 70, last of 20
    assert m["exact_match"] == 1.0 and m["f1"] == 1.0


def test_evaluate_restores_training_mode_and_checks_args():
    from refq.nn import TransformerConfig, build_model

    task = get_task("reverse")
    model = build_model(
        TransformerConfig(
            vocab_size=task.vocab_size,
            d_model=8,
            n_heads=2,
            d_ff=16,
            n_encoder_layers=1,
            n_decoder_layers=1,
            max_len=12,
        )
    )
    model.train()
    evaluate(model, task, n=20)
    assert model.training
    with pytest.raises(ValueError, match="positive"):
        evaluate(model, task, n=0)
