"""What-if recommendations: known answers on hand-made predictions (savings per day, quality change and
its CI, ranking, filters, sampling scale-up, skipped rows), then the committed samples with a stand-in
predictor and, when a champion bundle has been built, with it."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from monitoring.recommend import (
    RecommendParams,
    SkipCode,
    quotas,
    rank_moves,
    recommend,
    recommend_for_frame,
    sample_rows,
    span_days,
)
from serving.router import RouteRequest

MODELS = ("big", "mid", "small")
COST = {"big": 0.010, "mid": 0.004, "small": 0.001}  # predicted USD per request, every row
PARAMS = RecommendParams(min_group_rows=2, min_usd_per_day=0.1, max_quality_drop=0.02)


def hand_made() -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Tenant t1: 4 chat rows on big, 10 requests/day each; mid is 0.01 worse on average, small 0.10.
    Tenant t2: 3 chat rows on big, 100 requests/day each; mid as good, small 0.015 worse; one row unpriced."""
    rows = pd.DataFrame(
        {
            "tenant": ["t1"] * 4 + ["t2"] * 3,
            "task": "chat",
            "size": "short",
            "model": "big",
            "represents": 1.0,
            "per_day": [10.0] * 4 + [100.0] * 3,
            "cost_usd": [0.012] * 4 + [0.011, 0.011, np.nan],
            "label": [0.9, 0.7, np.nan, np.nan] + [np.nan] * 3,
        }
    )
    quality = np.array(
        [[0.8, 0.78, 0.7], [0.8, 0.80, 0.7], [0.8, 0.79, 0.7], [0.8, 0.79, 0.7]] + [[0.6, 0.6, 0.585]] * 3
    )
    cost = np.tile([COST[m] for m in MODELS], (7, 1))
    return rows, quality, cost


def moves(recs) -> list[tuple[str, str, float]]:
    return [(r.tenant, r.to_model, round(r.savings_usd_per_day, 10)) for r in recs]


def test_known_answer_savings_quality_change_and_ranking() -> None:
    rows, quality, cost = hand_made()
    ranked = rank_moves(rows, quality, cost, MODELS, PARAMS)
    assert moves(ranked.moves) == [("t2", "small", 2.7), ("t1", "mid", 0.24)]  # 3 x 100 x 0.009; 4 x 10 x 0.006
    assert ranked.groups == 2 and ranked.skipped == {SkipCode.NO_PREDICTION: 0, SkipCode.SMALL_GROUP: 0}
    t2, t1 = ranked.moves
    assert t1.from_model == "big" and t1.requests_per_day == 40 and t2.requests_per_day == 300
    assert t1.quality_change == pytest.approx(-0.01)
    half = 1.959963984540054 * math.sqrt(0.0002 / 3) / 2  # d = -0.02, 0, -0.01, -0.01: sd sqrt(0.0002 / 3)
    assert t1.quality_change_ci == pytest.approx((-0.01 - half, -0.01 + half))
    assert t2.quality_change == pytest.approx(-0.015) and t2.quality_change_ci == pytest.approx((-0.015, -0.015))
    assert (t1.quality_from, t1.quality_to) == pytest.approx((0.8, 0.79))
    assert (t1.predicted_usd_per_day_from, t1.predicted_usd_per_day_to, t1.savings_share) == pytest.approx(
        (0.4, 0.16, 0.6)
    )
    assert (t1.actual_usd_per_day, t1.priced_share) == pytest.approx((0.48, 1.0))
    assert (t2.actual_usd_per_day, t2.priced_share) == pytest.approx((2.2, 2 / 3))  # the unpriced row left out
    assert t1.observed_quality_from == pytest.approx(0.8) and t2.observed_quality_from is None
    assert t1.sentence() == (
        "Moving tenant t1's short (< 512 tokens) chat prompts from big to mid saves $0.24 per day (60% of their predicted spend; "
        "40 requests/day) at a predicted quality change of -0.010 (95% CI -0.018 to -0.002)."
    )
    assert json.loads(json.dumps(t1.to_json()))["sentence"] == t1.sentence()


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({}, [("t2", "small", 2.7), ("t1", "mid", 0.24)]),
        ({"max_quality_drop": 0.005}, [("t2", "mid", 1.8)]),  # small (-0.015) and t1's mid (-0.01) too much worse
        (
            {"max_quality_drop": 0.016, "require_ci": True},
            [("t2", "small", 2.7)],
        ),  # t1: mean -0.01 but CI down to -0.018
        ({"min_usd_per_day": 0.5}, [("t2", "small", 2.7)]),
        ({"top": 1}, [("t2", "small", 2.7)]),
        ({"targets": ("mid",)}, [("t2", "mid", 1.8), ("t1", "mid", 0.24)]),
        ({"min_group_rows": 4}, [("t1", "mid", 0.24)]),  # t2 has 3 rows
    ],
)
def test_filters(change: dict, expected: list) -> None:
    rows, quality, cost = hand_made()
    assert moves(recommend(rows, quality, cost, MODELS, replace(PARAMS, **change))) == expected


def test_missing_predictions_are_skipped_and_counted() -> None:
    rows, quality, cost = hand_made()
    quality[4, 2] = np.nan  # small lacks a prediction on one t2 row: not a candidate for t2
    quality[0, 0] = np.nan  # the serving model lacks one on a t1 row: that row is skipped
    rows.loc[0, "represents"] = 5.0  # it stood for 5 trace rows
    ranked = rank_moves(rows, quality, cost, MODELS, PARAMS)
    assert moves(ranked.moves) == [("t2", "mid", 1.8), ("t1", "mid", 0.18)]  # t1: 3 rows x 10 x 0.006
    assert ranked.skipped == {SkipCode.NO_PREDICTION: 5, SkipCode.SMALL_GROUP: 0}
    assert (
        rank_moves(rows, quality, cost, MODELS, replace(PARAMS, min_group_rows=4)).skipped[SkipCode.SMALL_GROUP] == 6
    )  # t1 3 + t2 3
    with pytest.raises(ValueError, match="mystery"):
        rank_moves(rows.assign(model="mystery"), quality, cost, MODELS, PARAMS)


class ConstantRouter:
    """Stand-in predictor: the same quality and USD cost per model for every request; remembers requests."""

    def __init__(self, quality: dict[str, float], cost: dict[str, float]):
        self.models = tuple(quality)
        self.q, self.c = np.array(list(quality.values())), np.array([cost[m] for m in self.models])
        self.requests: list[RouteRequest] = []

    def predict_many(self, requests):
        self.requests += list(requests)
        return np.tile(self.q, (len(requests), 1)), np.tile(self.c, (len(requests), 1))


def trace(n: int, tenant: str, model: str = "big", status: str = "ok", start: int = 0) -> pd.DataFrame:
    times = pd.Timestamp("2025-01-01", tz="UTC") + pd.to_timedelta(
        np.linspace(0, 12 * 3600, n) if n > 1 else [0], unit="s"
    )
    return pd.DataFrame(
        {"request_id": [f"{tenant}-{status}-{i}" for i in range(start, start + n)], "timestamp": times, "model": model, "input_tokens": 100,
         "output_tokens": 50, "status": status, "tenant": tenant, "task": "chat", "cost_usd": 0.01}
    )  # fmt: skip


def test_sampling_scales_each_group_up_and_every_row_is_counted() -> None:
    frame = pd.concat(
        [
            trace(1000, "a"),
            trace(100, "b"),
            trace(10, "c"),
            trace(5, "a", status="error"),
            trace(7, "a", model="mystery"),
        ],
        ignore_index=True,
    )
    params = RecommendParams(max_rows=200, min_group_rows=20)
    assert quotas(np.array([1000, 100]), params).tolist() == [180, 20]  # 0.18 of a, the floor of 20 for b
    router = ConstantRouter({"big": 0.7, "small": 0.7}, {"big": 0.01, "small": 0.001})
    report = recommend_for_frame(frame, router, params)
    assert report.span_days == 0.5
    assert (report.rows_read, report.rows_eligible, report.rows_predicted) == (1122, 1110, 200)
    assert report.skipped == {
        SkipCode.ERROR_STATUS: 5,
        SkipCode.NOT_A_CANDIDATE: 7,
        SkipCode.NO_PREDICTION: 0,
        SkipCode.SMALL_GROUP: 10,
    }
    assert (
        report.rows_read
        == report.rows_eligible + report.skipped[SkipCode.ERROR_STATUS] + report.skipped[SkipCode.NOT_A_CANDIDATE]
    )
    a, b = report.recommendations
    assert (a.tenant, a.rows, a.requests_per_day, a.savings_usd_per_day) == (
        "a",
        180,
        pytest.approx(2000),
        pytest.approx(18.0),
    )  # 1000 x 0.009 / 0.5
    assert (b.tenant, b.rows, b.requests_per_day, b.savings_usd_per_day) == (
        "b",
        20,
        pytest.approx(200),
        pytest.approx(1.8),
    )
    assert a.actual_usd_per_day == pytest.approx(20.0)  # 1000 x 0.01 / 0.5
    assert report.rows_in_groups == 1100 and report.sample_ratio == pytest.approx(200 / 1100)
    assert len(router.requests) == 200 and router.requests[0].task == "chat" and router.requests[0].input_tokens == 100
    assert router.requests[0].timestamp.tzinfo is not None and router.requests[0].prompt is None
    again = sample_rows(frame[frame["status"] == "ok"], params, 0.5).rows.index
    assert again.equals(sample_rows(frame[frame["status"] == "ok"], params, 0.5).rows.index)  # seeded
    assert not again.equals(sample_rows(frame[frame["status"] == "ok"], replace(params, seed=1), 0.5).rows.index)
    doc = json.loads(json.dumps(report.to_json()))
    assert doc["skipped"]["small_group"] == 10 and doc["recommendations"][0]["savings_usd_per_day"] == pytest.approx(
        18.0
    )
    assert "| 1 | a | chat | short | big | small | 2,000 |" in report.markdown()


def test_span_has_a_floor_and_params_are_checked() -> None:
    assert span_days(pd.Series(pd.to_datetime(["2025-01-01T00:00Z"] * 2)), RecommendParams()) == pytest.approx(1 / 24)
    with pytest.raises(ValueError, match="size_cuts"):
        RecommendParams(size_cuts=(100,))
    report = recommend_for_frame(trace(3, "a", status="error"), ConstantRouter({"big": 0.5}, {"big": 0.01}))
    assert report.recommendations == () and report.skipped[SkipCode.ERROR_STATUS] == 3


class PerModelMean:
    """Stand-in for the champion predictors on real traces: each model's mean quality label, and its cost from
    the price table with its mean output tokens (so every prediction is known in closed form)."""

    def __init__(self, frame: pd.DataFrame, prices):
        stats = frame.groupby("model").agg(q=("quality", "mean"), out=("output_tokens", "mean"))
        self.models = tuple(stats.index)
        self.q = stats["q"].to_numpy()
        self.p_in = np.array([prices.current(m).input for m in self.models])
        self.fixed = stats["out"].to_numpy() * np.array([prices.current(m).output for m in self.models])

    def cost(self, tokens: np.ndarray) -> np.ndarray:
        return (np.outer(tokens, self.p_in) + self.fixed) / 1e6

    def predict_many(self, requests):
        return np.tile(self.q, (len(requests), 1)), self.cost(np.array([r.input_tokens for r in requests], dtype=float))


def test_committed_samples_with_a_per_model_mean_predictor(sample_traces, prices) -> None:
    alpaca = sample_traces[sample_traces["request_id"].str.startswith("alpaca-")]
    router = PerModelMean(alpaca, prices)
    params = RecommendParams(min_usd_per_day=0.0)
    report = recommend_for_frame(sample_traces, router, params)
    others = ~sample_traces["model"].isin(router.models)
    assert report.skipped[SkipCode.NOT_A_CANDIDATE] == int(
        (others & (sample_traces["status"] == "ok")).sum()
    )  # Azure, Mooncake
    assert report.skipped[SkipCode.ERROR_STATUS] == int((sample_traces["status"] == "error").sum())
    assert (
        report.rows_eligible == report.rows_predicted == len(alpaca) and report.sample_ratio == 1.0
    )  # fewer than max_rows: no sampling
    days = span_days(sample_traces["timestamp"], params)
    top = report.recommendations[0]
    group = alpaca[(alpaca["task"] == top.task) & (alpaca["model"] == top.from_model) & (alpaca["input_tokens"] < 512)]
    i, j = router.models.index(top.from_model), router.models.index(top.to_model)
    costs = router.cost(group["input_tokens"].to_numpy(dtype=float))
    assert top.requests_per_day == pytest.approx(len(group) / days)
    assert top.savings_usd_per_day == pytest.approx((costs[:, i] - costs[:, j]).sum() / days)
    assert top.quality_change == pytest.approx(router.q[j] - router.q[i])
    assert top.observed_quality_from == pytest.approx(group["quality"].mean())
    assert top.actual_usd_per_day == pytest.approx(group["cost_usd"].sum() / days)
    savings = [r.savings_usd_per_day for r in report.recommendations]
    assert savings == sorted(savings, reverse=True) and all(r.quality_change >= -0.02 for r in report.recommendations)
    ok = [m for m in range(len(router.models)) if m != i and router.q[m] - router.q[i] >= -0.02]
    assert j == max(ok, key=lambda m: (costs[:, i] - costs[:, m]).sum())  # the move that saves most within the drop


def test_real_bundle_on_the_alpaca_sample(routed, sample_traces) -> None:
    """Predictors trained on the committed samples (the session's `routed` bundle)."""
    alpaca = sample_traces[sample_traces["request_id"].str.startswith("alpaca-")]
    router = routed[2]
    params = RecommendParams(max_rows=1500)
    report = recommend_for_frame(alpaca, router, params)
    assert report.rows_predicted <= 1500 and report.skipped[SkipCode.SMALL_GROUP] == 0
    assert report.recommendations, "the champion finds no move at all"
    days = span_days(alpaca["timestamp"], params)
    for r in report.recommendations:
        n = ((alpaca["task"] == r.task) & (alpaca["model"] == r.from_model)).sum()
        assert r.requests_per_day == pytest.approx(n / days)  # exact despite the sample
        assert r.quality_change >= -params.max_quality_drop and r.savings_usd_per_day > params.min_usd_per_day
        assert r.quality_change_ci[0] <= r.quality_change <= r.quality_change_ci[1]
