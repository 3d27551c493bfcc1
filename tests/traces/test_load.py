"""traces/load.py: a file whose every row breaks the contract says so (with the reasons), not "run ingest"; a
Mooncake trace as published is read as its import would be."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
from conftest import ROOT, good_row, write_jsonl

from core.errors import BeastError
from traces.load import is_raw_mooncake, load_traces

PRICES = ROOT / "data" / "prices.yaml"


def test_all_rows_rejected_names_the_reasons(tmp_path: Path) -> None:
    rows = [good_row(i, input_tokens=-5) for i in range(3)] + ["{not json"]
    path = write_jsonl(tmp_path / "ab.jsonl", rows)
    with pytest.raises(BeastError) as err:
        load_traces([path], PRICES)
    text = str(err.value)
    assert "every row broke the trace contract" in text and "run `beast ingest`" not in text
    assert "3 out_of_range" in text and "1 bad_json" in text


def test_empty_folder_still_says_ingest_first(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "empty.jsonl", [])
    with pytest.raises(BeastError, match="no traces in .*run `beast ingest`"):
        load_traces([path], PRICES)


def test_valid_rows_load(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "ok.jsonl", [good_row(i) for i in range(4)])
    told: list[str] = []
    frame = load_traces([path], PRICES, log=told.append)
    assert len(frame) == 4 and frame["cost_usd"].gt(0).all() and told == []  # a contract file: nothing converted


MOONCAKE_LINES = [
    {"timestamp": 0, "input_length": 1100, "output_length": 7, "hash_ids": [0, 1, 2]},
    {"timestamp": 0, "input_length": 1600, "output_length": 12, "hash_ids": [0, 1, 3, 4]},
    {"timestamp": 2500, "input_length": 300, "output_length": 0, "hash_ids": [5]},
]


@pytest.mark.parametrize("name", ["trace.jsonl", "trace.jsonl.gz"])
def test_a_published_mooncake_trace_is_read_as_its_import(name: str, tmp_path: Path) -> None:
    raw = write_jsonl(tmp_path / "trace.jsonl", ["", *MOONCAKE_LINES])  # a blank first line is skipped
    if name.endswith(".gz"):
        raw = tmp_path / name
        raw.write_bytes(gzip.compress((tmp_path / "trace.jsonl").read_bytes()))
        (tmp_path / "trace.jsonl").unlink()
    assert is_raw_mooncake(raw)
    told: list[str] = []
    frame = load_traces([raw], PRICES, log=told.append).sort_values("request_id")
    assert told == [
        f"{raw}: a Mooncake trace as published (hash_ids), imported as `beast traces import mooncake` would"
    ]
    assert frame["request_id"].tolist() == ["mooncake-conv-000000", "mooncake-conv-000001", "mooncake-conv-000002"]
    assert [list(b) for b in frame["prefix_blocks"]] == [[0, 1, 2], [0, 1, 3, 4], [5]]
    assert frame["input_tokens"].tolist() == [1100, 1600, 300] and frame["output_tokens"].tolist() == [7, 12, 0]
    assert (frame["timestamp"] - frame["timestamp"].min()).dt.total_seconds().tolist() == [0.0, 0.0, 2.5]
    assert set(frame["model"]) == {"mooncake/conversation"}


def test_only_the_published_mooncake_shape_is_converted(tmp_path: Path) -> None:
    contract = write_jsonl(tmp_path / "contract.jsonl", [good_row(0)])
    with_model = write_jsonl(tmp_path / "model.jsonl", [MOONCAKE_LINES[0] | {"model": "m"}])
    missing = write_jsonl(tmp_path / "missing.jsonl", [{k: v for k, v in MOONCAKE_LINES[0].items() if k != "hash_ids"}])
    not_json = write_jsonl(tmp_path / "bad.jsonl", ["{not json"])
    deep = write_jsonl(tmp_path / "deep.jsonl", ['{"a":' * 10_000 + "1" + "}" * 10_000])
    csv = tmp_path / "trace.csv"
    csv.write_text("timestamp,input_length,output_length,hash_ids\n0,1,1,[0]\n")
    assert not any(map(is_raw_mooncake, (contract, with_model, missing, not_json, deep, csv, tmp_path / "gone.jsonl")))


def test_a_published_mooncake_trace_with_a_bad_line_is_one_clear_error(tmp_path: Path) -> None:
    raw = write_jsonl(tmp_path / "trace.jsonl", [*MOONCAKE_LINES, MOONCAKE_LINES[0] | {"hash_ids": "0,1"}])
    with pytest.raises(BeastError, match="mooncake: hash_ids must be a list of integers"):
        load_traces([raw], PRICES)
