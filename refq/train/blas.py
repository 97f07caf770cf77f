"""Opt-in control of the BLAS thread count that NumPy's matmuls use (no extra dependency).

Why: the model's GEMMs are small (e.g. (704, 64) @ (64, 128)). On a busy 2-core machine,
multi-threaded OpenBLAS waits for its second thread on every call; measured with
``benchmarks/bench_train.py`` on the reference config under load ~4: 1188 ms per training step
with OpenBLAS's default threads, 70 ms with one thread. ``OPENBLAS_NUM_THREADS=1`` before starting
Python does the same; this module does it at run time, for ``refq train --blas-threads 1``.

It looks for the OpenBLAS that NumPy wheels bundle (``numpy.libs/libscipy_openblas*``) and calls
its ``*_set_num_threads*`` function through ctypes. Nothing is changed unless asked; when the
library or symbol is not found (another BLAS, another platform) the functions say so and do
nothing else. The CPU type (OPENBLAS_CORETYPE) is never touched.
"""

from __future__ import annotations

import ctypes
import glob
import os

import numpy as np

_SET = (
    "scipy_openblas_set_num_threads64_",
    "scipy_openblas_set_num_threads",
    "openblas_set_num_threads64_",
    "openblas_set_num_threads",
)
_GET = (
    "scipy_openblas_get_num_threads64_",
    "scipy_openblas_get_num_threads",
    "openblas_get_num_threads64_",
    "openblas_get_num_threads",
)


def _openblas() -> ctypes.CDLL | None:
    libdir = os.path.join(os.path.dirname(np.__file__), os.pardir, "numpy.libs")
    for path in sorted(glob.glob(os.path.join(libdir, "*openblas*"))):
        try:
            return ctypes.CDLL(path)  # the already-loaded library: same handle as NumPy's
        except OSError:
            continue
    return None


def get_blas_threads() -> int | None:
    """The bundled OpenBLAS's thread count, or None if it cannot be found."""
    lib = _openblas()
    for name in _GET if lib is not None else ():
        if hasattr(lib, name):
            return int(getattr(lib, name)())
    return None


def set_blas_threads(n: int) -> bool:
    """Set the bundled OpenBLAS's thread count to ``n`` (>= 1); True if it was applied.

    >>> old = get_blas_threads()
    >>> if old is not None:
    ...     assert set_blas_threads(1) and get_blas_threads() == 1
    ...     _ = set_blas_threads(old)
    """
    if int(n) < 1:
        raise ValueError(f"BLAS thread count must be >= 1, got {n}")
    lib = _openblas()
    for name in _SET if lib is not None else ():
        if hasattr(lib, name):
            getattr(lib, name)(ctypes.c_int(int(n)))
            return True
    return False
