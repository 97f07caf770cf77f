"""refq.nn: a from-scratch NumPy Transformer with explicit backward passes.

Every layer is a ``Module`` (``module.py``) with ``forward`` (stores its cache) and
``backward(dout)`` (returns input gradients, accumulates ``grads``). Every quantizable matmul
is a ``Linear`` or a ``MatMul`` module, reachable by a stable dotted name (see ``models.py``
for the full layout) and replaceable with ``Module.set_submodule`` without editing model code.
"""

from refq.nn.activations import GELU, Dropout, ReLU, Softmax
from refq.nn.attention import MultiHeadAttention, causal_mask, padding_mask
from refq.nn.blocks import DecoderLayer, EncoderLayer, TransformerDecoder, TransformerEncoder
from refq.nn.config import TransformerConfig
from refq.nn.embedding import Embedding
from refq.nn.feedforward import FeedForward
from refq.nn.layernorm import LayerNorm
from refq.nn.linear import Linear, MatMul
from refq.nn.loss import CrossEntropyLoss
from refq.nn.models import (
    DecoderLM,
    EncoderClassifier,
    Seq2SeqTransformer,
    build_model,
    quantizable_modules,
)
from refq.nn.module import Module, ModuleList
from refq.nn.positional import LearnedPositionalEmbedding, SinusoidalPositionalEncoding

__all__ = [
    "GELU",
    "CrossEntropyLoss",
    "DecoderLM",
    "DecoderLayer",
    "Dropout",
    "Embedding",
    "EncoderClassifier",
    "EncoderLayer",
    "FeedForward",
    "LayerNorm",
    "LearnedPositionalEmbedding",
    "Linear",
    "MatMul",
    "Module",
    "ModuleList",
    "MultiHeadAttention",
    "ReLU",
    "Seq2SeqTransformer",
    "SinusoidalPositionalEncoding",
    "Softmax",
    "TransformerConfig",
    "TransformerDecoder",
    "TransformerEncoder",
    "build_model",
    "causal_mask",
    "padding_mask",
    "quantizable_modules",
]
