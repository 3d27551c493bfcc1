"""Concurrency with real parallel processes (issue 9): several `beast ingest` into one dataset at once, two
trainings registering into one MLflow store at once, two gates promoting the same challenger at once.
Nothing is lost or stored twice, the registry stays whole, and exactly one process moves the aliases."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT

ENV = os.environ | {
    "DO_NOT_TRACK": "true",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "OMP_WAIT_POLICY": "PASSIVE",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
}


def _start(args: list[str], cwd: Path, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "beast.cli", *args],
        cwd=cwd,
        env=env or ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(procs: list[subprocess.Popen], timeout: float = 300) -> list[tuple[int, str, str]]:
    return [(p.wait(timeout), p.stdout.read(), p.stderr.read()) for p in procs]


def test_parallel_ingests_store_every_row_exactly_once(tmp_path: Path) -> None:
    """Four processes at once: two of them the same file, the others overlapping it by 100 rows each."""
    from traces.store import read_traces
    from traces.synth import main as synth

    synth(
        tmp_path / "all.jsonl",
        params_file=None,
        overrides={"rows": 600, "seed": 5, "malformed": 0.0},
        prices_file=ROOT / "data" / "prices.yaml",
    )
    lines = (tmp_path / "all.jsonl").read_text().splitlines(keepends=True)
    slices = {"a": (0, 300), "b": (200, 500), "c": (0, 300), "d": (400, 600)}
    for name, (lo, hi) in slices.items():
        (tmp_path / f"{name}.jsonl").write_text("".join(lines[lo:hi]))
    (tmp_path / "params.yaml").write_text(
        f"ingest:\n  out: {tmp_path / 'ds'}\n  quarantine: {tmp_path / 'q'}\n  metrics: null\n  prices: {ROOT / 'data' / 'prices.yaml'}\n"
    )
    procs = [
        _start(["ingest", str(tmp_path / f"{n}.jsonl"), "--params", str(tmp_path / "params.yaml")], tmp_path)
        for n in slices
    ]
    results = _finish(procs)
    assert [code for code, _, _ in results] == [0, 0, 0, 0], [err for _, _, err in results]
    ids = read_traces(tmp_path / "ds", columns=["request_id"])["request_id"].tolist()
    expected = {json.loads(line)["request_id"] for line in lines}
    assert len(ids) == len(set(ids)) == 600 and set(ids) == expected
    stored = [
        int(out.split("accepted")[2].split("(")[1].split()[0].replace(",", "")) for _, out, _ in results
    ]  # "(N new, ..."
    assert sum(stored) == 600  # each row stored by exactly one of the four
    assert not list((tmp_path / "q").glob("*.jsonl"))  # same content is already_stored, never a conflict


@pytest.fixture
def registry_with_two_versions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, Path]:
    from test_gate import _two_versions

    return _two_versions(tmp_path, monkeypatch)


def test_two_gates_promoting_at_once_make_exactly_one_move(registry_with_two_versions, tmp_path: Path) -> None:
    from test_gate import _aliases, _params_file, _write_experiment

    from models import registry

    uri, prices = registry_with_two_versions
    experiment, params = _write_experiment(tmp_path / "good.jsonl", 300, dq=0.0), _params_file(tmp_path)
    code = (
        "import sys; from pathlib import Path; from models import export as e; real = e.export\n"
        f"e.export = lambda *a, **k: real(*a, **k, prices_file=Path({str(prices)!r}), requests=())\n"
        "from pipelines.promote import main\n"
        f"main(Path({str(experiment)!r}), Path({str(params)!r}), out_dir=Path(sys.argv[1]), uri={uri!r}, bundle=Path({str(tmp_path / 'bundle')!r}))\n"
    )
    env = ENV | {"MLFLOW_TRACKING_URI": uri}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(tmp_path / f"gate{i}")],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    results = _finish(procs)
    assert [c for c, _, _ in results] == [0, 0], [e[-2000:] for _, _, e in results]
    assert _aliases(uri) == dict.fromkeys(registry.REGISTERED, ("2", "1"))  # not ("2", "2"): no double move
    moved = [out for _, out, _ in results if "champion 1 -> 2" in out]
    assert len(moved) == 1 and sum("nothing to move" in out for _, out, _ in results) == 1
    runs = registry.gate_runs(uri)
    assert sorted(bool(r.tags.get("beast.alias.quality")) for r in runs) == [False, True]


def test_two_trainings_register_at_once_without_corrupting_the_registry(
    routed, sample_dataset: Path, tmp_path: Path
) -> None:
    """Two `beast train cost` processes on one sqlite store: versions 1 and 2, both loadable, aliases set."""
    import yaml

    from models import registry

    folder = routed[0]
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    procs = []
    for i in range(2):
        params = yaml.safe_load((folder / "params.yaml").read_text())
        params["train"] |= {
            "out": str(tmp_path / f"m{i}"),
            "metrics": str(tmp_path / f"metrics{i}"),
            "plots": str(tmp_path / f"plots{i}"),
            "register": True,
        }
        (tmp_path / f"params{i}.yaml").write_text(yaml.safe_dump(params))
        procs.append(
            _start(
                ["train", "cost", "--params", str(tmp_path / f"params{i}.yaml"), "--traces", str(sample_dataset)],
                ROOT,
                ENV | {"MLFLOW_TRACKING_URI": uri},
            )
        )
    results = _finish(procs)
    assert [c for c, _, _ in results] == [0, 0], [e[-2000:] for _, _, e in results]
    champion, challenger = (registry.load_predictor("cost", a, uri) for a in ("champion", "challenger"))
    assert (champion.version.version, challenger.version.version) == ("1", "2")  # the newest is the challenger
    assert set(champion.boosters) == set(challenger.boosters) == {"mean", "p50", "p90"}  # both whole and loadable
