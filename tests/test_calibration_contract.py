"""The Observers contract, checked on every observer: shapes, dtypes, errors, no data kept,
determinism, lo <= hi inside the data range, linear and log quantizers downstream."""

import copy

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from refq.calibration import (
    EntropyObserver,
    HistogramObserver,
    MinMaxObserver,
    MovingAverageMinMaxObserver,
    PercentileObserver,
)
from refq.quant import LinearQuantizer, LogQuantizer

FACTORIES = {
    "minmax": MinMaxObserver,
    "ema": MovingAverageMinMaxObserver,
    "percentile": lambda axis=None: PercentileObserver(99.9, axis=axis),
    "percentile_sym": lambda axis=None: PercentileObserver(99.9, symmetric=True, axis=axis),
    "mse": lambda axis=None: HistogramObserver(axis=axis),
    "mse_sym4": lambda axis=None: HistogramObserver(bits=4, symmetric=True, axis=axis),
    "mse_greedy": lambda axis=None: HistogramObserver(search="greedy", axis=axis),
    "mse_linear4": lambda axis=None: HistogramObserver(quantizer=LinearQuantizer(4), axis=axis),
    "entropy": lambda axis=None: EntropyObserver(axis=axis),
}


def _arrays(obj, seen=None):
    """Every ndarray reachable from an observer's attributes."""
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return
    seen.add(id(obj))
    if isinstance(obj, np.ndarray):
        yield obj
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from _arrays(v, seen)
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _arrays(v, seen)
    elif hasattr(obj, "__dict__"):
        for v in vars(obj).values():
            yield from _arrays(v, seen)


@pytest.mark.parametrize("name", FACTORIES)
def test_contract_per_tensor(name):
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((50, 400)) * 2).astype(np.float32)
    obs = FACTORIES[name]()
    with pytest.raises(ValueError, match="no data observed"):
        obs.calculate_range()
    assert obs(x) is x  # returns its input unchanged
    obs.observe(x[:10] + 1)
    lo, hi = obs.calculate_range()
    assert lo.dtype == np.float32 and hi.dtype == np.float32
    assert lo.shape == () and hi.shape == ()
    assert x.min() <= lo <= hi <= x.max() + 1
    # statistics only: nothing as large as a batch, nothing sharing memory with the data
    for a in _arrays(obs):
        assert a.size <= 2049 and not np.shares_memory(a, x)
    # deterministic: the same batches give bit-identical ranges
    again = FACTORIES[name]()
    again.observe(x)
    again.observe(x[:10] + 1)
    assert (lo, hi) == again.calculate_range()
    with pytest.raises(ValueError, match="NaN or infinite"):
        obs.observe(np.array([1.0, np.nan], np.float32))
    obs.reset()
    with pytest.raises(ValueError, match="no data observed"):
        obs.calculate_range()


@pytest.mark.parametrize("name", FACTORIES)
def test_contract_per_channel(name):
    rng = np.random.default_rng(1)
    w = (rng.standard_normal((6, 300)) * np.arange(1, 7)[:, None]).astype(np.float32)
    obs = FACTORIES[name](axis=0)
    obs.observe(w)
    lo, hi = obs.calculate_range()
    assert lo.shape == (6,) and hi.shape == (6,) and lo.dtype == np.float32
    assert np.all(lo <= hi)
    if name == "entropy":  # symmetric (-t, t) with t <= max|x| per channel
        np.testing.assert_array_equal(lo, -hi)
        assert np.all(hi <= np.abs(w).max(1))
    else:
        assert np.all(w.min(1) <= lo) and np.all(hi <= w.max(1))
    # the ranges feed a per-channel quantizer directly
    q = LinearQuantizer(8, symmetric=True, axis=0).set_range(lo, hi)
    assert q.qparams.scale.shape == (6,)
    with pytest.raises(ValueError, match="channels"):
        obs.observe(w[:5])


@pytest.mark.parametrize("name", FACTORIES)
def test_ranges_drive_linear_and_log_quantizers(name):
    rng = np.random.default_rng(2)
    x = rng.laplace(size=20_000).astype(np.float32)
    obs = FACTORIES[name]()
    obs.observe(x)
    lo, hi = obs.calculate_range()
    for q in (LinearQuantizer(8), LinearQuantizer(4, symmetric=True), LogQuantizer(4)):
        fq = copy.deepcopy(q).set_range(lo, hi).fake_quant(x)
        assert fq.dtype == np.float32 and np.all(np.isfinite(fq))
        assert np.mean((fq - x) ** 2) < np.var(x)  # better than predicting 0


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.floats(-1e4, 1e4, allow_nan=False, width=32), min_size=1, max_size=50),
    st.sampled_from(sorted(FACTORIES)),
)
def test_range_inside_data_and_ordered(values, name):
    x = np.array(values, np.float32)
    obs = FACTORIES[name]()
    obs.observe(x)
    lo, hi = obs.calculate_range()
    assert lo <= hi
    if name == "entropy":  # symmetric (-t, t): t <= max|x|, the sign side may exceed the data
        assert hi <= np.abs(x).max()
    else:
        assert x.min() <= lo and hi <= x.max()


def test_integer_and_float16_input_accepted():
    for name, make in FACTORIES.items():
        obs = make()
        obs.observe(np.arange(-5, 6, dtype=np.int32))
        obs.observe(np.array([0.5, -0.5], np.float16))
        lo, hi = obs.calculate_range()
        assert -5 <= lo <= hi <= 5, name
