"""Training: smoke run (loss decreases), determinism, NaN detection; slow accuracy targets."""

from __future__ import annotations

import time

import numpy as np
import pytest

from refq.nn import TransformerConfig, build_model
from refq.train.evaluate import evaluate
from refq.train.tasks import get_task
from refq.train.trainer import TrainConfig, TrainingDiverged, default_configs, train, train_task

TINY = dict(d_model=16, n_heads=2, d_ff=32, n_encoder_layers=1, n_decoder_layers=1)


def _tiny(task, seed=0, **kw):
    cfg = TransformerConfig(vocab_size=task.vocab_size, max_len=16, seed=seed, **TINY, **kw)
    return build_model(cfg)


def test_smoke_loss_decreases_seq2seq():
    task = get_task("reverse", min_len=2, max_len=5)
    model = _tiny(task)
    hist = train(model, task, TrainConfig(steps=60, batch_size=32, lr=3e-3, warmup=5, log_every=20))
    assert [h["step"] for h in hist] == [20, 40, 60]
    assert hist[-1]["loss"] < 0.8 * hist[0]["loss"]
    assert not model.training  # left in eval mode


def test_smoke_classifier():
    task = get_task("majority")
    model = _tiny(task, kind="classifier", n_classes=task.n_classes)
    hist = train(model, task, TrainConfig(steps=40, batch_size=32, lr=3e-3, warmup=5, log_every=20))
    assert hist[-1]["loss"] < hist[0]["loss"]
    m = evaluate(model, task, n=200)
    assert set(m) == {"token_accuracy", "exact_match", "precision", "recall", "f1"}
    assert all(0.0 <= v <= 1.0 for v in m.values())


def test_same_seed_bit_identical_weights_after_training():
    task = get_task("sort", min_len=2, max_len=5)
    runs = []
    for _ in range(2):
        model = _tiny(task, seed=3, dropout=0.1)
        train(model, task, TrainConfig(steps=8, batch_size=16, seed=3, log_every=4))
        runs.append(model.state_dict())
    assert all(np.array_equal(runs[0][k], runs[1][k]) for k in runs[0])


def test_nan_loss_stops_with_the_step():
    task = get_task("reverse", min_len=2, max_len=5)
    model = _tiny(task)
    calls = {"n": 0}
    original = model.forward

    def poisoned(src, tgt_in):
        calls["n"] += 1
        out = original(src, tgt_in)
        return out * np.nan if calls["n"] == 3 else out

    model.forward = poisoned
    with pytest.raises(TrainingDiverged, match="diverged at step 3: loss is nan"):
        train(model, task, TrainConfig(steps=10, batch_size=8, log_every=5))


def test_on_step_hook_runs_before_each_step():
    task = get_task("reverse", min_len=2, max_len=4)
    seen = []
    train(_tiny(task), task, TrainConfig(steps=3, batch_size=4, log_every=3), on_step=seen.append)
    assert seen == [1, 2, 3]


def test_default_configs_fit_tasks():
    for name in ("reverse", "sort", "addition", "majority"):
        task = get_task(name)
        cfg, tcfg = default_configs(task, seed=1, steps=7)
        assert cfg.max_len >= max(task.max_src_len, task.max_tgt_len)
        assert tcfg.steps == 7 and tcfg.seed == 1 and cfg.seed == 1
        assert (cfg.kind == "classifier") == (task.kind == "classification")


def _target(name, min_exact):
    task = get_task(name)
    t0 = time.perf_counter()
    model, _, tcfg, _ = train_task(task, seed=0)
    seconds = time.perf_counter() - t0
    m = evaluate(model, task, n=1000)
    print(f"{name}: {tcfg.steps} steps in {seconds:.0f}s -> {m}")
    assert m["exact_match"] >= min_exact, m


@pytest.mark.slow
def test_reverse_reaches_99_percent():
    _target("reverse", 0.99)


@pytest.mark.slow
def test_addition_reaches_95_percent():
    _target("addition", 0.95)


@pytest.mark.slow
def test_sort_and_majority_train_well():
    _target("sort", 0.95)
    _target("majority", 0.95)


def test_decoder_only_lm_on_a_seq2seq_task_smoke():
    task = get_task("reverse", min_len=2, max_len=4)
    cfg, tcfg = default_configs(
        task,
        model_overrides=dict(kind="lm", **TINY),
        steps=40,
        batch_size=32,
        lr=3e-3,
        warmup=5,
        log_every=20,
    )
    assert cfg.max_len == task.max_src_len + 1 + task.max_tgt_len
    model = build_model(cfg)
    hist = train(model, task, tcfg)
    assert hist[-1]["loss"] < hist[0]["loss"]
    m = evaluate(model, task, n=50)  # greedy decoding from the prompt [src <bos>]
    assert all(0.0 <= v <= 1.0 for v in m.values())
    with pytest.raises(ValueError, match="needs a seq2seq task"):
        default_configs(get_task("majority"), model_overrides={"kind": "lm"})


def test_classification_loss_counts_class_zero():
    """Class 0 shares its id with <pad>; the classification loss must not ignore it."""
    task = get_task("majority")
    model = _tiny(task, kind="classifier", n_classes=task.n_classes)
    batch = next(task.batches(16, 1, seed=0))
    assert (batch.labels == 0).any()
    from refq.nn import CrossEntropyLoss

    expected = CrossEntropyLoss(ignore_index=None)(model(batch.src), batch.labels)
    hist = train(model, task, TrainConfig(steps=1, batch_size=16, log_every=1))
    assert hist[0]["loss"] == pytest.approx(expected, rel=1e-6)


def test_step_fn_replaces_the_loss_and_backward():
    """A custom step function is what the optimizer follows (here: only the lm_head bias moves)."""
    import numpy as np

    from refq.nn import TransformerConfig, build_model
    from refq.train.tasks import get_task
    from refq.train.trainer import TrainConfig, train

    task = get_task("reverse", min_len=3, max_len=4)
    cfg = TransformerConfig(vocab_size=task.vocab_size, d_model=8, n_heads=2, d_ff=16,
                            n_encoder_layers=1, n_decoder_layers=1, max_len=8)  # fmt: skip
    model = build_model(cfg)
    before = model.state_dict()
    calls = []

    def step_fn(m, batch):
        calls.append(len(batch))
        m.get_submodule("lm_head").grads["bias"][...] = 1.0
        return 0.5

    hist = train(model, task, TrainConfig(steps=3, batch_size=4, lr=0.1, warmup=0, log_every=1,
                                          weight_decay=0.0), step_fn=step_fn)  # fmt: skip
    after = model.state_dict()
    assert calls == [4, 4, 4] and [h["loss"] for h in hist] == [0.5, 0.5, 0.5]
    changed = [k for k in before if not np.array_equal(before[k], after[k])]
    assert changed == ["lm_head.bias"]
