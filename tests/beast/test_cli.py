"""Smoke runs of the `beast` entry point: help texts, exit codes, one-line errors, the committed docs."""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import ROOT, good_row, write_jsonl

import beast.cli as cli
from beast.cli import main
from core.errors import BeastError
from traces.contract import render_markdown

STAGES = [
    "ingest",
    "train",
    "tune",
    "metrics",
    "export",
    "route",
    "serve",
    "gate",
    "rollback",
    "retrain",
    "deploy",
    "stack",
]
GROUPS = {
    "traces": ["import", "synth", "contract", "feedback"],
    "eval": ["routing", "replay"],
    "monitor": ["drift", "report", "budget", "recommend"],
    "cache": ["sim", "transfer", "prior", "tiers", "semantic"],
    "bench": ["ingest", "train", "route", "serve", "scale", "startup"],
}
LEAVES = [(name,) for name in STAGES] + [(group, name) for group, names in GROUPS.items() for name in names]
NO_PARAMS = {
    ("export",),
    ("route",),
    ("serve",),
    ("rollback",),
    ("traces", "import"),
    ("traces", "contract"),
    ("bench", "ingest"),
    ("bench", "route"),
    ("bench", "serve"),
    ("bench", "startup"),
}

# The flat names of 0.1, kept as hidden aliases until 0.2: old name -> new command path (written out here, not
# imported, so a change to the table in beast/cli.py has to be made on purpose).
OLD_NAMES = {
    "serve-router": ("serve",),
    "import": ("traces", "import"),
    "synth": ("traces", "synth"),
    "contract": ("traces", "contract"),
    "feedback": ("traces", "feedback"),
    "bench": ("eval", "routing"),
    "replay": ("eval", "replay"),
    "monitor": ("monitor", "drift"),
    "report": ("monitor", "report"),
    "budget": ("monitor", "budget"),
    "recommend": ("monitor", "recommend"),
    "cache-sim": ("cache", "sim"),
    "cache-tiers": ("cache", "tiers"),
    "semantic-cache": ("cache", "semantic"),
    "bench-ingest": ("bench", "ingest"),
    "bench-train": ("bench", "train"),
    "bench-route": ("bench", "route"),
    "bench-serve": ("bench", "serve"),
    "bench-scale": ("bench", "scale"),
}
# The least each command needs to parse (its required arguments), so one argv can be parsed under both names.
REQUIRED = {
    ("serve",): ["--bundle", "b"],
    ("traces", "import"): ["azure"],
    ("traces", "synth"): ["--out", "t.jsonl"],
    ("traces", "feedback"): ["ratings.jsonl"],
    ("eval", "routing"): ["--traces", "t.parquet", "--out", "o"],
    ("eval", "replay"): ["--champion", "a", "--challenger", "b", "--traces", "t.parquet", "--out", "e.jsonl"],
    ("monitor", "report"): ["data/traces"],
    ("cache", "sim"): ["t.jsonl.gz"],
    ("cache", "tiers"): ["t.jsonl.gz"],
    ("bench", "route"): ["--bundle", "b"],
    ("bench", "serve"): ["--bundle", "b"],
}


def beast(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "beast.cli", *args], cwd=cwd, capture_output=True, text=True, timeout=120
    )


def parse(argv: list[str]) -> argparse.Namespace:
    """argv as `main` parses it: old names rewritten first."""
    parser = cli._parser()
    return parser.parse_args(cli._resolve_alias(argv, cli._commands(parser)))


def note(old: str, new: tuple[str, ...]) -> str:
    return f"beast: `{old}` is now `beast {' '.join(new)}` (the old name goes in 0.2)\n"


def test_command_tree_is_the_stage_verbs_and_the_groups() -> None:
    commands = cli._commands(cli._parser())
    assert list(commands) == STAGES + list(GROUPS)  # a new command must be listed here (and get an example)
    assert {group: list(cli._commands(commands[group])) for group in GROUPS} == GROUPS
    assert cli.ALIASES == OLD_NAMES
    assert not set(OLD_NAMES) & set(STAGES)


def test_top_help_lists_stages_and_groups_and_no_old_name() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "beast.cli", "--help"],
        cwd=ROOT,
        env=os.environ | {"COLUMNS": "120"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0 and out.stderr == ""
    assert "commands:" in out.stdout and "command groups" in out.stdout
    listed = re.findall(r"^  ([a-z-]+)  ", out.stdout, re.M)  # the first word of each listing line
    assert listed == STAGES + list(GROUPS)
    for group, names in GROUPS.items():
        assert re.search(rf"^  {group} +\S.*: {' [|] '.join(names)}$", out.stdout, re.M), group
    for old in set(OLD_NAMES) - set(GROUPS):  # `bench` and `monitor` are group names now
        assert old not in listed
        if "-" in old:
            assert old not in out.stdout


@pytest.mark.parametrize("group", GROUPS)
def test_group_help_lists_its_commands_with_a_summary(group: str, capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main([group, "--help"])
    out = capsys.readouterr().out
    assert info.value.code == 0 and out.startswith(f"usage: beast {group} ")
    listed = re.findall(r"^  ([a-z]+) +(\S.*)$", out, re.M)  # name and (the first line of) its summary
    assert [name for name, _ in listed] == GROUPS[group]
    assert all(len(summary) > 20 for _, summary in listed)


@pytest.mark.parametrize("path", LEAVES, ids=" ".join)
def test_each_command_has_help_with_an_example(path: tuple[str, ...], capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main([*path, "--help"])
    out = capsys.readouterr().out
    assert info.value.code == 0
    assert out.startswith(f"usage: beast {' '.join(path)} ")
    assert f"example:\n  beast {' '.join(path)}" in out
    assert ("--params PARAMS" in out) == (path not in NO_PARAMS)


@pytest.mark.parametrize(("old", "new"), OLD_NAMES.items())
def test_old_name_runs_the_new_command_with_a_note(old: str, new: tuple[str, ...], capsys) -> None:
    args = REQUIRED.get(new, [])
    via_new = parse([*new, *args])
    assert capsys.readouterr().err == ""
    via_old = parse([old, *args])
    assert capsys.readouterr().err == note(old, new)
    assert via_old.command_path == via_new.command_path == " ".join(new)
    assert via_old.handler is via_new.handler and vars(via_old) == vars(via_new)


def test_old_bench_is_the_routing_benchmark_unless_a_bench_command_follows(capsys) -> None:
    routing = parse(["bench", "--traces", "x.parquet", "--out", "o", "--folds", "3"])
    assert (routing.command_path, routing.handler, routing.traces, routing.folds) == (
        "eval routing",
        cli._eval_routing,
        Path("x.parquet"),
        3,
    )
    assert capsys.readouterr().err == note("bench", ("eval", "routing"))
    speed = parse(["bench", "ingest", "--rows", "10"])
    assert (speed.command_path, speed.handler, speed.rows) == ("bench ingest", cli._bench_ingest, 10)
    assert capsys.readouterr().err == ""
    with pytest.raises(SystemExit) as info:
        main(["bench", "--help"])
    captured = capsys.readouterr()
    assert info.value.code == 0 and captured.out.startswith("usage: beast bench ") and captured.err == ""


@pytest.mark.parametrize(
    ("argv", "recent", "params"),
    [
        (["monitor"], None, None),
        (["monitor", "recent.jsonl.gz"], Path("recent.jsonl.gz"), None),
        (["monitor", "--params", "p.yaml"], None, Path("p.yaml")),
    ],
)
def test_old_monitor_is_drift(argv: list[str], recent: Path | None, params: Path | None, capsys) -> None:
    args = parse(argv)
    assert (args.command_path, args.handler, args.recent, args.params) == (
        "monitor drift",
        cli._monitor_drift,
        recent,
        params,
    )
    assert capsys.readouterr().err == note("monitor", ("monitor", "drift"))


def test_monitor_followed_by_a_command_is_the_group(capsys) -> None:
    args = parse(["monitor", "budget", "backtest"])
    assert (args.command_path, args.handler, args.action) == ("monitor budget", cli._budget, "backtest")
    args = parse(["monitor", "drift", "recent.jsonl.gz"])
    assert (args.command_path, args.recent) == ("monitor drift", Path("recent.jsonl.gz"))
    assert capsys.readouterr().err == ""


def test_old_name_through_the_entry_point() -> None:
    old, new = beast("contract"), beast("traces", "contract")
    assert old.returncode == new.returncode == 0
    assert old.stdout == new.stdout == render_markdown()
    assert old.stderr == note("contract", ("traces", "contract")) and new.stderr == ""


def raises(exc: BaseException) -> Callable[[argparse.Namespace], int]:
    def handler(args: argparse.Namespace) -> int:
        raise exc

    return handler


@pytest.mark.parametrize(
    ("argv", "handler", "path"),
    [
        (["traces", "contract"], "_contract", "traces contract"),
        (["contract"], "_contract", "traces contract"),
        (["cache", "sim", "t"], "_cache_sim", "cache sim"),
        (["metrics"], "_metrics", "metrics"),
    ],
)
def test_errors_and_interrupts_name_the_full_command_path(
    argv: list[str], handler: str, path: str, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.setattr(cli, handler, raises(BeastError("no such thing")))
    assert main(argv) == 2
    assert capsys.readouterr().err.splitlines()[-1] == f"beast {path}: error: no such thing"
    monkeypatch.setattr(cli, handler, raises(KeyboardInterrupt()))
    assert main(argv) == 130
    assert capsys.readouterr().err.splitlines()[-1] == f"beast {path}: interrupted"


def test_old_name_error_is_the_note_then_the_new_path(tmp_path: Path) -> None:
    out = beast("import", "azure", "no/such/dir", "--out", "x", cwd=tmp_path)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    first, second = out.stderr.splitlines()
    assert (
        first + "\n" == note("import", ("traces", "import"))
        and second.startswith("beast traces import: error: ")
        and "no/such/dir" in second
    )


def test_ingest_cli_exit_codes_and_outputs(tmp_path: Path) -> None:
    src = write_jsonl(tmp_path / "t.jsonl", [good_row(0), good_row(1), good_row(2, input_tokens=-1)])
    flags = [
        "--out",
        str(tmp_path / "traces"),
        "--quarantine",
        str(tmp_path / "q"),
        "--params",
        str(ROOT / "params.yaml"),
    ]
    ok = beast(
        "ingest",
        str(src),
        *flags,
        "--prices",
        str(ROOT / "data/prices.yaml"),
        "--metrics",
        "m/ingest.json",
        cwd=tmp_path,
    )
    assert ok.returncode == 0, ok.stderr
    assert re.search(r"accepted +2  \(2 new, 0 already stored\)", ok.stdout) and re.search(
        r"out_of_range +1", ok.stdout
    )
    metrics = json.loads((tmp_path / "m/ingest.json").read_text())
    assert (metrics["rows_read"], metrics["accepted"], metrics["quarantined"]) == (3, 2, {"out_of_range": 1})
    strict = beast("ingest", str(src), *flags, "--prices", str(ROOT / "data/prices.yaml"), "--strict", cwd=tmp_path)
    assert strict.returncode == 1 and "--strict: 1 of 3 rows broke the contract" in strict.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["ingest", "nope.jsonl"], "nope.jsonl: file not found"),
        (["ingest", "t.jsonl", "--prices", "missing.yaml"], "missing.yaml: file not found"),
        (["traces", "import", "azure", "no/such/dir", "--out", "x"], "beast traces import: error: no/such/dir"),
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
# read (prices, model cards) and that DVC stages own (metrics, bench plot data). `beast ingest` / `beast eval routing`
# with --out elsewhere must leave data/ byte-identical with nothing new; only --metrics / --plots write those.
COMMITTED_DATA = ["data/prices.yaml", "data/models.yaml", "data/metrics/*.json", "data/plots/bench/*.csv"]


def checkout(tmp_path: Path) -> Path:
    work = tmp_path / "checkout"
    files = [Path("params.yaml")] + [
        p.relative_to(ROOT) for pattern in COMMITTED_DATA for p in sorted(ROOT.glob(pattern))
    ]
    assert {"data/metrics/ingest.json", "data/metrics/bench.json", "data/plots/bench/aiq.csv"} <= {
        str(f) for f in files
    }
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
    flags = [
        "--out",
        str(out / "traces"),
        "--quarantine",
        str(out / "q"),
    ]  # the quarantine default is data/quarantine (a DVC output)
    plain = beast("ingest", str(src), *flags, cwd=work)
    assert plain.returncode == 0, plain.stderr
    assert changed(before, tree(work / "data")) == [] and (out / "traces").is_dir()
    asked = beast("ingest", str(src), *flags, "--metrics", str(out / "metrics/ingest.json"), cwd=work)
    assert asked.returncode == 0, asked.stderr
    assert changed(before, tree(work / "data")) == []
    metrics = json.loads((out / "metrics/ingest.json").read_text())
    assert (metrics["rows_read"], metrics["stored"], metrics["already_stored"]) == (
        rows,
        0,
        rows,
    )  # the second ingest adds nothing


def test_bench_writes_dvc_metrics_and_plots_only_when_asked(
    tmp_path: Path, alpaca_slice: tuple[Path, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    from evaluation.routing import OUTPUTS

    src, _ = alpaca_slice
    work, out = checkout(tmp_path), tmp_path / "out"
    before = tree(work / "data")
    monkeypatch.chdir(work)  # in-process (~5 s a run on 2 cores): ./params.yaml and data/ are the checkout's
    assert main(["eval", "routing", "--traces", str(src), "--out", str(out / "plain"), "--folds", "2"]) == 0
    assert changed(before, tree(work / "data")) == []
    assert sorted(p.name for p in (out / "plain").iterdir()) == sorted(OUTPUTS)
    flags = ["--metrics", str(out / "bench.json"), "--plots", str(out / "plots")]
    assert main(["eval", "routing", "--traces", str(src), "--out", str(out / "asked"), "--folds", "2", *flags]) == 0
    assert changed(before, tree(work / "data")) == []
    assert sorted(p.name for p in (out / "plots").iterdir()) == ["aiq.csv", "cost_quality.csv", "pgr.csv"]
    summary, report = json.loads((out / "bench.json").read_text()), json.loads((out / "asked/report.json").read_text())
    assert (
        (summary["prompts"], summary["folds"]) == (120, 2)
        and "oracle" in summary["routers"]
        and set(summary["routers"]) <= set(report["routers"])
    )


@pytest.mark.parametrize(
    ("section", "module", "name"),
    [("ingest", "traces.ingest", "IngestParams"), ("evaluate", "evaluation.routing", "EvalParams")],
)
def test_params_sections_are_the_defaults_and_name_no_dvc_outputs(section: str, module: str, name: str) -> None:
    import importlib

    from core.config import load_params

    cls = getattr(importlib.import_module(module), name)
    assert load_params(ROOT / "params.yaml", section, cls) == cls()
    assert getattr(cls(), "metrics", None) is None and getattr(cls(), "plots", None) is None  # only --metrics / --plots


def test_contract_doc_is_generated_from_code() -> None:
    assert (ROOT / "docs" / "trace-contract.md").read_text() == render_markdown(), "run `make docs`"


def test_prefix_regime_choices_are_the_generators() -> None:
    from traces.synth import PREFIX_REGIMES

    assert cli.PREFIX_REGIMES == PREFIX_REGIMES
