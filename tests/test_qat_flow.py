"""QAT: wrappers keep the model trainable, STE backward by hand, convert gives PTQ's int8 layers."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import tiny_seq2seq

from refq.nn.linear import Linear
from refq.ptq import W4A8, QuantizedLinear, get_qconfig
from refq.ptq.flow import calibration_batches, run_batch
from refq.qat.fake_quant import fake_quant_modules
from refq.qat.prepare import QATLinear, convert_qat, freeze_observers, prepare_qat
from refq.qat.train import QATDiverged, qat_train
from refq.train.tasks import get_task

TASK = get_task("reverse", min_len=3, max_len=5)


@pytest.fixture(scope="module")
def model():
    return tiny_seq2seq(TASK, seed=3)


def one_linear(qc, lsq=False):
    lin = Linear(6, 4, rng=np.random.default_rng(0), dtype=np.float64)
    return lin, QATLinear(lin, qc, "fc", lsq=lsq)


def test_qat_linear_backward_is_ste_by_hand():
    """dW = mask_w * (dy_hat^T x_hat), dx = mask_x * (dy_hat @ w_hat): the STE written out."""
    lin, q = one_linear(W4A8)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(5, 6))
    y = q(x)
    dy = rng.normal(size=y.shape)
    dx = q.backward(dy)
    x_hat, w_hat, _ = q._cache
    out_mask = q.output_fake_quant._cache["q_unclamped"]
    p = q.output_fake_quant.qparams
    dy_hat = dy * ((out_mask >= p.quant_min) & (out_mask <= p.quant_max))
    wq = q.weight_fake_quant._cache["q_unclamped"]
    pw = q.weight_fake_quant.qparams
    w_mask = (wq >= pw.quant_min) & (wq <= pw.quant_max)
    np.testing.assert_allclose(lin.grads["weight"], w_mask * (dy_hat.T @ x_hat), rtol=1e-12)
    np.testing.assert_allclose(lin.grads["bias"], dy_hat.sum(0), rtol=1e-12)
    xq = q.input_fake_quant._cache["q_unclamped"]
    pi = q.input_fake_quant.qparams
    x_mask = (xq >= pi.quant_min) & (xq <= pi.quant_max)
    np.testing.assert_allclose(dx, x_mask * (dy_hat @ w_hat), rtol=1e-12)


def test_fake_quant_disabled_is_the_float_layer():
    lin, q = one_linear(W4A8)
    for node in q.fake_quant_nodes():
        node.disable_fake_quant()
    ref = Linear(6, 4, rng=np.random.default_rng(0), dtype=np.float64)
    x = np.random.default_rng(2).normal(size=(3, 6))
    np.testing.assert_array_equal(q(x), ref(x))
    dy = np.ones((3, 4))
    np.testing.assert_allclose(q.backward(dy), ref.backward(dy))
    np.testing.assert_allclose(lin.grads["weight"], ref.grads["weight"])


def test_prepare_qat_keeps_parameter_names_and_adds_lsq_scales(model):
    qat = prepare_qat(model, W4A8, lsq=True)
    names = dict(qat.named_parameters())
    assert "lm_head.weight" in names
    run_batch(qat, next(calibration_batches(TASK, 1, 8)))
    names = dict(qat.named_parameters())
    assert "lm_head.weight_fake_quant.scale" in names
    assert "lm_head.input_fake_quant.scale" in names
    assert type(model.get_submodule("lm_head")) is Linear  # the float model is untouched


@pytest.mark.parametrize("lsq", [False, True])
def test_converted_qat_model_matches_its_fake_quant_forward(model, lsq):
    """After training (ranges frozen), the int8 model computes what the QAT model simulated."""
    qat = qat_train(model, TASK, W4A8, steps=4, lsq=lsq, calib_batches=2, batch_size=16)
    freeze_observers(qat)
    qmodel = convert_qat(qat)
    assert all(
        isinstance(qmodel.get_submodule(n), QuantizedLinear)
        for n, m in model.named_modules()
        if type(m) is Linear
    )
    b = next(calibration_batches(TASK, 1, 16, seed=4))
    sim = run_batch(qat, b).astype(np.float64)
    out = run_batch(qmodel, b).astype(np.float64)
    rel = np.mean((sim - out) ** 2) / np.mean(sim**2)
    assert rel < 1e-3


def test_qat_improves_over_ptq_on_a_few_steps(model):
    """Short fine-tuning at 2-bit weights lowers the loss of the fake-quantized model."""
    from refq.nn.loss import CrossEntropyLoss

    qc = get_qconfig(2, 8)
    b = next(calibration_batches(TASK, 1, 64, seed=11))
    loss = CrossEntropyLoss(ignore_index=TASK.pad_id)
    start = prepare_qat(model, qc)
    run_batch(start, b)
    before = loss(run_batch(start, b), b.tgt_out)
    qat = qat_train(model, TASK, qc, steps=30, lr=2e-3, calib_batches=1, batch_size=32)
    after = loss(run_batch(qat, b), b.tgt_out)
    assert after < before


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the overflow is the point
@pytest.mark.parametrize("lsq", [False, True])
def test_divergence_names_step_and_layer(model, lsq):
    """An absurd learning rate overflows the weights: the error names the step and a layer."""
    with pytest.raises(QATDiverged, match=r"at step \d+: .*(FakeQuantize|LSQFakeQuantize) '[\w.]+"):
        qat_train(model, TASK, W4A8, steps=5, lr=1e39, lsq=lsq, calib_batches=1, batch_size=8)


def test_errors(model):
    with pytest.raises(ValueError, match="no QAT layers"):
        convert_qat(model)
    qat = prepare_qat(model, W4A8)
    with pytest.raises(ValueError, match="no forward pass"):
        convert_qat(qat)
    with pytest.raises(TypeError, match="QConfig"):
        prepare_qat(model, "W4A8")
    assert len(list(fake_quant_modules(qat))) == 3 * sum(
        type(m) is Linear for _, m in model.named_modules()
    )
