"""Bayesian comparison: posterior of B - A, credible interval, chance to win and expected loss."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from abtest.results import NAN, StatCode, _counts, _f, _ok_alpha, _two_samples, _welch_parts

# -------------------------------------------------------------------------------------------- 9. Bayesian


@dataclass(frozen=True)
class BayesResult:
    """Posterior comparison of B vs A: ``estimate`` = posterior mean of B - A, [ci_low, ci_high] the
    equal-tailed (1 - alpha) credible interval, ``chance_to_win`` = P(B > A | data), ``expected_loss`` =
    E[max(A - B, 0) | data] (what shipping B costs in expectation if B is in fact worse)."""

    name: str
    code: StatCode
    estimate: float
    ci_low: float
    ci_high: float
    chance_to_win: float
    expected_loss: float
    n_a: int
    n_b: int
    alpha: float


def _bayes_bad(name: str, code: StatCode, n_a: int = 0, n_b: int = 0, alpha: float = NAN) -> BayesResult:
    return BayesResult(name, code, NAN, NAN, NAN, NAN, NAN, int(n_a), int(n_b), _f(alpha))


def bayes_proportions(
    successes_a: int,
    n_a: int,
    successes_b: int,
    n_b: int,
    alpha: float = 0.05,
    prior: tuple[float, float] = (1.0, 1.0),
    n_draws: int = 200_000,
    seed: int = 0,
) -> BayesResult:
    """Beta-binomial: p ~ Beta(prior_alpha + successes, prior_beta + failures) per arm (uniform prior by
    default); every posterior summary of p_b - p_a from ``n_draws`` seeded Monte Carlo draws (Monte Carlo
    error of chance_to_win <= 0.5 / sqrt(n_draws) ~ 0.001 at the default)."""
    name = "bayes_proportions"
    ca, cb = _counts(successes_a, n_a), _counts(successes_b, n_b)
    pr = tuple(_f(v) for v in prior) if len(prior) == 2 else (NAN, NAN)
    good_prior = all(math.isfinite(v) and v > 0 for v in pr)
    if ca is None or cb is None or not _ok_alpha(alpha) or not good_prior or int(n_draws) < 1000:
        return _bayes_bad(name, StatCode.BAD_INPUT, ca[1] if ca else 0, cb[1] if cb else 0, _f(alpha))
    (sa, na), (sb, nb) = ca, cb
    if na == 0 or nb == 0:
        return _bayes_bad(name, StatCode.EMPTY_ARM, na, nb, alpha)
    rng = np.random.default_rng(seed)
    pa = rng.beta(pr[0] + sa, pr[1] + na - sa, int(n_draws))
    pb = rng.beta(pr[0] + sb, pr[1] + nb - sb, int(n_draws))
    d = pb - pa
    lo, hi = np.quantile(d, [alpha / 2, 1 - alpha / 2])
    return BayesResult(
        name,
        StatCode.OK,
        float(d.mean()),
        float(lo),
        float(hi),
        float((d > 0).mean()),
        float(np.maximum(-d, 0).mean()),
        na,
        nb,
        float(alpha),
    )


def bayes_means(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray, alpha: float = 0.05) -> BayesResult:
    """Flat-prior, large-sample normal posterior of each arm's mean, mean ~ N(xbar, s^2 / n), so
    B - A ~ N(d, V) with V = s_a^2/n_a + s_b^2/n_b, in closed form: chance_to_win = Phi(d / sqrt V),
    expected_loss = sqrt V phi(d / sqrt V) - d Phi(-d / sqrt V), credible interval d +/- z sqrt V
    (numerically the Welch CI with normal quantiles). Not for tiny samples (TOO_FEW below 2 per arm)."""
    name = "bayes_means"
    xa, xb, err = _two_samples(name, a, b, alpha)
    if err is not None:
        return _bayes_bad(name, err.code, err.n_a, err.n_b, err.alpha)
    d, se, _ = _welch_parts(xa, xb)
    if se == 0:
        return _bayes_bad(name, StatCode.ZERO_VARIANCE, xa.size, xb.size, alpha)
    z = d / se
    q = float(stats.norm.ppf(1 - alpha / 2))
    loss = se * float(stats.norm.pdf(z)) - d * float(stats.norm.cdf(-z))
    return BayesResult(
        name, StatCode.OK, d, d - q * se, d + q * se, float(stats.norm.cdf(z)), loss, xa.size, xb.size, float(alpha)
    )
