"""`dvc repro` reproduces the committed metrics, and `dvc exp run -S ...` makes a listed experiment.

The repository's files (tracked, plus new files not ignored by git: the working tree as it would be committed)
are copied to a temporary folder, made a git repository with one commit, and the pipeline is run there from
scratch (no DVC cache, no outputs) with the copy's code first on PYTHONPATH. In the copy `train.register` is
set to false (and MLFLOW_TRACKING_URI points into the temp folder as well), so nothing is registered anywhere.

Tolerance: every metric of data/metrics/{ingest,quality,cost,cache,bench}.json must equal the committed one:
integers and strings exactly, floats to a relative 1e-6. They are deterministic (seeded splits and folds,
LightGBM with a fixed num_threads and deterministic=True) and come out bit-identical on the machine that made
them; the 1e-6 only absorbs last-bit differences of another CPU / BLAS in the SVD of the text features.

Time: the full `dvc repro` (ingest, 3 x train, evaluate = the 5-fold routing benchmark on the committed
AlpacaEval sample, as committed: no smaller `evaluate.folds`, since its metrics are compared) takes ~1.5-2.5 min on
2 cores; the experiment re-runs only `train_quality` (target given: an experiment of the whole pipeline would
also re-run the 5-fold benchmark, whose params include train.quality) in ~25 s. OMP_WAIT_POLICY=PASSIVE keeps
LightGBM's OpenMP threads from spin-waiting on a busy machine (one training went from 166 s to 8 s under load);
it changes no number.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import ROOT

METRICS = ("ingest", "quality", "cost", "cache", "bench")
REL_TOL = 1e-6
REPRO_TIMEOUT_S = 420

pytestmark = pytest.mark.slow


def _repo_files(root: Path) -> list[Path]:
    """Tracked files plus untracked ones git does not ignore (what a commit of the working tree would hold)."""
    out = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=root,
        capture_output=True,
        check=True,
    ).stdout
    return sorted({Path(p.decode()) for p in out.split(b"\0") if p and (root / p.decode()).is_file()})


def _env(copy: Path, tmp: Path) -> dict[str, str]:
    env = os.environ | {
        "PYTHONPATH": str(copy),  # the copy's code, not the editable install of the original
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",  # `beast` of this venv
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp / 'mlflow.db'}",
        "OMP_WAIT_POLICY": "PASSIVE",
        "DO_NOT_TRACK": "true",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DVC_NO_ANALYTICS": "1",
        "GIT_AUTHOR_NAME": "test",
        "GIT_AUTHOR_EMAIL": "test@example.invalid",
        "GIT_COMMITTER_NAME": "test",
        "GIT_COMMITTER_EMAIL": "test@example.invalid",
    }
    return env


def _run(
    args: list[str], cwd: Path, env: dict[str, str], timeout: float = REPRO_TIMEOUT_S
) -> subprocess.CompletedProcess:
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, (
        f"{' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    )
    return proc


def _dvc(*args: str) -> list[str]:
    return [sys.executable, "-m", "dvc", *args]


FIRST_LOCK = "dvc.lock.first-repro"  # beside the copy: its dvc.lock right after the repro from scratch
_REPROS: dict[str, tuple[Path, dict[str, str], float] | BaseException] = {}


def repro_copy(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str], float]:
    """The copy after one `dvc repro` from scratch, its env and the seconds it took. Once per session (a failure
    or skip too: the repro is not tried twice)."""
    if "repro" not in _REPROS:
        try:
            _REPROS["repro"] = _first_repro(tmp_path_factory)
        except BaseException as exc:
            _REPROS["repro"] = exc
    got = _REPROS["repro"]
    if isinstance(got, BaseException):
        raise got
    return got


@pytest.fixture(scope="module")
def repro(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str], float]:
    return repro_copy(tmp_path_factory)


def _first_repro(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str], float]:
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    tmp = tmp_path_factory.mktemp("dvc-repro")
    copy = tmp / "repo"
    for rel in _repo_files(ROOT):
        (copy / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, copy / rel)
    params = yaml.safe_load((copy / "params.yaml").read_text())
    assert params["train"]["register"] is True, "the committed pipeline registers its predictors"
    text = (copy / "params.yaml").read_text()
    assert text.count("\n  register: true") == 1
    (copy / "params.yaml").write_text(text.replace("\n  register: true", "\n  register: false"))
    env = _env(copy, tmp)
    for args in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-q", "-m", "copy"]):
        _run(args, copy, env, timeout=60)
    started = time.perf_counter()
    _run(_dvc("repro"), copy, env)
    seconds = time.perf_counter() - started
    shutil.copy2(copy / "dvc.lock", tmp / FIRST_LOCK)  # later tests here change the copy's lock (exp run)
    return copy, env, seconds


def _compare(got: object, want: object, where: str) -> list[str]:
    """Differences between two JSON values: floats to REL_TOL, everything else exactly."""
    if isinstance(want, dict) and isinstance(got, dict):
        if set(got) != set(want):
            return [f"{where}: keys {sorted(set(got) ^ set(want))} differ"]
        return [d for k in want for d in _compare(got[k], want[k], f"{where}.{k}")]
    if isinstance(want, list) and isinstance(got, list):
        if len(got) != len(want):
            return [f"{where}: {len(got)} items, committed {len(want)}"]
        return [d for i, (g, w) in enumerate(zip(got, want)) for d in _compare(g, w, f"{where}[{i}]")]
    if isinstance(want, float) and isinstance(got, (int, float)) and not isinstance(got, bool):
        return (
            []
            if math.isclose(got, want, rel_tol=REL_TOL, abs_tol=1e-12)
            else [f"{where}: {got!r} != committed {want!r}"]
        )
    return [] if got == want and type(got) is type(want) else [f"{where}: {got!r} != committed {want!r}"]


@pytest.mark.parametrize("name", METRICS)
def test_repro_reproduces_the_committed_metrics(repro, name: str) -> None:
    copy, _, _ = repro
    committed = ROOT / "data" / "metrics" / f"{name}.json"
    assert committed.exists(), f"{committed} is not committed: run `dvc repro` and commit the metrics"
    got, want = json.loads((copy / committed.relative_to(ROOT)).read_text()), json.loads(committed.read_text())
    assert not _compare(got, want, name), "\n".join(_compare(got, want, name))


def test_repro_leaves_everything_up_to_date_and_plot_data(repro) -> None:
    copy, env, seconds = repro
    status = json.loads(_run(_dvc("status", "--json"), copy, env, timeout=120).stdout or "{}")
    assert status == {}, status
    assert seconds < REPRO_TIMEOUT_S
    plots = json.loads(_run(_dvc("plots", "show", "--json"), copy, env, timeout=120).stdout)
    data = plots["data"]
    for plot_id, fields in {
        "bench_cost_quality": {"oracle", "learned/tradeoff", "random"},
        "bench_pgr": {"pair/learned", "random"},
    }.items():
        values = data[plot_id][0]["content"]["data"]["values"]
        assert fields <= {v["field"] for v in values}, plot_id
    calibration = [v for v in data["quality_calibration"][0]["content"]["data"]["values"] if "predicted" in v]
    table = json.loads((copy / "data" / "metrics" / "quality.json").read_text())["tables"]["reliability"]
    # one point per non-empty bin of the 10 (ece_bins): today no prediction reaches 0.9, so bin 9 is empty
    assert len(calibration) == len(table) >= 9 and {row["bin"] for row in table} <= set(range(10))


def test_exp_run_with_a_param_override_is_listed(repro) -> None:
    copy, env, _ = repro
    _run(_dvc("exp", "run", "-S", "train.quality.num_leaves=63", "train_quality"), copy, env)
    shown = json.loads(_run(_dvc("exp", "show", "--json"), copy, env, timeout=120).stdout)
    experiments = [rev for entry in shown for exp in (entry.get("experiments") or []) for rev in exp["revs"]]
    leaves = [rev["data"]["params"]["params.yaml"]["data"]["train"]["quality"]["num_leaves"] for rev in experiments]
    assert 63 in leaves, leaves
    exp = experiments[leaves.index(63)]
    quality = exp["data"]["metrics"]["data/metrics/quality.json"]["data"]["metrics"]
    assert 0.5 < quality["auc_vs_strongest"] < 1.0
    assert exp["name"]


def test_committed_bench_plot_data_agrees_with_its_metrics() -> None:
    """Known answers of the committed evaluate outputs (no run): PGR is 0 with every call to the weak model and 1
    with every call to the strong one; aiq.csv and bench.json carry the same AIQs; the hulls never decrease."""
    import csv

    bench = json.loads((ROOT / "data" / "metrics" / "bench.json").read_text())
    folder = ROOT / "data" / "plots" / "bench"
    pgr = list(csv.DictReader((folder / "pgr.csv").open()))
    assert (float(pgr[0]["share"]), float(pgr[0]["pair/learned"]), float(pgr[0]["random"])) == (0.0, 0.0, 0.0)
    assert (float(pgr[-1]["share"]), float(pgr[-1]["pair/learned"]), float(pgr[-1]["random"])) == (1.0, 1.0, 1.0)
    aiq = {row["router"]: float(row["aiq"]) for row in csv.DictReader((folder / "aiq.csv").open())}
    for name, scores in bench["routers"].items():
        assert math.isclose(aiq[name], scores["aiq"], abs_tol=2e-6), name
    curves = list(csv.DictReader((folder / "cost_quality.csv").open()))
    for name in bench["routers"]:
        if name.startswith("always/"):
            continue
        values = [float(row[name]) for row in curves]
        assert all(b >= a - 1e-9 for a, b in zip(values, values[1:])), name
    assert bench["routers"]["oracle"]["aiq"] == max(s["aiq"] for s in bench["routers"].values())


def _outs(lock_text: str) -> dict[str, dict]:
    """Every output dvc.lock records (path -> md5, size, nfiles): what a repro produced, byte for byte."""
    lock = yaml.safe_load(lock_text)
    return {
        f"{name}: {out['path']}": {k: out.get(k) for k in ("md5", "size", "nfiles")}
        for name, stage in lock["stages"].items()
        for out in stage.get("outs", [])
    }


def test_a_clean_repro_gives_the_committed_outputs(tmp_path_factory: pytest.TempPathFactory) -> None:
    """The committed dvc.lock comes from `make repro` in a working copy; this file's repro runs from scratch in
    a fresh copy, on another day or machine (here, not in test_repro_determinism.py: `make test` hands whole
    files to its workers, and the repro is made once per worker). Every output hash the two record must be equal (the
    params differ only in `train.register`, which changes no output)."""
    copy, _, _ = repro_copy(tmp_path_factory)
    got, want = _outs((copy.parent / FIRST_LOCK).read_text()), _outs((ROOT / "dvc.lock").read_text())
    differ = sorted(k for k in got.keys() | want.keys() if got.get(k) != want.get(k))
    assert differ == [], f"outputs differ between a clean repro and the committed dvc.lock (run make repro?): {differ}"
