"""Rounding modes: hand-worked ties, float32 edge cases, stochastic rounding seeded and unbiased."""

import numpy as np
import pytest

from refq.quant import LinearQuantizer, round_values

TIES = np.array([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5])


def test_half_even_by_hand():
    assert round_values(TIES, "half_even").tolist() == [-2, -2, 0, 0, 2, 2]


def test_half_away_by_hand():
    assert round_values(TIES, "half_away").tolist() == [-3, -2, -1, 1, 2, 3]


def test_floor_by_hand():
    assert round_values(np.array([-0.1, 0.9, 2.0, -2.0]), "floor").tolist() == [-1, 0, 2, -2]


def test_non_ties_agree_across_deterministic_modes():
    v = np.array([-2.7, -0.2, 0.3, 1.6, 7.49])
    expected = [-3, 0, 0, 2, 7]
    assert round_values(v, "half_even").tolist() == expected
    assert round_values(v, "half_away").tolist() == expected


def test_half_away_float32_just_below_half():
    # the classic bug: float32(0.49999997) + 0.5 rounds to 1.0; the right answer is 0
    v = np.array([np.nextafter(np.float32(0.5), np.float32(0))], dtype=np.float32)
    assert round_values(v, "half_away")[0] == 0
    assert round_values(-v, "half_away")[0] == 0
    assert round_values(v, "half_away").dtype == np.float32


def test_stochastic_is_seeded():
    v = np.linspace(-3, 3, 1001)
    a = round_values(v, "stochastic", np.random.default_rng(7))
    b = round_values(v, "stochastic", np.random.default_rng(7))
    c = round_values(v, "stochastic", np.random.default_rng(8))
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_stochastic_only_neighbours_and_integers_stay():
    v = np.random.default_rng(0).uniform(-10, 10, 10_000)
    r = round_values(v, "stochastic", np.random.default_rng(1))
    assert np.all((r == np.floor(v)) | (r == np.ceil(v)))
    ints = np.arange(-5.0, 6.0)
    assert np.array_equal(round_values(ints, "stochastic", np.random.default_rng(1)), ints)


@pytest.mark.parametrize("frac", [0.1, 0.25, 0.5, 0.9])
def test_stochastic_unbiased(frac):
    """Mean of stochastic rounding of v = 3 + frac over n = 200_000 draws is v. The standard error
    is sqrt(frac (1 - frac) / n) <= 0.0012; tolerance 5 standard errors (<= 0.006)."""
    n = 200_000
    v = np.full(n, 3.0 + frac)
    r = round_values(v, "stochastic", np.random.default_rng(123))
    se = np.sqrt(frac * (1 - frac) / n)
    assert abs(r.mean() - v[0]) < 5 * se
    # half_even and floor are biased on the same data
    assert abs(round_values(v, "floor").mean() - v[0]) == pytest.approx(frac)


def test_stochastic_quantizer_unbiased_fake_quant():
    """E[fake_quant(x)] = x inside the range for stochastic rounding (a 4-bit grid, 100_000 draws
    of the same x; tolerance 5 standard errors of a value that is +-scale away)."""
    qz = LinearQuantizer(bits=4, rounding="stochastic", seed=3).set_range(-1.0, 1.0)
    x = np.full(100_000, 0.3337)
    m = qz.fake_quant(x).astype(np.float64).mean()
    s = float(qz.qparams.scale)
    assert abs(m - 0.3337) < 5 * s / 2 / np.sqrt(x.size)
    # and half_even is off by a deterministic amount for the same x
    det = LinearQuantizer(bits=4).set_range(-1.0, 1.0).fake_quant(x[:1])[0]
    assert abs(det - 0.3337) > 10 * abs(m - 0.3337)


def test_stochastic_quantizer_same_seed_same_codes():
    x = np.random.default_rng(0).normal(size=1000)
    a = LinearQuantizer(bits=4, rounding="stochastic", seed=5).fit(x).quantize(x)
    b = LinearQuantizer(bits=4, rounding="stochastic", seed=5).fit(x).quantize(x)
    assert np.array_equal(a, b)


def test_bad_modes():
    with pytest.raises(ValueError, match="unknown rounding mode 'nearest'"):
        round_values(np.ones(2), "nearest")
    with pytest.raises(ValueError, match="needs rng"):
        round_values(np.ones(2), "stochastic")
    with pytest.raises(ValueError, match="unknown rounding mode"):
        LinearQuantizer(rounding="up")
