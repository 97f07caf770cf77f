"""Small shared builders for the PTQ/QAT tests (random-weight models; no training)."""

from __future__ import annotations

from refq.nn.config import TransformerConfig
from refq.nn.models import Seq2SeqTransformer


def tiny_seq2seq(task, d_model: int = 32, d_ff: int = 64, n_heads: int = 4, seed: int = 0):
    """A one-layer encoder-decoder for ``task`` in eval mode (random weights from ``seed``)."""
    cfg = TransformerConfig(vocab_size=task.vocab_size, d_model=d_model, n_heads=n_heads,
                            d_ff=d_ff, n_encoder_layers=1, n_decoder_layers=1, max_len=16,
                            seed=seed)  # fmt: skip
    return Seq2SeqTransformer(cfg).eval()
