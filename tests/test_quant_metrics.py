"""Error metrics by hand, and measured vs theoretical noise on large samples (tolerances stated)."""

import math

import numpy as np
import pytest

from refq.quant import (
    DB_PER_BIT,
    LinearQuantizer,
    LogQuantizer,
    PowerOfTwoQuantizer,
    log_relative_error_bound,
    log_sqnr_theory_db,
    max_abs_error,
    max_relative_error,
    minmax_dequantize,
    minmax_quantize,
    mse,
    sqnr_db,
    sqnr_uniform_theory_db,
    uniform_noise_power,
)

N = 400_000


def test_metrics_by_hand():
    x = np.array([1.0, -2.0, 4.0, 0.0])
    xh = np.array([1.5, -2.0, 3.0, 0.0])
    # errors -0.5, 0, 1, 0: MSE = (0.25 + 1) / 4; max 1; SQNR = 10 log10(21 / 1.25)
    assert mse(x, xh) == 0.3125
    assert max_abs_error(x, xh) == 1.0
    assert sqnr_db(x, xh) == pytest.approx(10 * math.log10(21 / 1.25), abs=1e-12)
    # relative: 0.5 / 1, 0, 1 / 4 -> 0.5 (x = 0 skipped)
    assert max_relative_error(x, xh) == 0.5
    assert sqnr_db(x, x) == math.inf


def test_theory_by_hand():
    assert uniform_noise_power(0.5) == 0.25 / 12
    assert sqnr_uniform_theory_db(1) == 0.0  # 1 step over [-A, A]: noise = signal
    assert sqnr_uniform_theory_db(8) == pytest.approx(20 * math.log10(255))
    assert DB_PER_BIT == pytest.approx(6.0206, abs=1e-4)
    assert abs(sqnr_uniform_theory_db(16) - 16 * DB_PER_BIT) < 1e-3  # 6.02 dB/bit for large b
    assert log_relative_error_bound(4.0) == 1.0
    # r -> 1: noise-to-signal -> (ln r)^2 / 12, the uniform-noise law in the log domain
    r = 1.001
    assert log_sqnr_theory_db(r) == pytest.approx(-10 * math.log10(math.log(r) ** 2 / 12), abs=1e-3)


@pytest.mark.parametrize("bits", [3, 4, 6, 8, 10])
def test_uniform_noise_power_measured_vs_theory(bits):
    """Data uniform over the grid's cells: MSE = scale^2 / 12. Tolerance 1 % (the standard
    error of the MSE estimate with N = 400_000 is 0.15 %)."""
    qz = LinearQuantizer(bits=bits).set_range(-1.0, 1.0)
    s = float(qz.qparams.scale)
    z = int(qz.qparams.zero_point)
    lo, hi = (qz.quant_min - z - 0.5) * s, (qz.quant_max - z + 0.5) * s
    x = np.random.default_rng(bits).uniform(lo, hi, N)
    measured = mse(x, qz.fake_quant(x))
    assert measured == pytest.approx(uniform_noise_power(s), rel=0.01)
    assert max_abs_error(x, qz.fake_quant(x)) <= s / 2 * (1 + 1e-5)


@pytest.mark.parametrize("bits", [2, 4, 6, 8, 10, 12])
def test_sqnr_full_range_uniform_seed_form(bits):
    """Seed form on U(-1, 1) with range [-1, 1]: SQNR = 20 log10(2^b - 1). Tolerance 0.05 dB."""
    x = np.random.default_rng(100 + bits).uniform(-1, 1, N)
    xh = minmax_dequantize(minmax_quantize(x, -1.0, 1.0, bits), -1.0, 1.0, bits)
    assert abs(sqnr_db(x, xh) - sqnr_uniform_theory_db(bits)) < 0.05


def test_sqnr_slope_is_six_db_per_bit():
    """LinearQuantizer (affine, float32) on U(-1, 1): each point within 0.2 dB of
    20 log10(2^b - 1); least-squares slope over bits 4..12 within 0.02 dB/bit of the theory's own
    slope (6.07: 20 log10(2^b - 1) is a little steeper than 6.02 b at low b) and within 0.1 of
    6.02 dB/bit."""
    x = np.random.default_rng(7).uniform(-1, 1, N).astype(np.float32)
    bits = np.arange(4, 13)
    meas = np.array([sqnr_db(x, LinearQuantizer(bits=int(b)).fit(x).fake_quant(x)) for b in bits])
    theory = np.array([sqnr_uniform_theory_db(int(b)) for b in bits])
    assert np.all(np.abs(meas - theory) < 0.2)
    slope = np.polyfit(bits, meas, 1)[0]
    assert abs(slope - np.polyfit(bits, theory, 1)[0]) < 0.02
    assert abs(slope - DB_PER_BIT) < 0.1


def _log_uniform(rng, lo, hi, n):
    return rng.choice([-1.0, 1.0], n) * np.exp(rng.uniform(np.log(lo), np.log(hi), n))


@pytest.mark.parametrize("bits", [4, 6, 8])
def test_log_sqnr_measured_vs_theory(bits):
    """Log-uniform magnitudes over whole cells [x_min / sqrt r, x_max sqrt r] (so the log-domain
    error is uniform): SQNR = log_sqnr_theory_db(r). Tolerance 0.05 dB."""
    rng = np.random.default_rng(bits)
    lq = LogQuantizer(bits=bits).set_range(-1.0, 1.0)
    r = float(lq.level_ratio())
    x = _log_uniform(rng, float(lq.x_min) / np.sqrt(r), np.sqrt(r), N)
    assert abs(sqnr_db(x, lq.fake_quant(x)) - log_sqnr_theory_db(r)) < 0.05


def test_pow2_sqnr_is_log_theory_with_ratio_two():
    pq = PowerOfTwoQuantizer(bits=5).set_range(-1.0, 1.0)  # values 2^-14 .. 2^0
    x = _log_uniform(np.random.default_rng(0), 2.0**-14.5, 2.0**0.5, N)
    assert abs(sqnr_db(x, pq.fake_quant(x)) - log_sqnr_theory_db(2.0)) < 0.05


def test_log_sqnr_is_amplitude_independent_linear_is_not():
    """Shrinking the signal 100x (fixed quantizers): log SQNR moves < 0.2 dB, linear loses > 30 dB
    (theory: 40 dB)."""
    rng = np.random.default_rng(1)
    big = _log_uniform(rng, 1e-3, 1.0, N)
    small = big / 100
    lq = LogQuantizer(bits=8).set_range(-1.0, 1.0)
    lin = LinearQuantizer(bits=8, symmetric=True).set_range(-1.0, 1.0)
    assert abs(sqnr_db(big, lq.fake_quant(big)) - sqnr_db(small, lq.fake_quant(small))) < 0.2
    drop = sqnr_db(big, lin.fake_quant(big)) - sqnr_db(small, lin.fake_quant(small))
    assert drop > 30


def test_errors():
    with pytest.raises(ValueError, match="shape"):
        mse(np.ones(2), np.ones(3))
    with pytest.raises(ValueError, match="all-zero signal"):
        sqnr_db(np.zeros(2), np.ones(2))
    with pytest.raises(ValueError, match="NaN or infinite"):
        mse(np.array([np.nan]), np.array([0.0]))
    with pytest.raises(ValueError, match="empty"):
        mse(np.array([]), np.array([]))
    with pytest.raises(ValueError, match="scale must be finite and > 0"):
        uniform_noise_power(0.0)
    with pytest.raises(ValueError, match="level ratio must be > 1"):
        log_relative_error_bound(1.0)
    with pytest.raises(ValueError, match="nonzero"):
        max_relative_error(np.zeros(2), np.zeros(2))
