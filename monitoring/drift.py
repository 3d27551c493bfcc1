"""Stage `monitor`: has recent traffic drifted from the data the predictors were trained on?

`drift_report(reference, recent, params)` is pure (two trace frames in, a `DriftReport` out); `main` is
the I/O edge the Prefect `monitor` flow and `beast monitor drift` call. Params: `params.yaml -> monitor`.

Which rows are compared (`main`), per model (`GROUP_BY`: `model` is a required contract field, and the
samples' sources, AlpacaEval / Azure conv / Azure code / Mooncake, each have their own models): the
stored dataset (`monitor.traces`) is the training data. Without an explicit file, each model is compared
with itself: its "now" is its own newest stored timestamp (not the wall clock, so a replayed or historic
dataset is monitored the same way), recent = its rows within `window_hours` before it, reference = its
older rows. A single dataset-wide window would compare whichever source happens to be newest (on the
committed samples: Mooncake, June 2024) with every other source and call the difference drift. With an
explicit recent file (validated through a throwaway ingest, as training reads files), reference = every
stored row whose request_id is not in that file, and each model of the file is compared with that model's
stored rows; a model with >= `min_rows` rows in the file and none stored is new (a reason to retrain).

A model with fewer than `min_rows` rows on either side is not compared and says so (`too_few`: e.g. on the
committed samples right after ingest every model's history is shorter than the 24 h window, so nothing
precedes any window); it never alarms. A model whose newest row is older than the dataset's last window
is noted as stale (no longer served?). The compared models share the family-wise error rates: each uses
`ks_alpha / G` and `alpha / G` (G = models compared; Bonferroni across models, Holm within one).
`grouped_report` takes the grouping key as an argument (`task`, `tenant`, `source_file`: stored rows
carry the file they came from), `drift_report` compares two frames as a whole.

Checks, each with a `CheckCode` (ok / drift / too_few / missing):

- Per watched feature (`monitor.features`: token counts, latency, UTC hour, prompt features of
  `features.prompt`), on the rows where it is known:
  * PSI = sum_i (q_i - p_i) ln(q_i / p_i), p = reference shares, q = recent shares, over bins cut at the
    reference's quantiles 1/B .. (B-1)/B (B = `psi_bins`; repeated cut points are merged, so a binary
    feature gets 2-3 bins, not B). A share of 0 is replaced by `psi_epsilon` (on either side, no
    renormalisation) so an empty bin costs a large but finite term. PSI is 0 for equal shares and, being
    quantile-binned, unchanged by any monotone transform of the feature.
  * Two-sample Kolmogorov-Smirnov (`scipy.stats.ks_2samp`), p-values Holm-adjusted across the features
    tested (family-wise error `ks_alpha`). Ties (counts, flags) make KS conservative, never anti-conservative.
  * `drift` when PSI >= `psi_threshold` (a large shift, whatever the sample size) or when KS rejects after
    Holm AND the KS distance >= `ks_min_stat` (a shift that is both certain and not negligible: with 10^5
    rows a window differs "significantly" in almost everything). `missing` when the feature is unknown on
    every row of either side; `too_few` when either side has fewer than `min_rows` known values.
- Error rate, overall and per model: two-proportion z-test (`abtest.stats.two_proportions`); `drift` when
  the recent rate exceeds the reference rate by more than `error_rate_margin` and the Holm-adjusted p <=
  `alpha` (Holm across every error-rate and cost test). A drop in errors is not a reason to retrain.
- Cost per request (rows with a known cost), overall and per model: ratio of means recent / reference and
  Welch's t-test (`abtest.stats.welch`); `drift` when the ratio is >= `cost_ratio_threshold` or <=
  1 / `cost_ratio_threshold` and the Holm-adjusted p <= `alpha`.
- Per model: only models with >= `min_rows` rows on both sides are tested (`too_few` otherwise); a model
  with >= `min_rows` recent rows and none in the reference is `missing` and is a reason to retrain (the
  predictors have never seen it).

`retrain` is true when any check of any model is `drift` (or a new model appeared in an explicit recent
file); `reasons` says which, in words. It is a recommendation: `beast monitor drift` only reports it; the
Prefect `monitor` flow (`pipelines/flows.py`, scheduled by `beast deploy`) is what runs `retrain` on it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from enum import StrEnum
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats as sps

from abtest import stats
from core.config import AtLeastTwo, Count, Fraction, NonNegative, Positive, load_params
from core.errors import BeastError
from core.files import write_atomic
from core.jsonable import plain
from features.prompt import PROMPT_FEATURES, prompt_features
from traces.contract import STATUS_ERROR

ALL = "all"  # the `model` of an overall (not per-model) check
GROUP_BY = "model"  # what `main` groups by: a required contract field, so every row has one
NO_GROUP = "(none)"  # the group of a row whose key is missing (a grouping by an optional field)
BASE_FEATURES = ("input_tokens", "output_tokens", "cached_input_tokens", "latency_ms", "hour")


@dataclass(frozen=True)
class MonitorParams:
    """Mirrors params.yaml -> monitor."""

    traces: Path = Path("data/traces")  # the dataset: reference (older rows) and, by default, recent rows
    prices: Path = Path("data/prices.yaml")  # to cost an explicit recent file
    out: Path = Path("data/monitor")  # drift.json, drift.md, psi.png
    window_hours: Positive = 24.0  # recent = rows this close to the newest stored timestamp
    psi_bins: AtLeastTwo = 10
    psi_epsilon: Positive = 1e-4
    psi_threshold: Positive = 0.2
    ks_alpha: Fraction = 0.01  # family-wise, Holm across features
    ks_min_stat: NonNegative = 0.05  # KS distance below this never counts as drift
    alpha: Fraction = 0.01  # family-wise, Holm across the error-rate and cost tests
    error_rate_margin: NonNegative = 0.01  # absolute rise of the error rate
    cost_ratio_threshold: Positive = 1.25  # mean cost per request recent / reference (or its inverse)
    min_rows: Count = 200  # per side, per check
    features: tuple[str, ...] = (
        "input_tokens", "output_tokens", "latency_ms", "hour",
        "chars", "words", "lines", "code_ratio", "digit_ratio", "non_ascii_ratio", "question", "has_code",
    )  # fmt: skip


class CheckCode(StrEnum):
    OK = "ok"
    DRIFT = "drift"
    TOO_FEW = "too_few"
    MISSING = "missing"


@dataclass(frozen=True)
class FeatureDrift:
    feature: str
    code: CheckCode
    psi: float
    ks_stat: float
    ks_p: float
    ks_p_holm: float
    reference_rows: int  # rows where the feature is known
    recent_rows: int
    reference_median: float
    recent_median: float


@dataclass(frozen=True)
class ShiftCheck:
    check: str  # error_rate | cost
    model: str  # ALL or a model name
    code: CheckCode
    reference: float  # error rate, or mean cost per request (USD)
    recent: float
    effect: float  # error_rate: recent - reference; cost: recent / reference
    p_value: float
    p_holm: float
    reference_rows: int
    recent_rows: int


def _count_codes(codes: list[StrEnum]) -> dict[str, int]:
    """How often each code occurs, by code value, sorted: what `codes()` of a report prints."""
    out: dict[str, int] = {}
    for c in codes:
        out[c.value] = out.get(c.value, 0) + 1
    return dict(sorted(out.items()))


@dataclass(frozen=True)
class DriftReport:
    retrain: bool
    reasons: tuple[str, ...]
    reference_rows: int
    recent_rows: int
    reference_span: tuple[str | None, str | None]
    recent_span: tuple[str | None, str | None]
    features: tuple[FeatureDrift, ...]
    shifts: tuple[ShiftCheck, ...]
    params: Mapping[str, object] = field(default_factory=dict)

    def to_dict(self) -> dict:
        """JSON-ready: enums as their value, NaN / inf (not computed) as null."""
        return plain(asdict(self))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def codes(self) -> dict[str, int]:
        return _count_codes([f.code for f in self.features] + [s.code for s in self.shifts])


# ----------------------------------------------------------------------------------------- statistics


def psi_bins(reference: np.ndarray, bins: int) -> np.ndarray:
    """Interior cut points: the reference's quantiles 1/bins .. (bins-1)/bins, repeats merged."""
    ref = np.asarray(reference, dtype=float)
    return np.unique(np.quantile(ref, np.arange(1, bins) / bins)) if ref.size and bins > 1 else np.array([])


def bin_shares(values: np.ndarray, cuts: np.ndarray) -> np.ndarray:
    """Share of `values` in each bin: bin k holds cuts[k-1] <= x < cuts[k] (k = 0 .. len(cuts))."""
    idx = np.searchsorted(cuts, np.asarray(values, dtype=float), side="right")
    counts = np.bincount(idx, minlength=len(cuts) + 1)
    return counts / max(counts.sum(), 1)


def psi(reference: np.ndarray, recent: np.ndarray, bins: int = 10, epsilon: float = 1e-4) -> float:
    """Population stability index of `recent` against `reference` (quantile bins fitted on the reference;
    empty bins count as `epsilon`, see the module docstring)."""
    cuts = psi_bins(reference, bins)
    p = np.maximum(bin_shares(reference, cuts), epsilon)
    q = np.maximum(bin_shares(recent, cuts), epsilon)
    return float(np.sum((q - p) * np.log(q / p)))


def ks(reference: np.ndarray, recent: np.ndarray) -> tuple[float, float]:
    """Two-sample KS distance and two-sided p-value."""
    res = sps.ks_2samp(np.asarray(reference, dtype=float), np.asarray(recent, dtype=float))
    return float(res.statistic), float(res.pvalue)


# ----------------------------------------------------------------------------------------- features


def check_features(names: tuple[str, ...]) -> None:
    unknown = [n for n in names if n not in BASE_FEATURES and n not in PROMPT_FEATURES]
    if unknown:
        raise BeastError(
            f"monitor.features: unknown feature(s) {', '.join(unknown)}; known: {', '.join(BASE_FEATURES + PROMPT_FEATURES)}"
        )


def monitor_features(traces: pd.DataFrame, names: tuple[str, ...]) -> pd.DataFrame:
    """The watched features of each trace row (float, NaN = unknown); prompt features only when asked for."""
    check_features(names)
    cols: dict[str, np.ndarray] = {}
    for name in names:
        if name == "hour":
            ts = (
                pd.to_datetime(traces["timestamp"], utc=True)
                if "timestamp" in traces
                else pd.Series(pd.NaT, index=traces.index)
            )
            cols[name] = ts.dt.hour.to_numpy(dtype=float, na_value=np.nan)
        elif name in BASE_FEATURES:
            cols[name] = (
                traces[name].to_numpy(dtype=float, na_value=np.nan) if name in traces else np.full(len(traces), np.nan)
            )
    wanted = [n for n in names if n in PROMPT_FEATURES]
    if wanted:
        prompts = (
            traces["prompt"].astype(object) if "prompt" in traces else pd.Series([None] * len(traces), dtype=object)
        )
        pf = prompt_features(prompts.reset_index(drop=True))
        cols |= {n: pf[n].to_numpy(dtype=float) for n in wanted}
    return pd.DataFrame({n: cols[n] for n in names}, index=range(len(traces)))


@dataclass(frozen=True)
class Profile:
    """What the checks need of one side: the feature frame plus model, error flag and cost per row."""

    features: pd.DataFrame
    model: np.ndarray
    error: np.ndarray  # bool
    cost: np.ndarray  # float, NaN = unknown
    span: tuple[str | None, str | None] = (None, None)

    def take(self, rows: np.ndarray) -> Profile:
        """A subset (or resample) of the rows: what seeded simulations draw from."""
        return Profile(
            self.features.iloc[rows].reset_index(drop=True),
            self.model[rows],
            self.error[rows],
            self.cost[rows],
            self.span,
        )

    def __len__(self) -> int:
        return len(self.model)


def profile(traces: pd.DataFrame, params: MonitorParams) -> Profile:
    """Pure: trace rows -> the Profile the checks compare."""
    ts = (
        pd.to_datetime(traces["timestamp"], utc=True)
        if "timestamp" in traces and len(traces)
        else pd.Series([], dtype="datetime64[ns, UTC]")
    )
    span = (ts.min().isoformat(), ts.max().isoformat()) if len(ts) and ts.notna().any() else (None, None)
    return Profile(
        monitor_features(traces, params.features),
        traces["model"].astype(object).to_numpy() if len(traces) else np.array([], dtype=object),
        (traces["status"] == STATUS_ERROR).to_numpy(dtype=bool, na_value=False)
        if len(traces)
        else np.array([], dtype=bool),
        traces["cost_usd"].to_numpy(dtype=float, na_value=np.nan)
        if "cost_usd" in traces
        else np.full(len(traces), np.nan),
        span,
    )


# ----------------------------------------------------------------------------------------- checks


def _median(x: np.ndarray) -> float:
    return float(np.median(x)) if x.size else math.nan


def feature_drift(reference: pd.DataFrame, recent: pd.DataFrame, params: MonitorParams) -> tuple[FeatureDrift, ...]:
    """PSI + KS per feature column (both frames have the same columns), Holm across the tested ones."""
    rows: list[dict] = []
    for name in reference.columns:
        a = reference[name].to_numpy(dtype=float)
        b = recent[name].to_numpy(dtype=float)
        a, b = a[~np.isnan(a)], b[~np.isnan(b)]
        row = {"feature": name, "psi": math.nan, "ks_stat": math.nan, "ks_p": math.nan, "ks_p_holm": math.nan,
               "reference_rows": int(a.size), "recent_rows": int(b.size), "reference_median": _median(a), "recent_median": _median(b)}  # fmt: skip
        if a.size == 0 or b.size == 0:
            row["code"] = CheckCode.MISSING
        elif min(a.size, b.size) < params.min_rows:
            row["code"] = CheckCode.TOO_FEW
        else:
            row["psi"] = psi(a, b, params.psi_bins, params.psi_epsilon)
            row["ks_stat"], row["ks_p"] = ks(a, b)
            row["code"] = CheckCode.OK
        rows.append(row)
    tested = [i for i, r in enumerate(rows) if r["code"] is CheckCode.OK]
    if tested:
        adjusted = stats.holm([rows[i]["ks_p"] for i in tested], params.ks_alpha)
        for i, p_adj, reject in zip(tested, adjusted.adjusted, adjusted.reject, strict=True):
            r = rows[i]
            r["ks_p_holm"] = p_adj
            if r["psi"] >= params.psi_threshold or (reject and r["ks_stat"] >= params.ks_min_stat):
                r["code"] = CheckCode.DRIFT
    return tuple(FeatureDrift(**r) for r in rows)


def _shift_rows(reference: Profile, recent: Profile, params: MonitorParams, per_model: bool = True) -> list[dict]:
    """Unadjusted error-rate and cost tests, overall then (with `per_model`) per model (sorted)."""
    out: list[dict] = []
    ma, mb = reference.model.astype(str), recent.model.astype(str)
    for model in [ALL, *(sorted(set(ma) | set(mb)) if per_model else [])]:
        ra = np.ones(len(ma), bool) if model == ALL else ma == model
        rb = np.ones(len(mb), bool) if model == ALL else mb == model
        na, nb = int(ra.sum()), int(rb.sum())
        ea, eb = reference.error[ra], recent.error[rb]
        err = {"check": "error_rate", "model": model, "reference": float(ea.mean()) if na else math.nan, "recent": float(eb.mean()) if nb else math.nan,
               "effect": math.nan, "p_value": math.nan, "p_holm": math.nan, "reference_rows": na, "recent_rows": nb}  # fmt: skip
        ca, cb = reference.cost[ra], recent.cost[rb]
        ca, cb = ca[~np.isnan(ca)], cb[~np.isnan(cb)]
        cost = {"check": "cost", "model": model, "reference": float(ca.mean()) if ca.size else math.nan, "recent": float(cb.mean()) if cb.size else math.nan,
                "effect": math.nan, "p_value": math.nan, "p_holm": math.nan, "reference_rows": int(ca.size), "recent_rows": int(cb.size)}  # fmt: skip
        if na == 0 or nb == 0:
            err["code"] = CheckCode.MISSING
        elif min(na, nb) < params.min_rows:
            err["code"] = CheckCode.TOO_FEW
        else:
            err["effect"] = err["recent"] - err["reference"]
            res = stats.two_proportions(int(ea.sum()), na, int(eb.sum()), nb, params.alpha)
            err["p_value"] = res.p_value if res.code is stats.StatCode.OK else 1.0  # zero variance: both rates 0 (or 1)
            err["code"] = CheckCode.OK
        if ca.size == 0 or cb.size == 0:
            cost["code"] = CheckCode.MISSING
        elif min(ca.size, cb.size) < params.min_rows:
            cost["code"] = CheckCode.TOO_FEW
        else:
            cost["effect"] = cost["recent"] / cost["reference"] if cost["reference"] > 0 else math.inf
            res = stats.welch(ca, cb, params.alpha)
            cost["p_value"] = res.p_value if res.code is stats.StatCode.OK else (1.0 if cost["effect"] == 1 else 0.0)
            cost["code"] = CheckCode.OK
        out += [err, cost]
    return out


def shift_checks(
    reference: Profile, recent: Profile, params: MonitorParams, per_model: bool = True
) -> tuple[ShiftCheck, ...]:
    """Error-rate and cost checks (overall and, with `per_model`, per model), Holm across all of them."""
    rows = _shift_rows(reference, recent, params, per_model)
    tested = [i for i, r in enumerate(rows) if r["code"] is CheckCode.OK]
    if tested:
        adjusted = stats.holm([rows[i]["p_value"] for i in tested], params.alpha)
        for i, p_adj, reject in zip(tested, adjusted.adjusted, adjusted.reject, strict=True):
            r = rows[i]
            r["p_holm"] = p_adj
            t = params.cost_ratio_threshold
            big = (
                r["effect"] > params.error_rate_margin
                if r["check"] == "error_rate"
                else (r["effect"] >= t or r["effect"] <= 1 / t)
            )
            if reject and big:
                r["code"] = CheckCode.DRIFT
    return tuple(ShiftCheck(**r) for r in rows)


def _reasons(
    features: tuple[FeatureDrift, ...], shifts: tuple[ShiftCheck, ...], params: MonitorParams
) -> tuple[str, ...]:
    out = []
    for f in features:
        if f.code is CheckCode.DRIFT:
            out.append(f"feature {f.feature}: PSI {f.psi:.3f} (threshold {params.psi_threshold:g}), KS {f.ks_stat:.3f} "
                       f"p_holm {f.ks_p_holm:.2g} (alpha {params.ks_alpha:g}); median {f.reference_median:.4g} -> {f.recent_median:.4g}")  # fmt: skip
    for s in shifts:
        if s.code is CheckCode.DRIFT and s.check == "error_rate":
            out.append(
                f"error rate ({s.model}): {s.reference:.2%} -> {s.recent:.2%} (margin {params.error_rate_margin:g}), p_holm {s.p_holm:.2g}"
            )
        elif s.code is CheckCode.DRIFT:
            out.append(
                f"cost per request ({s.model}): ${s.reference:.6f} -> ${s.recent:.6f} (x{s.effect:.2f}, threshold x{params.cost_ratio_threshold:g}), p_holm {s.p_holm:.2g}"
            )
        elif (
            s.code is CheckCode.MISSING
            and s.check == "error_rate"
            and s.model != ALL
            and s.reference_rows == 0
            and s.recent_rows >= params.min_rows
        ):
            out.append(f"new model {s.model}: {s.recent_rows:,} recent rows, none in the reference")
    return tuple(out)


def compare(reference: Profile, recent: Profile, params: MonitorParams, per_model: bool = True) -> DriftReport:
    """Pure: every check of `recent` against `reference`, and the retrain decision (`per_model` = False: the
    error-rate and cost checks overall only, for a group that is one model already)."""
    features = feature_drift(reference.features, recent.features, params)
    shifts = shift_checks(reference, recent, params, per_model)
    reasons = _reasons(features, shifts, params)
    return DriftReport(
        retrain=bool(reasons), reasons=reasons, reference_rows=len(reference), recent_rows=len(recent),
        reference_span=reference.span, recent_span=recent.span, features=features, shifts=shifts,
        params=plain(asdict(params)),
    )  # fmt: skip


def drift_report(reference: pd.DataFrame, recent: pd.DataFrame, params: MonitorParams) -> DriftReport:
    """Pure: drift of the `recent` trace rows against the `reference` trace rows (see the module docstring)."""
    return compare(profile(reference, params), profile(recent, params), params)


def group_keys(traces: pd.DataFrame, by: str) -> np.ndarray:
    """The group of each row (text; a missing key or column is NO_GROUP)."""
    if by not in traces:
        return np.full(len(traces), NO_GROUP, dtype=object)
    keys = traces[by].astype(object)
    return keys.where(keys.notna(), NO_GROUP).astype(str).to_numpy(dtype=object)


def split_window_by(traces: pd.DataFrame, window_hours: float, by: str = GROUP_BY) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(reference, recent) per group: a row is recent when it lies within `window_hours` of the newest
    timestamp of its own group (`by`), reference otherwise; each frame keeps its rows' order."""
    if traces.empty:
        return traces, traces
    ts = pd.to_datetime(traces["timestamp"], utc=True).reset_index(drop=True)
    newest = ts.groupby(pd.Series(group_keys(traces, by))).transform("max")
    recent = (ts > newest - pd.Timedelta(hours=window_hours)).to_numpy()
    return traces[~recent].reset_index(drop=True), traces[recent].reset_index(drop=True)


@dataclass(frozen=True)
class GroupDrift:
    """One group (one value of `by`): its recent rows against its own reference rows."""

    group: str
    code: CheckCode  # drift | ok | too_few (not compared: a side below min_rows) | missing (new: no reference)
    note: str  # the reasons (drift), or why the group was not compared
    reference_rows: int
    recent_rows: int
    recent_span: tuple[str | None, str | None]
    report: DriftReport | None  # None when not compared


@dataclass(frozen=True)
class MonitorReport:
    """Drift per group; `retrain` = some group drifted (or, with an explicit recent file, a new group appeared)."""

    retrain: bool
    reasons: tuple[str, ...]  # "<by> <group>: <reason>"
    group_by: str
    window_hours: float | None  # None: an explicit recent file
    reference_rows: int
    recent_rows: int
    groups: tuple[GroupDrift, ...]
    params: Mapping[str, object] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return plain(asdict(self))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def codes(self) -> dict[str, int]:
        """How many groups got each code."""
        return _count_codes([g.code for g in self.groups])

    def group(self, name: str) -> GroupDrift:
        return next(g for g in self.groups if g.group == name)

    def drifted(self) -> tuple[str, ...]:
        return tuple(g.group for g in self.groups if g.code is CheckCode.DRIFT)


def _span(frame: pd.DataFrame) -> tuple[str | None, str | None]:
    ts = pd.to_datetime(frame["timestamp"], utc=True) if len(frame) else pd.Series([], dtype="datetime64[ns, UTC]")
    return (ts.min().isoformat(), ts.max().isoformat()) if len(ts) and ts.notna().any() else (None, None)


def grouped_report(
    reference: pd.DataFrame,
    recent: pd.DataFrame,
    params: MonitorParams,
    by: str = GROUP_BY,
    window_hours: float | None = None,
    new_is_reason: bool = False,
    now: pd.Timestamp | None = None,
) -> MonitorReport:
    """Pure: each group's recent rows against the same group's reference rows (see the module docstring).

    Groups with fewer than `min_rows` rows on a side are not compared (`too_few`, and the note says so); the
    compared groups share the family-wise error: each uses `ks_alpha / G` and `alpha / G` (G = groups
    compared; Bonferroni across groups, Holm within one). `new_is_reason`: a group with >= `min_rows` recent
    rows and no reference row is new to the predictors (`missing`, a reason to retrain); without it (the
    default window, where the reference is only what precedes each group's own window) such a group is
    `too_few`. `now` (the dataset's newest timestamp): a group whose newest row is older than `now` minus
    the window is noted as stale."""
    kr, kn = group_keys(reference, by), group_keys(recent, by)
    names = sorted(set(kr) | set(kn))
    sizes = {g: (int((kr == g).sum()), int((kn == g).sum())) for g in names}
    compared = [g for g in names if min(sizes[g]) >= params.min_rows]
    share = max(len(compared), 1)
    gp = replace(params, ks_alpha=params.ks_alpha / share, alpha=params.alpha / share)
    window = f"its last {window_hours:g} h" if window_hours is not None else "the recent file"
    groups: list[GroupDrift] = []
    reasons: list[str] = []
    for g in names:
        ref_g = reference[kr == g].reset_index(drop=True)
        rec_g = recent[kn == g].reset_index(drop=True)
        n_ref, n_rec = sizes[g]
        span = _span(rec_g)
        report = None
        if g in compared:
            report = compare(profile(ref_g, params), profile(rec_g, params), gp, per_model=by != "model")
            code = CheckCode.DRIFT if report.retrain else CheckCode.OK
            note = "; ".join(report.reasons) if report.retrain else "no drift"
            reasons += [f"{by} {g}: {r}" for r in report.reasons]
        elif n_ref == 0 and n_rec >= params.min_rows and new_is_reason:
            code = CheckCode.MISSING
            note = f"new {by}: {n_rec:,} recent rows, none in the reference (the predictors have never seen it)"
            reasons.append(f"new {by} {g}: {n_rec:,} recent rows, none in the reference")
        elif n_ref == 0 and window_hours is not None:
            code = CheckCode.TOO_FEW
            note = f"not compared: all {n_rec:,} rows are within {window}, none older to compare with"
        else:
            code = CheckCode.TOO_FEW
            note = f"not compared: too few rows ({n_ref:,} reference, {n_rec:,} in {window}; need {params.min_rows:,} each)"
        stale = now is not None and window_hours is not None and span[1] is not None
        if stale and pd.Timestamp(span[1]) <= now - pd.Timedelta(hours=window_hours):
            note += f"; stale: newest row {span[1][:19]}, before the dataset's last {window_hours:g} h"
        groups.append(GroupDrift(g, code, note, n_ref, n_rec, span, report))
    return MonitorReport(
        retrain=bool(reasons), reasons=tuple(reasons), group_by=by, window_hours=window_hours,
        reference_rows=len(reference), recent_rows=len(recent), groups=tuple(groups), params=plain(asdict(params)),
    )  # fmt: skip


def split_window(traces: pd.DataFrame, window_hours: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(reference, recent): recent = rows within `window_hours` of the newest timestamp, reference = older."""
    if traces.empty:
        return traces, traces
    ts = pd.to_datetime(traces["timestamp"], utc=True)
    recent = (ts > ts.max() - pd.Timedelta(hours=window_hours)).to_numpy()
    return traces[~recent].reset_index(drop=True), traces[recent].reset_index(drop=True)


# ----------------------------------------------------------------------------------------- outputs


def _fmt(x: float, spec: str = ".3f") -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def to_markdown(report: DriftReport) -> str:
    lines = [
        f"# Drift: {'retrain recommended' if report.retrain else 'no retrain needed'}",
        "",
        f"reference {report.reference_rows:,} rows ({report.reference_span[0]} .. {report.reference_span[1]}), "
        f"recent {report.recent_rows:,} rows ({report.recent_span[0]} .. {report.recent_span[1]})",
        "",
    ]
    lines += [f"- {r}" for r in report.reasons] + ([""] if report.reasons else [])
    lines += [
        "| feature | code | PSI | KS | KS p (Holm) | median ref -> recent | rows ref / recent |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {f.feature} | {f.code.value} | {_fmt(f.psi)} | {_fmt(f.ks_stat)} | {_fmt(f.ks_p_holm, '.2g')} | "
        f"{_fmt(f.reference_median, '.4g')} -> {_fmt(f.recent_median, '.4g')} | {f.reference_rows:,} / {f.recent_rows:,} |"
        for f in report.features
    ]
    lines += [
        "",
        "| check | model | code | reference | recent | effect | p (Holm) | rows ref / recent |",
        "|---|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {s.check} | {s.model} | {s.code.value} | {_fmt(s.reference, '.4g')} | {_fmt(s.recent, '.4g')} | {_fmt(s.effect, '.4g')} | "
        f"{_fmt(s.p_holm, '.2g')} | {s.reference_rows:,} / {s.recent_rows:,} |"
        for s in report.shifts
        if s.model == ALL or s.code is not CheckCode.MISSING or s.recent_rows
    ]
    return "\n".join(lines) + "\n"


def psi_plot(report: DriftReport, path: Path, threshold: float) -> Path:
    """PSI per feature (features not tested shown as 0, labelled with their code) and the threshold line."""
    from core.plots import plt, save_figure  # Agg backend: no display needed

    names = [
        f.feature if f.code in (CheckCode.OK, CheckCode.DRIFT) else f"{f.feature} ({f.code.value})"
        for f in report.features
    ]
    values = [0.0 if math.isnan(f.psi) else f.psi for f in report.features]
    colors = ["tab:red" if f.code is CheckCode.DRIFT else "tab:blue" for f in report.features]
    fig, ax = plt.subplots(figsize=(6.5, 0.3 * len(names) + 1.5))
    ax.barh(names[::-1], values[::-1], color=colors[::-1])
    ax.axvline(threshold, color="black", ls="--", lw=1, label=f"threshold {threshold:g}")
    ax.set(xlabel="PSI (recent vs reference)", title="Feature drift (red: drift)")
    ax.legend(loc="lower right")
    return save_figure(fig, path)


RETRAIN_RECOMMENDED = (
    "retrain recommended (the Prefect `monitor` flow retrains on this; `beast monitor drift` only reports)"
)
NO_RETRAIN = "no retrain needed"


def verdict(report: MonitorReport) -> str:
    return RETRAIN_RECOMMENDED if report.retrain else NO_RETRAIN


def basis(report: MonitorReport) -> str:
    by = report.group_by
    if report.window_hours is None:
        return f"per {by}: the recent file's rows against the stored rows of the same {by}"
    return f"per {by}: each {by}'s last {report.window_hours:g} h (to its own newest row) against its older rows"


def summary(report: MonitorReport, out: Path) -> str:
    codes = ", ".join(f"{k} {v}" for k, v in report.codes().items())
    return "\n".join(
        [
            f"drift: {verdict(report)}",
            f"  {basis(report)}; {len(report.groups)} {report.group_by}(s): {codes}",
            *[f"  - {report.group_by} {g.group}: {g.code.value}: {g.note}" for g in report.groups],
            f"  report: {out / 'drift.md'}, {out / 'drift.json'}, {out / 'psi.png'}",
        ]
    )


def grouped_markdown(report: MonitorReport) -> str:
    by = report.group_by
    lines = [
        f"# Drift: {verdict(report)}",
        "",
        f"{basis(report)}. A {by} with fewer than {report.params.get('min_rows')} rows on a side is not compared "
        "(`too_few`); the compared ones share the family-wise error (Bonferroni across them, Holm within one).",
        "",
    ]
    lines += [f"- {r}" for r in report.reasons] + ([""] if report.reasons else [])
    lines += [f"| {by} | code | rows ref / recent | recent span | note |", "|---|---|---|---|---|"]
    lines += [
        f"| {g.group} | {g.code.value} | {g.reference_rows:,} / {g.recent_rows:,} | {g.recent_span[0]} .. {g.recent_span[1]} | {g.note} |"
        for g in report.groups
    ]
    for g in report.groups:
        if g.report is not None:
            body = to_markdown(g.report).split("\n", 1)[1]  # without its own title
            lines += ["", f"## {by} {g.group}: {g.code.value}", body.rstrip("\n")]
    return "\n".join(lines) + "\n"


def grouped_psi_plot(report: MonitorReport, path: Path, threshold: float) -> Path:
    """PSI per compared group (rows) and feature (columns); a cross marks PSI >= threshold, blank = not tested."""
    from core.plots import plt, save_figure  # Agg backend: no display needed

    tested = [g for g in report.groups if g.report is not None]
    if not tested:
        fig, ax = plt.subplots(figsize=(6.5, 1.5))
        ax.axis("off")
        ax.text(0.5, 0.5, f"no {report.group_by} had enough rows on both sides to compare", ha="center", va="center")
        return save_figure(fig, path)
    names = [f.feature for f in tested[0].report.features]
    grid = np.array([[f.psi for f in g.report.features] for g in tested], dtype=float)
    fig, ax = plt.subplots(figsize=(0.55 * len(names) + 3, 0.35 * len(tested) + 1.8))
    shown = np.ma.masked_invalid(grid)
    image = ax.imshow(
        shown,
        aspect="auto",
        cmap="Reds",
        vmin=0,
        vmax=max(2 * threshold, float(np.nanmax(grid)) if np.isfinite(grid).any() else 0),
    )
    for i, j in zip(*np.nonzero(np.nan_to_num(grid) >= threshold), strict=True):
        ax.text(j, i, "x", ha="center", va="center", color="black")
    ax.set_xticks(range(len(names)), names, rotation=60, ha="right")
    ax.set_yticks(range(len(tested)), [g.group for g in tested])
    ax.set(title=f"PSI per {report.group_by} (x: >= {threshold:g})")
    fig.colorbar(image, ax=ax, label="PSI (recent vs reference)")
    return save_figure(fig, path)


def read_recent_file(path: Path, params: MonitorParams) -> pd.DataFrame:
    """A trace file validated through a throwaway ingest (bad rows are not compared)."""
    from traces.load import load_traces

    return load_traces([path], params.prices)


def main(recent: Path | None = None, params_file: Path | None = None) -> MonitorReport:
    """`beast monitor drift` / the `monitor` flow: read, compare per model, write drift.json / drift.md /
    psi.png, print a summary. It only reports: the Prefect `monitor` flow (pipelines/flows.py) is what
    runs the retrain when `retrain` is true."""
    from traces.store import read_traces

    params = load_params(params_file, "monitor", MonitorParams)
    check_features(params.features)
    stored = read_traces(params.traces)
    if stored.empty:
        raise BeastError(f"{params.traces}: no stored traces to compare; ingest traces first")
    if recent is None:
        reference, recent_rows = split_window_by(stored, params.window_hours, GROUP_BY)
        now = pd.to_datetime(stored["timestamp"], utc=True).max()
        report = grouped_report(reference, recent_rows, params, GROUP_BY, params.window_hours, now=now)
    else:
        recent_rows = read_recent_file(recent, params)
        if recent_rows.empty:
            raise BeastError(f"{recent}: no valid trace rows to compare")
        reference = stored[~stored["request_id"].isin(recent_rows["request_id"])].reset_index(drop=True)
        report = grouped_report(reference, recent_rows, params, GROUP_BY, None, new_is_reason=True)
    write_atomic(params.out / "drift.json", (report.to_json() + "\n").encode())
    write_atomic(params.out / "drift.md", grouped_markdown(report).encode())
    grouped_psi_plot(report, params.out / "psi.png", params.psi_threshold)
    print(summary(report, params.out))
    return report
