"""Input checks shared by the layers: clear TypeError/ValueError messages, never silent garbage."""

from __future__ import annotations

import numpy as np


def check_float(x: object, where: str) -> np.ndarray:
    """Return ``x`` as an ndarray, raising TypeError unless it has a floating dtype."""
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{where}: expected a numpy array, got {type(x).__name__}")
    if not np.issubdtype(x.dtype, np.floating):
        raise TypeError(f"{where}: expected a floating array, got dtype {x.dtype}")
    return x


def check_tokens(ids: object, vocab_size: int, where: str) -> np.ndarray:
    """Return ``ids`` as an integer ndarray with every id in ``[0, vocab_size)``."""
    if not isinstance(ids, np.ndarray):
        raise TypeError(f"{where}: expected a numpy array of token ids, got {type(ids).__name__}")
    if not np.issubdtype(ids.dtype, np.integer):
        raise TypeError(f"{where}: token ids must be integers, got dtype {ids.dtype}")
    if ids.size:
        lo, hi = int(ids.min()), int(ids.max())
        if lo < 0 or hi >= vocab_size:
            bad = lo if lo < 0 else hi
            raise ValueError(f"{where}: token id {bad} out of vocabulary [0, {vocab_size})")
    return ids
