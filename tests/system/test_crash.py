"""Crash injection (issue 9): SIGKILL at seeded kill points during ingest (as the retrain flow runs it),
export over a live bundle, and alias moves. After every kill the state is consistent, and running the same
work again completes it: each accepted row stored exactly once, a bundle folder that is there verifies
(old or new, never half), the champion alias points at a version whose bundle is served.
Kill points are file-system events (see tests/system/crashkit.py); `SEED` picks which."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from conftest import ROOT
from crashkit import count_events, event_names, kill_at

SEED = 0
KILLS_PER_OPERATION = 25


def _sample(n_events: int, k: int, salt: int) -> list[int]:
    """Seeded kill points among events 1..n (all of them when there are fewer than k)."""
    points = list(range(1, n_events + 1))
    return sorted(random.Random(SEED * 1000 + salt).sample(points, min(k, n_events)))


# ------------------------------------------------------------------------------------------- ingest


def op_flow_ingest(files: list[str], key: str, params_file: str) -> None:
    """The retrain flow's ingest task body (its resume rule included)."""
    from pipelines.flows import ingest_task

    ingest_task.fn(files, key, params_file)


@pytest.fixture(scope="module")
def traces_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, set[str]]:
    """400 synthetic rows over ~3 UTC days (3 part files per ingest) with some malformed rows."""
    from traces.load import load_traces
    from traces.synth import main

    tmp = tmp_path_factory.mktemp("crash_traces")
    path = tmp / "t.jsonl"
    (tmp / "params.yaml").write_text("synth:\n  rows: 400\n  mean_rps: 0.0017\n  malformed: 0.05\n  seed: 3\n")
    main(path, params_file=tmp / "params.yaml", overrides={}, prices_file=ROOT / "data" / "prices.yaml")
    good = load_traces([path], ROOT / "data" / "prices.yaml")
    assert good["date"].nunique() >= 3 and 0 < len(good) < 400
    return path, set(good["request_id"])


def _ingest_params(tmp: Path) -> Path:
    params = tmp / "params.yaml"
    params.write_text(
        f"ingest:\n  out: {tmp / 'traces'}\n  quarantine: {tmp / 'quarantine'}\n  metrics: null\n  prices: {ROOT / 'data' / 'prices.yaml'}\n"
    )
    return params


def _stored_ids(root: Path) -> list[str]:
    from traces.store import read_traces

    return read_traces(root, columns=["request_id"])["request_id"].tolist()


def test_ingest_killed_anywhere_keeps_rows_exactly_once_and_a_rerun_completes(traces_file, tmp_path: Path) -> None:
    path, good = traces_file
    dry = tmp_path / "dry"
    dry.mkdir()
    n = count_events(op_flow_ingest, ([str(path)], "k0", str(_ingest_params(dry))), str(tmp_path))
    assert sorted(_stored_ids(dry / "traces")) == sorted(good)
    points = _sample(n, KILLS_PER_OPERATION, 1)
    killed = 0
    for k in points:
        work = tmp_path / f"k{k}"
        work.mkdir()
        params = str(_ingest_params(work))
        killed += kill_at(op_flow_ingest, ([str(path)], "k1", params), k, str(tmp_path))
        ids = _stored_ids(work / "traces")
        assert len(ids) == len(set(ids)) and set(ids) <= good, f"kill point {k}/{n}: duplicated or foreign rows"
        op_flow_ingest([str(path)], "k1", params)  # the flow retries the same task (same key)
        ids = _stored_ids(work / "traces")
        assert sorted(ids) == sorted(good), (
            f"kill point {k}/{n}: {len(good) - len(set(ids))} rows missing after the rerun"
        )
        quarantined = sum(1 for q in (work / "quarantine").glob("*.jsonl") for _ in q.open())
        assert quarantined == 400 - len(good), f"kill point {k}/{n}: {quarantined} quarantined rows"
    assert killed == len(points) >= 20
    print(f"ingest: {n} events, {len(points)} kill points, every one killed, state consistent, rerun complete")


# ------------------------------------------------------------------------------------------- export


def op_export(models_dir: str, out: str, target_quality: float) -> None:
    """Export over an existing bundle (what the gate does on promote), stand-in models `big` and `small`."""
    from models.export import build_bundle
    from traces.prices import parse_prices

    prices = parse_prices(
        {"models": {"big": {"input": 10.0, "output": 30.0}, "small": {"input": 0.1, "output": 0.2}}}, "test"
    )
    policy = {"name": "threshold", "args": {"target_quality": target_quality}}
    build_bundle(
        Path(models_dir), prices, Path(out), None, policy, overwrite=True, requests=[]
    )  # no conformance vectors: faster


def _bundle_state(out: Path) -> float | None:
    """The verified bundle's target quality (which export it is), None when there is no folder."""
    from serving.bundle import extract, verify

    if not out.exists():
        return None
    bundle = verify(out)
    archive = out.parent / f"{out.name}.tar.gz"
    scratch = out.parent / f"x-{random.random()}"
    extract(archive, scratch)  # the archive beside it is whole too
    return bundle.policy()["args"]["target_quality"]


def test_export_killed_anywhere_leaves_a_whole_bundle_and_a_rerun_completes(tmp_path: Path) -> None:
    import shutil

    from conftest import fake_boosters
    from test_bundle import _write_models_dir

    models_dir = str(_write_models_dir(tmp_path / "models", fake_boosters()))
    base = tmp_path / "base"
    op_export(models_dir, str(base / "bundle"), 0.1)
    n = count_events(op_export, (models_dir, str(tmp_path / "dry" / "bundle"), 0.2), str(tmp_path))
    points = list(range(1, n + 1))  # every event: the swap of the live folder is one of them
    killed = 0
    for k in points:
        work = tmp_path / f"k{k}"
        shutil.copytree(base, work)
        killed += kill_at(op_export, (models_dir, str(work / "bundle"), 0.2), k, str(tmp_path))
        assert _bundle_state(work / "bundle") in (0.1, 0.2), f"kill point {k}/{n}: no bundle to serve"
        visible = sorted(p.name for p in work.iterdir() if not p.name.startswith(".") and not p.name.startswith("x-"))
        assert visible == ["bundle", "bundle.tar.gz"], f"kill point {k}/{n}: {visible}"
        op_export(models_dir, str(work / "bundle"), 0.2)
        assert _bundle_state(work / "bundle") == 0.2
        assert sorted(p.name for p in work.iterdir() if p.name.startswith(".")) == [], (
            f"kill point {k}/{n}: leftovers after the rerun"
        )
    assert killed == len(points) >= 25
    print(f"export: {n} events, {len(points)} kill points, every one killed, a whole bundle always served")


def test_kill_points_total_at_least_fifty() -> None:
    assert KILLS_PER_OPERATION + 25 + 6 + 8 >= 50  # ingest, export (>= 25, every event), registration, gate


# ------------------------------------------------------------------------------------------- registration


def op_register(folder: str, uri: str) -> None:
    """What `beast train` does after fitting: log each predictor's run and register a new version."""
    import os

    from conftest import SIDES, fake_boosters, register_fake

    os.environ["MLFLOW_TRACKING_URI"] = uri
    register_fake(Path(folder), fake_boosters(), SIDES)


def test_registration_killed_anywhere_leaves_a_loadable_champion_and_a_rerun_completes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    from models import registry

    base = tmp_path / "base"
    base.mkdir()
    uri_of = lambda work: f"sqlite:///{work}/mlflow.db"  # noqa: E731
    op_register(str(base), uri_of(base))  # version 1 of each predictor: champion and challenger
    dry = tmp_path / "dry"
    shutil.copytree(base, dry)
    names = event_names(op_register, (str(dry), uri_of(dry)), str(tmp_path))
    n = len(names)
    aliasing = [i + 1 for i, name in enumerate(names) if name == "_alias_new_version"]
    assert len(aliasing) == 3
    rng = random.Random(SEED + 4)
    points = sorted({*aliasing, *rng.sample([i for i in range(1, n + 1) if i not in aliasing], 3)})
    for k in points:
        work = tmp_path / f"k{k}"
        shutil.copytree(base, work)
        assert kill_at(op_register, (str(work), uri_of(work)), k, str(tmp_path))
        monkeypatch.setenv("MLFLOW_TRACKING_URI", uri_of(work))
        for p in registry.REGISTERED:  # what routers are exported from is whole at every kill point
            assert registry.load_predictor(p, "champion", uri_of(work)).version.version == "1", (
                f"kill point {k}/{n}: {p}"
            )
        op_register(str(work), uri_of(work))  # the retrain runs again
        for p in registry.REGISTERED:
            challenger = registry.load_predictor(p, "challenger", uri_of(work))
            assert int(challenger.version.version) >= 2 and set(challenger.boosters), f"kill point {k}/{n}: {p}"
    print(f"registration: {n} events, {len(points)} kill points, champion loadable throughout, rerun complete")


# ------------------------------------------------------------------------------------------- alias moves


def op_gate(experiment: str, params: str, out_dir: str, uri: str, bundle: str, prices: str) -> None:
    """`beast gate` on a promoting experiment: journal, alias moves of three predictors, bundle export, log."""
    import os

    from models import export as export_mod
    from pipelines.promote import main

    os.environ["MLFLOW_TRACKING_URI"] = uri
    real = export_mod.__dict__.setdefault("_unpatched_export", export_mod.export)  # patched once per process
    export_mod.export = lambda *a, **k: real(*a, **k, prices_file=Path(prices), requests=())
    main(Path(experiment), Path(params), out_dir=Path(out_dir), uri=uri, bundle=Path(bundle))


def _served(bundle: Path) -> set[str]:
    from serving.bundle import verify

    return {e["version"] for e in verify(bundle).predictors.values()}


def test_alias_moves_killed_anywhere_end_with_aliases_and_bundle_agreeing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    from test_gate import _aliases, _params_file, _two_versions, _write_experiment

    from models import export as export_mod
    from models import registry

    monkeypatch.setattr(export_mod, "export", export_mod.export)  # op_gate patches it in this process too
    base = tmp_path / "base"
    base.mkdir()
    uri, prices = _two_versions(base, monkeypatch)
    export_mod.export(registry.CHAMPION, base / "bundle", prices_file=prices, requests=(), uri=uri)  # v1 is served
    experiment, params = _write_experiment(base / "good.jsonl", 300, dq=0.0), _params_file(base)

    def args(work: Path) -> tuple:
        return (
            str(work / "good.jsonl"),
            str(work / "params.yaml"),
            str(work / "gate"),
            f"sqlite:///{work}/mlflow.db",
            str(work / "bundle"),
            str(work / "prices.yaml"),
        )

    dry = tmp_path / "dry"
    shutil.copytree(base, dry)
    names = event_names(op_gate, args(dry), str(tmp_path))
    n = len(names)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", args(dry)[3])
    assert _aliases(args(dry)[3]) == dict.fromkeys(registry.REGISTERED, ("2", "1")) and _served(dry / "bundle") == {"2"}
    # most of a gate's events are its report and MLflow logging; the kill points that matter are from the
    # journal to the end of the export: before each alias move, right after the last, and in the export
    moves = [i + 1 for i, name in enumerate(names) if name == "_apply"]
    assert len(moves) == 3
    window = list(range(moves[0] - 1, min(n, moves[-1] + 30) + 1))
    must = {*moves, moves[-1] + 1}
    rng = random.Random(SEED)
    points = sorted(
        must
        | set(rng.sample([w for w in window if w not in must], 3))
        | {rng.choice([i for i in range(1, n + 1) if i not in window])}
    )
    for k in points:
        work = tmp_path / f"k{k}"
        shutil.copytree(base, work)
        assert kill_at(op_gate, args(work), k, str(tmp_path))
        assert _served(work / "bundle") in ({"1"}, {"2"}), f"kill point {k}/{n}: the served bundle mixes versions"
        monkeypatch.setenv("MLFLOW_TRACKING_URI", args(work)[3])
        op_gate(*args(work))  # restart: recovers an interrupted move first, then gates again
        assert _aliases(args(work)[3]) == dict.fromkeys(registry.REGISTERED, ("2", "1")), f"kill point {k}/{n}"
        assert _served(work / "bundle") == {"2"} and registry.pending_moves(args(work)[3]) == [], f"kill point {k}/{n}"
    assert len(points) == 8 and experiment.exists() and params.exists()

    # killed between two predictors' moves, then the next gate blocks: the journal puts the aliases back
    work = tmp_path / "blocked"
    shutil.copytree(base, work)
    assert kill_at(op_gate, args(work), moves[1], str(tmp_path))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", args(work)[3])
    assert registry.pending_moves(args(work)[3]) and _aliases(args(work)[3])["quality"] == ("2", "1")
    _write_experiment(work / "good.jsonl", 300, dq=-0.2)  # the same file now blocks
    op_gate(*args(work))
    assert _aliases(args(work)[3]) == dict.fromkeys(registry.REGISTERED, ("1", None)) and _served(work / "bundle") == {
        "1"
    }
    assert registry.pending_moves(args(work)[3]) == []
    print(f"gate: {n} events, {len(points)} kill points, aliases and bundle agree after every restart")
