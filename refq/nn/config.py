"""``TransformerConfig``: every size and option of the three refq models, JSON-serialisable."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

KINDS = ("seq2seq", "classifier", "lm")


@dataclass
class TransformerConfig:
    """Configuration of ``Seq2SeqTransformer`` (kind "seq2seq"), ``EncoderClassifier``
    ("classifier") and ``DecoderLM`` ("lm").

    vocab_size: source (and, unless ``tgt_vocab_size`` is set, target) vocabulary size.
    n_classes: classifier outputs. d_model = C, n_heads = nh (C % nh == 0), d_ff: FFN width.
    n_encoder_layers / n_decoder_layers: stack depths (the LM uses n_decoder_layers, the
    classifier n_encoder_layers). max_len: the positional table length (longer inputs raise).
    norm_first: pre-LN if True, post-LN (the paper) if False. activation: "relu" | "gelu".
    positional: "sinusoidal" | "learned". pad_id: the padding token (masked everywhere).
    seed: initialisation seed (same seed, bit-identical weights).

    >>> TransformerConfig(d_model=30, n_heads=4).validate()
    Traceback (most recent call last):
    ...
    ValueError: d_model=30 must be divisible by n_heads=4
    """

    kind: str = "seq2seq"
    vocab_size: int = 16
    tgt_vocab_size: int | None = None
    n_classes: int = 0
    d_model: int = 64
    n_heads: int = 4
    n_encoder_layers: int = 2
    n_decoder_layers: int = 2
    d_ff: int = 256
    dropout: float = 0.0
    max_len: int = 64
    norm_first: bool = False
    activation: str = "relu"
    positional: str = "sinusoidal"
    pad_id: int = 0
    seed: int = 0

    def validate(self) -> TransformerConfig:
        if self.kind not in KINDS:
            raise ValueError(f"unknown model kind {self.kind!r}; choose from {KINDS}")
        for name in ("vocab_size", "d_model", "n_heads", "d_ff", "max_len"):
            if int(getattr(self, name)) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model={self.d_model} must be divisible by n_heads={self.n_heads}")
        if self.kind == "classifier" and self.n_classes < 2:
            raise ValueError(f"a classifier needs n_classes >= 2, got {self.n_classes}")
        if self.activation not in ("relu", "gelu"):
            raise ValueError(f"activation must be 'relu' or 'gelu', got {self.activation!r}")
        if self.positional not in ("sinusoidal", "learned"):
            raise ValueError(
                f"positional must be 'sinusoidal' or 'learned', got {self.positional!r}"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if not 0 <= self.pad_id < self.vocab_size:
            raise ValueError(f"pad_id={self.pad_id} outside the vocabulary [0, {self.vocab_size})")
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TransformerConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown TransformerConfig keys: {unknown}")
        return cls(**d).validate()
