"""Shared fixtures: the committed price table and a throwaway dataset layout per test."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from traces.ingest import IngestParams
from traces.prices import PriceTable, load_prices

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def prices() -> PriceTable:
    return load_prices(ROOT / "data" / "prices.yaml")


@pytest.fixture
def params(tmp_path: Path) -> IngestParams:
    return IngestParams(out=tmp_path / "traces", quarantine=tmp_path / "quarantine", metrics=None)


def good_row(i: int = 0, **fields: object) -> dict:
    """A valid contract-v1 row; override any field."""
    row = {
        "request_id": f"r{i}",
        "timestamp": f"2024-03-01T00:{i // 60 % 60:02d}:{i % 60:02d}Z",
        "model": "gpt-3.5-turbo-1106",
        "input_tokens": 1000 + i,
        "output_tokens": 500,
        "status": "ok",
    }
    row.update(fields)
    return row


def write_jsonl(path: Path, rows: list[dict | str]) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


@pytest.fixture(scope="session")
def sample_dataset(tmp_path_factory: pytest.TempPathFactory, prices: PriceTable) -> Path:
    """The committed samples, ingested once per test session: the dataset folder later stages read."""
    from traces.ingest import ingest

    tmp = tmp_path_factory.mktemp("sample")
    params = IngestParams(out=tmp / "traces", quarantine=tmp / "q", metrics=None)
    ingest(sorted((ROOT / "data" / "sample").iterdir()), params, prices)
    return params.out


@pytest.fixture(scope="session")
def sample_traces(sample_dataset: Path):
    """The committed samples as a contract-v1 frame, as later stages see it."""
    from traces.store import read_traces

    return read_traces(sample_dataset)
