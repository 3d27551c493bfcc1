"""The promotion gate: should the challenger router replace the champion? One pure function, :func:`decide`,
on contract-v1 traces of an A/B experiment; :func:`report` writes it up. Reading the experiment and moving
the MLflow ``champion`` alias on promote is the pipeline step `pipelines/promote.py`.

Rules (in order; every statistic comes from :mod:`abtest.stats`; "A" = champion, "B" = a challenger):

1. Arms: ``params.champion``, ``params.challenger`` and ``more_challengers`` (A/B/n); when that list is empty,
   every other ``variant`` value in the experiment is a further challenger (sorted), so an A/B/n file is never
   judged as A/B. Rows without a ``variant`` are ignored.
2. EMPTY_ARM: an arm with 0 rows blocks (no test is run on it).
3. SRM: chi-square of the arms' row counts against the planned shares (two arms: ``planned_split`` =
   challenger share; A/B/n: ``planned_shares``, equal when empty or for arms found in the data); ``p < srm_threshold`` blocks (the tests
   below still run and are reported, but the split is suspect).
4. TOO_FEW: an arm with fewer than ``min_rows_per_arm`` rows (``min_pairs`` prompts in the paired design)
   blocks; the decision tests are then not run.
5. NO_SUCCESS: an arm whose every request has ``status == "error"`` blocks (nothing it answered can be
   judged, whatever labels the rows carry). Quality is judged on successful rows only everywhere.
6. Decision tests of each challenger against the champion, each one-sided with H1 = "B is acceptable":
   - errors (``status == "error"`` rate, lower is better): :func:`~abtest.stats.non_inferiority_proportions`
     with margin ``error_rate_margin``. Counts carry the Agresti-Caffo adjustment (+1 error and +1 success
     per arm), so arms without any error still get a finite standard error instead of ZERO_VARIANCE;
     with 200 rows and no errors the upper bound is still ~1.4 points, so it rightly does not pass.
     Fails -> ERRORS_WORSE.
   - quality (successful rows with a ``quality`` label): :func:`~abtest.stats.non_inferiority` (Welch) with
     margin ``quality_margin``, or with ``sequential`` the always-valid mSPRT p-value
     (:func:`~abtest.stats.msprt` on challenger + margin vs champion, mixture sd ``msprt_tau``; one-sided:
     p = 1 when the shifted difference is <= 0). An arm without labels -> NO_LABELS; fewer than 2 labels ->
     TOO_FEW; any other failure (including zero variance) -> QUALITY_WORSE.
   - cost per request (rows with a finite ``cost_usd``): margin = ``cost_margin`` x champion mean cost. With
     margin 0 this is :func:`~abtest.stats.superiority_cost` (the challenger must be shown cheaper: an
     equal-cost challenger does NOT pass), otherwise :func:`~abtest.stats.non_inferiority` with
     ``higher_is_better=False``. An arm without any cost -> NO_COST; otherwise fails -> COST_WORSE.
7. Holm: the raw one-sided p-values of every decision test whose stat code is OK, over all challengers,
   enter :func:`~abtest.stats.holm` at ``alpha`` (order: challenger by challenger, errors, quality, cost); a
   test passes iff its Holm-adjusted p <= alpha. (Promotion needs every test of an arm to pass, an
   intersection-union test that is already level alpha without correction; Holm is the extra safety margin
   across tests and arms and only makes promotion harder.) A test whose stat code is not OK fails.
8. Winner (at most one): among the challengers that passed every test, the highest mean quality, then the
   lower mean cost (``stats["winner"]``). Only ``params.challenger`` (the registered ``challenger`` alias)
   can be promoted: when another arm wins -> NOT_PROMOTABLE.

``promote`` is True iff no blocking code was raised for ``params.challenger`` and it is the winner; ``reasons``
is then ``(PROMOTE,)``. Bad experiment data never raises and never passes: it yields one of the codes above,
with the stat's own ``code`` in ``stats``. ``stats`` keeps the registered challenger's tests under
``errors`` / ``quality`` / ``cost``; an A/B/n experiment adds ``stats["challengers"][arm]`` for every arm.

Paired design: when every row of both arms has a ``prompt_id``, each prompt appears once per arm and both
arms hold the same prompts (an offline replay of two bundles, `evaluation/replay.py`), the quality and cost
tests are the paired ones (one-sample t on the per-prompt differences), which remove the prompt-to-prompt
variance both arms share; error rates are not tested (a replay scores logged successful answers only).
``stats["design"]`` says which design was used; NO_DIFFERENCE when both arms scored and cost the same on
every prompt.

On promote (`pipelines.promote.main`, not a dry run), under the registry's alias lock: for every predictor with a
``challenger``, ``previous`` moves to the old champion and ``champion`` to the challenger; the champion
bundle is re-exported atomically (if that fails the aliases are put back); the decision, the report and
the moves are logged as one MLflow run of experiment ``beast-gate``. `rollback` swaps ``champion`` and
``previous`` back the same way. Peeking: when the same experiment file was gated (and logged) before, the
quality test switches to the always-valid mSPRT p-value by itself, as if ``sequential`` were set.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import numpy as np
import pandas as pd

from abtest import stats as st
from core.config import Count, Fraction, NonNegative, Positive, PositiveShare
from core.errors import BeastError

ERRORS, QUALITY, COST = "errors", "quality", "cost"
DECISION_TESTS = (ERRORS, QUALITY, COST)


class GateCode(StrEnum):
    PROMOTE = "promote"
    SRM = "sample_ratio_mismatch"
    TOO_FEW = "too_few_samples"
    QUALITY_WORSE = "non_inferiority_failed"
    ERRORS_WORSE = "error_rate_worse"
    COST_WORSE = "cost_worse"
    NO_LABELS = "quality_labels_missing"
    NO_COST = "cost_missing"  # an arm has no finite cost_usd: the cost test cannot run, so it cannot pass
    NO_SUCCESS = "no_successful_requests"  # an arm's requests all failed: nothing it answered can be judged
    EMPTY_ARM = "empty_arm"
    NO_DIFFERENCE = "no_difference"  # paired replay: the challenger scored exactly like the champion on every prompt
    NOT_PROMOTABLE = "winner_not_promotable"  # A/B/n: another arm won; only `challenger` is registered to promote


FAIL_CODE = {ERRORS: GateCode.ERRORS_WORSE, QUALITY: GateCode.QUALITY_WORSE, COST: GateCode.COST_WORSE}


@dataclass(frozen=True)
class GateParams:
    """Mirrors params.yaml -> gate."""

    champion: str = "champion"
    challenger: str = "challenger"
    more_challengers: tuple[str, ...] = ()  # A/B/n: further `variant` values tested against the champion
    planned_split: Fraction = 0.5  # challenger share of the experiment's rows (two arms)
    planned_shares: tuple[PositiveShare, ...] = ()  # A/B/n: shares of (champion, challenger, *more); () = equal
    srm_threshold: Fraction = 0.001
    alpha: Fraction = 0.05
    quality_margin: NonNegative = 0.02  # challenger mean quality may be at most this much lower
    error_rate_margin: NonNegative = 0.005  # challenger error rate may be at most this much higher (absolute)
    cost_margin: NonNegative = (
        0.05  # challenger mean cost may exceed champion's by at most this share (0: must be cheaper)
    )
    min_rows_per_arm: Count = 200
    min_pairs: Count = 100  # paired design (offline replay): prompts needed in both arms
    sequential: bool = False  # quality decision on the always-valid mSPRT p-value
    msprt_tau: Positive = 0.05  # mSPRT mixture sd (a plausible quality difference), used when sequential

    @property
    def arms(self) -> tuple[str, ...]:
        """The configured arms' `variant` values, champion first."""
        return (self.champion, self.challenger, *self.more_challengers)

    def arms_in(self, variants: pd.Series) -> tuple[str, ...]:
        """The experiment's arms: the configured ones, or, when `more_challengers` is empty, champion,
        challenger and every other text `variant` value present (sorted), so an A/B/n file is never read as A/B."""
        if self.more_challengers:
            return self.arms
        seen = {v for v in variants.dropna().unique() if isinstance(v, str)} - {self.champion, self.challenger}
        return (self.champion, self.challenger, *sorted(seen))

    def shares(self, k: int) -> tuple[float, ...]:
        """Planned share of each of `k` arms (in `arms_in` order); equal for found arms not configured."""
        if self.planned_shares and k == len(self.planned_shares):
            return tuple(float(s) for s in self.planned_shares)
        if k == 2:
            return (1 - self.planned_split, self.planned_split)
        return tuple(1 / k for _ in range(k))

    def __post_init__(self) -> None:
        if len(set(self.arms)) != len(self.arms):
            raise BeastError(f"gate arms must be distinct variant values, got {list(self.arms)}")
        if self.planned_shares and len(self.planned_shares) != len(self.arms):
            raise BeastError(
                f"gate.planned_shares has {len(self.planned_shares)} values for {len(self.arms)} arms {list(self.arms)}"
            )


@dataclass(frozen=True)
class GateDecision:
    promote: bool
    reasons: tuple[GateCode, ...]
    stats: Mapping[str, dict]  # dataclasses.asdict of each abtest.stats result (srm, errors, quality, cost, holm)
    arms: Mapping[str, Mapping[str, float]]  # per arm: rows, error_rate, quality_mean, ...

    def to_json(self) -> str:
        """Strict JSON: NaN and +/-inf become null."""
        return json.dumps(_clean(dataclasses.asdict(self)), indent=2)


def _clean(x: object) -> object:
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_clean(v) for v in x]
    if isinstance(x, StrEnum):
        return str(x)
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


# -------------------------------------------------------------------------------------------- pure decision


def _arm_metrics(arm: pd.DataFrame) -> dict[str, float]:
    q = _column(_succeeded(arm), "quality")
    c = _column(arm, "cost_usd")
    lat = _column(arm, "latency_ms")
    n = len(arm)
    errors = int((arm["status"] == "error").sum()) if "status" in arm else 0
    return {
        "rows": int(n),
        "errors": errors,
        "successes": int(n - errors),
        "error_rate": errors / n if n and "status" in arm else math.nan,
        "quality_labels": int(q.size),
        "quality_mean": float(q.mean()) if q.size else math.nan,
        "cost_rows": int(c.size),
        "cost_mean": float(c.mean()) if c.size else math.nan,
        "latency_p50_ms": float(np.percentile(lat, 50)) if lat.size else math.nan,
        "latency_p95_ms": float(np.percentile(lat, 95)) if lat.size else math.nan,
    }


def _succeeded(arm: pd.DataFrame) -> pd.DataFrame:
    """The rows that produced an answer: a failed request's quality label judges nothing the arm served."""
    return arm[arm["status"] != "error"] if "status" in arm else arm


def _column(frame: pd.DataFrame, name: str) -> np.ndarray:
    """The finite values of a numeric column (empty when the column is absent)."""
    if name not in frame:
        return np.empty(0)
    v = _floats(frame[name])
    return v[np.isfinite(v)]


def _floats(column: pd.Series) -> np.ndarray:
    """A column as floats, NaN where a value is not a number (also an integer beyond float range)."""
    try:
        return pd.to_numeric(column, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    except (OverflowError, TypeError, ValueError):
        return np.array([_float_or_nan(x) for x in column], dtype=float)


def _float_or_nan(x: object) -> float:
    try:
        return float(x) if isinstance(x, int | float | np.number) else float(pd.to_numeric(x, errors="coerce"))
    except (OverflowError, TypeError, ValueError):
        return math.nan


def _paired(a: pd.DataFrame, b: pd.DataFrame) -> bool:
    """Both arms answered exactly the same prompts, once each (see "Paired design" above)."""
    if "prompt_id" not in a or "prompt_id" not in b or a["prompt_id"].isna().any() or b["prompt_id"].isna().any():
        return False
    ids_a, ids_b = _keys(a["prompt_id"]), _keys(b["prompt_id"])
    return ids_a.is_unique and ids_b.is_unique and set(ids_a) == set(ids_b)


def _aligned(a: pd.DataFrame, b: pd.DataFrame, column: str) -> tuple[np.ndarray, np.ndarray]:
    """`column` of both arms, row i = the same prompt, keeping prompts where both values are finite."""
    if column not in a or column not in b:
        return np.empty(0), np.empty(0)
    va = pd.Series(_floats(a[column]), index=_keys(a["prompt_id"]))
    vb = pd.Series(_floats(b[column]), index=_keys(b["prompt_id"])).reindex(va.index)
    xa, xb = va.to_numpy(dtype=float), vb.to_numpy(dtype=float, na_value=np.nan)
    keep = np.isfinite(xa) & np.isfinite(xb)
    return xa[keep], xb[keep]


def _keys(column: pd.Series) -> pd.Index:
    """Prompt ids as text keys (Python str, so any text a JSON file can hold is a key)."""
    return pd.Index([str(v) for v in column], dtype=object)


def _quality_test(qa: np.ndarray, qb: np.ndarray, p: GateParams, paired: bool = False) -> st.TestResult:
    if paired:
        return st.non_inferiority(qa, qb, p.quality_margin, p.alpha, higher_is_better=True, paired=True)
    if not p.sequential:
        return st.non_inferiority(qa, qb, p.quality_margin, p.alpha, higher_is_better=True)
    res = st.msprt(qa, qb + p.quality_margin, p.msprt_tau, p.alpha)  # H0: diff = -margin
    if res.code != st.StatCode.OK:
        return dataclasses.replace(res, name="msprt_non_inferiority")
    m = p.quality_margin
    return dataclasses.replace(
        res,
        name="msprt_non_inferiority",
        estimate=res.estimate - m,
        ci_low=res.ci_low - m,
        ci_high=res.ci_high - m,
        p_value=res.p_value if res.estimate > 0 else 1.0,
    )


def _cost_test(ca: np.ndarray, cb: np.ndarray, p: GateParams, paired: bool = False) -> st.TestResult:
    margin = p.cost_margin * float(ca.mean()) if ca.size else math.nan
    if p.cost_margin == 0 or not math.isfinite(margin):
        return st.superiority_cost(ca, cb, 0.0, p.alpha, paired=paired)
    return st.non_inferiority(ca, cb, margin, p.alpha, higher_is_better=False, paired=paired)


def _decision_tests(a: pd.DataFrame, b: pd.DataFrame, p: GateParams, paired: bool) -> dict[str, st.TestResult]:
    """The one-sided tests of one challenger arm `b` against the champion `a` (rule 6)."""
    sa, sb = _succeeded(a), _succeeded(b)
    qa, qb = _aligned(sa, sb, "quality") if paired else (_column(sa, "quality"), _column(sb, "quality"))
    ca, cb = _aligned(a, b, "cost_usd") if paired else (_column(a, "cost_usd"), _column(b, "cost_usd"))
    results = {QUALITY: _quality_test(qa, qb, p, paired), COST: _cost_test(ca, cb, p, paired)}
    if not paired:  # a replay scores logged successful answers only: its error rates say nothing
        ea, eb = int((a["status"] == "error").sum()), int((b["status"] == "error").sum())
        # Agresti-Caffo: +1 error and +1 success per arm (finite SE when an arm has no errors)
        results[ERRORS] = st.non_inferiority_proportions(
            ea + 1, len(a) + 2, eb + 1, len(b) + 2, p.error_rate_margin, p.alpha, higher_is_better=False
        )
    return {n: results[n] for n in DECISION_TESTS if n in results}


def _same_everywhere(a: pd.DataFrame, b: pd.DataFrame) -> bool:
    """Paired replay where both arms scored and cost exactly the same on every prompt."""
    return all(np.array_equal(*_aligned(a, b, column)) for column in ("quality", "cost_usd"))


def _fail_code(name: str, result: st.TestResult, arm_a: Mapping, arm_b: Mapping) -> GateCode:
    """Why a decision test did not pass: missing data gets its own code, anything else is the test's failure."""
    if name == QUALITY and (arm_a["quality_labels"] == 0 or arm_b["quality_labels"] == 0):
        return GateCode.NO_LABELS
    if name == COST and result.code == st.StatCode.EMPTY_ARM:
        return GateCode.NO_COST
    if name in (QUALITY, COST) and result.code == st.StatCode.TOO_FEW:
        return GateCode.TOO_FEW
    return FAIL_CODE[name]


def _skipped_errors(rows_a: int, rows_b: int, alpha: float) -> dict:
    return {
        "name": "not_observed_offline",
        "code": "skipped",
        "estimate": math.nan,
        "ci_low": math.nan,
        "ci_high": math.nan,
        "statistic": math.nan,
        "p_value": math.nan,
        "n_a": rows_a,
        "n_b": rows_b,
        "alpha": alpha,
        "note": "offline replay: only logged successful answers are scored; the online A/B test checks errors",
    }


def _winner(passed: list[str], arms: Mapping[str, Mapping[str, float]]) -> str | None:
    """Among the challengers that passed every test: the highest mean quality, then the lower mean cost."""
    if not passed:
        return None
    return max(passed, key=lambda n: (arms[n]["quality_mean"], -arms[n]["cost_mean"], n))


def decide(traces: pd.DataFrame, params: GateParams) -> GateDecision:
    """The gate's verdict on one experiment (pure: no I/O). See the module docstring for the rules."""
    p = params
    variant = traces["variant"] if "variant" in traces else pd.Series(index=traces.index, dtype=object)
    names = p.arms_in(variant)
    arms_df = {name: traces[variant == name] for name in names}
    arms = {name: _arm_metrics(df) for name, df in arms_df.items()}
    a = arms_df[p.champion]
    challengers = names[1:]
    codes: list[GateCode] = []
    out: dict[str, dict] = {}

    srm = st.srm([len(df) for df in arms_df.values()], list(p.shares(len(names))), p.srm_threshold)
    out["srm"] = dataclasses.asdict(srm)
    if any(len(df) == 0 for df in arms_df.values()):
        codes.append(GateCode.EMPTY_ARM)
    if srm.mismatch:
        codes.append(GateCode.SRM)
    paired = len(a) > 0 and all(_paired(a, arms_df[c]) for c in challengers)
    if min(len(df) for df in arms_df.values()) < (p.min_pairs if paired else p.min_rows_per_arm):
        if GateCode.EMPTY_ARM not in codes:
            codes.append(GateCode.TOO_FEW)
        return GateDecision(False, tuple(codes), out, arms)
    out["design"] = {
        "paired": paired,
        "note": "same prompts in both arms: paired tests" if paired else "independent arms",
    }
    if any(arms[n]["successes"] == 0 for n in p.arms):
        return GateDecision(False, (*codes, GateCode.NO_SUCCESS), out, arms)
    if paired and all(_same_everywhere(a, arms_df[c]) for c in challengers):  # same choices everywhere
        return GateDecision(False, (*codes, GateCode.NO_DIFFERENCE), out, arms)

    results = {c: _decision_tests(a, arms_df[c], p, paired) for c in challengers}
    family = [(c, n) for c in challengers for n, r in results[c].items() if r.code == st.StatCode.OK]
    passed = {(c, n): False for c in challengers for n in results[c]}
    if family:
        adj = st.holm([results[c][n].p_value for c, n in family], p.alpha)
        tests = [n if len(challengers) == 1 else f"{c}.{n}" for c, n in family]
        out["holm"] = dataclasses.asdict(adj) | {"tests": tests}
        if adj.code == st.StatCode.OK:
            passed |= dict(zip(family, map(bool, adj.reject), strict=True))
    arm_codes = {
        c: [_fail_code(n, r, arms[p.champion], arms[c]) for n, r in results[c].items() if not passed[(c, n)]]
        for c in challengers
    }

    mine = results[p.challenger]  # the registered challenger's tests keep their top-level keys
    for name in DECISION_TESTS:
        out[name] = (
            dataclasses.asdict(mine[name])
            if name in mine
            else _skipped_errors(len(a), len(arms_df[p.challenger]), p.alpha)
        )
    winner = _winner([c for c in challengers if not arm_codes[c]], arms) if not codes else None
    out["winner"] = {"arm": winner, "rule": "passed every test; highest mean quality, then lower mean cost"}
    if len(challengers) > 1:
        out["challengers"] = {
            c: {n: dataclasses.asdict(r) for n, r in results[c].items()}
            | {"reasons": [str(x) for x in dict.fromkeys(arm_codes[c])] or [str(GateCode.PROMOTE)]}
            for c in challengers
        }
    codes += arm_codes[p.challenger]
    if winner is not None and winner != p.challenger:
        codes.append(GateCode.NOT_PROMOTABLE)
    promote = not codes
    return GateDecision(promote, (GateCode.PROMOTE,) if promote else tuple(dict.fromkeys(codes)), out, arms)


# ------------------------------------------------------------------------------------------------- report

MARGIN_SIGN = {ERRORS: 1.0, QUALITY: -1.0, COST: 1.0}


def _margins(decision: GateDecision, params: GateParams) -> dict[str, float]:
    cost_a = decision.arms.get(params.champion, {}).get("cost_mean", math.nan)
    return {ERRORS: params.error_rate_margin, QUALITY: -params.quality_margin, COST: params.cost_margin * cost_a}


def _fmt(x: object) -> str:
    if isinstance(x, float):
        return "nan" if math.isnan(x) else ("inf" if x == math.inf else "-inf" if x == -math.inf else f"{x:.4g}")
    return str(x)


def report(decision: GateDecision, out_dir: Path, params: GateParams = GateParams()) -> tuple[Path, Path]:  # noqa: B008
    """Write ``gate.md`` (arm metrics, tests, codes, verdict) and ``gate.png`` (one-sided CIs vs margins)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    margins = _margins(decision, params)
    metric_keys = list(next(iter(decision.arms.values())).keys()) if decision.arms else []
    lines = [
        f"# A/B gate: {'PROMOTE' if decision.promote else 'BLOCKED'}",
        "",
        f"codes: {', '.join(f'`{c}`' for c in decision.reasons)}",
        "",
        "## Arms",
        "",
        "| metric | " + " | ".join(decision.arms) + " |",
        "|---" * (len(decision.arms) + 1) + "|",
    ]
    lines += [f"| {k} | " + " | ".join(_fmt(m[k]) for m in decision.arms.values()) + " |" for k in metric_keys]
    holm = decision.stats.get("holm", {})
    adjusted = dict(zip(holm.get("tests", []), holm.get("adjusted", []), strict=False))
    adjusted |= {t.removeprefix(f"{params.challenger}."): v for t, v in adjusted.items()}  # A/B/n names
    lines += [
        "",
        "## Tests (challenger - champion; one-sided, H1 = challenger acceptable)",
        "",
        "| test | function | code | estimate | CI low | CI high | margin | p | Holm p |",
        "|---" * 9 + "|",
    ]
    for name in DECISION_TESTS:
        s = decision.stats.get(name)
        if s is None:
            lines.append(f"| {name} | not run | | | | | | | |")
            continue
        lines.append(
            f"| {name} | {s['name']} | {s['code']} | {_fmt(s['estimate'])} | {_fmt(s['ci_low'])} | "
            f"{_fmt(s['ci_high'])} | {_fmt(margins[name])} | {_fmt(s['p_value'])} | {_fmt(adjusted.get(name, math.nan))} |"
        )
    srm = decision.stats["srm"]
    lines += [
        "",
        f"SRM: counts {srm['counts']}, expected {[round(e, 1) for e in srm['expected']]}, "
        f"p = {_fmt(srm['p_value'])} (threshold {srm['threshold']})",
        "",
    ]
    md = out_dir / "gate.md"
    md.write_text("\n".join(lines))

    fig, axes = plt.subplots(len(DECISION_TESTS), 1, figsize=(6, 1.6 * len(DECISION_TESTS) + 0.6))
    for ax, name in zip(axes, DECISION_TESTS, strict=True):
        s = decision.stats.get(name)
        ax.axvline(0, color="grey", lw=1)
        ax.axvline(margins[name], color="red", ls="--", lw=1, label="margin")
        if s is not None and math.isfinite(s["estimate"]):
            lo, hi, est = s["ci_low"], s["ci_high"], s["estimate"]
            span = max(abs(est), abs(margins[name]) if math.isfinite(margins[name]) else 0, 1e-9)
            finite = [v for v in (lo, hi) if math.isfinite(v)]
            width = max([abs(v - est) for v in finite] + [span]) * 1.5
            # the finite (one-sided) bound as a capped bar; the unbounded side as a dotted line
            lo_e, hi_e = (est - lo if math.isfinite(lo) else 0.0), (hi - est if math.isfinite(hi) else 0.0)
            ax.errorbar([est], [0], xerr=[[lo_e], [hi_e]], fmt="o", capsize=4, label=f"{1 - params.alpha:.0%} bound")
            if not (math.isfinite(lo) and math.isfinite(hi)):
                ax.plot([est, est - width if not math.isfinite(lo) else est + width], [0, 0], ls=":", color="C0")
        else:
            ax.text(0.5, 0.5, f"{name}: {s['code'] if s else 'not run'}", transform=ax.transAxes, ha="center")
        ax.set(yticks=[], title=f"{name} ({s['name'] if s else 'not run'})")
        ax.legend(loc="upper right", fontsize=7)
    fig.suptitle(
        f"challenger - champion, one-sided {1 - params.alpha:.0%} bounds: "
        f"{'PROMOTE' if decision.promote else 'BLOCKED'}",
        fontsize=9,
    )
    png = out_dir / "gate.png"
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)
    return md, png
