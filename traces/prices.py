"""Price table (USD per 1M tokens, optionally dated) and vectorised per-row costing."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core.config import read_yaml
from core.errors import BeastError
from core.files import in_project
from traces.contract import COST_LOGGED, COST_PRICE_TABLE, COST_UNKNOWN

_KEYS = {"input", "output", "cached_input", "effective_from"}


@dataclass(frozen=True)
class Price:
    model: str
    input: float  # USD per 1M input tokens
    output: float  # USD per 1M output tokens
    cached_input: float  # USD per 1M cached input tokens
    effective_from: pd.Timestamp | None = None  # None = since forever


@dataclass(frozen=True)
class PriceTable:
    prices: tuple[Price, ...]

    @property
    def models(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(p.model for p in self.prices))

    def current(self, model: str) -> Price | None:
        """The latest price of `model` (for planning and synthetic data), or None."""
        found = [p for p in self.prices if p.model == model]
        return max(found, key=lambda p: p.effective_from or pd.Timestamp.min.tz_localize("UTC")) if found else None


def _number(value: Any, where: str) -> float:
    if (
        isinstance(value, bool) or not isinstance(value, (int, float)) or not value <= 1e300 or value < 0
    ):  # also NaN, inf, huge ints
        raise BeastError(f"{where}: expected a number >= 0, got {value!r}")
    return float(value)


def _when(value: Any, where: str) -> pd.Timestamp:
    if isinstance(value, (dt.date, dt.datetime, str)):
        try:
            ts = pd.Timestamp(value)
        except ValueError:
            ts = None
        if ts is not None and not pd.isna(ts):
            return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    raise BeastError(f"{where}: expected a date (YYYY-MM-DD or RFC 3339), got {value!r}")


def parse_prices(doc: Any, source: str) -> PriceTable:
    """Validate a parsed price document; every error names `source`, the model and the field."""
    if not isinstance(doc, dict) or not isinstance(doc.get("models"), dict) or not doc["models"]:
        raise BeastError(f"{source}: expected a top-level `models:` mapping of model -> price")
    prices: list[Price] = []
    for model, spec in doc["models"].items():
        entries = spec if isinstance(spec, list) else [spec]
        dates: set[pd.Timestamp | None] = set()
        for i, entry in enumerate(entries):
            where = f"{source}: models.{model}" + (f"[{i}]" if isinstance(spec, list) else "")
            if not isinstance(entry, dict):
                raise BeastError(f"{where}: expected a mapping with input and output, got {entry!r}")
            unknown = set(entry) - _KEYS
            if unknown:
                raise BeastError(
                    f"{where}: unknown key(s) {', '.join(sorted(map(str, unknown)))}; known: {', '.join(sorted(_KEYS))}"
                )
            for key in ("input", "output"):
                if key not in entry:
                    raise BeastError(f"{where}: missing `{key}` (USD per 1M tokens)")
            inp = _number(entry["input"], f"{where}.input")
            when = _when(entry["effective_from"], f"{where}.effective_from") if "effective_from" in entry else None
            if when in dates:
                raise BeastError(f"{where}: two prices with the same effective_from")
            dates.add(when)
            cached = _number(entry["cached_input"], f"{where}.cached_input") if "cached_input" in entry else inp
            prices.append(Price(str(model), inp, _number(entry["output"], f"{where}.output"), cached, when))
        if None in dates and len(dates) > 1:
            raise BeastError(f"{source}: models.{model}: with several prices every one needs effective_from")
    return PriceTable(tuple(prices))


def load_prices(path: Path) -> PriceTable:
    """The price table at `path`; a relative path the working directory lacks is the checkout's own table
    (`core.files.in_project`), so every command that costs rows runs from any working directory."""
    path = in_project(Path(path))
    return parse_prices(read_yaml(path), str(path))


def price_rows(table: PriceTable, model: pd.Series, timestamp: pd.Series) -> pd.DataFrame:
    """Per row, the price in force for (model, timestamp): columns input / output / cached_input (NaN = none).

    One binary search per model over its `effective_from` dates; rows of a model without a price, or
    before its first dated price, get NaN."""
    n = len(model)
    out = {k: np.full(n, np.nan) for k in ("input", "output", "cached_input")}
    if n:
        codes = pd.Index(table.models).get_indexer(model.astype(object))
        ts = timestamp.astype("datetime64[ms, UTC]").dt.tz_convert(None).to_numpy().astype("int64")
        ts_ok = timestamp.notna().to_numpy()
        for i, name in enumerate(table.models):
            rows = np.flatnonzero((codes == i) & ts_ok)
            if len(rows) == 0:
                continue
            prices = sorted(
                (p for p in table.prices if p.model == name),
                key=lambda p: (p.effective_from is not None, p.effective_from),
            )
            since = np.array(
                [
                    np.iinfo(np.int64).min if p.effective_from is None else p.effective_from.value // 10**6
                    for p in prices
                ]
            )
            which = np.searchsorted(since, ts[rows], side="right") - 1
            hit = which >= 0
            for key in out:
                out[key][rows[hit]] = np.array([getattr(p, key) for p in prices])[which[hit]]
    return pd.DataFrame(out)


def compute_costs(
    table: PriceTable,
    model: pd.Series,
    timestamp: pd.Series,
    input_tokens: pd.Series,
    output_tokens: pd.Series,
    cached_input_tokens: pd.Series,
    logged_cost: pd.Series,
) -> tuple[np.ndarray, np.ndarray]:
    """(cost_usd, cost_source) per row: the logged cost when present, else the price table's, else unknown (NaN)."""
    p = price_rows(table, model, timestamp)
    cached = cached_input_tokens.fillna(0).to_numpy(dtype=float)
    inp = input_tokens.to_numpy(dtype=float)
    out = output_tokens.to_numpy(dtype=float)
    computed = (
        (inp - cached) * p["input"].to_numpy() + cached * p["cached_input"].to_numpy() + out * p["output"].to_numpy()
    ) / 1e6
    logged = logged_cost.to_numpy(dtype=float, na_value=np.nan)
    has_logged = ~np.isnan(logged)
    has_price = ~np.isnan(computed)
    cost = np.where(has_logged, logged, computed)
    source = np.where(has_logged, COST_LOGGED, np.where(has_price, COST_PRICE_TABLE, COST_UNKNOWN)).astype(object)
    return cost, source
