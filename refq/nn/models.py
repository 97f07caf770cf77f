"""The three refq models, built from the same blocks.

``Seq2SeqTransformer``: the encoder-decoder of the seed document (Vaswani et al. 2017,
arXiv:1706.03762). ``EncoderClassifier``: encoder + masked mean pooling + linear head (BERT-like).
``DecoderLM``: causal decoder-only language model (GPT-like).

Parameter layout (``state_dict`` keys; every Linear weight is (out, in)), C = d_model, V = vocab,
F = d_ff, L = max_len, i = layer index:

Seq2SeqTransformer
    src_input.embed.weight (V, C)      tgt_input.embed.weight (V_tgt, C)
    src_input.pos.weight, tgt_input.pos.weight (L, C)   [only with positional="learned"]
    encoder.layers.i.self_attn.{q,k,v,out}_proj.{weight (C, C), bias (C,)}
    encoder.layers.i.ff.fc1.{weight (F, C), bias (F,)}
    encoder.layers.i.ff.fc2.{weight (C, F), bias (C,)}
    encoder.layers.i.norm{1,2}.{weight, bias} (C,)   encoder.norm.{weight, bias} [pre-LN only]
    decoder.layers.i.self_attn.*, decoder.layers.i.cross_attn.* (as above)
    decoder.layers.i.ff.*, decoder.layers.i.norm{1,2,3}.*, decoder.norm.* [pre-LN only]
    lm_head.{weight (V_tgt, C), bias (V_tgt,)}
EncoderClassifier: src_input.*, encoder.* as above, head.{weight (n_classes, C), bias}
DecoderLM: src_input.*, blocks.layers.i.* (EncoderLayer with a causal mask), blocks.norm [pre-LN],
    lm_head.{weight (V, C), bias}

Quantizable matmuls (``Linear`` and ``MatMul`` modules), per attention block ``A``:
``A.q_proj``, ``A.k_proj``, ``A.v_proj``, ``A.out_proj`` (Linear (B,T,C)->(B,T,C)),
``A.qk_matmul`` ((B,nh,Tq,hs) @ (B,nh,hs,Tk)), ``A.pv_matmul`` ((B,nh,Tq,Tk) @ (B,nh,Tk,hs));
per feed-forward ``F``: ``F.fc1``, ``F.fc2``; and the head (``lm_head`` or ``head``).
List them with ``quantizable_modules(model)``.

Embeddings are scaled by sqrt(C) (paper section 3.4) and initialised N(0, 1/C).

Loading weights from PyTorch: ``nn.Linear`` weights are already (out, in); the packed
``nn.MultiheadAttention.in_proj_weight`` (3C, C) splits into q_proj, k_proj, v_proj (rows
[0:C], [C:2C], [2C:3C]), ``out_proj`` maps directly; LayerNorm weight/bias map to norm*.
Then ``model.load_state_dict(plain_dict)`` (tests/test_nn_reference.py does this against an
independent NumPy forward written from the paper's equations).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from refq.nn._checks import check_tokens
from refq.nn.activations import Dropout
from refq.nn.attention import causal_mask, padding_mask
from refq.nn.blocks import TransformerDecoder, TransformerEncoder
from refq.nn.config import TransformerConfig
from refq.nn.embedding import Embedding
from refq.nn.linear import Linear, MatMul
from refq.nn.module import Module
from refq.nn.positional import LearnedPositionalEmbedding, SinusoidalPositionalEncoding


def quantizable_modules(model: Module) -> Iterator[tuple[str, Module]]:
    """Yield ``(dotted_name, module)`` for every ``Linear`` and ``MatMul`` in ``model``."""
    for name, m in model.named_modules():
        if isinstance(m, (Linear, MatMul)):
            yield name, m


class _TokenInput(Module):
    """Embedding * sqrt(C) + positional encoding, then dropout: ids (B, T) -> (B, T, C)."""

    def __init__(self, vocab: int, cfg: TransformerConfig, rng: np.random.Generator) -> None:
        super().__init__()
        c = cfg.d_model
        self.scale = float(np.sqrt(c))
        self.embed = Embedding(vocab, c, rng=rng, init_std=c**-0.5)
        if cfg.positional == "learned":
            self.pos = LearnedPositionalEmbedding(cfg.max_len, c, rng=rng)
        else:
            self.pos = SinusoidalPositionalEncoding(cfg.max_len, c)
        self.drop = Dropout(cfg.dropout, seed=int(rng.integers(2**31)))
        self.max_len = cfg.max_len

    def forward(self, ids: np.ndarray) -> np.ndarray:
        check_tokens(ids, self.embed.num_embeddings, "token input")
        if ids.ndim != 2:
            raise ValueError(f"token ids must have shape (B, T), got {ids.shape}")
        if ids.shape[1] > self.max_len:
            raise ValueError(
                f"sequence length {ids.shape[1]} exceeds the positional table "
                f"max_len={self.max_len}"
            )
        return self.drop(self.pos(self.embed(ids) * self.scale))  # (B, T) -> (B, T, C)

    def backward(self, dout: np.ndarray) -> None:
        self.embed.backward(self.pos.backward(self.drop.backward(dout)) * self.scale)


class Seq2SeqTransformer(Module):
    """Encoder-decoder Transformer: logits = lm_head(Decoder(tgt_in, Encoder(src))).

    forward(src (B, S) int, tgt_in (B, T) int) -> logits (B, T, V_tgt). Masks: the encoder and
    cross-attention ignore pad keys of ``src``; the decoder self-attention is causal and ignores
    pad keys of ``tgt_in``. backward(dlogits) accumulates every parameter gradient (returns None,
    the inputs are integers). ``encode``/``decode`` split the forward pass for greedy decoding.

    >>> cfg = TransformerConfig(vocab_size=7, d_model=8, n_heads=2, d_ff=16, max_len=10)
    >>> m = Seq2SeqTransformer(cfg)
    >>> m(np.array([[3, 4, 5, 0]]), np.array([[1, 5, 4]])).shape
    (1, 3, 7)
    """

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        cfg = config.validate()
        self.config = cfg
        rng = np.random.default_rng(cfg.seed)
        v_tgt = cfg.tgt_vocab_size or cfg.vocab_size
        args = (cfg.d_model, cfg.n_heads, cfg.d_ff, cfg.dropout, cfg.activation, cfg.norm_first)
        self.src_input = _TokenInput(cfg.vocab_size, cfg, rng)
        self.tgt_input = _TokenInput(v_tgt, cfg, rng)
        self.encoder = TransformerEncoder(cfg.n_encoder_layers, *args, rng=rng)
        self.decoder = TransformerDecoder(cfg.n_decoder_layers, *args, rng=rng)
        self.lm_head = Linear(cfg.d_model, v_tgt, rng=rng)

    def encode(self, src: np.ndarray) -> np.ndarray:
        """src (B, S) -> memory (B, S, C)."""
        return self.encoder(self.src_input(src), padding_mask(src, self.config.pad_id))

    def decode(self, tgt_in: np.ndarray, memory: np.ndarray, src: np.ndarray) -> np.ndarray:
        """tgt_in (B, T), memory (B, S, C), src (B, S) (for its pad mask) -> logits (B, T, V)."""
        if tgt_in.ndim != 2 or tgt_in.shape[0] != src.shape[0]:
            raise ValueError(f"tgt_in must be (B, T) with B={src.shape[0]}, got {tgt_in.shape}")
        pad = self.config.pad_id
        self_mask = causal_mask(tgt_in.shape[1]) & padding_mask(tgt_in, pad)  # (B, 1, T, T)
        h = self.decoder(self.tgt_input(tgt_in), memory, self_mask, padding_mask(src, pad))
        return self.lm_head(h)  # (B, T, C) -> (B, T, V)

    def forward(self, src: np.ndarray, tgt_in: np.ndarray) -> np.ndarray:
        return self.decode(tgt_in, self.encode(src), src)

    def backward(self, dlogits: np.ndarray) -> None:
        d, dmem = self.decoder.backward(self.lm_head.backward(dlogits))
        self.tgt_input.backward(d)
        self.src_input.backward(self.encoder.backward(dmem))


class EncoderClassifier(Module):
    """Encoder + masked mean pooling + linear head: logits = head(sum_t m_t h_t / sum_t m_t),
    m_t = 1 at non-pad tokens. forward(src (B, S) int) -> logits (B, n_classes).
    Backward of the pooling: dh_t = m_t * dpooled / sum_t m_t.

    >>> cfg = TransformerConfig(kind="classifier", vocab_size=6, n_classes=3, d_model=8,
    ...                         n_heads=2, d_ff=16, max_len=10)
    >>> EncoderClassifier(cfg)(np.array([[2, 3, 0], [4, 4, 4]])).shape
    (2, 3)
    """

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        cfg = config.validate()
        self.config = cfg
        rng = np.random.default_rng(cfg.seed)
        args = (cfg.d_model, cfg.n_heads, cfg.d_ff, cfg.dropout, cfg.activation, cfg.norm_first)
        self.src_input = _TokenInput(cfg.vocab_size, cfg, rng)
        self.encoder = TransformerEncoder(cfg.n_encoder_layers, *args, rng=rng)
        self.head = Linear(cfg.d_model, cfg.n_classes, rng=rng)
        self._pool: tuple[np.ndarray, np.ndarray] | None = None

    def forward(self, src: np.ndarray) -> np.ndarray:
        h = self.encoder(self.src_input(src), padding_mask(src, self.config.pad_id))  # (B,S,C)
        m = (src != self.config.pad_id)[:, :, None].astype(h.dtype)  # (B, S, 1)
        count = np.maximum(m.sum(axis=1), 1.0)  # (B, 1)
        self._pool = (m, count)
        return self.head((h * m).sum(axis=1) / count)  # (B, S, C) -> (B, C) -> (B, n_classes)

    def backward(self, dlogits: np.ndarray) -> None:
        m, count = self._pool
        dpooled = self.head.backward(dlogits)  # (B, C)
        dh = (dpooled / count)[:, None, :] * m  # (B, 1, C) * (B, S, 1) -> (B, S, C)
        self.src_input.backward(self.encoder.backward(dh))


class DecoderLM(Module):
    """Decoder-only causal language model: logits = lm_head(Blocks(embed(x) + pos)), each block an
    ``EncoderLayer`` under a causal (and key-padding) mask. forward(tokens (B, T) int) ->
    logits (B, T, V), logits[:, t] predicting token t + 1.

    >>> cfg = TransformerConfig(kind="lm", vocab_size=5, d_model=8, n_heads=2, d_ff=16, max_len=6)
    >>> DecoderLM(cfg)(np.array([[1, 2, 3]])).shape
    (1, 3, 5)
    """

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        cfg = config.validate()
        self.config = cfg
        rng = np.random.default_rng(cfg.seed)
        args = (cfg.d_model, cfg.n_heads, cfg.d_ff, cfg.dropout, cfg.activation, cfg.norm_first)
        self.src_input = _TokenInput(cfg.vocab_size, cfg, rng)
        self.blocks = TransformerEncoder(cfg.n_decoder_layers, *args, rng=rng)
        self.lm_head = Linear(cfg.d_model, cfg.vocab_size, rng=rng)

    def forward(self, tokens: np.ndarray) -> np.ndarray:
        mask = causal_mask(tokens.shape[-1]) & padding_mask(tokens, self.config.pad_id)
        return self.lm_head(self.blocks(self.src_input(tokens), mask))  # (B, T) -> (B, T, V)

    def backward(self, dlogits: np.ndarray) -> None:
        self.src_input.backward(self.blocks.backward(self.lm_head.backward(dlogits)))


MODELS = {"seq2seq": Seq2SeqTransformer, "classifier": EncoderClassifier, "lm": DecoderLM}


def build_model(config: TransformerConfig) -> Module:
    """Build the model named by ``config.kind`` (float32, weights from ``config.seed``)."""
    config.validate()
    return MODELS[config.kind](config)
