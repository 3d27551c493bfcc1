"""A/B statistics, one namespace: pure functions on numpy arrays (scipy only), typed frozen results.

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

The functions live in one module per family (`abtest/frequentist.py`, `variance.py`, `sequential.py`,
`power.py`, `bayesian.py`; results and codes in `results.py`); this module names them all.
"""

from abtest.bayesian import BayesResult, bayes_means, bayes_proportions
from abtest.frequentist import (
    benjamini_hochberg,
    holm,
    mann_whitney,
    non_inferiority,
    non_inferiority_proportions,
    paired_t,
    ratio_bootstrap,
    ratio_delta,
    srm,
    superiority_cost,
    two_proportions,
    welch,
    wilcoxon,
)
from abtest.power import mde_means, mde_proportions, power_means, power_proportions
from abtest.results import MIN_N, NAN, CupedResult, MultipleTestResult, PowerResult, SrmResult, StatCode, TestResult
from abtest.sequential import always_valid_p_values, msprt, msprt_log_lr
from abtest.variance import cuped, cuped_welch

__all__ = [
    "BayesResult",
    "CupedResult",
    "MIN_N",
    "MultipleTestResult",
    "NAN",
    "PowerResult",
    "SrmResult",
    "StatCode",
    "TestResult",
    "always_valid_p_values",
    "bayes_means",
    "bayes_proportions",
    "benjamini_hochberg",
    "cuped",
    "cuped_welch",
    "holm",
    "mann_whitney",
    "mde_means",
    "mde_proportions",
    "msprt",
    "msprt_log_lr",
    "non_inferiority",
    "non_inferiority_proportions",
    "paired_t",
    "power_means",
    "power_proportions",
    "ratio_bootstrap",
    "ratio_delta",
    "srm",
    "superiority_cost",
    "two_proportions",
    "welch",
    "wilcoxon",
]
