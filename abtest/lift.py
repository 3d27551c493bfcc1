"""Relative lift, B / A - 1, with the delta-method variance: frequentist (t interval, Welch df) and
Bayesian (flat prior, normal posterior). The numbers match GrowthBook's gbstats 0.8.x
(``TwoSidedTTest`` and ``EffectBayesianABTest`` with ``difference_type="relative"``).

Why the delta method: B / A - 1 is a ratio of two independent sample means, so its variance to first
order is Var(mean_b) / mean_a^2 + mean_b^2 Var(mean_a) / mean_a^4. Proportions are means of 0/1 data
with the per-unit variance p(1 - p) (no n - 1 correction, as gbstats).

Refusals as gbstats: ZERO_BASELINE when the control mean / rate is 0 (B / A - 1 is undefined), and
ZERO_VARIANCE when *either* arm has zero variance (gbstats' ``_has_zero_variance``), checked in that
order after BAD_INPUT -> EMPTY_ARM -> TOO_FEW (2 units per arm: the Welch df divides by n - 1).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import stats

from abtest.bayesian import BayesResult, _bayes_bad, normal_posterior
from abtest.results import MIN_N, StatCode, TestResult, _bad, _counts, _f, _ok_alpha, _two_samples

Arm = tuple[float, float, int]  # (mean, per-unit variance, n)


# ----------------------------------------------------------------------------------------- pure formulas


def lift_moments(
    mean_a: np.ndarray | float,
    var_a: np.ndarray | float,
    n_a: np.ndarray | float,
    mean_b: np.ndarray | float,
    var_b: np.ndarray | float,
    n_b: np.ndarray | float,
) -> tuple[np.ndarray, np.ndarray]:
    """(relative lift, its delta-method variance), vectorised; ``var_*`` are per-unit variances.

    lift = (mean_b - mean_a) / mean_a (= mean_b / mean_a - 1, written as gbstats writes it),
    Var = var_b / (n_b mean_a^2) + mean_b^2 var_a / (n_a mean_a^4)."""
    ma, va, na = (np.asarray(v, dtype=float) for v in (mean_a, var_a, n_a))
    mb, vb, nb = (np.asarray(v, dtype=float) for v in (mean_b, var_b, n_b))
    return (mb - ma) / ma, vb / (ma**2 * nb) + va * mb**2 / (ma**4 * na)


def welch_df(var_a: np.ndarray | float, n_a: np.ndarray | float, var_b: np.ndarray | float, n_b: np.ndarray | float):
    """Welch-Satterthwaite df of the *absolute* difference, (va/na + vb/nb)^2 / (va^2/(na^2 (na-1)) +
    vb^2/(nb^2 (nb-1))). gbstats uses this same df for the relative lift too (it is not recomputed from
    the delta-method terms), so we do as well."""
    va, na, vb, nb = (np.asarray(v, dtype=float) for v in (var_a, n_a, var_b, n_b))
    return (va / na + vb / nb) ** 2 / (va**2 / (na**2 * (na - 1)) + vb**2 / (nb**2 * (nb - 1)))


# ----------------------------------------------------------------------------------- validated arm summaries


def _mean_arms(
    name: str, a: object, b: object, alpha: object, relative: bool
) -> tuple[Arm | None, Arm | None, TestResult | None]:
    """((mean, var ddof=1, n) for A, same for B, None) or (_, _, error result)."""
    xa, xb, err = _two_samples(name, a, b, alpha)
    if err is not None:
        return None, None, err
    arm_a = (float(xa.mean()), float(xa.var(ddof=1)), int(xa.size))
    arm_b = (float(xb.mean()), float(xb.var(ddof=1)), int(xb.size))
    if relative and arm_a[0] == 0:
        return None, None, _bad(name, StatCode.ZERO_BASELINE, xa.size, xb.size, alpha)
    if np.ptp(xa) == 0 or np.ptp(xb) == 0:  # exact test: a constant arm can get a ~1e-33 float variance
        return None, None, _bad(name, StatCode.ZERO_VARIANCE, xa.size, xb.size, alpha)
    return arm_a, arm_b, None


def _proportion_arms(
    name: str, successes_a: object, n_a: object, successes_b: object, n_b: object, alpha: object, relative: bool
) -> tuple[Arm | None, Arm | None, TestResult | None]:
    """((p, p(1-p), n) for A, same for B, None) or (_, _, error result)."""
    ca, cb = _counts(successes_a, n_a), _counts(successes_b, n_b)
    if ca is None or cb is None or not _ok_alpha(alpha):
        return None, None, _bad(name, StatCode.BAD_INPUT, ca[1] if ca else 0, cb[1] if cb else 0, _f(alpha))
    (sa, na), (sb, nb) = ca, cb
    if na == 0 or nb == 0:
        return None, None, _bad(name, StatCode.EMPTY_ARM, na, nb, alpha)
    if na < MIN_N or nb < MIN_N:
        return None, None, _bad(name, StatCode.TOO_FEW, na, nb, alpha)
    pa, pb = sa / na, sb / nb
    if relative and sa == 0:
        return None, None, _bad(name, StatCode.ZERO_BASELINE, na, nb, alpha)
    if sa in (0, na) or sb in (0, nb):  # p(1 - p) = 0 in an arm
        return None, None, _bad(name, StatCode.ZERO_VARIANCE, na, nb, alpha)
    return (pa, pa * (1 - pa), na), (pb, pb * (1 - pb), nb), None


# ------------------------------------------------------------------------------------------ frequentist


def _t_lift(name: str, arm_a: Arm, arm_b: Arm, alpha: float) -> TestResult:
    (ma, va, na), (mb, vb, nb) = arm_a, arm_b
    est, var = (float(v) for v in lift_moments(ma, va, na, mb, vb, nb))
    df = float(welch_df(va, na, vb, nb))
    se = math.sqrt(var)
    t = est / se
    q = float(stats.t.ppf(1 - alpha / 2, df))
    p = float(2 * stats.t.sf(abs(t), df))
    return TestResult(name, StatCode.OK, est, est - q * se, est + q * se, t, p, na, nb, float(alpha))


def relative_lift_means(
    a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray, alpha: float = 0.05
) -> TestResult:
    """Relative lift of means, ``estimate`` = mean_b / mean_a - 1, two-sided t-test of lift = 0.

    se = sqrt(s_b^2 / (n_b mean_a^2) + mean_b^2 s_a^2 / (n_a mean_a^4)) (delta method, :func:`lift_moments`),
    ``statistic`` t = estimate / se, p and the interval estimate +/- t_{1-alpha/2, df} se from a t with the
    Welch df of the absolute difference (:func:`welch_df`) — gbstats' ``TwoSidedTTest``, relative."""
    name = "relative_lift_means"
    arm_a, arm_b, err = _mean_arms(name, a, b, alpha, relative=True)
    return err if err is not None else _t_lift(name, arm_a, arm_b, alpha)


def relative_lift_proportions(
    successes_a: int, n_a: int, successes_b: int, n_b: int, alpha: float = 0.05
) -> TestResult:
    """Relative lift of rates, ``estimate`` = p_b / p_a - 1: :func:`relative_lift_means` with the per-unit
    variance p(1 - p) (gbstats' ``TwoSidedTTest`` on ``ProportionStatistic``, which keeps the t / Welch df).
    ZERO_VARIANCE when a rate is 0 or 1 in either arm (ZERO_BASELINE first when p_a = 0)."""
    name = "relative_lift_proportions"
    arm_a, arm_b, err = _proportion_arms(name, successes_a, n_a, successes_b, n_b, alpha, relative=True)
    return err if err is not None else _t_lift(name, arm_a, arm_b, alpha)


# --------------------------------------------------------------------------------------------- Bayesian


def _bayes_lift(name: str, arm_a: Arm, arm_b: Arm, alpha: float, higher_is_better: bool) -> BayesResult:
    (ma, va, na), (mb, vb, nb) = arm_a, arm_b
    mu, var = (float(v) for v in lift_moments(ma, va, na, mb, vb, nb))
    return normal_posterior(name, mu, math.sqrt(var), alpha, bool(higher_is_better), int(na), int(nb))


def bayes_lift_means(
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    alpha: float = 0.05,
    higher_is_better: bool = True,
) -> BayesResult:
    """Posterior of the relative lift under a flat (improper) prior: lift ~ N(mu, V), mu = mean_b / mean_a - 1,
    V the delta-method variance (:func:`lift_moments`); credible interval mu +/- z_{1-alpha/2} sqrt V.

    ``chance_to_win`` = P(B better) = Phi(mu / sqrt V), or Phi(-mu / sqrt V) when lower is better;
    ``expected_loss`` = the risk of shipping B, E[max(-lift, 0)] = sqrt V phi(mu/sqrt V) - mu Phi(-mu/sqrt V)
    (higher is better) or E[max(lift, 0)] = sqrt V phi(mu/sqrt V) + mu Phi(mu/sqrt V) (lower is better), in
    lift units. gbstats' ``EffectBayesianABTest`` (relative, default prior, ``inverse = not higher_is_better``):
    its ``chance_to_win`` and ``risk[1]`` (closed form here, gbstats goes through ``truncnorm``)."""
    name = "bayes_lift_means"
    arm_a, arm_b, err = _mean_arms(name, a, b, alpha, relative=True)
    if err is not None:
        return _bayes_bad(name, err.code, err.n_a, err.n_b, err.alpha, bool(higher_is_better))
    return _bayes_lift(name, arm_a, arm_b, alpha, bool(higher_is_better))


def bayes_lift_proportions(
    successes_a: int,
    n_a: int,
    successes_b: int,
    n_b: int,
    alpha: float = 0.05,
    higher_is_better: bool = True,
) -> BayesResult:
    """:func:`bayes_lift_means` for rates (per-unit variance p(1 - p), gbstats' ``ProportionStatistic``): a
    normal approximation to the posterior of p_b / p_a - 1, not the beta-binomial of ``bayes_proportions``."""
    name = "bayes_lift_proportions"
    arm_a, arm_b, err = _proportion_arms(name, successes_a, n_a, successes_b, n_b, alpha, relative=True)
    if err is not None:
        return _bayes_bad(name, err.code, err.n_a, err.n_b, err.alpha, bool(higher_is_better))
    return _bayes_lift(name, arm_a, arm_b, alpha, bool(higher_is_better))
