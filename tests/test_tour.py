"""The tour end to end on a tiny model: every step runs, the table and figures are produced."""

from __future__ import annotations

import json

from refq.cli import main
from refq.tour import PTQ_CONFIGS, QAT_CONFIGS, run_tour, weight_errors


def test_tour_runs_on_a_tiny_model(tmp_path):
    lines: list[str] = []
    summary = run_tour(
        "reverse", steps=12, qat_steps=2, eval_n=16, out_dir=tmp_path / "run",
        figures_dir=tmp_path / "fig", log=lines.append,
        model_overrides=dict(d_model=16, n_heads=2, d_ff=32, n_encoder_layers=1,
                             n_decoder_layers=1),
        calib_batches=1,
    )  # fmt: skip
    methods = [r["method"] for r in summary["rows"]]
    assert methods == [c[0] for c in PTQ_CONFIGS] + [c[0] for c in QAT_CONFIGS]
    for r in summary["rows"]:
        assert 0.0 <= r["exact_match"] <= 1.0 and r["size_bytes"] > 0
    assert summary["reload_identical"] is True
    for name in ("tour_accuracy", "tour_layer_sqnr", "tour_ptq_vs_qat", "tour_weight_errors"):
        assert (tmp_path / "fig" / f"{name}.png").stat().st_size > 1000
    saved = json.loads((tmp_path / "run" / "tour.json").read_text())
    assert saved["rows"][0]["method"] == "PTQ W8A8 minmax"
    assert any(line.startswith("| PTQ W2A8 minmax") for line in "\n".join(lines).splitlines())


def test_weight_errors_cover_every_formula():
    import numpy as np

    w = np.random.default_rng(0).normal(size=(8, 16)).astype(np.float32)
    errs = weight_errors(w)
    assert len(errs) == 6
    rms = {k: float(np.sqrt(np.mean(e**2))) for k, e in errs.items()}
    assert rms["symmetric per-channel, 8 bit"] < rms["symmetric per-channel, 4 bit"]


def test_tour_cli_rejects_bad_numbers(capsys):
    assert main(["tour", "--steps", "0"]) == 2
    assert "--steps must be positive" in capsys.readouterr().err
