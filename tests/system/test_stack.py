"""`beast stack`: a real PostgreSQL + MLflow tracking server + Prefect server on free localhost ports.

Skips without PostgreSQL binaries unless BEAST_REQUIRE_STACK=1 (CI installs them). MLflow is driven over its
REST API with urllib: only models/registry.py may import mlflow (test_registry.py)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import psycopg2
import pytest
from conftest import ROOT

from core.errors import BeastError
from pipelines import stack
from pipelines.stack import StackParams, StackUrls

REQUEST_TIMEOUT_S = 10
FLOW = "beast-stack-probe"


def _have_postgres() -> bool:
    try:
        for tool in ("initdb", "pg_ctl"):
            stack.find_pg_bin(tool)
    except BeastError:
        return False
    return True


if not _have_postgres():
    if os.environ.get("BEAST_REQUIRE_STACK") == "1":
        raise RuntimeError(
            "BEAST_REQUIRE_STACK=1 but PostgreSQL (initdb, pg_ctl) is not installed: apt-get install postgresql"
        )
    pytest.skip(
        "PostgreSQL binaries (initdb, pg_ctl) not found: apt-get install postgresql (BEAST_REQUIRE_STACK=1 makes this a failure)",
        allow_module_level=True,
    )


def free_ports(n: int) -> list[int]:
    """n distinct ports the OS says are free (all bound at once, then released)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@dataclass(frozen=True)
class Running:
    params: StackParams
    urls: StackUrls
    pids: dict[str, int]


def pids(params: StackParams) -> dict[str, int]:
    return {row.name: row.pid for row in stack.status(params) if row.up and row.pid is not None}


def fresh_params(timeout_s: float) -> StackParams:
    """A new state dir and free ports. Not tmp_path: pytest's base temp is 0700 root, which the `postgres` OS
    user (PostgreSQL's runner when we are root) cannot enter."""
    state = Path(tempfile.mkdtemp(prefix="beast-stack-"))
    state.chmod(0o755)
    pg, ml, pf = free_ports(3)
    return StackParams(state=state, postgres_port=pg, mlflow_port=ml, prefect_port=pf, start_timeout_s=timeout_s)


@pytest.fixture(scope="module")
def running() -> Iterator[Running]:
    params = fresh_params(90.0)
    state = params.state
    try:
        urls = stack.up(params)
        yield Running(params, urls, pids(params))
    finally:
        stack.down(params)
        shutil.rmtree(state, ignore_errors=True)


def call(url: str, body: dict[str, Any] | None = None, method: str | None = None, data: bytes | None = None) -> Any:
    """One JSON request with a timeout; the decoded answer."""
    payload = data if data is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(url, data=payload, method=method, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=REQUEST_TIMEOUT_S) as response:  # noqa: S310 (localhost)
        text = response.read().decode()
    return json.loads(text) if text else None


def connect(params: StackParams, db: str = "postgres", host: str | None = None, **auth: str) -> Any:
    """A psycopg2 connection as the stack user; auth (password=...) only, never a password file or PGPASSWORD."""
    env = {k: os.environ.pop(k) for k in ("PGPASSWORD", "PGPASSFILE") if k in os.environ}
    try:
        return psycopg2.connect(
            host=host or params.host,
            port=params.postgres_port,
            user=params.user,
            dbname=db,
            connect_timeout=5,
            passfile="/nonexistent/beast-no-pgpass",  # not ~/.pgpass either
            **auth,
        )
    finally:
        os.environ.update(env)


def query(params: StackParams, db: str, sql: str, args: tuple = ()) -> list[tuple]:
    conn = connect(params, db, password=stack.read_secret(params) or "")
    try:
        with conn.cursor() as cur:
            cur.execute(sql, args)
            return cur.fetchall()
    finally:
        conn.close()


def test_urls_are_pure_and_typed() -> None:
    u = stack.urls(StackParams())
    assert u.optuna_storage == "postgresql+psycopg2://beast@127.0.0.1:5433/optuna"
    assert u.mlflow_backend == "postgresql://beast@127.0.0.1:5433/mlflow"
    assert (u.mlflow_tracking, u.prefect_api) == ("http://127.0.0.1:5000", "http://127.0.0.1:4200/api")
    assert u.prefect_db == "postgresql+asyncpg://beast@127.0.0.1:5433/prefect"
    assert u.pgpassfile == str(Path(".stack").resolve() / "pgpass")
    assert stack.exports(u).splitlines() == [
        "export MLFLOW_TRACKING_URI=http://127.0.0.1:5000",
        "export PREFECT_API_URL=http://127.0.0.1:4200/api",
        f"export OPTUNA_STORAGE={u.optuna_storage}",
        f"export PGPASSFILE={u.pgpassfile}",
    ]
    secret = stack.urls(StackParams(), "a/b:c@d")  # the servers' URLs: the secret URL-quoted
    assert secret.mlflow_backend == "postgresql://beast:a%2Fb%3Ac%40d@127.0.0.1:5433/mlflow"
    assert secret.prefect_db == "postgresql+asyncpg://beast:a%2Fb%3Ac%40d@127.0.0.1:5433/prefect"


def test_a_stack_created_with_trust_auth_is_refused(tmp_path: Path) -> None:
    params = StackParams(state=tmp_path / "old", postgres_port=free_ports(1)[0])
    (params.state / "postgres").mkdir(parents=True)
    (params.state / "postgres" / "PG_VERSION").write_text("15\n")  # a cluster, and no postgres.secret next to it
    with pytest.raises(BeastError, match=r"created with trust authentication .* `beast stack down && rm -rf .*/old`"):
        stack.up(params)
    assert not (params.state / "postgres.secret").exists()  # no secret made up for a cluster that lacks it


def test_everything_answers_and_the_databases_exist(running: Running) -> None:
    assert set(running.pids) == {"postgres", "mlflow", "prefect"}
    assert urllib.request.urlopen(f"{running.urls.mlflow_tracking}/health", timeout=REQUEST_TIMEOUT_S).status == 200
    assert call(f"{running.urls.prefect_api}/health") is True
    names = {row[0] for row in query(running.params, "postgres", "SELECT datname FROM pg_database")}
    assert {"mlflow", "prefect", "optuna"} <= names
    assert (
        query(running.params, "mlflow", "SELECT count(*) FROM alembic_version")[0][0] == 1
    )  # MLflow migrated its schema there


def test_postgres_wants_the_secret_on_socket_and_tcp(running: Running) -> None:
    params = running.params
    secret = stack.read_secret(params)
    assert secret and len(secret) >= 40
    for host in (params.host, str(params.state / "socket")):
        with pytest.raises(psycopg2.OperationalError, match="fe_sendauth: no password supplied"):
            connect(params, host=host)
        with pytest.raises(psycopg2.OperationalError, match='password authentication failed for user "beast"'):
            connect(params, host=host, password="not-the-secret")
        conn = connect(params, host=host, password=secret)
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT DISTINCT auth_method FROM pg_hba_file_rules")
                assert {row[0] for row in cur.fetchall()} == {"scram-sha-256"}
                cur.execute("SELECT rolpassword LIKE 'SCRAM-SHA-256$%%' FROM pg_authid WHERE rolname = %s", ("beast",))
                assert cur.fetchone() == (True,)
        finally:
            conn.close()
    # clients: the password file `beast stack env` exports, with the password-free URLs
    conn = psycopg2.connect(running.urls.postgres + "/optuna", passfile=running.urls.pgpassfile, connect_timeout=5)
    conn.close()


def test_up_again_starts_nothing(running: Running) -> None:
    assert stack.up(running.params) == running.urls
    assert pids(running.params) == running.pids


def test_a_port_taken_by_someone_else_is_a_clear_error(running: Running, tmp_path: Path) -> None:
    other = StackParams(state=tmp_path / "other", postgres_port=running.params.postgres_port)
    with pytest.raises(
        BeastError, match=f"postgres: port {running.params.postgres_port} on 127.0.0.1 is taken by another process"
    ):
        stack.up(other)


def test_a_start_that_times_out_stops_what_it_started(running: Running) -> None:
    params = fresh_params(3.0)  # postgres is up in ~1 s; the servers need ~15 s
    try:
        with pytest.raises(
            BeastError, match=r"(mlflow|prefect): not healthy within stack.start_timeout_s = 3 s; log .*\.log: "
        ):
            stack.up(params)
        assert [(row.name, row.up, row.pid) for row in stack.status(params)] == [
            ("postgres", False, None),
            ("mlflow", False, None),
            ("prefect", False, None),
        ]
        assert all(
            stack.port_free(params.host, port)
            for port in (params.postgres_port, params.mlflow_port, params.prefect_port)
        )
    finally:
        stack.down(params)
        shutil.rmtree(params.state, ignore_errors=True)


def test_mlflow_run_lands_in_postgres_and_artifacts_in_the_state_dir(running: Running) -> None:
    api = f"{running.urls.mlflow_tracking}/api/2.0/mlflow"
    exp = call(f"{api}/experiments/create", {"name": "stack-probe"})["experiment_id"]
    run = call(f"{api}/runs/create", {"experiment_id": exp, "start_time": int(time.time() * 1000)})["run"]["info"]
    call(
        f"{api}/runs/log-metric",
        {"run_id": run["run_id"], "key": "auc", "value": 0.875, "timestamp": int(time.time() * 1000), "step": 0},
    )
    metrics = call(f"{api}/runs/get?run_id={run['run_id']}")["run"]["data"]["metrics"]
    assert [(m["key"], m["value"]) for m in metrics] == [("auc", 0.875)]

    assert (
        run["artifact_uri"] == f"mlflow-artifacts:/{exp}/{run['run_id']}/artifacts"
    )  # proxied: clients upload over HTTP
    path = f"{exp}/{run['run_id']}/artifacts/notes/hello.txt"
    call(
        f"{running.urls.mlflow_tracking}/api/2.0/mlflow-artifacts/artifacts/{path}", method="PUT", data=b"hello stack\n"
    )
    assert (running.params.state / "mlartifacts" / path).read_bytes() == b"hello stack\n"
    listed = call(f"{api}/artifacts/list?run_id={run['run_id']}&path=notes")["files"]
    assert [f["path"] for f in listed] == ["notes/hello.txt"]

    rows = query(
        running.params,
        "mlflow",
        "SELECT r.experiment_id, m.value FROM runs r JOIN metrics m ON m.run_uuid = r.run_uuid WHERE r.run_uuid = %s AND m.key = 'auc'",
        (run["run_id"],),
    )
    assert rows == [(int(exp), 0.875)]


def test_prefect_flow_run_is_recorded_in_postgres(running: Running) -> None:
    code = f"from prefect import flow\n@flow(name={FLOW!r})\ndef probe():\n    return 42\nassert probe() == 42\n"
    env = {
        **os.environ,
        **stack.TELEMETRY_OFF,
        "PREFECT_API_URL": running.urls.prefect_api,
        "PREFECT_HOME": str(running.params.state / "client"),
    }
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]

    runs = call(f"{running.urls.prefect_api}/flow_runs/filter", {"flows": {"name": {"any_": [FLOW]}}})
    assert [r["state_type"] for r in runs] == ["COMPLETED"]
    rows = query(
        running.params,
        "prefect",
        "SELECT fr.state_type FROM flow_run fr JOIN flow f ON f.id = fr.flow_id WHERE f.name = %s",
        (FLOW,),
    )
    assert [str(r[0]) for r in rows] == ["COMPLETED"]


E2E_TIMEOUT_S = 300  # per command; the whole test takes ~2 min on 2 cores


def beast(args: list[str], work: Path, env: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "beast.cli", *args],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=E2E_TIMEOUT_S,
        check=False,
    )
    assert done.returncode == 0, f"beast {' '.join(args)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout + done.stderr


def scale_out_params(work: Path, urls: StackUrls) -> Path:
    """The repo's params.yaml with every output under `work`, the Dask engine and task runner on, and the Optuna
    study in the stack's PostgreSQL: the scale-out mode of the README."""
    import yaml

    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    data = ROOT / "data"
    for section in params.values():  # the committed inputs every stage reads, wherever it runs
        for key in ("prices", "cards"):
            if isinstance(section, dict) and isinstance(section.get(key), str):
                section[key] = str(ROOT / section[key])
    params["ingest"] |= {
        "out": str(work / "traces"),
        "quarantine": str(work / "quarantine"),
        "metrics": None,
        "prices": str(data / "prices.yaml"),
    }
    params["train"] |= {
        "traces": str(work / "traces"),
        "out": str(work / "models"),
        "metrics": str(work / "metrics"),
        "plots": str(work / "plots"),
        "prices": str(data / "prices.yaml"),
        "cards": str(data / "models.yaml"),
    }
    # what this test is about is where the work runs, not how good the models are: the quality predictor trains
    # one shared head of 60 rounds without the prior-fallback cross-validation (the full one: test_dvc_repro.py)
    params["train"]["quality"] |= {"heads": "shared", "num_boost_round": 60, "prior_fallback": False}
    params["train"]["cache"] |= {"num_boost_round": 60}
    params["dask"] |= {"engine": "dask", "n_workers": 2, "partition_rows": 20000}
    params["tune"] |= {"storage": urls.optuna_storage, "workers": 2, "trials": 4, "report": str(work / "metrics")}
    samples = [
        str(data / "sample" / n)
        for n in ("alpaca_eval.parquet", "mooncake_conversation.jsonl.gz", "azure_conv.csv.gz", "azure_code.csv.gz")
    ]
    params["retrain"] |= {
        "traces": samples,
        "replay_traces": samples[0],
        "evaluate": False,
        "bundle": str(work / "bundle"),
        "work": str(work / "prefect"),
        "task_runner": "dask",
    }
    path = work / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def test_scale_out_end_to_end(running: Running, tmp_path: Path) -> None:
    """The retrain flow on the Prefect server with a Dask task runner (cost trained with lightgbm.dask inside it),
    every version registered in the MLflow server on PostgreSQL, then 2 Optuna workers sharing one PostgreSQL study."""
    urls, params = running.urls, running.params
    env = {
        **os.environ,
        **stack.TELEMETRY_OFF,
        "PYTHONPATH": str(ROOT),
        "MLFLOW_TRACKING_URI": urls.mlflow_tracking,
        "PREFECT_API_URL": urls.prefect_api,
        "PREFECT_HOME": str(tmp_path / "prefect-home"),
        "PGPASSFILE": urls.pgpassfile,  # as `beast stack env`: the Optuna workers log in with it
    }
    env.pop("BEAST_DASK_ADDRESS", None)
    params_file = scale_out_params(tmp_path, urls)

    out = beast(["retrain", "--params", str(params_file)], tmp_path, env)
    assert "trained on Dask (lightgbm.dask, data-parallel)" in out
    for predictor in ("quality", "cost", "cache"):
        assert f"registered beast-{predictor} version 1 (challenger, champion)" in out
    assert json.loads((tmp_path / "bundle" / "manifest.json").read_text())["predictors"]["cost"]["version"] == "1"

    flows = query(
        params,
        "prefect",
        "SELECT fr.state_type FROM flow_run fr JOIN flow f ON f.id = fr.flow_id WHERE f.name = 'retrain'",
    )
    assert [str(r[0]) for r in flows] == ["COMPLETED"]
    tasks = query(
        params,
        "prefect",
        "SELECT tr.name, tr.state_type FROM task_run tr JOIN flow_run fr ON fr.id = tr.flow_run_id JOIN flow f ON f.id = fr.flow_id WHERE f.name = 'retrain' AND tr.name LIKE 'train-%%'",
    )
    assert len(tasks) == 3 and {str(t[1]) for t in tasks} == {"COMPLETED"}
    aliases = query(params, "mlflow", "SELECT name, alias, version FROM registered_model_aliases ORDER BY name, alias")
    assert aliases == [(f"beast-{p}", a, 1) for p in ("cache", "cost", "quality") for a in ("challenger", "champion")]
    assert list((params.state / "mlartifacts").rglob("p90.txt")), (
        "the cost boosters were uploaded through the tracking server"
    )

    out = beast(["tune", "cost", "--params", str(params_file)], tmp_path, env)
    assert "cost: 4 trials on 2 workers sharing beast-cost" in out
    trials = query(
        params,
        "optuna",
        "SELECT t.state FROM trials t JOIN studies s ON s.study_id = t.study_id WHERE s.study_name = 'beast-cost'",
    )
    assert len(trials) == 4 and {str(t[0]) for t in trials} <= {"COMPLETE", "PRUNED"}
    logged = query(
        params,
        "mlflow",
        "SELECT count(*) FROM runs r JOIN experiments e ON e.experiment_id = r.experiment_id WHERE e.name = 'beast-cost-tuning'",
    )
    assert logged == [(4,)]


def test_the_secret_is_private_and_never_shown(running: Running, tmp_path: Path) -> None:
    """0600 files of the invoking user; not in any log, command line, `beast stack status|env` output."""
    params = running.params
    secret = stack.read_secret(params)
    assert secret
    for name in ("postgres.secret", "pgpass"):
        info = (params.state / name).stat()
        assert (stat.S_IMODE(info.st_mode), info.st_uid) == (0o600, os.getuid()), name
    assert not list(params.state.glob(".initdb-pw-*"))  # the copy initdb read is gone

    (tmp_path / "params.yaml").write_text(
        f"stack:\n  state: {params.state}\n  postgres_port: {params.postgres_port}\n"
        f"  mlflow_port: {params.mlflow_port}\n  prefect_port: {params.prefect_port}\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    shown = {
        f"beast stack {action}": beast(["stack", action, "--params", str(tmp_path / "params.yaml")], tmp_path, env)
        for action in ("status", "env")
    }
    assert "postgres up" in shown["beast stack status"].replace("  ", " ")
    assert f"export PGPASSFILE={params.state / 'pgpass'}" in shown["beast stack env"]
    shown |= {str(log): log.read_text(errors="replace") for log in (params.state / "logs").glob("*.log")}
    assert len(shown) >= 5  # postgres, mlflow, prefect logs
    for pid in running.pids.values():
        for proc in [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]:
            shown[f"command line of {proc.pid}"] = " ".join(proc.cmdline())
    leaks = [where for where, text in shown.items() if secret in text]
    assert leaks == []


def test_down_leaves_nothing_and_is_idempotent(running: Running) -> None:
    params = running.params
    family = set(running.pids.values())
    for pid in running.pids.values():
        family |= {c.pid for c in psutil.Process(pid).children(recursive=True)}

    lines = stack.down(params)
    assert lines == [
        f"prefect: stopped (pid {running.pids['prefect']})",
        f"mlflow: stopped (pid {running.pids['mlflow']})",
        "postgres: stopped",
    ]

    def lingering() -> list[str]:
        found = []
        for proc in psutil.process_iter(["pid", "cmdline", "cwd", "status"]):
            info = proc.info
            if info["status"] == psutil.STATUS_ZOMBIE:
                continue  # exited, waiting for its parent (init) to reap it
            text = " ".join(info["cmdline"] or []) + " " + (info["cwd"] or "")
            if info["pid"] in family or str(params.state) in text:
                found.append(f"{info['pid']}: {text[:120]}")
        return found

    assert lingering() == []
    assert all(
        stack.port_free(params.host, port) for port in (params.postgres_port, params.mlflow_port, params.prefect_port)
    )
    assert not list(params.state.glob("*.pid"))
    assert stack.down(params) == ["prefect: not running", "mlflow: not running", "postgres: not running"]
    assert [(row.name, row.up) for row in stack.status(params)] == [
        ("postgres", False),
        ("mlflow", False),
        ("prefect", False),
    ]
