"""Automatic mixed precision: keep the most sensitive layers at a higher bit width.

The seed document (section 8) names mixed precision, adaptive quantization and automated
quantization tools as the next steps. This is the simplest automated recipe that works:

1. quantize every layer at the low precision alone (one at a time, ``analysis.sensitivity``) and
   rank layers by the model-output SQNR each one leaves (most damaging first);
2. promote the ``k`` most sensitive layers to the high precision, and pick the smallest ``k``
   whose whole-model output SQNR reaches ``target_sqnr_db`` (binary search over ``k``: output
   SQNR grows with ``k`` in practice; the search checks each candidate it tries).

Cost: one calibration, one conversion per layer for the ranking, and about log2(layers) full
conversions for the search.
"""

from __future__ import annotations

from typing import Any

from refq.nn.module import Module
from refq.ptq.analysis import output_sqnr, sensitivity
from refq.ptq.convert import convert
from refq.ptq.flow import calibration_batches, prepare_calibrated, run_batch
from refq.ptq.qconfig import QConfig


def auto_mixed_precision(
    model: Module,
    task: Any,
    low: QConfig,
    high: QConfig,
    target_sqnr_db: float,
    n_batches: int = 8,
    batch_size: int = 64,
    seed: int = 0,
) -> tuple[dict[str, QConfig], dict[str, Any]]:
    """Overrides (layer -> ``high``) meeting ``target_sqnr_db`` with as few layers as possible.

    Returns ``(overrides, report)``; the report lists the ranking, the promoted layers, the SQNR
    reached and every ``k`` tried. If even all layers at ``high`` miss the target, every layer is
    promoted and ``report["reached"]`` is False.
    """
    probe = list(calibration_batches(task, 2, batch_size, seed=seed + 99))

    def prepared_with(overrides: dict[str, QConfig]) -> Module:
        return prepare_calibrated(model, task, low, n_batches, batch_size, seed, overrides)

    ranking = sensitivity(model, prepared_with({}), probe, run_batch)
    order = [r["layer"] for r in ranking]
    tried: dict[int, float] = {}

    def sqnr_at(k: int) -> float:
        if k not in tried:
            qmodel = convert(prepared_with({name: high for name in order[:k]}))
            tried[k] = output_sqnr(model, qmodel, probe, run_batch)
        return tried[k]

    lo, hi = 0, len(order)
    reached = sqnr_at(hi) >= target_sqnr_db
    if reached:
        while lo < hi:  # smallest k with sqnr_at(k) >= target
            mid = (lo + hi) // 2
            if sqnr_at(mid) >= target_sqnr_db:
                hi = mid
            else:
                lo = mid + 1
    k = hi
    overrides = {name: high for name in order[:k]}
    report = {
        "ranking": ranking,
        "promoted": order[:k],
        "output_sqnr_db": sqnr_at(k),
        "target_sqnr_db": target_sqnr_db,
        "reached": reached,
        "tried": {str(kk): v for kk, v in sorted(tried.items())},
    }
    return overrides, report
