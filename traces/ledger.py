"""The cost ledger: what every request cost, summed by tenant / model / UTC day. Pure functions.

Per request (`cost_rows`): the cost logged in the trace (`cost_source = logged`) when the router billed it,
else the price table in force at the request's timestamp (`traces.prices.compute_costs`: uncached input
tokens at the input price, `cached_input_tokens` at the cached-input price, output tokens at the output
price, USD per 1M tokens), else unknown. A request of a model without a price (or before its first dated
price) is `cost_unknown`: its cost stays NaN, it is counted in `unknown_requests` and never adds 0 to a sum.

Costs are recomputed from the table given here, not taken from the stored `cost_usd` of rows the ingest
priced: a budget config may add prices the ingest did not have (stored as `cost_unknown`).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from traces.contract import COST_LOGGED, COST_UNKNOWN
from traces.prices import PriceTable, compute_costs

NO_TENANT = "(none)"  # rows without a tenant
KEYS = ("tenant", "model", "day")


def cost_rows(frame: pd.DataFrame, table: PriceTable) -> pd.DataFrame:
    """One row per request: timestamp, tenant, model, day (UTC date), cost_usd (NaN = unknown), cost_source.

    A `cost_usd` counts as logged only when the row says so (`cost_source == logged`) or, for rows that never
    went through ingest (no `cost_source` column), whenever it is present."""
    n = len(frame)

    def col(name: str, default: object) -> pd.Series:
        return frame[name].reset_index(drop=True) if name in frame.columns else pd.Series([default] * n, dtype=object)

    logged = pd.to_numeric(col("cost_usd", np.nan), errors="coerce").astype(float)
    if "cost_source" in frame.columns:
        logged = logged.where(col("cost_source", None).to_numpy() == COST_LOGGED)
    ts = pd.to_datetime(col("timestamp", pd.NaT), utc=True)
    model = col("model", None).astype(object)
    cost, source = compute_costs(
        table,
        model,
        ts,
        pd.to_numeric(col("input_tokens", 0)).astype(float),
        pd.to_numeric(col("output_tokens", 0)).astype(float),
        pd.to_numeric(col("cached_input_tokens", np.nan)).astype(float),
        logged,
    )
    tenant = col("tenant", None).astype(object)
    return pd.DataFrame(
        {
            "timestamp": ts,
            "tenant": tenant.where(tenant.notna(), NO_TENANT).astype(str),
            "model": model.astype(str),
            "day": ts.dt.strftime("%Y-%m-%d"),
            "cost_usd": np.asarray(cost, dtype=float),
            "cost_source": source,
        }
    )


@dataclass(frozen=True)
class LedgerLine:
    """One (tenant, model, day): priced spend and how many requests had no price."""

    tenant: str
    model: str
    day: str
    requests: int
    priced_requests: int
    unknown_requests: int
    cost_usd: float  # sum over priced requests only


@dataclass(frozen=True)
class Ledger:
    lines: tuple[LedgerLine, ...]

    @property
    def requests(self) -> int:
        return sum(x.requests for x in self.lines)

    @property
    def unknown_requests(self) -> int:
        return sum(x.unknown_requests for x in self.lines)

    @property
    def cost_usd(self) -> float:
        return float(sum(x.cost_usd for x in self.lines))

    def unknown_by_model(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for x in self.lines:
            if x.unknown_requests:
                out[x.model] = out.get(x.model, 0) + x.unknown_requests
        return dict(sorted(out.items()))

    def by(self, key: str) -> dict[str, LedgerLine]:
        """Lines summed over the other keys, per value of `key` (tenant, model or day); the other keys read `*`."""
        if key not in KEYS:
            raise ValueError(f"key must be one of {KEYS}, got {key!r}")
        out: dict[str, LedgerLine] = {}
        for x in self.lines:
            v = getattr(x, key)
            old = out.get(v)
            stars = dict.fromkeys(KEYS, "*") | {key: v}
            out[v] = LedgerLine(
                **stars,
                requests=x.requests + (old.requests if old else 0),
                priced_requests=x.priced_requests + (old.priced_requests if old else 0),
                unknown_requests=x.unknown_requests + (old.unknown_requests if old else 0),
                cost_usd=x.cost_usd + (old.cost_usd if old else 0.0),
            )
        return dict(sorted(out.items()))

    def to_dict(self) -> dict[str, object]:
        return {
            "requests": self.requests,
            "cost_usd": round(self.cost_usd, 9),
            "unknown_requests": self.unknown_requests,
            "unknown_by_model": self.unknown_by_model(),
            **{f"by_{k}": {v: asdict(line) for v, line in self.by(k).items()} for k in KEYS},
            "lines": [asdict(x) for x in self.lines],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)


def summarise(rows: pd.DataFrame) -> Ledger:
    """The ledger of `cost_rows` output: one line per (tenant, model, day), sorted."""
    if rows.empty:
        return Ledger(())
    known = rows["cost_source"].to_numpy() != COST_UNKNOWN
    g = rows.assign(_known=known, _cost=np.where(known, rows["cost_usd"].to_numpy(dtype=float), 0.0)).groupby(
        list(KEYS), sort=True
    )
    agg = g.agg(requests=("_known", "size"), priced=("_known", "sum"), cost=("_cost", "sum")).reset_index()
    return Ledger(
        tuple(
            LedgerLine(
                str(r.tenant),
                str(r.model),
                str(r.day),
                int(r.requests),
                int(r.priced),
                int(r.requests - r.priced),
                float(r.cost),
            )
            for r in agg.itertuples(index=False)
        )
    )


def build_ledger(frame: pd.DataFrame, table: PriceTable) -> Ledger:
    return summarise(cost_rows(frame, table))


def format_ledger(ledger: Ledger, key: str = "tenant") -> str:
    """A small Markdown table by `key`, unknown-price requests in their own column."""
    lines = [f"| {key} | requests | cost USD | unknown-price requests |", "|---|---|---|---|"]
    lines += [
        f"| {v} | {x.requests:,} | {x.cost_usd:,.4f} | {x.unknown_requests:,} |" for v, x in ledger.by(key).items()
    ]
    return "\n".join(lines)


def merge_prices(base: PriceTable, extra: PriceTable | None) -> PriceTable:
    """`base` plus the prices of models it lacks from `extra` (a model priced in both keeps `base`'s prices)."""
    if extra is None:
        return base
    have = set(base.models)
    return PriceTable(base.prices + tuple(p for p in extra.prices if p.model not in have))
