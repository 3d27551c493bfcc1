"""Variance reduction: CUPED (a pre-period covariate removes shared variance before the test)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from abtest.frequentist import _four, welch
from abtest.results import MIN_N, NAN, CupedResult, StatCode, TestResult, _as_1d, _bad, _f

# ------------------------------------------------------------------------------------------------ 6. CUPED


def cuped(y: Sequence[float] | np.ndarray, x_pre: Sequence[float] | np.ndarray) -> CupedResult:
    """CUPED (Deng et al. 2013): theta = cov(y, x) / var(x) with x a pre-experiment covariate;
    ``adjusted = y - theta (x - mean(x))`` has the same mean as y and variance (1 - rho^2) var(y)."""
    ya, xa = _as_1d(y), _as_1d(x_pre)
    if ya is None or xa is None or ya.shape != xa.shape:
        return CupedResult(StatCode.BAD_INPUT, NAN, NAN, ())
    if ya.size == 0:
        return CupedResult(StatCode.EMPTY_ARM, NAN, NAN, ())
    nan = tuple(NAN for _ in range(ya.size))
    if ya.size < MIN_N:
        return CupedResult(StatCode.TOO_FEW, NAN, NAN, nan)
    c = np.cov(ya, xa, ddof=1)
    if c[1, 1] == 0 or c[0, 0] == 0:
        return CupedResult(StatCode.ZERO_VARIANCE, NAN, NAN, nan)
    theta = float(c[0, 1] / c[1, 1])
    adj = ya - theta * (xa - xa.mean())
    return CupedResult(StatCode.OK, theta, float(1 - adj.var(ddof=1) / c[0, 0]), tuple(adj.tolist()))


def cuped_welch(
    a_y: Sequence[float] | np.ndarray,
    a_x: Sequence[float] | np.ndarray,
    b_y: Sequence[float] | np.ndarray,
    b_x: Sequence[float] | np.ndarray,
    alpha: float = 0.05,
) -> TestResult:
    """Welch test on CUPED-adjusted outcomes with one pooled theta for both arms: theta = (within-arm
    centred cross products of y and x, summed over arms) / (within-arm centred squares of x, summed), so
    the treatment effect on y does not leak into theta; both arms subtract theta (x - pooled mean of x).
    ``estimate`` = (mean y_b - mean y_a) - theta (mean x_b - mean x_a): unbiased for the plain difference
    when x is pre-experiment (its arm means differ only by chance), with a narrower CI when x predicts y.
    The CI ignores the (small, O(1/n)) uncertainty of theta."""
    name = "cuped_welch"
    arrs = _four((a_y, a_x, b_y, b_x), alpha)
    if arrs is None:
        return _bad(name, StatCode.BAD_INPUT, alpha=_f(alpha))
    ay, ax, by, bx = arrs
    if ay.size == 0 or by.size == 0:
        return _bad(name, StatCode.EMPTY_ARM, ay.size, by.size, alpha)
    if ay.size < MIN_N or by.size < MIN_N:
        return _bad(name, StatCode.TOO_FEW, ay.size, by.size, alpha)
    sxx = ((ax - ax.mean()) ** 2).sum() + ((bx - bx.mean()) ** 2).sum()
    if sxx == 0:
        return _bad(name, StatCode.ZERO_VARIANCE, ay.size, by.size, alpha)
    sxy = ((ax - ax.mean()) * (ay - ay.mean())).sum() + ((bx - bx.mean()) * (by - by.mean())).sum()
    theta = sxy / sxx
    mx = np.concatenate([ax, bx]).mean()
    res = welch(ay - theta * (ax - mx), by - theta * (bx - mx), alpha)
    return TestResult(
        name, res.code, res.estimate, res.ci_low, res.ci_high, res.statistic, res.p_value, res.n_a, res.n_b, res.alpha
    )
