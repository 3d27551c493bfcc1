"""What every A/B statistic returns: codes (:class:`StatCode`), typed frozen results, and the input checks
the families share (BAD_INPUT -> EMPTY_ARM -> TOO_FEW -> ZERO_VARIANCE, in that order)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

import numpy as np

NAN = float("nan")
MIN_N = 2  # smallest arm the sample-based tests accept (a variance needs two observations)


class StatCode(StrEnum):
    OK = "ok"
    TOO_FEW = "too_few_samples"
    ZERO_VARIANCE = "zero_variance"
    EMPTY_ARM = "empty_arm"
    BAD_INPUT = "bad_input"
    ZERO_BASELINE = "zero_baseline"  # relative lift: the control mean is 0, so B / A - 1 is undefined


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
    """CUPED adjustment of one sample: ``adjusted = y - theta * (x - mean(x))``. ``variance_reduction`` is
    the per-unit one (= the sample's squared correlation of y and x); what experiment platforms report is
    the reduction of the treatment effect's squared standard error — see ``abtest.variance.cuped_reduction``."""

    code: StatCode
    theta: float
    variance_reduction: float  # 1 - var(adjusted) / var(y)
    adjusted: tuple[float, ...]


@dataclass(frozen=True)
class PowerResult:
    """Sample size for a minimum detectable effect, or the MDE for a sample size (two-sided test).
    ``n_a`` / ``n_b`` are the control / treatment units to plan with; ``treatment_share`` = n_b / (n_a + n_b)
    as designed (0.5 = 50/50, 0.1 = a 90/10 canary). ``n_per_arm`` is the larger arm, max(n_a, n_b): units
    per arm at 50/50, and for the ``mde_*`` functions the n they were given. ``method`` is "fleiss" or
    "arcsine" for proportions, "normal" for means. Counts are 0 when the code is BAD_INPUT."""

    name: str
    code: StatCode
    n_per_arm: int
    mde: float
    baseline: float  # p_a for proportions, NaN for means
    sd: float  # sd for means, NaN for proportions
    alpha: float
    power: float
    n_a: int = 0  # control units
    n_b: int = 0  # treatment units
    treatment_share: float = 0.5
    method: str = ""


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
