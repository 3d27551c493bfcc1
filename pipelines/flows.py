"""Prefect flows: `retrain` (ingest -> train x3 -> evaluate -> export the challenger -> replay it against the
champion -> gate) and `monitor` (drift of recent traces -> retrain when over the thresholds).

Tasks are thin wrappers around the stage functions (the same ones `beast` and DVC run); the flows only
orchestrate. Every task returns a small JSON-able dict, persisted as JSON (never a pickle) under
``<work>/results``, and is cached on its inputs, which include the run key:

- a retrain that fails part-way records its key as unfinished in ``<work>/retrain.json``; running it again
  with the same data and parameters reuses that key, so the tasks that completed are not recomputed;
- a retrain that completed marks its key done; the next one gets a new key and registers a new challenger.

Two retrains at once: the second waits on ``<work>/retrain.lock`` (then fails with a clear error), so the
registry and the bundle are never written by two flows; alias moves also take the registry's own lock.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass, replace
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import INPUTS, TASK_SOURCE
from prefect.filesystems import LocalFileSystem
from prefect.task_runners import ThreadPoolTaskRunner
from prefect.tasks import exponential_backoff

from core.cluster import ClusterParams
from core.config import Count, NonNegative, NonNegativeInt, Positive, load_params
from core.errors import BeastError
from core.files import file_lock, write_atomic

SAMPLES = (
    "data/sample/alpaca_eval.parquet",
    "data/sample/mooncake_conversation.jsonl.gz",
    "data/sample/azure_conv.csv.gz",
    "data/sample/azure_code.csv.gz",
)
PREDICTORS = ("quality", "cost", "cache")
RESULTS_BLOCK = "beast-results"  # LocalFileSystem block prefix: task results as JSON under <work>/results


@dataclass(frozen=True)
class RetrainParams:
    """Mirrors params.yaml -> retrain."""

    traces: tuple[str, ...] = SAMPLES  # trace files ingested at the start of every retrain
    replay_traces: str = "data/sample/alpaca_eval.parquet"  # prompts answered by several models, with quality
    evaluate: bool = True  # run the routing benchmark (`beast eval routing`) on the new predictors
    bundle: str = "data/bundle"  # the champion bundle routers load
    work: str = "data/prefect"  # run state, task results, candidate bundles, the replay experiment
    retries: NonNegativeInt = 2  # I/O tasks (ingest, export): attempts after the first, exponential backoff
    retry_delay_s: NonNegative = 2.0
    lock_timeout_s: Positive = 600.0  # a second retrain waits this long for the first
    task_runner: str = "sequential"  # or dask: the three trainings and the benchmark run at once on Dask workers
    cron: str = "0 3 * * *"  # `beast deploy`: nightly retrain
    monitor_interval_s: Count = 3600  # `beast deploy`: hourly drift check


# ----------------------------------------------------------------------------------------------- run keys


def fingerprint(paths: list[Path], params_file: Path) -> str:
    """What a retrain depends on: the input files' bytes (size + mtime for folders) and the params file."""
    digest = hashlib.sha256()
    for path in sorted(paths) + [params_file]:
        digest.update(str(path).encode())
        if path.is_file():
            digest.update(hashlib.sha256(path.read_bytes()).digest())
        elif path.is_dir():
            for f in sorted(q for q in path.rglob("*") if q.is_file()):
                st = f.stat()
                digest.update(f"{f.relative_to(path)}:{st.st_size}:{st.st_mtime_ns}".encode())
    return digest.hexdigest()[:16]


def run_key(state_file: Path, fp: str, now: dt.datetime) -> tuple[str, bool]:
    """(key, resumed): the unfinished key of an earlier run on the same inputs, else a new one."""
    try:
        state = json.loads(state_file.read_text())
    except (OSError, ValueError):
        state = {}
    if state.get("fingerprint") == fp and state.get("status") != "completed" and state.get("key"):
        return str(state["key"]), True
    return f"{fp}-{now:%Y%m%dT%H%M%S}", False


def _mark(state_file: Path, key: str, fp: str, status: str) -> None:
    write_atomic(
        state_file,
        json.dumps(
            {"key": key, "fingerprint": fp, "status": status, "at": dt.datetime.now(dt.UTC).isoformat()}
        ).encode(),
    )


# ------------------------------------------------------------------------------------------------- tasks

_CACHED = {"cache_policy": INPUTS + TASK_SOURCE, "persist_result": True, "result_serializer": "json"}


def _io(params: RetrainParams) -> dict:
    return {"retries": params.retries, "retry_delay_seconds": exponential_backoff(backoff_factor=params.retry_delay_s)}


@task(name="ingest", log_prints=True, **_CACHED)
def ingest_task(files: list[str], key: str, params_file: str) -> dict:
    """New trace files into the dataset (rows already stored are counted, not added)."""
    from traces import store
    from traces.ingest import IngestParams, ingest
    from traces.prices import load_prices

    params = replace(load_params(Path(params_file), "ingest", IngestParams), metrics=None)  # DVC owns ingest.json
    ingest_id = f"retrain-{key}"
    if store.has_ingest(params.out, ingest_id):  # stored by an attempt that died before its result was saved
        return {"ingest_id": ingest_id, "stored": None, "note": "already stored by an earlier attempt"}
    report = ingest([Path(f) for f in files], params, load_prices(params.prices), ingest_id=ingest_id)
    print(report.summary_line())  # log_prints: the run log shows rows read / accepted / quarantined
    return {
        "ingest_id": ingest_id,
        "rows_read": report.rows_read,
        "stored": report.stored,
        "already_stored": report.already_stored,
        "quarantined": sum(report.quarantined.values()),
    }


@task(name="train", **_CACHED)
def train_task(predictor: str, key: str, params_file: str) -> dict:
    """Train, evaluate and register one predictor (its new version becomes the ``challenger``)."""
    from models.train import flat_metrics, main

    (result,) = main([predictor], params_file=Path(params_file))
    version = result.version
    metrics = {k: float(v) for k, v in flat_metrics(result.trained.evaluation).items()}
    return {
        "predictor": predictor,
        "version": getattr(version, "version", None),
        "run_id": getattr(version, "run_id", None),
        "metrics": metrics,
    }


@task(name="evaluate", **_CACHED)
def evaluate_task(traces: str, out: str, key: str, params_file: str) -> dict:
    """The routing benchmark of the freshly trained predictors (k-fold on `traces`) into `out`; the committed DVC
    metrics / plot data (data/metrics/bench.json, data/plots/bench) are the `evaluate` stage's, not written here."""
    from evaluation.routing import main

    main(Path(traces), Path(out), params_file=Path(params_file))
    report = json.loads((Path(out) / "report.json").read_text())
    routers, pair = report["routers"], report["pair"]
    keep = (
        "learned/threshold",
        "learned/tradeoff",
        "prior/tradeoff",
        "knn/tradeoff",
        "pair/learned",
        "random",
        "oracle",
    )
    metrics = ("aiq", "aiq_vs_oracle", "cost_savings", "cost_savings_95")
    random_p95 = (pair.get("random_seeds") or {}).get("apgr_p95")
    return {
        "routers": {k: {m: routers[k].get(m) for m in metrics} for k in keep if k in routers},
        "apgr": pair.get("apgr"),
        "apgr_ci": pair.get("apgr_ci"),
        "random_apgr_p95": random_p95,
        "strong": pair.get("strong"),
    }


@task(name="export", **_CACHED)
def export_task(alias: str, out: str, key: str, params_file: str) -> dict:
    """`alias`'s versions as a bundle at `out` (replaced atomically), priced with params.yaml train.prices."""
    from models.export import export
    from models.train import TrainParams

    result = export(
        alias, Path(out), prices_file=load_params(Path(params_file), "train", TrainParams).prices, overwrite=True
    )
    return {
        "path": str(result.path),
        "versions": {p: e.get("version") for p, e in result.manifest["predictors"].items()},
    }


@task(name="aliases")
def aliases_task() -> dict:
    """Champion and challenger version of every predictor (never cached: the registry is the truth)."""
    from models import registry

    out = {}
    for p in PREDICTORS:
        found = {a: registry.version_by_alias(p, a) for a in (registry.CHAMPION, registry.CHALLENGER)}
        out[p] = {a: (v.version if v else None) for a, v in found.items()}
    return out


@task(name="replay", **_CACHED)
def replay_task(champion: str, challenger: str, traces: str, out: str, key: str, params_file: str) -> dict:
    """Both bundles on the quality predictor's held-out prompts; an experiment file for the gate."""
    from evaluation.replay import main

    result = main(Path(champion), Path(challenger), Path(traces), Path(out), params_file=Path(params_file))
    return {"experiment": out, "prompts": result.prompts, "dropped": dict(result.dropped)}


@task(name="gate", **_CACHED)
def gate_task(experiment: str, bundle: str, out_dir: str, key: str, params_file: str) -> dict:
    """The promotion gate on the replay; on promote it moves the aliases and re-exports the bundle."""
    from pipelines.promote import main

    decision = main(Path(experiment), params_file=Path(params_file), out_dir=Path(out_dir), bundle=Path(bundle))
    quality = decision.stats.get("quality", {})
    return {
        "promote": decision.promote,
        "reasons": [str(r) for r in decision.reasons],
        "quality_estimate": quality.get("estimate"),
        "quality_p": quality.get("p_value"),
    }


# ------------------------------------------------------------------------------------------------- flows


def summary_markdown(s: dict) -> str:
    """The run's summary as Markdown (the Prefect artifact and the end of `make run`)."""
    lines = [
        f"# retrain {s['key']}{' (resumed)' if s['resumed'] else ''}",
        "",
        "| predictor | version | key metrics |",
        "|---|---|---|",
    ]
    picks = {
        "quality": ("auc_vs_strongest", "auc", "brier"),
        "cost": ("azure.mdape", "alpaca.mdape"),
        "cache": ("auc",),
    }
    for p in PREDICTORS:
        t = s["trained"][p]
        shown = ", ".join(f"{m} {t['metrics'][m]:.3f}" for m in picks[p] if m in t["metrics"])
        lines.append(f"| {p} | {t['version']} | {shown} |")
    if s.get("evaluation"):
        ev = s["evaluation"]
        ci = ev.get("apgr_ci") or (None, None)
        ci_text = f" (95% CI {ci[0]:.3f} .. {ci[1]:.3f})" if None not in ci else ""
        p95 = f", random's 95th percentile {ev['random_apgr_p95']:.3f}" if ev.get("random_apgr_p95") is not None else ""
        lines += [
            "",
            f"Routing benchmark (strong model {ev['strong']}; pair/learned APGR {ev['apgr']:.3f}{ci_text}{p95}):",
            "",
            "| router | AIQ / oracle | cost saved vs always-strong at >= 95% of its quality | at 100% |",
            "|---|---|---|---|",
        ]

        def saved(v: float | None) -> str:
            return "never reaches it" if v is None else f"{v:.1%}"

        for name, r in ev["routers"].items():
            lines.append(
                f"| {name} | {r['aiq_vs_oracle']:.3f} | {saved(r.get('cost_savings_95'))} | {saved(r['cost_savings'])} |"
            )
    gate = s["gate"]
    lines += [
        "",
        f"Gate: **{'PROMOTE' if gate.get('promote') else 'KEEP CHAMPION'}** ({', '.join(gate.get('reasons', []))})",
        "",
        f"Bundle: `{s['bundle']}` (versions {s['bundle_versions']})",
    ]
    return "\n".join(lines) + "\n"


TASK_RUNNERS = ("sequential", "dask")


def task_runner(params: RetrainParams, cluster: ClusterParams):
    """`sequential`: one task at a time in this process. `dask`: submitted tasks on the `dask` section's cluster
    (a LocalCluster, or the scheduler it names); pays where independent tasks take long (training + benchmark)."""
    if params.task_runner not in TASK_RUNNERS:
        raise BeastError(
            f"params.yaml:retrain.task_runner: expected one of {', '.join(TASK_RUNNERS)}, got {params.task_runner!r}"
        )
    if params.task_runner == "sequential":
        return ThreadPoolTaskRunner(max_workers=1)
    from prefect_dask import DaskTaskRunner

    if cluster.scheduler:
        return DaskTaskRunner(address=cluster.scheduler)
    kwargs = {
        "n_workers": cluster.n_workers,
        "threads_per_worker": cluster.threads_per_worker,
        "memory_limit": cluster.memory_limit,
        "processes": True,
        "dashboard_address": None,
    }
    return DaskTaskRunner(cluster_class="distributed.LocalCluster", cluster_kwargs=kwargs)


def configured_retrain(params_file: str = "params.yaml"):
    """The `retrain` flow with the task runner params.yaml asks for (what `beast retrain` and `beast deploy` run)."""
    path = Path(params_file)
    runner = task_runner(load_params(path, "retrain", RetrainParams), load_params(path, "dask", ClusterParams))
    return retrain.with_options(task_runner=runner)


@flow(name="retrain", log_prints=True, task_runner=ThreadPoolTaskRunner(max_workers=1))
def retrain(params_file: str = "params.yaml") -> dict:
    """Ingest -> train the three predictors (new challengers) -> routing benchmark -> export the challenger ->
    replay it against the champion on held-out prompts -> gate (promote: aliases + bundle). Returns the summary."""
    logger = get_run_logger()
    params = load_params(Path(params_file), "retrain", RetrainParams)
    work = Path(params.work)
    with file_lock(work / "retrain.lock", "retrain", params.lock_timeout_s):
        fp = fingerprint([Path(t) for t in params.traces], Path(params_file))
        key, resumed = run_key(work / "retrain.json", fp, dt.datetime.now(dt.UTC))
        logger.info(f"run key {key}{' (resuming an unfinished run)' if resumed else ''}")
        _mark(work / "retrain.json", key, fp, "running")
        results = (work / "results").resolve()
        block = f"{RESULTS_BLOCK}-{hashlib.sha256(str(results).encode()).hexdigest()[:10]}"  # one per work folder
        LocalFileSystem(basepath=str(results)).save(block, overwrite=True)
        cached = {"result_storage": f"local-file-system/{block}"}
        io = cached | _io(params)
        ingested = ingest_task.with_options(**io)(list(params.traces), key, params_file)
        # independent of each other: on a Dask task runner they run at once (sequential by default)
        training = {p: train_task.with_options(**cached).submit(p, key, params_file) for p in PREDICTORS}
        benchmark = (
            evaluate_task.with_options(**cached).submit(params.replay_traces, str(work / "bench"), key, params_file)
            if params.evaluate
            else None
        )
        trained = {p: f.result() for p, f in training.items()}
        evaluation = benchmark.result() if benchmark is not None else None
        versions = aliases_task()
        gate: dict
        if all(v["champion"] == v["challenger"] for v in versions.values()):
            gate = {"promote": None, "reasons": ["first version: the challenger already is the champion"]}
        else:
            challenger = export_task.with_options(**io)("challenger", str(work / "challenger-bundle"), key, params_file)
            champion = export_task.with_options(**io)("champion", str(work / "champion-bundle"), key, params_file)
            replayed = replay_task.with_options(**cached)(
                champion["path"], challenger["path"], params.replay_traces, str(work / "replay.jsonl"), key, params_file
            )
            gate = gate_task.with_options(**cached)(
                replayed["experiment"], params.bundle, str(work / "gate"), key, params_file
            )
        bundle = Path(params.bundle)
        if not (bundle / "manifest.json").exists() or gate.get("promote") is None:
            export_task.with_options(**io)(
                "champion", str(bundle), key, params_file
            )  # routers always find the champion here
        manifest = json.loads((bundle / "manifest.json").read_text())
        summary = {
            "key": key, "resumed": resumed, "ingest": ingested, "trained": trained, "evaluation": evaluation, "gate": gate,
            "bundle": str(bundle), "bundle_versions": {p: e.get("version") for p, e in manifest["predictors"].items()},
        }  # fmt: skip
        markdown = summary_markdown(summary)
        create_markdown_artifact(
            markdown=markdown, key="retrain-summary", description="metrics, routing benchmark, gate decision, bundle"
        )
        write_atomic(work / "summary.md", markdown.encode())
        _mark(work / "retrain.json", key, fp, "completed")
        return summary


@flow(name="monitor", log_prints=True)
def monitor(params_file: str = "params.yaml", recent: str | None = None) -> dict:
    """Drift of recent traces against the training data; runs `retrain` when a threshold is crossed."""
    from monitoring.drift import main as drift_main

    report = drift_main(Path(recent) if recent else None, Path(params_file))
    reasons = list(getattr(report, "reasons", ()))
    out = {"retrain": bool(report.retrain), "reasons": reasons}
    create_markdown_artifact(
        markdown=f"# monitor\n\nretrain: **{out['retrain']}**\n\n" + "\n".join(f"- {r}" for r in reasons) + "\n",
        key="monitor-summary",
    )
    if report.retrain:
        out["summary"] = configured_retrain(params_file)(params_file)
    return out
