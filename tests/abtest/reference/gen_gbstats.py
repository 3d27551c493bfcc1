"""GrowthBook gbstats reference vectors (run via generate.py): relative lift (TwoSidedTTest), Bayesian
(EffectBayesianABTest, flat prior), sequential (SequentialTwoSidedTTest), and the delta-method ratio variance
(RatioStatistic) for ratio_delta.

Inputs map as gbstats' own runner maps them: a sample x -> SampleMeanStatistic(n, sum(x), sum(x^2)) (variance
ddof=1), a rate -> ProportionStatistic(n, successes) (variance p(1 - p)); A is ``stat_a`` (control)."""

from __future__ import annotations

import math

import numpy as np
from common import EXACT, case, data
from gbstats.bayesian.tests import EffectBayesianABTest, EffectBayesianConfig
from gbstats.frequentist.tests import FrequentistConfig, SequentialConfig, SequentialTwoSidedTTest, TwoSidedTTest
from gbstats.models.statistics import ProportionStatistic, RatioStatistic, SampleMeanStatistic
from scipy import stats

OK = "ok"
# gbstats computes variances from sums of squares and its risk through truncnorm: still within EXACT
GB = EXACT

MEANS = [
    ("normal_50_70", data(31, "normal", 50, 10, 2), data(32, "normal", 70, 10.5, 3), 0.05),
    ("lognormal_120_150", data(33, "lognormal", 120, 1, 1), data(34, "lognormal", 150, 1, 1.1), 0.05),
    ("small_4_5", [2.0, 3.5, 1.5, 4.0], [3.0, 4.5, 2.5, 5.5, 3.9], 0.05),
    ("tied_integers_60_80", data(35, "integers", 60, 1, 4), data(36, "integers", 80, 1, 4), 0.1),
    ("negative_lift_200_180", data(37, "normal", 200, 50, 10), data(38, "normal", 180, 48, 12), 0.01),
]
RATES = [
    ("1000_1100", 100, 1000, 130, 1100, 0.05),
    ("equal_5000", 480, 5000, 560, 5000, 0.05),
    ("negative_10000", 1200, 10000, 1150, 10000, 0.1),
    ("small_20_25", 5, 20, 9, 25, 0.05),
    ("rare_20000_18000", 40, 20000, 52, 18000, 0.05),
]


def mean_stat(x: list[float]) -> SampleMeanStatistic:
    v = np.asarray(x, dtype=float)
    return SampleMeanStatistic(n=int(v.size), sum=float(v.sum()), sum_squares=float(np.square(v).sum()))


def rate_stat(s: int, n: int) -> ProportionStatistic:
    return ProportionStatistic(n=int(n), sum=float(s))


def _mean_kwargs(a, b, alpha):
    return {"a": a, "b": b, "alpha": alpha}


def _rate_kwargs(sa, na, sb, nb, alpha):
    return {"successes_a": sa, "n_a": na, "successes_b": sb, "n_b": nb, "alpha": alpha}


def _arms():
    """(kind, id, stat_a, stat_b, kwargs) for every data set."""
    for sid, a, b, alpha in MEANS:
        yield "means", sid, mean_stat(a), mean_stat(b), _mean_kwargs(a, b, alpha), alpha
    for sid, sa, na, sb, nb, alpha in RATES:
        yield "proportions", sid, rate_stat(sa, na), rate_stat(sb, nb), _rate_kwargs(sa, na, sb, nb, alpha), alpha


def _relative_lift() -> list[dict]:
    out = []
    for kind, sid, sa, sb, kw, alpha in _arms():
        r = TwoSidedTTest(sa, sb, FrequentistConfig(difference_type="relative", alpha=alpha)).compute_result()
        assert r.error_message is None, (sid, r.error_message)
        out.append(
            case(
                f"relative_lift_{kind}/{sid}",
                "gbstats.frequentist.tests.TwoSidedTTest(stat_a, stat_b, FrequentistConfig(difference_type='relative', alpha)).compute_result(): expected, ci, p_value",
                f"relative_lift_{kind}",
                kw,
                {"code": OK, "estimate": r.expected, "ci_low": r.ci[0], "ci_high": r.ci[1], "p_value": r.p_value},
                GB,
            )
        )
    # the absolute TwoSidedTTest is Welch's test: one cross-check of welch from gbstats
    sid, a, b, alpha = MEANS[0]
    r = TwoSidedTTest(mean_stat(a), mean_stat(b), FrequentistConfig(difference_type="absolute", alpha=alpha))
    r = r.compute_result()
    out.append(
        case(
            f"welch/gbstats/{sid}",
            "gbstats.frequentist.tests.TwoSidedTTest(stat_a, stat_b, FrequentistConfig(difference_type='absolute', alpha)).compute_result()",
            "welch",
            _mean_kwargs(a, b, alpha),
            {"code": OK, "estimate": r.expected, "ci_low": r.ci[0], "ci_high": r.ci[1], "p_value": r.p_value},
            GB,
        )
    )
    return out


def _bayes() -> list[dict]:
    out = []
    for kind, sid, sa, sb, kw, alpha in _arms():
        for relative in (False, True):
            for hib in (True, False):
                if not relative and kind == "proportions" and sid in ("small_20_25", "rare_20000_18000"):
                    continue  # n = 20 or 40 successes: a skewed beta posterior, not gbstats' normal approximation
                cfg = EffectBayesianConfig(
                    difference_type="relative" if relative else "absolute", alpha=alpha, inverse=not hib
                )
                r = EffectBayesianABTest(sa, sb, cfg).compute_result()
                assert r.error_message is None, (sid, r.error_message)
                fn = f"bayes_lift_{kind}" if relative else f"bayes_{kind}"
                tol, note = GB, ""
                if fn == "bayes_proportions":
                    # ours: beta-binomial posterior by 200k seeded draws; gbstats: normal approximation
                    tol = {"abs": 0.003, "rel": 0.0}
                    tol_fields = {"chance_to_win": {"abs": 0.003, "rel": 0.0}}
                    se = math.sqrt(sa.variance / sa.n + sb.variance / sb.n)
                    tol_fields.update({f: {"abs": 0.05 * se, "rel": 0.0} for f in ("estimate", "ci_low", "ci_high")})
                    tol_fields["expected_loss"] = {"abs": 0.02 * se, "rel": 0.0}
                    note = "Monte Carlo (200k draws) of the Beta(1 + s, 1 + f) posterior vs gbstats' normal approximation: chance_to_win within 0.003, estimate / CI within 0.05 se, expected_loss within 0.02 se"
                c = case(
                    f"{fn}/{sid}/{'higher' if hib else 'lower'}_is_better",
                    f"gbstats.bayesian.tests.EffectBayesianABTest(stat_a, stat_b, EffectBayesianConfig(difference_type='{'relative' if relative else 'absolute'}', alpha, inverse={not hib})).compute_result() (default flat prior): expected, ci, chance_to_win, risk[1] (the treatment's risk)",
                    fn,
                    {**kw, "higher_is_better": hib},
                    {
                        "code": OK,
                        "estimate": r.expected,
                        "ci_low": r.ci[0],
                        "ci_high": r.ci[1],
                        "chance_to_win": r.chance_to_win,
                        "expected_loss": r.risk[1],
                    },
                    tol,
                    note=note,
                )
                if fn == "bayes_proportions":
                    c["tol_fields"] = tol_fields
                out.append(c)
    return out


def _sequential() -> list[dict]:
    out = []
    for kind, sid, sa, sb, kw, alpha in _arms():
        for relative, tuning in ((False, 5000.0), (True, 5000.0), (False, 500.0), (True, 20000.0)):
            if tuning != 5000.0 and sid not in ("normal_50_70", "equal_5000", "small_4_5"):
                continue
            cfg = SequentialConfig(
                difference_type="relative" if relative else "absolute", alpha=alpha, sequential_tuning_parameter=tuning
            )
            r = SequentialTwoSidedTTest(sa, sb, cfg).compute_result()
            assert r.error_message is None, (sid, r.error_message)
            out.append(
                case(
                    f"confidence_sequence_{kind}/{sid}/{'relative' if relative else 'absolute'}/tuning_{tuning:g}",
                    f"gbstats.frequentist.tests.SequentialTwoSidedTTest(stat_a, stat_b, SequentialConfig(difference_type='{'relative' if relative else 'absolute'}', alpha, sequential_tuning_parameter={tuning:g})).compute_result(): expected, ci, p_value",
                    f"confidence_sequence_{kind}",
                    {**kw, "tuning": tuning, "relative": relative},
                    {"code": OK, "estimate": r.expected, "ci_low": r.ci[0], "ci_high": r.ci[1], "p_value": r.p_value},
                    GB,
                )
            )
    return out


def _ratio_data(seed: int, n: int, cost: float) -> tuple[list[float], list[float]]:
    rng = np.random.default_rng(seed)
    den = rng.poisson(4, n) + 1
    num = np.round(den * cost * rng.lognormal(0, 0.5, n), 4)
    return [float(v) for v in num], [float(v) for v in den]


def _ratio_delta() -> list[dict]:
    sets = [
        ("100_120", 41, 100, 42, 120, 0.05),
        ("small_5_6", 43, 5, 44, 6, 0.05),
        ("unequal_40_150", 45, 40, 46, 150, 0.1),
    ]
    sets.append(("200_200_alpha_0.01", 47, 200, 48, 200, 0.01))
    out = []
    for sid, seed_a, n_a, seed_b, n_b, alpha in sets:
        num_a, den_a = _ratio_data(seed_a, n_a, 1.0)
        num_b, den_b = _ratio_data(seed_b, n_b, 0.93)
        arms = []
        for x, y in ((num_a, den_a), (num_b, den_b)):
            xs, ys = np.asarray(x), np.asarray(y)
            rs = RatioStatistic(
                n=int(xs.size),
                m_statistic=mean_stat(x),
                d_statistic=mean_stat(y),
                m_d_sum_of_products=float(np.sum(xs * ys)),
            )
            arms.append((rs.mean, rs.variance / rs.n))
        (ra, va), (rb, vb) = arms
        diff, se = rb - ra, math.sqrt(va + vb)
        q = stats.norm.ppf(1 - alpha / 2)
        z = diff / se
        out.append(
            case(
                f"ratio_delta/{sid}",
                "gbstats.models.statistics.RatioStatistic(n, SampleMeanStatistic(num), SampleMeanStatistic(den), sum(num * den)): mean and variance / n per arm (delta method), then a normal z interval and p with scipy.stats.norm (gbstats' own test would use a t with Welch df; no library ships this z test)",
                "ratio_delta",
                {"num_a": num_a, "den_a": den_a, "num_b": num_b, "den_b": den_b, "alpha": alpha},
                {
                    "code": OK,
                    "estimate": diff,
                    "statistic": z,
                    "p_value": 2 * stats.norm.sf(abs(z)),
                    "ci_low": diff - q * se,
                    "ci_high": diff + q * se,
                },
                GB,
            )
        )
    return out


def cases() -> list[dict]:
    return _relative_lift() + _bayes() + _sequential() + _ratio_delta()
