"""Frequentist reference vectors: scipy, statsmodels and spotify-confidence (run via generate.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import spotify_confidence
from common import EXACT, case, data
from scipy import stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import confint_proportions_2indep, proportions_ztest, test_proportions_2indep
from statsmodels.stats.weightstats import CompareMeans, DescrStatsW, ttest_ind

OK = "ok"

# (id suffix, a, b, alpha): the two-sample data sets shared by welch / non-inferiority / superiority
SMALL_A, SMALL_B = [1.2, 3.4, 2.2], [2.0, 4.5, 3.3, 5.1]
TWO_SAMPLES = [
    ("normal_50_70", data(1, "normal", 50, 10, 2), data(2, "normal", 70, 10.5, 3), 0.05),
    ("small_3_4", SMALL_A, SMALL_B, 0.05),
    ("tied_integers_40_45", data(3, "integers", 40, 1, 4), data(4, "integers", 45, 1, 4), 0.05),
    ("lognormal_30_120", data(5, "lognormal", 30, 0, 1), data(6, "lognormal", 120, 0, 1.3), 0.05),
    ("alpha_0.01_200_150", data(7, "normal", 200, 0, 1), data(8, "normal", 150, 0.3, 1), 0.01),
    ("large_offset_25_25", data(9, "normal", 25, 1000, 0.5), data(10, "normal", 25, 1000.2, 0.5), 0.1),
]


def _welch() -> list[dict]:
    out = []
    for sid, a, b, alpha in TWO_SAMPLES:
        r = stats.ttest_ind(b, a, equal_var=False)
        lo, hi = CompareMeans(DescrStatsW(np.array(b)), DescrStatsW(np.array(a))).tconfint_diff(
            alpha=alpha, usevar="unequal"
        )
        out.append(
            case(
                f"welch/{sid}",
                "scipy.stats.ttest_ind(b, a, equal_var=False) + statsmodels.stats.weightstats.CompareMeans(DescrStatsW(b), DescrStatsW(a)).tconfint_diff(alpha, usevar='unequal')",
                "welch",
                {"a": a, "b": b, "alpha": alpha},
                {
                    "code": OK,
                    "estimate": np.mean(b) - np.mean(a),
                    "statistic": r.statistic,
                    "p_value": r.pvalue,
                    "ci_low": lo,
                    "ci_high": hi,
                },
            )
        )
    for sid, a, b, alpha in TWO_SAMPLES[:3]:
        df = pd.DataFrame(
            {
                "group": ["A", "B"],
                "sum": [float(np.sum(a)), float(np.sum(b))],
                "ss": [float(np.sum(np.square(a))), float(np.sum(np.square(b)))],
                "n": [len(a), len(b)],
            }
        )
        t = spotify_confidence.StudentsTTest(
            df,
            numerator_column="sum",
            numerator_sum_squares_column="ss",
            denominator_column="n",
            categorical_group_columns="group",
            interval_size=1 - alpha,
        )
        r = t.difference(level_1="A", level_2="B", absolute=True).iloc[0]
        out.append(
            case(
                f"welch/spotify/{sid}",
                "spotify_confidence.StudentsTTest(sum, sum of squares, n per group, interval_size=1 - alpha).difference(level_1='A', level_2='B', absolute=True)",
                "welch",
                {"a": a, "b": b, "alpha": alpha},
                {
                    "code": OK,
                    "estimate": r["difference"],
                    "ci_low": r["ci_lower"],
                    "ci_high": r["ci_upper"],
                    "p_value": r["p-value"],
                },
                EXACT,
            )
        )
    return out


PROPORTIONS = [
    ("1000_1100", 100, 1000, 130, 1100, 0.05),
    ("small_20_25", 5, 20, 9, 25, 0.05),
    ("equal_5000", 480, 5000, 560, 5000, 0.05),
    ("negative_alpha_0.1", 1200, 10000, 1150, 10000, 0.1),
    ("rare_30_31", 1, 30, 6, 31, 0.05),
    ("near_one_10000", 9990, 10000, 9995, 10000, 0.01),
]


def _two_proportions() -> list[dict]:
    out = []
    for sid, sa, na, sb, nb, alpha in PROPORTIONS:
        z, p = proportions_ztest([sb, sa], [nb, na])
        lo, hi = confint_proportions_2indep(sb, nb, sa, na, method="wald", compare="diff", alpha=alpha)
        kw = {"successes_a": sa, "n_a": na, "successes_b": sb, "n_b": nb, "alpha": alpha}
        out.append(
            case(
                f"two_proportions/{sid}",
                "statsmodels.stats.proportion.proportions_ztest([sb, sa], [nb, na]) (pooled) + confint_proportions_2indep(sb, nb, sa, na, method='wald', compare='diff', alpha)",
                "two_proportions",
                kw,
                {"code": OK, "estimate": sb / nb - sa / na, "statistic": z, "p_value": p, "ci_low": lo, "ci_high": hi},
            )
        )
    for sid, sa, na, sb, nb, alpha in PROPORTIONS[:2]:
        df = pd.DataFrame({"group": ["A", "B"], "s": [sa, sb], "n": [na, nb]})
        zt = spotify_confidence.ZTest(
            df,
            numerator_column="s",
            numerator_sum_squares_column="s",
            denominator_column="n",
            categorical_group_columns="group",
            interval_size=1 - alpha,
        )
        r = zt.difference(level_1="A", level_2="B", absolute=True).iloc[0]
        out.append(
            case(
                f"two_proportions/spotify/{sid}",
                "spotify_confidence.ZTest(successes as numerator and sum of squares, n, interval_size=1 - alpha).difference(level_1='A', level_2='B', absolute=True): difference and CI (its p-value uses the unpooled SE, ours the pooled one, so it is not compared)",
                "two_proportions",
                {"successes_a": sa, "n_a": na, "successes_b": sb, "n_b": nb, "alpha": alpha},
                {"code": OK, "estimate": r["difference"], "ci_low": r["ci_lower"], "ci_high": r["ci_upper"]},
                EXACT,
            )
        )
    return out


def _mann_whitney() -> list[dict]:
    sets = [
        ("small_exact_6_7", data(11, "normal", 6), data(12, "normal", 7, 0.8)),
        ("tied_integers_40_45", data(3, "integers", 40, 1, 4), data(4, "integers", 45, 1, 4)),
        ("unequal_10_60", data(13, "lognormal", 10, 0, 1), data(14, "lognormal", 60, 0, 1)),
        ("normal_80_90", data(15, "normal", 80), data(16, "normal", 90, 0.3)),
        ("nearly_all_tied_5_5", [1.0, 1.0, 1.0, 1.0, 2.0], [1.0, 2.0, 2.0, 2.0, 2.0]),
    ]
    out = []
    for sid, a, b in sets:
        r = stats.mannwhitneyu(b, a, alternative="two-sided")
        out.append(
            case(
                f"mann_whitney/{sid}",
                "scipy.stats.mannwhitneyu(b, a, alternative='two-sided') (method 'auto'); estimate = U_B / (n_a n_b)",
                "mann_whitney",
                {"a": a, "b": b},
                {
                    "code": OK,
                    "statistic": r.statistic,
                    "p_value": r.pvalue,
                    "estimate": r.statistic / (len(a) * len(b)),
                },
            )
        )
    return out


def _paired_t() -> list[dict]:
    base = data(17, "normal", 30, 5, 1)
    noise = data(18, "normal", 30, 0.2, 0.5)
    ints_a, ints_b = data(19, "integers", 40, 1, 4), data(20, "integers", 40, 1, 4)
    sets = [
        ("normal_30", base, [round(x + e, 4) for x, e in zip(base, noise)], 0.05),
        ("n3", [1.0, 2.0, 3.5], [1.2, 2.5, 3.0], 0.05),
        ("tied_integers_40", ints_a, ints_b, 0.05),
        ("alpha_0.1_n12", data(21, "normal", 12), data(22, "normal", 12, 0.5), 0.1),
    ]
    out = []
    for sid, a, b, alpha in sets:
        r = stats.ttest_rel(b, a)
        ci = r.confidence_interval(1 - alpha)
        out.append(
            case(
                f"paired_t/{sid}",
                "scipy.stats.ttest_rel(b, a) and its .confidence_interval(1 - alpha)",
                "paired_t",
                {"a": a, "b": b, "alpha": alpha},
                {
                    "code": OK,
                    "estimate": np.mean(np.subtract(b, a)),
                    "statistic": r.statistic,
                    "p_value": r.pvalue,
                    "ci_low": ci.low,
                    "ci_high": ci.high,
                },
            )
        )
    return out


def _decimal_differences(a: list[float], b: list[float]) -> np.ndarray:
    """b - a rounded to 12 significant digits: the differences as the decimal inputs mean them, so that
    0.003 - 0.002 (0.0010000000000000002 in binary) and 0.002 - 0.001 (0.001) are the tie they are."""
    return np.array([float(f"{v:.12g}") for v in np.subtract(b, a)])


def _wilcoxon() -> list[dict]:
    # a = 0.002, 0.003, ...; b = a +/- 0.001 (or = a) in floating point: |b - a| equal in decimal, not in bits
    tie_a = [round(0.001 * k, 3) for k in range(2, 22)]
    signs = [1, -1, 1, 1, -1, 1, 1, 1, -1, 1, 1, -1, 1, 1, 1, -1, 1, 1, 1, 1]
    tie_b = [x + s * 0.001 for x, s in zip(tie_a, signs)]
    zero_signs = [1, 0, -1, 1, 1, 0, 1, -1, 1, 1, 1, 0, 1, -1, 1, 1, 0, 1, 1, -1]
    zero_b = [x + s * 0.001 for x, s in zip(tie_a, zero_signs)]
    two_a = [round(0.01 * k, 2) for k in range(1, 31)]
    two_steps = [0.01, -0.02, 0.02, 0.01, 0.01, -0.01, 0.02, 0.01, 0.03, -0.01] * 3
    two_b = [x + s for x, s in zip(two_a, two_steps)]
    sets = [
        ("no_ties_n20", data(23, "normal", 20), data(24, "normal", 20, 0.5), "tie-free continuous data (exact)"),
        ("float_ties_n20", tie_a, tie_b, "all |d| = 0.001 in decimal, differing in the last bits"),
        ("float_ties_zeros_n20", tie_a, zero_b, "float ties plus 4 exact zero differences (dropped)"),
        ("float_ties_two_levels_n30", two_a, two_b, "|d| in {0.01, 0.02, 0.03} computed in floating point"),
        ("normal_n60", data(25, "normal", 60), data(26, "normal", 60, 0.3), "normal approximation"),
        ("tied_integers_n40", data(19, "integers", 40, 1, 4), data(20, "integers", 40, 1, 4), "integer ties + zeros"),
    ]
    out = []
    for sid, a, b, note in sets:
        d = _decimal_differences(a, b)
        r = stats.wilcoxon(d, zero_method="wilcox", alternative="two-sided")
        out.append(
            case(
                f"wilcoxon/{sid}",
                "scipy.stats.wilcoxon(d, zero_method='wilcox', alternative='two-sided') on d = b - a rounded to 12 significant digits (float(f'{d:.12g}')); estimate = median(d)",
                "wilcoxon",
                {"a": a, "b": b},
                {"code": OK, "statistic": r.statistic, "p_value": r.pvalue, "estimate": np.median(d)},
                note=note,
            )
        )
    return out


def _srm() -> list[dict]:
    sets = [
        ("balanced_ok", [5050, 4950], [1, 1], 0.001),
        ("two_arm_mismatch", [5200, 4800], [1, 1], 0.001),
        ("three_arms", [1000, 1100, 950], [1, 1, 1], 0.001),
        ("canary_90_10", [9100, 900], [0.9, 0.1], 0.001),
        ("small_threshold_0.01", [10, 14], [1, 1], 0.01),
        ("weights_not_normalised", [3050, 2000, 990], [3, 2, 1], 0.05),
    ]
    out = []
    for sid, counts, planned, threshold in sets:
        w = np.asarray(planned, dtype=float)
        expected = np.sum(counts) * w / w.sum()
        r = stats.chisquare(counts, expected)
        out.append(
            case(
                f"srm/{sid}",
                "scipy.stats.chisquare(counts, f_exp=sum(counts) * planned / sum(planned)); mismatch = p < threshold",
                "srm",
                {"counts": counts, "planned": planned, "threshold": threshold},
                {
                    "code": "ok",
                    "statistic": r.statistic,
                    "p_value": r.pvalue,
                    "mismatch": bool(r.pvalue < threshold),
                    "expected": expected.tolist(),
                },
            )
        )
    return out


def _multiple() -> list[dict]:
    rng = np.random.default_rng(27)
    sets = [
        ("four", [0.01, 0.04, 0.03, 0.005], 0.05),
        ("ties", [0.02, 0.02, 0.02], 0.05),
        ("zero_and_one", [0.001, 0.2, 0.5, 0.9, 1.0, 0.0], 0.05),
        ("twenty_seeded", [float(v) for v in np.round(rng.uniform(0, 1, 20) ** 3, 6)], 0.1),
        ("single", [0.04], 0.05),
    ]
    out = []
    for ours, sm in (("holm", "holm"), ("benjamini_hochberg", "fdr_bh")):
        for sid, p, alpha in sets:
            reject, adjusted, _, _ = multipletests(p, alpha=alpha, method=sm)
            out.append(
                case(
                    f"{ours}/{sid}",
                    f"statsmodels.stats.multitest.multipletests(p, alpha, method='{sm}'): pvals_corrected, reject",
                    ours,
                    {"p_values": p, "alpha": alpha},
                    {"code": "ok", "adjusted": adjusted.tolist(), "reject": [bool(v) for v in reject]},
                )
            )
    return out


def _one_sided_means() -> list[dict]:
    out = []
    ni_sets = [
        ("normal_50_70_margin_0.5", TWO_SAMPLES[0], 0.5, True),
        ("small_3_4_margin_1", (None, SMALL_A, SMALL_B, 0.05), 1.0, True),
        ("lognormal_lower_better_margin_0.2", TWO_SAMPLES[3], 0.2, False),
        ("alpha_0.01_margin_0", TWO_SAMPLES[4], 0.0, True),
        ("tied_integers_lower_better_margin_0.3", TWO_SAMPLES[2], 0.3, False),
    ]
    for sid, (_, a, b, alpha), margin, hib in ni_sets:
        value, alt = (-margin, "larger") if hib else (margin, "smaller")
        t, p, _ = ttest_ind(np.array(b), np.array(a), usevar="unequal", value=value, alternative=alt)
        lo, hi = CompareMeans(DescrStatsW(np.array(b)), DescrStatsW(np.array(a))).tconfint_diff(
            alpha=2 * alpha, usevar="unequal"
        )
        exp = {"code": OK, "estimate": np.mean(b) - np.mean(a), "statistic": t, "p_value": p}
        exp.update({"ci_low": lo} if hib else {"ci_high": hi})
        out.append(
            case(
                f"non_inferiority/{sid}",
                f"statsmodels.stats.weightstats.ttest_ind(b, a, usevar='unequal', value={value}, alternative='{alt}') + CompareMeans.tconfint_diff(alpha=2 * alpha, usevar='unequal') (one-sided bound)",
                "non_inferiority",
                {"a": a, "b": b, "margin": margin, "alpha": alpha, "higher_is_better": hib},
                exp,
            )
        )
    # paired
    base = data(17, "normal", 30, 5, 1)
    b = [round(x + e, 4) for x, e in zip(base, data(18, "normal", 30, -0.1, 0.5))]
    for hib, margin in ((True, 0.3), (False, 0.05)):
        value, alt = (-margin, "larger") if hib else (margin, "smaller")
        ds = DescrStatsW(np.subtract(b, base))
        t, p, _ = ds.ttest_mean(value=value, alternative=alt)
        lo, hi = ds.tconfint_mean(alpha=0.1)
        exp = {"code": OK, "estimate": ds.mean, "statistic": t, "p_value": p}
        exp.update({"ci_low": lo} if hib else {"ci_high": hi})
        out.append(
            case(
                f"non_inferiority/paired_n30_{'higher' if hib else 'lower'}_better",
                f"statsmodels.stats.weightstats.DescrStatsW(b - a).ttest_mean(value={value}, alternative='{alt}') + tconfint_mean(alpha=2 * alpha)",
                "non_inferiority",
                {"a": base, "b": b, "margin": margin, "alpha": 0.05, "higher_is_better": hib, "paired": True},
                exp,
            )
        )
    sup_sets = [
        ("normal_50_70_margin_0", TWO_SAMPLES[0], 0.0),
        ("lognormal_margin_0.1", TWO_SAMPLES[3], 0.1),
        ("small_3_4_margin_0.5", (None, SMALL_B, SMALL_A, 0.05), 0.5),
        ("large_offset_margin_0.05", TWO_SAMPLES[5], 0.05),
    ]
    for sid, (_, a, b, alpha), margin in sup_sets:
        t, p, _ = ttest_ind(np.array(b), np.array(a), usevar="unequal", value=-margin, alternative="smaller")
        _, hi = CompareMeans(DescrStatsW(np.array(b)), DescrStatsW(np.array(a))).tconfint_diff(
            alpha=2 * alpha, usevar="unequal"
        )
        out.append(
            case(
                f"superiority_cost/{sid}",
                f"statsmodels.stats.weightstats.ttest_ind(b, a, usevar='unequal', value={-margin}, alternative='smaller') + CompareMeans.tconfint_diff(alpha=2 * alpha, usevar='unequal')[1]",
                "superiority_cost",
                {"a": a, "b": b, "margin": margin, "alpha": alpha},
                {"code": OK, "estimate": np.mean(b) - np.mean(a), "statistic": t, "p_value": p, "ci_high": hi},
            )
        )
    return out


def _non_inferiority_proportions() -> list[dict]:
    sets = [
        ("1000_1100_margin_0.01", 100, 1000, 130, 1100, 0.01, 0.05, True),
        ("equal_5000_margin_0.005", 560, 5000, 540, 5000, 0.005, 0.05, True),
        ("error_rate_lower_better", 50, 2000, 58, 2100, 0.01, 0.05, False),
        ("small_20_25_margin_0.1", 5, 20, 9, 25, 0.1, 0.1, True),
        ("margin_0", 300, 3000, 320, 3000, 0.0, 0.025, True),
    ]
    out = []
    for sid, sa, na, sb, nb, margin, alpha, hib in sets:
        value, alt = (-margin, "larger") if hib else (margin, "smaller")
        r = test_proportions_2indep(sb, nb, sa, na, value=value, method="wald", compare="diff", alternative=alt)
        lo, hi = confint_proportions_2indep(sb, nb, sa, na, method="wald", compare="diff", alpha=2 * alpha)
        exp = {"code": OK, "estimate": sb / nb - sa / na, "statistic": r.statistic, "p_value": r.pvalue}
        exp.update({"ci_low": lo} if hib else {"ci_high": hi})
        out.append(
            case(
                f"non_inferiority_proportions/{sid}",
                f"statsmodels.stats.proportion.test_proportions_2indep(sb, nb, sa, na, value={value}, method='wald', compare='diff', alternative='{alt}') + confint_proportions_2indep(method='wald', alpha=2 * alpha)",
                "non_inferiority_proportions",
                {
                    "successes_a": sa,
                    "n_a": na,
                    "successes_b": sb,
                    "n_b": nb,
                    "margin": margin,
                    "alpha": alpha,
                    "higher_is_better": hib,
                },
                exp,
            )
        )
    return out


def cases() -> list[dict]:
    return (
        _two_proportions()
        + _welch()
        + _mann_whitney()
        + _paired_t()
        + _wilcoxon()
        + _srm()
        + _multiple()
        + _one_sided_means()
        + _non_inferiority_proportions()
    )
