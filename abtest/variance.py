"""Variance reduction: CUPED (a pre-period covariate removes shared variance before the test)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from abtest.frequentist import _four, welch
from abtest.results import MIN_N, NAN, CupedResult, StatCode, TestResult, _as_1d, _bad, _f, _welch_parts

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
    pooled = _pooled_theta(ay, ax, by, bx)
    if pooled is None:
        return _bad(name, StatCode.ZERO_VARIANCE, ay.size, by.size, alpha)
    res = welch(*_adjust(ay, ax, by, bx, pooled.theta), alpha)
    return TestResult(
        name, res.code, res.estimate, res.ci_low, res.ci_high, res.statistic, res.p_value, res.n_a, res.n_b, res.alpha
    )


@dataclass(frozen=True)
class _Pooled:
    theta: float
    sxx: float  # within-arm centred sums of squares / cross products, summed over both arms
    sxy: float
    syy: float


def _pooled_theta(ay: np.ndarray, ax: np.ndarray, by: np.ndarray, bx: np.ndarray) -> _Pooled | None:
    """theta = S_xy / S_xx from within-arm centred sums over both arms (so the treatment effect on y,
    a between-arm shift, does not leak into theta); None when S_xx = 0 (x constant within both arms)."""
    cax, cbx = ax - ax.mean(), bx - bx.mean()
    cay, cby = ay - ay.mean(), by - by.mean()
    sxx = float((cax**2).sum() + (cbx**2).sum())
    if sxx == 0:
        return None
    sxy = float((cax * cay).sum() + (cbx * cby).sum())
    return _Pooled(sxy / sxx, sxx, sxy, float((cay**2).sum() + (cby**2).sum()))


def _adjust(
    ay: np.ndarray, ax: np.ndarray, by: np.ndarray, bx: np.ndarray, theta: float
) -> tuple[np.ndarray, np.ndarray]:
    """Both arms minus theta (x - pooled mean of x): one shift for both, so B - A moves only by theta
    (mean x_b - mean x_a)."""
    mx = np.concatenate([ax, bx]).mean()
    return ay - theta * (ax - mx), by - theta * (bx - mx)


@dataclass(frozen=True)
class CupedReduction:
    """How much CUPED shrinks the treatment effect's uncertainty, two ways (see :func:`cuped_reduction`).
    All statistics NaN unless code is OK."""

    code: StatCode
    theta: float  # pooled within-arm theta, the one cuped_welch uses
    se_unadjusted: float  # Welch se of mean y_b - mean y_a
    se_adjusted: float  # Welch se of the same difference on the CUPED-adjusted y
    se_reduction: float  # 1 - se_adjusted^2 / se_unadjusted^2: what Statsig / Eppo / GrowthBook report
    variance_reduction: float  # 1 - S_yy,adjusted / S_yy, within-arm sums pooled: per-unit variance
    rho2: float  # S_xy^2 / (S_xx S_yy): pooled within-arm squared correlation of y and x
    n_a: int
    n_b: int
    alpha: float


def cuped_reduction(
    a_y: Sequence[float] | np.ndarray,
    a_x: Sequence[float] | np.ndarray,
    b_y: Sequence[float] | np.ndarray,
    b_x: Sequence[float] | np.ndarray,
    alpha: float = 0.05,
) -> CupedReduction:
    """CUPED's variance reduction as experiment platforms report it, next to the per-unit definition.

    ``se_reduction`` = 1 - se_adj^2 / se_unadj^2 with se^2 = s_a^2 / n_a + s_b^2 / n_b (Welch) on y and
    on the adjusted y of :func:`cuped_welch` (same pooled theta): the share of the effect estimate's
    variance removed, i.e. the sample-size saving (0.3 = the same CI with 30% fewer units).
    ``variance_reduction`` = 1 - (pooled within-arm variance of adjusted y) / (that of y) — the
    per-unit, Deng et al. definition; with the pooled theta it equals ``rho2`` = S_xy^2 / (S_xx S_yy)
    exactly (S_yy,adj = S_yy - S_xy^2 / S_xx). The two agree (~ rho^2) with equal arms or when both arms
    have the same variances and correlation; they differ with unequal arms whose variances or correlations
    differ (the se weights each arm by 1 / n, so a small canary arm dominates se_reduction, while the
    pooled variance is dominated by the large arm) and, in small samples, by chance. ZERO_VARIANCE when x
    or y is constant within both arms. ``alpha`` is only validated (kept for the cuped_welch signature)."""
    arrs = _four((a_y, a_x, b_y, b_x), alpha)

    def bad(code: StatCode, n_a: int = 0, n_b: int = 0) -> CupedReduction:
        return CupedReduction(code, NAN, NAN, NAN, NAN, NAN, NAN, int(n_a), int(n_b), _f(alpha))

    if arrs is None:
        return bad(StatCode.BAD_INPUT)
    ay, ax, by, bx = arrs
    if ay.size == 0 or by.size == 0:
        return bad(StatCode.EMPTY_ARM, ay.size, by.size)
    if ay.size < MIN_N or by.size < MIN_N:
        return bad(StatCode.TOO_FEW, ay.size, by.size)
    pooled = _pooled_theta(ay, ax, by, bx)
    if pooled is None or pooled.syy == 0:
        return bad(StatCode.ZERO_VARIANCE, ay.size, by.size)
    adj_a, adj_b = _adjust(ay, ax, by, bx, pooled.theta)
    _, se_y, _ = _welch_parts(ay, by)
    _, se_adj, _ = _welch_parts(adj_a, adj_b)
    s_adj = float(((adj_a - adj_a.mean()) ** 2).sum() + ((adj_b - adj_b.mean()) ** 2).sum())
    return CupedReduction(
        StatCode.OK,
        pooled.theta,
        se_y,
        se_adj,
        1 - se_adj**2 / se_y**2,
        1 - s_adj / pooled.syy,
        pooled.sxy**2 / (pooled.sxx * pooled.syy),
        ay.size,
        by.size,
        float(alpha),
    )
