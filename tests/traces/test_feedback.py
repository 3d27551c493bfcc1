"""`beast feedback`: labels joined to stored traces, provenance kept, bad rows quarantined, atomic and idempotent."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from conftest import good_row, write_jsonl

from core.errors import BeastError
from models.quality import quality_rows
from traces import store
from traces.feedback import apply_feedback, decide
from traces.ingest import IngestParams, ingest
from traces.store import read_traces

NOW = pd.Timestamp("2024-05-01T12:00:00Z")


@pytest.fixture
def dataset(tmp_path: Path, params: IngestParams, prices) -> IngestParams:
    """Six stored rows over two dates: r0-r3 on 2024-03-01 (r0 with a prompt and no label), r4-r5 on 2024-03-02."""
    rows = [
        good_row(0, prompt="What is 2 + 2?", prompt_id="p0"),
        good_row(1, quality=0.4, prompt="hi", prompt_id="p1"),
        good_row(2),
        good_row(3, extra_field="kept"),
    ]
    rows += [good_row(i, timestamp=f"2024-03-02T00:00:0{i}Z") for i in (4, 5)]
    ingest([write_jsonl(tmp_path / "traces.jsonl", rows)], params, prices)
    return params


def labels(params: IngestParams) -> pd.DataFrame:
    t = read_traces(params.out).set_index("request_id").sort_index()
    t["meta"] = [json.loads(e) if isinstance(e, str) else {} for e in t["extra"]]
    return t


def apply(path: Path, params: IngestParams, **kw):
    return apply_feedback(path, params.out, params.quarantine, now=kw.pop("now", NOW), **kw)


def test_feedback_labels_rows_keeps_provenance_and_training_sees_them(tmp_path: Path, dataset: IngestParams) -> None:
    assert "r0" not in set(quality_rows(read_traces(dataset.out))["request_id"])  # no label yet
    fb = write_jsonl(tmp_path / "fb.jsonl", [
        {"request_id": "r0", "score": 0.9, "source": "user", "timestamp": "2024-04-01T10:00:00Z"},
        {"request_id": "r3", "score": "0.25", "source": "judge:gpt-4"},
    ])  # fmt: skip
    before = {p: p.stat().st_mtime_ns for p in store.part_files(dataset.out)}
    report = apply(fb, dataset)
    assert (report.rows_read, report.applied, report.changed, report.unchanged, report.quarantined_total) == (
        2,
        2,
        2,
        0,
        0,
    )
    assert report.sources == {"judge:gpt-4": 1, "user": 1}
    t = labels(dataset)
    assert t.at["r0", "quality"] == 0.9 and t.at["r3", "quality"] == 0.25
    assert t.at["r0", "meta"] == {
        "quality_source": "user",
        "quality_labelled_at": "2024-04-01T10:00:00.000Z",
        "quality_feedback": f"{fb}:1",
    }
    assert (
        t.at["r3", "meta"]["extra_field"] == "kept"
        and t.at["r3", "meta"]["quality_labelled_at"] == "2024-05-01T12:00:00.000Z"
    )  # applied time
    assert len(t) == 6 and t.at["r1", "quality"] == 0.4 and t.loc[["r2", "r4", "r5"], "quality"].isna().all()
    # only the 2024-03-01 partition held changed rows: the other part file is untouched
    after = {p: p.stat().st_mtime_ns for p in store.part_files(dataset.out)}
    assert [p.parent.name for p in after if after[p] != before[p]] == ["date=2024-03-01"]
    assert [Path(f).parent.name for f in report.rewritten_files] == ["date=2024-03-01"]
    # the next training reads the label: quality_rows now includes r0
    rows = quality_rows(read_traces(dataset.out))
    assert "r0" in set(rows["request_id"]) and rows.set_index("request_id").at["r0", "quality"] == 0.9


def test_bad_rows_are_quarantined_with_a_reason_never_dropped(tmp_path: Path, dataset: IngestParams) -> None:
    fb = write_jsonl(tmp_path / "fb.jsonl", [
        {"request_id": "r0", "score": 0.5, "source": "user"},         # 1 ok
        {"request_id": "nope", "score": 0.5, "source": "user"},       # 2 unknown id
        {"request_id": "r2", "score": 1.5, "source": "user"},         # 3 out of range
        {"request_id": "r2", "score": -0.1, "source": "user"},        # 4 out of range
        {"request_id": "r4", "score": "good", "source": "user"},      # 5 bad type
        {"request_id": "r5", "score": 0.3},                           # 6 missing source
        "{broken",                                                    # 7 bad json
        {"request_id": "r5", "score": 0.3, "source": "user", "timestamp": "yesterday"},  # 8 bad timestamp
    ])  # fmt: skip
    report = apply(fb, dataset)
    assert report.rows_read == 8 == report.applied + report.quarantined_total
    assert report.applied == 1
    assert report.quarantined == {
        "bad_json": 1,
        "bad_timestamp": 1,
        "bad_type": 1,
        "missing_field": 1,
        "out_of_range": 2,
        "unknown_request_id": 1,
    }
    q = [json.loads(line) for line in Path(report.quarantine_file).read_text().splitlines()]
    assert [r["row"] for r in q] == [2, 3, 4, 5, 6, 7, 8]
    assert q[0]["reason"] == "unknown_request_id" and json.loads(q[0]["raw"])["request_id"] == "nope"
    assert q[1]["field"] == "score" and "1.5" in q[1]["detail"]
    assert labels(dataset)["quality"].notna().sum() == 2  # r0 (new) and r1 (ingested); nothing else touched


def test_reapplying_changes_nothing(tmp_path: Path, dataset: IngestParams) -> None:
    fb = write_jsonl(
        tmp_path / "fb.jsonl",
        [{"request_id": f"r{i}", "score": i / 10, "source": "judge"} for i in range(6)]
        + [{"request_id": "x", "score": 1, "source": "judge"}],
    )
    first = apply(fb, dataset)
    snapshot = {p: p.read_bytes() for p in store.part_files(dataset.out)}
    again = apply(fb, dataset, now=NOW + pd.Timedelta(days=1))  # later: no timestamp in the file, still unchanged
    assert (first.changed, first.unchanged, again.changed, again.unchanged) == (6, 0, 0, 6)
    assert again.quarantined == first.quarantined == {"unknown_request_id": 1} and again.rewritten_files == ()
    assert {p: p.read_bytes() for p in store.part_files(dataset.out)} == snapshot


def test_newest_label_wins_in_a_file_and_across_files_in_any_order(
    tmp_path: Path, dataset: IngestParams, prices
) -> None:
    old = write_jsonl(
        tmp_path / "old.jsonl",
        [{"request_id": "r2", "score": 0.1, "source": "judge", "timestamp": "2024-04-01T00:00:00Z"}],
    )
    new = write_jsonl(tmp_path / "new.jsonl", [
        {"request_id": "r2", "score": 0.7, "source": "user", "timestamp": "2024-04-03T00:00:00Z"},
        {"request_id": "r2", "score": 0.2, "source": "user", "timestamp": "2024-04-02T00:00:00Z"},  # older, later row: superseded
        {"request_id": "r4", "score": 0.3, "source": "user"},
        {"request_id": "r4", "score": 0.6, "source": "user"},  # no timestamps: the later row wins
    ])  # fmt: skip
    r_new = apply(new, dataset)
    assert r_new.quarantined == {"duplicate_id": 2} and r_new.applied == 2
    q = [json.loads(line) for line in Path(r_new.quarantine_file).read_text().splitlines()]
    assert [(r["row"], r["reason"]) for r in q] == [(2, "duplicate_id"), (3, "duplicate_id")] and "row 1" in q[0][
        "detail"
    ]
    r_old = apply(old, dataset)  # applied after, but labelled before: stale
    assert r_old.quarantined == {"stale": 1} and r_old.applied == 0
    t = labels(dataset)
    assert (t.at["r2", "quality"], t.at["r4", "quality"]) == (0.7, 0.6)
    # the other order on a fresh store gives the same labels; the replaced label is kept as quality_previous
    fresh = IngestParams(out=tmp_path / "fresh", quarantine=tmp_path / "q2", metrics=None)
    ingest([tmp_path / "traces.jsonl"], fresh, prices)
    apply(old, fresh)
    apply(new, fresh)
    u = labels(fresh)
    assert (u.at["r2", "quality"], u.at["r4", "quality"]) == (0.7, 0.6)
    assert u.at["r2", "meta"]["quality_previous"] == {
        "quality": 0.1,
        "source": "judge",
        "labelled_at": "2024-04-01T00:00:00.000Z",
    }


def test_ingested_label_is_replaced_and_remembered() -> None:
    d = decide({"source": "user", "score": 0.8, "labelled_at": NOW, "origin": "f:1"}, 0.4, None)
    assert d.action == "change" and json.loads(d.extra)["quality_previous"] == {
        "quality": 0.4,
        "source": None,
        "labelled_at": None,
    }
    same = decide({"source": "user", "score": 0.8, "labelled_at": NOW, "origin": "f:9"}, 0.8, d.extra)
    assert same.action == "unchanged" and same.extra == d.extra


def test_reingesting_the_original_log_still_counts_as_already_stored(
    tmp_path: Path, dataset: IngestParams, prices
) -> None:
    apply(write_jsonl(tmp_path / "fb.jsonl", [{"request_id": "r0", "score": 0.9, "source": "user"}]), dataset)
    again = ingest([tmp_path / "traces.jsonl"], dataset, prices)
    assert (again.stored, again.already_stored, again.quarantined_total) == (0, 6, 0)
    assert labels(dataset).at["r0", "quality"] == 0.9


def test_failed_write_changes_nothing(tmp_path: Path, dataset: IngestParams, monkeypatch) -> None:
    import pyarrow.parquet as pq

    snapshot = {p: p.read_bytes() for p in store.part_files(dataset.out)}
    real = pq.write_table
    calls = []

    def flaky(table, where, **kw):
        calls.append(where)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        return real(table, where, **kw)

    monkeypatch.setattr(store.pq, "write_table", flaky)
    fb = write_jsonl(
        tmp_path / "fb.jsonl",
        [{"request_id": "r0", "score": 0.9, "source": "user"}, {"request_id": "r4", "score": 0.1, "source": "user"}],
    )
    with pytest.raises(BeastError, match="cannot rewrite the dataset"):
        apply(fb, dataset)
    assert {p: p.read_bytes() for p in store.part_files(dataset.out)} == snapshot
    assert not [p for p in dataset.out.rglob(".*") if p.name != ".lock"]  # no staging file left behind
    monkeypatch.setattr(store.pq, "write_table", real)
    assert apply(fb, dataset).changed == 2  # and it can simply be run again


def test_csv_input_and_missing_file(tmp_path: Path, dataset: IngestParams) -> None:
    csv = tmp_path / "fb.csv"
    csv.write_text("request_id,score,source,timestamp\nr5,1,user,1711929600000\nr4,,user,\n")
    report = apply(csv, dataset)
    assert (report.applied, report.quarantined) == (1, {"missing_field": 1})
    assert labels(dataset).at["r5", "meta"]["quality_labelled_at"] == "2024-04-01T00:00:00.000Z"
    with pytest.raises(BeastError, match="nope.jsonl: file not found"):
        apply(tmp_path / "nope.jsonl", dataset)
