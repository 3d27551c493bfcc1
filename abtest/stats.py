"""A/B statistics, one namespace: pure functions on numpy arrays (scipy only), typed frozen results.

Sign convention (everywhere): **B vs A, positive = B larger** — ``estimate`` is ``B - A`` (or a statistic
of B relative to A where a function's docstring says so), and confidence intervals bound that quantity.

Bad data never raises and never passes silently: each result carries a ``code`` (:class:`StatCode`) and,
unless the code is ``OK``, NaN statistics. Checks run in this order: ``BAD_INPUT`` (NaN / inf, wrong
shapes, alpha or proportions outside their range) -> ``EMPTY_ARM`` -> ``TOO_FEW`` -> ``ZERO_VARIANCE``.
Sample-based tests need ``MIN_N`` = 2 observations per arm (TOO_FEW below that).

Contents: two-arm tests (two_proportions, welch, mann_whitney, paired_t, wilcoxon); srm (k arms); holm and
benjamini_hochberg; non_inferiority, superiority_cost, non_inferiority_proportions; ratio_delta and
ratio_bootstrap (z, not t: see their docstrings); relative lift (relative_lift_means / _proportions,
delta method, as gbstats); cuped, cuped_welch and cuped_reduction; msprt, msprt_log_lr, always_valid_p_values
and the asymptotic confidence sequences (confidence_sequence_means / _proportions, as gbstats' sequential
test); power_proportions (Fleiss or arcsine), mde_proportions, power_means, mde_means (any allocation);
bayes_proportions, bayes_means, bayes_lift_means, bayes_lift_proportions (``higher_is_better`` for cost,
latency or error rates).

Every result is a frozen dataclass of plain Python values, so ``json.dumps(dataclasses.asdict(r))`` works
(NaN / inf serialise as ``NaN`` / ``Infinity``, which Python's json module reads back).

The functions live in one module per family (`abtest/frequentist.py`, `lift.py`, `variance.py`,
`sequential.py`, `power.py`, `bayesian.py`; results and codes in `results.py`); this module names them all.
Known answers from gbstats, statsmodels, spotify-confidence and scipy: `tests/abtest/reference/`.
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
from abtest.lift import bayes_lift_means, bayes_lift_proportions, relative_lift_means, relative_lift_proportions
from abtest.power import mde_means, mde_proportions, power_means, power_proportions
from abtest.results import MIN_N, NAN, CupedResult, MultipleTestResult, PowerResult, SrmResult, StatCode, TestResult
from abtest.sequential import (
    always_valid_p_values,
    confidence_sequence_means,
    confidence_sequence_proportions,
    msprt,
    msprt_log_lr,
)
from abtest.variance import CupedReduction, cuped, cuped_reduction, cuped_welch

__all__ = [
    "BayesResult",
    "CupedReduction",
    "CupedResult",
    "MIN_N",
    "MultipleTestResult",
    "NAN",
    "PowerResult",
    "SrmResult",
    "StatCode",
    "TestResult",
    "always_valid_p_values",
    "bayes_lift_means",
    "bayes_lift_proportions",
    "bayes_means",
    "bayes_proportions",
    "benjamini_hochberg",
    "confidence_sequence_means",
    "confidence_sequence_proportions",
    "cuped",
    "cuped_reduction",
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
    "relative_lift_means",
    "relative_lift_proportions",
    "srm",
    "superiority_cost",
    "two_proportions",
    "welch",
    "wilcoxon",
]
