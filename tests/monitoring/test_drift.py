"""Drift monitor: PSI / KS known answers, the checks' codes, a seeded simulation of the retrain trigger, main's outputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import ROOT
from scipy import stats as sps

from monitoring.drift import (
    RETRAIN_RECOMMENDED,
    CheckCode,
    MonitorParams,
    compare,
    drift_report,
    grouped_report,
    ks,
    main,
    profile,
    psi,
    split_window,
    split_window_by,
)
from traces.ingest import IngestParams, ingest
from traces.store import read_traces
from traces.synth import SynthParams, synth_frame, write_trace


@pytest.mark.parametrize("seed", [0, 1])
def test_psi_of_identical_samples_is_zero(seed: int) -> None:
    x = np.random.default_rng(seed).lognormal(size=1000)
    assert psi(x, x) == 0.0
    assert psi(x, np.random.default_rng(seed).permutation(x)) == 0.0


def test_psi_two_bin_known_answer() -> None:
    # 2 bins cut at the reference median 0.5: reference shares (1/2, 1/2), recent (1/4, 3/4)
    expected = (0.25 - 0.5) * np.log(0.25 / 0.5) + (0.75 - 0.5) * np.log(0.75 / 0.5)
    assert psi(np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1]), bins=2) == pytest.approx(expected, abs=1e-12)
    assert expected == pytest.approx(0.274653, abs=1e-6)


def test_psi_empty_bin_uses_epsilon_and_is_invariant_to_monotone_transforms() -> None:
    # every recent value in the upper bin: the empty lower bin counts as epsilon
    eps = 1e-4
    expected = (eps - 0.5) * np.log(eps / 0.5) + (1 - 0.5) * np.log(1 / 0.5)
    assert psi(np.array([0, 0, 1, 1]), np.array([1, 1, 1]), bins=2, epsilon=eps) == pytest.approx(expected)
    rng = np.random.default_rng(3)
    a, b = rng.lognormal(size=2000), rng.lognormal(0.3, size=500)
    assert psi(np.log(a), np.log(b)) == pytest.approx(psi(a, b))


@pytest.mark.parametrize("shift", [0.0, 0.2, 1.0])
def test_ks_matches_scipy(shift: float) -> None:
    rng = np.random.default_rng(7)
    a, b = rng.normal(size=700), rng.normal(shift, size=400)
    ref = sps.ks_2samp(a, b)
    assert ks(a, b) == (pytest.approx(ref.statistic), pytest.approx(ref.pvalue))


def _traces(n: int, seed: int, **cols) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({
        "request_id": [f"{seed}-{i}" for i in range(n)],
        "timestamp": pd.Timestamp("2024-03-01", tz="UTC") + pd.to_timedelta(rng.integers(0, 86_400, n), unit="s"),
        "model": rng.choice(["a", "b"], n), "status": np.where(rng.random(n) < 0.02, "error", "ok"),
        "input_tokens": rng.lognormal(6, 1, n).round(), "output_tokens": rng.lognormal(5, 1, n).round(),
        "latency_ms": rng.lognormal(7, 0.5, n), "cost_usd": rng.lognormal(-7, 0.5, n), "prompt": None,
    })  # fmt: skip
    for k, v in cols.items():
        frame[k] = v(frame) if callable(v) else v
    return frame


def test_codes_missing_too_few_and_error_and_cost_shifts() -> None:
    params = MonitorParams(features=("input_tokens", "latency_ms", "chars"), min_rows=200)
    ref = _traces(3000, 0)
    rec = _traces(150, 1)
    r = drift_report(ref, rec, params)
    codes = {f.feature: f.code for f in r.features}
    assert codes == {
        "input_tokens": CheckCode.TOO_FEW,
        "latency_ms": CheckCode.TOO_FEW,
        "chars": CheckCode.MISSING,
    }  # no prompts: missing
    assert not r.retrain and r.reasons == ()
    # errors x4 and costs x1.6 on model "a" only: per-model checks catch it
    rec = _traces(2000, 2, status=lambda f: np.where((f["model"] == "a") & (np.random.default_rng(9).random(len(f)) < 0.08), "error", f["status"]),
                  cost_usd=lambda f: np.where(f["model"] == "a", f["cost_usd"] * 1.6, f["cost_usd"]))  # fmt: skip
    r = drift_report(ref, rec, params)
    by = {(s.check, s.model): s for s in r.shifts}
    assert by[("error_rate", "a")].code is CheckCode.DRIFT and by[("error_rate", "b")].code is CheckCode.OK
    assert by[("cost", "a")].code is CheckCode.DRIFT and by[("cost", "a")].effect == pytest.approx(1.6, rel=0.1)
    assert by[("cost", "b")].code is CheckCode.OK
    assert (
        r.retrain
        and any(x.startswith("error rate (a)") for x in r.reasons)
        and any(x.startswith("cost per request (a)") for x in r.reasons)
    )
    # a model the reference never saw is a reason on its own
    r = drift_report(ref, _traces(400, 3, model="c"), params)
    assert (
        by_code(r, "error_rate", "c") is CheckCode.MISSING
        and "new model c: 400 recent rows, none in the reference" in r.reasons
    )


def by_code(report, check: str, model: str) -> CheckCode:
    return next(s.code for s in report.shifts if s.check == check and s.model == model)


def test_split_window_is_relative_to_the_newest_row() -> None:
    t = _traces(100, 0, timestamp=pd.date_range("2024-03-01", periods=100, freq="h", tz="UTC"))
    ref, rec = split_window(t, 24)
    assert (len(ref), len(rec)) == (76, 24) and ref["timestamp"].max() < rec["timestamp"].min()


# ------------------------------------------------------------------ seeded simulation of the retrain trigger


@pytest.fixture(scope="module")
def pool(tmp_path_factory):
    """30,000 synthetic traces (errors, latency, 14 models, costs from the price table) carrying real
    AlpacaEval prompts, ingested like production traffic; and the same rows with prompts 30% longer."""
    from traces.prices import load_prices

    tmp = tmp_path_factory.mktemp("drift")
    frame = synth_frame(SynthParams(rows=30_000, seed=3, mean_rps=0.25), load_prices(ROOT / "data" / "prices.yaml"))
    prompts = (
        pd.read_parquet(ROOT / "data" / "sample" / "alpaca_eval.parquet", columns=["prompt"])["prompt"]
        .dropna()
        .unique()
    )
    frame["prompt"] = np.random.default_rng(0).choice(prompts, size=len(frame))
    write_trace(frame, tmp / "pool.parquet")
    params = IngestParams(out=tmp / "traces", quarantine=tmp / "q", metrics=None, prices=ROOT / "data" / "prices.yaml")
    ingest([tmp / "pool.parquet"], params, load_prices(params.prices))
    traces = read_traces(params.out)
    longer = traces.copy()
    longer["prompt"] = [p + " " + p[: int(0.3 * len(p))] for p in traces["prompt"]]  # +30% characters
    longer["input_tokens"] = (traces["input_tokens"] * 1.3).round().astype("Int64")
    return traces, longer


def test_simulation_longer_prompts_trigger_and_resamples_do_not(pool) -> None:
    traces, longer = pool
    params = MonitorParams()
    base, shifted = profile(traces, params), profile(longer, params)
    n, false, detected = len(traces), 0, 0
    for seed in range(200):
        rng = np.random.default_rng(seed)
        ref, rec = rng.integers(0, n, 5000), rng.integers(0, n, 1000)  # i.i.d. draws: the null holds exactly
        false += compare(base.take(ref), base.take(rec), params).retrain
        if seed < 50:
            detected += compare(base.take(ref), shifted.take(rec), params).retrain
    assert false / 200 <= 0.05  # measured: 0.030 (6 of 200)
    assert detected == 50  # +30% prompt length: every run retrains


def test_drift_report_on_trace_frames_names_the_length_features(pool) -> None:
    traces, longer = pool
    rows = np.random.default_rng(1).permutation(len(traces))  # disjoint random rows: same hours on both sides
    report = drift_report(traces.iloc[rows[:5000]], longer.iloc[rows[5000:6000]], MonitorParams())
    drifted = {f.feature for f in report.features if f.code is CheckCode.DRIFT}
    assert {"input_tokens", "chars", "words"} <= drifted and "latency_ms" not in drifted and "hour" not in drifted
    assert report.retrain and all(s.code is not CheckCode.DRIFT for s in report.shifts)
    assert json.loads(json.dumps(report.to_dict()))["features"][0]["code"] in {"ok", "drift"}


def test_main_writes_json_markdown_png(tmp_path: Path, pool, capsys) -> None:
    traces, longer = pool
    params_file = tmp_path / "params.yaml"
    params_file.write_text(
        f"monitor:\n  traces: {tmp_path / 'traces'}\n  out: {tmp_path / 'monitor'}\n  window_hours: 6\n  features: [input_tokens, chars, hour]\n"
    )
    # a dataset whose last 6 hours have prompts 30% longer
    ts = pd.to_datetime(traces["timestamp"], utc=True)
    last = (ts > ts.max() - pd.Timedelta(hours=6)).to_numpy()
    mixed = pd.concat([traces[~last], longer[last]], ignore_index=True)
    src = tmp_path / "mixed.parquet"
    write_trace(
        mixed.drop(columns=["extra", "cost_source", "row_hash", "source_file", "source_row", "ingest_id", "date"]), src
    )
    from traces.prices import load_prices

    ingest(
        [src],
        IngestParams(out=tmp_path / "traces", quarantine=tmp_path / "q", metrics=None),
        load_prices(ROOT / "data" / "prices.yaml"),
    )
    report = main(None, params_file)  # every model's last 6 h against its own older rows
    assert report.group_by == "model" and report.recent_rows + report.reference_rows == len(traces)
    compared = [g for g in report.groups if g.report is not None]
    assert len(compared) >= 10 and report.retrain
    chars = [{f.feature: f.code for f in g.report.features}["chars"] is CheckCode.DRIFT for g in compared]
    assert sum(chars) >= 0.8 * len(
        compared
    )  # measured: 10 of the 11 models compared (the window holds ~40 rows of the 11th)
    data = json.loads((tmp_path / "monitor" / "drift.json").read_text())
    first = next(g for g in data["groups"] if g["report"])
    assert data["retrain"] is True and [f["feature"] for f in first["report"]["features"]] == [
        "input_tokens",
        "chars",
        "hour",
    ]
    assert "| chars | drift |" in (tmp_path / "monitor" / "drift.md").read_text()
    assert (tmp_path / "monitor" / "psi.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    out = capsys.readouterr().out
    assert f"drift: {RETRAIN_RECOMMENDED}" in out and "RETRAIN" not in out.replace(RETRAIN_RECOMMENDED, "")
    assert "`beast monitor drift` only reports" in out
    # an explicit recent file (validated by a throwaway ingest): reference = every stored row not in it
    recent = tmp_path / "recent.parquet"
    write_trace(
        longer.iloc[::4].drop(  # ~540 rows per model: enough to compare each model with its stored rows
            columns=["extra", "cost_source", "row_hash", "source_file", "source_row", "ingest_id", "date"]
        ),
        recent,
    )
    other = tmp_path / "params2.yaml"
    other.write_text(
        f"monitor:\n  traces: {tmp_path / 'traces'}\n  out: {tmp_path / 'monitor2'}\n  features: [chars]\n  prices: {ROOT / 'data' / 'prices.yaml'}\n"
    )
    explicit = main(recent, other)
    assert (explicit.recent_rows, explicit.reference_rows) == (7500, len(traces) - 7500)
    assert explicit.retrain and explicit.window_hours is None
    compared = [g for g in explicit.groups if g.report is not None]  # >= 200 rows in the file: vs its stored rows
    assert len(compared) >= 10 and all(g.recent_rows >= 200 for g in compared)
    assert len(explicit.drifted()) >= 0.7 * len(compared)  # measured: 10 of the 13 compared (~400-540 rows each)
    assert all("not compared: too few rows" in g.note for g in explicit.groups if g.report is None)


# ------------------------------------------------------------------ per-model windows (the samples are several sources)


def test_committed_samples_right_after_ingest_report_no_drift(sample_dataset: Path, tmp_path: Path, capsys) -> None:
    """The committed samples are four sources of different dates (Azure Nov 2023, AlpacaEval Jan 2024, Mooncake
    Jun 2024): one dataset-wide window held only Mooncake and called it drift. Per model, each history is
    shorter than the 24 h window: nothing to compare, said so, and no model alarms."""
    params_file = tmp_path / "params.yaml"
    params_file.write_text(f"monitor:\n  traces: {sample_dataset}\n  out: {tmp_path / 'monitor'}\n")
    report = main(None, params_file)
    assert not report.retrain and report.reasons == () and report.drifted() == ()
    assert len(report.groups) == 17 and report.codes() == {"too_few": 17}
    assert "all 19,366 rows are within its last 24 h" in report.group("azure/conv").note
    out = capsys.readouterr().out
    assert out.startswith("drift: no retrain needed\n") and "model mooncake/conversation: too_few: not compared" in out
    assert json.loads((tmp_path / "monitor" / "drift.json").read_text())["retrain"] is False


@pytest.fixture(scope="module")
def spread_samples(sample_traces) -> pd.DataFrame:
    """The committed samples with each model's rows spread uniformly (seeded) over 3 days: every model then has a
    reference, and its last day is a random third of its rows (the null holds)."""
    rng = np.random.default_rng(11)
    frame = sample_traces.copy()
    start = pd.Timestamp("2024-03-01", tz="UTC")
    frame["timestamp"] = start + pd.to_timedelta(rng.uniform(0, 3 * 86_400, len(frame)), unit="s")
    return frame


def test_a_shift_in_one_source_is_flagged_for_that_source_only(spread_samples: pd.DataFrame) -> None:
    params = MonitorParams()
    reference, recent = split_window_by(spread_samples, params.window_hours)
    null = grouped_report(reference, recent, params, window_hours=params.window_hours)
    compared = {g.group for g in null.groups if g.report is not None}
    assert {"azure/conv", "azure/code", "mooncake/conversation"} <= compared and len(compared) >= 10
    assert not null.retrain and null.drifted() == ()
    # Azure conv's last day: prompts 40% longer (input tokens x1.4); every other model unchanged
    shifted = recent.copy()
    conv = (shifted["model"] == "azure/conv").to_numpy()
    shifted.loc[conv, "input_tokens"] = (shifted.loc[conv, "input_tokens"] * 1.4).round().astype("Int64")
    report = grouped_report(reference, shifted, params, window_hours=params.window_hours)
    assert report.retrain and report.drifted() == ("azure/conv",)
    assert all(r.startswith("model azure/conv: feature input_tokens") for r in report.reasons)
    conv_checks = {f.feature: f.code for f in report.group("azure/conv").report.features}
    assert conv_checks["input_tokens"] is CheckCode.DRIFT and conv_checks["latency_ms"] is not CheckCode.DRIFT


def test_split_window_by_uses_each_groups_own_newest_row() -> None:
    t = pd.DataFrame({
        "timestamp": list(pd.date_range("2024-03-01", periods=48, freq="h", tz="UTC")) * 2,
        "model": ["old"] * 48 + ["new"] * 48,
    })  # fmt: skip
    t.loc[t["model"] == "new", "timestamp"] += pd.Timedelta(days=30)
    ref, rec = split_window_by(t, 24)
    assert rec.groupby("model").size().to_dict() == {"new": 24, "old": 24}
    assert ref.groupby("model").size().to_dict() == {"new": 24, "old": 24}
    whole_ref, whole_rec = split_window(t, 24)  # one dataset-wide window: only the newer model is "recent"
    assert set(whole_rec["model"]) == {"new"}


def test_small_groups_say_so_and_a_new_model_counts_only_for_an_explicit_file() -> None:
    params = MonitorParams(features=("input_tokens",), min_rows=200)
    ref = _traces(3000, 0, model="a")
    rec = pd.concat([_traces(400, 1, model="a"), _traces(50, 2, model="b"), _traces(300, 3, model="c")])
    window = grouped_report(ref, rec.reset_index(drop=True), params, window_hours=24)
    assert (
        window.group("b").code is CheckCode.TOO_FEW and "all 50 rows are within its last 24 h" in window.group("b").note
    )
    assert window.group("c").code is CheckCode.TOO_FEW and not window.retrain
    explicit = grouped_report(ref, rec.reset_index(drop=True), params, new_is_reason=True)
    assert explicit.group("c").code is CheckCode.MISSING and explicit.group("b").code is CheckCode.TOO_FEW
    assert explicit.retrain and explicit.reasons == ("new model c: 300 recent rows, none in the reference",)
