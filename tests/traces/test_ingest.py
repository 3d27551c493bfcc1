"""Ingest end to end on small files: the invariant, formats, dedupe, costing, strict mode, bad files."""

from __future__ import annotations

import gzip
import json
import re
from dataclasses import replace
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

ROOT_PRICES = Path(__file__).resolve().parents[2] / "data" / "prices.yaml"


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


# ---------------------------------------------------------------- issue: silent NaN, encodings, CSV, counts


def test_nan_cost_and_quality_are_quarantined_not_read_as_absent(tmp_path: Path, params: IngestParams, prices) -> None:
    """A JSON `NaN` became null: the cost was recomputed from the price table and a NaN label vanished."""
    nan_cost = json.dumps(good_row(0, cost_usd=1.5)).replace("1.5", "NaN")
    nan_quality = json.dumps(good_row(1, quality=0.5)).replace("0.5", "NaN")
    src = write_jsonl(tmp_path / "n.jsonl", [nan_cost, nan_quality, good_row(2, cost_usd=0.25, quality=1.0)])
    csv = tmp_path / "n.csv"
    csv.write_text(
        "request_id,timestamp,model,input_tokens,output_tokens,status,cost_usd\n"
        "c0,2024-03-01T00:00:00Z,gpt-3.5-turbo-1106,10,5,ok,NaN\n"
        "c1,2024-03-01T00:00:00Z,gpt-3.5-turbo-1106,10,5,ok,nan\n"
        "c2,2024-03-01T00:00:00Z,gpt-3.5-turbo-1106,10,5,ok,\n"
    )
    parquet = tmp_path / "n.parquet"
    pq.write_table(pa.Table.from_pylist([good_row(3, cost_usd=float("nan")), good_row(4, cost_usd=None)]), parquet)
    report = ingest([src, csv, parquet], params, prices)
    assert (report.rows_read, report.accepted, dict(report.quarantined)) == (8, 3, {"bad_type": 5})
    details = [(q["row"], q["detail"]) for q in quarantined(report)]
    assert details == [
        (1, "cost_usd: bad_type: expected number >= 0, got NaN"),
        (2, "quality: bad_type: expected number >= 0 <= 1, got NaN"),
        (1, "cost_usd: bad_type: expected number >= 0, got 'NaN'"),
        (2, "cost_usd: bad_type: expected number >= 0, got 'nan'"),
        (1, "cost_usd: bad_type: expected number >= 0, got NaN"),
    ]
    stored = read_traces(params.out).set_index("request_id").sort_index()
    assert list(stored.index) == ["c2", "r2", "r4"]  # an empty CSV cell / a Parquet null stay absent: costed
    assert (stored.at["r2", "cost_usd"], stored.at["r2", "cost_source"], stored.at["r2", "quality"]) == (
        0.25,
        COST_LOGGED,
        1.0,
    )
    assert stored.at["c2", "cost_source"] == stored.at["r4", "cost_source"] == COST_PRICE_TABLE


def test_utf16_lines_are_bad_encoding_and_a_utf8_bom_is_skipped(tmp_path: Path, params: IngestParams, prices) -> None:
    """`json.loads(bytes)` guessed UTF-16 and accepted the line; the contract reads UTF-8 only."""
    text = "".join(json.dumps(good_row(i)) + "\n" for i in range(2))
    utf16 = tmp_path / "u16.jsonl"
    utf16.write_bytes(text.encode("utf-16"))  # with a byte order mark
    bom8 = tmp_path / "u8.jsonl"
    bom8.write_bytes(b"\xef\xbb\xbf" + json.dumps(good_row(5)).encode() + b"\n")
    report = ingest([utf16, bom8], params, prices)
    assert (report.accepted, dict(report.quarantined)) == (1, {"bad_encoding": report.rows_read - 1})
    first = quarantined(report)[0]
    assert (first["row"], first["detail"]) == (1, "not UTF-8: UTF-16 or UTF-32 text (byte order mark)")
    assert all("NUL byte" in q["detail"] for q in quarantined(report)[1:])  # the UTF-16 lines after the first
    assert read_traces(params.out)["request_id"].tolist() == ["r5"]


def test_date_only_timestamps_are_quarantined_in_every_format(tmp_path: Path, params: IngestParams, prices) -> None:
    """pyarrow's JSON reader turned `2024-03-01` (and other non-RFC-3339 text) into a time: it was accepted."""
    src = write_jsonl(
        tmp_path / "d.jsonl",
        [
            good_row(0, timestamp="2024-03-01"),
            good_row(1, timestamp="2024-03-01T05"),
            good_row(2, timestamp="2024-03-01 05:00:00", task="2024-03-01", tenant="2024-03-01T05:00:00Z"),
        ],
    )
    csv = tmp_path / "d.csv"
    csv.write_text("request_id,timestamp,model,input_tokens,output_tokens,status\nc0,2024-03-01,m,1,1,ok\n")
    report = ingest([src, csv], params, prices)
    assert (report.accepted, dict(report.quarantined)) == (1, {"bad_timestamp": 3})
    assert [q["detail"] for q in quarantined(report)][0] == (
        "timestamp: bad_timestamp: expected RFC 3339 text or epoch ms in [2000, 2100), got '2024-03-01'"
    )
    row = read_traces(params.out).iloc[0]
    # ISO-looking text in a text field stays the text it was (it came back as a time before)
    assert (row["request_id"], row["task"], row["tenant"]) == ("r2", "2024-03-01", "2024-03-01T05:00:00Z")
    assert row["timestamp"] == pd.Timestamp("2024-03-01T05:00:00Z")


def test_control_characters_in_names_are_bad_value(tmp_path: Path, params: IngestParams, prices) -> None:
    rows = [
        '{"request_id": "r0", "timestamp": "2024-03-01T00:00:00Z", "model": "gpt\\u0000x", "input_tokens": 1, '
        '"output_tokens": 1, "status": "ok"}',
        good_row(1, prompt="two\nlines\tand a tab"),
    ]
    report = ingest([write_jsonl(tmp_path / "c.jsonl", rows)], params, prices)
    assert (report.accepted, dict(report.quarantined)) == (1, {"bad_value": 1})
    q = quarantined(report)[0]
    assert (q["field"], q["detail"]) == (
        "model",
        "model: bad_value: expected text without control characters, got 'gpt\\x00x'",
    )
    assert read_traces(params.out).at[0, "prompt"] == "two\nlines\tand a tab"


@pytest.mark.parametrize("sep", [";", "\t"])
def test_semicolon_and_tab_csv_are_read_like_comma_csv(tmp_path: Path, prices, sep: str) -> None:
    """A semicolon file was one column: every row missing_field."""
    header = ["request_id", "timestamp", "model", "input_tokens", "output_tokens", "status", "prompt"]
    records = [
        ["a", "2024-03-01T00:00:00Z", "gpt-3.5-turbo-1106", "10", "5", "ok", "x, y; z"],
        ["b", "2024-03-01T00:00:01Z", "gpt-3.5-turbo-1106", "10"],  # short
        ["c", "2024-03-01T00:00:02Z", "gpt-3.5-turbo-1106", "20", "5", "ok", ""],
    ]

    def write(path: Path, delimiter: str) -> Path:
        import csv as csvmod

        with open(path, "w", newline="") as fh:
            csvmod.writer(fh, delimiter=delimiter, lineterminator="\n").writerows([header, *records])
        return path

    stored = []
    for name, delimiter in (("comma", ","), ("other", sep)):
        p = IngestParams(out=tmp_path / name, quarantine=tmp_path / f"q-{name}", metrics=None)
        report = ingest([write(tmp_path / f"{name}.csv", delimiter)], p, prices)
        assert (report.rows_read, report.accepted, dict(report.quarantined)) == (3, 2, {"bad_csv_row": 1})
        assert quarantined(report)[0]["raw"] == delimiter.join(records[1])  # raw as written, its delimiter
        stored.append(read_traces(p.out).drop(columns=["source_file", "ingest_id"]).sort_values("request_id"))
    pd.testing.assert_frame_equal(stored[0].reset_index(drop=True), stored[1].reset_index(drop=True))
    assert stored[1]["prompt"].tolist()[0] == "x, y; z"


def test_strict_failure_summary_says_nothing_stored_and_no_infinite_rate(tmp_path: Path, prices) -> None:
    """`--strict` printed "accepted 2 (0 new, 0 already stored)" and "inf rows/s" though nothing was written."""
    from traces.ingest import format_summary

    p = IngestParams(out=tmp_path / "traces", quarantine=tmp_path / "q", metrics=None, strict=True)
    src = write_jsonl(tmp_path / "s.jsonl", [good_row(0), good_row(1), good_row(2, output_tokens=-3)])
    with pytest.raises(StrictFailure) as info:
        ingest([src], p, prices)
    report = info.value.report
    assert (report.strict_failed, report.stored, report.accepted) == (True, 0, 2)
    text = format_summary(report)
    assert re.search(r"\naccepted +2  \(0 stored: --strict and 1 quarantined, nothing was written\)\n", text)
    assert re.search(rf"\ndataset +{re.escape(str(p.out))}  \(unchanged\)\n", text) and "inf" not in text
    assert "nothing stored (--strict)" in report.summary_line()
    instant = replace(report, seconds=0.0)
    assert instant.rows_per_second is None and re.fullmatch(r"throughput +-", format_summary(instant).splitlines()[-1])


def test_per_file_counts_sum_to_the_summary(tmp_path: Path, params: IngestParams, prices) -> None:
    """Duplicates are found after a file is read: the per-file progress said "4 rows read, 0 quarantined" while the
    summary said 2. Every per-file count now comes after dedupe and they add up to the summary."""
    a = write_jsonl(tmp_path / "a.jsonl", [good_row(0), good_row(1), good_row(0), good_row(1, output_tokens=9)])
    b = write_jsonl(tmp_path / "b.jsonl", [good_row(1), good_row(2), good_row(3, status="nope"), "{bad"])
    messages: list[str] = []
    report = ingest([a, b], params, prices, progress=messages.append)
    files = {Path(f.source).name: (f.rows, f.accepted, f.quarantined) for f in report.files}
    assert files == {"a.jsonl": (4, 2, 2), "b.jsonl": (4, 1, 3)}
    assert sum(f.quarantined for f in report.files) == report.quarantined_total == 5
    assert sum(f.rows for f in report.files) == report.rows_read
    assert all(f.rows == f.accepted + f.quarantined for f in report.files)
    assert sum(f.accepted for f in report.files) == report.accepted
    assert messages[-1] == f"[2/2] {b}: 4 read, 1 accepted, 3 quarantined"
    assert f"[1/2] {a}: 4 read, 2 accepted, 2 quarantined" in messages


def test_reingest_with_an_in_file_duplicate_is_idempotent(tmp_path: Path, params: IngestParams, prices) -> None:
    """An exact repeat of a stored row was "stored with different content" and wrote a quarantine file per run."""
    src = write_jsonl(tmp_path / "a.jsonl", [good_row(0), good_row(1), good_row(0)])
    first = ingest([src], params, prices)
    assert (first.stored, dict(first.quarantined)) == (2, {"duplicate_id": 1})
    assert "repeats an earlier row of this ingest" in quarantined(first)[0]["detail"]
    again = ingest([src], params, prices)
    assert (again.stored, again.already_stored, again.quarantined_total, again.quarantine_file) == (0, 3, 0, None)
    assert len(list(params.quarantine.glob("*.jsonl"))) == 1
    conflict = write_jsonl(tmp_path / "b.jsonl", [good_row(0), good_row(0, output_tokens=7)])
    third = ingest([conflict], params, prices)
    assert (third.already_stored, dict(third.quarantined)) == (1, {"duplicate_id": 1})
    assert quarantined(third)[0]["detail"] == "request_id 'r0' is stored with different content"
    assert len(read_traces(params.out)) == 2


def test_a_folder_stands_for_its_trace_files(tmp_path: Path, params: IngestParams, prices) -> None:
    """`beast ingest DIR` said "unknown trace format (no suffix)"."""
    folder = tmp_path / "logs"
    (folder / "sub").mkdir(parents=True)
    write_jsonl(folder / "b.jsonl", [good_row(1)])
    (folder / "a.csv").write_text(
        "request_id,timestamp,model,input_tokens,output_tokens,status\nr0,1709251200000,m,1,1,ok\n"
    )
    write_jsonl(folder / ".hidden.jsonl", [good_row(8)])
    write_jsonl(folder / "sub" / "c.jsonl", [good_row(9)])  # subfolders are not read
    (folder / "README.md").write_text("not a trace")
    report = ingest([folder, write_jsonl(tmp_path / "x.jsonl", [good_row(2)])], params, prices)
    assert [Path(f.source).name for f in report.files] == ["a.csv", "b.jsonl", "x.jsonl"]  # folder sorted by path
    assert sorted(read_traces(params.out)["request_id"]) == ["r0", "r1", "r2"]
    for bad in (tmp_path / "empty", folder / "sub" / "deeper"):
        bad.mkdir(parents=True)
        with pytest.raises(BeastError) as info:
            ingest([bad], params, prices)
        assert str(info.value) == (
            f"{bad}: no trace files in this folder (.csv, .jsonl, .ndjson, .parquet, .pq (+ .gz for text formats); "
            "subfolders are not read)"
        )


def test_progress_shows_on_a_terminal_only(tmp_path: Path, params: IngestParams, prices, capsys) -> None:
    import io

    from traces.ingest import main, progress_to

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    piped, tty = io.StringIO(), Terminal()
    progress_to(piped)("x")
    show = progress_to(tty)
    show("[1/1] a.jsonl: 10 rows read")
    show("")
    assert (piped.getvalue(), tty.getvalue()) == ("", "\r\x1b[K[1/1] a.jsonl: 10 rows read\r\x1b[K")
    src = write_jsonl(tmp_path / "a.jsonl", [good_row(0), good_row(0)])
    overrides = {"out": params.out, "quarantine": params.quarantine, "prices": ROOT_PRICES}
    main([src], params_file=None, overrides=overrides)  # pytest's stderr is not a terminal
    out, err = capsys.readouterr()
    assert err == "" and re.search(r"\nrows read +2\n", out) and re.search(r"\nquarantined +1\n", out)


def test_the_summary_line_is_logged(tmp_path: Path, params: IngestParams, prices, caplog) -> None:
    """The Prefect flow's ingest task calls `ingest()`: its log shows rows read / accepted / quarantined."""
    src = write_jsonl(tmp_path / "a.jsonl", [good_row(0), good_row(1), good_row(1), good_row(2, status="x")])
    with caplog.at_level("INFO", logger="traces.ingest"):
        report = ingest([src], params, prices, ingest_id="log-1")
    assert caplog.messages == [
        "ingest log-1: 4 rows read from 1 file(s), 2 accepted (2 new, 0 already stored), 2 quarantined"
    ]
    assert report.summary_line() == caplog.messages[0]
