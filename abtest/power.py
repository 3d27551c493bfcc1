"""Power and sample size: rows per arm for a minimum detectable effect, and the effect a sample can detect."""

from __future__ import annotations

import math

from scipy import optimize, stats

from abtest.results import NAN, PowerResult, StatCode, _f, _ok_alpha

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
