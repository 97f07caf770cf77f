"""Benchmark: refq's int8 kernels against NumPy float32 (OpenBLAS), measured in the same run.

    python benchmarks/bench_gemm.py            # GEMM table, quantized linear layer, attention bmm
    python benchmarks/bench_gemm.py --threads  # + alternating BLAS / Numba (threading policy)
    python benchmarks/bench_gemm.py --compile  # + first-call (compile) cost, cold and cached
    python benchmarks/bench_gemm.py --quick    # fewer shapes, shorter timings
    python benchmarks/bench_gemm.py --single   # one core each: OPENBLAS_NUM_THREADS=1 and
                                               # REFQ_NUM_THREADS=1 (re-executes itself)

G-ops/s counts a multiply-add as 2 ops (2 M N K). Each time is the best of several timed batches
(the minimum is the least disturbed by other processes). Ratios are to NumPy float32 ``a @ b``
measured in the same run on the same shape.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numba  # noqa: E402

from refq import kernels  # noqa: E402
from refq.kernels import simd  # noqa: E402

# Wall-clock time, except with --single: then everything runs on the calling thread and its CPU
# time (time.thread_time) is the measure least disturbed by other processes on the machine.
CLOCK = time.perf_counter


def best_time(f, budget: float = 0.3, batches: int = 5) -> float:
    """Seconds per call: the minimum over ``batches`` timed batches of ~budget/batches seconds."""
    f()  # warm (compile, caches)
    t0 = CLOCK()
    f()
    one = max(CLOCK() - t0, 1e-7)
    reps = max(1, int(budget / batches / one))
    best = float("inf")
    for _ in range(batches):
        t0 = CLOCK()
        for _ in range(reps):
            f()
        best = min(best, (CLOCK() - t0) / reps)
    return best


def machine_header() -> str:
    import llvmlite.binding as ll

    lines = [
        f"machine: {platform.machine()} {ll.get_host_cpu_name()}, {os.cpu_count()} cores, "
        f"python {platform.python_version()}, numpy {np.__version__}, numba {numba.__version__}",
        f"refq kernel ISA: {simd.ISA}; Numba threading layer: {kernels.THREADING_LAYER}, "
        f"threads: {kernels.get_num_threads()}",
        f"OPENBLAS_CORETYPE: {os.environ.get('OPENBLAS_CORETYPE', '(not set)')}; "
        f"OPENBLAS_NUM_THREADS: {os.environ.get('OPENBLAS_NUM_THREADS', '(not set)')}",
        f"load average at start: {os.getloadavg()[0]:.2f} (other processes share the cores)",
        f"clock: {CLOCK.__name__} (best of 5 batches)",
    ]
    return "\n".join(lines)


def bench_gemm(shapes, with_slow: bool, budget: float) -> list[tuple]:
    rng = np.random.default_rng(0)
    rows = []
    hdr = (
        f"{'M x K x N':>18} | {'f32 Gop/s':>9} | {'int8 Gop/s':>10} {'ratio':>6} | "
        f"{'u8 ratio':>8} | {'ref ratio':>9} | {'np int32':>8}"
    )
    print(hdr)
    print("-" * len(hdr))
    for m, k, n in shapes:
        ops = 2.0 * m * n * k
        af = rng.standard_normal((m, k)).astype(np.float32)
        bf = rng.standard_normal((k, n)).astype(np.float32)
        a = rng.integers(-128, 128, (m, k)).astype(np.int8)
        au = rng.integers(0, 256, (m, k)).astype(np.uint8)
        w = rng.integers(-128, 128, (n, k)).astype(np.int8)
        pw = kernels.pack_weight(w)
        t_f = best_time(lambda: af @ bf, budget)  # noqa: B023
        t_q = best_time(lambda: kernels.matmul_int8_packed(a, pw), budget)  # noqa: B023
        t_u = best_time(lambda: kernels.matmul_int8_packed(au, pw), budget)  # noqa: B023
        ref_r = np32_r = float("nan")
        if with_slow and ops <= 2.0 * 512**3 + 1:
            wt = np.ascontiguousarray(w.T)
            t_r = best_time(lambda: kernels.matmul_reference(a, wt), 0.0, 1)  # noqa: B023
            a32, w32 = a.astype(np.int32), wt.astype(np.int32)
            t_i = best_time(lambda: a32 @ w32, 0.0, 1)  # noqa: B023
            ref_r, np32_r = t_f / t_r, t_f / t_i
        rows.append((m, k, n, ops / t_f / 1e9, ops / t_q / 1e9, t_f / t_q, t_f / t_u, ref_r))
        print(
            f"{f'{m} x {k} x {n}':>18} | {ops / t_f / 1e9:9.1f} | {ops / t_q / 1e9:10.1f} "
            f"{t_f / t_q:6.2f} | {t_f / t_u:8.2f} | {ref_r:9.3f} | {np32_r:8.3f}",
            flush=True,
        )
    return rows


def bench_linear(shapes, budget: float) -> None:
    """Whole layer: float x -> quantize -> int8 GEMM + corrections + requantize -> int8 out,
    against float32 ``x @ w.T + b``. Also the variant that returns float (acc * s_x s_w)."""
    rng = np.random.default_rng(1)
    hdr = (
        f"{'M x K -> N':>18} | {'float us':>9} | {'int8 layer us':>13} {'ratio':>6} | "
        f"{'fixed-pt':>8} | {'-> float out':>12}"
    )
    print(hdr)
    print("-" * len(hdr))
    for m, k, n in shapes:
        x = rng.standard_normal((m, k)).astype(np.float32)
        wf = (rng.standard_normal((n, k)) * 0.05).astype(np.float32)
        bf = rng.standard_normal(n).astype(np.float32)
        s_x = float(np.abs(x).max() / 127)
        s_w = np.abs(wf).max(axis=1) / 127
        w_q = np.clip(np.rint(wf / s_w[:, None]), -127, 127).astype(np.int8)
        b_q = np.rint(bf / (s_x * s_w)).astype(np.int32)
        pw = kernels.pack_weight(w_q)
        s_out = float(np.abs(x @ wf.T + bf).max() / 127)
        mult = s_x * s_w / s_out
        wT = np.ascontiguousarray(wf.T)

        def flt(x=x, wT=wT, bf=bf):
            return x @ wT + bf

        def q_float(x=x, s_x=s_x, pw=pw, b_q=b_q, mult=mult):
            xq = kernels.quantize_input(x, s_x, 0)
            return kernels.quantized_linear(xq, 0, pw, 0, b_q, mult, 0, np.int8)

        def q_fixed(x=x, s_x=s_x, pw=pw, b_q=b_q, mult=mult):
            xq = kernels.quantize_input(x, s_x, 0)
            return kernels.quantized_linear(xq, 0, pw, 0, b_q, mult, 0, np.int8, mode="fixed_point")

        scale = (s_x * s_w).astype(np.float32)

        def q_deq(x=x, s_x=s_x, pw=pw, b_q=b_q, scale=scale):
            xq = kernels.quantize_input(x, s_x, 0)
            return kernels.quantized_linear_dequant(xq, 0, pw, 0, b_q, scale)

        t_f, t_q, t_x, t_d = (best_time(f, budget) for f in (flt, q_float, q_fixed, q_deq))
        print(
            f"{f'{m} x {k} -> {n}':>18} | {t_f * 1e6:9.1f} | {t_q * 1e6:13.1f} {t_f / t_q:6.2f} | "
            f"{t_f / t_x:8.2f} | {t_f / t_d:12.2f}",
            flush=True,
        )


def bench_bmm(shapes, budget: float) -> None:
    rng = np.random.default_rng(2)
    print(f"{'B x M x K x N':>22} | {'f32 Gop/s':>9} | {'int8 Gop/s':>10} {'ratio':>6}")
    for b, m, k, n in shapes:
        ops = 2.0 * b * m * n * k
        af = rng.standard_normal((b, m, k)).astype(np.float32)
        bf = rng.standard_normal((b, k, n)).astype(np.float32)
        a = rng.integers(-128, 128, (b, m, k)).astype(np.int8)
        w = rng.integers(-128, 128, (b, k, n)).astype(np.int8)
        t_f = best_time(lambda: af @ bf, budget)  # noqa: B023
        t_q = best_time(lambda: kernels.bmm_int8(a, w), budget)  # noqa: B023
        print(
            f"{f'{b} x {m} x {k} x {n}':>22} | {ops / t_f / 1e9:9.1f} | {ops / t_q / 1e9:10.1f} "
            f"{t_f / t_q:6.2f}",
            flush=True,
        )


_ALTERNATE = r"""
import os, sys, time, numpy as np
sys.path.insert(0, {root!r})
from refq import kernels
n = {n}
rng = np.random.default_rng(0)
a = rng.integers(-128, 128, (n, n)).astype(np.int8)
pw = kernels.pack_weight(rng.integers(-128, 128, (n, n)).astype(np.int8))
af = rng.standard_normal((n, n)).astype(np.float32)
bf = rng.standard_normal((n, n)).astype(np.float32)
def best(f, reps=40):
    f(); b = 1e9
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(reps): f()
        b = min(b, (time.perf_counter() - t0) / reps)
    return b * 1e6
f1 = lambda: af @ bf
f2 = lambda: kernels.matmul_int8_packed(a, pw)
def alt(): f1(); f2()
x1, x2 = best(f1), best(f2); x3 = best(alt)
print(f"{{x1:.0f}} {{x2:.0f}} {{x3:.0f}}")
"""


def bench_threads(sizes) -> None:
    """Alternate an OpenBLAS sgemm and the Numba int8 kernel, under three configurations."""
    configs = [
        ("Numba omp layer (no policy)", {"NUMBA_THREADING_LAYER": "omp"}),
        ("refq policy: workqueue layer", {}),
        ("workqueue + OPENBLAS_NUM_THREADS=1", {"OPENBLAS_NUM_THREADS": "1"}),
    ]
    print(
        f"{'configuration':>36} | {'n':>5} | {'f32 alone':>9} | {'int8 alone':>10} | "
        f"{'alternating':>11} | {'slowdown':>8}"
    )
    for name, extra in configs:
        env = {k: v for k, v in os.environ.items() if k != "NUMBA_THREADING_LAYER"}
        env.update(extra)
        for n in sizes:
            code = _ALTERNATE.format(root=str(ROOT), n=n)
            out = subprocess.run(
                [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
            ).stdout.split()
            x1, x2, x3 = map(float, out[-3:])
            print(
                f"{name:>36} | {n:5d} | {x1:7.0f}us | {x2:8.0f}us | {x3:9.0f}us | "
                f"{x3 / (x1 + x2):7.2f}x",
                flush=True,
            )


_FIRST_CALL = r"""
import sys, time
t0 = time.perf_counter()
sys.path.insert(0, {root!r})
import numpy as np
from refq import kernels
t1 = time.perf_counter()
a = np.ones((64, 64), np.int8)
kernels.matmul_int8(a, a)
t2 = time.perf_counter()
kernels.quantized_linear(kernels.quantize_input(np.ones((8, 64), np.float32), 0.1, 0), 0,
                         kernels.pack_weight(a), 0, None, 0.01, 0, np.int8)
kernels.quantized_linear(kernels.quantize_input(np.ones((8, 64), np.float32), 0.1, 0), 0,
                         kernels.pack_weight(a), 0, None, 0.01, 0, np.int8, mode="fixed_point")
kernels.bmm_int8(np.ones((2, 8, 8), np.int8), np.ones((2, 8, 8), np.int8))
t3 = time.perf_counter()
print(f"{{t1 - t0:.2f}} {{t2 - t1:.2f}} {{t3 - t2:.2f}}")
"""


def bench_compile() -> None:
    """First-call cost in a fresh process: with an empty Numba cache, then with the cache."""
    with tempfile.TemporaryDirectory() as d:
        env = dict(os.environ, NUMBA_CACHE_DIR=d)
        code = _FIRST_CALL.format(root=str(ROOT))
        for label in ("cold (empty cache)", "warm (cached)"):
            out = subprocess.run(
                [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
            ).stdout.split()
            imp, gemm, rest = map(float, out[-3:])
            print(
                f"{label:>20}: import {imp:.2f}s, first matmul_int8 {gemm:.2f}s, "
                f"first linear (both modes) + bmm {rest:.2f}s"
            )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="fewer shapes, shorter timings")
    p.add_argument("--threads", action="store_true", help="measure the threading policy")
    p.add_argument("--compile", action="store_true", help="measure the first-call cost")
    p.add_argument("--no-slow", action="store_true", help="skip the reference / NumPy int32 runs")
    p.add_argument("--single", action="store_true", help="one thread for OpenBLAS and for refq")
    args = p.parse_args()
    if args.single and os.environ.get("REFQ_BENCH_SINGLE") != "1":
        # OpenBLAS reads its thread count when NumPy loads: start again with it set
        env = dict(os.environ, OPENBLAS_NUM_THREADS="1", REFQ_NUM_THREADS="1")
        env["REFQ_BENCH_SINGLE"] = "1"
        os.execve(sys.executable, [sys.executable, *sys.argv], env)
    global CLOCK
    if args.single:
        CLOCK = time.thread_time
    budget = 0.1 if args.quick else 0.4
    print(machine_header())
    square = [(s, s, s) for s in ((128, 512) if args.quick else (128, 256, 512, 768, 1024))]
    transformer = [
        (512, 128, 512), (2048, 256, 1024), (2048, 1024, 256), (64, 512, 512), (256, 512, 2048),
        # refq's own model (d_model 64, d_ff 256, 4 heads, batch 32 x T 64 = 2048 tokens)
        (2048, 64, 192), (2048, 64, 64), (2048, 64, 256), (2048, 256, 64), (512, 64, 256),
    ]  # fmt: skip
    if args.quick:
        transformer = transformer[:2] + transformer[5:7]
    print("\n== int8 GEMM (M, K) @ (K, N): G-ops/s and ratio to NumPy float32, same run ==")
    print("   int8 = int8 activations x packed int8 weights; u8 = uint8 activations;")
    print("   ref = jitted triple loop, np int32 = NumPy int32 matmul (ratios to float32)")
    bench_gemm(square + transformer, not args.no_slow, budget)
    print("\n== quantized linear layer: quantize x, GEMM, corrections, requantize (ratio > 1: ")
    print("   faster than float32 x @ w.T + b); per-channel weight scales, int32 bias ==")
    lin = [(512, 128, 512), (2048, 256, 1024), (2048, 64, 256), (2048, 256, 64), (64, 512, 512)]
    bench_linear(lin[:3] if args.quick else lin, budget)
    print("\n== batched attention matmul (B * heads, T, hs): Q K^T and P V ==")
    bench_bmm(
        [(128, 64, 16, 64), (128, 64, 64, 16), (32, 128, 64, 128), (32, 128, 128, 64)], budget
    )
    if args.threads:
        print("\n== threading: alternating OpenBLAS sgemm and the Numba int8 kernel ==")
        print("   slowdown = alternating / (float alone + int8 alone); 1.0 = no interference")
        bench_threads((256, 512))
    if args.compile:
        print("\n== first-call cost (fresh process; Numba cache=True) ==")
        bench_compile()
    print(f"\nload average at end: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
