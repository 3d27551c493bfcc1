"""Power and sample size: units per arm for a minimum detectable effect, and the effect a sample can detect.

Allocation: ``treatment_share`` s is the share of units in B (0.5 = 50/50, 0.1 = a 90/10 canary), so
k = n_b / n_a = s / (1 - s). Every formula is the one-tail normal approximation of the two-sided test: the
far tail (rejecting on the wrong side, Phi(-2 z_{1-alpha/2} - z_{power}): 1e-6 at alpha 0.05, 2e-5 at 0.10)
is ignored, as in the textbook formulas and statsmodels' ``samplesize_proportions_2indep_onetail``; n stays
in closed form and is never under-powered. statsmodels' ``NormalIndPower(..., alternative="two-sided")``
counts that tail and gets a slightly smaller n: < 0.05 units less at alpha 0.05 (arcsine, 0.10 -> 0.12,
90/10: 19173.03 here, 19172.98 there, so 19174 vs 19173 after rounding up), ~3 units at alpha 0.10
(0.02 -> 0.024, 80/20: 41486 vs 41483). The one-tail numbers are exactly
``NormalIndPower().solve_power(effect, alpha=alpha / 2, power=power, ratio=k, alternative="larger")``."""

from __future__ import annotations

import math

from scipy import optimize, stats

from abtest.results import NAN, PowerResult, StatCode, _f, _ok_alpha

# ------------------------------------------------------------------------------------ 8. power / sample size

METHODS = ("fleiss", "arcsine")


def _z(alpha: float, power: float) -> tuple[float, float]:
    return float(stats.norm.ppf(1 - alpha / 2)), float(stats.norm.ppf(power))


def _ok_share(share: float) -> bool:
    return math.isfinite(share) and 0 < share < 1


def _ratio(share: float) -> float:
    """k = n_b / n_a; exactly 1.0 at share 0.5."""
    return share / (1 - share)


def _n_proportions(p_a: float, mde: float, za: float, zb: float, k: float = 1.0, method: str = "fleiss") -> float:
    """Control units n_a (not rounded); treatment units are k n_a."""
    p_b = p_a + mde
    if method == "arcsine":
        h = 2 * math.asin(math.sqrt(p_b)) - 2 * math.asin(math.sqrt(p_a))
        return (za + zb) ** 2 / h**2 * (1 + 1 / k)
    pbar = (p_a + k * p_b) / (1 + k)
    num = za * math.sqrt(pbar * (1 - pbar) * (1 + 1 / k)) + zb * math.sqrt(p_a * (1 - p_a) + p_b * (1 - p_b) / k)
    return num**2 / mde**2


def _n_means(sd: float, mde: float, za: float, zb: float, k: float = 1.0) -> float:
    """Control units n_a (not rounded) for a z-test of means with common sd."""
    return (za + zb) ** 2 * sd**2 * (1 + 1 / k) / mde**2


def _ceil(x: float) -> int:
    return int(math.ceil(x - 1e-9))


def _arms_from_larger(n: float, k: float) -> tuple[float, float]:
    """(n_a, n_b) when the larger arm has n units and n_b = k n_a."""
    return (n, n * k) if k <= 1 else (n / k, n)


def power_proportions(
    p_a: float,
    mde: float,
    alpha: float = 0.05,
    power: float = 0.8,
    *,
    treatment_share: float = 0.5,
    method: str = "fleiss",
) -> PowerResult:
    """Units for a two-sided two-proportion z-test to detect p_b = p_a + mde (absolute; either sign),
    normal approximation without continuity correction, k = n_b / n_a = s / (1 - s):

    * ``"fleiss"`` (default; pooled variance under H0, unpooled under H1, as :func:`two_proportions`
      tests): n_a = (z_{1-alpha/2} sqrt(pbar qbar (1 + 1/k)) + z_{power} sqrt(p_a q_a + p_b q_b / k))^2
      / mde^2, pbar = (p_a + k p_b) / (1 + k) the allocation-weighted rate. = statsmodels'
      ``samplesize_proportions_2indep_onetail(diff=p_a - p_b, prop2=p_b, power, ratio=k, alpha)``.
    * ``"arcsine"``: Cohen's h = 2 asin(sqrt p_b) - 2 asin(sqrt p_a), n_a = (z_{1-alpha/2} + z_{power})^2
      (1 + 1/k) / h^2 = statsmodels' ``NormalIndPower().solve_power(proportion_effectsize(p_b, p_a),
      alpha=alpha / 2, power=power, ratio=k, alternative="larger")`` (the two-sided call minus the far
      tail, see the module docstring). It ignores the pooled null variance of the real test: at 90/10
      the simulated power of :func:`two_proportions` is 0.79-0.81 where Fleiss gives 0.80 (20,000 runs).

    n_a and n_b = k n_a are each rounded up: **use ``n_a`` (control) and ``n_b`` (treatment)**.
    ``n_per_arm`` = max(n_a, n_b), the larger arm — at 50/50 the familiar units per arm (p_a 0.1,
    mde 0.02 -> 3841; arcsine 3835)."""
    name = "power_proportions"
    pa, d, al, pw, s = _f(p_a), _f(mde), _f(alpha), _f(power), _f(treatment_share)
    meth = method if isinstance(method, str) else str(method)
    ok = 0 < pa < 1 and math.isfinite(d) and d != 0 and 0 < pa + d < 1 and _ok_alpha(al) and 0 < pw < 1
    if not (ok and _ok_share(s) and meth in METHODS):
        return PowerResult(name, StatCode.BAD_INPUT, 0, d, pa, NAN, al, pw, 0, 0, s, meth)
    k = _ratio(s)
    na = _n_proportions(pa, d, *_z(al, pw), k, meth)
    n_a, n_b = _ceil(na), _ceil(k * na)
    return PowerResult(name, StatCode.OK, max(n_a, n_b), d, pa, NAN, al, pw, n_a, n_b, s, meth)


def mde_proportions(
    p_a: float,
    n: int,
    alpha: float = 0.05,
    power: float = 0.8,
    *,
    treatment_share: float = 0.5,
    method: str = "fleiss",
) -> PowerResult:
    """Smallest absolute upward lift p_b - p_a detectable when the **larger arm has n units** (so n is
    units per arm at 50/50, and the same number as :func:`power_proportions`' ``n_per_arm`` for any
    split: the two round-trip); the smaller arm has n min(s, 1 - s) / max(s, 1 - s) units (a total of T
    units is n = T max(s, 1 - s)). The root in (0, 1 - p_a) of larger_arm_required(mde) = n, with the
    requirement from :func:`power_proportions` (same ``method``, not rounded). TOO_FEW when even p_b -> 1
    would need more. ``n_a`` / ``n_b`` report the two arms (the smaller rounded to the nearest unit)."""
    name = "mde_proportions"
    pa, nn, al, pw, s = _f(p_a), _f(n), _f(alpha), _f(power), _f(treatment_share)
    meth = method if isinstance(method, str) else str(method)
    ok = 0 < pa < 1 and math.isfinite(nn) and nn >= 1 and _ok_alpha(al) and 0 < pw < 1
    if not (ok and _ok_share(s) and meth in METHODS):
        return PowerResult(name, StatCode.BAD_INPUT, 0, NAN, pa, NAN, al, pw, 0, 0, s, meth)
    k = _ratio(s)
    arms = _arms_from_larger(nn, k)
    n_a, n_b = round(arms[0]), round(arms[1])
    za, zb = _z(al, pw)

    def larger(m: float) -> float:
        na = _n_proportions(pa, m, za, zb, k, meth)
        return max(na, k * na)

    hi = 1 - pa - 1e-12
    if larger(hi) > nn:  # even the largest possible lift needs more units
        return PowerResult(name, StatCode.TOO_FEW, int(nn), NAN, pa, NAN, al, pw, n_a, n_b, s, meth)
    d = float(optimize.brentq(lambda m: larger(m) - nn, 1e-12, hi, xtol=1e-12))
    return PowerResult(name, StatCode.OK, int(nn), d, pa, NAN, al, pw, n_a, n_b, s, meth)


def power_means(
    sd: float, mde: float, alpha: float = 0.05, power: float = 0.8, *, treatment_share: float = 0.5
) -> PowerResult:
    """Units for a two-sided two-sample z-test of means with common sd, k = n_b / n_a = s / (1 - s):
    n_a = (z_{1-alpha/2} + z_{power})^2 sd^2 (1 + 1/k) / mde^2, n_b = k n_a, each rounded up (at 50/50
    n = 2 (z + z)^2 sd^2 / mde^2: sd 1, mde 0.1 -> 1570). statsmodels' ``NormalIndPower().solve_power(
    mde / sd, alpha=alpha / 2, power=power, ratio=k, alternative="larger")`` is n_a (one tail, see above).
    Use ``n_a`` / ``n_b``; ``n_per_arm`` = max(n_a, n_b). ``method`` is "normal"."""
    name = "power_means"
    s, d, al, pw, sh = _f(sd), _f(mde), _f(alpha), _f(power), _f(treatment_share)
    if not (
        math.isfinite(s) and s > 0 and math.isfinite(d) and d != 0 and _ok_alpha(al) and 0 < pw < 1 and _ok_share(sh)
    ):
        return PowerResult(name, StatCode.BAD_INPUT, 0, d, NAN, s, al, pw, 0, 0, sh, "normal")
    k = _ratio(sh)
    na = _n_means(s, d, *_z(al, pw), k)
    n_a, n_b = _ceil(na), _ceil(k * na)
    return PowerResult(name, StatCode.OK, max(n_a, n_b), d, NAN, s, al, pw, n_a, n_b, sh, "normal")


def mde_means(
    sd: float, n: int, alpha: float = 0.05, power: float = 0.8, *, treatment_share: float = 0.5
) -> PowerResult:
    """Minimum detectable difference in means when the **larger arm has n units** (n per arm at 50/50;
    the smaller arm has n k or n / k units, as in :func:`mde_proportions`):
    (z_{1-alpha/2} + z_{power}) sd sqrt(1/n_a + 1/n_b), = (z + z) sd sqrt(2 / n) at 50/50."""
    name = "mde_means"
    s, nn, al, pw, sh = _f(sd), _f(n), _f(alpha), _f(power), _f(treatment_share)
    if not (
        math.isfinite(s) and s > 0 and math.isfinite(nn) and nn >= 1 and _ok_alpha(al) and 0 < pw < 1 and _ok_share(sh)
    ):
        return PowerResult(name, StatCode.BAD_INPUT, 0, NAN, NAN, s, al, pw, 0, 0, sh, "normal")
    za, zb = _z(al, pw)
    na, nb = _arms_from_larger(nn, _ratio(sh))
    mde = float((za + zb) * s * math.sqrt(1 / na + 1 / nb))
    return PowerResult(name, StatCode.OK, int(nn), mde, NAN, s, al, pw, round(na), round(nb), sh, "normal")
