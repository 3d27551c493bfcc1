"""Known-answer tests of ``abtest.stats`` against the libraries experimenters trust: gbstats (GrowthBook),
statsmodels, scipy and spotify-confidence, frozen in ``tests/abtest/reference/vectors.json``.

This file reads only the JSON: none of those libraries is imported here or needed by the project (gbstats
pins numpy<2). To regenerate the vectors, from the repository root (the exact command is also the JSON's
``generated_by`` and the docstring of ``tests/abtest/reference/generate.py``)::

    .tools/bin/uv run --isolated --no-project --python 3.11 --with gbstats==0.8.0 --with numpy==1.26.4 --with scipy==1.17.1 --with statsmodels==0.15.0 --with spotify-confidence==4.1.0 --with pandas==1.5.3 python tests/abtest/reference/generate.py

Each case names the reference call (``source``), our function (``function`` in ``abtest.stats``), its
``kwargs`` (data arrays included, <= 200 values each) and the ``expected`` fields of our result. Every
field is compared with ``math.isclose(got, want, abs_tol=tol["abs"], rel_tol=tol["rel"])`` (NaN equals NaN,
inf equals inf of the same sign, sequences elementwise, booleans and strings exactly); ``tol_fields`` may
override ``tol`` per field. Tolerance policy:

* exact formulas (the same closed form on both sides, floating-point noise only): abs 1e-9 / rel 1e-7.
  This covers the references that compute variances from sums of squares (gbstats, spotify-confidence) or
  the risk through ``truncnorm`` (gbstats), and those solved by brentq to machine precision (``mde_*``:
  statsmodels' own ``solve_power(effect_size=None)`` stops ~1e-5 relative short of the root, so the
  generator solves statsmodels' ``power`` function instead); the worst case uses < 1/4 of the budget;
* sample sizes (``power_*``: n_a, n_b, n_per_arm after rounding up): +-1 unit (statsmodels' two-sided
  ``NormalIndPower`` counts the far tail, our closed form does not);
* Monte Carlo (``bayes_proportions``: 200k seeded draws of the beta posterior against gbstats' normal
  approximation): chance_to_win within 0.003, estimate / credible interval within 0.05 standard errors,
  expected_loss within 0.02 standard errors (the per-case numbers are in ``tol_fields``).

A function missing from ``abtest.stats`` fails its cases (never skipped).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

import abtest.stats

VECTORS = Path(__file__).parent / "reference" / "vectors.json"
DATA = json.loads(VECTORS.read_text())
CASES = DATA["cases"]

# every function the reference vectors must cover (existing ones and those added with relative lift,
# Bayesian lift, confidence sequences and unequal-allocation power)
REQUIRED_FUNCTIONS = (
    "two_proportions",
    "welch",
    "mann_whitney",
    "paired_t",
    "wilcoxon",
    "srm",
    "holm",
    "benjamini_hochberg",
    "non_inferiority",
    "non_inferiority_proportions",
    "superiority_cost",
    "ratio_delta",
    "power_proportions",
    "power_means",
    "mde_proportions",
    "mde_means",
    "bayes_proportions",
    "bayes_means",
    "relative_lift_means",
    "relative_lift_proportions",
    "bayes_lift_means",
    "bayes_lift_proportions",
    "confidence_sequence_means",
    "confidence_sequence_proportions",
)


def _close(got: object, want: object, tol: dict) -> bool:
    if isinstance(want, bool) or isinstance(got, bool):
        return isinstance(got, bool) and got is want
    if isinstance(want, str):
        return got == want
    if isinstance(want, list):
        return (
            isinstance(got, tuple | list)
            and len(got) == len(want)
            and all(_close(g, w, tol) for g, w in zip(got, want))
        )
    if isinstance(got, bool) or not isinstance(got, int | float):
        return False
    g, w = float(got), float(want)
    if math.isnan(w) or math.isnan(g):
        return math.isnan(w) and math.isnan(g)
    if math.isinf(w) or math.isinf(g):
        return g == w
    return math.isclose(g, w, abs_tol=tol["abs"], rel_tol=tol["rel"])


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_reference_vector(case: dict) -> None:
    fn = getattr(abtest.stats, case["function"], None)
    assert fn is not None, f"abtest.stats has no {case['function']} (reference: {case['source']})"
    result = fn(**case["kwargs"])
    mismatches = []
    for field, want in case["expected"].items():
        tol = case.get("tol_fields", {}).get(field, case["tol"])
        got = getattr(result, field, "<missing field>")
        if isinstance(got, str) and field == "code":
            got = str(got)
        if not _close(got, want, tol):
            mismatches.append(f"{field}: got {got!r}, want {want!r} (tol {tol})")
    assert not mismatches, f"{case['id']} vs {case['source']}:\n  " + "\n  ".join(mismatches)


def test_versions_recorded() -> None:
    versions = DATA["versions"]
    for lib in ("gbstats", "statsmodels", "scipy", "spotify-confidence"):
        assert versions.get(lib), f"vectors.json does not record the {lib} version"
    assert DATA["generated_by"].endswith("python tests/abtest/reference/generate.py")


@pytest.mark.parametrize("function", REQUIRED_FUNCTIONS)
def test_every_required_function_has_a_case(function: str) -> None:
    assert any(c["function"] == function for c in CASES), f"no reference vector for {function}"


def test_cases_are_well_formed() -> None:
    ids = [c["id"] for c in CASES]
    assert len(ids) == len(set(ids)), "duplicate case ids"
    for c in CASES:
        assert set(c) >= {"id", "source", "function", "kwargs", "expected", "tol"}, c["id"]
        assert c["expected"] and set(c["tol"]) == {"abs", "rel"}, c["id"]
        for v in c["kwargs"].values():
            assert not isinstance(v, list) or len(v) <= 200, c["id"]
