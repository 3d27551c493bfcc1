"""Stage `monitor`: has recent traffic drifted from the data the predictors were trained on?

`drift_report(reference, recent, params)` is pure (two trace frames in, a `DriftReport` out); `main` is
the I/O edge the Prefect `monitor` flow and `beast monitor drift` call. Params: `params.yaml -> monitor`.

Which rows are compared (`main`): the stored dataset (`monitor.traces`) is the training data. Without an
explicit file, "now" is the newest stored timestamp (not the wall clock, so a replayed or historic
dataset is monitored the same way): recent = rows within `window_hours` before it, reference = every
older row. With an explicit recent file (validated through a throwaway ingest, as training reads files),
reference = every stored row whose request_id is not in that file.

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

`retrain` is true when any check is `drift` (or a new model appeared); `reasons` says which, in words.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
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
        out: dict[str, int] = {}
        for c in [f.code for f in self.features] + [s.code for s in self.shifts]:
            out[c.value] = out.get(c.value, 0) + 1
        return dict(sorted(out.items()))


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


def _shift_rows(reference: Profile, recent: Profile, params: MonitorParams) -> list[dict]:
    """Unadjusted error-rate and cost tests, overall then per model (sorted)."""
    out: list[dict] = []
    ma, mb = reference.model.astype(str), recent.model.astype(str)
    for model in [ALL, *sorted(set(ma) | set(mb))]:
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


def shift_checks(reference: Profile, recent: Profile, params: MonitorParams) -> tuple[ShiftCheck, ...]:
    """Error-rate and cost checks (overall and per model), Holm across all of them."""
    rows = _shift_rows(reference, recent, params)
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


def compare(reference: Profile, recent: Profile, params: MonitorParams) -> DriftReport:
    """Pure: every check of `recent` against `reference`, and the retrain decision."""
    features = feature_drift(reference.features, recent.features, params)
    shifts = shift_checks(reference, recent, params)
    reasons = _reasons(features, shifts, params)
    return DriftReport(
        retrain=bool(reasons), reasons=reasons, reference_rows=len(reference), recent_rows=len(recent),
        reference_span=reference.span, recent_span=recent.span, features=features, shifts=shifts,
        params=plain(asdict(params)),
    )  # fmt: skip


def drift_report(reference: pd.DataFrame, recent: pd.DataFrame, params: MonitorParams) -> DriftReport:
    """Pure: drift of the `recent` trace rows against the `reference` trace rows (see the module docstring)."""
    return compare(profile(reference, params), profile(recent, params), params)


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
        f"# Drift: {'RETRAIN' if report.retrain else 'no retrain'}",
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


def summary(report: DriftReport, out: Path) -> str:
    head = f"drift: {'RETRAIN' if report.retrain else 'no retrain'}  (reference {report.reference_rows:,} rows, recent {report.recent_rows:,} rows)"
    codes = ", ".join(f"{k} {v}" for k, v in report.codes().items())
    return "\n".join(
        [
            head,
            f"  checks: {codes}",
            *[f"  - {r}" for r in report.reasons],
            f"  report: {out / 'drift.md'}, {out / 'drift.json'}, {out / 'psi.png'}",
        ]
    )


def read_recent_file(path: Path, params: MonitorParams) -> pd.DataFrame:
    """A trace file validated through a throwaway ingest (bad rows are not compared)."""
    from traces.load import load_traces

    return load_traces([path], params.prices)


def main(recent: Path | None = None, params_file: Path | None = None) -> DriftReport:
    """`beast monitor drift` / the `monitor` flow: read, compare, write drift.json / drift.md / psi.png, print a summary."""
    from traces.store import read_traces

    params = load_params(params_file, "monitor", MonitorParams)
    check_features(params.features)
    stored = read_traces(params.traces)
    if recent is None:
        reference, recent_rows = split_window(stored, params.window_hours)
    else:
        recent_rows = read_recent_file(recent, params)
        reference = stored[~stored["request_id"].isin(recent_rows["request_id"])].reset_index(drop=True)
    if reference.empty or recent_rows.empty:
        raise BeastError(
            f"{params.traces}: nothing to compare ({len(reference):,} reference rows, {len(recent_rows):,} recent rows); ingest traces first"
        )
    report = drift_report(reference, recent_rows, params)
    write_atomic(params.out / "drift.json", (report.to_json() + "\n").encode())
    write_atomic(params.out / "drift.md", to_markdown(report).encode())
    psi_plot(report, params.out / "psi.png", params.psi_threshold)
    print(summary(report, params.out))
    return report
