"""Sequential testing: the mixture SPRT and always-valid p-values (peeking allowed)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

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
