"""Magnitude pruning (Han et al. 2015, arXiv:1506.02626), fine-tuning with the masks kept,
gradual sparsity (Zhu & Gupta 2017, arXiv:1710.01878), and pruned weights through int8 PTQ."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from refq.compress.pruning import (
    apply_masks,
    gradual_sparsity,
    magnitude_masks,
    magnitude_prune,
    masked_step,
    prunable_weights,
    prune_and_finetune,
    sparse_size_bytes,
    sparsity_report,
)
from refq.nn import CrossEntropyLoss, TransformerConfig, build_model
from refq.ptq.flow import quantize_model
from refq.ptq.qconfig import get_qconfig
from refq.ptq.quantized import QuantizedLinear
from refq.train.tasks import get_task
from refq.train.trainer import TrainConfig, train

TASK = get_task("reverse", min_len=2, max_len=5)


def small(seed: int = 0):
    return build_model(
        TransformerConfig(vocab_size=TASK.vocab_size, d_model=16, n_heads=2, d_ff=32,
                          n_encoder_layers=1, n_decoder_layers=1, max_len=8, seed=seed)
    )  # fmt: skip


# -- masks: hand-worked ----------------------------------------------------------------------

W = {
    "a": np.array([[0.5, -0.1, 0.3], [0.2, -0.9, 0.05]]),  # |w| sorted: .05 .1 .2 .3 .5 .9
    "b": np.array([[0.04, 3.0], [-0.15, 1.0]]),  # |w| sorted: .04 .15 1 3
}


def test_layer_scope_by_hand():
    """s = 0.5: round(0.5 * 6) = 3 of "a" (0.05, 0.1, 0.2) and round(0.5 * 4) = 2 of "b"
    (0.04, 0.15) are pruned."""
    m = magnitude_masks(W, 0.5)
    np.testing.assert_array_equal(m["a"], [[True, False, True], [False, True, False]])
    np.testing.assert_array_equal(m["b"], [[False, True], [False, True]])


def test_global_scope_by_hand():
    """s = 0.7 of all 10 weights: the 7 smallest overall are 0.04, 0.05, 0.1, 0.15, 0.2, 0.3,
    0.5, so "a" keeps only -0.9 (one of six) while "b" keeps 3.0 and 1.0 (two of four); layer
    scope would keep two of "a" and one of "b". At s = 0.5 the 5 smallest (up to 0.2) take 3
    from "a" and 2 from "b"."""
    m = magnitude_masks(W, 0.7, scope="global")
    np.testing.assert_array_equal(m["a"], [[False, False, False], [False, True, False]])
    np.testing.assert_array_equal(m["b"], [[False, True], [False, True]])
    per_layer = magnitude_masks(W, 0.7)
    assert per_layer["a"].sum() == 2 and per_layer["b"].sum() == 1  # round(4.2), round(2.8)
    m = magnitude_masks(W, 0.5, scope="global")
    assert (~m["a"]).sum() == 3 and (~m["b"]).sum() == 2


def test_structured_rows_by_hand():
    """Row L2 norms: "a" sqrt(.25 + .01 + .09) = 0.592, sqrt(.04 + .81 + .0025) = 0.923;
    "b" sqrt(.0016 + 9) = 3.0003, sqrt(.0225 + 1) = 1.011. Layer scope s = 0.5 drops row 0 of
    "a" and row 1 of "b". Global scope ranks RMS = norm / sqrt(K): "a" 0.342, 0.533;
    "b" 2.122, 0.715; s = 0.5 of 4 rows drops both rows of "a"."""
    m = magnitude_masks(W, 0.5, structured=True)
    np.testing.assert_array_equal(m["a"], [[False] * 3, [True] * 3])
    np.testing.assert_array_equal(m["b"], [[True, True], [False, False]])
    g = magnitude_masks(W, 0.5, scope="global", structured=True)
    assert not g["a"].any() and g["b"].all()


def test_ties_are_broken_by_position():
    m = magnitude_masks({"w": np.array([[1.0, -1.0, 1.0, 1.0]])}, 0.5)
    np.testing.assert_array_equal(m["w"], [[False, False, True, True]])


# -- masks: properties -----------------------------------------------------------------------


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**31 - 1), st.floats(0.0, 0.95), st.sampled_from(["layer", "global"]))
def test_pruned_magnitudes_never_exceed_kept_and_counts_are_exact(seed, s, scope):
    rng = np.random.default_rng(seed)
    w = {"x": rng.normal(size=(5, 7)), "y": 3 * rng.normal(size=(4, 3))}
    m = magnitude_masks(w, s, scope=scope)
    groups = [("x",), ("y",)] if scope == "layer" else [("x", "y")]
    for names in groups:
        kept = np.concatenate([np.abs(w[n][m[n]]) for n in names])
        pruned = np.concatenate([np.abs(w[n][~m[n]]) for n in names])
        total = sum(w[n].size for n in names)
        assert pruned.size == round(s * total)
        if kept.size and pruned.size:
            assert pruned.max() <= kept.min()


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 2**31 - 1), st.booleans())
def test_masks_are_nested_in_sparsity(seed, structured):
    """Monotone: whatever is pruned at sparsity s is also pruned at every s' > s."""
    rng = np.random.default_rng(seed)
    w = {"x": rng.normal(size=(6, 5))}
    prev = np.ones((6, 5), bool)
    for s in (0.0, 0.2, 0.5, 0.8):
        cur = magnitude_masks(w, s, structured=structured)["x"]
        assert np.all(cur <= prev)
        prev = cur


def test_prune_is_idempotent_and_zeroes_exactly():
    model = small()
    masks = magnitude_prune(model, 0.6)
    before = model.state_dict()
    again = magnitude_prune(model, 0.6)
    for k in masks:
        np.testing.assert_array_equal(masks[k], again[k])
        w = prunable_weights(model)[k]
        assert np.all(w[~masks[k]] == 0.0) and np.all(w[masks[k]] != 0.0)
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, before[k])
    report = sparsity_report(model)
    assert set(report["layers"]) == set(masks)
    for frac in report["layers"].values():  # each layer at round(0.6 n) / n
        assert abs(frac - 0.6) < 0.01


def test_sparsity_report_by_hand():
    model = small()
    weights = prunable_weights(model)
    for w in weights.values():
        w[...] = 1.0
    first = next(iter(weights))
    weights[first][0, :4] = 0.0  # 4 zeros in one layer
    r = sparsity_report(model)
    n_first = weights[first].size
    assert r["layers"][first] == 4 / n_first
    assert r["zeros"] == 4 and r["total"] == sum(w.size for w in weights.values())
    assert r["sparsity"] == 4 / r["total"]


def test_bad_input_errors():
    model = small()
    with pytest.raises(ValueError, match=r"sparsity must be in \[0, 1\)"):
        magnitude_prune(model, 1.0)
    with pytest.raises(ValueError, match="sparsity"):
        magnitude_prune(model, -0.1)
    with pytest.raises(TypeError, match="sparsity must be a number"):
        magnitude_prune(model, "0.5")
    with pytest.raises(ValueError, match="scope must be one of"):
        magnitude_prune(model, 0.5, scope="row")
    with pytest.raises(ValueError, match="2-D"):
        magnitude_masks({"v": np.ones(3)}, 0.5)
    name = next(iter(prunable_weights(model)))
    shape = prunable_weights(model)[name].shape
    with pytest.raises(ValueError, match="names no Linear weight"):
        apply_masks(model, {"nope.weight": np.ones(shape, bool)})
    with pytest.raises(ValueError, match="has shape"):
        apply_masks(model, {name: np.ones((1, 1), bool)})
    with pytest.raises(TypeError, match="must be a bool array"):
        apply_masks(model, {name: np.ones(shape)})
    with pytest.raises(TypeError, match="refq Module"):
        sparsity_report(object())
    with pytest.raises(ValueError, match="needs a converted model"):
        sparse_size_bytes(model)
    with pytest.raises(ValueError, match="end > begin"):
        gradual_sparsity(3, 0.5, 10, 10)
    with pytest.raises(ValueError, match="ramp_fraction"):
        prune_and_finetune(model, TASK, 0.5, steps=2, ramp_fraction=0.0)


# -- fine-tuning with the masks kept ------------------------------------------------------------


def fast_cfg(steps):
    return TrainConfig(steps=steps, batch_size=16, lr=3e-3, warmup=2, log_every=steps)


def test_without_masks_training_revives_pruned_weights():
    """The control: prune, then train plainly -- the optimizer moves the zeros. This is what
    prune_and_finetune must prevent (and why the next tests can fail)."""
    model = small()
    masks = magnitude_prune(model, 0.5)
    train(model, TASK, fast_cfg(5))
    weights = prunable_weights(model)
    assert any(np.any(weights[k][~m] != 0.0) for k, m in masks.items())


def test_masked_gradients_alone_keep_zeros_exact():
    """g *= mask inside the step: AdamW's moments of a pruned weight stay 0, its update is
    0 / (0 + eps) = 0 and its weight decay lr * wd * 0 = 0 -- exact zeros without re-masking."""
    model = small()
    masks = magnitude_prune(model, 0.5)
    before = model.state_dict()
    step = masked_step(masks, CrossEntropyLoss(ignore_index=TASK.pad_id))
    train(model, TASK, fast_cfg(5), step_fn=step)
    weights = prunable_weights(model)
    for k, m in masks.items():
        assert np.all(weights[k][~m] == 0.0)
        assert np.any(weights[k][m] != before[k][m])  # the survivors did train


@pytest.mark.parametrize(("scope", "structured", "gradual"),
                         [("layer", False, False), ("global", False, False),
                          ("layer", True, False), ("layer", False, True)])  # fmt: skip
def test_prune_and_finetune_keeps_pruned_weights_exactly_zero(scope, structured, gradual):
    model = small(seed=3)
    masks, hist = prune_and_finetune(model, TASK, 0.7, steps=12, scope=scope,
                                     structured=structured, gradual=gradual, prune_every=3,
                                     lr=3e-3, batch_size=16)  # fmt: skip
    assert np.isfinite(hist[-1]["loss"])
    weights = prunable_weights(model)
    n_pruned = sum(int((~m).sum()) for m in masks.values())
    n_total = sum(m.size for m in masks.values())
    assert abs(n_pruned / n_total - 0.7) < 0.03
    for k, m in masks.items():
        assert np.all(weights[k][~m] == 0.0), k
    assert sparsity_report(model)["sparsity"] >= n_pruned / n_total


def test_gradual_schedule_by_hand():
    """s_t = s_f + (s_i - s_f)(1 - (t - t0)/(n dt))^3 with s_i = 0, s_f = 0.8, t0 = 0,
    n dt = 10: t = 5 -> 0.8 - 0.8 * 0.125 = 0.7; t = 2 -> 0.8 - 0.8 * 0.512 = 0.3904."""
    assert gradual_sparsity(5, 0.8, 0, 10) == pytest.approx(0.7, abs=1e-12)
    assert gradual_sparsity(2, 0.8, 0, 10) == pytest.approx(0.3904, abs=1e-12)
    assert gradual_sparsity(-4, 0.8, 0, 10, initial=0.1) == pytest.approx(0.1, abs=1e-12)
    values = [gradual_sparsity(t, 0.9, 3, 40, initial=0.2) for t in range(50)]
    assert all(b >= a for a, b in zip(values, values[1:], strict=False))  # non-decreasing
    steps = np.diff(values[3:41])
    assert np.all(np.diff(steps) <= 1e-15)  # and decelerating: most weights go early


# -- with quantization -------------------------------------------------------------------------


def test_pruned_zeros_stay_int8_zeros_through_ptq():
    """Symmetric int8: round(0 / s) = 0, so every pruned weight is code 0 after quantize_model,
    and a structured-pruned (all-zero) row quantizes without NaN (scale floored)."""
    model = small(seed=4)
    masks = magnitude_prune(model, 0.5)
    qmodel = quantize_model(model, TASK, get_qconfig(8, 8), n_batches=1, batch_size=16)
    qlayers = {f"{n}.weight": m for n, m in qmodel.named_modules()
               if isinstance(m, QuantizedLinear)}  # fmt: skip
    assert set(qlayers) == set(masks)
    for k, m in masks.items():
        codes = qlayers[k].state["weight"]
        assert codes.dtype == np.int8
        assert np.all(codes[~m] == 0)
    assert sparsity_report(qmodel)["sparsity"] >= sparsity_report(model)["sparsity"]

    rows = small(seed=5)
    rmasks = magnitude_prune(rows, 0.5, structured=True)
    q2 = quantize_model(rows, TASK, get_qconfig(8, 8), n_batches=1, batch_size=16)
    for n, m in q2.named_modules():
        if isinstance(m, QuantizedLinear):
            dead = ~rmasks[f"{n}.weight"].any(axis=1)  # (N,) fully pruned rows
            assert np.all(m.state["weight"][dead] == 0)
            assert np.all(np.isfinite(m.state["weight_scale"]))
    out = q2(*(lambda b: (b.src, b.tgt_in))(TASK.sample(4, np.random.default_rng(0))))
    assert np.all(np.isfinite(out))


def test_sparse_size_by_hand_and_break_even():
    """One 4 x 8 int8 layer with 24 zero codes: dense 32 bytes; sparse = 32 / 8 bitmap bytes +
    8 nonzero codes = 12. The bitmap form wins once more than 1/8 of the codes are zero."""
    model = small(seed=6)
    qmodel = quantize_model(model, TASK, get_qconfig(8, 8), n_batches=1, batch_size=16)
    layers = [m for _, m in qmodel.named_modules() if isinstance(m, QuantizedLinear)]
    codes = layers[0].state["weight"]
    codes[...] = 5
    codes.ravel()[: codes.size * 3 // 4] = 0
    r = sparse_size_bytes(qmodel)
    first = r["layers"][layers[0].name]
    n = codes.size
    assert first["dense_bytes"] == n
    assert first["sparse_bytes"] == -(-n // 8) + (n - n * 3 // 4)
    dense_layers = [v for k, v in r["layers"].items() if k != layers[0].name]
    # an unpruned layer: few codes round to 0, the bitmap only adds 1/8
    assert all(v["sparse_bytes"] > v["dense_bytes"] for v in dense_layers)
    assert r["dense_bytes"] == sum(v["dense_bytes"] for v in r["layers"].values())


def test_pruned_model_sparse_int8_size_and_4bit_fields():
    model = small(seed=7)
    magnitude_prune(model, 0.8)
    q8 = quantize_model(model, TASK, get_qconfig(8, 8), n_batches=1, batch_size=16)
    q4 = quantize_model(model, TASK, get_qconfig(4, 8), n_batches=1, batch_size=16)
    r8, r4 = sparse_size_bytes(q8), sparse_size_bytes(q4)
    n = sparsity_report(q8)["total"]
    assert r8["dense_bytes"] == n and r4["dense_bytes"] == sum(
        -(-v["weights"] // 2) for v in r4["layers"].values()
    )
    # 80% zeros: sparse int8 = n/8 + 0.2 n (about 0.325 n); at least the pruned zeros are zero
    assert r8["sparse_bytes"] <= n // 8 + 0.2 * n + len(r8["layers"]) * 2
    assert r8["ratio"] < 0.35
    assert r4["sparse_bytes"] < r4["dense_bytes"]


@pytest.mark.slow
def test_sparsity_vs_exact_match_after_finetuning():
    """Full effect (slow, about 4 min): the default d_model-64 reverse model pruned to 50% and
    80% (one-shot and gradual), fine-tuned 300 steps, then W8A8 PTQ; prints exact match of each
    against the unpruned float and int8 baselines of the same run. Measured (this test):
    float 1.0, int8 1.0; 50%: no fine-tuning 0.682, fine-tuned 1.0 (int8 1.0); 80%: no
    fine-tuning 0.004, fine-tuned 1.0 one-shot and gradual (int8 1.0); sparse/dense int8 weight
    bytes 0.625 (50%) and 0.325 (80%)."""
    from refq.train.evaluate import evaluate
    from refq.train.trainer import default_configs

    task = get_task("reverse")
    cfg, tcfg = default_configs(task, seed=0)
    base = build_model(cfg)
    train(base, task, tcfg)
    rows = {"float": evaluate(base, task, n=500)["exact_match"]}
    q = quantize_model(base, task, get_qconfig(8, 8))
    rows["float+int8"] = evaluate(q, task, n=500)["exact_match"]
    for s in (0.5, 0.8):
        for gradual in (False, True):
            m = copy.deepcopy(base)
            pruned_only = copy.deepcopy(base)
            magnitude_prune(pruned_only, s)
            masks, _ = prune_and_finetune(m, task, s, steps=300, gradual=gradual, lr=1e-3)
            qm = quantize_model(m, task, get_qconfig(8, 8))
            tag = f"{int(s * 100)}% {'gradual' if gradual else 'one-shot'}"
            rows[f"{tag} no finetune"] = evaluate(pruned_only, task, n=500)["exact_match"]
            rows[f"{tag} finetuned"] = evaluate(m, task, n=500)["exact_match"]
            rows[f"{tag} finetuned+int8"] = evaluate(qm, task, n=500)["exact_match"]
            rows[f"{tag} sparse/dense bytes"] = sparse_size_bytes(qm)["ratio"]
    print({k: round(v, 3) for k, v in rows.items()})
    assert rows["50% one-shot finetuned"] > 0.9 > rows["50% one-shot no finetune"]
    assert rows["80% one-shot finetuned+int8"] > 0.9
    assert rows["80% one-shot sparse/dense bytes"] < 0.35
