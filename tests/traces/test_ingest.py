"""Ingest end to end on small files: the invariant, formats, dedupe, costing, strict mode, bad files."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import good_row, write_jsonl

from core.errors import BeastError
from traces.contract import COST_LOGGED, COST_PRICE_TABLE, COST_UNKNOWN, STORE_SCHEMA
from traces.ingest import IngestParams, StrictFailure, ingest
from traces.prices import parse_prices
from traces.store import read_traces


def quarantined(report) -> list[dict]:
    return (
        [json.loads(line) for line in Path(report.quarantine_file).read_text().splitlines()]
        if report.quarantine_file
        else []
    )


def test_mixed_file_every_row_accounted_for(tmp_path: Path, params: IngestParams, prices) -> None:
    rows = [good_row(i) for i in range(5)] + [
        "{not json",
        "[1, 2]",
        "",
        " " * 20,  # whitespace only: blank, not a row, however long
        good_row(5, input_tokens=-1),
        good_row(6, status="error"),
        good_row(0),  # duplicate of the first row
        good_row(7, extra_field="kept"),
    ]
    src = write_jsonl(tmp_path / "t.jsonl", rows)
    src.write_bytes(src.read_bytes() + b'{"request_id": "\xff"}\n')
    report = ingest([src], params, prices)
    assert report.rows_read == 12  # the blank line is not a row
    assert report.accepted == 6 and report.stored == 6
    assert report.quarantined == {
        "bad_encoding": 1,
        "bad_json": 1,
        "duplicate_id": 1,
        "missing_field": 1,
        "not_an_object": 1,
        "out_of_range": 1,
    }
    assert report.rows_read == report.accepted + report.quarantined_total
    q = quarantined(report)
    assert [r["row"] for r in q] == [6, 7, 10, 11, 12, 14]  # file line numbers, in file order
    assert q[0]["raw"] == "{not json" and q[0]["reason"] == "bad_json"
    dup = next(r for r in q if r["reason"] == "duplicate_id")
    assert json.loads(dup["raw"]) == good_row(0) and dup["field"] == "request_id"
    stored = read_traces(params.out)
    assert sorted(stored["request_id"]) == ["r0", "r1", "r2", "r3", "r4", "r7"]
    assert stored.set_index("request_id").at["r7", "extra"] == '{"extra_field":"kept"}'


def test_reingest_adds_nothing_and_conflicts_are_quarantined(tmp_path: Path, params: IngestParams, prices) -> None:
    src = write_jsonl(tmp_path / "a.jsonl", [good_row(i) for i in range(10)])
    first = ingest([src], params, prices)
    again = ingest([src], params, prices)
    assert (first.stored, again.stored, again.already_stored, again.quarantined_total) == (10, 0, 10, 0)
    changed = write_jsonl(tmp_path / "b.jsonl", [good_row(3, output_tokens=1)])
    third = ingest([changed], params, prices)
    assert third.quarantined == {"duplicate_id": 1}
    assert "stored with different content" in quarantined(third)[0]["detail"]
    assert len(read_traces(params.out)) == 10


def _three_formats(tmp_path: Path, rows: list[dict]) -> list[Path]:
    frame = pd.DataFrame.from_records(rows)
    jsonl = write_jsonl(tmp_path / "t.jsonl.gz".replace(".gz", ""), rows)
    gz = tmp_path / "t2.jsonl.gz"
    gz.write_bytes(gzip.compress(jsonl.read_bytes()))
    csv = tmp_path / "t.csv.gz"
    out = frame.copy()
    out["prefix_blocks"] = out["prefix_blocks"].map(json.dumps)
    out.to_csv(csv, index=False)
    parquet = tmp_path / "t.parquet"
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), parquet)
    return [jsonl, gz, csv, parquet]


def test_round_trip_same_rows_in_every_format(tmp_path: Path, prices) -> None:
    rows = [
        good_row(
            i, latency_ms=12.5 * i, cached_input_tokens=i, prefix_blocks=[1, 2, i], cache_hit=bool(i % 2), tenant="t1"
        )
        for i in range(20)
    ]
    stored = []
    for k, path in enumerate(_three_formats(tmp_path, rows)):
        p = IngestParams(out=tmp_path / f"s{k}", quarantine=tmp_path / f"q{k}", metrics=None)
        report = ingest([path], p, prices)
        assert (report.accepted, report.quarantined_total) == (20, 0), path
        frame = read_traces(p.out).sort_values("request_id").reset_index(drop=True)
        stored.append(frame.drop(columns=["source_file", "ingest_id"]))
    for other in stored[1:]:
        pd.testing.assert_frame_equal(stored[0], other)
    # and across formats into one dataset: the same rows are recognised as already stored
    p = IngestParams(out=tmp_path / "one", quarantine=tmp_path / "q", metrics=None)
    report = ingest(_three_formats(tmp_path, rows), p, prices)
    assert (report.rows_read, report.stored, report.quarantined) == (80, 20, {"duplicate_id": 60})


def test_costs_follow_dated_prices_and_unknown_is_never_zero(tmp_path: Path, params: IngestParams) -> None:
    table = parse_prices(
        {
            "models": {
                "m": [
                    {"input": 1.0, "output": 2.0, "effective_from": "2024-01-01"},
                    {"input": 0.5, "output": 1.0, "cached_input": 0.1, "effective_from": "2024-06-01"},
                ]
            }
        },
        "test",
    )
    rows = [
        good_row(0, model="m", timestamp="2023-12-31T23:59:59Z", input_tokens=1_000_000, output_tokens=0),
        good_row(1, model="m", timestamp="2024-03-01T00:00:00Z", input_tokens=1_000_000, output_tokens=1_000_000),
        good_row(
            2,
            model="m",
            timestamp="2024-07-01T00:00:00Z",
            input_tokens=1_000_000,
            output_tokens=1_000_000,
            cached_input_tokens=500_000,
        ),
        good_row(3, model="other", timestamp="2024-07-01T00:00:00Z"),
        good_row(4, model="m", timestamp="2024-07-01T00:00:00Z", cost_usd=0.42),
    ]
    report = ingest([write_jsonl(tmp_path / "c.jsonl", rows)], params, table)
    got = read_traces(params.out).set_index("request_id").sort_index()
    assert np.isnan(got.at["r0", "cost_usd"]) and got.at["r0", "cost_source"] == COST_UNKNOWN  # before first price
    assert got.at["r1", "cost_usd"] == pytest.approx(3.0)
    assert got.at["r2", "cost_usd"] == pytest.approx(0.25 + 0.05 + 1.0)
    assert np.isnan(got.at["r3", "cost_usd"]) and got.at["r3", "cost_source"] == COST_UNKNOWN
    assert (got.at["r1", "cost_source"], got.at["r4", "cost_source"], got.at["r4", "cost_usd"]) == (
        COST_PRICE_TABLE,
        COST_LOGGED,
        0.42,
    )
    assert report.total_cost_usd == pytest.approx(3.0 + 1.3 + 0.42)
    assert report.cost_unknown_rows == 2


def test_stored_schema_and_partitions(tmp_path: Path, params: IngestParams, prices) -> None:
    rows = [good_row(0, timestamp="2024-03-01T23:59:59Z"), good_row(1, timestamp="2024-03-02T00:00:00Z")]
    report = ingest([write_jsonl(tmp_path / "p.jsonl", rows)], params, prices)
    assert sorted(p.parent.name for p in map(Path, report.written_files)) == ["date=2024-03-01", "date=2024-03-02"]
    table = pq.read_table(report.written_files[0])
    assert table.schema.metadata[b"beast.trace_contract"] == b"1"
    assert set(STORE_SCHEMA.names) - {"date"} == set(table.schema.names)


def test_strict_stores_nothing_but_keeps_the_quarantine(tmp_path: Path, prices) -> None:
    p = IngestParams(out=tmp_path / "traces", quarantine=tmp_path / "q", metrics=None, strict=True)
    src = write_jsonl(tmp_path / "s.jsonl", [good_row(0), good_row(1, output_tokens=-3)])
    with pytest.raises(StrictFailure) as info:
        ingest([src], p, prices)
    assert info.value.report.quarantined == {"out_of_range": 1}
    assert read_traces(p.out).empty
    assert len(quarantined(info.value.report)) == 1


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("missing.jsonl", None, "file not found"),
        ("trunc.jsonl.gz", gzip.compress(b'{"a": 1}\n' * 1000, mtime=0)[:-20], "truncated or not gzip"),
        ("fake.parquet", b"this is not parquet", "not a readable Parquet file"),
        ("trace.txt", b"x", "unknown trace format .txt"),
        ("dup.csv", b"a,a\n1,2\n", "repeats column(s) a"),
    ],
)
def test_unreadable_files_fail_with_one_line_and_write_nothing(
    tmp_path: Path, params: IngestParams, prices, name, content, message
) -> None:
    good = write_jsonl(tmp_path / "good.jsonl", [good_row(0)])
    bad = tmp_path / name
    if content is not None:
        bad.write_bytes(content)
    with pytest.raises(BeastError) as info:
        ingest([good, bad], params, prices)
    text = str(info.value)
    assert message in text and str(bad) in text and "\n" not in text
    assert (
        read_traces(params.out).empty and not list(params.quarantine.glob("*")) if params.quarantine.exists() else True
    )


def test_block_boundaries_do_not_change_the_answer(tmp_path: Path, prices) -> None:
    rows = [good_row(i) if i % 7 else good_row(i, status="bogus") for i in range(50)] + ["{oops"] + [good_row(3)]
    src = write_jsonl(tmp_path / "b.jsonl", rows)
    answers = []
    for block in (1, 3, 50, 1000):
        p = IngestParams(out=tmp_path / f"s{block}", quarantine=tmp_path / f"q{block}", metrics=None, block_rows=block)
        r = ingest([src], p, prices)
        answers.append((r.rows_read, r.accepted, dict(r.quarantined), tuple(q["row"] for q in quarantined(r))))
    assert all(a == answers[0] for a in answers)
    assert answers[0][:3] == (52, 42, {"bad_json": 1, "bad_value": 8, "duplicate_id": 1})


def test_csv_short_rows_are_numbered_by_record(tmp_path: Path, params: IngestParams, prices) -> None:
    header = "request_id,timestamp,model,input_tokens,output_tokens,status,prompt\n"
    body = (
        'a,2024-03-01T00:00:00Z,m,1,2,ok,"two\nlines"\nb,2024-03-01T00:00:00Z,m,1\n\nc,2024-03-01T00:00:00Z,m,1,2,ok,\n'
    )
    src = tmp_path / "s.csv"
    src.write_text(header + body)
    report = ingest([src], params, prices)
    assert (report.rows_read, report.accepted) == (3, 2)
    q = quarantined(report)
    assert (q[0]["row"], q[0]["reason"], q[0]["raw"]) == (2, "bad_csv_row", "b,2024-03-01T00:00:00Z,m,1")
    assert read_traces(params.out).set_index("request_id").at["a", "prompt"] == "two\nlines"


def test_ingest_ids_are_checked_and_never_reused(tmp_path: Path, params: IngestParams, prices) -> None:
    src = write_jsonl(tmp_path / "a.jsonl", [good_row(0)])
    with pytest.raises(BeastError, match="use 1-64 letters"):
        ingest([src], params, prices, ingest_id="../escape")
    ingest([src], params, prices, ingest_id="nightly-1")
    with pytest.raises(BeastError, match="was used before"):
        ingest([write_jsonl(tmp_path / "b.jsonl", [good_row(1)])], params, prices, ingest_id="nightly-1")


@pytest.mark.parametrize("suffix", [".jsonl", ".jsonl.gz", ".csv.gz"])
def test_synthetic_defects_are_quarantined_exactly_as_planted(
    tmp_path: Path, params: IngestParams, prices, suffix: str
) -> None:
    from traces.synth import SynthParams, synth_frame, write_trace

    planted = write_trace(
        synth_frame(SynthParams(rows=4000, seed=11), prices), tmp_path / f"s{suffix}", malformed=0.05, seed=11
    )
    report = ingest([planted.path], params, prices)
    assert planted.malformed == 200
    assert dict(report.quarantined) == dict(planted.malformed_by_reason)
    assert (report.rows_read, report.accepted) == (4000, 3800)
