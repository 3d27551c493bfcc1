"""traces/load.py: a file whose every row breaks the contract says so (with the reasons), not "run ingest"."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import ROOT, good_row, write_jsonl

from core.errors import BeastError
from traces.load import load_traces

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
    frame = load_traces([path], PRICES)
    assert len(frame) == 4 and frame["cost_usd"].gt(0).all()
