"""Scale benchmark, measured in one run: the cost predictor's features + training on one process vs on a
Dask LocalCluster (wall time, peak memory of the whole process tree, held-out metrics), and Optuna trials
per minute with 1 vs 2 Dask workers sharing one study (the code path of `beast tune --workers N`).

Each training mode runs in a fresh subprocess (`_child`), so its peak memory starts clean; the parent
samples the summed RSS of that process and all its descendants (Dask nanny and worker processes) every 0.1 s.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from importlib import import_module
from pathlib import Path

import psutil

from core.cluster import ADDRESS_ENV, ClusterParams, client
from core.config import load_params
from core.errors import BeastError
from features.distributed import read_dataset, stored_rows
from models import cost, cost_dask
from models.train import TrainParams
from models.tune import TuneParams, check_parallel, shared_study, shares, worker_trials
from traces.ingest import IngestParams, ingest
from traces.prices import load_prices
from traces.store import read_traces
from traces.synth import SynthParams, synth_frame, write_trace

DEFAULT_STORAGE = "postgresql+psycopg2://beast@127.0.0.1:5433/optuna"  # the PostgreSQL of `make stack`
MODES = ("single", "dask")
SHOWN = ("azure.mdape", "azure.p90_coverage", "alpaca.mdape", "azure.sum_error_mean")
HOLDOUT_SHARE = 0.2  # of the dataset's time span: the azure test side of the benchmark's time split
SAMPLE_S = 0.1
GIB = 2**30
LOG_TAIL = 30
# `-c`, not `-m benchmarks.scale`: Dask spawns its workers by re-importing the parent's __main__ module, and
# this one's imports would add seconds to every worker start that `beast train cost` does not pay
CHILD = "import sys; from benchmarks.scale import _child; sys.exit(_child(sys.argv[1:]))"


@dataclass(frozen=True)
class ModeRun:
    """One training mode in its own process: wall time and peak RSS seen by the parent, the rest by the child."""

    mode: str
    wall_s: float
    peak_rss_bytes: int
    steps: Mapping[str, float]  # seconds per step, measured in the child
    metrics: Mapping[str, float]  # held-out metrics (`Evaluation.metrics`)
    train_rows: int
    test_rows: int


@dataclass(frozen=True)
class TuneRun:
    """`trials` Optuna trials on `workers` Dask workers, timed from submit to gather."""

    workers: int
    finished: int
    complete: int
    pruned: int
    seconds: float
    busy: float  # summed trial durations / seconds: how many trials ran at once on average

    @property
    def per_minute(self) -> float:
        return 60 * self.finished / self.seconds


@dataclass(frozen=True)
class BenchResult:
    rows: int
    machine: Mapping[str, object]
    cost_params: Mapping[str, object]
    modes: tuple[ModeRun, ...]
    dask_vs_single_wall: float
    dask_vs_single_peak_rss: float
    tune: tuple[TuneRun, ...]  # empty when the Optuna part was skipped
    tune_rows: int
    tune_note: str  # why it was skipped, or ""


# ------------------------------------------------------------------------------------------ data


def _dataset(work: Path, rows: int, prices_path: Path) -> Path:
    """The benchmark's stored dataset in `work/traces`: synthesised and ingested once, reused on a rerun."""
    dataset = work / "traces"
    if stored_rows(dataset):
        print(f"data: reusing {stored_rows(dataset):,} rows in {dataset} (--rows ignored)")
        return dataset
    prices = load_prices(prices_path)
    started = time.perf_counter()
    source = write_trace(synth_frame(SynthParams(rows=rows, seed=0), prices), work / "synth.parquet").path
    print(f"data: synthesised {rows:,} rows in {time.perf_counter() - started:.1f} s", flush=True)
    report = ingest(
        [source], IngestParams(out=dataset, quarantine=work / "quarantine", prices=prices_path, metrics=None), prices
    )
    print(
        f"data: ingested {report.stored:,} rows into {dataset} in {report.seconds:.1f} s (not part of the comparison)",
        flush=True,
    )
    source.unlink()
    return dataset


def bench_params(params: cost.CostParams, dataset: Path) -> cost.CostParams:
    """Every model on the time split, holding out the last `HOLDOUT_SHARE` of the span: synthetic traces carry
    a prompt_id on ~22% of rows only, so params.yaml's azure-only split would leave most rows on neither side."""
    frame = read_traces(dataset, ["model", "timestamp"])
    span_min = (frame["timestamp"].max() - frame["timestamp"].min()).total_seconds() / 60
    return replace(
        params,
        time_split_models=tuple(sorted(frame["model"].dropna().unique())),
        azure_holdout_minutes=round(HOLDOUT_SHARE * span_min, 1),
    )


# ------------------------------------------------------------------------------------------ one mode (child)


def _run_mode(
    mode: str, dataset: Path, params: cost.CostParams, prices_path: Path, cluster: ClusterParams
) -> dict[str, object]:
    """`beast train cost` on one engine: steps (s) and the held-out evaluation, as JSON-ready values."""
    steps = {"python start + imports": time.time() - psutil.Process().create_time()}
    prices = load_prices(prices_path)
    started = time.perf_counter()
    if mode == "single":
        traces = read_traces(dataset, list(cost_dask.COLUMNS))
        steps["read dataset"] = time.perf_counter() - started
        started = time.perf_counter()
        _, evaluation = cost.fit_and_evaluate(traces, prices, params)
        steps["features + fit + evaluate"] = time.perf_counter() - started
    else:
        with client(cluster) as dask_client:
            steps["cluster start"] = time.perf_counter() - started
            started = time.perf_counter()
            _, evaluation = cost_dask.fit_and_evaluate(
                dask_client, read_dataset(dataset, cost_dask.COLUMNS, cluster.partition_rows), prices, params
            )
            steps["read + features + fit + evaluate"] = time.perf_counter() - started
            started = time.perf_counter()
        steps["cluster stop"] = time.perf_counter() - started
    return {
        "steps": steps,
        "metrics": dict(evaluation.metrics),
        "train_rows": evaluation.n_train,
        "test_rows": evaluation.n_test,
    }


def _tree_rss(proc: psutil.Process) -> int:
    """Summed RSS of `proc` and all its descendants (processes that vanish meanwhile count 0)."""
    total = 0
    try:
        family = [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return 0
    for p in family:
        with contextlib.suppress(psutil.Error):
            total += p.memory_info().rss
    return total


def run_mode(
    mode: str, dataset: Path, params: cost.CostParams, prices_path: Path, cluster: ClusterParams, work: Path
) -> ModeRun:
    """`mode` in a fresh subprocess whose process tree is sampled for peak RSS; its output goes to a log shown
    only when it fails (LightGBM's network setup on Dask prints [Info] lines)."""
    log, result = work / f"{mode}.log", work / f"{mode}.json"
    argv = [
        sys.executable,
        "-c",
        CHILD,
        "--one",
        mode,
        "--dataset",
        str(dataset),
        "--prices",
        str(prices_path),
        "--result",
        str(result),
    ]
    argv += ["--cost", json.dumps(asdict(params)), "--cluster", json.dumps(asdict(cluster))]
    peak = 0
    started = time.perf_counter()
    with log.open("wb") as out:
        child = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
        tree = psutil.Process(child.pid)
        while child.poll() is None:
            peak = max(peak, _tree_rss(tree))
            time.sleep(SAMPLE_S)
    wall = time.perf_counter() - started
    if child.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-LOG_TAIL:])
        raise BeastError(f"bench-scale: the {mode} run failed (exit {child.returncode}); last lines of {log}:\n{tail}")
    out = json.loads(result.read_text())
    return ModeRun(mode, wall, peak, out["steps"], out["metrics"], out["train_rows"], out["test_rows"])


def _child(argv: list[str]) -> int:
    """Entry point of the subprocess `run_mode` starts; writes its result as JSON to --result."""
    p = argparse.ArgumentParser(prog="bench-scale child", description="one mode of `beast bench scale` (started by it)")
    p.add_argument("--one", choices=MODES, required=True)
    p.add_argument("--dataset", type=Path, required=True)
    p.add_argument("--prices", type=Path, required=True)
    p.add_argument("--result", type=Path, required=True)
    p.add_argument("--cost", type=json.loads, required=True, help="CostParams as JSON")
    p.add_argument("--cluster", type=json.loads, required=True, help="ClusterParams as JSON")
    args = p.parse_args(argv)
    params = cost.CostParams(**args.cost | {"time_split_models": tuple(args.cost["time_split_models"])})
    out = _run_mode(args.one, args.dataset, params, args.prices, ClusterParams(**args.cluster))
    args.result.write_text(json.dumps(out))
    return 0


# ------------------------------------------------------------------------------------------ Optuna


def storage_problem(storage: str) -> str:
    """Why 2 workers cannot share a study in `storage` ('' = they can): a SQLite file, or no server answering."""
    try:
        check_parallel(TuneParams(storage=storage, workers=2))
    except BeastError as exc:
        return str(exc)
    from sqlalchemy import create_engine
    from sqlalchemy.exc import SQLAlchemyError

    try:
        with create_engine(storage).connect():
            return ""
    except SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        return f"cannot connect to {storage} ({reason}); start PostgreSQL with `make stack` (or pass --storage)"


def tune_run(problem, params: TuneParams, cluster: ClusterParams) -> TuneRun:
    """`params.trials` trials on `params.workers` Dask workers, one `worker_trials` task each (as
    `models.tune._parallel`), on a fresh study that is deleted afterwards."""
    import optuna

    name = f"bench-scale-{uuid.uuid4().hex[:12]}"
    study = shared_study(name, params, problem.maximize, params.seed, parallel=True)
    try:
        with client(replace(cluster, n_workers=params.workers)) as dask_client:
            data = dask_client.scatter(problem, broadcast=True)
            dask_client.run(import_module, "models.tune")  # Optuna and LightGBM are imported outside the timed window
            started = time.perf_counter()
            futures = [
                dask_client.submit(worker_trials, name, data, params, i, n, pure=False)
                for i, n in enumerate(shares(params.trials, params.workers))
                if n
            ]
            finished = sum(dask_client.gather(futures))
            seconds = time.perf_counter() - started
        trials = optuna.load_study(study_name=study.study_name, storage=params.storage).trials
    finally:
        optuna.delete_study(study_name=study.study_name, storage=params.storage)
    states = [t.state for t in trials]
    busy = (
        sum((t.datetime_complete - t.datetime_start).total_seconds() for t in trials if t.datetime_complete) / seconds
    )
    return TuneRun(
        params.workers,
        finished,
        states.count(optuna.trial.TrialState.COMPLETE),
        states.count(optuna.trial.TrialState.PRUNED),
        seconds,
        busy,
    )


def tuning_subset(dataset: Path, rows: int):
    """A seeded sample of `rows` stored rows (in time order), for the tuning problem."""
    traces = read_traces(dataset, list(cost_dask.COLUMNS))
    return traces.sample(n=min(rows, len(traces)), random_state=0).sort_index() if rows < len(traces) else traces


# ------------------------------------------------------------------------------------------ report


def _metric(run: ModeRun, key: str) -> float:
    return float(run.metrics.get(key, float("nan")))


def _cell(value: float) -> str:
    """A metric cell; '-' for a metric the run has not got (alpaca.* when every model is on the time split)."""
    return f"{value:>22.4f}" if value == value else f"{'-':>22}"


def mode_table(runs: tuple[ModeRun, ...], rows: int) -> str:
    """Wall, peak RSS, rows/s and the held-out metrics per mode, then their absolute differences."""
    head = f"  {'mode':<8}{'wall s':>9}{'peak GiB':>10}{'rows/s':>11}" + "".join(f"{k:>22}" for k in SHOWN)
    lines = [head]
    for r in runs:
        lines.append(
            f"  {r.mode:<8}{r.wall_s:>9.1f}{r.peak_rss_bytes / GIB:>10.2f}{rows / r.wall_s:>11,.0f}"
            + "".join(_cell(_metric(r, k)) for k in SHOWN)
        )
    lines.append(f"  {'|diff|':<38}" + "".join(_cell(abs(_metric(runs[1], k) - _metric(runs[0], k))) for k in SHOWN))
    for r in runs:
        lines.append(
            f"  {r.mode} steps: "
            + ", ".join(f"{k} {v:.1f} s" for k, v in r.steps.items())
            + f"; {r.train_rows:,} train / {r.test_rows:,} test rows"
        )
    return "\n".join(lines)


def machine() -> dict[str, object]:
    return {
        "cpus": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / GIB, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def main(
    rows: int,
    workers: int,
    trials: int,
    tune_rows: int,
    storage: str,
    work: Path | None,
    out: Path,
    params_file: Path | None = None,
) -> BenchResult:
    if os.environ.pop(ADDRESS_ENV, None):
        print(f"bench-scale: ignoring ${ADDRESS_ENV}: the benchmark measures LocalClusters on this machine")
    train = load_params(params_file, "train", TrainParams)
    cluster = replace(load_params(params_file, "dask", ClusterParams), address="", n_workers=workers)
    with tempfile.TemporaryDirectory(prefix="beast-bench-scale-") as tmp:
        work = work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        dataset = _dataset(work, rows, train.prices)
        n_rows = stored_rows(dataset)
        params = bench_params(train.cost, dataset)
        print(
            f"cost params: time_split_models = all {len(params.time_split_models)} models, azure_holdout_minutes = {params.azure_holdout_minutes:g} "
            f"({HOLDOUT_SHARE:.0%} of the time span): synthetic rows carry a prompt_id on ~22% only, so the azure-only split would leave most on neither side"
        )
        print(
            f"\nfeatures + training of the cost predictor on {n_rows:,} rows: one process vs Dask ({workers} workers x {cluster.threads_per_worker} thread)",
            flush=True,
        )
        runs = tuple(run_mode(mode, dataset, params, train.prices, cluster, work) for mode in MODES)
        print(mode_table(runs, n_rows))
        wall_ratio, rss_ratio = runs[1].wall_s / runs[0].wall_s, runs[1].peak_rss_bytes / runs[0].peak_rss_bytes
        print(f"  ratios dask/single: wall time {wall_ratio:.2f}, peak memory {rss_ratio:.2f}", flush=True)

        print(f"\nOptuna: {trials} cost trials on 1 vs 2 Dask workers sharing one study in {storage}", flush=True)
        note = storage_problem(storage)
        tunes: tuple[TuneRun, ...] = ()
        if note:
            print(f"  skipped: {note}")
        else:
            import optuna

            optuna.logging.set_verbosity(optuna.logging.WARNING)
            problem = cost.tuning_problem(tuning_subset(dataset, tune_rows), params)
            print(
                f"  tuning problem: {len(problem.y_train):,} train / {len(problem.y_valid):,} validation rows of a {min(tune_rows, n_rows):,}-row sample",
                flush=True,
            )
            tune = replace(load_params(params_file, "tune", TuneParams), storage=storage, trials=trials, timeout_s=0.0)
            for n in (1, 2):
                run = tune_run(problem, replace(tune, workers=n), cluster)
                tunes += (run,)
                print(
                    f"  {n} worker(s): {run.finished} trials ({run.complete} complete, {run.pruned} pruned) in {run.seconds:.1f} s = {run.per_minute:.1f} trials/min ({run.busy:.2f} trials running on average)",
                    flush=True,
                )
            print(
                f"  ratio 2 workers / 1 worker: {tunes[1].per_minute / tunes[0].per_minute:.2f} x the trials per minute"
            )
    result = BenchResult(n_rows, machine(), asdict(params), runs, wall_ratio, rss_ratio, tunes, tune_rows, note)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            asdict(result) | {"tune_per_minute": {str(t.workers): t.per_minute for t in tunes}}, indent=2, default=str
        )
        + "\n"
    )
    print(f"\nresults: {out}")
    return result
