"""Checkpoints: round trip, no pickle, clear errors for missing/truncated/mismatched files."""

from __future__ import annotations

import json

import numpy as np
import pytest

from refq.nn import TransformerConfig, build_model
from refq.train.checkpoint import (
    load_checkpoint,
    read_checkpoint,
    register_loader,
    save_checkpoint,
    task_from_meta,
    weights_size_bytes,
)

CFG = dict(
    vocab_size=14, d_model=8, n_heads=2, d_ff=16, n_encoder_layers=1, n_decoder_layers=1, max_len=12
)
META = {"task": {"name": "reverse", "params": {"min_len": 3, "max_len": 10}}, "vocab": ["a"]}


def test_round_trip_bit_exact(tmp_path):
    m = build_model(TransformerConfig(**CFG, seed=4))
    path = save_checkpoint(tmp_path / "m.npz", m, META)
    m2, meta = load_checkpoint(path)
    for k, v in m.state_dict().items():
        np.testing.assert_array_equal(v, m2.state_dict()[k])
    assert meta["kind"] == "float" and meta["format"] == "refq-checkpoint"
    assert meta["config"]["d_model"] == 8 and meta["task"]["name"] == "reverse"
    assert task_from_meta(meta).name == "reverse"
    assert weights_size_bytes(path) == sum(v.nbytes for v in m.state_dict().values())
    # plain npz, no object arrays: loads with allow_pickle=False
    with np.load(path, allow_pickle=False) as z:
        assert json.loads(str(z["__meta__"]))["kind"] == "float"


def test_suffix_added(tmp_path):
    path = save_checkpoint(tmp_path / "model", build_model(TransformerConfig(**CFG)), META)
    assert path.name == "model.npz" and path.exists()


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.npz")


def test_truncated_file(tmp_path):
    path = save_checkpoint(tmp_path / "m.npz", build_model(TransformerConfig(**CFG)), META)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated or not a refq checkpoint"):
        load_checkpoint(path)
    path.write_bytes(b"not a zip at all")
    with pytest.raises(ValueError, match="truncated or not a refq checkpoint"):
        load_checkpoint(path)


def test_not_a_refq_npz_and_mismatch(tmp_path):
    p = tmp_path / "x.npz"
    np.savez(p, a=np.zeros(3))
    with pytest.raises(ValueError, match="no '__meta__'"):
        load_checkpoint(p)
    m = build_model(TransformerConfig(**CFG))
    # weights of a different size than the config says
    arrays = m.state_dict()
    arrays["lm_head.weight"] = np.zeros((3, 8), np.float32)
    save_checkpoint(p, m, META, arrays=arrays)
    with pytest.raises(ValueError, match="shape mismatch for 'lm_head.weight'"):
        load_checkpoint(p)
    arrays = m.state_dict()
    del arrays["lm_head.bias"]
    save_checkpoint(p, m, META, arrays=arrays)
    with pytest.raises(ValueError, match="missing keys"):
        load_checkpoint(p)


def test_unknown_kind_and_registered_loader(tmp_path):
    m = build_model(TransformerConfig(**CFG))
    p = save_checkpoint(tmp_path / "q.npz", m, META, kind="test-kind")
    with pytest.raises(ValueError, match="no loader for checkpoint kind 'test-kind'"):
        load_checkpoint(p)
    register_loader("test-kind", lambda arrays, meta: ("loaded", len(arrays)))
    model, meta = load_checkpoint(p)
    assert model == ("loaded", len(m.state_dict()))
    arrays, meta = read_checkpoint(p)
    assert meta["kind"] == "test-kind"
