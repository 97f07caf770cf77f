"""Float checkpoints: one ``.npz`` with the weights and a JSON metadata string, no pickle.

File layout (``np.savez``; loaded with ``allow_pickle=False``):
    "<dotted param name>"  float32 arrays, exactly ``model.state_dict()``
    "__meta__"             0-d unicode array holding JSON:
        {"format": "refq-checkpoint", "version": 1, "kind": "float",
         "config": TransformerConfig fields, "task": {"name": ..., "params": {...}},
         "vocab": [...], ... anything the caller adds (train config, metrics)}
Other kinds (e.g. a quantized checkpoint) register a loader with ``register_loader(kind, fn)``;
``load_checkpoint`` dispatches on ``meta["kind"]``.
"""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from refq.nn import TransformerConfig, build_model
from refq.nn.module import Module

FORMAT = "refq-checkpoint"
VERSION = 1
META_KEY = "__meta__"

Loader = Callable[[dict[str, np.ndarray], dict[str, Any]], Module]
_LOADERS: dict[str, Loader] = {}


def register_loader(kind: str, loader: Loader) -> None:
    """Register ``loader(arrays, meta) -> model`` for checkpoints whose meta has ``kind``."""
    _LOADERS[kind] = loader


def save_checkpoint(
    path: str | os.PathLike,
    model: Module,
    meta: dict[str, Any] | None = None,
    arrays: dict[str, np.ndarray] | None = None,
    kind: str = "float",
) -> Path:
    """Write ``model``'s weights (or ``arrays`` if given) and ``meta`` + config as JSON to ``path``.

    The file is written to a temporary name and renamed, so a crash never leaves half a file.
    Returns the path written (``.npz`` is appended by NumPy if missing, so we add it ourselves).
    """
    path = Path(path)
    if path.suffix != ".npz":
        path = path.with_name(path.name + ".npz")
    meta = dict(meta or {})
    config = getattr(model, "config", None)
    if config is not None:
        meta["config"] = config.to_dict()
    meta.update(format=FORMAT, version=VERSION, kind=kind)
    weights = model.state_dict() if arrays is None else arrays
    if META_KEY in weights:
        raise ValueError(f"a parameter may not be called {META_KEY!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, **weights, **{META_KEY: np.array(json.dumps(meta, sort_keys=True))})
    os.replace(tmp, path)
    return path


def read_checkpoint(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Read the arrays and the metadata of any refq checkpoint, with clear errors."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as e:
        raise ValueError(f"{path}: truncated or not a refq checkpoint (.npz): {e}") from None
    if META_KEY not in arrays:
        raise ValueError(f"{path}: not a refq checkpoint (no {META_KEY!r} entry)")
    try:
        meta = json.loads(str(arrays.pop(META_KEY)))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: corrupt checkpoint metadata: {e}") from None
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path}: unknown format {meta.get('format')!r}, expected {FORMAT!r}")
    if int(meta.get("version", -1)) > VERSION:
        raise ValueError(
            f"{path}: checkpoint version {meta.get('version')} is newer than {VERSION}"
        )
    return arrays, meta


def _load_float(arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> Module:
    if "config" not in meta:
        raise ValueError("float checkpoint has no model config")
    model = build_model(TransformerConfig.from_dict(meta["config"]))
    model.load_state_dict(arrays)  # ValueError naming missing/unexpected keys or shapes
    return model.eval()


register_loader("float", _load_float)


def load_checkpoint(path: str | os.PathLike) -> tuple[Module, dict[str, Any]]:
    """Load a checkpoint written by ``save_checkpoint``: returns (model in eval mode, meta).

    >>> import os, tempfile
    >>> from refq.nn import TransformerConfig, build_model
    >>> m = build_model(TransformerConfig(vocab_size=5, d_model=8, n_heads=2, d_ff=16))
    >>> with tempfile.TemporaryDirectory() as d:
    ...     p = save_checkpoint(os.path.join(d, "m.npz"), m, {"task": {"name": "reverse"}})
    ...     m2, meta = load_checkpoint(p)
    >>> meta["kind"], meta["config"]["d_model"], type(m2).__name__
    ('float', 8, 'Seq2SeqTransformer')
    """
    arrays, meta = read_checkpoint(path)
    kind = meta.get("kind")
    if kind not in _LOADERS:
        raise ValueError(
            f"{path}: no loader for checkpoint kind {kind!r} (known: {sorted(_LOADERS)})"
        )
    try:
        return _LOADERS[kind](arrays, meta), meta
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None


def weights_size_bytes(path: str | os.PathLike) -> int:
    """Bytes of the weight arrays stored in a checkpoint (metadata excluded)."""
    arrays, _ = read_checkpoint(path)
    return int(sum(a.nbytes for a in arrays.values()))


def task_from_meta(meta: dict[str, Any]):
    """Rebuild the task recorded in a checkpoint's metadata."""
    from refq.train.tasks import get_task

    task = meta.get("task")
    if not isinstance(task, dict) or "name" not in task:
        raise ValueError("checkpoint metadata records no task")
    return get_task(task["name"], **task.get("params", {}))
