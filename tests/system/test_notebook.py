"""notebooks/explore.ipynb: committed without outputs, and it runs headless on the pipeline's outputs.

The run uses the outputs in data/ (`make run` / `dvc repro`): it is skipped, saying so, when data/traces holds
no dataset (a fresh clone before `make run`). The cost-quality section needs data/bench/report.json and skips
itself without it; when it is there the notebook's numbers are checked against it.
"""

from __future__ import annotations

import json
import re

import pytest
from conftest import ROOT

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOK = ROOT / "notebooks" / "explore.ipynb"
TIMEOUT_S = 300


def _text(cell) -> str:
    parts = []
    for out in cell.get("outputs", []):
        if out.get("output_type") == "stream":
            parts.append(out["text"])
        elif "data" in out:
            parts.append(out["data"].get("text/plain", ""))
            parts.append(out["data"].get("text/markdown", ""))
    return "".join(parts)


def test_committed_notebook_has_no_outputs() -> None:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code, "no code cells"
    dirty = [
        i for i, c in enumerate(nb.cells) if c.cell_type == "code" and (c.outputs or c.execution_count is not None)
    ]
    assert not dirty, f"cells {dirty} have outputs or execution counts: clear them before committing"
    assert not any(key in nb.metadata for key in ("widgets", "varInspector")), "notebook metadata carries output state"


@pytest.fixture(scope="module")
def executed():
    traces = ROOT / "data" / "traces"
    if not any(traces.glob("date=*/*.parquet")):
        pytest.skip(
            f"{traces} holds no trace dataset: run `make run` (or `uv run dvc repro`) first, the notebook reads its outputs"
        )
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=TIMEOUT_S, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOK.parent)}}
    )
    client.execute()
    return nb


def test_notebook_runs_headless_without_errors(executed) -> None:
    errors = [
        out for c in executed.cells if c.cell_type == "code" for out in c.outputs if out.get("output_type") == "error"
    ]
    assert not errors, errors


def test_notebook_trace_statistics_match_the_dataset(executed) -> None:
    from traces.store import read_traces

    frame = read_traces(ROOT / "data" / "traces", columns=["request_id", "model", "status"])
    text = "".join(_text(c) for c in executed.cells if c.cell_type == "code")
    match = re.search(r"([\d,]+) rows, (\d+) models", text)
    assert match, text[:2000]
    assert int(match.group(1).replace(",", "")) == len(frame)
    assert int(match.group(2)) == frame["model"].nunique()
    errors = int((frame["status"] != "ok").sum())
    assert f"errors: {errors:,} " in text


def test_notebook_shows_predictor_metrics_and_cost_quality(executed) -> None:
    text = "".join(_text(c) for c in executed.cells if c.cell_type == "code")
    quality = ROOT / "data" / "metrics" / "quality.json"
    if quality.exists():
        data = json.loads(quality.read_text())
        assert f"train {data['n_train']:,} rows, test {data['n_test']:,} rows" in text
    report = ROOT / "data" / "bench" / "report.json"
    if report.exists():
        pair = json.loads(report.read_text())["pair"]
        assert f"APGR {pair['apgr']:.3f} (random {pair['random']['apgr']:.3f})" in text
        images = [out for c in executed.cells[-1:] for out in c.outputs if "image/png" in out.get("data", {})]
        assert images, "the cost-quality curve was not drawn"
    else:
        assert "skipping the cost-quality curve" in text
