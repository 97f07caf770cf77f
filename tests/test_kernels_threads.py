"""Threading policy, ISA selection and the Numba on-disk cache, each checked in a fresh process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from refq.kernels import get_num_threads, matmul_int8, num_threads, set_num_threads, simd

ROOT = Path(__file__).resolve().parents[1]


def run_py(code: str, **env: str) -> str:
    e = {k: v for k, v in os.environ.items() if k not in ("NUMBA_THREADING_LAYER", "REFQ_KERNEL")}
    e.update(env)
    e["PYTHONPATH"] = str(ROOT)
    out = subprocess.run(
        [sys.executable, "-c", code], env=e, capture_output=True, text=True, check=True, cwd=ROOT
    )
    return out.stdout.strip().splitlines()[-1]


PROBE = """
import json, numpy as np, numba
from refq import kernels
from refq.kernels import tiles
a = np.arange(-50, 50, dtype=np.int8).reshape(10, 10)
c = kernels.matmul_int8(a, a)
ok = bool((c == a.astype(np.int64) @ a.astype(np.int64)).all())
run = {"avx512vnni": tiles._run16, "avxvnni": tiles._run8, "portable": tiles._run_portable}
st = run[kernels.ISA].stats
print(json.dumps({"layer": numba.threading_layer(), "isa": kernels.ISA, "ok": ok,
                  "threads": kernels.get_num_threads(), "misses": sum(st.cache_misses.values()),
                  "hits": sum(st.cache_hits.values())}))
"""


def test_policy_selects_workqueue_and_cache_is_used():
    run_py(PROBE)  # make sure the cache is populated
    r = json.loads(run_py(PROBE))
    assert r["ok"] and r["layer"] == "workqueue"
    assert r["misses"] == 0 and r["hits"] >= 1  # loaded from the on-disk cache, not recompiled


def test_user_choices_are_respected():
    r = json.loads(run_py(PROBE, NUMBA_THREADING_LAYER="omp", REFQ_NUM_THREADS="1"))
    assert r["ok"] and r["layer"] == "omp" and r["threads"] == 1
    r = json.loads(run_py(PROBE, REFQ_KERNEL="portable"))
    assert r["ok"] and r["isa"] == "portable"


def test_bad_kernel_override_is_a_clear_error():
    with pytest.raises(ValueError, match="REFQ_KERNEL"):
        simd.select_isa(frozenset({"avx2"}), override="avx512vnni")
    with pytest.raises(ValueError, match="expected"):
        simd.select_isa(frozenset(), override="sse9")


def test_thread_count_controls():
    old = get_num_threads()
    with num_threads(1):
        assert get_num_threads() == 1
        a = np.ones((300, 300), np.int8)
        assert matmul_int8(a, a)[0, 0] == 300
    assert get_num_threads() == old
    with pytest.raises(ValueError, match="threads"):
        set_num_threads(0)
    with pytest.raises(TypeError, match="int"):
        set_num_threads(1.5)
