"""The quantizer contract: every built-in quantizer and a user-defined one behave the same way
through the interface (quantize / dequantize / fake_quant, set_range / fit, deepcopy)."""

import copy

import numpy as np
import pytest

from refq.quant import (
    CalibratableQuantizer,
    LinearQuantizer,
    LogQuantizer,
    PowerOfTwoQuantizer,
    Quantizer,
    pack_bits,
    quantization_report,
    unpack_bits,
)


class TernaryQuantizer:
    """A user-defined quantizer (Li et al. 2016, arXiv:1605.04711, ternary weights): codes
    {-1, 0, +1}, value ``code * alpha``; ``|x| < delta`` -> 0 with ``delta = 0.7 * mean|x|``
    approximated here from the range as ``delta = 0.35 * max|x|``, ``alpha = max|x| / 2``."""

    bits = 2
    quant_min, quant_max = -1, 1
    axis = None

    def __init__(self):
        self.alpha = None

    def set_range(self, min_val, max_val):
        amax = max(abs(float(min_val)), abs(float(max_val)))
        self.alpha, self.delta = amax / 2, 0.35 * amax
        return self

    def fit(self, x):
        return self.set_range(np.min(x), np.max(x))

    def quantize(self, x):
        x = np.asarray(x)
        return (np.sign(x) * (np.abs(x) >= self.delta)).astype(np.int8)

    def dequantize(self, q):
        return (np.asarray(q) * self.alpha).astype(np.float32)

    def fake_quant(self, x):
        return self.dequantize(self.quantize(x))


def make_all():
    return [
        LinearQuantizer(bits=4),
        LinearQuantizer(bits=8, symmetric=True, narrow_range=True),
        LinearQuantizer(bits=4, signed=False),
        LogQuantizer(bits=4),
        PowerOfTwoQuantizer(bits=4),
        TernaryQuantizer(),
    ]


X = np.random.default_rng(0).normal(size=(64,)).astype(np.float32)


def test_user_defined_quantizer_by_hand():
    t = TernaryQuantizer().set_range(-2.0, 1.0)  # alpha 1, delta 0.7
    assert t.quantize(np.array([0.5, -0.8, 1.9, 0.0])).tolist() == [0, -1, 1, 0]
    assert t.fake_quant(np.array([0.5, -0.8, 1.9])).tolist() == [0.0, -1.0, 1.0]


@pytest.mark.parametrize("qz", make_all(), ids=lambda q: type(q).__name__)
def test_contract(qz):
    assert isinstance(qz, Quantizer)
    assert isinstance(qz, CalibratableQuantizer)
    assert qz.fit(X) is qz
    assert qz.set_range(float(X.min()), float(X.max())) is qz
    q = qz.quantize(X)
    assert np.issubdtype(q.dtype, np.integer)
    assert q.min() >= qz.quant_min and q.max() <= qz.quant_max
    xh = qz.dequantize(q)
    assert xh.dtype == np.float32 and xh.shape == X.shape
    assert np.array_equal(qz.fake_quant(X), xh)


@pytest.mark.parametrize("qz", make_all(), ids=lambda q: type(q).__name__)
def test_report_works_for_any_quantizer(qz):
    r = quantization_report(qz.fit(X), X)
    assert r["max_abs_error"] >= 0 and r["mse"] >= 0
    assert r["sqnr_db"] > 0  # every quantizer keeps more signal than noise on Gaussian data
    assert r["mse"] == pytest.approx(float(np.mean((qz.fake_quant(X) - X.astype(np.float64)) ** 2)))


@pytest.mark.parametrize("qz", make_all(), ids=lambda q: type(q).__name__)
def test_deepcopy_is_independent(qz):
    """Observers copy a quantizer before set_range: the original must not move."""
    qz.set_range(-1.0, 1.0)
    before = qz.fake_quant(X)
    cp = copy.deepcopy(qz).set_range(-10.0, 10.0)
    assert np.array_equal(qz.fake_quant(X), before)
    assert not np.array_equal(cp.fake_quant(X), before)


@pytest.mark.parametrize("qz", make_all(), ids=lambda q: type(q).__name__)
def test_low_bit_codes_pack_losslessly(qz):
    qz.fit(X)
    if qz.bits > 4:
        pytest.skip("packing covers 1, 2, 4-bit fields; this one is 8-bit")
    q = qz.quantize(X)
    field = 4 if qz.bits > 2 else 2
    signed = np.issubdtype(q.dtype, np.signedinteger)
    back = unpack_bits(pack_bits(q, field), field, q.shape[-1], signed)
    assert np.array_equal(qz.dequantize(back), qz.dequantize(q))


def test_user_defined_quantizer_drives_a_range_search():
    """Observers that search a clipping range take the target grid from ``quantizer=``: a
    user-defined quantizer works there too (the ternary grid wants a range well inside max|x|)."""
    cal = pytest.importorskip("refq.calibration")
    x = np.random.default_rng(0).normal(size=10_000)
    obs = cal.HistogramObserver(quantizer=TernaryQuantizer())
    obs.observe(x)
    lo, hi = obs.calculate_range()
    assert lo < 0 < hi < 0.8 * np.abs(x).max()
    searched = TernaryQuantizer().set_range(lo, hi)
    naive = TernaryQuantizer().fit(x)
    assert mse_of(searched, x) < mse_of(naive, x)


def mse_of(qz, x):
    return float(np.mean((qz.fake_quant(x) - x) ** 2))
