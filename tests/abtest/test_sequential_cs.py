"""Asymptotic confidence sequences (abtest/sequential.py): reference numbers from GrowthBook's gbstats 0.8.0
``SequentialTwoSidedTTest`` (pasted as literals; gbstats is never imported here), codes, and seeded peeking
simulations vectorised over experiments by calling the pure formulas (cs_half_width, cs_log_e) on arrays."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
from scipy import stats

from abtest.frequentist import two_proportions, welch
from abtest.lift import lift_moments, relative_lift_means
from abtest.results import StatCode
from abtest.sequential import (
    confidence_sequence_means,
    confidence_sequence_proportions,
    cs_half_width,
    cs_log_e,
    cs_rho,
    msprt,
)

A1, B1 = [1.0, 2.0, 3.0, 4.0], [2.0, 3.0, 4.0, 6.0]
A2, B2 = (np.arange(40) % 7) + 1.0, (np.arange(50) % 9) * 1.1 + 0.5
P1, P2 = (100, 1000, 120, 1000), (37, 250, 52, 260)
TOL = 1e-12
ALPHA = 0.05

# SequentialTwoSidedTTest(stat_a, stat_b, SequentialConfig(alpha=0.05, difference_type=...)) with the default
# sequential_tuning_parameter=5000 -> expected, ci[0], ci[1], p_value
GBSTATS = [
    (confidence_sequence_means, (A1, B1), False, [1.25, -22.17388580845657, 24.67388580845657, 0.9977623916067586]),
    (confidence_sequence_means, (A1, B1), True, [0.5, -10.800107688549977, 11.800107688549977, 1.0]),
    (
        confidence_sequence_means,
        (A2, B2),
        False,
        [0.8050000000000015, -2.7708965817444606, 4.380896581744464, 0.9153588794658145],
    ),
    (
        confidence_sequence_means,
        (A2, B2),
        True,
        [0.20774193548387135, -0.7921056643520046, 1.2075895353197472, 0.936650933823902],
    ),
    (
        confidence_sequence_proportions,
        P1,
        False,
        [0.01999999999999999, -0.023688259076519294, 0.06368825907651927, 0.9388856039651486],
    ),
    (confidence_sequence_proportions, P1, True, [0.1999999999999999, -0.2790699964885094, 0.6790699964885092, 1.0]),
    (
        confidence_sequence_proportions,
        P2,
        False,
        [0.05200000000000002, -0.0763803343078569, 0.18038033430785694, 0.783790124265754],
    ),
    (
        confidence_sequence_proportions,
        P2,
        True,
        [0.3513513513513515, -0.6647430902569962, 1.3674457929596993, 0.9074412329191569],
    ),
]


@pytest.mark.parametrize(("fn", "args", "relative", "expected"), GBSTATS)
def test_confidence_sequence_matches_gbstats(fn, args, relative, expected) -> None:
    r = fn(*args, relative=relative)
    assert r.code is StatCode.OK
    assert [r.estimate, r.ci_low, r.ci_high, r.p_value] == pytest.approx(expected, abs=TOL)


def test_confidence_sequence_by_hand() -> None:
    # A1, B1: diff = 1.25, V = (5/3)/4 + (8.75/3)/4 = 55/48, N = 8
    la = math.log(ALPHA)
    r2 = (-2 * la + math.log(1 - 2 * la)) / 5000
    assert cs_rho(ALPHA, 5000) ** 2 == pytest.approx(r2, abs=TOL)
    v, n, g = 55 / 48, 8, 8 * r2 + 1
    half = math.sqrt(v * n) * math.sqrt(2 * g * math.log(math.sqrt(g) / ALPHA) / (n * n * r2))
    log_e = r2 * 1.25**2 * n / v / (2 * g) - 0.5 * math.log(g)
    r = confidence_sequence_means(A1, B1)
    assert (r.ci_low, r.ci_high) == pytest.approx((1.25 - half, 1.25 + half), abs=TOL)
    assert r.statistic == pytest.approx(log_e, abs=TOL)
    assert r.p_value == pytest.approx(min(1.0, math.exp(-log_e)), abs=TOL)
    # relative=True reuses the lift helper's delta-method variance
    est, var = lift_moments(2.5, 5 / 3, 4, 3.75, 8.75 / 3, 4)
    rr = confidence_sequence_means(A1, B1, relative=True)
    assert rr.ci_high - rr.estimate == pytest.approx(float(cs_half_width(var, 8, ALPHA)), abs=TOL)
    assert rr.estimate == pytest.approx(float(est), abs=TOL)


def test_p_below_alpha_iff_zero_outside_the_sequence() -> None:
    """p < alpha <=> |estimate| > half-width (the CS is the inversion of the e-value test)."""
    rng = np.random.default_rng(5)
    d, v, n = rng.normal(0, 0.05, 5000), rng.uniform(1e-4, 1e-3, 5000), rng.integers(100, 20000, 5000)
    p = np.minimum(1.0, np.exp(-cs_log_e(d, v, n, ALPHA)))
    outside = np.abs(d) > cs_half_width(v, n, ALPHA)
    np.testing.assert_array_equal(p < ALPHA, outside)


# ------------------------------------------------------------------------------------------------ codes


def _assert_bad(r, code: StatCode) -> None:
    assert r.code is code
    assert all(math.isnan(v) for v in (r.estimate, r.ci_low, r.ci_high, r.statistic, r.p_value))
    json.loads(json.dumps(dataclasses.asdict(r)))


@pytest.mark.parametrize(
    ("a", "b", "kwargs", "code"),
    [
        ([1.0, np.inf], [1.0, 2.0], {}, StatCode.BAD_INPUT),
        ([1.0, 2.0], [1.0, 2.0], {"alpha": 0.0}, StatCode.BAD_INPUT),
        ([1.0, 2.0], [1.0, 2.0], {"tuning": 0.0}, StatCode.BAD_INPUT),
        ([1.0, 2.0], [1.0, 2.0], {"tuning": float("nan")}, StatCode.BAD_INPUT),
        ([1.0, 2.0], [], {}, StatCode.EMPTY_ARM),
        ([1.0, 2.0], [3.0], {}, StatCode.TOO_FEW),
        ([-1.0, 1.0], [1.0, 2.0], {"relative": True}, StatCode.ZERO_BASELINE),
        ([2.0, 2.0], [1.0, 2.0], {}, StatCode.ZERO_VARIANCE),
        ([1.0, 2.0], [2.0, 2.0], {"relative": True}, StatCode.ZERO_VARIANCE),
    ],
)
def test_mean_codes(a, b, kwargs, code) -> None:
    _assert_bad(confidence_sequence_means(a, b, **kwargs), code)


@pytest.mark.parametrize(
    ("args", "kwargs", "code"),
    [
        ((5, 4, 1, 10), {}, StatCode.BAD_INPUT),
        ((1, 10, 1, 10), {"tuning": -1.0}, StatCode.BAD_INPUT),
        ((0, 0, 1, 10), {}, StatCode.EMPTY_ARM),
        ((1, 1, 1, 10), {}, StatCode.TOO_FEW),
        ((0, 10, 1, 10), {"relative": True}, StatCode.ZERO_BASELINE),
        ((0, 10, 1, 10), {}, StatCode.ZERO_VARIANCE),  # absolute: no baseline check, but p_a(1 - p_a) = 0
        ((3, 10, 10, 10), {}, StatCode.ZERO_VARIANCE),
    ],
)
def test_proportion_codes(args, kwargs, code) -> None:
    _assert_bad(confidence_sequence_proportions(*args, **kwargs), code)


def test_absolute_sequence_allows_a_zero_control_mean() -> None:
    r = confidence_sequence_means([-1.0, 1.0, 0.0], [1.0, 2.0, 3.0])  # gbstats refuses this; B - A is defined
    assert r.code is StatCode.OK and r.estimate == pytest.approx(2.0, abs=TOL)
    assert r.name == "confidence_sequence_means"
    assert confidence_sequence_proportions(*P1).name == "confidence_sequence_proportions"


# ------------------------------------------------------------------------------------- peeking simulations

K, LOOKS = 2000, 30


def _peek_means(effect: float, k: int, seed: int, step: int = 100):
    """k experiments, N(0, 1) vs N(effect, 1), `step` units per arm added before each of LOOKS looks, summarised
    by running sums. Returns (CS excluded 0 at some look, naive Welch excluded 0 at some look, first CS look)."""
    rng = np.random.default_rng(seed)
    sa, qa, sb, qb = (np.zeros(k) for _ in range(4))
    cs_any, naive_any, first = np.zeros(k, bool), np.zeros(k, bool), np.full(k, -1)
    for look in range(1, LOOKS + 1):
        xa, xb = rng.normal(0, 1, (k, step)), rng.normal(effect, 1, (k, step))
        sa, qa = sa + xa.sum(1), qa + (xa**2).sum(1)
        sb, qb = sb + xb.sum(1), qb + (xb**2).sum(1)
        n = look * step
        va, vb = (qa - sa**2 / n) / (n - 1), (qb - sb**2 / n) / (n - 1)
        d, v = (sb - sa) / n, (va + vb) / n
        out = np.abs(d) > cs_half_width(v, 2 * n, ALPHA)
        first[(first < 0) & out] = look
        cs_any |= out
        df = v**2 / ((va / n) ** 2 / (n - 1) + (vb / n) ** 2 / (n - 1))
        naive_any |= np.abs(d) > stats.t.ppf(1 - ALPHA / 2, df) * np.sqrt(v)
    return cs_any, naive_any, first


def test_cs_controls_false_positives_under_continuous_peeking() -> None:
    """2,000 A/A experiments, 30 looks of +100 units per arm (N = 200 ... 6000, around the tuning 5000).
    CS: share with 0 outside the sequence at ANY look must be <= alpha (no +2 SE slack); the same peeking
    with a fixed-horizon Welch CI must exceed 2 alpha. Measured (seed 21): CS 0.0150, naive Welch 0.289."""
    cs_any, naive_any, _ = _peek_means(0.0, K, seed=21)
    assert cs_any.mean() <= ALPHA, cs_any.mean()
    assert naive_any.mean() > 2 * ALPHA, naive_any.mean()


def test_relative_cs_for_rates_controls_false_positives_under_peeking() -> None:
    """Same for the relative lift of a 10% rate (delta-method variance from lift_moments), 30 looks of +200
    units per arm. Measured (seed 22): CS 0.0225, naive normal interval 0.287."""
    rng = np.random.default_rng(22)
    ca, cb = np.zeros(K), np.zeros(K)
    cs_any, naive_any = np.zeros(K, bool), np.zeros(K, bool)
    for look in range(1, LOOKS + 1):
        ca, cb = ca + rng.binomial(200, 0.1, K), cb + rng.binomial(200, 0.1, K)
        n = look * 200
        pa, pb = ca / n, cb / n
        est, var = lift_moments(pa, pa * (1 - pa), n, pb, pb * (1 - pb), n)
        cs_any |= np.abs(est) > cs_half_width(var, 2 * n, ALPHA)
        naive_any |= np.abs(est) > stats.norm.ppf(1 - ALPHA / 2) * np.sqrt(var)
    assert cs_any.mean() <= ALPHA, cs_any.mean()
    assert naive_any.mean() > 2 * ALPHA, naive_any.mean()


def test_vectorised_formula_equals_the_function_at_each_look() -> None:
    rng = np.random.default_rng(3)
    a, b = rng.normal(0, 1, 600), rng.normal(0.1, 2, 600)
    for n in (50, 200, 600):
        r = confidence_sequence_means(a[:n], b[:n])
        v = a[:n].var(ddof=1) / n + b[:n].var(ddof=1) / n
        assert r.ci_high - r.estimate == pytest.approx(float(cs_half_width(v, 2 * n, ALPHA)), abs=TOL)
        assert r.statistic == pytest.approx(float(cs_log_e(r.estimate, v, 2 * n, ALPHA)), abs=TOL)


def test_cs_contains_the_fixed_horizon_interval() -> None:
    """The CS is wider than the fixed-horizon interval (the price of peeking). At n = 1000 per arm (N = 2000,
    tuning 5000) the width ratio CS / Welch measured 1.593 (absolute, seed 24) and 1.593 (relative lift
    vs relative_lift_means); for a normal interval the ratio is 2.60 at N = 200, 1.55 at N = 5000 (its
    minimum is near N = tuning) and 1.70 at N = 100,000."""
    rng = np.random.default_rng(24)
    a, b = rng.normal(0, 1, 1000), rng.normal(0, 1, 1000)
    cs, w = confidence_sequence_means(a, b), welch(a, b)
    assert cs.ci_low < w.ci_low and w.ci_high < cs.ci_high
    assert (cs.ci_high - cs.ci_low) / (w.ci_high - w.ci_low) == pytest.approx(1.593, abs=0.01)
    a, b = rng.normal(10, 3, 1000), rng.normal(10, 3, 1000)
    cs, w = confidence_sequence_means(a, b, relative=True), relative_lift_means(a, b)
    assert cs.ci_low < w.ci_low and w.ci_high < cs.ci_high
    assert (cs.ci_high - cs.ci_low) / (w.ci_high - w.ci_low) == pytest.approx(1.593, abs=0.01)
    cp, tp = confidence_sequence_proportions(*P1), two_proportions(*P1)
    assert cp.ci_low < tp.ci_low and tp.ci_high < cp.ci_high
    assert msprt(a, b, tau=0.5).code is StatCode.OK  # the mSPRT functions are untouched


def test_cs_detects_a_real_effect_eventually() -> None:
    """500 experiments with a 0.15 sd effect, same 30 looks: the CS excludes 0 by the last look in nearly
    all. Measured (seed 23): 0.998 detected, median first detection at look 9 (N = 1800)."""
    cs_any, _, first = _peek_means(0.15, 500, seed=23)
    assert cs_any.mean() >= 0.95, cs_any.mean()
    assert np.median(first[first > 0]) <= 15
