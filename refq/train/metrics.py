"""Evaluation metrics (the seed's FAQ 9.3: accuracy, recall, F1), all fractions in [0, 1].

Seq2seq predictions are compared with references position by position over the reference's
tokens up to and including <eos> (pad positions of the reference are ignored):
    token_accuracy = (# positions where pred == ref) / (# reference positions)
    exact_match    = (# sequences with every reference position right) / (# sequences)
    precision, recall, f1: macro averages over the token classes at those positions
Classification: token_accuracy = exact_match = accuracy over examples; macro P/R/F1 over labels.
"""

from __future__ import annotations

import numpy as np


def macro_prf(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[float, float, float]:
    """Macro-averaged precision, recall and F1 over the classes present in ``y_true``
    (scikit-learn's ``average="macro", labels=np.unique(y_true), zero_division=0``): for each c,
        P_c = TP_c / (TP_c + FP_c),  R_c = TP_c / (TP_c + FN_c),  F1_c = 2 P_c R_c / (P_c + R_c)
    (0 when a denominator is 0), then the unweighted mean over those classes.
    A prediction of a class that never occurs in ``y_true`` (e.g. a stray <pad> in a decoded
    sequence) lowers the recall of the true class but adds no all-zero class to the mean:
    scikit-learn's default (union of labels) would make one stray token cost 1/K of macro F1.

    >>> macro_prf(np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1]))
    (0.8333333333333333, 0.75, 0.7333333333333334)
    """
    y_true, y_pred = np.asarray(y_true).ravel(), np.asarray(y_pred).ravel()
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true {y_true.shape} and y_pred {y_pred.shape} differ in length")
    if y_true.size == 0:
        raise ValueError("macro_prf needs at least one label")
    classes = np.unique(y_true)  # (K,)
    t = y_true[:, None] == classes[None, :]  # (N, K)
    p = y_pred[:, None] == classes[None, :]
    tp = (t & p).sum(0).astype(np.float64)
    n_pred, n_true = p.sum(0), t.sum(0)
    prec = np.divide(tp, n_pred, out=np.zeros_like(tp), where=n_pred > 0)
    rec = np.divide(tp, n_true, out=np.zeros_like(tp), where=n_true > 0)
    denom = prec + rec
    f1 = np.divide(2 * prec * rec, denom, out=np.zeros_like(tp), where=denom > 0)
    return float(prec.mean()), float(rec.mean()), float(f1.mean())


def sequence_metrics(pred: np.ndarray, ref: np.ndarray, pad_id: int = 0) -> dict[str, float]:
    """Metrics of predicted sequences ``pred`` (B, T') against references ``ref`` (B, T).

    ``pred`` is cut or padded (with ``pad_id``) to T. See the module docstring for the formulas.

    >>> ref = np.array([[5, 6, 2, 0], [7, 2, 0, 0]])
    >>> pred = np.array([[5, 6, 2, 0], [8, 2, 0, 0]])
    >>> m = sequence_metrics(pred, ref)
    >>> m["token_accuracy"], m["exact_match"]
    (0.8, 0.5)
    """
    if pred.ndim != 2 or ref.ndim != 2 or pred.shape[0] != ref.shape[0]:
        raise ValueError(f"pred {pred.shape} and ref {ref.shape} must be (B, T) with the same B")
    b, t = ref.shape
    p = np.full((b, t), pad_id, dtype=ref.dtype)
    k = min(t, pred.shape[1])
    p[:, :k] = pred[:, :k]
    valid = ref != pad_id  # (B, T)
    correct = (p == ref) & valid
    seq_ok = (correct | ~valid).all(axis=1)
    prec, rec, f1 = macro_prf(ref[valid], p[valid])
    return {
        "token_accuracy": float(correct.sum() / max(valid.sum(), 1)),
        "exact_match": float(seq_ok.mean()),
        "precision": prec,
        "recall": rec,
        "f1": f1,
    }


def classification_metrics(pred: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Accuracy (reported as both token_accuracy and exact_match) and macro P/R/F1.

    >>> classification_metrics(np.array([0, 1, 1]), np.array([0, 1, 0]))["exact_match"]
    0.6666666666666666
    """
    prec, rec, f1 = macro_prf(labels, pred)
    acc = float((np.asarray(pred) == np.asarray(labels)).mean())
    return {"token_accuracy": acc, "exact_match": acc, "precision": prec, "recall": rec, "f1": f1}
