"""Greedy and beam decoding against scripted models whose probabilities are known by hand."""

from __future__ import annotations

import numpy as np
import pytest

from refq.train.decoding import beam_search, greedy_decode
from refq.train.tasks import EOS, PAD

V = 5  # tokens: 0 pad, 1 bos, 2 eos, 3, 4


class Scripted:
    """decode() returns log-probabilities chosen from the prefix (a tiny known language model)."""

    def __init__(self, table):
        self.table = table  # prefix tuple (without bos) -> probabilities over V

    def encode(self, src):
        return np.zeros((src.shape[0], 1, 1))

    def decode(self, tgt_in, memory, src):
        out = np.zeros((tgt_in.shape[0], tgt_in.shape[1], V))
        for i, row in enumerate(tgt_in):
            probs = self.table.get(tuple(int(t) for t in row[1:]), [0, 0, 1, 0, 0])
            out[i, -1] = np.log(np.maximum(probs, 1e-30))
        return out


# greedy takes 3 (p=.6) then is stuck with .5 * ... ; the best full sequence is "4 eos" (.4 * 1)
TABLE = {
    (): [0, 0, 0, 0.6, 0.4],
    (3,): [0, 0, 0.5, 0.5, 0],
    (3, 3): [0, 0, 1.0, 0, 0],
    (4,): [0, 0, 1.0, 0, 0],
}


def test_greedy_by_hand():
    out = greedy_decode(Scripted(TABLE), np.zeros((1, 2), int), max_len=5)
    # argmax ties (.5/.5 after "3") go to the lower id: eos (2)
    assert out.tolist() == [[3, EOS, PAD, PAD, PAD]]


def test_beam_finds_the_more_probable_sequence():
    out = beam_search(Scripted(TABLE), np.zeros((1, 2), int), max_len=5, beam=2)
    # candidates: "3 eos" .6*.5=.30, "3 3 eos" .30, "4 eos" .40 -> "4 eos"
    assert out.tolist() == [[4, EOS, PAD, PAD, PAD]]


def test_beam_one_equals_greedy_on_a_real_model():
    from refq.nn import TransformerConfig, build_model

    m = build_model(TransformerConfig(vocab_size=7, d_model=8, n_heads=2, d_ff=16, max_len=8))
    src = np.random.default_rng(0).integers(3, 7, size=(6, 5))
    np.testing.assert_array_equal(greedy_decode(m, src, 6), beam_search(m, src, 6, beam=1))


def test_decoding_errors():
    with pytest.raises(ValueError, match="max_len"):
        greedy_decode(Scripted(TABLE), np.zeros((1, 2), int), max_len=0)
    with pytest.raises(ValueError, match="beam"):
        beam_search(Scripted(TABLE), np.zeros((1, 2), int), max_len=3, beam=0)
