"""Smoke runs of the `beast` entry point: help texts, exit codes, one-line errors, the committed docs."""

from __future__ import annotations

import argparse

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from beast.cli import main
from traces.contract import render_markdown

from conftest import ROOT, good_row, write_jsonl

COMMANDS = ["ingest", "import", "synth", "contract", "train", "metrics", "export", "route", "serve-router", "tune", "bench-ingest", "bench-route", "bench-serve", "bench-train", "bench-scale", "bench", "gate", "replay", "rollback", "feedback", "monitor", "retrain", "deploy", "budget", "report", "recommend", "cache-sim", "cache-tiers", "semantic-cache", "stack"]


def beast(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "beast.cli", *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_help_lists_every_subcommand() -> None:
    from beast.cli import _parser

    subparsers = next(a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction))
    assert sorted(subparsers.choices) == sorted(COMMANDS)  # a new command must be listed here (and get an example)
    out = beast("--help")
    assert out.returncode == 0
    for name in COMMANDS:
        assert name in out.stdout


@pytest.mark.parametrize("name", COMMANDS)
def test_each_subcommand_has_help_with_an_example(name: str, capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main([name, "--help"])
    assert info.value.code == 0
    assert f"example:\n  beast {name}" in capsys.readouterr().out


def test_ingest_cli_exit_codes_and_outputs(tmp_path: Path) -> None:
    src = write_jsonl(tmp_path / "t.jsonl", [good_row(0), good_row(1), good_row(2, input_tokens=-1)])
    flags = ["--out", str(tmp_path / "traces"), "--quarantine", str(tmp_path / "q"), "--params", str(ROOT / "params.yaml")]
    ok = beast("ingest", str(src), *flags, "--prices", str(ROOT / "data/prices.yaml"), "--metrics", "m/ingest.json", cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert re.search(r"accepted +2  \(2 new, 0 already stored\)", ok.stdout) and re.search(r"out_of_range +1", ok.stdout)
    metrics = json.loads((tmp_path / "m/ingest.json").read_text())
    assert (metrics["rows_read"], metrics["accepted"], metrics["quarantined"]) == (3, 2, {"out_of_range": 1})
    strict = beast("ingest", str(src), *flags, "--prices", str(ROOT / "data/prices.yaml"), "--strict", cwd=tmp_path)
    assert strict.returncode == 1 and "--strict: 1 of 3 rows broke the contract" in strict.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["ingest", "nope.jsonl"], "nope.jsonl: file not found"),
        (["ingest", "t.jsonl", "--prices", "missing.yaml"], "missing.yaml: file not found"),
        (["import", "azure", "no/such/dir", "--out", "x"], "no/such/dir"),
        (["ingest", "t.jsonl", "--params", "none.yaml"], "none.yaml: file not found"),
    ],
)
def test_errors_are_one_line_with_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    write_jsonl(tmp_path / "t.jsonl", [good_row(0)])
    out = beast(*args, cwd=tmp_path)  # no params.yaml here: defaults
    assert out.returncode == 2
    assert message in out.stderr and out.stderr.count("\n") == 1 and "Traceback" not in out.stderr


def test_bad_params_section_names_the_key(tmp_path: Path) -> None:
    (tmp_path / "params.yaml").write_text("ingest:\n  strictt: true\n")
    write_jsonl(tmp_path / "t.jsonl", [good_row(0)])
    out = beast("ingest", "t.jsonl", "--params", "params.yaml", cwd=tmp_path)
    assert out.returncode == 2 and "params.yaml:ingest: unknown key(s) strictt" in out.stderr


# An ad-hoc run from a checkout: ./params.yaml is the repository's and data/ holds the committed files that stages
# read (prices, model cards) and that DVC stages own (metrics, bench plot data). `beast ingest` / `beast bench`
# with --out elsewhere must leave data/ byte-identical with nothing new; only --metrics / --plots write those.
COMMITTED_DATA = ["data/prices.yaml", "data/models.yaml", "data/metrics/*.json", "data/plots/bench/*.csv"]


def checkout(tmp_path: Path) -> Path:
    work = tmp_path / "checkout"
    files = [Path("params.yaml")] + [p.relative_to(ROOT) for pattern in COMMITTED_DATA for p in sorted(ROOT.glob(pattern))]
    assert {"data/metrics/ingest.json", "data/metrics/bench.json", "data/plots/bench/aiq.csv"} <= {str(f) for f in files}
    for rel in files:
        (work / rel).parent.mkdir(parents=True, exist_ok=True)
        (work / rel).write_bytes((ROOT / rel).read_bytes())
    return work


def tree(folder: Path) -> dict[str, bytes | None]:
    """Every path under `folder`: a file's bytes, None for a folder (so a new empty folder shows too)."""
    return {str(p.relative_to(folder)): p.read_bytes() if p.is_file() else None for p in sorted(folder.rglob("*"))}


def changed(before: dict[str, bytes | None], after: dict[str, bytes | None]) -> list[str]:
    return sorted(k for k in before.keys() | after.keys() if before.get(k, b"-") != after.get(k, b"-"))


@pytest.fixture(scope="module")
def alpaca_slice(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    """The first 120 prompts of the committed AlpacaEval sample (every model's answer to each): a small bench."""
    import pandas as pd

    frame = pd.read_parquet(ROOT / "data/sample/alpaca_eval.parquet")
    frame = frame[frame["prompt_id"].isin(frame["prompt_id"].drop_duplicates().head(120))]
    path = tmp_path_factory.mktemp("alpaca") / "alpaca_120.parquet"
    frame.to_parquet(path, index=False)
    return path, len(frame)


def test_ingest_writes_dvc_metrics_only_when_asked(tmp_path: Path, alpaca_slice: tuple[Path, int]) -> None:
    src, rows = alpaca_slice
    work, out = checkout(tmp_path), tmp_path / "out"
    before = tree(work / "data")
    flags = ["--out", str(out / "traces"), "--quarantine", str(out / "q")]  # the quarantine default is data/quarantine (a DVC output)
    plain = beast("ingest", str(src), *flags, cwd=work)
    assert plain.returncode == 0, plain.stderr
    assert changed(before, tree(work / "data")) == [] and (out / "traces").is_dir()
    asked = beast("ingest", str(src), *flags, "--metrics", str(out / "metrics/ingest.json"), cwd=work)
    assert asked.returncode == 0, asked.stderr
    assert changed(before, tree(work / "data")) == []
    metrics = json.loads((out / "metrics/ingest.json").read_text())
    assert (metrics["rows_read"], metrics["stored"], metrics["already_stored"]) == (rows, 0, rows)  # the second ingest adds nothing


def test_bench_writes_dvc_metrics_and_plots_only_when_asked(tmp_path: Path, alpaca_slice: tuple[Path, int], monkeypatch: pytest.MonkeyPatch) -> None:
    from evaluation.routing import OUTPUTS

    src, _ = alpaca_slice
    work, out = checkout(tmp_path), tmp_path / "out"
    before = tree(work / "data")
    monkeypatch.chdir(work)  # in-process (~5 s a run on 2 cores): ./params.yaml and data/ are the checkout's
    assert main(["bench", "--traces", str(src), "--out", str(out / "plain"), "--folds", "2"]) == 0
    assert changed(before, tree(work / "data")) == []
    assert sorted(p.name for p in (out / "plain").iterdir()) == sorted(OUTPUTS)
    flags = ["--metrics", str(out / "bench.json"), "--plots", str(out / "plots")]
    assert main(["bench", "--traces", str(src), "--out", str(out / "asked"), "--folds", "2", *flags]) == 0
    assert changed(before, tree(work / "data")) == []
    assert sorted(p.name for p in (out / "plots").iterdir()) == ["aiq.csv", "cost_quality.csv", "pgr.csv"]
    summary, report = json.loads((out / "bench.json").read_text()), json.loads((out / "asked/report.json").read_text())
    assert (summary["prompts"], summary["folds"]) == (120, 2) and "oracle" in summary["routers"] and set(summary["routers"]) <= set(report["routers"])


@pytest.mark.parametrize(("section", "module", "name"), [("ingest", "traces.ingest", "IngestParams"), ("bench", "evaluation.routing", "BenchParams")])
def test_params_sections_are_the_defaults_and_name_no_dvc_outputs(section: str, module: str, name: str) -> None:
    import importlib

    from core.config import load_params

    cls = getattr(importlib.import_module(module), name)
    assert load_params(ROOT / "params.yaml", section, cls) == cls()
    assert getattr(cls(), "metrics", None) is None and getattr(cls(), "plots", None) is None  # only --metrics / --plots


def test_contract_doc_is_generated_from_code() -> None:
    assert (ROOT / "docs" / "trace-contract.md").read_text() == render_markdown(), "run `make docs`"
