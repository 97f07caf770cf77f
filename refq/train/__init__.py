"""refq.train: built-in tasks, training loop, decoding, metrics, evaluation and checkpoints."""

from refq.train.checkpoint import load_checkpoint, register_loader, save_checkpoint
from refq.train.decoding import beam_search, greedy_decode, lm_greedy_decode
from refq.train.evaluate import evaluate, predict
from refq.train.metrics import classification_metrics, macro_prf, sequence_metrics
from refq.train.optim import AdamW, clip_grad_norm, warmup_cosine
from refq.train.tasks import TASKS, Batch, Task, get_task, lm_sequences
from refq.train.trainer import TrainConfig, TrainingDiverged, default_configs, train, train_task

__all__ = [
    "TASKS",
    "AdamW",
    "Batch",
    "Task",
    "TrainConfig",
    "TrainingDiverged",
    "beam_search",
    "classification_metrics",
    "clip_grad_norm",
    "default_configs",
    "evaluate",
    "get_task",
    "greedy_decode",
    "lm_greedy_decode",
    "lm_sequences",
    "load_checkpoint",
    "macro_prf",
    "predict",
    "register_loader",
    "save_checkpoint",
    "sequence_metrics",
    "train",
    "train_task",
    "warmup_cosine",
]
