"""PTQ: prepare leaves outputs unchanged, convert runs on int8 kernels, agrees with simulation."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import tiny_seq2seq

from refq import kernels
from refq.nn.linear import Linear, MatMul
from refq.ptq import (
    W4A8,
    W8A8,
    W8A8_LOG,
    QuantizedLinear,
    QuantizedMatMul,
    calibrate,
    convert,
    get_qconfig,
    prepare,
)
from refq.ptq.flow import calibration_batches, quantize_model, run_batch
from refq.ptq.simulate import simulate_linear_codes
from refq.train.tasks import get_task

TASK = get_task("reverse", min_len=3, max_len=6)


@pytest.fixture(scope="module")
def model():
    return tiny_seq2seq(TASK)


def batches(n=2, seed=0):
    return list(calibration_batches(TASK, n_batches=n, batch_size=16, seed=seed))


def test_prepare_does_not_change_outputs(model):
    b = batches(1)[0]
    ref = run_batch(model, b)
    prepared = prepare(model, W8A8)
    np.testing.assert_array_equal(run_batch(prepared, b), ref)
    # prepare copies: the original model still has plain Linear layers
    assert type(model.get_submodule("lm_head")) is Linear


def test_convert_makes_every_linear_int8(model):
    qmodel = quantize_model(model, TASK, W8A8, n_batches=2, batch_size=16)
    names = [n for n, m in model.named_modules() if type(m) is Linear]
    assert names
    for n in names:
        layer = qmodel.get_submodule(n)
        assert isinstance(layer, QuantizedLinear)
        assert layer.state["weight"].dtype == np.int8
        assert layer.state["bias"].dtype == np.int32
        assert layer.params == {}  # no float weight survives conversion
        floats = [k for k, v in layer.state.items() if v.dtype.kind == "f" and v.ndim == 2]
        assert floats == []


def test_converted_linear_never_touches_float_weights(model, monkeypatch):
    """The converted layers call the int8 kernel once per forward and hold no float matrix;
    poisoning every float weight of the float model changes nothing in the converted one."""
    qmodel = quantize_model(model, TASK, W8A8, n_batches=2, batch_size=16)
    b = batches(1, seed=5)[0]
    ref = run_batch(qmodel, b)
    for _, p in model.named_parameters():  # the original float model (not referenced by qmodel)
        p[...] = np.nan
    calls = []
    real = kernels.quantized_linear

    def spy(x_q, *args, **kw):
        assert x_q.dtype in (np.int8, np.uint8)
        calls.append(x_q.shape)
        return real(x_q, *args, **kw)

    monkeypatch.setattr(kernels, "quantized_linear", spy)
    out = run_batch(qmodel, b)
    np.testing.assert_array_equal(out, ref)
    n_linear = sum(isinstance(m, QuantizedLinear) for _, m in qmodel.named_modules())
    assert len(calls) == n_linear


@pytest.fixture(scope="module")
def fresh_model():
    return tiny_seq2seq(TASK, seed=1)


@pytest.mark.parametrize("requant", ["fixed_point", "float"])
@pytest.mark.parametrize("weight_bits", [8, 4])
def test_int8_path_matches_fake_quant_simulation(fresh_model, requant, weight_bits):
    """Every layer's int8 output codes are within one step of the float64 fake-quant simulation."""
    qc = get_qconfig(weight_bits, 8, requant=requant)
    qmodel = quantize_model(fresh_model, TASK, qc, n_batches=2, batch_size=16)
    rng = np.random.default_rng(0)
    for name, layer in qmodel.named_modules():
        if not isinstance(layer, QuantizedLinear):
            continue
        x = rng.normal(0, 1.5, size=(64, layer.in_features)).astype(np.float32)
        got = layer.forward_codes(layer.quantize_input(x)).astype(np.int64)
        want = simulate_linear_codes(layer, x)
        assert np.abs(got - want).max() <= 1, name
        assert np.mean(got == want) > 0.95, name


def test_w8a8_close_to_float_and_w4_coarser(fresh_model):
    b = batches(1, seed=9)[0]
    ref = run_batch(fresh_model, b).astype(np.float64)
    errs = {}
    for label, qc in (("w8", W8A8), ("w4", W4A8)):
        q = quantize_model(fresh_model, TASK, qc, n_batches=4, batch_size=32)
        out = run_batch(q, b)
        errs[label] = np.mean((out - ref) ** 2) / np.mean(ref**2)
    assert errs["w8"] < 0.01
    assert errs["w4"] > errs["w8"]


def test_attention_matmuls_can_be_quantized(fresh_model):
    qc = get_qconfig(8, 8, quantize_attention=True)
    q = quantize_model(fresh_model, TASK, qc, n_batches=2, batch_size=16)
    mms = [n for n, m in q.named_modules() if isinstance(m, QuantizedMatMul)]
    n_float = sum(type(m) is MatMul for _, m in fresh_model.named_modules())
    assert len(mms) == n_float > 0
    b = batches(1, seed=3)[0]
    ref = run_batch(fresh_model, b).astype(np.float64)
    out = run_batch(q, b)
    assert np.mean((out - ref) ** 2) / np.mean(ref**2) < 0.02


def test_quantized_matmul_is_exact_integer_arithmetic():
    from refq.ptq.quantized import QuantizedMatMul

    st = dict(
        a_scale=np.float32(0.5),
        a_zero_point=np.int32(3),
        b_scale=np.float32(0.25),
        b_zero_point=np.int32(-2),
        act_qmin=np.int32(-128),
        act_qmax=np.int32(127),
    )
    mm = QuantizedMatMul(st, "t")
    rng = np.random.default_rng(0)
    a_q = rng.integers(-128, 128, size=(2, 3, 5, 7))
    b_q = rng.integers(-128, 128, size=(2, 3, 7, 4))
    a = ((a_q - 3) * 0.5).astype(np.float32)  # exactly representable: quantize is lossless
    b = ((b_q + 2) * 0.25).astype(np.float32)
    want = ((a_q - 3) @ (b_q + 2)) * 0.125
    np.testing.assert_array_equal(mm(a, b), want.astype(np.float32))


def test_mixed_precision_overrides(fresh_model):
    qc8 = W8A8
    ov = {"lm_head": None, "encoder.layers.0.ff.fc1": W4A8}
    q = quantize_model(fresh_model, TASK, qc8, n_batches=1, batch_size=8, overrides=ov)
    assert type(q.get_submodule("lm_head")) is Linear
    assert int(q.get_submodule("encoder.layers.0.ff.fc1").state["weight_bits"]) == 4
    assert int(q.get_submodule("encoder.layers.0.ff.fc2").state["weight_bits"]) == 8
    with pytest.raises(ValueError, match="no_such_layer"):
        prepare(fresh_model, qc8, {"no_such_layer": None})


def test_per_tensor_and_log_weights_convert(fresh_model):
    for qc in (get_qconfig(8, 8, per_channel=False), W8A8_LOG, get_qconfig(4, 8, log=True)):
        report = {}
        q = quantize_model(fresh_model, TASK, qc, n_batches=1, batch_size=8, report=report)
        assert all(isinstance(q.get_submodule(n), QuantizedLinear) for n in report)
    # 4-bit log weights (levels one octave apart, 7 octaves) land exactly on the int8 grid
    from refq.ptq.convert import quantize_weight
    from refq.quant import LogQuantizer

    w = np.random.default_rng(0).normal(size=(6, 10)).astype(np.float32)
    lq = LogQuantizer(bits=4, axis=0).fit(w)
    state, _ = quantize_weight(w, lq, "w")
    decoded = state["weight"].astype(np.float32) * state["weight_scale"][:, None]
    np.testing.assert_allclose(decoded, lq.fake_quant(w), rtol=1e-6)


def test_bad_input_errors(fresh_model):
    prepared = prepare(fresh_model, W8A8)
    with pytest.raises(ValueError, match="saw no calibration data"):
        convert(prepared)
    with pytest.raises(ValueError, match="at least one batch"):
        calibrate(prepared, [], run_batch)
    with pytest.raises(ValueError, match="weight_bits must be an integer in \\[2, 8\\]"):
        get_qconfig(weight_bits=12)
    with pytest.raises(ValueError, match="unknown observer"):
        get_qconfig(observer="magic")
    with pytest.raises(TypeError, match="QConfig"):
        prepare(fresh_model, "W8A8")
    with pytest.raises(ValueError, match="no observed layers"):
        convert(fresh_model)
    # NaN activations during calibration name the layer
    bad = prepare(fresh_model, W8A8)
    layer = bad.get_submodule("encoder.layers.0.ff.fc1")
    with pytest.raises(ValueError, match="encoder.layers.0.ff.fc1.*NaN"):
        layer(np.full((2, layer.in_features), np.nan, np.float32))


def test_low_bit_weights_run_on_the_int4_kernel_path(fresh_model):
    """4/3/2-bit weights are held two per byte and give exactly what the int8 layout gives."""
    from refq.ptq.quantized import QuantizedLinear as QL

    q = quantize_model(fresh_model, TASK, W4A8, n_batches=1, batch_size=8)
    layer = q.get_submodule("encoder.layers.0.ff.fc1")
    assert layer.packed.bits == 4
    as_int8 = QL(dict(layer.state, weight_bits=np.int32(8)), "same codes, int8 layout")
    assert as_int8.packed.bits == 8
    x = np.random.default_rng(0).normal(size=(7, layer.in_features)).astype(np.float32)
    np.testing.assert_array_equal(layer(x), as_int8(x))
    assert layer.packed.nbytes * 2 == as_int8.packed.nbytes
