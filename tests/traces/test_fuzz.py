"""Property-based fuzzing of the readers and validation: nothing is lost, every rejection has a reason.

Oracle: rows built valid must be stored unchanged; rows given exactly one known defect must be
quarantined with that defect's reason; anything random must at least keep the invariant.
"""

from __future__ import annotations

import csv
import io
import json
import math
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from conftest import good_row
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from traces.contract import REQUIRED, Reason
from traces.ingest import IngestParams, ingest
from traces.store import read_traces

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
REASONS = {r.value for r in Reason}

# (mutation, expected reason): exactly one defect each
DEFECTS = [
    (lambda r: r.pop("model"), "missing_field"),
    (lambda r: r.update(input_tokens="many"), "bad_type"),
    (lambda r: r.update(output_tokens=-7), "out_of_range"),
    (lambda r: r.update(status="maybe"), "bad_value"),
    (lambda r: r.update(timestamp="not a time"), "bad_timestamp"),
    (lambda r: r.update(cached_input_tokens=10**7), "inconsistent"),
    (lambda r: r.update(status="error"), "missing_field"),
    (lambda r: r.update(quality=2), "out_of_range"),
    (lambda r: r.update(prefix_blocks=["a"]), "bad_type"),
]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=5,
)


def _run(path: Path, tmp: Path, prices) -> tuple:
    params = IngestParams(out=tmp / "traces", quarantine=tmp / "q", metrics=None, block_rows=7)
    report = ingest([path], params, prices)
    rejects = (
        [json.loads(x) for x in Path(report.quarantine_file).read_text().splitlines()] if report.quarantine_file else []
    )
    return report, rejects, read_traces(params.out)


@SETTINGS
@given(plan=st.lists(st.one_of(st.just(-1), st.integers(0, len(DEFECTS) - 1)), min_size=1, max_size=30))
def test_known_defects_get_their_reason_and_good_rows_are_stored(plan: list[int], prices) -> None:
    lines, expected = [], {}
    for i, d in enumerate(plan):
        row = good_row(i)
        if d >= 0:
            DEFECTS[d][0](row)
            expected[i + 1] = DEFECTS[d][1]
        lines.append(json.dumps(row))
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "t.jsonl"
        src.write_text("\n".join(lines) + "\n")
        report, rejects, stored = _run(src, Path(tmp), prices)
    assert report.rows_read == len(plan) == report.accepted + report.quarantined_total
    assert {r["row"]: r["reason"] for r in rejects} == expected
    assert sorted(stored["source_row"]) == [i + 1 for i, d in enumerate(plan) if d < 0]
    assert all(r["raw"] == lines[r["row"] - 1] for r in rejects)


@SETTINGS
@given(
    rows=st.lists(
        st.one_of(
            st.dictionaries(
                st.sampled_from([*REQUIRED, "quality", "prefix_blocks", "cache_hit", "x"]), json_values, max_size=9
            ),
            st.binary(max_size=30).map(lambda b: b.replace(b"\n", b" ")),
            st.builds(good_row, st.integers(0, 5)),
        ),
        max_size=25,
    )
)
def test_random_jsonl_loses_nothing(rows: list, prices) -> None:
    encoded = [json.dumps(r).encode() if isinstance(r, dict) else r for r in rows]
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "t.jsonl"
        src.write_bytes(b"\n".join(encoded) + b"\n")
        nonblank = sum(1 for line in encoded if line.strip())
        report, rejects, stored = _run(src, Path(tmp), prices)
    assert report.rows_read == nonblank == report.accepted + report.quarantined_total
    assert len(rejects) == report.quarantined_total and all(r["reason"] in REASONS for r in rejects)
    assert len(stored) == report.stored == report.accepted  # a fresh dataset: every accepted row is new
    assert stored["request_id"].is_unique


@SETTINGS
@given(
    cells=st.lists(
        st.lists(st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=6), min_size=1, max_size=8),
        max_size=15,
    )
)
def test_random_csv_loses_nothing(cells: list[list[str]], prices) -> None:
    header = ["request_id", "timestamp", "model", "input_tokens", "output_tokens", "status"]
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(header)
    writer.writerow(list(good_row(0).values()))
    records = 1
    for row in cells:
        if any(c.strip() for c in row) or len(row) > 1:
            writer.writerow(row)
            records += 1
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "t.csv"
        src.write_text(buf.getvalue())
        report, rejects, stored = _run(src, Path(tmp), prices)
    assert report.rows_read == records == report.accepted + report.quarantined_total
    assert all(r["reason"] in REASONS and r["raw"] for r in rejects)
    assert "r0" in set(stored["request_id"])


def _count_text(text: str) -> bool:
    """The contract's integer written as text (docs/trace-contract.md: numbers as text are numbers, and 12.0 is
    an integer): an ASCII decimal number, "12", "12.", "1e3", "+5", equal to a non-negative exact integer."""
    t = text.strip()
    if not t.isascii() or "_" in t:  # Python's float() also reads "1_000" and non-ASCII digits; the ingest does not
        return False
    try:
        x = float(t)
    except ValueError:
        return False
    return math.isfinite(x) and x >= 0 and x.is_integer() and x < 2**53


@SETTINGS
@given(values=st.lists(st.one_of(st.none(), st.integers(-5, 10**6), st.text(max_size=5)), min_size=1, max_size=20))
@example(values=["0.", "1e3", "+5", "-0", " 7 ", "12.5", "1_000", "\u0661\u0662", "inf", "9e99", "0x10"])  # 5 good
def test_random_parquet_column_loses_nothing(values: list, prices) -> None:
    base = [good_row(i) for i in range(len(values))]
    table = pa.Table.from_pylist(base).append_column("input_tokens_raw", pa.array([str(v) for v in values]))
    table = table.set_column(
        table.schema.get_field_index("input_tokens"),
        "input_tokens",
        pa.array([None if v is None else str(v) for v in values]),
    )
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "t.parquet"
        pq.write_table(table, src)
        report, rejects, stored = _run(src, Path(tmp), prices)
    good = sum(1 for v in values if v is not None and _count_text(str(v)))
    assert (report.rows_read, report.accepted) == (len(values), good)
    assert all(r["reason"] in {"missing_field", "bad_type", "out_of_range"} for r in rejects)
