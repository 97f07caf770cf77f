"""The ``refq train`` and ``refq eval`` commands: JSON contract and errors."""

from __future__ import annotations

import json

from refq.cli import main

KEYS = {"token_accuracy", "exact_match", "precision", "recall", "f1", "size_bytes", "seconds"}


def test_train_then_eval_json(tmp_path, capsys):
    out = tmp_path / "m.npz"
    rc = main(
        [
            "train",
            "--task",
            "reverse",
            "--out",
            str(out),
            "--steps",
            "20",
            "--log-every",
            "10",
            "--eval-n",
            "100",
            "--d-model",
            "16",
            "--d-ff",
            "32",
            "--layers",
            "1",
            "--json",
        ]
    )
    assert rc == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert any(line.startswith("step     10") for line in lines)  # progress while training
    res = json.loads(lines[-1])
    assert KEYS <= set(res) and res["steps"] == 20 and out.exists()
    from refq.train.checkpoint import load_checkpoint

    model, meta = load_checkpoint(out)
    assert meta["config"]["d_model"] == 16 and meta["config"]["n_encoder_layers"] == 1
    assert all(0.0 <= res[k] <= 1.0 for k in ("token_accuracy", "exact_match", "f1"))
    assert res["size_bytes"] > 5_000

    assert main(["eval", str(out), "--n", "100", "--json"]) == 0
    ev = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert KEYS <= set(ev) and ev["kind"] == "float" and ev["task"] == "reverse"
    # the same model, the same held-out set: the same numbers as at the end of training
    for k in ("token_accuracy", "exact_match", "precision", "recall", "f1", "size_bytes"):
        assert ev[k] == res[k]


def test_eval_errors(tmp_path, capsys):
    assert main(["eval", str(tmp_path / "missing.npz")]) == 2
    assert "does not exist" in capsys.readouterr().err
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"garbage")
    assert main(["eval", str(bad)]) == 2
    assert "truncated or not a refq checkpoint" in capsys.readouterr().err


def test_blas_threads_option_applies_and_is_restored(tmp_path, capsys):
    from refq.train.blas import get_blas_threads, set_blas_threads

    old = get_blas_threads()
    try:
        argv = [
            "train",
            "--task",
            "majority",
            "--out",
            str(tmp_path / "c.npz"),
            "--steps",
            "2",
            "--d-model",
            "8",
            "--d-ff",
            "16",
            "--layers",
            "1",
            "--eval-n",
            "20",
            "--blas-threads",
            "1",
        ]
        assert main(argv) == 0
        if old is not None:
            assert get_blas_threads() == 1
    finally:
        if old is not None:
            set_blas_threads(old)


def test_train_divergence_is_a_clear_error(tmp_path, capsys):
    out = tmp_path / "m.npz"
    argv = [
        "train",
        "--task",
        "reverse",
        "--out",
        str(out),
        "--steps",
        "30",
        "--lr",
        "1e30",
        "--d-model",
        "16",
        "--d-ff",
        "32",
        "--layers",
        "1",
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "training diverged at step" in err and not out.exists()
