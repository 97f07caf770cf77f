"""Time every observer on a 1M-element float32 tensor and on a 16-batch calibration pass.

Each time is observe + calculate_range (median of --repeat runs, after one warm-up run that
also compiles the Numba loops), printed as a ratio to the plain MinMaxObserver measured in the
same run. The MSE search is also compared with a straightforward NumPy baseline: np.histogram
plus PyTorch's greedy narrowing whose every step recomputes the L2 error over all 2048 bins
(what PyTorch's HistogramObserver does), on the same data; the error of each chosen range is
measured with refq's real 8-bit LinearQuantizer.

    python benchmarks/bench_calibration.py [--repeat 5] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np

from refq.calibration import (
    EntropyObserver,
    HistogramObserver,
    MinMaxObserver,
    MovingAverageMinMaxObserver,
    PercentileObserver,
)
from refq.quant import LinearQuantizer, LogQuantizer


def data(n: int = 1_000_000, seed: int = 0) -> np.ndarray:
    """Gaussian activations with a few large outliers (a transformer-like tail)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(n).astype(np.float32)
    x[rng.integers(0, n, 20)] *= 12.0
    return x


def timed(make, batches, repeat):
    """Median seconds of observe(all batches) + calculate_range; the observer's range."""
    obs = make()
    t0 = time.perf_counter()
    for b in batches:  # warm-up (Numba compilation happens here)
        obs.observe(b)
    rng = obs.calculate_range()
    if time.perf_counter() - t0 > 2.0:  # slow observers: one timed run is enough
        repeat = 1
    times = []
    for _ in range(repeat):
        obs = make()
        t0 = time.perf_counter()
        for b in batches:
            obs.observe(b)
        rng = obs.calculate_range()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), rng


def baseline_numpy_greedy(x: np.ndarray, bins: int = 2048, bits: int = 8):
    """The straightforward version: np.histogram, then PyTorch's greedy narrowing where each
    step evaluates the L2 error of the whole histogram (values uniform in a bin) in NumPy."""
    lo, hi = float(x.min()), float(x.max())
    hist, edges = np.histogram(x, bins=bins, range=(lo, hi))
    hist = hist.astype(np.float64)
    centers = (edges[:-1] + edges[1:]) / 2
    w = edges[1] - edges[0]
    levels = 2**bits

    def l2(start, end):  # clip to [edges[start], edges[end + 1]], grid contains 0
        a, b = min(edges[start], 0.0), max(edges[end + 1], 0.0)
        step = (b - a) / (levels - 1)
        inside = (centers >= edges[start]) & (centers < edges[end + 1])
        err = np.where(inside, step**2 / 12, 0.0)
        err = err + np.where(centers < edges[start], (edges[start] - centers) ** 2 + w * w / 12, 0)
        err = err + np.where(
            centers >= edges[end + 1], (centers - edges[end + 1]) ** 2 + w * w / 12, 0
        )
        return float(np.sum(hist * err))

    csum = np.cumsum(hist)
    total = csum[-1]
    alpha, beta, start, end = 0.0, 1.0, 0, bins - 1
    norm_min = l2(start, end)
    while alpha < beta:
        na, nb = alpha + 1e-5, beta - 1e-5
        left, right = start, end
        while left < end and csum[left] < na * total:
            left += 1
        while right > start and csum[right] > nb * total:
            right -= 1
        ns, ne = start, end
        if (left - start) > (end - right):
            ns, alpha = left, na
        else:
            ne, beta = right, nb
        if ns == start and ne == end:
            continue
        norm = l2(ns, ne)
        if norm > norm_min:
            break
        norm_min, start, end = norm, ns, ne
    return np.float32(edges[start]), np.float32(edges[end + 1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--json", action="store_true", help="print one JSON object at the end")
    args = ap.parse_args(argv)

    x = data()
    x64 = x.astype(np.float64)
    q8 = LinearQuantizer(8)

    def mse8(r):
        return float(np.mean((q8.set_range(*r).fake_quant(x).astype(np.float64) - x64) ** 2))

    observers = {
        "minmax": lambda: MinMaxObserver(),
        "ema": lambda: MovingAverageMinMaxObserver(),
        "percentile 99.99": lambda: PercentileObserver(99.99),
        "percentile (numpy binning)": lambda: PercentileObserver(99.99, engine="numpy"),
        "mse exhaustive (built-in 8b)": lambda: HistogramObserver(),
        "mse symmetric (built-in 8b)": lambda: HistogramObserver(symmetric=True),
        "mse greedy (built-in 8b)": lambda: HistogramObserver(search="greedy"),
        "mse quantizer=Linear(8)": lambda: HistogramObserver(quantizer=LinearQuantizer(8)),
        "mse quantizer=Log(4)": lambda: HistogramObserver(quantizer=LogQuantizer(4)),
        "entropy (TensorRT 8b)": lambda: EntropyObserver(),
        "entropy quantizer=Log(4)": lambda: EntropyObserver(quantizer=LogQuantizer(4)),
        "minmax per-channel (256 ch)": lambda: MinMaxObserver(axis=0),
        "mse per-channel sym (256 ch)": lambda: HistogramObserver(symmetric=True, axis=0),
        "mse per-channel affine (256 ch)": lambda: HistogramObserver(axis=0),
        "mse per-channel quantizer=Lin(4,sym)": lambda: HistogramObserver(
            quantizer=LinearQuantizer(4, symmetric=True, axis=0), axis=0
        ),
        "entropy per-channel (256 ch)": lambda: EntropyObserver(axis=0),
        "entropy per-channel stride 8": lambda: EntropyObserver(axis=0, stride=8),
    }
    rows = []
    base = {}
    for setting, batches in (
        ("1 x 1M tensor", [x]),
        ("16 batches x 62.5k", np.array_split(x, 16)),
    ):
        for name, make in observers.items():
            bs = batches
            if "per-channel" in name:
                if setting != "1 x 1M tensor":
                    continue
                bs = [x[: 256 * 3906].reshape(256, 3906)]  # (C=256, 3906)
            t, r = timed(make, bs, args.repeat)
            if name.startswith("minmax"):
                base[(setting, "per-channel" in name)] = t
            ratio = t / base[(setting, "per-channel" in name)]
            row = {"setting": setting, "observer": name, "ms": 1e3 * t, "x_minmax": ratio}
            if "per-channel" not in name:
                row["range"] = [float(r[0]), float(r[1])]
                row["mse_int8"] = mse8(r)
            rows.append(row)

    t0 = time.perf_counter()
    for _ in range(args.repeat):
        rb = baseline_numpy_greedy(x)
    t_base = (time.perf_counter() - t0) / args.repeat
    exh = next(r for r in rows if r["observer"] == "mse exhaustive (built-in 8b)")
    baseline = {
        "observer": "baseline: np.histogram + greedy, full L2 per step",
        "ms": 1e3 * t_base,
        "range": [float(rb[0]), float(rb[1])],
        "mse_int8": mse8(rb),
        "x_refq_exhaustive": t_base / (exh["ms"] / 1e3),
    }

    print(f"{'setting':20s} {'observer':38s} {'ms':>9s} {'x minmax':>9s}  range / int8 MSE")
    for r in rows:
        extra = ""
        if "range" in r:
            extra = f"  [{r['range'][0]:.4f}, {r['range'][1]:.4f}]  {r['mse_int8']:.3e}"
        print(f"{r['setting']:20s} {r['observer']:38s} {r['ms']:9.2f} {r['x_minmax']:9.1f}{extra}")
    print(
        f"\nMSE search vs the straightforward NumPy greedy baseline (1M tensor): baseline "
        f"{baseline['ms']:.1f} ms, refq exhaustive {exh['ms']:.1f} ms "
        f"(baseline / refq = {baseline['x_refq_exhaustive']:.1f}x); int8 MSE baseline "
        f"{baseline['mse_int8']:.3e} vs refq {exh['mse_int8']:.3e}"
    )
    if args.json:
        print(json.dumps({"rows": rows, "baseline": baseline}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
