"""Sequential testing (peeking allowed): the mixture SPRT and always-valid p-values, and the asymptotic
confidence sequences of GrowthBook's gbstats (``SequentialTwoSidedTTest``)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from abtest.lift import Arm, _mean_arms, _proportion_arms, lift_moments
from abtest.results import StatCode, TestResult, _as_1d, _bad, _f, _two_samples, _welch_parts

# ------------------------------------------------------------------------------------- 7. sequential (mSPRT)


def msprt_log_lr(diff: np.ndarray | float, variance: np.ndarray | float, tau: float) -> np.ndarray:
    """Log of the normal-mixture likelihood ratio for H0: delta = 0, vectorised.

    With V = Var(mean_b - mean_a) = s_a^2 / n_a + s_b^2 / n_b and mixture delta ~ N(0, tau^2)
    (Johari, Koomen, Pekelis & Walsh 2017, "Peeking at A/B tests", two-sample normal case),
    Lambda = sqrt(V / (V + tau^2)) * exp(tau^2 diff^2 / (2 V (V + tau^2))); for n per arm and known
    sigma^2 (V = 2 sigma^2 / n) this is their sqrt(2s^2/(2s^2+n tau^2)) exp(n^2 tau^2 d^2 / (4 s^2 (2s^2 + n tau^2))).
    The always-valid p-value is min(1, 1 / Lambda) at each look, then the running minimum over looks."""
    d = np.asarray(diff, dtype=float)
    v = np.asarray(variance, dtype=float)
    t2 = float(tau) ** 2
    return 0.5 * np.log(v / (v + t2)) + t2 * d**2 / (2 * v * (v + t2))


def msprt(
    a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray, tau: float, alpha: float = 0.05
) -> TestResult:
    """mSPRT at one look for a difference in means (variance estimated from the samples; see
    :func:`msprt_log_lr` for the formula). ``p_value`` = min(1, 1/Lambda) at this look — feed the
    sequence of looks through :func:`always_valid_p_values` for the running minimum. ``statistic`` is
    log Lambda; the CI is the always-valid confidence sequence {delta0 : Lambda(delta0) < 1/alpha}:
    diff +/- sqrt(2 V (V + tau^2) / tau^2 * (log(1/alpha) + log((V + tau^2) / V) / 2)).
    ``tau`` is the mixture sd on the scale of the difference (a plausible effect size)."""
    name = "msprt"
    xa, xb, err = _two_samples(name, a, b, alpha)
    if err is not None:
        return err
    if not (math.isfinite(_f(tau)) and _f(tau) > 0):
        return _bad(name, StatCode.BAD_INPUT, xa.size, xb.size, alpha)
    diff, se, _ = _welch_parts(xa, xb)
    if se == 0:
        return _bad(name, StatCode.ZERO_VARIANCE, xa.size, xb.size, alpha)
    v, t2 = se**2, float(tau) ** 2
    llr = float(msprt_log_lr(diff, v, tau))
    p = float(min(1.0, math.exp(-llr)))
    half = math.sqrt(2 * v * (v + t2) / t2 * (math.log(1 / alpha) + 0.5 * math.log((v + t2) / v)))
    return TestResult(name, StatCode.OK, diff, diff - half, diff + half, llr, p, xa.size, xb.size, float(alpha))


def always_valid_p_values(sequence: Sequence[float] | np.ndarray) -> tuple[float, ...]:
    """Running minimum of per-look mSPRT p-values (each capped at 1): monotone non-increasing, so once
    it drops below alpha it stays there and stopping at any look keeps the type-I error <= alpha.
    Empty tuple for bad input (NaN, values outside [0, 1], not 1-D)."""
    p = _as_1d(sequence)
    if p is None or np.any((p < 0) | (p > 1)):
        return ()
    return tuple(np.minimum.accumulate(np.minimum(p, 1.0)).tolist())


# ---------------------------------------------------------------- 7b. asymptotic confidence sequences (gbstats)


def cs_rho(alpha: float, tuning: float) -> float:
    """Mixture width rho = sqrt((-2 ln alpha + ln(1 - 2 ln alpha)) / tuning), chosen so that the sequence is
    tightest when the total sample size is near ``tuning`` (Waudby-Smith et al. 2023, arXiv 2103.06476v7,
    eq. 161; gbstats' ``sequential_tuning_parameter``, default 5000)."""
    la = math.log(alpha)
    return math.sqrt((-2 * la + math.log(1 - 2 * la)) / tuning)


def cs_half_width(
    variance: np.ndarray | float, n: np.ndarray | float, alpha: float, tuning: float = 5000.0
) -> np.ndarray:
    """Half-width of the asymptotic confidence sequence at N = n_a + n_b units, vectorised.

    With V the variance of the estimate and s^2 = V N its per-unit scale (Waudby-Smith et al. eq. 9),
    half = sqrt(s^2) sqrt(2 (N rho^2 + 1) ln(sqrt(N rho^2 + 1) / alpha) / (N rho)^2). It shrinks like
    sqrt(log N / N), not 1 / sqrt(N), which is what buys validity at every look at once."""
    v, big_n = np.asarray(variance, dtype=float), np.asarray(n, dtype=float)
    r2 = cs_rho(alpha, tuning) ** 2
    g = big_n * r2 + 1
    return np.sqrt(v * big_n) * np.sqrt(2 * g * np.log(np.sqrt(g) / alpha) / (big_n**2 * r2))


def cs_log_e(
    estimate: np.ndarray | float,
    variance: np.ndarray | float,
    n: np.ndarray | float,
    alpha: float,
    tuning: float = 5000.0,
) -> np.ndarray:
    """Log e-value of H0: effect = 0, vectorised (Waudby-Smith et al. eq. 155, as gbstats):
    log E = rho^2 S / (2 (N rho^2 + 1)) - ln(N rho^2 + 1) / 2 with S = estimate^2 N / V. The sequential
    p-value is min(1, 1 / E) = min(1, exp(-log E)); p < alpha exactly when 0 is outside the sequence."""
    d, v, big_n = (np.asarray(x, dtype=float) for x in (estimate, variance, n))
    r2 = cs_rho(alpha, tuning) ** 2
    g = big_n * r2 + 1
    return r2 * d**2 * big_n / v / (2 * g) - 0.5 * np.log(g)


def _cs_result(name: str, arm_a: Arm, arm_b: Arm, alpha: float, tuning: float, relative: bool) -> TestResult:
    (ma, va, na), (mb, vb, nb) = arm_a, arm_b
    if relative:
        est, var = (float(x) for x in lift_moments(ma, va, na, mb, vb, nb))
    else:
        est, var = mb - ma, va / na + vb / nb
    big_n = na + nb
    half = float(cs_half_width(var, big_n, alpha, tuning))
    log_e = float(cs_log_e(est, var, big_n, alpha, tuning))
    p = float(min(1.0, math.exp(-log_e)))
    return TestResult(name, StatCode.OK, est, est - half, est + half, log_e, p, na, nb, float(alpha))


def _ok_tuning(tuning: object) -> bool:
    return math.isfinite(_f(tuning)) and _f(tuning) > 0


def confidence_sequence_means(
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    alpha: float = 0.05,
    tuning: float = 5000.0,
    relative: bool = False,
) -> TestResult:
    """Always-valid (1 - alpha) asymptotic confidence sequence for mean_b - mean_a (or, ``relative=True``,
    for the lift mean_b / mean_a - 1 with the delta-method variance of :func:`abtest.lift.lift_moments`):
    the interval is estimate +/- :func:`cs_half_width` with V = s_a^2/n_a + s_b^2/n_b (or the lift variance),
    N = n_a + n_b, ``tuning`` = gbstats' ``sequential_tuning_parameter``. ``statistic`` is the log e-value
    (:func:`cs_log_e`), ``p_value`` = min(1, 1 / e-value) at this look — gbstats' ``SequentialTwoSidedTTest``.
    Unlike gbstats, the absolute difference is computed when the control mean is 0 (ZERO_BASELINE only
    when ``relative``); ZERO_VARIANCE when either arm is constant (as gbstats)."""
    name = "confidence_sequence_means"
    if not _ok_tuning(tuning):
        xa, xb = _as_1d(a), _as_1d(b)
        return _bad(name, StatCode.BAD_INPUT, xa.size if xa is not None else 0, xb.size if xb is not None else 0, alpha)
    arm_a, arm_b, err = _mean_arms(name, a, b, alpha, relative=bool(relative))
    return err if err is not None else _cs_result(name, arm_a, arm_b, alpha, float(tuning), bool(relative))


def confidence_sequence_proportions(
    successes_a: int,
    n_a: int,
    successes_b: int,
    n_b: int,
    alpha: float = 0.05,
    tuning: float = 5000.0,
    relative: bool = False,
) -> TestResult:
    """:func:`confidence_sequence_means` for rates (per-unit variance p(1 - p), gbstats' ``ProportionStatistic``):
    p_b - p_a, or p_b / p_a - 1 when ``relative``. ZERO_VARIANCE when a rate is 0 or 1 in either arm."""
    name = "confidence_sequence_proportions"
    if not _ok_tuning(tuning):
        return _bad(name, StatCode.BAD_INPUT, alpha=_f(alpha))
    arm_a, arm_b, err = _proportion_arms(name, successes_a, n_a, successes_b, n_b, alpha, relative=bool(relative))
    return err if err is not None else _cs_result(name, arm_a, arm_b, alpha, float(tuning), bool(relative))
