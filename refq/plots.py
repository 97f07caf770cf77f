"""Figures of the tour (matplotlib, Agg backend, fixed inputs: the same run, the same pictures).

Each function takes plain numbers (what ``refq.tour`` measured) and writes one PNG.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

os.environ.setdefault("MPLBACKEND", "Agg")
import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def accuracy_bars(rows: Sequence[dict], float_exact: float, path: str | Path) -> Path:
    """Horizontal bars of exact-match accuracy per method, the float model as a line."""
    labels = [r["method"] for r in rows]
    vals = [r["exact_match"] for r in rows]
    colors = ["tab:blue" if r["method"].startswith("PTQ") else "tab:green" for r in rows]
    fig, ax = plt.subplots(figsize=(8, 0.32 * len(rows) + 1.2))
    y = np.arange(len(rows))
    ax.barh(y, vals, color=colors)
    ax.axvline(float_exact, color="k", ls="--", lw=1, label=f"float32 ({float_exact:.3f})")
    ax.set_yticks(y, labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 1.02)
    ax.set_xlabel("exact-sequence accuracy (held out)")
    ax.set_title("PTQ (blue) and QAT (green) vs float")
    ax.legend(loc="lower right", fontsize=8)
    return _save(fig, path)


def layer_sqnr_lines(series: dict[str, dict[str, float]], path: str | Path) -> Path:
    """Per-layer output SQNR (dB) of several configurations, one line each."""
    fig, ax = plt.subplots(figsize=(10, 4))
    names: list[str] = []
    lowest = np.inf
    for label, d in series.items():
        names = list(d)
        vals = [v for v in d.values() if np.isfinite(v)]
        lowest = min(lowest, *vals) if vals else lowest
        ax.plot(range(len(d)), list(d.values()), marker="o", ms=3, label=label)
    if np.isfinite(lowest):
        ax.set_ylim(bottom=lowest - 8)  # room for the legend below the lines
    ax.set_xticks(range(len(names)), names, rotation=90, fontsize=6)
    ax.set_ylabel("layer output SQNR (dB)")
    ax.set_title("Per-layer SQNR: int8 layer vs float layer on the same input")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=len(series), loc="lower center")
    return _save(fig, path)


def error_histograms(errors: dict[str, np.ndarray], path: str | Path, xlabel: str) -> Path:
    """Histograms (log counts) of quantization errors, one panel per method."""
    n = len(errors)
    cols = min(3, n)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 2.8 * rows), squeeze=False)
    for ax, (label, e) in zip(axes.ravel(), errors.items(), strict=False):
        ax.hist(e.ravel(), bins=80, color="tab:purple", alpha=0.8)
        ax.set_yscale("log")
        rms = float(np.sqrt(np.mean(e.astype(np.float64) ** 2)))
        ax.set_title(f"{label}\nRMS {rms:.2e}", fontsize=9)
        ax.set_xlabel(xlabel, fontsize=8)
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    return _save(fig, path)


def ptq_qat_bits(rows: Sequence[dict], path: str | Path) -> Path:
    """Exact match vs weight bits for float, PTQ and QAT."""
    labels = [f"W{r['weight_bits']}A{r['act_bits']}" for r in rows]
    x = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(x, [r["float"] for r in rows], "k--", label="float32")
    ax.plot(x, [r["ptq"] for r in rows], "o-", label="PTQ (min-max)")
    ax.plot(x, [r["qat"] for r in rows], "s-", label="QAT (STE)")
    ax.set_xticks(x, labels)
    ax.set_ylim(-0.02, 1.02)
    ax.set_ylabel("exact-sequence accuracy")
    ax.set_title("Where PTQ breaks and QAT recovers")
    ax.grid(alpha=0.3)
    ax.legend()
    return _save(fig, path)


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(fig)
    return path
