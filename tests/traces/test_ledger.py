"""Known answers of the cost ledger (traces/ledger.py) on a hand-made price table: a dated price change,
cached input tokens at their own price, a logged cost, and requests without a price (never counted as 0)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from traces.contract import COST_LOGGED, COST_PRICE_TABLE, COST_UNKNOWN
from traces.ledger import NO_TENANT, build_ledger, cost_rows, merge_prices, summarise
from traces.prices import parse_prices

TABLE = parse_prices(
    {
        "models": {
            "m1": [
                {"input": 1.0, "output": 2.0, "cached_input": 0.5, "effective_from": "2024-01-01"},
                {"input": 2.0, "output": 4.0, "cached_input": 1.0, "effective_from": "2024-02-01"},
            ],
            "m2": {"input": 10.0, "output": 20.0},  # cached input at the input price
        }
    },
    "test",
)

ROWS = pd.DataFrame(
    {
        "timestamp": pd.to_datetime(
            [
                "2024-01-15T10:00Z",
                "2024-02-01T00:00Z",
                "2024-01-15T12:00Z",
                "2024-01-15T13:00Z",
                "2023-12-31T23:59Z",
                "2024-01-15T14:00Z",
            ],
            utc=True,
        ),
        "tenant": ["a", "a", "b", "b", None, "a"],
        "model": ["m1", "m1", "m2", "m3", "m1", "m2"],
        "input_tokens": pd.array([1000, 1000, 100, 100, 100, 100], dtype="Int64"),
        "output_tokens": pd.array([500, 500, 100, 100, 100, 100], dtype="Int64"),
        "cached_input_tokens": pd.array([400, None, 50, None, None, None], dtype="Int64"),
        "cost_usd": [np.nan, np.nan, np.nan, np.nan, np.nan, 0.5],
        "cost_source": [COST_PRICE_TABLE, COST_PRICE_TABLE, COST_PRICE_TABLE, COST_UNKNOWN, COST_UNKNOWN, COST_LOGGED],
    }
)

# by hand, USD per 1M tokens:
R1 = (600 * 1.0 + 400 * 0.5 + 500 * 2.0) / 1e6  # January price, 400 cached tokens at 0.5
R2 = (1000 * 2.0 + 500 * 4.0) / 1e6  # exactly at the February change: the new price
R3 = (50 * 10.0 + 50 * 10.0 + 100 * 20.0) / 1e6  # m2 has no cached price: cached tokens at the input price
R6 = 0.5  # logged


def test_cost_rows_known_answers() -> None:
    rows = cost_rows(ROWS, TABLE)
    assert rows["cost_usd"].iloc[[0, 1, 2, 5]].tolist() == pytest.approx([R1, R2, R3, R6], rel=1e-12)
    assert math.isnan(rows["cost_usd"].iloc[3]) and math.isnan(
        rows["cost_usd"].iloc[4]
    )  # unknown model; before the first price
    assert rows["cost_source"].tolist() == [
        COST_PRICE_TABLE,
        COST_PRICE_TABLE,
        COST_PRICE_TABLE,
        COST_UNKNOWN,
        COST_UNKNOWN,
        COST_LOGGED,
    ]
    assert rows["day"].tolist() == ["2024-01-15", "2024-02-01", "2024-01-15", "2024-01-15", "2023-12-31", "2024-01-15"]
    assert rows["tenant"].iloc[4] == NO_TENANT


def test_ledger_totals_and_unknowns_reported_separately() -> None:
    ledger = build_ledger(ROWS, TABLE)
    assert ledger.requests == 6 and ledger.unknown_requests == 2
    assert ledger.cost_usd == pytest.approx(R1 + R2 + R3 + R6, rel=1e-12)
    assert ledger.unknown_by_model() == {"m1": 1, "m3": 1}
    tenants = ledger.by("tenant")
    assert {t: (x.requests, x.priced_requests, x.unknown_requests) for t, x in tenants.items()} == {
        "a": (3, 3, 0),
        "b": (2, 1, 1),
        NO_TENANT: (1, 0, 1),
    }
    assert tenants["a"].cost_usd == pytest.approx(R1 + R2 + R6) and tenants["b"].cost_usd == pytest.approx(R3)
    assert tenants[NO_TENANT].cost_usd == 0.0 and tenants[NO_TENANT].priced_requests == 0  # nothing priced, not "free"
    days = ledger.by("day")
    assert days["2024-01-15"].cost_usd == pytest.approx(R1 + R3 + R6) and days["2024-01-15"].unknown_requests == 1
    assert days["2024-02-01"].cost_usd == pytest.approx(R2)
    models = ledger.by("model")
    assert models["m1"].cost_usd == pytest.approx(R1 + R2) and models["m3"].priced_requests == 0
    doc = ledger.to_dict()
    assert doc["unknown_requests"] == 2 and doc["by_tenant"]["b"]["unknown_requests"] == 1


def test_extra_prices_reprice_unknown_rows_and_never_override() -> None:
    extra = parse_prices(
        {"models": {"m3": {"input": 1.0, "output": 1.0}, "m2": {"input": 99.0, "output": 99.0}}}, "extra"
    )
    table = merge_prices(TABLE, extra)
    rows = cost_rows(ROWS, table)
    assert rows["cost_usd"].iloc[3] == pytest.approx(200 / 1e6)  # stored as unknown, priced by the extra table
    assert rows["cost_usd"].iloc[2] == pytest.approx(R3)  # m2 keeps the main table's price
    assert summarise(rows).unknown_requests == 1


def test_rows_without_cost_source_use_their_logged_cost() -> None:
    raw = ROWS.drop(columns=["cost_source"])
    rows = cost_rows(raw, TABLE)
    assert rows["cost_usd"].iloc[5] == 0.5 and rows["cost_source"].iloc[5] == COST_LOGGED


def test_empty_ledger() -> None:
    ledger = build_ledger(ROWS.iloc[:0], TABLE)
    assert (ledger.requests, ledger.cost_usd, ledger.unknown_requests) == (0, 0.0, 0)
