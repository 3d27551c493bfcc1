"""Stage `report`: the monitoring numbers of a set of traces (`beast monitor report`). Pure functions, one frame in.

Every figure is computed from the trace rows alone, except two panels that need the champion predictors
(the exported bundle, not MLflow): predicted vs actual cost and quality, and the recommendations.

Definitions (each has a test that recomputes it directly with pandas):

- failure = `status == error`; error rate = failures / requests, per model, error type, tenant and time bucket.
- latency percentiles: `latency_ms` of successful requests only (a timeout's latency is the timeout), linear
  interpolation (numpy's default), per model.
- throughput: requests per second in each time bucket; the bucket is the smallest of 1 min, 5 min, 15 min,
  1 h, 6 h, 1 day that gives at most `max_buckets` buckets over the trace's span.
- cost: `traces.ledger.cost_rows` (logged cost, else the price table in force; unknown stays unknown and is
  counted, never 0), summed by model, tenant and UTC day.
- cached-token savings: per row, `cached_input_tokens` x (input price - cached-input price) of the price in
  force; rows of a model without a price are counted in `unpriced_cached_rows`.
- quality: mean of the `quality` label where present, per model, with a normal 95% interval.
- drift: `monitoring.drift.drift_report` of the newest `monitor.window_hours` against the older rows.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from core.jsonable import plain
from traces.contract import STATUS_ERROR
from traces.ledger import Ledger, cost_rows, summarise
from traces.prices import PriceTable, price_rows

BUCKETS: tuple[tuple[str, float], ...] = (
    ("1min", 60),
    ("5min", 300),
    ("15min", 900),
    ("1h", 3600),
    ("6h", 21600),
    ("1D", 86400),
)
NO_VALUE = "(none)"  # a missing tenant / error type


@dataclass(frozen=True)
class Overview:
    requests: int
    failures: int
    error_rate: float
    start: str | None
    end: str | None
    span_hours: float
    mean_rps: float
    peak_rps: float  # busiest bucket
    input_tokens: int
    output_tokens: int
    cached_input_tokens: int
    cost_usd: float  # priced requests only
    unknown_cost_requests: int
    cached_savings_usd: float
    labelled_requests: int
    mean_quality: float


@dataclass(frozen=True)
class Timeline:
    bucket: str
    bucket_s: float
    start: tuple[str, ...]
    requests: tuple[int, ...]
    failures: tuple[int, ...]

    def rps(self) -> np.ndarray:
        return np.asarray(self.requests, dtype=float) / self.bucket_s


@dataclass(frozen=True)
class Rate:
    """Failures of one group (a model, an error type, a tenant)."""

    key: str
    requests: int
    failures: int
    error_rate: float


@dataclass(frozen=True)
class Latency:
    model: str
    requests: int  # successful requests with a latency
    p50_ms: float
    p95_ms: float
    p99_ms: float


@dataclass(frozen=True)
class Savings:
    key: str
    cached_input_tokens: int
    savings_usd: float


@dataclass(frozen=True)
class QualityStat:
    model: str
    labelled: int
    mean: float
    ci_low: float
    ci_high: float


@dataclass(frozen=True)
class MonitorNumbers:
    """Everything `beast monitor report` shows that comes from the traces alone."""

    overview: Overview
    timeline: Timeline
    errors_by_model: tuple[Rate, ...]
    errors_by_type: tuple[Rate, ...]  # requests = all failures; error_rate = share of the failures
    errors_by_tenant: tuple[Rate, ...]
    latency: tuple[Latency, ...]
    ledger: Ledger
    savings_by_model: tuple[Savings, ...]
    savings_by_tenant: tuple[Savings, ...]
    unpriced_cached_rows: int
    quality: tuple[QualityStat, ...]
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        ledger = self.ledger.to_dict()
        return plain(
            {
                "overview": asdict(self.overview),
                "timeline": asdict(self.timeline) | {"rps": self.timeline.rps().tolist()},
                "errors": {
                    "by_model": [asdict(r) for r in self.errors_by_model],
                    "by_type": [asdict(r) for r in self.errors_by_type],
                    "by_tenant": [asdict(r) for r in self.errors_by_tenant],
                },
                "latency_by_model": [asdict(x) for x in self.latency],
                "cost": {
                    k: ledger[k]
                    for k in (
                        "requests",
                        "cost_usd",
                        "unknown_requests",
                        "unknown_by_model",
                        "by_model",
                        "by_tenant",
                        "by_day",
                    )
                },
                "cached_savings": {
                    "by_model": [asdict(s) for s in self.savings_by_model],
                    "by_tenant": [asdict(s) for s in self.savings_by_tenant],
                    "unpriced_cached_rows": self.unpriced_cached_rows,
                },
                "quality_by_model": [asdict(q) for q in self.quality],
            }
        )


def _col(frame: pd.DataFrame, name: str, fill: object = None) -> pd.Series:
    """A column as object text with `fill` for missing values (a missing column is all `fill`)."""
    if name not in frame.columns:
        return pd.Series([fill] * len(frame), index=frame.index, dtype=object)
    s = frame[name].astype(object)
    return s.where(s.notna(), fill)


def _numeric(frame: pd.DataFrame, name: str) -> np.ndarray:
    if name not in frame.columns:
        return np.full(len(frame), np.nan)
    return pd.to_numeric(frame[name], errors="coerce").to_numpy(dtype=float, na_value=np.nan)


def failed(frame: pd.DataFrame) -> np.ndarray:
    return (frame["status"] == STATUS_ERROR).to_numpy(dtype=bool, na_value=False)


def pick_bucket(span_s: float, max_buckets: int) -> tuple[str, float]:
    """The finest bucket that cuts `span_s` into at most `max_buckets` pieces (the coarsest if none does)."""
    for name, seconds in BUCKETS:
        if span_s / seconds < max_buckets:
            return name, seconds
    return BUCKETS[-1]


def timeline(ts: pd.Series, error: np.ndarray, max_buckets: int) -> Timeline:
    """Requests and failures per time bucket, empty buckets included (a gap in traffic is visible)."""
    if ts.empty or ts.isna().all():
        return Timeline(BUCKETS[0][0], BUCKETS[0][1], (), (), ())
    span = (ts.max() - ts.min()).total_seconds()
    name, seconds = pick_bucket(span, max_buckets)
    key = ts.dt.floor(name)
    g = pd.DataFrame({"k": key, "e": error}).groupby("k")["e"].agg(["size", "sum"])
    full = pd.date_range(key.min(), key.max(), freq=name)
    g = g.reindex(full, fill_value=0)
    return Timeline(
        name,
        float(seconds),
        tuple(t.isoformat() for t in g.index),
        tuple(int(v) for v in g["size"]),
        tuple(int(v) for v in g["sum"]),
    )


def rates(keys: pd.Series, error: np.ndarray) -> tuple[Rate, ...]:
    """Failures per key, most requests first."""
    g = pd.DataFrame({"k": keys.to_numpy(), "e": error}).groupby("k", sort=True)["e"].agg(["size", "sum"])
    g = g.sort_values("size", ascending=False, kind="stable")
    return tuple(Rate(str(k), int(r["size"]), int(r["sum"]), float(r["sum"] / r["size"])) for k, r in g.iterrows())


def error_types(frame: pd.DataFrame, error: np.ndarray) -> tuple[Rate, ...]:
    """Failures per error type, as a share of all failures."""
    types = _col(frame, "error_type", NO_VALUE)[error]
    total = int(error.sum())
    counts = types.value_counts(sort=True)
    return tuple(Rate(str(k), total, int(v), float(v / total)) for k, v in counts.items())


def latency(frame: pd.DataFrame, error: np.ndarray) -> tuple[Latency, ...]:
    """p50/p95/p99 of successful requests' latency per model (models without any latency are left out)."""
    lat = _numeric(frame, "latency_ms")
    ok = ~error & ~np.isnan(lat)
    d = pd.DataFrame({"m": frame["model"].to_numpy()[ok], "x": lat[ok]})
    q = d.groupby("m")["x"].quantile([0.5, 0.95, 0.99]).unstack()
    n = d.groupby("m").size()
    return tuple(
        Latency(str(m), int(n[m]), float(q.at[m, 0.5]), float(q.at[m, 0.95]), float(q.at[m, 0.99]))
        for m in n.sort_values(ascending=False, kind="stable").index
    )


def cached_savings(
    frame: pd.DataFrame, table: PriceTable, tenant: pd.Series
) -> tuple[tuple[Savings, ...], tuple[Savings, ...], int]:
    """(by model, by tenant, rows with cached tokens but no price): what the cached-input discount saved."""
    cached = np.nan_to_num(_numeric(frame, "cached_input_tokens"), nan=0.0)
    rows = np.flatnonzero(cached > 0)
    if len(rows) == 0:
        return (), (), 0
    sub = frame.iloc[rows]
    p = price_rows(
        table,
        sub["model"].astype(object).reset_index(drop=True),
        pd.to_datetime(sub["timestamp"], utc=True).reset_index(drop=True),
    )
    usd = cached[rows] * (p["input"].to_numpy() - p["cached_input"].to_numpy()) / 1e6
    priced = ~np.isnan(usd)
    d = pd.DataFrame(
        {
            "model": sub["model"].astype(str).to_numpy(),
            "tenant": tenant.to_numpy()[rows],
            "tok": cached[rows],
            "usd": usd,
        }
    )[priced]

    def by(key: str) -> tuple[Savings, ...]:
        g = (
            d.groupby(key)
            .agg(tok=("tok", "sum"), usd=("usd", "sum"))
            .sort_values("usd", ascending=False, kind="stable")
        )
        return tuple(Savings(str(k), int(r.tok), float(r.usd)) for k, r in g.iterrows())

    return by("model"), by("tenant"), int((~priced).sum())


def quality(frame: pd.DataFrame) -> tuple[QualityStat, ...]:
    """Mean label per model with a normal 95% interval (the interval is NaN with one label)."""
    q = _numeric(frame, "quality")
    has = ~np.isnan(q)
    d = pd.DataFrame({"m": frame["model"].to_numpy()[has], "q": q[has]})
    g = d.groupby("m")["q"].agg(["size", "mean", "std"]).sort_values("size", ascending=False, kind="stable")
    out = []
    for m, r in g.iterrows():
        half = 1.959964 * r["std"] / math.sqrt(r["size"]) if r["size"] > 1 else math.nan
        out.append(
            QualityStat(str(m), int(r["size"]), float(r["mean"]), float(r["mean"] - half), float(r["mean"] + half))
        )
    return tuple(out)


def monitor_numbers(frame: pd.DataFrame, table: PriceTable, max_buckets: int = 200) -> MonitorNumbers:
    """Pure: trace rows (contract v1 columns) + the price table -> every trace-only number of the report."""
    error = failed(frame)
    ts = pd.to_datetime(frame["timestamp"], utc=True)
    tenant = _col(frame, "tenant", NO_VALUE).astype(str)
    tl = timeline(ts, error, max_buckets)
    rows = cost_rows(frame, table)
    ledger = summarise(rows)
    by_model, by_tenant, unpriced = cached_savings(frame, table, tenant)
    q = _numeric(frame, "quality")
    span_h = (ts.max() - ts.min()).total_seconds() / 3600 if len(ts) and ts.notna().any() else 0.0
    overview = Overview(
        requests=len(frame),
        failures=int(error.sum()),
        error_rate=float(error.mean()) if len(frame) else math.nan,
        start=ts.min().isoformat() if len(ts) else None,
        end=ts.max().isoformat() if len(ts) else None,
        span_hours=span_h,
        mean_rps=len(frame) / (span_h * 3600) if span_h > 0 else math.nan,
        peak_rps=float(tl.rps().max()) if tl.requests else math.nan,
        input_tokens=int(np.nansum(_numeric(frame, "input_tokens"))),
        output_tokens=int(np.nansum(_numeric(frame, "output_tokens"))),
        cached_input_tokens=int(np.nansum(_numeric(frame, "cached_input_tokens"))),
        cost_usd=ledger.cost_usd,
        unknown_cost_requests=ledger.unknown_requests,
        cached_savings_usd=float(sum(s.savings_usd for s in by_model)),
        labelled_requests=int((~np.isnan(q)).sum()),
        mean_quality=float(np.nanmean(q)) if (~np.isnan(q)).any() else math.nan,
    )
    return MonitorNumbers(
        overview,
        tl,
        rates(frame["model"].astype(str), error),
        error_types(frame, error),
        rates(tenant, error),
        latency(frame, error),
        ledger,
        by_model,
        by_tenant,
        unpriced,
        quality(frame),
    )
