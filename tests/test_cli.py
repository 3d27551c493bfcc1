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
    ok = beast("ingest", str(src), *flags, "--prices", str(ROOT / "data/prices.yaml"), cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert re.search(r"accepted +2  \(2 new, 0 already stored\)", ok.stdout) and re.search(r"out_of_range +1", ok.stdout)
    metrics = json.loads((tmp_path / "data/metrics/ingest.json").read_text())
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


def test_contract_doc_is_generated_from_code() -> None:
    assert (ROOT / "docs" / "trace-contract.md").read_text() == render_markdown(), "run `make docs`"
