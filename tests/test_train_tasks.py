"""Built-in tasks: hand-checked examples, held-out disjointness, determinism, batching."""

from __future__ import annotations

import numpy as np
import pytest

from refq.train.tasks import BOS, EOS, PAD, TASKS, get_task, in_test_split


def _text(task, ids):
    return task.decode(ids)


def test_reverse_sort_addition_targets_are_right():
    rng = np.random.default_rng(0)
    for name, rule in [
        ("reverse", lambda s: s[::-1]),
        ("sort", lambda s: sorted(s)),
    ]:
        t = get_task(name)
        b = t.sample(200, rng)
        for src, out in zip(b.src, b.tgt_out, strict=True):
            s = [int(c) for c in _text(t, src).split()]
            assert [int(c) for c in _text(t, out).split()] == list(rule(s))
    t = get_task("addition", digits=3)
    b = t.sample(300, rng)
    for src, out in zip(b.src, b.tgt_out, strict=True):
        a, c = _text(t, src).replace(" ", "").split("+")
        assert int(_text(t, out).replace(" ", "")) == int(a) + int(c)
        assert len(_text(t, out).split()) == 4  # zero-padded to digits + 1


def test_teacher_forcing_layout_by_hand():
    t = get_task("reverse", min_len=2, max_len=4)
    src = t.encode("3 1 4")
    assert src.tolist() == [6, 4, 7]
    b = t.sample(50, np.random.default_rng(1))
    for tin, tout in zip(b.tgt_in, b.tgt_out, strict=True):
        n = int((tout != PAD).sum())  # tokens + <eos>
        assert tout[n - 1] == EOS and tin[0] == BOS
        np.testing.assert_array_equal(tin[1:n], tout[: n - 1])
        assert np.all(tin[n:] == PAD) and EOS not in tin


def test_majority_labels_and_no_ties():
    t = get_task("majority")
    b = t.sample(300, np.random.default_rng(2))
    for src, lab in zip(b.src, b.labels, strict=True):
        syms = _text(t, src).split()
        counts = [syms.count(c) for c in t.class_names]
        assert counts.count(max(counts)) == 1
        assert t.class_names[lab] == max(t.class_names, key=syms.count)


@pytest.mark.parametrize("name", sorted(TASKS))
def test_heldout_never_in_training_batches(name):
    t = get_task(name)
    held = t.heldout(300)
    assert in_test_split(held.src).all()
    held_set = {tuple(r) for r in held.src.tolist()}
    for b in t.batches(256, 8, seed=3):
        assert not in_test_split(b.src).any()
        assert not ({tuple(r) for r in b.src.tolist()} & held_set)


@pytest.mark.parametrize("name", sorted(TASKS))
def test_batches_are_deterministic(name):
    t = get_task(name)
    a = list(t.batches(16, 3, seed=5))
    b = list(t.batches(16, 3, seed=5))
    c = list(t.batches(16, 3, seed=6))
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x.src, y.src)
    assert not np.array_equal(a[0].src, c[0].src)
    assert all(len(x) == 16 and x.src.dtype == np.int64 for x in a)


def test_task_errors():
    with pytest.raises(ValueError, match="unknown task"):
        get_task("translate")
    with pytest.raises(ValueError, match="bad parameters"):
        get_task("reverse", digits=3)
    with pytest.raises(ValueError, match="min_len"):
        get_task("reverse", min_len=5, max_len=2)
    with pytest.raises(ValueError, match="not in the reverse vocabulary"):
        get_task("reverse").encode("1 x")
    with pytest.raises(ValueError, match="split"):
        get_task("sort").sample(3, np.random.default_rng(0), split="dev")
