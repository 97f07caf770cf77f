"""Metrics computed by hand."""

from __future__ import annotations

import numpy as np
import pytest

from refq.train.metrics import classification_metrics, macro_prf, sequence_metrics


def test_macro_prf_by_hand():
    y_true = np.array([0, 0, 0, 1, 1, 2])
    y_pred = np.array([0, 0, 1, 1, 2, 2])
    # class 0: TP 2, FP 0, FN 1 -> P 1, R 2/3, F1 0.8
    # class 1: TP 1, FP 1, FN 1 -> P 1/2, R 1/2, F1 1/2
    # class 2: TP 1, FP 1, FN 0 -> P 1/2, R 1, F1 2/3
    p, r, f = macro_prf(y_true, y_pred)
    assert p == pytest.approx((1 + 0.5 + 0.5) / 3)
    assert r == pytest.approx((2 / 3 + 0.5 + 1) / 3)
    assert f == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)


def test_macro_prf_class_only_predicted_is_not_averaged():
    p, r, f = macro_prf(np.array([0, 0, 3]), np.array([0, 1, 3]))
    # classes of y_true: 0 (TP 1, FN 1: P 1, R 1/2, F1 2/3) and 3 (P 1, R 1, F1 1);
    # the stray prediction "1" is not a class of its own
    assert (p, r, f) == pytest.approx((1.0, 0.75, (2 / 3 + 1) / 2))


def test_sequence_metrics_by_hand():
    ref = np.array([[5, 6, 7, 2], [8, 2, 0, 0], [5, 2, 0, 0]])
    pred = np.array([[5, 6, 7, 2, 9], [8, 5, 2, 0, 0], [5, 2, 4, 4, 4]])  # longer than ref
    m = sequence_metrics(pred, ref, pad_id=0)
    # 8 reference tokens; row 1 wrong at position 1 -> 7/8; rows 0 and 2 exact (row 2's
    # extra tokens sit on pad positions of the reference and are ignored)
    assert m["token_accuracy"] == pytest.approx(7 / 8)
    assert m["exact_match"] == pytest.approx(2 / 3)
    assert 0 <= m["f1"] <= 1


def test_sequence_metrics_shorter_prediction_is_wrong_not_crash():
    m = sequence_metrics(np.array([[5]]), np.array([[5, 2]]))
    assert m["token_accuracy"] == 0.5 and m["exact_match"] == 0.0


def test_perfect_and_classification():
    ref = np.array([[3, 4, 2]])
    m = sequence_metrics(ref, ref)
    assert all(v == 1.0 for v in m.values())
    c = classification_metrics(np.array([1, 1, 0, 2]), np.array([1, 0, 0, 2]))
    assert c["exact_match"] == c["token_accuracy"] == 0.75


def test_metric_errors():
    with pytest.raises(ValueError, match="differ"):
        macro_prf(np.array([1, 2]), np.array([1]))
    with pytest.raises(ValueError, match="same B"):
        sequence_metrics(np.zeros((2, 3), int), np.zeros((3, 3), int))
