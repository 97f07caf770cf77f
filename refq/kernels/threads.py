"""One threading policy for NumPy's BLAS (OpenBLAS) and Numba's thread pool.

The problem (measured, see ``benchmarks/bench_gemm.py --threads``): OpenBLAS and Numba each keep a
pool of worker threads. After a call, both pools *spin* for a while before sleeping (OpenBLAS's
workers poll for new work; GNU OpenMP, Numba's default ``omp`` layer here, spins for
``GOMP_SPINCOUNT`` iterations). Alternating a BLAS call and a Numba parallel kernel on 2 cores
then puts 4 busy threads on 2 cores: each library's barrier waits for a worker that is
descheduled behind the other library's spinner, and both run ~2x (and on a loaded machine much
more) slower than alone.

The policy (applied when ``refq.kernels`` is imported):

1. Numba's threading layer is ``workqueue`` unless the user chose one with
   ``NUMBA_THREADING_LAYER``: its workers block on a condition variable between kernels instead
   of spinning, so they never steal a core from OpenBLAS. This only works if no Numba parallel
   function has run yet in the process (then the layer is already fixed, and we leave it).
   Limitation: ``workqueue`` does not allow parallel kernels launched concurrently from several
   Python threads; refq runs a model from one Python thread.
2. The int8 kernels use ``numba.get_num_threads()`` threads: ``REFQ_NUM_THREADS`` (read at import)
   sets it, ``set_num_threads(n)`` / ``with num_threads(n):`` change it later. Small problems
   (under ``gemm.PARALLEL_MIN_OPS`` multiply-adds) run on the calling thread only.
3. OpenBLAS's own thread count can only be set before NumPy is imported (``OPENBLAS_NUM_THREADS``
   is read when the library loads; refq does not depend on threadpoolctl). For a process that
   runs the *quantized* model, where the remaining float work is elementwise or small, setting
   ``OPENBLAS_NUM_THREADS=1`` removes the remaining contention; the benchmark measures the three
   configurations so the choice is made on numbers, not folklore.

Measured here (2 cores, other processes running; ``bench_gemm.py --threads``: an OpenBLAS sgemm
and the int8 kernel alternating, n x n x n, time of the pair / sum of the times alone):

    configuration                           n = 256    n = 512
    Numba omp layer (Numba's default here)   14.8x       6.5x
    workqueue layer (refq's default)          3.0x       1.3x
    workqueue + OPENBLAS_NUM_THREADS=1        1.08x      1.06x

So the layer choice removes most of the interference, and single-threaded OpenBLAS removes the
rest (OpenBLAS's own workers still spin after each call). The numbers vary from run to run on a
shared machine; the ordering did not.

Nothing here touches ``OPENBLAS_CORETYPE``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import numba

DEFAULT_LAYER = "workqueue"


def apply_policy() -> str:
    """Choose Numba's threading layer and thread count from the policy above; return the layer.

    Called once when ``refq.kernels`` is imported. Returns the layer that will be (or already
    is) used: ``NUMBA_THREADING_LAYER`` if set, else ``"workqueue"``.

    >>> apply_policy() in ("workqueue", "omp", "tbb", "default", "safe", "forksafe", "threadsafe")
    True
    """
    if not os.environ.get("NUMBA_THREADING_LAYER"):
        try:
            numba.threading_layer()  # raises ValueError while no parallel kernel has run
        except ValueError:
            numba.config.THREADING_LAYER = DEFAULT_LAYER
    n = os.environ.get("REFQ_NUM_THREADS")
    if n:
        set_num_threads(int(n))
    return str(numba.config.THREADING_LAYER)


def get_num_threads() -> int:
    """Threads the int8 kernels use (Numba's setting for the calling thread).

    >>> get_num_threads() >= 1
    True
    """
    return int(numba.get_num_threads())


def set_num_threads(n: int) -> None:
    """Set the number of threads of the int8 kernels, ``1 <= n <= numba.config.NUMBA_NUM_THREADS``.

    >>> old = get_num_threads(); set_num_threads(1); get_num_threads()
    1
    >>> set_num_threads(old)
    """
    if not isinstance(n, int) or isinstance(n, bool):
        raise TypeError(f"the number of threads must be an int, got {type(n).__name__}")
    hi = numba.config.NUMBA_NUM_THREADS
    if not 1 <= n <= hi:
        raise ValueError(f"the number of threads must be in [1, {hi}], got {n}")
    numba.set_num_threads(n)


@contextmanager
def num_threads(n: int) -> Iterator[None]:
    """Run a block with ``n`` kernel threads, then restore the previous count.

    >>> with num_threads(1):
    ...     get_num_threads()
    1
    """
    old = get_num_threads()
    set_num_threads(n)
    try:
        yield
    finally:
        set_num_threads(old)
