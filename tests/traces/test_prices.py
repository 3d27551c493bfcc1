"""Price table: validation errors name the place; the price in force is picked by timestamp."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from core.errors import BeastError
from traces.prices import parse_prices, price_rows

DATED = {
    "models": {
        "a": [
            {"input": 1, "output": 2, "effective_from": "2024-01-01"},
            {"input": 2, "output": 4, "cached_input": 0.5, "effective_from": "2024-06-01"},
        ],
        "b": {"input": 1, "output": 1},
    }
}


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({}, "expected a top-level `models:` mapping"),
        ({"models": {"a": {"input": 1}}}, "models.a: missing `output`"),
        ({"models": {"a": {"input": -1, "output": 1}}}, "models.a.input: expected a number >= 0, got -1"),
        ({"models": {"a": {"input": True, "output": 1}}}, "models.a.input: expected a number >= 0, got True"),
        ({"models": {"a": {"input": 1, "output": 1, "cache": 1}}}, "models.a: unknown key(s) cache"),
        (
            {
                "models": {
                    "a": [
                        {"input": 1, "output": 1, "effective_from": "2024-01-01"},
                        {"input": 1, "output": 1, "effective_from": "2024-01-01"},
                    ]
                }
            },
            "two prices with the same effective_from",
        ),
        (
            {"models": {"a": [{"input": 1, "output": 1}, {"input": 1, "output": 1, "effective_from": "2024-01-01"}]}},
            "every one needs effective_from",
        ),
        (
            {"models": {"a": {"input": 1, "output": 1, "effective_from": "soon"}}},
            "models.a.effective_from: expected a date",
        ),
    ],
)
def test_bad_tables_name_file_model_and_field(doc: dict, message: str) -> None:
    with pytest.raises(BeastError) as info:
        parse_prices(doc, "prices.yaml")
    assert str(info.value).startswith("prices.yaml") and message in str(info.value)


def test_price_in_force_at_each_timestamp() -> None:
    table = parse_prices(DATED, "t")
    when = [
        "2023-12-31T23:59:59.999Z",
        "2024-01-01T00:00:00Z",
        "2024-05-31T23:59:59Z",
        "2024-06-01T00:00:00Z",
        "2020-01-01T00:00:00Z",
        "2024-01-01T00:00:00Z",
    ]
    model = pd.Series(["a", "a", "a", "a", "b", "nope"])
    got = price_rows(table, model, pd.Series(pd.to_datetime(when, utc=True, format="ISO8601")))
    np.testing.assert_array_equal(got["input"].to_numpy(), [np.nan, 1, 1, 2, 1, np.nan])
    np.testing.assert_array_equal(got["cached_input"].to_numpy(), [np.nan, 1, 1, 0.5, 1, np.nan])
