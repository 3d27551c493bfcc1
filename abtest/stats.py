"""Frequentist A/B statistics: pure functions on numpy arrays (scipy only), typed frozen results.

Sign convention (everywhere): **B vs A, positive = B larger** — ``estimate`` is ``B - A`` (or a statistic
of B relative to A where a function's docstring says so), and confidence intervals bound that quantity.

Bad data never raises and never passes silently: each result carries a ``code`` (:class:`StatCode`) and,
unless the code is ``OK``, NaN statistics. Checks run in this order: ``BAD_INPUT`` (NaN / inf, wrong
shapes, alpha or proportions outside their range) -> ``EMPTY_ARM`` -> ``TOO_FEW`` -> ``ZERO_VARIANCE``.
Sample-based tests need ``MIN_N`` = 2 observations per arm (TOO_FEW below that).

Contents: two-arm tests (two_proportions, welch, mann_whitney, paired_t, wilcoxon); srm; holm and
benjamini_hochberg; non_inferiority, superiority_cost, non_inferiority_proportions; ratio_delta and
ratio_bootstrap; cuped and cuped_welch; msprt, msprt_log_lr and always_valid_p_values; power_proportions,
mde_proportions, power_means, mde_means; bayes_proportions and bayes_means.

Every result is a frozen dataclass of plain Python values, so ``json.dumps(dataclasses.asdict(r))`` works
(NaN / inf serialise as ``NaN`` / ``Infinity``, which Python's json module reads back).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
from scipy import optimize, stats

NAN = float("nan")
MIN_N = 2  # smallest arm the sample-based tests accept (a variance needs two observations)


class StatCode(StrEnum):
    OK = "ok"
    TOO_FEW = "too_few_samples"
    ZERO_VARIANCE = "zero_variance"
    EMPTY_ARM = "empty_arm"
    BAD_INPUT = "bad_input"


@dataclass(frozen=True)
class TestResult:
    """One two-arm comparison. ``estimate`` is B - A unless the function says otherwise; reject H0 iff
    ``p_value < alpha``. One-sided tests put the unused side of the interval at +/-inf."""

    __test__ = False  # not a pytest test class

    name: str
    code: StatCode
    estimate: float
    ci_low: float
    ci_high: float
    statistic: float
    p_value: float
    n_a: int
    n_b: int
    alpha: float


@dataclass(frozen=True)
class SrmResult:
    """Sample-ratio-mismatch check: ``mismatch`` is ``p_value < threshold`` (False unless code is OK)."""

    code: StatCode
    mismatch: bool
    statistic: float
    p_value: float
    threshold: float
    counts: tuple[int, ...]
    expected: tuple[float, ...]


@dataclass(frozen=True)
class MultipleTestResult:
    """Family-wise (Holm) or false-discovery (Benjamini-Hochberg) adjustment, in the input order."""

    method: str
    code: StatCode
    alpha: float
    p_values: tuple[float, ...]
    adjusted: tuple[float, ...]
    reject: tuple[bool, ...]


@dataclass(frozen=True)
class CupedResult:
    """CUPED adjustment of one sample: ``adjusted = y - theta * (x - mean(x))``."""

    code: StatCode
    theta: float
    variance_reduction: float  # 1 - var(adjusted) / var(y)
    adjusted: tuple[float, ...]


@dataclass(frozen=True)
class PowerResult:
    """Sample size per arm for a minimum detectable effect, or the MDE for a sample size (two-sided test).
    ``n_per_arm`` is 0 when the code is not OK."""

    name: str
    code: StatCode
    n_per_arm: int
    mde: float
    baseline: float  # p_a for proportions, NaN for means
    sd: float  # sd for means, NaN for proportions
    alpha: float
    power: float


# ----------------------------------------------------------------------------------------------- helpers


def _bad(name: str, code: StatCode, n_a: int = 0, n_b: int = 0, alpha: float = NAN) -> TestResult:
    return TestResult(name, code, NAN, NAN, NAN, NAN, NAN, int(n_a), int(n_b), _f(alpha))


def _f(x: object) -> float:
    try:
        return float(x)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return NAN


def _ok_alpha(alpha: object) -> bool:
    a = _f(alpha)
    return 0.0 < a < 1.0


def _as_1d(x: object) -> np.ndarray | None:
    """A finite 1-D float array, or None (the caller reports BAD_INPUT)."""
    try:
        arr = np.asarray(x, dtype=float)
    except (TypeError, ValueError):
        return None
    if arr.ndim != 1 or not np.all(np.isfinite(arr)):
        return None
    return arr


def _two_samples(name: str, a: object, b: object, alpha: object, paired: bool = False):
    """Validated (a, b) arrays, or a ready-made error result."""
    xa, xb = _as_1d(a), _as_1d(b)
    if xa is None or xb is None or not _ok_alpha(alpha):
        na = xa.size if xa is not None else 0
        nb = xb.size if xb is not None else 0
        return None, None, _bad(name, StatCode.BAD_INPUT, na, nb, _f(alpha))
    if xa.size == 0 or xb.size == 0:
        return None, None, _bad(name, StatCode.EMPTY_ARM, xa.size, xb.size, alpha)
    if paired and xa.shape != xb.shape:
        return None, None, _bad(name, StatCode.BAD_INPUT, xa.size, xb.size, alpha)
    if xa.size < MIN_N or xb.size < MIN_N:
        return None, None, _bad(name, StatCode.TOO_FEW, xa.size, xb.size, alpha)
    return xa, xb, None


def _welch_parts(xa: np.ndarray, xb: np.ndarray) -> tuple[float, float, float]:
    """(mean_b - mean_a, standard error, Welch-Satterthwaite degrees of freedom)."""
    va, vb = xa.var(ddof=1) / xa.size, xb.var(ddof=1) / xb.size
    se2 = va + vb
    df = se2**2 / (va**2 / (xa.size - 1) + vb**2 / (xb.size - 1)) if se2 > 0 else NAN
    return float(xb.mean() - xa.mean()), float(math.sqrt(se2)), float(df)


def _counts(successes: object, n: object) -> tuple[int, int] | None:
    s, m = _f(successes), _f(n)
    if not (math.isfinite(s) and math.isfinite(m)) or s != int(s) or m != int(m) or m < 0 or not 0 <= s <= m:
        return None
    return int(s), int(m)


# ------------------------------------------------------------------------------------ 1. two-arm tests


def two_proportions(successes_a: int, n_a: int, successes_b: int, n_b: int, alpha: float = 0.05) -> TestResult:
    """Two-sided z-test of p_b = p_a with the pooled standard error
    ``sqrt(p(1-p)(1/n_a + 1/n_b))``, p = pooled rate; CI of p_b - p_a from the unpooled Wald standard
    error ``sqrt(p_a(1-p_a)/n_a + p_b(1-p_b)/n_b)``. ZERO_VARIANCE when the pooled rate is 0 or 1."""
    name = "two_proportions"
    ca, cb = _counts(successes_a, n_a), _counts(successes_b, n_b)
    if ca is None or cb is None or not _ok_alpha(alpha):
        return _bad(name, StatCode.BAD_INPUT, ca[1] if ca else 0, cb[1] if cb else 0, _f(alpha))
    (sa, na), (sb, nb) = ca, cb
    if na == 0 or nb == 0:
        return _bad(name, StatCode.EMPTY_ARM, na, nb, alpha)
    pa, pb, pooled = sa / na, sb / nb, (sa + sb) / (na + nb)
    if pooled in (0.0, 1.0):
        return _bad(name, StatCode.ZERO_VARIANCE, na, nb, alpha)
    diff = pb - pa
    z = diff / math.sqrt(pooled * (1 - pooled) * (1 / na + 1 / nb))
    se = math.sqrt(pa * (1 - pa) / na + pb * (1 - pb) / nb)
    q = float(stats.norm.ppf(1 - alpha / 2))
    p = float(2 * stats.norm.sf(abs(z)))
    return TestResult(name, StatCode.OK, diff, diff - q * se, diff + q * se, float(z), p, na, nb, float(alpha))


def welch(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray, alpha: float = 0.05) -> TestResult:
    """Welch's unequal-variance t-test of mean_b = mean_a; CI of mean_b - mean_a with
    Welch-Satterthwaite degrees of freedom. Same p-value as ``scipy.stats.ttest_ind(b, a, equal_var=False)``."""
    name = "welch"
    xa, xb, err = _two_samples(name, a, b, alpha)
    if err is not None:
        return err
    diff, se, df = _welch_parts(xa, xb)
    if se == 0:
        return _bad(name, StatCode.ZERO_VARIANCE, xa.size, xb.size, alpha)
    t = diff / se
    q = float(stats.t.ppf(1 - alpha / 2, df))
    p = float(2 * stats.t.sf(abs(t), df))
    return TestResult(name, StatCode.OK, diff, diff - q * se, diff + q * se, t, p, xa.size, xb.size, float(alpha))


def mann_whitney(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray, alpha: float = 0.05) -> TestResult:
    """Two-sided Mann-Whitney U test (``scipy.stats.mannwhitneyu(b, a)``, method "auto").

    ``estimate`` is the probability of superiority P(B > A) + P(B = A)/2 = U_B / (n_a n_b), so 0.5 means
    no difference and > 0.5 means B tends larger; ``statistic`` is U_B; no CI (NaN). ZERO_VARIANCE when
    every value in both arms is the same."""
    name = "mann_whitney"
    xa, xb, err = _two_samples(name, a, b, alpha)
    if err is not None:
        return err
    if np.ptp(np.concatenate([xa, xb])) == 0:
        return _bad(name, StatCode.ZERO_VARIANCE, xa.size, xb.size, alpha)
    res = stats.mannwhitneyu(xb, xa, alternative="two-sided")
    u = float(res.statistic)
    return TestResult(
        name, StatCode.OK, u / (xa.size * xb.size), NAN, NAN, u, float(res.pvalue), xa.size, xb.size, float(alpha)
    )


def paired_t(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray, alpha: float = 0.05) -> TestResult:
    """Paired t-test on d = b - a (same length, row i of a pairs with row i of b); CI of mean(d) with
    n - 1 degrees of freedom. Same p-value as ``scipy.stats.ttest_rel(b, a)``."""
    name = "paired_t"
    xa, xb, err = _two_samples(name, a, b, alpha, paired=True)
    if err is not None:
        return err
    d = xb - xa
    n = d.size
    se = float(d.std(ddof=1) / math.sqrt(n))
    if se == 0:
        return _bad(name, StatCode.ZERO_VARIANCE, n, n, alpha)
    est = float(d.mean())
    t = est / se
    q = float(stats.t.ppf(1 - alpha / 2, n - 1))
    p = float(2 * stats.t.sf(abs(t), n - 1))
    return TestResult(name, StatCode.OK, est, est - q * se, est + q * se, t, p, n, n, float(alpha))


def wilcoxon(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray, alpha: float = 0.05) -> TestResult:
    """Wilcoxon signed-rank test on paired differences d = b - a (``scipy.stats.wilcoxon(b, a)``).

    Zero differences: ``zero_method="wilcox"`` — pairs with d == 0 are dropped before ranking (they carry
    no sign), so the test runs on the nonzero differences only; ZERO_VARIANCE when every d is 0, TOO_FEW
    when fewer than 2 nonzero differences remain. ``estimate`` is median(d) over all pairs (zeros
    included); ``statistic`` is scipy's (the smaller signed-rank sum); no CI (NaN)."""
    name = "wilcoxon"
    xa, xb, err = _two_samples(name, a, b, alpha, paired=True)
    if err is not None:
        return err
    d = xb - xa
    n = d.size
    nonzero = int(np.count_nonzero(d))
    if nonzero == 0:
        return _bad(name, StatCode.ZERO_VARIANCE, n, n, alpha)
    if nonzero < MIN_N:
        return _bad(name, StatCode.TOO_FEW, n, n, alpha)
    res = stats.wilcoxon(d, zero_method="wilcox", alternative="two-sided")
    return TestResult(
        name, StatCode.OK, float(np.median(d)), NAN, NAN, float(res.statistic), float(res.pvalue), n, n, float(alpha)
    )


# ------------------------------------------------------------------------------------------------ 2. SRM


def srm(counts: Sequence[int], planned: Sequence[float], threshold: float = 0.001) -> SrmResult:
    """Sample-ratio mismatch: chi-square goodness of fit (``scipy.stats.chisquare``) of the observed
    units per arm against the planned split (weights, normalised to sum 1); ``mismatch = p < threshold``."""
    try:
        c = np.asarray(counts, dtype=float)
        w = np.asarray(planned, dtype=float)
    except (TypeError, ValueError):
        return SrmResult(StatCode.BAD_INPUT, False, NAN, NAN, _f(threshold), (), ())
    ok = (
        c.ndim == 1
        and w.shape == c.shape
        and c.size >= 2
        and np.all(np.isfinite(c))
        and np.all(np.isfinite(w))
        and np.all(c >= 0)
        and np.all(c == np.round(c))
        and np.all(w > 0)
        and _ok_alpha(threshold)
    )
    if not ok:
        return SrmResult(StatCode.BAD_INPUT, False, NAN, NAN, _f(threshold), (), ())
    obs = tuple(int(v) for v in c)
    total = c.sum()
    if total == 0:
        return SrmResult(StatCode.EMPTY_ARM, False, NAN, NAN, float(threshold), obs, ())
    expected = total * w / w.sum()
    res = stats.chisquare(c, expected)
    p = float(res.pvalue)
    return SrmResult(
        StatCode.OK, p < threshold, float(res.statistic), p, float(threshold), obs, tuple(float(e) for e in expected)
    )


# ------------------------------------------------------------------------------- 3. multiple comparisons


def _check_p(
    method: str, p_values: Sequence[float], alpha: float
) -> tuple[np.ndarray | None, MultipleTestResult | None]:
    p = _as_1d(p_values)
    if p is None or p.size == 0 or np.any((p < 0) | (p > 1)) or not _ok_alpha(alpha):
        if p is None:
            raw = tuple(_f(v) for v in np.ravel(np.asarray(p_values, dtype=object)))
        else:
            raw = tuple(float(v) for v in p)
        nan = tuple(NAN for _ in raw)
        return None, MultipleTestResult(method, StatCode.BAD_INPUT, _f(alpha), raw, nan, tuple(False for _ in raw))
    return p, None


def _multiple(method: str, p: np.ndarray, adjusted: np.ndarray, alpha: float) -> MultipleTestResult:
    """Reject where adjusted <= alpha, with a 1e-12 relative tolerance so that e.g. 5 * 0.03 / 3 (which is
    0.05000000000000001 in floating point) still counts as 0.05."""
    return MultipleTestResult(
        method,
        StatCode.OK,
        float(alpha),
        tuple(float(v) for v in p),
        tuple(float(v) for v in adjusted),
        tuple(bool(v) for v in adjusted <= alpha * (1 + 1e-12)),
    )


def holm(p_values: Sequence[float], alpha: float = 0.05) -> MultipleTestResult:
    """Holm step-down: sorted p_(1) <= ... <= p_(m), adjusted p_(i) = max_{j<=i} min(1, (m - j + 1) p_(j));
    reject where adjusted <= alpha (controls the family-wise error rate)."""
    p, err = _check_p("holm", p_values, alpha)
    if err is not None:
        return err
    m = p.size
    order = np.argsort(p, kind="stable")
    stepped = np.minimum(1.0, (m - np.arange(m)) * p[order])
    adj = np.empty(m)
    adj[order] = np.maximum.accumulate(stepped)
    return _multiple("holm", p, adj, alpha)


def benjamini_hochberg(p_values: Sequence[float], alpha: float = 0.05) -> MultipleTestResult:
    """Benjamini-Hochberg step-up: adjusted p_(i) = min_{j>=i} min(1, m p_(j) / j); reject where
    adjusted <= alpha (controls the false discovery rate under independence / positive dependence)."""
    p, err = _check_p("benjamini_hochberg", p_values, alpha)
    if err is not None:
        return err
    m = p.size
    order = np.argsort(p, kind="stable")
    scaled = np.minimum(1.0, m * p[order] / np.arange(1, m + 1))
    adj = np.empty(m)
    adj[order] = np.minimum.accumulate(scaled[::-1])[::-1]
    return _multiple("benjamini_hochberg", p, adj, alpha)


# --------------------------------------------------------------------------- 4. non-inferiority (one-sided)


def _one_sided(
    name: str, diff: float, se: float, df: float, shift: float, upper: bool, alpha: float, n_a: int, n_b: int
) -> TestResult:
    """H1: diff > -shift (upper=False, bound from below) or diff < shift (upper=True, bound from above).
    df = inf means a z-test."""
    dist = stats.norm if math.isinf(df) else stats.t(df)
    q = float(dist.ppf(1 - alpha))
    if not upper:
        t = (diff + shift) / se
        return TestResult(
            name, StatCode.OK, diff, diff - q * se, math.inf, t, float(dist.sf(t)), n_a, n_b, float(alpha)
        )
    t = (diff - shift) / se
    return TestResult(name, StatCode.OK, diff, -math.inf, diff + q * se, t, float(dist.cdf(t)), n_a, n_b, float(alpha))


def _paired_parts(xa: np.ndarray, xb: np.ndarray) -> tuple[float, float, float]:
    """(mean(b - a), its standard error, n - 1): the paired counterpart of `_welch_parts`."""
    d = xb - xa
    return float(d.mean()), float(d.std(ddof=1) / math.sqrt(d.size)), float(d.size - 1)


def non_inferiority(
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    margin: float,
    alpha: float = 0.05,
    higher_is_better: bool = True,
    paired: bool = False,
) -> TestResult:
    """One-sided Welch non-inferiority test of B against A with a margin >= 0 in the metric's units.

    higher_is_better (e.g. quality): H0: mean_b - mean_a <= -margin, t = (diff + margin) / se,
    p = P(T >= t); ``ci_low`` is the one-sided (1 - alpha) lower bound of the difference (``ci_high`` = inf).
    lower is better (e.g. latency): H0: diff >= +margin, p = P(T <= (diff - margin) / se), ``ci_high`` is
    the upper bound (``ci_low`` = -inf). Non-inferior iff p < alpha iff the bound clears the margin.
    paired: row i of a and b are the same unit (an offline replay of two routers on the same prompts); the
    test is then the one-sample t on the differences b - a (``paired_non_inferiority``)."""
    name = "paired_non_inferiority" if paired else "non_inferiority"
    xa, xb, err = _two_samples(name, a, b, alpha, paired=paired)
    if err is not None:
        return err
    if not (math.isfinite(_f(margin)) and _f(margin) >= 0):
        return _bad(name, StatCode.BAD_INPUT, xa.size, xb.size, alpha)
    diff, se, df = (_paired_parts if paired else _welch_parts)(xa, xb)
    if se == 0:
        return _bad(name, StatCode.ZERO_VARIANCE, xa.size, xb.size, alpha)
    return _one_sided(name, diff, se, df, float(margin), not higher_is_better, alpha, xa.size, xb.size)


def superiority_cost(
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    margin: float = 0.0,
    alpha: float = 0.05,
    paired: bool = False,
) -> TestResult:
    """One-sided Welch superiority test for a lower-is-better metric (cost): is B cheaper than A by more
    than ``margin``? H0: mean_b - mean_a >= -margin, t = (diff + margin) / se, p = P(T <= t);
    ``ci_high`` is the one-sided (1 - alpha) upper bound of the difference (``ci_low`` = -inf).
    Superior iff p < alpha iff ci_high < -margin. The mirror of :func:`non_inferiority` (``paired`` too)."""
    name = "paired_superiority_cost" if paired else "superiority_cost"
    xa, xb, err = _two_samples(name, a, b, alpha, paired=paired)
    if err is not None:
        return err
    if not (math.isfinite(_f(margin)) and _f(margin) >= 0):
        return _bad(name, StatCode.BAD_INPUT, xa.size, xb.size, alpha)
    diff, se, df = (_paired_parts if paired else _welch_parts)(xa, xb)
    if se == 0:
        return _bad(name, StatCode.ZERO_VARIANCE, xa.size, xb.size, alpha)
    return _one_sided(name, diff, se, df, -float(margin), True, alpha, xa.size, xb.size)


def non_inferiority_proportions(
    successes_a: int,
    n_a: int,
    successes_b: int,
    n_b: int,
    margin: float,
    alpha: float = 0.05,
    higher_is_better: bool = True,
) -> TestResult:
    """One-sided z non-inferiority test for rates with the unpooled Wald standard error (H0 sits at
    -margin, not 0, so the rates are not pooled). Hypotheses and bounds as in :func:`non_inferiority`."""
    name = "non_inferiority_proportions"
    ca, cb = _counts(successes_a, n_a), _counts(successes_b, n_b)
    m = _f(margin)
    if ca is None or cb is None or not _ok_alpha(alpha) or not (math.isfinite(m) and 0 <= m <= 1):
        return _bad(name, StatCode.BAD_INPUT, ca[1] if ca else 0, cb[1] if cb else 0, _f(alpha))
    (sa, na), (sb, nb) = ca, cb
    if na == 0 or nb == 0:
        return _bad(name, StatCode.EMPTY_ARM, na, nb, alpha)
    pa, pb = sa / na, sb / nb
    se = math.sqrt(pa * (1 - pa) / na + pb * (1 - pb) / nb)
    if se == 0:
        return _bad(name, StatCode.ZERO_VARIANCE, na, nb, alpha)
    return _one_sided(name, pb - pa, se, math.inf, m, not higher_is_better, alpha, na, nb)


# ------------------------------------------------------------------------------------ 5. ratio metrics


def _four(values: tuple[object, object, object, object], alpha: object) -> list[np.ndarray] | None:
    """(A column 1, A column 2, B column 1, B column 2) as finite 1-D arrays, equal length within an arm."""
    arrs = [_as_1d(v) for v in values]
    if any(v is None for v in arrs) or arrs[0].shape != arrs[1].shape or arrs[2].shape != arrs[3].shape:
        return None
    return arrs if _ok_alpha(alpha) else None


def _ratio_arms(name: str, num_a: object, den_a: object, num_b: object, den_b: object, alpha: object):
    arrs = _four((num_a, den_a, num_b, den_b), alpha)
    if arrs is None:
        return None, _bad(name, StatCode.BAD_INPUT, alpha=_f(alpha))
    xa, ya, xb, yb = arrs
    if xa.size == 0 or xb.size == 0:
        return None, _bad(name, StatCode.EMPTY_ARM, xa.size, xb.size, alpha)
    if xa.size < MIN_N or xb.size < MIN_N:
        return None, _bad(name, StatCode.TOO_FEW, xa.size, xb.size, alpha)
    if ya.sum() == 0 or yb.sum() == 0:
        return None, _bad(name, StatCode.BAD_INPUT, xa.size, xb.size, alpha)
    return (xa, ya, xb, yb), None


def _ratio_var(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(R = sum x / sum y, delta-method variance of R) over independent units."""
    n = x.size
    mx, my = x.mean(), y.mean()
    c = np.cov(x, y, ddof=1)
    var = (c[0, 0] / my**2 - 2 * mx * c[0, 1] / my**3 + mx**2 * c[1, 1] / my**4) / n
    return float(mx / my), float(max(var, 0.0))


def ratio_delta(
    num_a: Sequence[float] | np.ndarray,
    den_a: Sequence[float] | np.ndarray,
    num_b: Sequence[float] | np.ndarray,
    den_b: Sequence[float] | np.ndarray,
    alpha: float = 0.05,
) -> TestResult:
    """Ratio metric R = sum(num) / sum(den) per arm (e.g. cost per request, with one row per randomisation
    unit = user: num = the user's total cost, den = the user's requests), compared by the delta method:
    Var(R) ~ (s_xx / my^2 - 2 mx s_xy / my^3 + mx^2 s_yy / my^4) / n. ``estimate`` = R_b - R_a, CI and
    two-sided p from the normal approximation. BAD_INPUT when an arm's denominators sum to 0."""
    name = "ratio_delta"
    arms, err = _ratio_arms(name, num_a, den_a, num_b, den_b, alpha)
    if err is not None:
        return err
    xa, ya, xb, yb = arms
    ra, va = _ratio_var(xa, ya)
    rb, vb = _ratio_var(xb, yb)
    se = math.sqrt(va + vb)
    if se == 0:
        return _bad(name, StatCode.ZERO_VARIANCE, xa.size, xb.size, alpha)
    diff = rb - ra
    z = diff / se
    q = float(stats.norm.ppf(1 - alpha / 2))
    return TestResult(
        name,
        StatCode.OK,
        diff,
        diff - q * se,
        diff + q * se,
        z,
        float(2 * stats.norm.sf(abs(z))),
        xa.size,
        xb.size,
        float(alpha),
    )


def ratio_bootstrap(
    num_a: Sequence[float] | np.ndarray,
    den_a: Sequence[float] | np.ndarray,
    num_b: Sequence[float] | np.ndarray,
    den_b: Sequence[float] | np.ndarray,
    alpha: float = 0.05,
    n_boot: int = 2000,
    seed: int = 0,
) -> TestResult:
    """Unit-level bootstrap of R_b - R_a (units resampled with replacement within each arm, seeded):
    percentile CI; ``statistic`` = estimate / bootstrap sd and a two-sided normal p-value from it.
    BAD_INPUT when n_boot < 100 or a resample's denominators sum to 0 (too many zero-denominator units).
    A check on :func:`ratio_delta`, not a replacement (it is n_boot times slower)."""
    name = "ratio_bootstrap"
    arms, err = _ratio_arms(name, num_a, den_a, num_b, den_b, alpha)
    if err is not None:
        return err
    if int(n_boot) < 100:
        return _bad(name, StatCode.BAD_INPUT, arms[0].size, arms[2].size, alpha)
    xa, ya, xb, yb = arms
    rng = np.random.default_rng(seed)

    def boot(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        out = np.empty(int(n_boot))
        step = max(1, 2_000_000 // x.size)
        for s in range(0, int(n_boot), step):
            k = min(step, int(n_boot) - s)
            idx = rng.integers(0, x.size, size=(k, x.size))
            with np.errstate(divide="ignore", invalid="ignore"):
                out[s : s + k] = x[idx].sum(axis=1) / y[idx].sum(axis=1)
        return out

    draws = boot(xb, yb) - boot(xa, ya)
    if not np.all(np.isfinite(draws)):  # some resample's denominators summed to 0: the ratio is undefined
        return _bad(name, StatCode.BAD_INPUT, xa.size, xb.size, alpha)
    diff = float(xb.sum() / yb.sum() - xa.sum() / ya.sum())
    sd = float(draws.std(ddof=1))
    if not sd > 0:
        return _bad(name, StatCode.ZERO_VARIANCE, xa.size, xb.size, alpha)
    lo, hi = np.quantile(draws, [alpha / 2, 1 - alpha / 2])
    z = diff / sd
    return TestResult(
        name,
        StatCode.OK,
        diff,
        float(lo),
        float(hi),
        z,
        float(2 * stats.norm.sf(abs(z))),
        xa.size,
        xb.size,
        float(alpha),
    )


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


# ------------------------------------------------------------------------------------ 8. power / sample size


def _z(alpha: float, power: float) -> tuple[float, float]:
    return float(stats.norm.ppf(1 - alpha / 2)), float(stats.norm.ppf(power))


def _n_proportions(p_a: float, mde: float, za: float, zb: float) -> float:
    p_b = p_a + mde
    pbar = (p_a + p_b) / 2
    num = za * math.sqrt(2 * pbar * (1 - pbar)) + zb * math.sqrt(p_a * (1 - p_a) + p_b * (1 - p_b))
    return num**2 / mde**2


def power_proportions(p_a: float, mde: float, alpha: float = 0.05, power: float = 0.8) -> PowerResult:
    """Units per arm for a two-sided two-proportion z-test to detect p_b = p_a + mde (absolute; either
    sign) — normal approximation without continuity correction (Fleiss):
    n = (z_{1-alpha/2} sqrt(2 pbar (1 - pbar)) + z_{power} sqrt(p_a q_a + p_b q_b))^2 / mde^2,
    pbar = (p_a + p_b) / 2, rounded up. p_a = 0.1, mde = 0.02, alpha 0.05, power 0.8 -> 3841."""
    name = "power_proportions"
    pa, d, al, pw = _f(p_a), _f(mde), _f(alpha), _f(power)
    if not (0 < pa < 1 and math.isfinite(d) and d != 0 and 0 < pa + d < 1 and _ok_alpha(al) and 0 < pw < 1):
        return PowerResult(name, StatCode.BAD_INPUT, 0, d, pa, NAN, al, pw)
    n = _n_proportions(pa, d, *_z(al, pw))
    return PowerResult(name, StatCode.OK, int(math.ceil(n - 1e-9)), d, pa, NAN, al, pw)


def mde_proportions(p_a: float, n: int, alpha: float = 0.05, power: float = 0.8) -> PowerResult:
    """Smallest absolute upward lift p_b - p_a detectable with n units per arm: the root in (0, 1 - p_a)
    of n_required(mde) = n, with n_required from :func:`power_proportions` (not rounded). TOO_FEW when
    even p_b -> 1 would need more than n units per arm."""
    name = "mde_proportions"
    pa, nn, al, pw = _f(p_a), _f(n), _f(alpha), _f(power)
    if not (0 < pa < 1 and math.isfinite(nn) and nn >= 1 and _ok_alpha(al) and 0 < pw < 1):
        return PowerResult(name, StatCode.BAD_INPUT, 0, NAN, pa, NAN, al, pw)
    za, zb = _z(al, pw)
    hi = 1 - pa - 1e-12
    if _n_proportions(pa, hi, za, zb) > nn:  # even the largest possible lift needs more units
        return PowerResult(name, StatCode.TOO_FEW, int(nn), NAN, pa, NAN, al, pw)
    d = float(optimize.brentq(lambda m: _n_proportions(pa, m, za, zb) - nn, 1e-12, hi, xtol=1e-12))
    return PowerResult(name, StatCode.OK, int(nn), d, pa, NAN, al, pw)


def power_means(sd: float, mde: float, alpha: float = 0.05, power: float = 0.8) -> PowerResult:
    """Units per arm for a two-sided two-sample z-test of means with common sd:
    n = 2 (z_{1-alpha/2} + z_{power})^2 sd^2 / mde^2, rounded up. sd 1, mde 0.1 -> 1570."""
    name = "power_means"
    s, d, al, pw = _f(sd), _f(mde), _f(alpha), _f(power)
    if not (math.isfinite(s) and s > 0 and math.isfinite(d) and d != 0 and _ok_alpha(al) and 0 < pw < 1):
        return PowerResult(name, StatCode.BAD_INPUT, 0, d, NAN, s, al, pw)
    za, zb = _z(al, pw)
    n = 2 * (za + zb) ** 2 * s**2 / d**2
    return PowerResult(name, StatCode.OK, int(math.ceil(n - 1e-9)), d, NAN, s, al, pw)


def mde_means(sd: float, n: int, alpha: float = 0.05, power: float = 0.8) -> PowerResult:
    """Minimum detectable difference in means with n units per arm: (z_{1-alpha/2} + z_{power}) sd sqrt(2 / n)."""
    name = "mde_means"
    s, nn, al, pw = _f(sd), _f(n), _f(alpha), _f(power)
    if not (math.isfinite(s) and s > 0 and math.isfinite(nn) and nn >= 1 and _ok_alpha(al) and 0 < pw < 1):
        return PowerResult(name, StatCode.BAD_INPUT, 0, NAN, NAN, s, al, pw)
    za, zb = _z(al, pw)
    return PowerResult(name, StatCode.OK, int(nn), float((za + zb) * s * math.sqrt(2 / nn)), NAN, s, al, pw)


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
