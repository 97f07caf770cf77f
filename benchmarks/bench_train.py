"""Training throughput and forward latency of the NumPy Transformer, and where the time goes.

    python benchmarks/bench_train.py [--steps 30] [--task reverse]

Reference config: ``refq train``'s default model for the task (reverse: d_model 64, 4 heads,
2 encoder + 2 decoder post-LN layers, d_ff 128, batch 64). Prints
  * training throughput: ms per step (forward + loss + backward + AdamW) and tokens/s
    (tokens = source + target positions in the batch, pads included);
  * forward latency: teacher-forced forward at batch 1 and 64, greedy decoding of one sequence;
  * the time split between matmul modules (Linear, MatMul) and everything else, measured by
    wrapping every quantizable module with a timer through ``set_submodule`` (the PTQ seam);
  * a baseline measured in the same run: the same matmuls (same shapes, same count) run back to
    back with no model around them. ``overhead ratio`` = step time / that matmul-only time.
BLAS threads: ``--blas-threads 1`` (or OPENBLAS_NUM_THREADS=1) to compare; on a loaded 2-core
machine multi-threaded OpenBLAS on these small matrices was 17x slower than one thread.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from refq.nn import CrossEntropyLoss, build_model, quantizable_modules
from refq.nn.module import Module
from refq.train.blas import get_blas_threads, set_blas_threads
from refq.train.decoding import greedy_decode
from refq.train.optim import AdamW, clip_grad_norm
from refq.train.tasks import get_task
from refq.train.trainer import default_configs, loss_and_backward


class Timed(Module):
    """Wraps a module and accumulates the wall time of its forward and backward, and the
    shapes it saw (to replay the same matmuls as a baseline)."""

    def __init__(self, inner: Module, kind: str) -> None:
        super().__init__()
        self.inner, self.kind, self.seconds, self.shapes = inner, kind, 0.0, []

    def forward(self, *args):
        t0 = time.perf_counter()
        out = self.inner(*args)
        self.seconds += time.perf_counter() - t0
        self.shapes.append(tuple(a.shape for a in args))
        return out

    def backward(self, dout):
        t0 = time.perf_counter()
        out = self.inner.backward(dout)
        self.seconds += time.perf_counter() - t0
        return out


def best_of(f, reps: int = 5) -> float:
    f()
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        f()
        best = min(best, time.perf_counter() - t0)
    return best


def matmul_baseline(records, dtype=np.float32) -> float:
    """Seconds to run, back to back, the GEMMs of one training step: for every Linear call
    (N, in) @ (in, out) forward, plus its two backward GEMMs; for every MatMul its forward and
    two backward batched GEMMs. Random data, same shapes, no model code."""
    rng = np.random.default_rng(0)
    ops = []
    for kind, shapes, w in records:
        if kind == "Linear":
            (xs,) = shapes
            n, i, o = int(np.prod(xs[:-1])), xs[-1], w.shape[0]
            x, wt, d = (rng.standard_normal(s).astype(dtype) for s in ((n, i), (i, o), (n, o)))
            ops += [(x, wt), (d, wt.T), (d.T, x)]  # y = x W^T; dx = dy W; dW = dy^T x
        else:
            a_s, b_s = shapes
            a, b = rng.standard_normal(a_s).astype(dtype), rng.standard_normal(b_s).astype(dtype)
            c = a @ b
            ops += [(a, b), (c, b.swapaxes(-1, -2)), (a.swapaxes(-1, -2), c)]

    def run():
        for p, q in ops:
            p @ q

    return best_of(run)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", default="reverse")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--blas-threads", type=int, default=None, help="set OpenBLAS threads")
    args = ap.parse_args()
    if args.blas_threads is not None:
        set_blas_threads(args.blas_threads)
    task = get_task(args.task)
    cfg, tcfg = default_configs(task)
    model = build_model(cfg)
    batches = list(task.batches(tcfg.batch_size, args.steps, seed=0))
    ce = CrossEntropyLoss(ignore_index=task.pad_id)
    opt = AdamW.for_model(model, lr=1e-4)
    grads = [g for _, g in model.named_grads()]
    print(
        f"task {task.name}: d_model {cfg.d_model}, heads {cfg.n_heads}, layers "
        f"{cfg.n_encoder_layers}+{cfg.n_decoder_layers}, d_ff {cfg.d_ff}, batch "
        f"{tcfg.batch_size}, {model.num_parameters()} parameters, OPENBLAS_NUM_THREADS="
        f"{os.environ.get('OPENBLAS_NUM_THREADS', 'unset')}, BLAS threads {get_blas_threads()}"
    )

    def step(b):
        model.zero_grad()
        loss_and_backward(model, b, ce)
        clip_grad_norm(grads, 1.0)
        opt.step()

    step(batches[0])  # warm-up
    t0 = time.perf_counter()
    for b in batches:
        step(b)
    sec = (time.perf_counter() - t0) / len(batches)
    b0 = batches[0]
    tokens = b0.src.size + (b0.tgt_in.size if b0.tgt_in is not None else 0)
    print(f"train step      {sec * 1e3:8.2f} ms   {tokens / sec:10.0f} tokens/s")

    model.eval()
    for bs in (1, 64):
        b = batches[0]
        src = b.src[:bs]
        if task.kind == "classification":
            f = lambda src=src: model(src)  # noqa: E731
        else:
            f = lambda src=src, tgt=b.tgt_in[:bs]: model(src, tgt)  # noqa: E731
        print(f"forward b={bs:<3d}  {best_of(f) * 1e3:8.2f} ms")
    if task.kind != "classification":
        lat = best_of(lambda: greedy_decode(model, batches[0].src[:1], task.max_tgt_len))
        print(f"greedy decode 1 sequence ({task.max_tgt_len} steps max) {lat * 1e3:8.2f} ms")

    # where the time goes: wrap each matmul module with a timer (the same seam PTQ uses)
    model.train()
    timed = {}
    for name, m in list(quantizable_modules(model)):
        t = Timed(m, type(m).__name__)
        model.set_submodule(name, t)
        timed[name] = t
    t0 = time.perf_counter()
    for b in batches[:10]:
        step(b)
    total = (time.perf_counter() - t0) / 10
    lin = sum(t.seconds for t in timed.values() if t.kind == "Linear") / 10
    mm = sum(t.seconds for t in timed.values() if t.kind == "MatMul") / 10
    print(
        f"per step: Linear {lin * 1e3:.2f} ms ({lin / total:.0%}), attention MatMul "
        f"{mm * 1e3:.2f} ms ({mm / total:.0%}), everything else {(total - lin - mm) * 1e3:.2f} ms "
        f"({(total - lin - mm) / total:.0%}: softmax, layernorm, GELU/ReLU, embedding "
        f"scatter-add, loss, AdamW, Python)"
    )
    # each module runs once per forward: its last call has the shapes of one step
    records = [(t.kind, t.shapes[-1], t.inner.params.get("weight")) for t in timed.values()]
    base = matmul_baseline(records)
    print(
        f"baseline (same run): the step's {3 * len(records)} GEMMs alone take {base * 1e3:.2f} ms;"
        f" overhead ratio step / GEMMs = {sec / base:.2f}x"
    )


if __name__ == "__main__":
    main()
