"""Known-answer tests for the synthetic trace generator (traces/synth.py)."""

from __future__ import annotations

import csv
import gzip
import json
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import ROOT

from core.errors import BeastError
from traces.contract import FIELDS, REQUIRED, Kind, Reason
from traces.prices import load_prices, parse_prices
from traces.synth import (
    COLUMNS,
    ERROR_TYPES,
    MAX_INPUT_TOKENS,
    TASKS,
    TIMEOUT_MS,
    SynthParams,
    inject_malformed,
    synth_frame,
    write_trace,
)

PRICES = load_prices(ROOT / "data" / "prices.yaml")
RFC3339_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


@pytest.fixture(scope="module")
def big() -> pd.DataFrame:
    return synth_frame(SynthParams(rows=50_000, seed=0), PRICES)


@pytest.fixture(scope="module")
def small() -> pd.DataFrame:
    return synth_frame(SynthParams(rows=2_000, seed=7), PRICES)


def _gaps_cv(frame: pd.DataFrame) -> float:
    t = pd.to_datetime(frame["timestamp"], utc=True).astype("datetime64[ms, UTC]").astype("int64").to_numpy()
    gaps = np.diff(t).astype(float)
    return float(gaps.std() / gaps.mean())


# ---------------------------------------------------------------------------------------------- determinism


def test_same_seed_gives_identical_frame(small: pd.DataFrame) -> None:
    again = synth_frame(SynthParams(rows=2_000, seed=7), PRICES)
    pd.testing.assert_frame_equal(small, again)


def test_different_seed_gives_different_frame(small: pd.DataFrame) -> None:
    other = synth_frame(SynthParams(rows=2_000, seed=8), PRICES)
    assert set(small["request_id"]).isdisjoint(other["request_id"])
    assert (small["input_tokens"].to_numpy() != other["input_tokens"].to_numpy()).mean() > 0.9
    assert small["timestamp"].tolist() != other["timestamp"].tolist()


@pytest.mark.parametrize("rows", [0, 1, 17, 5_000])
def test_row_count_and_columns_exact(rows: int) -> None:
    frame = synth_frame(SynthParams(rows=rows, seed=3), PRICES)
    assert len(frame) == rows
    assert tuple(frame.columns) == COLUMNS


# ---------------------------------------------------------------------------------------------- identity and time


def test_request_ids_unique_and_formatted(big: pd.DataFrame) -> None:
    assert big["request_id"].is_unique
    assert big["request_id"].iloc[0] == "syn-0-000000000"
    assert big["request_id"].iloc[-1] == "syn-0-000049999"


def test_timestamps_rfc3339_monotone_and_span(big: pd.DataFrame) -> None:
    assert big["timestamp"].str.match(RFC3339_MS.pattern).all()
    ts = pd.to_datetime(big["timestamp"], utc=True, format="ISO8601")
    assert ts.is_monotonic_increasing
    assert big["timestamp"].iloc[0] == "2025-01-01T00:00:00.000Z"
    # the trace spans rows / mean_rps seconds (50k / 20 = 2500 s), up to the last millisecond
    assert (ts.iloc[-1] - ts.iloc[0]).total_seconds() == pytest.approx(2_500.0, abs=0.002)


def test_burstiness_controls_gap_dispersion() -> None:
    poisson = synth_frame(SynthParams(rows=50_000, seed=0, burstiness=0.0), PRICES)
    bursty = synth_frame(SynthParams(rows=50_000, seed=0, burstiness=0.5), PRICES)
    very = synth_frame(SynthParams(rows=50_000, seed=0, burstiness=1.0), PRICES)
    # Poisson: CV 1; mixture of exponentials with log-rate sd 0.75: sqrt(2 e^0.5625 - 1) ~ 1.59
    assert _gaps_cv(poisson) == pytest.approx(1.0, abs=0.03)
    assert 1.3 < _gaps_cv(bursty) < 2.0
    assert _gaps_cv(very) > _gaps_cv(bursty)


# ---------------------------------------------------------------------------------------------- outcomes


def test_error_rate_close_to_params(big: pd.DataFrame) -> None:
    rate = (big["status"] == "error").mean()
    assert abs(rate - 0.03) < 0.01
    assert set(big["status"].unique()) == {"ok", "error"}
    high = synth_frame(SynthParams(rows=20_000, seed=0, error_rate=0.2), PRICES)
    assert abs((high["status"] == "error").mean() - 0.2) < 0.015
    none = synth_frame(SynthParams(rows=20_000, seed=0, error_rate=0.0), PRICES)
    assert (none["status"] == "ok").all() and none["error_type"].isna().all()


def test_error_rows_have_type_and_no_output(big: pd.DataFrame) -> None:
    err = big[big["status"] == "error"]
    ok = big[big["status"] == "ok"]
    assert err["error_type"].notna().all()
    assert set(err["error_type"].unique()) == set(ERROR_TYPES)
    assert (err["output_tokens"] == 0).all()
    assert ok["error_type"].isna().all()
    assert (ok["output_tokens"] >= 1).all()
    shares = err["error_type"].value_counts(normalize=True)
    assert shares["rate_limit"] > 0.25 and shares["server_error"] > 0.2  # the two common kinds
    assert 0.01 < shares["timeout"] < 0.2 and 0.01 < shares["context_length"] < 0.3


def test_error_structure(big: pd.DataFrame) -> None:
    # timeouts sit just above the timeout; successes finish before it; rate limits are fast
    timeouts = big.loc[big["error_type"] == "timeout", "latency_ms"]
    assert timeouts.between(TIMEOUT_MS, TIMEOUT_MS + 1_000).all()
    assert (big.loc[big["status"] == "ok", "latency_ms"] < TIMEOUT_MS).all()
    assert big.loc[big["error_type"] == "rate_limit", "latency_ms"].median() < 200
    # rate limits cluster in bursts: their share is several times higher in busy 10 s windows
    ts = pd.to_datetime(big["timestamp"], utc=True, format="ISO8601").dt.floor("10s")
    per = big.assign(rl=big["error_type"].eq("rate_limit")).groupby(ts).agg(n=("rl", "size"), rl=("rl", "sum"))
    busy = per["n"] > per["n"].median()
    assert (
        per.loc[busy, "rl"].sum() / per.loc[busy, "n"].sum()
        > 3 * per.loc[~busy, "rl"].sum() / per.loc[~busy, "n"].sum()
    )
    # timeouts hit slow (pricey) models more than cheap ones; context_length only small-window models
    unit = big["model"].map({m: PRICES.current(m).input + PRICES.current(m).output for m in PRICES.models})
    to = big["error_type"].eq("timeout")
    assert to[unit >= 3].mean() > 2 * to[unit < 1].mean()
    assert to[unit >= 20].mean() > 4 * to[unit < 1].mean()
    assert big.loc[big["error_type"] == "context_length", "input_tokens"].min() > 32_768
    # cache hits are answered by the cache: fast and never failing
    hits = big[big["cache_hit"]]
    assert (hits["status"] == "ok").all() and hits["latency_ms"].median() < 50


# ---------------------------------------------------------------------------------------------- tokens, cache, labels


def test_tokens(big: pd.DataFrame) -> None:
    inp = big["input_tokens"]
    assert inp.min() >= 1 and inp.max() <= MAX_INPUT_TOKENS
    assert inp.quantile(0.99) / inp.median() > 5  # heavy tail
    cached = big["cached_input_tokens"]
    has = cached.notna()
    assert 0.3 < has.mean() < 0.8
    assert (cached[has] <= inp[has]).all() and (cached[has] >= 0).all()
    assert big["input_tokens"].dtype == np.int64 and big["output_tokens"].dtype == np.int64
    by_task = big[big["status"] == "ok"].groupby("task")["output_tokens"].median()
    assert by_task["code"] > by_task["extract"] * 3  # output depends on the task


def test_cache_keys_and_prompts(big: pd.DataFrame) -> None:
    assert (big["cache_hit"].to_numpy() == big["cache_key"].duplicated(keep="first").to_numpy()).all()
    assert 0.05 < big["cache_hit"].mean() < 0.35
    prompted = big["prompt_id"].notna()
    assert 0.1 < prompted.mean() < 0.4
    assert big.loc[prompted, "prompt_id"].duplicated().mean() > 0.5  # prompts repeat
    # the same prompt has the same size and the same cache key, whatever model served it
    g = big[prompted].groupby("prompt_id")
    assert (g["input_tokens"].nunique() == 1).all() and (g["cache_key"].nunique() == 1).all()
    assert (g["model"].nunique() > 1).any()


def test_models_tenants_sessions_tasks(big: pd.DataFrame) -> None:
    assert set(big["model"].unique()) == set(PRICES.models)
    counts = big["model"].value_counts()
    assert counts["gemma-2b-it"] > 5 * counts["gpt4_1106_preview"]  # cheap models more popular
    assert set(big["tenant"].unique()) == {f"tenant-{i:02d}" for i in range(8)}
    assert big["tenant"].value_counts().iloc[0] > 3 * big["tenant"].value_counts().iloc[-1]
    turns = big.groupby("session_id").size()
    assert 3.0 < turns.mean() < 5.0 and turns.max() >= 10
    assert (big.groupby("session_id")[["tenant", "task"]].nunique() == 1).all().all()
    assert set(big["task"].unique()) == set(TASKS)


def test_quality_variant_cost_prefix(big: pd.DataFrame) -> None:
    q = big["quality"]
    assert q.dropna().between(0, 1).all()
    assert 0.2 < q.notna().mean() < 0.4
    assert q[big["status"] == "error"].isna().all()
    assert q[big["model"] == "gpt4_1106_preview"].mean() > q[big["model"] == "gemma-2b-it"].mean() + 0.2

    assert set(big["variant"].dropna().unique()) == {"champion", "challenger"}
    assert 0.15 < big["variant"].notna().mean() < 0.35
    assert (big.groupby("session_id")["variant"].nunique(dropna=False) == 1).all()

    cost = big["cost_usd"]
    logged = big[cost.notna()]
    assert 0.04 < cost.notna().mean() < 0.06
    price = {m: PRICES.current(m) for m in PRICES.models}
    cached = logged["cached_input_tokens"].fillna(0).astype(float)
    expected = (
        (logged["input_tokens"] - cached) * logged["model"].map(lambda m: price[m].input)
        + cached * logged["model"].map(lambda m: price[m].cached_input)
        + logged["output_tokens"] * logged["model"].map(lambda m: price[m].output)
    ) / 1e6
    np.testing.assert_allclose(logged["cost_usd"], expected, atol=1e-10)

    blocks = big["prefix_blocks"]
    has = blocks.notna()
    assert 0.25 < has.mean() < 0.55
    assert all(len(b) >= 1 and all(isinstance(int(x), int) for x in b) for b in blocks[has].head(500))
    # turns of a session share their leading (system-prompt) block
    with_blocks = big[has]
    first = with_blocks.assign(b0=blocks[has].map(lambda b: int(b[0]))).groupby("session_id")["b0"].nunique()
    multi = with_blocks.groupby("session_id").size() > 1
    assert (first[multi] == 1).mean() > 0.95


# ---------------------------------------------------------------------------------------------- malformed


def _reason_of(line: str, seen: set[str]) -> str:
    """An independent mini-checker of the one problem each corrupted line should have."""
    try:
        row = json.loads(line)
    except json.JSONDecodeError:
        return Reason.BAD_JSON
    if not isinstance(row, dict):
        return Reason.NOT_AN_OBJECT
    found = []
    if row.get("model") is None:
        found.append(Reason.MISSING_FIELD)
    if not isinstance(row["input_tokens"], int):
        found.append(Reason.BAD_TYPE)
    if row["output_tokens"] < 0:
        found.append(Reason.OUT_OF_RANGE)
    if row["status"] not in ("ok", "error"):
        found.append(Reason.BAD_VALUE)
    if row["status"] == "error" and row.get("error_type") is None:
        found.append(Reason.MISSING_FIELD)
    if row["timestamp"] == "yesterday":
        found.append(Reason.BAD_TIMESTAMP)
    c = row.get("cached_input_tokens")
    if isinstance(row["input_tokens"], int) and c is not None and c > row["input_tokens"]:
        found.append(Reason.INCONSISTENT)
    assert len(found) <= 1, (found, line)
    if not found and row["request_id"] in seen:
        found.append(Reason.DUPLICATE_ID)
    seen.add(row["request_id"])
    return found[0].value if found else ""


def _lines(rows: int, seed: int = 0) -> list[str]:
    frame = synth_frame(SynthParams(rows=rows, seed=seed), PRICES)
    return frame.to_json(orient="records", lines=True).rstrip("\n").split("\n")


def test_inject_malformed_exact_count_and_reasons() -> None:
    lines = _lines(1_000)
    out, reasons = inject_malformed(lines, 0.1, seed=0)
    assert len(out) == 1_000 and len(reasons) == 1_000
    bad = reasons != ""
    assert bad.sum() == 100
    assert dict(Counter(reasons[bad])) == {
        "bad_json": 10, "not_an_object": 10, "missing_field": 20, "bad_type": 10, "out_of_range": 10,
        "bad_value": 10, "bad_timestamp": 10, "inconsistent": 10, "duplicate_id": 10,
    }  # fmt: skip
    assert set(reasons[bad]) <= {r.value for r in Reason}
    assert [out[i] for i in np.flatnonzero(~bad)] == [lines[i] for i in np.flatnonzero(~bad)]
    seen: set[str] = set()
    assert [_reason_of(line, seen) for line in out] == list(reasons)
    again, reasons2 = inject_malformed(lines, 0.1, seed=0)
    assert list(again) == list(out) and list(reasons2) == list(reasons)
    _, other = inject_malformed(lines, 0.1, seed=1)
    assert list(other != "") != list(bad)
    assert (inject_malformed(lines, 0.0, seed=0)[1] == "").all()


def _read_jsonl(path: Path) -> list[str]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as fh:
        return fh.read().splitlines()


def _validate(row: dict) -> None:
    """Check one clean row against traces.contract.FIELDS (types, ranges, choices)."""
    for name in REQUIRED:
        assert row.get(name) is not None, name
    for f in FIELDS:
        v = row.get(f.name)
        if v is None:
            continue
        if f.kind in (Kind.STR, Kind.ENUM, Kind.TIMESTAMP):
            assert isinstance(v, str) and v, f.name
        elif f.kind is Kind.INT:
            assert isinstance(v, int) and not isinstance(v, bool), f.name
        elif f.kind is Kind.FLOAT:
            assert isinstance(v, (int, float)) and not isinstance(v, bool), f.name
        elif f.kind is Kind.BOOL:
            assert isinstance(v, bool), f.name
        elif f.kind is Kind.INT_LIST:
            assert isinstance(v, list) and all(isinstance(x, int) for x in v), f.name
        if f.minimum is not None:
            assert v >= f.minimum, f.name
        if f.maximum is not None:
            assert v <= f.maximum, f.name
        if f.choices:
            assert v in f.choices, f.name
    assert RFC3339_MS.match(row["timestamp"])
    if row["status"] == "error":
        assert row.get("error_type")


def test_write_jsonl_round_trip(tmp_path: Path, small: pd.DataFrame) -> None:
    result = write_trace(small, tmp_path / "t.jsonl")
    assert (result.rows, result.malformed, dict(result.malformed_by_reason)) == (2_000, 0, {})
    rows = [json.loads(line) for line in _read_jsonl(result.path)]
    assert len(rows) == 2_000
    for row in rows:
        _validate(row)
    back = pd.DataFrame(rows)
    assert back["request_id"].tolist() == small["request_id"].tolist()
    assert back["input_tokens"].tolist() == small["input_tokens"].tolist()
    np.testing.assert_array_equal(back["latency_ms"].to_numpy(), small["latency_ms"].to_numpy())
    np.testing.assert_array_equal(back["cost_usd"].to_numpy(dtype=float), small["cost_usd"].to_numpy())
    assert "cost_usd" not in rows[0] or rows[0]["cost_usd"] is not None  # absent values are left out
    i = int(np.flatnonzero(small["prefix_blocks"].notna().to_numpy())[0])
    assert rows[i]["prefix_blocks"] == [int(x) for x in small["prefix_blocks"].iloc[i]]


def test_write_jsonl_gz_malformed(tmp_path: Path, small: pd.DataFrame) -> None:
    a = write_trace(small, tmp_path / "a.jsonl.gz", malformed=0.05, seed=3)
    b = write_trace(small, tmp_path / "b.jsonl.gz", malformed=0.05, seed=3)
    assert a.path.read_bytes() == b.path.read_bytes()  # byte-reproducible gzip
    assert a.rows == 2_000 and a.malformed == 100
    assert sum(a.malformed_by_reason.values()) == 100 and a.malformed_by_reason["missing_field"] == 20
    seen: set[str] = set()
    got = Counter(r for r in (_reason_of(line, seen) for line in _read_jsonl(a.path)) if r)
    assert dict(got) == dict(a.malformed_by_reason)


def test_write_csv_and_parquet(tmp_path: Path, small: pd.DataFrame) -> None:
    res = write_trace(small, tmp_path / "t.csv.gz", malformed=0.09, seed=1)
    assert res.rows == 2_000 and res.malformed == 180
    assert res.malformed_by_reason == {
        "bad_csv_row": 20, "bad_timestamp": 20, "bad_type": 20, "bad_value": 20, "duplicate_id": 20,
        "inconsistent": 20, "missing_field": 40, "out_of_range": 20,
    }  # fmt: skip
    with gzip.open(res.path, "rt", encoding="utf-8", newline="") as fh:
        records = list(csv.reader(fh))
    assert records[0] == list(COLUMNS) and len(records) == 2_001
    assert sum(len(r) != len(COLUMNS) for r in records[1:]) == 20

    clean = write_trace(small, tmp_path / "t.csv")
    back = pd.read_csv(clean.path, keep_default_na=False, dtype=str)
    assert back["request_id"].tolist() == small["request_id"].tolist()
    assert set(back["cache_hit"]) == {"true", "false"}
    i = int(np.flatnonzero(small["prefix_blocks"].notna().to_numpy())[0])
    assert json.loads(back["prefix_blocks"].iloc[i]) == [int(x) for x in small["prefix_blocks"].iloc[i]]

    pq_res = write_trace(small, tmp_path / "t.parquet")
    table = pd.read_parquet(pq_res.path)
    assert pq_res.rows == 2_000 and table["request_id"].tolist() == small["request_id"].tolist()
    assert table["cached_input_tokens"].isna().sum() == small["cached_input_tokens"].isna().sum()


def test_errors(tmp_path: Path, small: pd.DataFrame) -> None:
    with pytest.raises(BeastError, match="unknown trace suffix"):
        write_trace(small, tmp_path / "t.txt")
    with pytest.raises(BeastError, match="only injected into JSONL and CSV"):
        write_trace(small, tmp_path / "t.parquet", malformed=0.1)
    for bad in (-0.1, 1.0):
        with pytest.raises(BeastError, match="malformed"):
            write_trace(small, tmp_path / "t.jsonl", malformed=bad)
    with pytest.raises(BeastError, match="synth.rows"):
        synth_frame(SynthParams(rows=-1), PRICES)
    with pytest.raises(BeastError, match="synth.malformed"):
        synth_frame(SynthParams(malformed=1.0), PRICES)
    with pytest.raises(BeastError, match="synth.start"):
        synth_frame(SynthParams(start="yesterday"), PRICES)


def test_logged_cost_uses_price_in_force() -> None:
    dated = parse_prices(
        {"models": {"m-old": [{"input": 1.0, "output": 2.0, "effective_from": "2024-01-01"},
                              {"input": 10.0, "output": 20.0, "effective_from": "2030-01-01"}]}},
        "test",
    )  # fmt: skip
    frame = synth_frame(SynthParams(rows=4_000, seed=5), dated)
    logged = frame[frame["cost_usd"].notna()]
    cached = logged["cached_input_tokens"].fillna(0)
    expected = ((logged["input_tokens"] - cached) * 1.0 + cached * 1.0 + logged["output_tokens"] * 2.0) / 1e6
    np.testing.assert_allclose(logged["cost_usd"], expected, atol=1e-10)


def test_main_reads_params_and_overrides(tmp_path: Path) -> None:
    from traces.synth import main

    params = tmp_path / "params.yaml"
    params.write_text("synth:\n  rows: 300\n  seed: 2\n  malformed: 0.1\n")
    prices = ROOT / "data" / "prices.yaml"
    res = main(tmp_path / "t.jsonl", params_file=params, overrides={"rows": 500, "seed": None}, prices_file=prices)
    assert (res.rows, res.malformed) == (500, 50)
    assert _read_jsonl(res.path)[0].startswith('{"request_id":"syn-2-000000000"')


def test_synth_runs_from_any_working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`beast traces synth` (like every command that reads the price table: `traces.prices.load_prices`) with its
    default price table outside the checkout reads the checkout's (before: "data/prices.yaml: file not found"); a
    price table the working directory has is the one used."""
    from traces.synth import main

    params = tmp_path / "params.yaml"
    params.write_text("synth:\n  rows: 40\n  prefix_regime: multiturn\n")
    monkeypatch.chdir(tmp_path)
    res = main(tmp_path / "t.jsonl", params_file=params)
    assert res.rows == 40
    (tmp_path / "data").mkdir()
    (tmp_path / "data/prices.yaml").write_text("models: {}\n")
    with pytest.raises(BeastError, match="prices.yaml"):
        main(tmp_path / "u.jsonl", params_file=params)
