"""Budgets (monitoring/budget.py): config validation, periods, forecasts on synthetic series with known answers,
status -> remaining-budget files the router reads, and the backtest on the Azure traces."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import ROOT

from core.errors import BeastError
from monitoring.budget import (
    BudgetParams,
    BudgetSpec,
    backtest_main,
    budget_status,
    forecast_spend,
    load_budgets,
    parse_budgets,
    period_bounds,
)
from serving.budget import read_state
from serving.router import Budget
from traces.ledger import summarise

AZURE = [ROOT / "data/sample/azure_conv.csv.gz", ROOT / "data/sample/azure_code.csv.gz"]
T0 = pd.Timestamp("2026-01-05T00:00:00Z")  # a Monday


def test_committed_config_parses() -> None:
    cfg = load_budgets(ROOT / "data/budgets.yaml")
    assert {b.period for b in cfg.budgets} <= {"day", "week", "month"} and cfg.prices is not None
    assert set(cfg.prices.models) == {"azure/conv", "azure/code"}


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({}, "expected a top-level `budgets:` list"),
        ({"budgets": [{"period": "year", "usd": 1}]}, "budgets[0].period: expected one of day, week, month"),
        ({"budgets": [{"period": "day"}]}, "budgets[0].usd: expected a number > 0"),
        ({"budgets": [{"period": "day", "usd": 1, "alerts": []}]}, "budgets[0].alerts"),
        ({"budgets": [{"period": "day", "usd": 1, "limit": 2}]}, "unknown key(s) limit"),
        ({"budgets": [{"period": "day", "usd": 1}, {"period": "day", "usd": 2}]}, "names must be unique"),
        (
            {"budgets": [{"period": "day", "usd": 1}], "prices": {"models": {"x": {"input": 1}}}},
            "prices: models.x: missing `output`",
        ),
    ],
)
def test_config_errors_name_the_field(doc: dict, message: str) -> None:
    with pytest.raises(BeastError, match=None) as info:
        parse_budgets(doc, "b.yaml")
    assert message in str(info.value) and str(info.value).startswith("b.yaml")


@pytest.mark.parametrize(
    ("period", "at", "start", "end"),
    [
        ("day", "2026-11-26T09:30:00Z", "2026-11-26T00:00:00Z", "2026-11-27T00:00:00Z"),
        ("week", "2026-11-26T09:30:00Z", "2026-11-23T00:00:00Z", "2026-11-30T00:00:00Z"),  # Thursday -> Monday
        ("month", "2026-12-31T23:59:59Z", "2026-12-01T00:00:00Z", "2027-01-01T00:00:00Z"),
    ],
)
def test_period_bounds(period: str, at: str, start: str, end: str) -> None:
    assert period_bounds(period, pd.Timestamp(at)) == (pd.Timestamp(start), pd.Timestamp(end))


def _series(times: np.ndarray, cost: float | np.ndarray) -> tuple[pd.Series, np.ndarray]:
    ts = pd.Series(T0 + pd.to_timedelta(times, unit="h"))
    return ts, np.broadcast_to(np.asarray(cost, dtype=float), len(ts)).copy()


@pytest.mark.parametrize("method", ["bootstrap", "poisson"])
def test_constant_rate_forecast_is_exact(method: str) -> None:
    """One $1 request a minute for 4 hours: the next 10 hours cost $600, and a steady series has no spread
    in its 5-minute blocks (5 requests each), so the bootstrap interval collapses onto the answer."""
    ts, c = _series(np.arange(240) / 60 + 1 / 120, 1.0)
    fc = forecast_spend(
        ts, c, T0 + pd.Timedelta(hours=4), 10.0, T0, replace(BudgetParams(), method=method, block_minutes=5.0)
    )
    assert fc.mean_usd == pytest.approx(600.0) and fc.usd_per_hour == pytest.approx(60.0) and fc.history_requests == 240
    assert fc.low_usd <= 600.0 <= fc.high_usd
    if method == "bootstrap":
        assert (fc.low_usd, fc.high_usd) == (pytest.approx(600.0), pytest.approx(600.0))


def test_known_linear_trend_is_extrapolated_flat() -> None:
    """Arrival rate rising linearly, 60 -> 180 requests/h over 6 hours of history, $0.01 each. The forecast
    assumes the recent rate holds: the history's mean rate (120/h) x 3 h = $3.60, below the truth
    (rate 180 -> 240 over the next 3 h: 630 requests, $6.30). Known answer of a known limitation."""
    rate = lambda t: 60 + 20 * t  # noqa: E731 - requests per hour at hour t
    cum = lambda t: 60 * t + 10 * t**2  # noqa: E731
    n = int(cum(9))
    times = np.array(
        [(-60 + np.sqrt(3600 + 40 * (i + 0.5))) / 20 for i in range(n)]
    )  # inverse of cum: deterministic arrivals
    assert rate(0) == 60 and cum(6) == 720
    ts, c = _series(times, 0.01)
    at = T0 + pd.Timedelta(hours=6)
    fc = forecast_spend(ts, c, at, 3.0, T0, BudgetParams())
    assert fc.mean_usd == pytest.approx(720 / 6 * 3 * 0.01, rel=1e-3)
    truth = c[(times >= 6)].sum()
    assert truth == pytest.approx(6.30, abs=0.01) and fc.mean_usd < truth


def test_poisson_interval_coverage_on_simulated_poisson_traffic() -> None:
    """Seeded: 200 simulated days of Poisson arrivals (100/h) with lognormal costs; the compound-Poisson 80%
    interval for the next 6 hours, from the previous 6, covers the truth about 80% of the time."""
    rng = np.random.default_rng(0)
    params = replace(BudgetParams(), method="poisson", lookback_hours=6)
    covered = []
    for _ in range(200):
        n = rng.poisson(1200)
        times = np.sort(rng.uniform(0, 12, n))
        ts, c = _series(times, rng.lognormal(-5, 1, n))
        fc = forecast_spend(ts, c, T0 + pd.Timedelta(hours=6), 6.0, T0, params)
        truth = c[times >= 6].sum()
        covered.append(fc.low_usd <= truth <= fc.high_usd)
    assert 0.7 <= np.mean(covered) <= 0.9


def _rows(times_h: list[float], costs: list[float], tenants: list[str]) -> pd.DataFrame:
    ts = T0 + pd.to_timedelta(times_h, unit="h")
    return pd.DataFrame(
        {
            "timestamp": ts,
            "tenant": tenants,
            "model": "m",
            "day": ts.strftime("%Y-%m-%d"),
            "cost_usd": costs,
            "cost_source": ["price_table" if not np.isnan(x) else "cost_unknown" for x in costs],
        }
    )


def test_budget_status_known_answers() -> None:
    rows = _rows([1, 2, 3, 4, 5, 30], [10.0, 20.0, np.nan, 30.0, 5.0, 99.0], ["a", "a", "a", "b", "a", "a"])
    spec = BudgetSpec("a-day", "a", "day", 40.0, (50.0, 80.0, 100.0))
    st = budget_status(rows, spec, T0 + pd.Timedelta(hours=6), BudgetParams())
    assert (
        st.spent_usd == 35.0 and st.remaining_usd == 5.0 and st.unknown_requests == 1
    )  # tenant b and later rows excluded
    assert st.alert == 80.0 and st.forecast_alert == 100.0  # 87.5% spent; the rest of the day will pass 100%
    assert (st.period_start, st.period_end) == ("2026-01-05T00:00:00Z", "2026-01-06T00:00:00Z")
    assert st.forecast_low_usd <= st.forecast_end_usd <= st.forecast_high_usd and st.forecast_end_usd > st.spent_usd
    state = st.to_state()
    assert (state.scope, state.budget_usd, state.spent_usd, state.remaining_usd) == ("a", 40.0, 35.0, 5.0)


def test_status_command_replays_an_ended_period_without_touching_live_state(tmp_path: Path) -> None:
    """The README example (`--at` in Nov 2023): every budget period containing --at is over, so the status is a
    read-only replay: printed and in status.json, but no budget-state file is written or overwritten."""
    from serving.budget import BudgetState, write_state

    at = "2023-11-16T18:45:00Z"
    live = tmp_path / "all-daily.budget-state.json"  # what a live `status` wrote earlier: must survive
    today = pd.Timestamp.now(tz="UTC").normalize().to_pydatetime()
    write_state(live, BudgetState("all", today, today + pd.Timedelta(days=1), 200.0, 12.0, today))
    before = live.read_bytes()
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "beast.cli",
            "monitor",
            "budget",
            "status",
            "--at",
            at,
            "--traces",
            *map(str, AZURE),
            "--out",
            str(tmp_path),
            "--config",
            str(ROOT / "data/budgets.yaml"),
            "--params",
            str(ROOT / "params.yaml"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert "all-daily (all) | day 2023-11-16 (ended)" in out.stdout and "azure/conv" in out.stdout
    assert "Ledger by model (requests before --at 2023-11-16T18:45:00Z)" in out.stdout
    assert (
        "budget all-daily: its day period 2023-11-16T00:00:00Z .. 2023-11-17T00:00:00Z ended before now" in out.stderr
    )
    assert "not written" in out.stderr and "0 budget-state file(s)" in out.stderr
    assert live.read_bytes() == before and sorted(p.name for p in tmp_path.glob("*.budget-state.json")) == [live.name]
    doc = json.loads((tmp_path / "status.json").read_text())
    daily = next(b for b in doc["budgets"] if b["budget"]["name"] == "all-daily")
    assert all(b["period_ended"] for b in doc["budgets"])
    assert doc["ledger"]["unknown_requests"] == 0 and doc["ledger"]["requests"] == 14854  # rows before 18:45 UTC
    assert daily["spent_usd"] == pytest.approx(doc["ledger"]["cost_usd"]) and daily["spent_usd"] == pytest.approx(
        14.71, abs=0.01
    )


def test_status_writes_files_the_router_reads_while_the_period_is_open(tmp_path: Path, capsys) -> None:
    """With the wall clock inside the period (here: `now` = --at), the budget-state files are written and the
    router paces what is left over the hours left."""
    from monitoring.budget import status_main

    at = "2023-11-16T18:45:00Z"
    statuses = status_main(ROOT / "params.yaml", at, AZURE, ROOT / "data/budgets.yaml", tmp_path, now=pd.Timestamp(at))
    daily = next(s for s in statuses if s.budget.name == "all-daily")
    state = read_state(tmp_path / "all-daily.budget-state.json")
    assert (state.scope, state.budget_usd, state.spent_usd) == ("all", 200.0, pytest.approx(daily.spent_usd))
    assert state.period_end.isoformat() == "2023-11-17T00:00:00+00:00"
    now = pd.Timestamp(at).timestamp()
    policy = Budget(state_file=str(tmp_path / "all-daily.budget-state.json"), clock=lambda: now)
    assert policy.budget == pytest.approx((200.0 - daily.spent_usd) / 5.25)  # USD per hour left in the day
    for name in ("all-monthly", "tenant-a-weekly"):
        assert read_state(tmp_path / f"{name}.budget-state.json").budget_usd > 0
    assert "3 budget-state file(s)" in capsys.readouterr().err


def test_the_router_never_paces_on_an_ended_period_silently(tmp_path: Path) -> None:
    """A state whose period is over (the README's replay, before this fix, left one in data/budget): the
    router used to divide $185 by the one minute allowed (~$11,000/h). Now: rate 0 (cheapest models), said
    in every decision's reason; a current state restores pacing."""
    import datetime as dt

    from serving.budget import BudgetState, write_state

    path = tmp_path / "all-daily.budget-state.json"
    start = dt.datetime(2023, 11, 16, tzinfo=dt.UTC)
    write_state(path, BudgetState("all", start, start + dt.timedelta(days=1), 200.0, 14.71, start))
    clock = [(start + dt.timedelta(days=800)).timestamp()]
    policy = Budget(state_file=str(path), refresh_s=0.0, clock=lambda: clock[0])
    assert policy.budget == 0.0
    _, reason, _ = policy.choose(("cheap", "dear"), np.array([0.5, 0.9]), np.array([0.001, 0.01]))
    assert "budget period ended 2023-11-17T00:00:00Z: not pacing on it" in reason and "$0/h" in reason
    policy.record(0.001, clock[0])
    assert policy.lam > 0.1  # pushed toward the cheapest models, never toward the dearest
    now = dt.datetime.fromtimestamp(clock[0], dt.UTC)
    write_state(path, BudgetState("all", now - dt.timedelta(hours=1), now + dt.timedelta(hours=9), 90.0, 0.0, now))
    clock[0] += 1
    _, reason, _ = policy.choose(("cheap", "dear"), np.array([0.5, 0.9]), np.array([0.001, 0.01]))
    assert policy.budget == pytest.approx(10.0, rel=1e-3) and "ended" not in reason  # $90 over 9 h


def test_status_without_at_says_up_to_now() -> None:
    from monitoring.budget import format_status

    rows = _rows([1, 2], [10.0, 20.0], ["a", "a"])
    spec = BudgetSpec("a-day", "a", "day", 40.0)
    st = budget_status(rows, spec, T0 + pd.Timedelta(hours=6), BudgetParams())
    ledger = summarise(rows)
    text = format_status([st], ledger, None, T0 + pd.Timedelta(hours=6))
    assert "Ledger by model (requests up to now)" in text and "--at" not in text and "(ended)" not in text
    assert "(ended)" in format_status([st], ledger, None, T0 + pd.Timedelta(days=2))


def test_backtest_on_azure_traces(tmp_path: Path) -> None:
    """Measured (module docstring): bootstrap 80% interval coverage 0.50 over 18 cut points (poisson 0.00); the
    first-half -> second-half point forecast overshoots (+18.9% conv, +62.7% code): traffic falls after mid-trace."""
    report = backtest_main(
        params_file=ROOT / "params.yaml", traces=AZURE, config=ROOT / "data/budgets.yaml", out=tmp_path
    )
    boot = report.summary["bootstrap"]
    assert boot["points"] == 18 and boot["coverage"] >= 0.45  # below the nominal 0.8: see the docstring
    assert report.summary["poisson"]["coverage"] < boot["coverage"]  # the Poisson interval ignores burstiness and drift
    first = [p for p in report.points if p.method == "bootstrap" and p.cut_fraction == 0.5]
    assert len(first) == 2 and all(0 < p.error < 1.0 for p in first)
    assert json.loads((tmp_path / "backtest.json").read_text())["summary"]["bootstrap"]["coverage"] == boot["coverage"]
