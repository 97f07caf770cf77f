"""refq ptq / qat / eval on quantized files: the JSON contract and clear errors."""

from __future__ import annotations

import json

import pytest

from refq.cli import main
from refq.train.checkpoint import save_checkpoint
from refq.train.tasks import get_task
from refq.train.trainer import train_task

KEYS = {"token_accuracy", "exact_match", "precision", "recall", "f1", "size_bytes", "seconds"}


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    task = get_task("reverse", min_len=3, max_len=5)
    model, *_ = train_task(task, steps=20, model_overrides=dict(
        d_model=16, n_heads=2, d_ff=32, n_encoder_layers=1, n_decoder_layers=1))  # fmt: skip
    path = tmp_path_factory.mktemp("ck") / "f.npz"
    return save_checkpoint(path, model, {"task": {"name": task.name, "params": task.params()}})


def last_json(capsys) -> dict:
    out = capsys.readouterr().out.strip().splitlines()
    return json.loads(out[-1])


def test_ptq_then_eval_of_the_quantized_file(ckpt, tmp_path, capsys):
    q = tmp_path / "q.npz"
    args = ["ptq", str(ckpt), "--out", str(q), "--eval-n", "20", "--calib-batches", "1", "--json"]
    assert main(args) == 0
    res = last_json(capsys)
    assert KEYS <= set(res)
    assert all(0.0 <= res[k] <= 1.0 for k in ("token_accuracy", "exact_match", "f1"))
    assert res["size_bytes"] < res["float"]["size_bytes"]
    assert set(res["layer_sqnr_db"]) and res["qconfig"]["weight_bits"] == 8
    assert main(["eval", str(q), "--n", "20", "--json"]) == 0
    ev = last_json(capsys)
    assert KEYS <= set(ev) and ev["kind"] == "quantized"
    assert ev["exact_match"] == res["exact_match"]  # same held-out set, same integer model
    assert ev["size_bytes"] == res["size_bytes"]


def test_ptq_options(ckpt, tmp_path, capsys):
    q = tmp_path / "q4.npz"
    args = ["ptq", str(ckpt), "--out", str(q), "--eval-n", "10", "--calib-batches", "1",
            "--weight-bits", "4", "--observer", "entropy", "--per-tensor", "--attention",
            "--keep-float", "lm_head", "--sensitivity", "--json"]  # fmt: skip
    assert main(args) == 0
    res = last_json(capsys)
    assert "lm_head" not in res["layer_sqnr_db"]
    assert res["sensitivity"] and res["qconfig"]["observer"] == "entropy"


def test_qat_command(ckpt, tmp_path, capsys):
    q = tmp_path / "qat.npz"
    args = ["qat", str(ckpt), "--out", str(q), "--weight-bits", "2", "--steps", "3",
            "--eval-n", "10", "--json"]  # fmt: skip
    assert main(args) == 0
    res = last_json(capsys)
    assert KEYS <= set(res) and {"float", "ptq", "train_seconds"} <= set(res)
    assert main(["eval", str(q), "--n", "10", "--json"]) == 0
    assert last_json(capsys)["exact_match"] == res["exact_match"]


def test_errors_are_clear(ckpt, tmp_path, capsys):
    q = tmp_path / "q.npz"
    assert main(["ptq", str(ckpt), "--out", str(q), "--eval-n", "5", "--calib-batches", "1"]) == 0
    capsys.readouterr()
    assert main(["ptq", str(q), "--out", str(tmp_path / "x.npz")]) == 2
    assert "needs a float checkpoint" in capsys.readouterr().err
    assert main(["ptq", str(tmp_path / "missing.npz"), "--out", str(tmp_path / "y.npz")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["ptq", str(ckpt), "--out", str(q), "--weight-bits", "9"]) == 2
    assert "weight_bits must be an integer in [2, 8]" in capsys.readouterr().err
    assert main(["qat", str(ckpt), "--out", str(q), "--lsq", "--log"]) == 2
    assert "--lsq" in capsys.readouterr().err


def test_prune_command_keeps_zeros_through_ptq(ckpt, tmp_path, capsys):
    pruned = tmp_path / "p.npz"
    args = ["prune", str(ckpt), "--out", str(pruned), "--sparsity", "0.5", "--steps", "3",
            "--eval-n", "10", "--json"]  # fmt: skip
    assert main(args) == 0
    res = last_json(capsys)
    assert KEYS <= set(res) and abs(res["sparsity"] - 0.5) < 0.01
    assert main(["ptq", str(pruned), "--out", str(tmp_path / "q.npz"), "--eval-n", "5",
                 "--calib-batches", "1", "--json"]) == 0  # fmt: skip
    capsys.readouterr()
    from refq.compress.pruning import sparsity_report
    from refq.train.checkpoint import load_checkpoint

    qmodel, _ = load_checkpoint(tmp_path / "q.npz")
    assert sparsity_report(qmodel)["sparsity"] >= 0.5 - 0.01
    assert main(["prune", str(ckpt), "--out", str(pruned), "--sparsity", "1.5"]) == 2
    assert "--sparsity must be in [0, 1)" in capsys.readouterr().err
