"""Sensitivity ranking and automatic mixed precision."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import tiny_seq2seq

from refq.nn.linear import Linear
from refq.ptq import W8A8, QuantizedLinear, get_qconfig
from refq.ptq.analysis import output_sqnr, sensitivity
from refq.ptq.convert import calibrate, prepare
from refq.ptq.flow import calibration_batches, quantize_model, run_batch
from refq.ptq.mixed import auto_mixed_precision
from refq.train.tasks import get_task

TASK = get_task("reverse", min_len=3, max_len=5)


@pytest.fixture(scope="module")
def model():
    return tiny_seq2seq(TASK, d_model=16, d_ff=32, n_heads=2, seed=4)


def test_sensitivity_ranks_every_layer(model):
    probe = list(calibration_batches(TASK, 1, 16, seed=1))
    p = prepare(model, get_qconfig(2, 8))
    calibrate(p, probe, run_batch)
    rows = sensitivity(model, p, probe, run_batch)
    n = sum(type(m) is Linear for _, m in model.named_modules())
    assert len(rows) == n
    sq = [r["output_sqnr_db"] for r in rows]
    assert sq == sorted(sq)
    # each row is the output SQNR with exactly that one layer quantized
    from refq.ptq.convert import convert

    for r in (rows[0], rows[-1]):
        one = convert(p, layers={r["layer"]})
        assert isinstance(one.get_submodule(r["layer"]), QuantizedLinear)
        assert sum(isinstance(m, QuantizedLinear) for _, m in one.named_modules()) == 1
        assert output_sqnr(model, one, probe, run_batch) == pytest.approx(r["output_sqnr_db"])


def test_auto_mixed_precision_reaches_the_target_with_few_layers(model):
    low, high = get_qconfig(2, 8), W8A8
    probe = list(calibration_batches(TASK, 2, 64, seed=99))
    all_low = output_sqnr(model, quantize_model(model, TASK, low, n_batches=2), probe, run_batch)
    target = all_low + 6.0
    overrides, rep = auto_mixed_precision(model, TASK, low, high, target, n_batches=2)
    assert rep["reached"] and rep["output_sqnr_db"] >= target
    assert 0 < len(overrides) < sum(type(m) is Linear for _, m in model.named_modules())
    assert rep["promoted"][0] == rep["ranking"][0]["layer"]
    # one fewer promoted layer misses the target (the search found the smallest k)
    k = len(rep["promoted"])
    assert rep["tried"][str(k - 1)] < target
    q = quantize_model(model, TASK, low, n_batches=2, overrides=overrides)
    bits = {n: int(q.get_submodule(n).state["weight_bits"]) for n in rep["promoted"]}
    assert set(bits.values()) == {8}
    assert np.isfinite(rep["output_sqnr_db"])
