"""The README's result tables are generated from the committed metrics (`make docs`, evaluation/readme.py): each
block between `<!-- metrics:NAME -->` markers equals what the generator makes of data/metrics/*.json today."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import ROOT

from evaluation import readme


def test_every_readme_block_is_generated_from_the_committed_metrics() -> None:
    text = (ROOT / "README.md").read_text()
    present = readme.blocks_in(text)
    assert set(present) == set(readme.BLOCKS), "README.md: a generated block is missing (markers <!-- metrics:NAME -->)"
    rendered = readme.render(readme.load_metrics(ROOT / "data" / "metrics"))
    stale = [name for name in readme.BLOCKS if present[name] != rendered[name]]
    assert not stale, f"README.md blocks {stale} differ from data/metrics/*.json: run `make docs`"


def test_the_readme_quotes_the_measured_numbers() -> None:
    """The numbers the issue found stale (cost MdAPE 0.192 / P90 0.865) are the measured ones now."""
    cost = json.loads((ROOT / "data" / "metrics" / "cost.json").read_text())["metrics"]
    block = readme.blocks_in((ROOT / "README.md").read_text())["predictors"]
    assert f"| {cost['azure.mdape']:.3f} |" in block
    assert f"/ {cost['azure.p90_coverage']:.3f} |" in block


def test_the_run_summary_block_is_what_the_flow_prints() -> None:
    """Every line of the README's `make run` example is a line `pipelines.flows.summary_markdown` writes for the
    committed metrics (a first run: version 1 everywhere, the gate keeps the champion)."""
    pytest.importorskip("prefect")
    from pipelines.flows import summary_markdown

    m = readme.load_metrics(ROOT / "data" / "metrics")
    bench = m["bench"]
    learned = bench["pair"]["routers"]["pair/learned"]
    keep = ("learned/tradeoff", "knn/tradeoff", "oracle")
    s = {
        "key": "k",
        "resumed": False,
        "trained": {p: {"version": "1", "metrics": m[p]["metrics"]} for p in readme.PREDICTORS},
        "evaluation": {
            "routers": {n: bench["routers"][n] for n in keep},
            "apgr": learned["apgr"],
            "apgr_ci": learned["apgr_ci"],
            "random_apgr_p95": bench["pair"]["random_apgr_p95"],
            "strong": bench["strong"],
        },
        "gate": {"promote": None, "reasons": ["first version: the challenger already is the champion"]},
        "bundle": "data/bundle",
        "bundle_versions": {"cache": "1", "cost": "1", "quality": "1"},
    }
    printed = summary_markdown(s).splitlines()
    block = readme.render(m, ["run-summary"])["run-summary"].splitlines()
    assert block[0] == block[-1] == "```"
    shown = [line.removesuffix("   ...") for line in block[1:-1] if line]
    assert [line for line in shown if line not in printed] == []


def test_rewrite_replaces_only_the_blocks(tmp_path: Path) -> None:
    metrics = tmp_path / "metrics"
    shutil.copytree(ROOT / "data" / "metrics", metrics)
    text = "intro\n\n<!-- metrics:predictors -->\nold table\n<!-- /metrics:predictors -->\n\noutro 0.192\n"
    rendered = readme.render(readme.load_metrics(metrics), ["predictors"])
    new = readme.rewrite(text, rendered)
    assert new.startswith("intro\n\n<!-- metrics:predictors -->\n| predictor |")
    assert new.endswith("\n<!-- /metrics:predictors -->\n\noutro 0.192\n")
    assert readme.blocks_in(new) == rendered
    assert readme.rewrite(new, rendered) == new  # idempotent

    doc = tmp_path / "README.md"
    doc.write_text(text)
    # only the predictors block: the others' markers are not in this file
    assert readme.main([str(doc), "--metrics", str(metrics), "--check"]) == 2
    doc.write_text(
        text + "".join(f"<!-- metrics:{n} -->\n<!-- /metrics:{n} -->\n" for n in readme.BLOCKS if n != "predictors")
    )
    assert readme.main([str(doc), "--metrics", str(metrics), "--check"]) == 1  # stale: nothing written
    assert "old table" in doc.read_text()
    assert readme.main([str(doc), "--metrics", str(metrics)]) == 0
    assert readme.main([str(doc), "--metrics", str(metrics), "--check"]) == 0
    assert doc.read_text().endswith("outro 0.192\n" + "".join(
        f"<!-- metrics:{n} -->\n{readme.render(readme.load_metrics(metrics), [n])[n]}\n<!-- /metrics:{n} -->\n"
        for n in readme.BLOCKS
        if n != "predictors"
    ))  # fmt: skip


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("<!-- metrics:a -->\nx\n", "never closed"),
        ("<!-- /metrics:a -->\n", "closes nothing"),
        ("<!-- metrics:a -->\n<!-- metrics:b -->\n", "inside the block"),
        ("<!-- metrics:a -->\n<!-- /metrics:a -->\n<!-- metrics:a -->\n<!-- /metrics:a -->\n", "appears twice"),
    ],
)
def test_broken_markers_are_named(text: str, message: str) -> None:
    with pytest.raises(readme.ReadmeError, match=message):
        readme.blocks_in(text)


def test_a_missing_metric_is_named(tmp_path: Path) -> None:
    (tmp_path / "cost.json").write_text('{"metrics": {}}')
    with pytest.raises(readme.ReadmeError, match="quality.json is missing"):
        readme.predictors(readme.load_metrics(tmp_path))
