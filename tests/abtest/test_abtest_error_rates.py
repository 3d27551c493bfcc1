"""Measured error rates of the A/B statistics and the promotion gate (issue 6, "Measured error rates").

Seeded, vectorised simulations that call the real functions in :mod:`abtest.stats` and
:func:`abtest.gate.decide` and assert real numbers:

1. A/A (H0 true, at its boundary for the one-sided tests): false-positive rate within alpha +/- 2 SE,
   SE = sqrt(alpha (1 - alpha) / R), R = 2,000 experiments, for every fixed-horizon test the project uses.
   The two count-based tests also get their *exact* size (sum of binomial probabilities over every count
   pair that carries mass, each pair run through the real function): no Monte Carlo noise there.
2. Sequential: the mSPRT always-valid p-value under peeking after each of 20 batches stays <= alpha + 2 SE;
   the naive fixed-horizon Welch test with the same peeking rejects far more often (> 2 alpha).
3. Power: at the n that ``power_means`` / ``power_proportions`` return for 80% power, the real test
   (``welch`` / ``two_proportions`` on simulated data) rejects in 0.80 +/- 0.03; ``mde_*`` round trips.
4. SRM: 52/48 on 20,000 requests is flagged at 0.001; 50/50 is flagged at a rate consistent with 0.001.
5. The gate end to end: A/A experiments promote in <= alpha + 2 SE, fixed-horizon and sequential.

Every test records its measured rate in ``MEASURED``; the last test prints the table
(``uv run pytest tests/abtest/test_abtest_error_rates.py -q -s``). Each number quoted in a comment below was
measured with ``SEED = 0``; each test draws from ``np.random.default_rng([SEED, k])`` with its own k.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from abtest.gate import GateCode, GateParams, decide
from abtest.stats import (
    StatCode,
    TestResult,
    always_valid_p_values,
    mann_whitney,
    mde_means,
    mde_proportions,
    msprt,
    msprt_log_lr,
    non_inferiority,
    non_inferiority_proportions,
    paired_t,
    power_means,
    power_proportions,
    srm,
    superiority_cost,
    two_proportions,
    welch,
    wilcoxon,
)

SEED = 0
ALPHA = 0.05
R = 2000  # simulated experiments per rate
N = 500  # units per arm in the A/A tests
SE = math.sqrt(ALPHA * (1 - ALPHA) / R)  # 0.00487: the band alpha +/- 2 SE is [0.0403, 0.0597]

# name -> (measured rate, target, lower bound, upper bound, replications); filled by the tests, printed last
MEASURED: dict[str, tuple[float, float, float, float, int]] = {}


def _record(name: str, rate: float, target: float, lo: float, hi: float, reps: int) -> float:
    MEASURED[name] = (float(rate), float(target), float(lo), float(hi), int(reps))
    return float(rate)


def _rng(k: int) -> np.random.Generator:
    return np.random.default_rng([SEED, k])


def _reject_rate(results: list[TestResult]) -> float:
    """Share of experiments with p < alpha; every result must be OK (a bad code is a failure, not a pass)."""
    assert all(r.code is StatCode.OK for r in results), {r.code for r in results}
    return float(np.mean([r.p_value < r.alpha for r in results]))


# ----------------------------------------------------------------------- 1. A/A, fixed-horizon tests


def _normal_aa(rng: np.random.Generator, shift_b: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Quality-like scores: N(0.7, 0.15) per unit, R experiments x N units per arm."""
    return rng.normal(0.7, 0.15, (R, N)), rng.normal(0.7 + shift_b, 0.15, (R, N))


def _lognormal_cost(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Skewed cost per request (lognormal, median $0.002, sigma 0.5), identical in both arms."""
    return rng.lognormal(math.log(0.002), 0.5, (R, N)), rng.lognormal(math.log(0.002), 0.5, (R, N))


def _paired(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Offline replay: both arms answer the same prompts; per-prompt difficulty N(0.7, 0.15) shared by
    the pair plus independent per-arm noise N(0, 0.1), so d = b - a is symmetric about 0."""
    base = rng.normal(0.7, 0.15, (R, N))
    return base + rng.normal(0.0, 0.1, (R, N)), base + rng.normal(0.0, 0.1, (R, N))


# (name, data generator, test call). One-sided tests sit exactly on the boundary of their H0.
SAMPLE_TESTS: list[tuple[str, int, Callable, Callable]] = [
    ("welch, A/A normal", 1, _normal_aa, lambda a, b: welch(a, b, ALPHA)),
    ("mann_whitney, A/A lognormal", 2, _lognormal_cost, lambda a, b: mann_whitney(a, b, ALPHA)),
    (
        "non_inferiority at margin 0.02",
        3,
        lambda g: _normal_aa(g, shift_b=-0.02),
        lambda a, b: non_inferiority(a, b, 0.02, ALPHA, higher_is_better=True),
    ),
    ("superiority_cost, A/A lognormal", 4, _lognormal_cost, lambda a, b: superiority_cost(a, b, 0.0, ALPHA)),
    ("paired_t, paired A/A", 5, _paired, lambda a, b: paired_t(a, b, ALPHA)),
    ("wilcoxon, paired A/A", 6, _paired, lambda a, b: wilcoxon(a, b, ALPHA)),
]


@pytest.mark.parametrize(("name", "k", "data", "test"), SAMPLE_TESTS, ids=[t[0].split(",")[0] for t in SAMPLE_TESTS])
def test_aa_false_positive_rate_of_sample_tests(name: str, k: int, data: Callable, test: Callable) -> None:
    """A/A (or at the H0 boundary), 2,000 experiments x 500 units per arm, alpha 0.05; band [0.0403, 0.0597].
    Measured with seed 0: welch 0.0515, mann_whitney 0.0465, non_inferiority at the margin 0.0440,
    superiority_cost 0.0535, paired_t 0.0455, wilcoxon 0.0590 (near the top of the band by chance: the
    same design with 20,000 experiments and another seed gave 0.0482, SE 0.0015)."""
    a, b = data(_rng(k))
    rate = _record(name, _reject_rate([test(a[i], b[i]) for i in range(R)]), ALPHA, ALPHA - 2 * SE, ALPHA + 2 * SE, R)
    assert abs(rate - ALPHA) <= 2 * SE, (name, rate)


def test_welch_false_positive_rate_with_unequal_variances_and_sizes() -> None:
    """Equal means but sd 1 vs 3 and 500 vs 150 units: the case Welch exists for (a pooled-variance t-test
    would reject ~ 0.003 here). Measured with seed 0: 0.0535."""
    rng = _rng(7)
    a, b = rng.normal(0.0, 1.0, (R, N)), rng.normal(0.0, 3.0, (R, 150))
    rate = _record(
        "welch, equal means, sd 1 vs 3, n 500 vs 150",
        _reject_rate([welch(a[i], b[i], ALPHA) for i in range(R)]),
        ALPHA,
        ALPHA - 2 * SE,
        ALPHA + 2 * SE,
        R,
    )
    assert abs(rate - ALPHA) <= 2 * SE


def _exact_size(call: Callable[[int, int], TestResult], n: int, p_a: float, p_b: float, width: float = 6.0) -> float:
    """Exact rejection probability: sum of P(S_a = i) P(S_b = j) over every (i, j) within `width` sd of the
    means (the mass outside is < 1e-8), each pair run through the real function."""

    def support(p: float) -> np.ndarray:
        sd = math.sqrt(n * p * (1 - p))
        return np.arange(max(0, math.floor(n * p - width * sd)), min(n, math.ceil(n * p + width * sd)) + 1)

    ia, ib = support(p_a), support(p_b)
    wa, wb = stats.binom.pmf(ia, n, p_a), stats.binom.pmf(ib, n, p_b)
    assert wa.sum() > 1 - 1e-8 and wb.sum() > 1 - 1e-8
    reject = np.array([[call(int(i), int(j)).p_value < ALPHA for j in ib] for i in ia])
    return float(wa @ reject @ wb)


def test_aa_false_positive_rate_of_two_proportions() -> None:
    """Two-sided pooled z-test, rate 0.2 in both arms, 500 per arm. Measured with seed 0: simulated 0.0485;
    exact size 0.0498 (the integer lattice of counts keeps it a little off 0.05)."""
    rng = _rng(8)
    p, sa, sb = 0.2, rng.binomial(N, 0.2, R), rng.binomial(N, 0.2, R)
    rate = _reject_rate([two_proportions(int(x), N, int(y), N, ALPHA) for x, y in zip(sa, sb, strict=True)])
    _record("two_proportions, A/A p=0.2", rate, ALPHA, ALPHA - 2 * SE, ALPHA + 2 * SE, R)
    exact = _exact_size(lambda i, j: two_proportions(i, N, j, N, ALPHA), N, p, p)
    _record("two_proportions, exact size", exact, ALPHA, ALPHA - 0.005, ALPHA + 0.005, 0)
    assert abs(rate - ALPHA) <= 2 * SE
    assert exact == pytest.approx(0.0498, abs=5e-4)  # 0.049801 from an independent grid computation


def test_aa_false_positive_rate_of_non_inferiority_proportions_at_the_margin() -> None:
    """One-sided unpooled Wald z-test, champion 0.20, challenger 0.15 = worse by exactly the margin 0.05
    (higher is better), 500 per arm; and the gate's direction (error rate, lower is better): champion 0.10,
    challenger 0.15, margin 0.05. Measured with seed 0: simulated 0.0510 and 0.0555; exact sizes 0.0505 and
    0.0510 (the Wald SE is estimated at the observed rates, not at the boundary)."""
    rng = _rng(9)
    m = 0.05
    cases = [("higher is better, 0.20 -> 0.15", 0.20, 0.15, True), ("lower is better, 0.10 -> 0.15", 0.10, 0.15, False)]
    exact_expected = {True: 0.050530, False: 0.051016}  # from an independent grid computation of the formula
    for label, pa, pb, hib in cases:
        sa, sb = rng.binomial(N, pa, R), rng.binomial(N, pb, R)
        results = [
            non_inferiority_proportions(int(x), N, int(y), N, m, ALPHA, higher_is_better=hib)
            for x, y in zip(sa, sb, strict=True)
        ]
        rate = _record(
            f"non_inferiority_proportions, {label}", _reject_rate(results), ALPHA, ALPHA - 2 * SE, ALPHA + 2 * SE, R
        )
        exact = _exact_size(
            lambda i, j, pa=pa, hib=hib: non_inferiority_proportions(i, N, j, N, m, ALPHA, higher_is_better=hib),
            N,
            pa,
            pb,
        )
        _record(f"non_inferiority_proportions, {label}, exact", exact, ALPHA, ALPHA - 0.005, ALPHA + 0.005, 0)
        assert abs(rate - ALPHA) <= 2 * SE, (label, rate)
        assert exact == pytest.approx(exact_expected[hib], abs=5e-4), (label, exact)


# --------------------------------------------------------------------------- 2. sequential: peeking


def _looks(rng: np.random.Generator, reps: int, batch: int, n_looks: int, mean: float, sd: float):
    """Raw data (reps x n per arm) and, at every look (batch, 2 batch, ...), mean_b - mean_a and its Welch
    variance V = s_a^2 / n + s_b^2 / n and degrees of freedom, vectorised across experiments."""
    n = batch * n_looks
    a, b = rng.normal(mean, sd, (reps, n)), rng.normal(mean, sd, (reps, n))
    k = np.arange(batch, n + 1, batch)
    parts = []
    for x in (a, b):
        c = x - mean  # centre before the running sums (no cancellation in sum x^2 - k mean^2)
        m = np.cumsum(c, axis=1)[:, k - 1] / k
        var = (np.cumsum(c * c, axis=1)[:, k - 1] - k * m**2) / (k - 1)
        parts.append((m, var / k))
    (ma, va), (mb, vb) = parts
    v = va + vb
    df = v**2 / (va**2 / (k - 1) + vb**2 / (k - 1))
    return a, b, k, mb - ma, v, df


def test_msprt_controls_false_positives_under_peeking_and_naive_welch_does_not() -> None:
    """A/A on the quality scale (N(0.7, 0.15)), 2,000 experiments, a look after every batch of 50 units per
    arm, 20 looks (1,000 per arm at the end), mixture sd tau 0.05 (the gate's default ``msprt_tau``); an
    experiment is a false positive if it ever reaches p < 0.05.
    Measured with seed 0: mSPRT 0.0195 (conservative: Ville's inequality caps the rate at alpha over
    unlimited continuous monitoring, and 20 discrete looks use only part of that); naive Welch with the same
    peeking 0.2635; naive Welch at the last look only 0.0540."""
    tau, batch, n_looks = 0.05, 50, 20
    a, b, k, diff, v, df = _looks(_rng(10), R, batch, n_looks, 0.7, 0.15)
    running = np.minimum.accumulate(np.minimum(1.0, np.exp(-msprt_log_lr(diff, v, tau))), axis=1)
    naive = 2 * stats.t.sf(np.abs(diff / np.sqrt(v)), df)
    # the vectorised numbers are the public functions' numbers: msprt() + always_valid_p_values(), welch()
    for i in range(25):
        per_look = [msprt(a[i, :j], b[i, :j], tau, ALPHA) for j in k]
        assert all(r.code is StatCode.OK for r in per_look)
        np.testing.assert_allclose(
            always_valid_p_values([r.p_value for r in per_look]), running[i], rtol=1e-9, atol=1e-12
        )
        np.testing.assert_allclose(
            [welch(a[i, :j], b[i, :j], ALPHA).p_value for j in k], naive[i], rtol=1e-9, atol=1e-12
        )
    seq = _record(
        "mSPRT, A/A, 20 looks (always-valid)", float((running[:, -1] < ALPHA).mean()), ALPHA, 0.0, ALPHA + 2 * SE, R
    )
    peek = _record(
        "naive welch, A/A, 20 looks (peeking)", float((naive < ALPHA).any(axis=1).mean()), ALPHA, 2 * ALPHA, 1.0, R
    )
    final = _record(
        "naive welch, A/A, last look only",
        float((naive[:, -1] < ALPHA).mean()),
        ALPHA,
        ALPHA - 2 * SE,
        ALPHA + 2 * SE,
        R,
    )
    assert seq <= ALPHA + 2 * SE
    assert peek > 2 * ALPHA  # peeking inflates the fixed-horizon test: the reason the sequential one exists
    assert abs(final - ALPHA) <= 2 * SE  # the test itself is fine at its one planned look


def test_msprt_still_has_power_under_peeking() -> None:
    """Same design with a real quality gain of 0.03 (0.2 sd): the always-valid test still finds it.
    Measured with seed 0: 0.9205 (the price of always-valid inference: a fixed-horizon Welch test with
    one look at 1,000 per arm has ~ 0.9995 here, z = 0.03 / 0.0067 = 4.5)."""
    a, b, k, diff, v, df = _looks(_rng(11), R, 50, 20, 0.7, 0.15)
    diff = diff + 0.03  # shifting arm B by a constant moves every look's difference, not its variance
    running = np.minimum.accumulate(np.minimum(1.0, np.exp(-msprt_log_lr(diff, v, 0.05))), axis=1)
    power = _record("mSPRT power, gain 0.2 sd, 20 looks", float((running[:, -1] < ALPHA).mean()), 0.8, 0.8, 1.0, R)
    assert power >= 0.8


# ----------------------------------------------------------------------------- 3. power calibration

POWER_BAND = 0.03


def _simulated_power_means(rng: np.random.Generator, sd: float, effect: float, n: int) -> float:
    results = []
    for _ in range(R // 250):  # 250 experiments at a time keeps memory ~ 2 x 250 x n floats
        a, b = rng.normal(0.0, sd, (250, n)), rng.normal(effect, sd, (250, n))
        results += [welch(a[i], b[i], ALPHA) for i in range(250)]
    return _reject_rate(results)


def _simulated_power_proportions(rng: np.random.Generator, p_a: float, mde: float, n: int) -> float:
    # the number of successes among n Bernoulli(p) units is Binomial(n, p): the same raw data, summed
    sa, sb = rng.binomial(n, p_a, R), rng.binomial(n, p_a + mde, R)
    return _reject_rate([two_proportions(int(x), n, int(y), n, ALPHA) for x, y in zip(sa, sb, strict=True)])


@pytest.mark.parametrize(("sd", "mde", "n_expected", "k"), [(1.0, 0.1, 1570, 12), (0.15, 0.02, 883, 13)])
def test_power_means_calibration(sd: float, mde: float, n_expected: int, k: int) -> None:
    """Welch on normal data at the n power_means gives for 80%. Measured with seed 0: sd 1 / mde 0.1
    (n 1570) 0.7855; sd 0.15 / mde 0.02 (n 883) 0.8140 (the same n = 1570 design with 20,000
    experiments and another seed gave 0.7987 against the normal-theory 0.8001)."""
    pw = power_means(sd, mde, ALPHA, 0.8)
    assert pw.code is StatCode.OK and pw.n_per_arm == n_expected
    rate = _simulated_power_means(_rng(k), sd, mde, pw.n_per_arm)
    _record(f"power welch, sd {sd} mde {mde} n {pw.n_per_arm}", rate, 0.8, 0.8 - POWER_BAND, 0.8 + POWER_BAND, R)
    assert abs(rate - 0.8) <= POWER_BAND


@pytest.mark.parametrize(
    ("p_a", "mde", "n_expected", "k"), [(0.1, 0.02, 3841, 14), (0.1, -0.02, 3213, 15), (0.3, 0.05, 1377, 16)]
)
def test_power_proportions_calibration(p_a: float, mde: float, n_expected: int, k: int) -> None:
    """two_proportions on binomial data at the n power_proportions gives for 80%. Measured with seed 0:
    0.10 -> 0.12 (n 3841) 0.8050; 0.10 -> 0.08 (n 3213) 0.8020; 0.30 -> 0.35 (n 1377) 0.8035."""
    pw = power_proportions(p_a, mde, ALPHA, 0.8)
    assert pw.code is StatCode.OK and pw.n_per_arm == n_expected
    rate = _simulated_power_proportions(_rng(k), p_a, mde, pw.n_per_arm)
    _record(
        f"power two_proportions, {p_a} -> {p_a + mde:.2f} n {pw.n_per_arm}",
        rate,
        0.8,
        0.8 - POWER_BAND,
        0.8 + POWER_BAND,
        R,
    )
    assert abs(rate - 0.8) <= POWER_BAND


def test_mde_round_trips_and_simulated_power_at_the_mde() -> None:
    """mde_* inverts power_* (up to power_*'s rounding up of n), and at the MDE for a given n the real test
    has 80% power. Measured with seed 0: welch at mde_means(1, 1000) = 0.1253: 0.7995; two_proportions at
    mde_proportions(0.1, 2000) = 0.0282: 0.8060."""
    for sd, mde in [(1.0, 0.1), (0.15, 0.02), (3.0, 0.5)]:
        n = power_means(sd, mde).n_per_arm
        back = mde_means(sd, n)
        assert back.code is StatCode.OK and mde * (1 - 1e-3) <= back.mde <= mde  # n was rounded up: MDE a hair smaller
        assert power_means(sd, back.mde).n_per_arm == n
    for p_a, mde in [(0.1, 0.02), (0.3, 0.05), (0.02, 0.01)]:
        n = power_proportions(p_a, mde).n_per_arm
        back = mde_proportions(p_a, n)
        assert back.code is StatCode.OK and mde * (1 - 1e-3) <= back.mde <= mde
        assert power_proportions(p_a, back.mde).n_per_arm == n
    m_means = mde_means(1.0, 1000).mde
    assert m_means == pytest.approx((stats.norm.ppf(0.975) + stats.norm.ppf(0.8)) * math.sqrt(2 / 1000))
    rate = _simulated_power_means(_rng(17), 1.0, m_means, 1000)
    _record(f"power welch at mde_means(1, 1000) = {m_means:.4f}", rate, 0.8, 0.8 - POWER_BAND, 0.8 + POWER_BAND, R)
    assert abs(rate - 0.8) <= POWER_BAND
    m_prop = mde_proportions(0.1, 2000).mde
    rate = _simulated_power_proportions(_rng(18), 0.1, m_prop, 2000)
    _record(
        f"power two_proportions at mde_proportions(0.1, 2000) = {m_prop:.4f}",
        rate,
        0.8,
        0.8 - POWER_BAND,
        0.8 + POWER_BAND,
        R,
    )
    assert abs(rate - 0.8) <= POWER_BAND


# ------------------------------------------------------------------------------------------------ 4. SRM

SRM_THRESHOLD = GateParams().srm_threshold  # 0.001, the gate's default
SRM_TOTAL = 20_000


def _chi2_p(challenger: np.ndarray, total: int, share: float) -> np.ndarray:
    """Vectorised p-value of srm()'s chi-square (1 df) for two arms."""
    exp_b, exp_a = total * share, total * (1 - share)
    chi2 = (challenger - exp_b) ** 2 / exp_b + (total - challenger - exp_a) ** 2 / exp_a
    return stats.chi2.sf(chi2, 1)


def test_srm_flags_a_52_48_split_on_20k_requests() -> None:
    """Deterministic 10,400 / 9,600 (chi2 = 32, p = 1.5e-8) and 2,000 multinomial draws with p = 0.52: the
    flag needs |count - 10,000| > 232.7, i.e. 2.37 sd below the 10,400 mean, so the exact flag rate is
    0.9911 (binomial cdf). Measured with seed 0: 0.9935."""
    assert SRM_THRESHOLD == 0.001
    r = srm([10_400, 9_600], [0.5, 0.5], SRM_THRESHOLD)
    assert r.code is StatCode.OK and r.mismatch and r.statistic == pytest.approx(32.0)
    assert r.p_value == pytest.approx(stats.chi2.sf(32.0, 1)) and r.p_value < 1e-7
    draws = _rng(19).multinomial(SRM_TOTAL, [0.52, 0.48], size=R)
    results = [srm(d.tolist(), [0.5, 0.5], SRM_THRESHOLD) for d in draws]
    assert all(x.code is StatCode.OK for x in results)
    rate = _record(
        "srm flags 52/48 on 20k (multinomial)", float(np.mean([x.mismatch for x in results])), 0.9911, 0.99, 1.0, R
    )
    np.testing.assert_allclose([x.p_value for x in results], _chi2_p(draws[:, 0], SRM_TOTAL, 0.5), rtol=1e-9)
    # exact: flagged iff the 52% arm's count c has chi2 = (c - 10000)^2 / 5000 > chi2_{1, 0.999}
    cut = math.sqrt(stats.chi2.isf(SRM_THRESHOLD, 1) * SRM_TOTAL / 4)
    exact = float(
        stats.binom.sf(math.floor(SRM_TOTAL / 2 + cut), SRM_TOTAL, 0.52)
        + stats.binom.cdf(math.ceil(SRM_TOTAL / 2 - cut) - 1, SRM_TOTAL, 0.52)
    )
    assert exact == pytest.approx(0.9911, abs=2e-4)
    assert rate >= 0.99


def test_srm_false_alarm_rate_on_a_50_50_split() -> None:
    """20,000 draws of a true 50/50 split of 20,000 requests, chi-square p computed vectorised with srm()'s
    formula (checked against srm() itself on the first 2,000 draws and on every flagged one); flagged rate
    within 0.001 +/- 3 SE (SE = 0.000223). Measured with seed 0: 0.0013 (26 of 20,000)."""
    reps = 20_000
    se = math.sqrt(SRM_THRESHOLD * (1 - SRM_THRESHOLD) / reps)
    counts = _rng(20).multinomial(SRM_TOTAL, [0.5, 0.5], size=reps)
    p = _chi2_p(counts[:, 1], SRM_TOTAL, 0.5)
    flagged = p < SRM_THRESHOLD
    check = np.unique(np.concatenate([np.arange(2000), np.flatnonzero(flagged)]))
    results = [srm(counts[i].tolist(), [0.5, 0.5], SRM_THRESHOLD) for i in check]
    assert [x.mismatch for x in results] == flagged[check].tolist()
    np.testing.assert_allclose([x.p_value for x in results], p[check], rtol=1e-9)
    rate = _record(
        "srm flags 50/50 on 20k",
        float(flagged.mean()),
        SRM_THRESHOLD,
        SRM_THRESHOLD - 3 * se,
        SRM_THRESHOLD + 3 * se,
        reps,
    )
    assert abs(rate - SRM_THRESHOLD) <= 3 * se


# ------------------------------------------------------------------------------------- 5. the gate, A/A

GATE_ROWS = 300  # per arm


def _gate_experiments(rng: np.random.Generator, reps: int) -> list[pd.DataFrame]:
    """reps A/A experiments of GATE_ROWS rows per arm (exact 50/50, so SRM never fires), data drawn in one go:
    quality N(0.7, 0.15) clipped to [0, 1], 1% errors, lognormal cost, gamma latency — the same in both arms."""
    m = 2 * GATE_ROWS
    quality = np.clip(rng.normal(0.7, 0.15, (reps, m)), 0.0, 1.0)
    status = np.where(rng.random((reps, m)) < 0.01, "error", "ok")
    cost = rng.lognormal(math.log(0.002), 0.5, (reps, m))
    latency = rng.gamma(2.0, 300.0, (reps, m))
    variant = np.repeat(["champion", "challenger"], GATE_ROWS)
    return [
        pd.DataFrame(
            {
                "variant": variant,
                "status": status[i],
                "quality": quality[i],
                "cost_usd": cost[i],
                "latency_ms": latency[i],
            }
        )
        for i in range(reps)
    ]


def test_gate_false_promotion_rate_on_aa_experiments() -> None:
    """2,000 seeded A/A experiments, 300 rows per arm, quality margin 0 (so A/A sits on the boundary of the
    quality H0) and generous error / cost margins (0.5 and 100%) so that quality decides: the gate may
    promote in <= alpha + 2 SE, fixed-horizon and with ``sequential=True`` (single look, always-valid
    p-value). Every one of the 2,000 is decided on every machine (~4.5-16 ms each): a time budget used to stop
    the loop early on a slow machine, so the count and the rate depended on the machine (1,817 gave 0.0633).
    Measured with seed 0: fixed-horizon 0.0585 (near the top of the band by chance: the gate's quality test,
    non_inferiority at margin 0 on the same design, rejects 0.0518 of 20,000 experiments with another
    seed), sequential 0.0015."""
    frames = _gate_experiments(_rng(21), R)
    loose = {"quality_margin": 0.0, "error_rate_margin": 0.5, "cost_margin": 1.0}
    rates = {}
    for label, params in [("fixed", GateParams(**loose)), ("sequential", GateParams(sequential=True, **loose))]:
        start = time.perf_counter()
        decisions = [decide(frame, params) for frame in frames]
        reps = len(decisions)
        se = math.sqrt(ALPHA * (1 - ALPHA) / reps)
        # errors and cost always pass (so the quality test alone decides) and nothing else blocks
        assert all(GateCode.ERRORS_WORSE not in d.reasons and GateCode.COST_WORSE not in d.reasons for d in decisions)
        assert all(d.reasons in ((GateCode.PROMOTE,), (GateCode.QUALITY_WORSE,)) for d in decisions)
        quality = "msprt_non_inferiority" if params.sequential else "non_inferiority"
        assert all(d.stats["quality"]["name"] == quality for d in decisions)
        # so the gate promotes exactly when the quality test's own one-sided p-value clears alpha
        assert [d.promote for d in decisions] == [d.stats["quality"]["p_value"] < ALPHA for d in decisions]
        rates[label] = _record(
            f"gate decide, A/A, {label} ({time.perf_counter() - start:.0f} s)",
            float(np.mean([d.promote for d in decisions])),
            ALPHA,
            0.0,
            ALPHA + 2 * se,
            reps,
        )
        assert rates[label] <= ALPHA + 2 * se, (label, rates[label], reps)
    # the fixed-horizon gate is not trivially conservative: quality alone decides, so it sits near alpha
    assert rates["fixed"] >= ALPHA - 3 * SE
    assert rates["sequential"] <= rates["fixed"]  # a single look at the always-valid p-value is stricter


# ------------------------------------------------------------------------------------------- the table


def test_zz_print_measured_table() -> None:
    """Runs last (file order): prints every rate the tests above measured."""
    assert MEASURED, "no rates measured (run the whole file)"
    print(f"\n\nMeasured error rates (seed {SEED}, alpha {ALPHA})")
    print(f"{'measurement':<68} {'rate':>7} {'target':>7} {'band':>17} {'reps':>6}")
    for name, (rate, target, lo, hi, reps) in MEASURED.items():
        band = f"[{lo:.4f}, {hi:.4f}]"
        print(f"{name:<68} {rate:>7.4f} {target:>7.4f} {band:>17} {reps if reps else 'exact':>6}")
