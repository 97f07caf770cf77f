"""Autoregressive decoding for the encoder-decoder model: greedy and beam search.

Any model with ``encode(src) -> memory`` and ``decode(tgt_in, memory, src) -> logits`` works
(a PTQ/QAT-converted model keeps both, since only its submodules change). Each step re-runs the
decoder on the whole prefix (no key/value cache): simple, and cheap for refq's short sequences.
"""

from __future__ import annotations

import numpy as np

from refq.train.tasks import BOS, EOS, PAD


def greedy_decode(
    model, src: np.ndarray, max_len: int, bos_id: int = BOS, eos_id: int = EOS, pad_id: int = PAD
) -> np.ndarray:
    """y_t = argmax_v p(v | y_<t, src), from y_0 = <bos>, until <eos> or ``max_len`` tokens.

    Returns (B, max_len) int64 tokens without the <bos>; after a row's <eos>, ``pad_id``.
    Ties in argmax go to the lowest token id (``np.argmax``).

    >>> from refq.nn import TransformerConfig, build_model
    >>> m = build_model(TransformerConfig(vocab_size=6, d_model=8, n_heads=2, d_ff=16))
    >>> out = greedy_decode(m, np.array([[3, 4, 5], [5, 0, 0]]), max_len=4)
    >>> out.shape, out.dtype
    ((2, 4), dtype('int64'))
    """
    if max_len <= 0:
        raise ValueError(f"max_len must be positive, got {max_len}")
    b = src.shape[0]
    memory = model.encode(src)  # (B, S, C)
    ys = np.full((b, 1), bos_id, dtype=np.int64)  # (B, 1)
    done = np.zeros(b, dtype=bool)
    out = np.full((b, max_len), pad_id, dtype=np.int64)
    for t in range(max_len):
        logits = model.decode(ys, memory, src)  # (B, t+1, V)
        nxt = logits[:, -1].argmax(axis=-1)  # (B,)
        nxt = np.where(done, pad_id, nxt)
        out[:, t] = nxt
        done |= nxt == eos_id
        if done.all():
            break
        ys = np.concatenate([ys, nxt[:, None]], axis=1)  # (B, t+1) -> (B, t+2)
    return out


def lm_greedy_decode(
    model, src: np.ndarray, max_len: int, bos_id: int = BOS, eos_id: int = EOS, pad_id: int = PAD
) -> np.ndarray:
    """Greedy decoding for a decoder-only LM prompted with [src | <bos>] (see
    ``refq.train.tasks.lm_sequences``): y_t = argmax p(v | src, <bos>, y_<t). Needs only
    ``model(tokens (B, L)) -> logits (B, L, V)``. Returns (B, max_len) like ``greedy_decode``.

    >>> from refq.nn import TransformerConfig, build_model
    >>> m = build_model(TransformerConfig(kind="lm", vocab_size=6, d_model=8, n_heads=2, d_ff=16))
    >>> lm_greedy_decode(m, np.array([[3, 4]]), max_len=3).shape
    (1, 3)
    """
    if max_len <= 0:
        raise ValueError(f"max_len must be positive, got {max_len}")
    b = src.shape[0]
    ys = np.concatenate([src, np.full((b, 1), bos_id, dtype=np.int64)], axis=1)  # (B, S + 1)
    done = np.zeros(b, dtype=bool)
    out = np.full((b, max_len), pad_id, dtype=np.int64)
    for t in range(max_len):
        nxt = model(ys)[:, -1].argmax(axis=-1)  # (B, L, V) -> (B,)
        nxt = np.where(done, pad_id, nxt)
        out[:, t] = nxt
        done |= nxt == eos_id
        if done.all():
            break
        ys = np.concatenate([ys, nxt[:, None]], axis=1)  # (B, L) -> (B, L + 1)
    return out


def beam_search(
    model,
    src: np.ndarray,
    max_len: int,
    beam: int = 4,
    bos_id: int = BOS,
    eos_id: int = EOS,
    pad_id: int = PAD,
) -> np.ndarray:
    """Beam search: keep the ``beam`` prefixes of highest sum_t log p(y_t | y_<t, src); a beam
    that emitted <eos> is frozen (extends only with <pad> at log-prob 0). No length penalty.
    Returns (B, max_len) like ``greedy_decode``. With beam=1 it equals greedy decoding.
    """
    if beam < 1:
        raise ValueError(f"beam must be >= 1, got {beam}")
    b = src.shape[0]
    src_k = np.repeat(src, beam, axis=0)  # (B*K, S)
    memory = model.encode(src_k)  # (B*K, S, C)
    ys = np.full((b * beam, 1), bos_id, dtype=np.int64)
    score = np.full((b, beam), -np.inf)
    score[:, 0] = 0.0  # only one live beam at the start
    done = np.zeros((b, beam), dtype=bool)
    for _ in range(max_len):
        logits = model.decode(ys, memory, src_k)[:, -1].astype(np.float64)  # (B*K, V)
        v = logits.shape[-1]
        logp = logits - logits.max(-1, keepdims=True)
        logp -= np.log(np.exp(logp).sum(-1, keepdims=True))
        logp = logp.reshape(b, beam, v)  # (B*K, V) -> (B, K, V)
        frozen = np.full(v, -np.inf)
        frozen[pad_id] = 0.0
        logp = np.where(done[:, :, None], frozen, logp)
        cand = (score[:, :, None] + logp).reshape(b, beam * v)  # (B, K*V)
        top = np.argsort(-cand, axis=1, kind="stable")[:, :beam]  # (B, K)
        parent, token = top // v, top % v
        score = np.take_along_axis(cand, top, axis=1)
        rows = (np.arange(b)[:, None] * beam + parent).reshape(-1)  # (B*K,)
        ys = np.concatenate([ys[rows], token.reshape(-1, 1)], axis=1)
        done = np.take_along_axis(done, parent, axis=1) | (token == eos_id)
        if done.all():
            break
    best = score.argmax(axis=1)  # (B,)
    seqs = ys.reshape(b, beam, -1)[np.arange(b), best, 1:]  # drop <bos>
    out = np.full((b, max_len), pad_id, dtype=np.int64)
    out[:, : seqs.shape[1]] = seqs
    return out
