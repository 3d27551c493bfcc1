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
    """Posterior comparison of B vs A: ``estimate`` = posterior mean of B - A and [ci_low, ci_high] the
    equal-tailed (1 - alpha) credible interval of B - A, whatever the metric's direction. ``chance_to_win``
    = P(B better than A | data) and ``expected_loss`` = E[how much worse B is, or 0 | data] (what shipping B
    costs in expectation) follow ``higher_is_better``: True (quality, conversion) -> P(B > A) and
    E[max(A - B, 0)]; False (latency, cost, error rate) -> P(B < A) and E[max(B - A, 0)]."""

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
    higher_is_better: bool = True  # the direction chance_to_win and expected_loss were computed in


def _bayes_bad(
    name: str, code: StatCode, n_a: int = 0, n_b: int = 0, alpha: float = NAN, higher_is_better: bool = True
) -> BayesResult:
    return BayesResult(name, code, NAN, NAN, NAN, NAN, NAN, int(n_a), int(n_b), _f(alpha), bool(higher_is_better))


def bayes_proportions(
    successes_a: int,
    n_a: int,
    successes_b: int,
    n_b: int,
    alpha: float = 0.05,
    prior: tuple[float, float] = (1.0, 1.0),
    n_draws: int = 200_000,
    seed: int = 0,
    higher_is_better: bool = True,
) -> BayesResult:
    """Beta-binomial: p ~ Beta(prior_alpha + successes, prior_beta + failures) per arm (uniform prior by
    default); every posterior summary of D = p_b - p_a from ``n_draws`` seeded Monte Carlo draws (Monte Carlo
    error of chance_to_win <= 0.5 / sqrt(n_draws) ~ 0.001 at the default). higher_is_better=False (an error
    rate): chance_to_win = share of draws with D < 0, expected_loss = mean of max(D, 0) — on the same draws,
    so it is 1 - (the higher-is-better chance) up to ties D == 0, and loss_lower - loss_higher = mean(D)."""
    name = "bayes_proportions"
    hib = bool(higher_is_better)
    ca, cb = _counts(successes_a, n_a), _counts(successes_b, n_b)
    pr = tuple(_f(v) for v in prior) if len(prior) == 2 else (NAN, NAN)
    good_prior = all(math.isfinite(v) and v > 0 for v in pr)
    if ca is None or cb is None or not _ok_alpha(alpha) or not good_prior or int(n_draws) < 1000:
        return _bayes_bad(name, StatCode.BAD_INPUT, ca[1] if ca else 0, cb[1] if cb else 0, _f(alpha), hib)
    (sa, na), (sb, nb) = ca, cb
    if na == 0 or nb == 0:
        return _bayes_bad(name, StatCode.EMPTY_ARM, na, nb, alpha, hib)
    rng = np.random.default_rng(seed)
    pa = rng.beta(pr[0] + sa, pr[1] + na - sa, int(n_draws))
    pb = rng.beta(pr[0] + sb, pr[1] + nb - sb, int(n_draws))
    d = pb - pa
    lo, hi = np.quantile(d, [alpha / 2, 1 - alpha / 2])
    gain = d if hib else -d  # how much better B is, in the metric's direction
    return BayesResult(
        name,
        StatCode.OK,
        float(d.mean()),
        float(lo),
        float(hi),
        float((gain > 0).mean()),
        float(np.maximum(-gain, 0).mean()),
        na,
        nb,
        float(alpha),
        hib,
    )


def bayes_means(
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    alpha: float = 0.05,
    higher_is_better: bool = True,
) -> BayesResult:
    """Flat-prior, large-sample normal posterior of each arm's mean, mean ~ N(xbar, s^2 / n), so
    B - A ~ N(d, V) with V = s_a^2/n_a + s_b^2/n_b, in closed form with g = d (higher is better) or
    g = -d (lower is better, e.g. latency) the posterior mean gain of B: chance_to_win = Phi(g / sqrt V),
    expected_loss = E[max(-G, 0)] = sqrt V phi(g / sqrt V) - g Phi(-g / sqrt V) (the normal partial
    expectation), credible interval d +/- z sqrt V (numerically the Welch CI with normal quantiles). Not for
    tiny samples (TOO_FEW below 2 per arm)."""
    name = "bayes_means"
    hib = bool(higher_is_better)
    xa, xb, err = _two_samples(name, a, b, alpha)
    if err is not None:
        return _bayes_bad(name, err.code, err.n_a, err.n_b, err.alpha, hib)
    d, se, _ = _welch_parts(xa, xb)
    if se == 0:
        return _bayes_bad(name, StatCode.ZERO_VARIANCE, xa.size, xb.size, alpha, hib)
    return normal_posterior(name, d, se, alpha, hib, xa.size, xb.size)


def normal_posterior(
    name: str, mu: float, sd: float, alpha: float, higher_is_better: bool, n_a: int, n_b: int
) -> BayesResult:
    """Summaries of a normal posterior N(mu, sd^2) of B vs A (a difference or a lift): with g = mu (higher is
    better) or -mu (lower is better) the posterior mean gain of B, chance_to_win = Phi(g / sd) and
    expected_loss = E[max(-G, 0)] = sd phi(g / sd) - g Phi(-g / sd) (the normal partial expectation);
    equal-tailed credible interval mu +/- z_{1-alpha/2} sd."""
    g = mu if higher_is_better else -mu
    z = g / sd
    q = float(stats.norm.ppf(1 - alpha / 2))
    loss = sd * float(stats.norm.pdf(z)) - g * float(stats.norm.cdf(-z))
    return BayesResult(
        name,
        StatCode.OK,
        float(mu),
        float(mu - q * sd),
        float(mu + q * sd),
        float(stats.norm.cdf(z)),
        max(float(loss), 0.0),
        int(n_a),
        int(n_b),
        float(alpha),
        bool(higher_is_better),
    )
