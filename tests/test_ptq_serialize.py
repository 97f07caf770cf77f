"""Quantized checkpoints: integers stored as integers, exact round trip, real byte counts."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import tiny_seq2seq

from refq.ptq import W4A8, W8A8, get_qconfig
from refq.ptq.analysis import model_size_bytes
from refq.ptq.flow import calibration_batches, quantize_model, run_batch
from refq.ptq.serialize import save_quantized
from refq.train.checkpoint import load_checkpoint, save_checkpoint
from refq.train.tasks import get_task

TASK = get_task("reverse", min_len=3, max_len=6)
META = {"task": {"name": "reverse", "params": {"min_len": 3, "max_len": 6}}}


@pytest.fixture(scope="module")
def model():
    return tiny_seq2seq(TASK, d_model=64, d_ff=128, seed=2)


def file_arrays(path):
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


@pytest.mark.parametrize(
    "qc",
    [W8A8, W4A8, get_qconfig(2, 8), get_qconfig(8, 8, quantize_attention=True)],
    ids=["w8", "w4", "w2", "w8-attn"],
)
def test_round_trip_is_bit_exact(model, qc, tmp_path):
    q = quantize_model(model, TASK, qc, n_batches=1, batch_size=16)
    path = save_quantized(tmp_path / "q.npz", q, META)
    q2, meta = load_checkpoint(path)
    assert meta["kind"] == "quantized"
    b = next(calibration_batches(TASK, 1, 16, seed=7))
    np.testing.assert_array_equal(run_batch(q, b), run_batch(q2, b))
    arrays = file_arrays(path)
    bits = qc.spec["weight_bits"]
    key = "quantized/lm_head/weight" if bits == 8 else "quantized/lm_head/weight_packed"
    assert arrays[key].dtype == (np.int8 if bits == 8 else np.uint8)
    assert arrays["quantized/lm_head/bias"].dtype == np.int32
    assert "lm_head.weight" not in arrays  # no float copy of a quantized weight


def test_size_is_measured_in_bytes(model, tmp_path):
    fpath = save_checkpoint(tmp_path / "f.npz", model, META)
    fsize = sum(a.nbytes for k, a in file_arrays(fpath).items() if k != "__meta__")
    sizes = {}
    for label, qc in (("w8", W8A8), ("w4", W4A8)):
        q = quantize_model(model, TASK, qc, n_batches=1, batch_size=16)
        p = save_quantized(tmp_path / f"{label}.npz", q, META)
        sizes[label] = sum(a.nbytes for k, a in file_arrays(p).items() if k != "__meta__")
        assert sizes[label] == model_size_bytes(q)
    # 8-bit codes are 1/4 of float32 (minus scales, biases and the float embeddings/norms)
    assert 3.0 < fsize / sizes["w8"] < 4.0
    assert 5.0 < fsize / sizes["w4"] < 8.0


def test_bad_files_give_clear_errors(model, tmp_path):
    q = quantize_model(model, TASK, W8A8, n_batches=1, batch_size=16)
    path = save_quantized(tmp_path / "q.npz", q, META)
    arrays = file_arrays(path)
    meta = json.loads(str(arrays.pop("__meta__")))
    del arrays["quantized/lm_head/weight"]
    bad = tmp_path / "bad.npz"
    np.savez(bad, **arrays, __meta__=np.array(json.dumps(meta)))
    with pytest.raises(ValueError, match="lm_head"):
        load_checkpoint(bad)
    trunc = tmp_path / "trunc.npz"
    trunc.write_bytes(path.read_bytes()[:2000])
    with pytest.raises(ValueError, match="truncated"):
        load_checkpoint(trunc)
    with pytest.raises(ValueError, match="no quantized layers"):
        save_quantized(tmp_path / "x.npz", model, META)
