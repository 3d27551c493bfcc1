"""The Prefect `retrain` flow end to end on the committed samples (small models): first run, a second run
that fails in the replay task, and its re-run that resumes without retraining; plus the retrain lock."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import ROOT
from prefect.testing.utilities import prefect_test_harness

from core.errors import BeastError
from serving.bundle import verify

SAMPLES = [
    "data/sample/alpaca_eval.parquet",
    "data/sample/mooncake_conversation.jsonl.gz",
    "data/sample/azure_conv.csv.gz",
    "data/sample/azure_code.csv.gz",
]


def small_params(tmp: Path) -> Path:
    """params.yaml with every output under `tmp` and small models (the flow's logic, not the models, is tested)."""
    p = yaml.safe_load((ROOT / "params.yaml").read_text())
    p["ingest"] |= {
        "out": str(tmp / "traces"),
        "quarantine": str(tmp / "quarantine"),
        "prices": str(ROOT / "data/prices.yaml"),
    }
    p["train"] |= {"traces": str(tmp / "traces"), "out": str(tmp / "models"), "metrics": str(tmp / "metrics"), "plots": str(tmp / "plots"),
                   "prices": str(ROOT / "data/prices.yaml"), "cards": str(ROOT / "data/models.yaml"), "register": True}  # fmt: skip
    p["train"]["quality"] |= {"heads": "shared", "num_boost_round": 60}
    p["features"]["text"] |= {"k": 8, "n_features": 1024}
    p["monitor"] |= {
        "traces": str(tmp / "traces"),
        "out": str(tmp / "monitor"),
        "prices": str(ROOT / "data/prices.yaml"),
    }
    p["retrain"] |= {"traces": [str(ROOT / s) for s in SAMPLES], "replay_traces": str(ROOT / SAMPLES[0]), "evaluate": False,
                     "bundle": str(tmp / "bundle"), "work": str(tmp / "prefect"), "retry_delay_s": 0.1, "lock_timeout_s": 1.0}  # fmt: skip
    path = tmp / "params.yaml"
    path.write_text(yaml.safe_dump(p))
    return path


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("flows")
    params = small_params(tmp)
    mp = pytest.MonkeyPatch()
    mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp}/mlflow.db")
    mp.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    with prefect_test_harness(server_startup_timeout=60):
        yield tmp, str(params)
    mp.undo()


def test_retrain_first_run_then_a_failure_resumes_without_recomputing(setup, monkeypatch: pytest.MonkeyPatch) -> None:
    import evaluation.replay
    import models.train
    from pipelines.flows import retrain

    tmp, params = setup
    calls: list[str] = []
    real_train = models.train.main
    monkeypatch.setattr(models.train, "main", lambda which, **kw: calls.append(which[0]) or real_train(which, **kw))

    first = retrain(params)  # fresh registry: version 1 is champion and challenger, nothing to gate
    assert not first["resumed"] and calls == ["quality", "cost", "cache"]
    assert first["gate"]["promote"] is None and "first version" in first["gate"]["reasons"][0]
    assert first["ingest"]["stored"] == 51486 and first["bundle_versions"] == {
        "quality": "1",
        "cost": "1",
        "cache": "1",
    }
    assert verify(tmp / "bundle").manifest["conformance"]["vectors"] >= 200
    assert "| quality | 1 |" in (tmp / "prefect" / "summary.md").read_text()

    real_replay = evaluation.replay.main
    monkeypatch.setattr(
        evaluation.replay, "main", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("injected replay failure"))
    )
    with pytest.raises(RuntimeError, match="injected replay failure"):
        retrain(params)  # a second retrain: new challengers (version 2), then the replay task fails
    assert calls == ["quality", "cost", "cache"] * 2
    assert json.loads((tmp / "prefect" / "retrain.json").read_text())["status"] == "running"
    assert {e["version"] for e in verify(tmp / "bundle").predictors.values()} == {
        "1"
    }  # the failed flow left the champion served

    monkeypatch.setattr(evaluation.replay, "main", real_replay)
    resumed = retrain(params)  # same inputs: the unfinished run's key, its completed tasks come from the cache
    assert resumed["resumed"] and calls == ["quality", "cost", "cache"] * 2  # nothing retrained
    assert resumed["ingest"]["stored"] == 0 and {t["version"] for t in resumed["trained"].values()} == {"2"}
    # identical data and parameters: the new challengers choose exactly like the champions, so nothing moves
    assert resumed["gate"] == {
        "promote": False,
        "reasons": ["no_difference"],
        "quality_estimate": None,
        "quality_p": None,
    }
    assert resumed["bundle_versions"] == {"quality": "1", "cost": "1", "cache": "1"}
    assert json.loads((tmp / "prefect" / "retrain.json").read_text())["status"] == "completed"


def test_monitor_flow_sees_the_drift_and_runs_retrain(setup) -> None:
    """Right after training the samples show no drift (each model is compared with its own history); a recent
    file of 300 rows from a model the training data never saw is drift, so `monitor` runs `retrain` as a
    subflow (a new run key: the previous retrain completed)."""
    from conftest import good_row, write_jsonl

    from pipelines.flows import monitor

    tmp, params = setup
    quiet = monitor(params)
    assert quiet["retrain"] is False and "summary" not in quiet
    rows = [good_row(i, model="brand-new-model", cost_usd=0.001, request_id=f"new-{i}") for i in range(300)]
    recent = write_jsonl(tmp / "recent-new-model.jsonl", rows)
    out = monitor(params, recent=str(recent))
    assert out["retrain"] is True and out["reasons"] == [
        "new model brand-new-model: 300 recent rows, none in the reference"
    ]
    assert out["summary"]["resumed"] is False and {t["version"] for t in out["summary"]["trained"].values()} == {"3"}
    assert (tmp / "monitor" / "drift.json").exists() or any(tmp.rglob("drift.json"))


def test_a_second_retrain_waits_for_the_first(setup) -> None:
    from pipelines.flows import retrain

    tmp, params = setup
    lock = tmp / "prefect" / "retrain.lock"
    code = f"from pathlib import Path; import time; from core.files import file_lock\nwith file_lock(Path({str(lock)!r}), 'x'):\n    print('held', flush=True); time.sleep(20)"
    holder = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(BeastError, match="another retrain holds the lock .*retrain.lock"):
            retrain(params)
    finally:
        holder.kill()
        holder.wait()


def test_deployment_served_against_a_real_prefect_server_runs_to_completion(tmp_path: Path) -> None:
    """`prefect server start` (bounded wait), `beast deploy` registers both deployments with their schedules,
    a triggered run of the retrain deployment completes; everything started here is stopped here."""
    import os
    import time
    import urllib.request

    params = small_params(tmp_path)
    from benchmarks.serve import free_port

    port = free_port()
    env = os.environ | {"PREFECT_HOME": str(tmp_path / "prefect-home"), "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
                        "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "true", "MLFLOW_DISABLE_TELEMETRY": "true",
                        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/mlflow.db"}  # fmt: skip
    bin_dir = Path(sys.executable).parent
    log = open(tmp_path / "server.log", "w")  # noqa: SIM115 - the server subprocess writes to it until the test stops it
    server = subprocess.Popen(
        [str(bin_dir / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    served = None
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline and server.poll() is None, (tmp_path / "server.log").read_text()[-2000:]
            time.sleep(0.5)
        served = subprocess.Popen(
            [str(bin_dir / "beast"), "deploy", "--params", str(params)],
            env=env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert "serving retrain/nightly, monitor/drift" in served.stdout.readline()
        check = (
            "import asyncio, json\n"
            "from prefect.client.orchestration import get_client\n"
            "from prefect.deployments import run_deployment\n"
            "async def schedules():\n"
            "    async with get_client() as c:\n"
            "        out = {}\n"
            "        for name in ('retrain/nightly', 'monitor/drift'):\n"
            "            d = await c.read_deployment_by_name(name)\n"
            "            out[name] = [str(s.schedule) for s in d.schedules]\n"
            "        return out\n"
            "print(json.dumps(asyncio.run(schedules())))\n"
            "run = run_deployment('retrain/nightly', timeout=240)\n"
            "print(run.state.type.value)\n"
        )
        done = subprocess.run(
            [sys.executable, "-c", check], env=env, cwd=ROOT, capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 0, done.stderr[-3000:]
        schedules_line, state = done.stdout.strip().splitlines()[-2:]
        schedules = json.loads(schedules_line)
        assert "0 3 * * *" in schedules["retrain/nightly"][0] and "3600" in schedules["monitor/drift"][0]
        assert state == "COMPLETED"
        assert verify(tmp_path / "bundle").predictors["quality"]["version"] == "1"
    finally:
        for proc in (served, server):
            if proc is not None:
                proc.terminate()
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
        log.close()
