"""Known answers for model-identity and context features; no look-ahead."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import ROOT

from core.errors import BeastError
from features.context import CONTEXT_FEATURES, context_features, fit_context_spec
from features.model_cards import MODEL_FEATURES, ModelSpec, fit_model_spec, load_cards, model_features, parse_cards

FRAME = pd.DataFrame(
    {
        "timestamp": pd.to_datetime(
            [
                "2024-01-01T00:00:00Z",
                "2024-01-01T00:00:10Z",
                "2024-01-01T00:00:20Z",
                "2024-01-01T00:00:20Z",
                "2024-01-01T06:10:00Z",
            ],
            utc=True,
        ),
        "model": ["a", "a", "b", "a", "a"],
        "status": ["ok", "error", "ok", "ok", "ok"],
        "latency_ms": [100.0, 300.0, 50.0, np.nan, 10.0],
        "session_id": ["s1", "s1", None, "s2", "s1"],
        "tenant": ["t1", "t2", "t1", None, "t1"],
    }
)


def test_context_known_answers_in_any_row_order() -> None:
    spec = fit_context_spec(FRAME, window_s=60)
    expected = pd.DataFrame(
        {
            "model_recent_requests": [0, 1, 0, 2, 0],
            "model_recent_error_rate": [np.nan, 0, np.nan, 0.5, np.nan],
            "model_recent_latency_ms": [np.nan, 100, np.nan, 200, np.nan],
            "session_position": [0, 1, np.nan, 0, 2],
            "hour_sin": np.sin(2 * np.pi * np.array([0, 10 / 3600, 20 / 3600, 20 / 3600, 6 + 10 / 60]) / 24),
            "tenant_code": [0, 1, 0, np.nan, 0],
        }
    ).astype("float32")
    got = context_features(FRAME, spec)
    assert tuple(got.columns) == CONTEXT_FEATURES
    pd.testing.assert_frame_equal(got[expected.columns], expected, atol=1e-6)
    shuffled = [3, 0, 4, 2, 1]
    again = context_features(FRAME.iloc[shuffled].reset_index(drop=True), spec)
    pd.testing.assert_frame_equal(again, got.iloc[shuffled].reset_index(drop=True))


def test_context_never_looks_ahead() -> None:
    spec = fit_context_spec(FRAME, window_s=3600)
    full = context_features(FRAME, spec)
    for k in range(1, len(FRAME)):
        head = context_features(FRAME.iloc[:k], spec)
        pd.testing.assert_frame_equal(head, full.iloc[:k])


def test_model_features_from_cards_and_prices(prices) -> None:
    cards = load_cards(ROOT / "data" / "models.yaml")
    assert len(cards) == 15 and {c.model for c in cards} == set(prices.models)
    spec = fit_model_spec(pd.Series(["gemma-2b-it", "claude-2.1", None]), cards, prices)
    got = model_features(pd.Series(["claude-2.1", "gemma-2b-it", "never-seen"]), spec)
    assert tuple(got.columns) == MODEL_FEATURES
    np.testing.assert_array_equal(got.iloc[0].to_numpy(), np.array([0, 8, 24, np.nan, 4, 0], dtype="float32"))
    np.testing.assert_array_equal(got.iloc[1].to_numpy(), np.array([1, 0.1, 0.1, 2, 0, 1], dtype="float32"))
    assert got.iloc[2].isna().all()
    assert ModelSpec.from_dict(spec.to_dict()) == spec


@pytest.mark.parametrize(
    ("card", "message"),
    [
        ({"provider": "x", "open_weights": True, "params_b": 7}, "a card needs exactly"),
        ({"provider": "x", "open_weights": True, "params_b": 7, "size_class": "huge"}, "size_class: expected one of"),
        (
            {"provider": "x", "open_weights": True, "params_b": -1, "size_class": "s"},
            "params_b: expected a positive number",
        ),
    ],
)
def test_bad_model_cards_are_named(card: dict, message: str) -> None:
    with pytest.raises(BeastError, match=message):
        parse_cards({"models": {"m": card}}, "models.yaml")
