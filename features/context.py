"""Context features known at a request's arrival: how each model behaved just before (recent error rate,
latency, load: what a self-healing router steers by), where the request sits in its session, the time of
day and the tenant. Everything looks strictly backwards in time, so training never sees the future."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from features.model_cards import category_codes
from traces.contract import STATUS_ERROR

CONTEXT_FEATURES = (
    "model_recent_requests",
    "model_recent_error_rate",
    "model_recent_latency_ms",
    "session_position",
    "hour_sin",
    "hour_cos",
    "weekday",
    "tenant_code",
)


@dataclass(frozen=True)
class ContextSpec:
    """Plain data: the look-back window (the router keeps the same rolling stats) and tenant categories."""

    window_s: float
    tenants: tuple[str, ...]

    def to_dict(self) -> dict:
        return {"window_s": self.window_s, "tenants": list(self.tenants)}

    @classmethod
    def from_dict(cls, d: dict) -> ContextSpec:
        return cls(float(d["window_s"]), tuple(d["tenants"]))


def fit_context_spec(frame: pd.DataFrame, window_s: float) -> ContextSpec:
    tenants = frame["tenant"].dropna().astype(str).unique() if "tenant" in frame else []
    return ContextSpec(window_s, tuple(sorted(tenants)))


def _window_stats(ts: np.ndarray, err: np.ndarray, lat: np.ndarray, window_ms: int) -> np.ndarray:
    """For time-sorted rows of one model: count, error rate and mean latency over [t - window, t).

    Prefix sums + two binary searches per row: exact, vectorised, and rows at the same instant as t
    (or later) never count."""
    lo = np.searchsorted(ts, ts - window_ms, side="left")
    hi = np.searchsorted(ts, ts, side="left")
    has_lat = ~np.isnan(lat)
    cum = [np.concatenate(([0.0], np.cumsum(x))) for x in (err, np.where(has_lat, lat, 0.0), has_lat.astype(float))]
    count = (hi - lo).astype(float)
    errors, lat_sum, lat_n = (c[hi] - c[lo] for c in cum)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.column_stack(
            [count, np.where(count > 0, errors / count, np.nan), np.where(lat_n > 0, lat_sum / lat_n, np.nan)]
        )


def _recent(frame: pd.DataFrame, window_s: float) -> np.ndarray:
    """(n, 3) array aligned with `frame`: recent requests, error rate, latency of the same model."""
    n = len(frame)
    ts = frame["timestamp"].dt.tz_convert(None).to_numpy().astype("datetime64[ms]").astype(np.int64)
    err = (frame["status"] == STATUS_ERROR).to_numpy(dtype=float)
    lat = frame["latency_ms"].to_numpy(dtype=float, na_value=np.nan) if "latency_ms" in frame else np.full(n, np.nan)
    codes, _ = pd.factorize(frame["model"].astype(object), use_na_sentinel=False)
    order = np.lexsort((np.arange(n), ts, codes))  # by model, then time, then row
    out = np.empty((n, 3))
    bounds = np.flatnonzero(np.diff(codes[order])) + 1
    for rows in np.split(order, bounds):
        out[rows] = _window_stats(ts[rows], err[rows], lat[rows], int(window_s * 1000))
    return out


def context_features(frame: pd.DataFrame, spec: ContextSpec) -> pd.DataFrame:
    """One row per request, aligned with `frame` (any order; computed in time order internally)."""
    n = len(frame)
    recent = _recent(frame, spec.window_s) if n else np.empty((0, 3))
    out = pd.DataFrame(recent, columns=list(CONTEXT_FEATURES[:3]))
    if "session_id" in frame and frame["session_id"].notna().any():
        keys = pd.DataFrame(
            {"s": frame["session_id"].to_numpy(), "ts": frame["timestamp"].to_numpy(), "pos": np.arange(n)}
        )
        keys = keys.sort_values(["ts", "pos"], kind="stable")
        position = keys.groupby("s", sort=False, dropna=True).cumcount()
        out["session_position"] = np.nan
        out.loc[keys.loc[position.index, "pos"].to_numpy(), "session_position"] = position.to_numpy(dtype=float)
    else:
        out["session_position"] = np.nan
    ts = frame["timestamp"].dt.tz_convert("UTC")
    hours = (ts.dt.hour + ts.dt.minute / 60 + ts.dt.second / 3600).to_numpy(dtype=float)
    out["hour_sin"] = np.sin(2 * np.pi * hours / 24)
    out["hour_cos"] = np.cos(2 * np.pi * hours / 24)
    out["weekday"] = ts.dt.day_of_week.to_numpy(dtype=float)
    tenant = frame["tenant"].astype(object).to_numpy() if "tenant" in frame else np.full(n, None)
    out["tenant_code"] = category_codes(tenant, spec.tenants)
    return out[list(CONTEXT_FEATURES)].astype("float32").reset_index(drop=True)
