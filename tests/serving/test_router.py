"""Reference router: per-request features and predictions equal the training (batch) path; policies
choose by their rule; a tampered bundle is refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import ROOT

from core.native import shared_library
from features.build import build_features
from features.prompt import prompt_features, prompt_vector
from features.text import TextParams, fit_text, text_vector, transform_text
from models.quality import quality_rows
from serving import forest
from serving.bundle import BundleError
from serving.compiled import CompiledTrees
from serving.router import (
    BATCH_MIN,
    DecisionCode,
    FeatureLayout,
    LightGBMTrees,
    Router,
    RouteRequest,
    Threshold,
    Tradeoff,
)

EDGE_PROMPTS = [
    "",
    "!!!",
    "User: hi\nAssistant: yo\nuser: 2+2=?",
    "```py\ndef f(x): return x\n```",
    "什么是机器学习？",
    None,
]


def test_single_prompt_paths_equal_the_batch_paths(sample_traces) -> None:
    prompts = list(sample_traces["prompt"].dropna().drop_duplicates()[:200]) + EDGE_PROMPTS
    batch = prompt_features(pd.Series(prompts, dtype=object)).to_numpy()
    np.testing.assert_array_equal(batch, np.vstack([prompt_vector(p) for p in prompts]).astype(np.float32))
    spec = fit_text(pd.Series(prompts[:200]), TextParams(k=8, n_features=1024))
    np.testing.assert_array_equal(
        transform_text(spec, pd.Series(prompts, dtype=object)), np.vstack([text_vector(spec, p) for p in prompts])
    )


def test_router_quality_equals_the_trained_predictor(routed, sample_traces) -> None:
    _, results, router = routed
    rows = quality_rows(sample_traces).head(14 * 20)  # 20 prompts x 14 models
    booster = results["quality"].boosters["shared"]
    spec_cols = list(results["quality"].example.columns)
    from features.build import FeatureSpec

    spec = FeatureSpec.from_json(router.bundle.text("feature_spec.json"))
    expected = booster.predict(build_features(rows, spec)[spec_cols])
    got = []
    for prompt, model, tokens in rows[["prompt", "model", "input_tokens"]].itertuples(index=False):
        quality, _ = router.predict(RouteRequest(prompt=prompt, input_tokens=int(tokens)))
        got.append(quality[router.models.index(model)])
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-7)  # float32 features on both sides


def test_router_cost_equals_the_trained_predictor(routed, sample_traces) -> None:
    _, results, router = routed
    rows = quality_rows(sample_traces).head(14 * 10)
    p50 = results["cost"].boosters["p50"]
    from models.cost import cost_features

    categories = {k: tuple(v) for k, v in router.bundle.side("cost")["categories"].items()}
    expected = np.clip(np.expm1(p50.predict(cost_features(rows, categories)[router.c_names])), 0, None)
    for (prompt, model, tokens, task, ts), want in zip(
        rows[["prompt", "model", "input_tokens", "task", "timestamp"]].itertuples(index=False), expected, strict=True
    ):
        _, cost = router.predict(
            RouteRequest(prompt=prompt, input_tokens=int(tokens), task=task, timestamp=ts.to_pydatetime())
        )
        i = router.models.index(model)
        want_usd = (tokens * router.price_in[i] + want * router.price_out[i]) / 1e6
        assert cost[i] == pytest.approx(want_usd, rel=1e-6)


def test_policies_choose_by_their_rule() -> None:
    models = ("cheap", "mid", "dear")
    quality, cost = np.array([0.3, 0.6, 0.9]), np.array([0.001, 0.01, 0.1])
    assert Threshold(0.5).choose(models, quality, cost)[::2] == (1, DecisionCode.OK)
    assert Threshold(0.95).choose(models, quality, cost)[::2] == (2, DecisionCode.BELOW_TARGET)
    assert Tradeoff(0.0).choose(models, quality, cost)[0] == 2
    assert Tradeoff(1.0).choose(models, quality, cost)[0] == 0  # 0.3 - 1 > 0.6 - 10 > 0.9 - 100


def test_route_returns_a_typed_decision_and_a_tampered_bundle_is_refused(routed) -> None:
    tmp, _, router = routed
    decision = router.route(RouteRequest(prompt="Write a haiku about the sea.", task="koala"))
    assert decision.model in router.models and decision.policy == "threshold"
    assert 0 <= decision.predicted_quality <= 1 and decision.predicted_cost_usd > 0
    import shutil

    copy = tmp / "tampered"
    shutil.copytree(tmp / "bundle", copy)
    booster = next((copy / "models" / "cost").glob("*.txt"))
    booster.write_text(booster.read_text().replace("tree", "Tree", 1))
    with pytest.raises(BundleError, match="sha256"):
        Router.load(copy)


def test_bundle_carries_conformance_vectors_that_replay_exactly(routed) -> None:
    import json

    from serving.conformance import check

    tmp, _, router = routed
    assert router.bundle.manifest["conformance"]["vectors"] >= 200
    lines = router.bundle.text("conformance.jsonl").splitlines()
    vectors = [json.loads(line) for line in lines]  # strict JSON: NaN written as null
    assert len(vectors) == router.bundle.manifest["conformance"]["vectors"] and "NaN" not in lines[0]
    assert {v["decision"]["code"] for v in vectors} <= {"ok", "below_target"}
    assert check(router, vectors[:60]) == []
    wrong = dict(vectors[0], decision={"model": "nobody", "code": "ok"})
    (problem,) = check(router, [wrong])
    assert problem.startswith("vector 1: decision ") and "'nobody'" in problem


def test_circuit_breaker_opens_skips_and_heals() -> None:
    from serving.router import CircuitBreaker

    cb = CircuitBreaker(window=10, min_requests=4, max_error_rate=0.5, cooldown_s=30)
    for t, ok in enumerate([True, False, True, False]):  # 2 of 4 failed: opens at the 4th
        cb.observe("m", ok, now=float(t))
    assert not cb.available("m", now=10.0) and cb.available("other", now=10.0)
    assert cb.available("m", now=33.0)  # cooldown over: one half-open trial
    cb.observe("m", False, now=33.0)  # trial failed: open again from t=33
    assert not cb.available("m", now=40.0) and cb.available("m", now=63.0)
    cb.observe("m", True, now=63.0)  # trial succeeded: closed, history reset
    cb.observe("m", False, now=64.0)
    assert cb.available("m", now=64.0)


def test_router_skips_failing_models_and_falls_back(routed) -> None:
    _, _, router = routed
    request = RouteRequest(prompt="Summarise the plot of Hamlet in two sentences.", task="koala")
    first = router.route(request, now=0.0)
    for t in range(5):
        router.observe(first.model, ok=False, now=float(t))
    second = router.route(request, now=10.0)
    assert second.model != first.model and first.model in second.reason and "circuit open" in second.reason
    for model in router.models:
        for k in range(5):
            router.observe(model, ok=False, now=20.0 + k)
    fallback = router.route(request, now=30.0)
    assert fallback.code.value == "fallback" and fallback.model == router.fallback[0]
    healed = router.route(request, now=1000.0)  # every cooldown over
    assert healed.code.value in {"ok", "below_target"}


def test_route_stream_keeps_order_and_names_bad_fields(routed) -> None:
    import io
    import json

    from serving.router import route_stream

    _, _, router = routed
    lines = [
        json.dumps({"request_id": "a", "prompt": "Write a limerick about cats."}),
        "not json",
        "",
        json.dumps({"prompt": 42}),
        json.dumps({"prompt": "hi", "input_tokens": -3}),
        json.dumps({"prompt": "hi", "timestamp": "yesterday"}),
        json.dumps([1, 2]),
        json.dumps({"request_id": "b", "prompt": None, "input_tokens": 10}),
    ]
    out = io.StringIO()
    assert route_stream(router, lines, out) == 5
    rows = [json.loads(x) for x in out.getvalue().splitlines()]
    assert [r.get("request_id") for r in rows] == ["a", None, None, None, None, None, "b"]
    assert [r["error"].split(":")[0] for r in rows[1:6]] == [
        "Expecting value",
        "prompt",
        "input_tokens",
        "timestamp",
        "expected a JSON object",
    ]
    assert rows[1]["line"] == 2 and rows[2]["line"] == 4 and rows[6]["model"] in router.models


def test_budget_policy_tracks_its_spend_rate() -> None:
    """Seeded simulation: 3 models (cheap / mid / dear), one request per second; the budget lies between
    'always cheap' and 'always dear', so lam must settle where spend matches it."""
    from serving.router import Budget

    rng = np.random.default_rng(0)
    models = ("cheap", "mid", "dear")
    policy = Budget(usd_per_hour=18.0, lam=0.01, gain=0.05, window_s=600)  # 0.005 USD per request on average
    spent = []
    for t in range(7200):
        quality = np.clip(np.array([0.3, 0.6, 0.8]) + rng.normal(0, 0.05, 3), 0, 1)
        cost = np.array([0.001, 0.005, 0.02]) * rng.uniform(0.8, 1.2, 3)
        i, _, _ = policy.choose(models, quality, cost)
        policy.record(float(cost[i]), float(t))
        spent.append(cost[i])
    last_hour = sum(spent[3600:])
    assert 18.0 * 0.85 <= last_hour <= 18.0 * 1.15  # within 15% of the budget once settled
    assert 0.001 * 3600 < last_hour < 0.02 * 3600


def test_budget_policy_paces_the_remaining_budget_file(tmp_path: Path) -> None:
    """Seeded simulation against the shared remaining-budget file: $40 left for 2 hours -> $20/h; after
    an hour the ledger says others spent more (only $5 left for the last hour) and the router follows."""
    import datetime as dt

    from serving.budget import BudgetFileError, BudgetState, write_state
    from serving.router import Budget

    start = dt.datetime(2026, 11, 26, 10, tzinfo=dt.UTC)
    clock = [start.timestamp()]
    path = tmp_path / "budget.json"
    state = BudgetState("tenant-a", start - dt.timedelta(days=25), start + dt.timedelta(hours=2), 1000.0, 960.0, start)
    write_state(path, state)
    policy = Budget(state_file=str(path), lam=0.01, window_s=600, refresh_s=5, clock=lambda: clock[0])
    assert policy.budget == pytest.approx(20.0)
    rng = np.random.default_rng(1)
    models, spent, reasons = ("cheap", "mid", "dear"), [], []
    for t in range(7200):
        clock[0] = start.timestamp() + t
        if t == 3600:
            write_state(
                path,
                BudgetState(
                    "tenant-a", state.period_start, state.period_end, 1000.0, 995.0, start + dt.timedelta(hours=1)
                ),
            )
        if t == 5400:
            path.write_text("{not json")  # a broken update: the last good state stays in force, and is reported
        quality = np.clip(np.array([0.3, 0.6, 0.8]) + rng.normal(0, 0.05, 3), 0, 1)
        cost = np.array([0.001, 0.005, 0.02]) * rng.uniform(0.8, 1.2, 3)
        i, reason, _ = policy.choose(models, quality, cost)
        policy.record(float(cost[i]), float(t))
        spent.append(cost[i])
        reasons.append(reason)
    first_hour, last_half_hour = sum(spent[1800:3600]) * 2, sum(spent[4500:5400]) * 4
    assert 20.0 * 0.85 <= first_hour <= 20.0 * 1.15
    assert 5.0 * 0.8 <= last_half_hour <= 5.0 * 1.2 + 0.001 * 3600 * 0.2
    assert "$40.00 left of tenant-a until 2026-11-26T12:00Z" in reasons[0]
    assert "not JSON" in reasons[-1] and "keeping the state of 2026-11-26T11:00:00Z" in reasons[-1]
    path.write_text(
        '{"kind": "beast.budget-state", "version": "1", "period_start": "2026-11-01T00:00:00Z", "period_end": "2026-12-01T00:00:00Z", "budget_usd": -5, "spent_usd": 0, "updated_at": "2026-11-26T00:00:00Z"}'
    )
    with pytest.raises(BudgetFileError, match="budget.json: budget_usd: expected a finite number >= 0"):
        Budget(state_file=str(path))
    with pytest.raises(BundleError, match="exactly one of usd_per_hour and state_file"):
        Budget()


def test_http_route_health_and_bad_requests(routed) -> None:
    import http.client
    import json
    import threading

    from serving.http import make_server

    _, _, router = routed
    server = make_server(router, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:

        def call(method: str, path: str, body: bytes | None = None) -> tuple[int, dict]:
            conn = http.client.HTTPConnection("127.0.0.1", server.server_port, timeout=10)
            conn.request(method, path, body=body, headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            return resp.status, json.loads(resp.read())

        status, body = call(
            "POST", "/route", json.dumps({"request_id": "x1", "prompt": "Translate 'good morning' to French."}).encode()
        )
        assert status == 200 and body["request_id"] == "x1" and body["model"] in router.models
        assert call("GET", "/health")[1]["models"] == list(router.models)
        assert call("POST", "/route", b"{nope")[0] == 400
        assert call("POST", "/route", json.dumps({"prompt": 7}).encode()) == (
            400,
            {"error": "prompt: expected text or null, got int"},
        )
        assert call("POST", "/nowhere", b"{}")[0] == 404
        assert call("POST", "/route", b"x" * ((1 << 20) + 1))[0] == 413
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("which", ["routed", "routed_per_model"])
def test_fast_single_row_path_and_batches_give_the_booster_numbers(which, request, sample_traces) -> None:
    from serving.router import RowPredictor

    router = request.getfixturevalue(which)
    router = router[2] if isinstance(router, tuple) else router
    assert router.heads == ("shared" if which == "routed" else "per_model")
    prompts = list(sample_traces["prompt"].dropna().drop_duplicates()[:64]) + EDGE_PROMPTS
    requests = [
        RouteRequest(
            prompt=p,
            task="koala" if i % 2 else None,
            input_tokens=None if i % 3 else 10 * i,
            timestamp=pd.Timestamp("2025-01-01T05:00Z").to_pydatetime(),
        )
        for i, p in enumerate(prompts)
    ]
    for r in requests[:10]:  # the fast C path against Booster.predict, row by row, NaN included
        _, v = router.request_vector(r)
        Xq, Xc = router.quality_features(v), router.cost_features(v)
        for i, booster in enumerate(router.q_heads):
            assert RowPredictor(booster)(Xq[i]) == booster.predict(Xq[i : i + 1])[0]
        np.testing.assert_array_equal([RowPredictor(router.c_p50)(row) for row in Xc], router.c_p50.predict(Xc))
    quality, cost = router.predict_many(requests)
    _, vectors = router.request_vectors(requests)  # the batch's trees (kernel forests) are LightGBM's bits
    Xq, Xc = router.q_layout.fill_many(vectors), router.c_layout.fill_many(vectors)
    reference = LightGBMTrees(router.q_heads, router.heads == "shared", router.c_p50)
    for got, want in zip(router.trees.many(Xq, Xc), reference.many(Xq, Xc), strict=True):
        np.testing.assert_array_equal(got, want)
    if isinstance(router.trees, CompiledTrees) and shared_library(forest.KERNEL).library is not None:
        assert router.trees.cost_forest is not None  # the kernel really walked the cost rows above
        assert router.trees.cost_blocks == 1 and reference.cost_blocks is None  # so predict_many filled one block
        one = router.c_layout.fill_many(vectors, router.trees.cost_blocks)
        np.testing.assert_array_equal(router.trees.many(Xq, one)[1], reference.many(Xq, Xc)[1])
    for j, r in enumerate(requests):
        q, c = router.predict(r)
        np.testing.assert_allclose(quality[j], q, rtol=1e-12, equal_nan=True)
        np.testing.assert_allclose(cost[j], c, rtol=1e-12)
    assert len(requests) >= max(BATCH_MIN.values())  # every batch feature path, then per-request ones stacked
    assert router.route_many(requests, now=5.0) == [router.route(r, now=5.0) for r in requests]
    assert router.route_many(requests[:5], now=5.0) == [router.route(r, now=5.0) for r in requests[:5]]
    assert router.route_many([]) == []
    for model in router.models[:2]:  # two circuits open: batches skip them as single requests do
        for _ in range(router.breaker.min_requests):
            router.observe(model, ok=False, now=4.0)
    decisions = router.route_many(requests, now=5.0)
    assert decisions == [router.route(r, now=5.0) for r in requests]
    assert all(d.model not in router.models[:2] and "skipped (circuit open)" in d.reason for d in decisions)


def test_ascii_shortcut_counts_equal_the_regex_counts() -> None:
    import random

    rng = random.Random(7)
    alphabet = "abcXYZ019 \t\n{}[]<>=;_\\|&^~`$#()+*-./?:'\"!@%,"
    prompts = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 300))) for _ in range(300)]
    prompts += ["Solve 2x + 3 = 7.\n- first\n1) second\nUser: hi\n```py\nx = {'a': 1}\n```", "A" * 5000]
    batch = prompt_features(pd.Series(prompts, dtype=object)).to_numpy()
    np.testing.assert_array_equal(batch, np.vstack([prompt_vector(p) for p in prompts]).astype(np.float32))


def test_router_loads_with_a_budget_file_override(routed, tmp_path: Path) -> None:
    import datetime as dt

    from serving.budget import BudgetState, write_state

    tmp, _, router = routed
    now = dt.datetime.now(dt.UTC)
    path = write_state(
        tmp_path / "budget.json",
        BudgetState("all", now - dt.timedelta(days=1), now + dt.timedelta(hours=10), 100.0, 50.0, now),
    )
    paced = Router.load(tmp / "bundle", budget_file=path)
    decision = paced.route(RouteRequest(prompt="Write a haiku about the sea."))
    assert paced.policy.name == "budget" and decision.policy == "budget" and "$50.00 left of all" in decision.reason
    assert paced.fallback == router.fallback and paced.policy.budget == pytest.approx(5.0, rel=1e-3)


def test_requests_take_rfc3339_timestamps_only() -> None:
    import datetime as dt

    ok = RouteRequest.from_dict({"timestamp": "2025-01-01t05:00:00.5z"}).timestamp
    assert ok == dt.datetime(2025, 1, 1, 5, 0, 0, 500000, tzinfo=dt.UTC)
    assert RouteRequest.from_dict({"timestamp": "2025-01-01 05:00:00+05:30"}).timestamp.hour == 23
    assert RouteRequest.from_dict({"timestamp": "2025-01-01T05:00:00"}).timestamp.tzinfo is dt.UTC  # no offset = UTC
    assert RouteRequest.from_dict({"timestamp": None}).timestamp is None  # null = now
    for bad in [
        0,
        False,
        [],
        {},
        "",
        "2025-06-30",
        "20250101T050000",
        "2025-W01-1",
        "0001-01-01T00:30:00+01:00",
        "2025-01-01T23:59:60Z",
    ]:
        with pytest.raises(ValueError, match="^timestamp: "):
            RouteRequest.from_dict({"timestamp": bad})


def test_policies_never_pick_an_unavailable_or_unpredicted_model() -> None:
    from serving.router import Budget, CircuitBreaker

    models = ("a", "b", "c")
    quality = np.array([-np.inf, np.nan, np.nan])  # a: circuit open; b, c: no quality head
    cost = np.array([np.inf, 0.02, 0.01])
    for policy in (Threshold(0.5), Tradeoff(0.1), Tradeoff(0.0), Budget(usd_per_hour=1.0)):
        i, reason, code = policy.choose(models, quality, cost)
        assert (i, code) == (2, DecisionCode.BELOW_TARGET) and ("cheapest" in reason or policy.name == "budget")
    assert Threshold(0.5).choose(models, np.array([-np.inf, 0.3, np.nan]), cost)[0] == 1  # best prediction that exists
    with pytest.raises(BundleError, match="window >= 1"):
        CircuitBreaker(window=0)


@pytest.mark.parametrize("policy", [Threshold(0.5), Threshold(0.9), Tradeoff(0.1), Tradeoff(0.0), Tradeoff(1e4)])
def test_vectorised_choices_equal_choose_row_by_row(policy) -> None:
    """Stateless policies choose a whole batch in one numpy pass (the router's batch path): the same index,
    reason and code as `choose` row by row, on rows mixing ties, NaN (no prediction), -inf / +inf (a circuit
    open) and rows where every model reaching the target costs +inf."""
    from serving.router import Policy

    rng = np.random.default_rng(7)
    q_pool = np.array([np.nan, -np.inf, 0.2, 0.5, 0.5, 0.9, 0.95, 1.0])
    c_pool = np.array([np.nan, np.inf, 0.001, 0.001, 0.002, 0.01, 0.1])
    quality, cost = q_pool[rng.integers(0, 8, (4000, 5))], c_pool[rng.integers(0, 7, (4000, 5))]
    quality[:50], cost[:50] = np.nan, np.inf  # nothing predicted, nothing available
    quality[50:100, :2], cost[50:100, :] = 0.95, np.inf  # models reach the target but cost +inf
    quality[100:150] = np.linspace(0.1, 0.9, 5)  # one row repeated: ties across rows, none within
    models = ("a", "b", "c", "d", "e")
    fast = policy.choose_many(models, quality, cost, 0.0)
    slow = Policy.choose_many(policy, models, quality, cost, 0.0)
    assert fast.index.tolist() == slow.index.tolist()
    assert fast.reasons == slow.reasons and fast.codes == slow.codes
    assert {c.value for c in slow.codes} == {"ok", "below_target"}


def test_conformance_file_is_ascii_json_even_for_lone_surrogates() -> None:
    import json

    from serving.conformance import dumps

    data = dumps([{"request": {"prompt": "a\ud800b é"}}])
    assert data.isascii() and json.loads(data)["request"]["prompt"] == "a\ud800b é"


def test_offline_replay_of_two_bundles_is_paired_and_scored_with_logged_answers(
    routed, routed_per_model, sample_traces, tmp_path: Path
) -> None:
    from abtest.gate import GateCode, GateParams, decide
    from evaluation.replay import replay, write_experiment
    from traces.load import load_traces

    _, _, shared = routed
    ids = sorted(sample_traces["prompt_id"].dropna().astype(str).unique())[:120]
    result = replay({"champion": shared, "challenger": routed_per_model}, sample_traces, ids)
    exp = result.experiment
    assert result.prompts == 120 and set(exp["variant"]) == {"champion", "challenger"}
    a, b = (exp[exp["variant"] == v].set_index("prompt_id") for v in ("champion", "challenger"))
    assert sorted(a.index) == sorted(b.index) and len(a) == 120 - max(result.dropped.values()) >= 100
    logged = (
        sample_traces.assign(prompt_id=sample_traces["prompt_id"].astype(str))
        .groupby(["prompt_id", "model"])["quality"]
        .mean()
    )
    for pid, row in a.head(20).iterrows():  # every score is the logged answer of the chosen model
        assert row["quality"] == pytest.approx(logged[(pid, row["model"])])
    assert sum(result.chosen["champion"].values()) == 120
    # through the file the gate reads: paired design, paired tests
    path = write_experiment(result, tmp_path / "replay.jsonl")
    frame = load_traces([path], ROOT / "data/prices.yaml")
    decision = decide(frame, GateParams(min_rows_per_arm=50, min_pairs=50))
    assert decision.stats["design"]["paired"] is True
    assert decision.stats["quality"]["name"] == "paired_non_inferiority" and decision.stats["quality"]["n_a"] == len(a)
    assert decision.stats["cost"]["name"].startswith("paired_") and decision.arms["champion"]["rows"] == len(a)
    assert (
        decision.stats["errors"]["code"] == "skipped" and "errors" not in decision.stats["holm"]["tests"]
    )  # not observed offline
    from abtest.gate import report

    md, _ = report(decision, tmp_path / "report", GateParams(min_rows_per_arm=50, min_pairs=50))
    assert "| errors | not_observed_offline | skipped |" in md.read_text()
    same = replay({"champion": shared, "challenger": shared}, sample_traces, ids[:60]).experiment
    identical = decide(same, GateParams(min_rows_per_arm=50, min_pairs=50))  # A/A replay: no difference at all to test
    assert identical.reasons == (GateCode.NO_DIFFERENCE,) and identical.stats["design"]["paired"]


def test_http_batches_and_a_bounded_load_from_a_second_process(routed) -> None:
    """Batched POSTs answer in order (bad items in place); under load from wrk against `beast serve` in
    another process, malformed POSTs get 400 and nothing gets 5xx or a dropped connection. Skips without
    wrk unless BEAST_REQUIRE_WRK=1 (CI installs it: `apt-get install wrk`)."""
    import json
    import os
    import shutil

    from benchmarks.serve import main
    from serving.http import batch_json

    if shutil.which("wrk") is None:
        if os.environ.get("BEAST_REQUIRE_WRK") == "1":
            raise RuntimeError("BEAST_REQUIRE_WRK=1 but wrk is not installed: apt-get install wrk")
        pytest.skip("wrk not found: apt-get install wrk (BEAST_REQUIRE_WRK=1 makes this a failure)")

    tmp, _, router = routed
    answers = batch_json(router, [{"prompt": "hi", "request_id": "a"}, {"prompt": 3}, "x", {"prompt": "bye"}])
    assert (
        answers[0]["request_id"] == "a"
        and answers[0]["model"] in router.models
        and answers[3]["model"] in router.models
    )
    assert answers[1] == {"index": 1, "error": "prompt: expected text or null, got int"} and answers[2]["index"] == 2
    assert json.dumps(answers)  # plain JSON
    for batch in (1, 16):  # single POSTs against a --coalesce 1 baseline (its clean run), then JSON-array batches
        result = main(
            tmp / "bundle",
            seconds=2.0,
            concurrency=3,
            batch=batch,
            malformed=0.2,
            baseline_coalesce=1 if batch == 1 else None,
        )
        assert result.server_errors == 0 and result.statuses.get("400", 0) > 0 and result.decisions > 20
        assert set(result.statuses) <= {"200", "400"} and result.p99_ms < 1000
        assert (result.baseline is not None and result.baseline.statuses.keys() == {"200"}) == (batch == 1)


def test_router_load_honours_the_bundle_key_from_the_environment(
    routed, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    from serving.bundle import KEY_ENV, sign

    copy = tmp_path / "bundle"
    shutil.copytree(routed[0] / "bundle", copy)
    monkeypatch.setenv(KEY_ENV, "router-side-key-0123456789")
    with pytest.raises(BundleError, match="signature.json: missing"):
        Router.load(copy)
    sign(copy, b"router-side-key-0123456789")
    assert Router.load(copy).models == routed[2].models
    with pytest.raises(BundleError, match="signature mismatch"):
        Router.load(copy, key=b"a different key of 16+ bytes")


def test_a_feature_layout_copies_request_slots_run_by_run() -> None:
    """Columns c0 (candidate), r0, r2, r3, c1, r1: the request slots go in as runs [r0] and [r2, r3] and [r1],
    the candidate columns from the template, one row per candidate; a batch is candidate-major."""
    names = ["c0", "r0", "r2", "r3", "c1", "r1"]
    layout = FeatureLayout.make(
        names, {"c0": np.array([1.0, 2.0]), "c1": np.array([3.0, 4.0])}, ["r0", "r1", "r2", "r3"], 2
    )
    assert layout.runs == ((slice(1, 2), slice(0, 1)), (slice(2, 4), slice(2, 4)), (slice(5, 6), slice(1, 2)))
    vector = np.array([10.0, 11.0, 12.0, 13.0])
    want = np.array([[1, 10, 12, 13, 3, 11], [2, 10, 12, 13, 4, 11]], dtype=float)
    np.testing.assert_array_equal(layout.fill(np.empty((2, 6)), vector), want)
    batch = layout.fill_many(np.vstack([vector, vector + 100]))
    assert layout.blocks == 2 and batch.shape == (2, 2, 6) and batch.flags.c_contiguous
    np.testing.assert_array_equal(batch[:, 0], want)
    np.testing.assert_array_equal(layout.fill_many(np.vstack([vector, vector + 100]), 1), batch[:1])  # first only
    np.testing.assert_array_equal(batch[:, 1], want + np.array([0, 100, 100, 100, 0, 100]))


def test_a_layout_without_candidate_columns_fills_one_block_for_every_candidate() -> None:
    """The quality heads' layout (request columns only, one unused NaN column): a batch is one block of
    n_requests rows that every head reads, equal to each candidate's `fill` row; a candidate column whose
    values are all the same is one block too, and one that differs is not."""
    layout = FeatureLayout.make(["r1", "unused", "r0"], {}, ["r0", "r1"], 3)
    vectors = np.array([[1.0, 2.0], [3.0, 4.0]])
    batch = layout.fill_many(vectors)
    assert layout.blocks == 1 and batch.shape == (1, 2, 3) and batch.flags.c_contiguous
    for r, vector in enumerate(vectors):
        rows = layout.fill(np.empty((3, 3)), vector)
        for i in range(3):
            np.testing.assert_array_equal(batch[0, r], rows[i])
    assert FeatureLayout.make(["c", "r0"], {"c": np.array([5.0, 5.0])}, ["r0"], 2).blocks == 1
    assert FeatureLayout.make(["c", "r0"], {"c": np.array([5.0, 6.0])}, ["r0"], 2).blocks == 2


def test_a_batch_forest_that_disagrees_is_caught_at_load(routed_per_model, monkeypatch: pytest.MonkeyPatch) -> None:
    """The load-time check probes rows as a batch lays them out, so both kernel forests (quality heads on their one
    block, the cost booster pruned per candidate) are compared with LightGBM before use: one off by 1e-9 and the
    router routes with LightGBM, saying why."""
    if shared_library(forest.KERNEL).library is None:
        pytest.skip("no C compiler: the batch kernel is not built")
    router = routed_per_model
    trees = Router.load(router.bundle.root).trees
    assert isinstance(trees, CompiledTrees) and trees.forest is not None and trees.cost_forest is not None
    real = forest.Forest.predict
    for what, width in (("quality", len(router.q_names)), ("cost", len(router.c_names))):  # skew one forest
        monkeypatch.setattr(
            forest.Forest, "predict", lambda self, X, w=width: real(self, X) + (1e-9 if self.n_features == w else 0.0)
        )
        with pytest.warns(RuntimeWarning, match=f"routing with LightGBM: compiled {what} booster disagrees"):
            assert isinstance(Router.load(router.bundle.root).trees, LightGBMTrees)
