"""models/registry.py against a throwaway sqlite store: versions, aliases, Booster round trips, no pickles.

One store per module: creating a fresh MLflow sqlite database runs its alembic migrations (~10 s here).
"""

from __future__ import annotations

import os
import re
import time
from importlib.metadata import version
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
from conftest import ROOT

from core.errors import BeastError
from models import registry
from models.registry import CHALLENGER, CHAMPION, RegisteredVersion


def _booster(seed: int, objective: str = "binary", alpha: float | None = None) -> tuple[lgb.Booster, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.normal(size=(200, 3)), columns=["len_tokens", "price", "depth"])
    y = (X["len_tokens"] + 0.5 * rng.normal(size=200) > 0).astype(float) if objective == "binary" else X.sum(axis=1)
    params = {"objective": objective, "verbosity": -1, "seed": seed, "num_threads": 1, "deterministic": True}
    if alpha is not None:
        params["alpha"] = alpha
    return lgb.train(params, lgb.Dataset(X, label=y), num_boost_round=10), X


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Log `quality` twice (with a p90 extra booster and two artifacts) and `cost` twice, in one tmp store."""
    mp = pytest.MonkeyPatch()
    mp.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    mp.setenv("DO_NOT_TRACK", "true")
    mp.delenv("MLFLOW_TRACKING_URI", raising=False)
    tmp = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{tmp}/mlflow.db"
    spec = tmp / "spec.json"
    spec.write_text('{"features": ["len_tokens", "price", "depth"]}')
    plot = tmp / "calibration.png"
    plot.write_bytes(b"\x89PNG\r\n\x1a\n")
    booster, X = _booster(0)
    p90, _ = _booster(1, objective="quantile", alpha=0.9)
    booster2, _ = _booster(2)
    kw = {"params": {"num_leaves": 31, "learning_rate": 0.05}, "uri": uri}
    times = []
    t = time.perf_counter()
    v1 = registry.log_predictor(
        "quality", booster, X.head(5), metrics={"auc": 0.81, "baseline.per_model_mean.auc": 0.62},
        extra_boosters={"p90": p90}, artifacts={"feature_spec.json": spec, "plots/calibration.png": plot},
        tags={"beast.stage": "test"}, **kw,
    )  # fmt: skip
    first = time.perf_counter() - t  # includes creating the sqlite store (migrations)
    for predictor, b in [("quality", booster2), ("cost", booster), ("cost", booster2)]:
        t = time.perf_counter()
        last = registry.log_predictor(predictor, b, X.head(5), metrics={"auc": 0.8}, **kw)
        times.append(time.perf_counter() - t)
    print(f"\nlog_predictor: first {first:.2f}s (creates store), then {', '.join(f'{s:.2f}s' for s in times)}")
    yield {"uri": uri, "tmp": tmp, "X": X, "booster": booster, "booster2": booster2, "p90": p90, "v1": v1, "last": last}
    mp.undo()


def test_first_version_is_champion_and_challenger(store: dict) -> None:
    v1 = store["v1"]
    assert (v1.name, v1.version, v1.aliases) == ("beast-quality", "1", (CHALLENGER, CHAMPION))
    assert re.fullmatch(r"[0-9a-f]{32}", v1.run_id)


def test_second_version_is_challenger_only(store: dict) -> None:
    uri = store["uri"]
    champion = registry.version_by_alias("quality", CHAMPION, uri)
    challenger = registry.version_by_alias("quality", CHALLENGER, uri)
    assert champion == RegisteredVersion("beast-quality", "1", store["v1"].run_id, (CHAMPION,))
    assert challenger is not None and challenger.version == "2" and challenger.aliases == (CHALLENGER,)
    assert challenger.run_id != champion.run_id


def test_load_champion_predicts_like_the_booster_in_memory(store: dict) -> None:
    X, uri = store["X"], store["uri"]
    np.testing.assert_array_equal(
        registry.load_booster("quality", CHAMPION, uri=uri).predict(X), store["booster"].predict(X)
    )
    np.testing.assert_array_equal(
        registry.load_booster("quality", CHALLENGER, uri=uri).predict(X), store["booster2"].predict(X)
    )


def test_extra_booster_round_trip(store: dict) -> None:
    X, uri = store["X"], store["uri"]
    np.testing.assert_array_equal(
        registry.load_booster("quality", CHAMPION, key="p90", uri=uri).predict(X), store["p90"].predict(X)
    )
    with pytest.raises(BeastError, match="boosters/p50.txt"):
        registry.load_booster("quality", CHAMPION, key="p50", uri=uri)
    with pytest.raises(BeastError, match="booster key"):
        registry.load_booster("quality", CHAMPION, key="../p90", uri=uri)


def test_run_holds_params_metrics_tags_and_artifacts(store: dict) -> None:
    run_dir = store["tmp"] / "mlruns" / store["v1"].run_id / "artifacts"
    assert sorted(p.relative_to(run_dir).as_posix() for p in run_dir.rglob("*") if p.is_file()) == [
        "boosters/p90.txt",
        "feature_spec.json",
        "plots/calibration.png",
    ]
    assert (run_dir / "boosters" / "p90.txt").read_text().startswith("tree")  # LightGBM text format


def test_set_alias_moves_champion(store: dict) -> None:
    uri = store["uri"]
    assert registry.version_by_alias("cost", CHAMPION, uri).version == "1"
    registry.set_alias("cost", CHAMPION, "2", uri)
    moved = registry.version_by_alias("cost", CHAMPION, uri)
    assert moved.version == "2" and moved.aliases == (CHALLENGER, CHAMPION)
    assert registry.version_by_alias("cost", CHAMPION, uri).run_id == store["last"].run_id
    np.testing.assert_array_equal(
        registry.load_booster("cost", uri=uri).predict(store["X"]), store["booster2"].predict(store["X"])
    )


def test_missing_alias_and_unknown_predictor_raise(store: dict) -> None:
    uri = store["uri"]
    assert registry.version_by_alias("quality", "canary", uri) is None
    assert registry.version_by_alias("cache", CHAMPION, uri) is None  # never registered
    with pytest.raises(BeastError, match="beast-quality@canary"):
        registry.load_booster("quality", "canary", uri=uri)
    with pytest.raises(BeastError, match="unknown predictor 'latency'"):
        registry.load_booster("latency", uri=uri)
    with pytest.raises(BeastError, match="beast-quality@champion -> version 99"):
        registry.set_alias("quality", CHAMPION, "99", uri)


def test_unreachable_store_raises(store: dict, tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    with pytest.raises(BeastError, match="mlflow: open tracking store sqlite:///.*not-a-dir/mlflow.db"):
        registry.version_by_alias("quality", CHAMPION, f"sqlite:///{blocker}/mlflow.db")


def test_logged_model_has_no_pickle(store: dict, tmp_path: Path) -> None:
    local = registry._download_model("quality", CHAMPION, tmp_path, store["uri"])  # what load_booster reads
    files = sorted(p.relative_to(local).as_posix() for p in local.rglob("*") if p.is_file())
    assert "model.lgb" in files and "MLmodel" in files
    assert not [f for f in files if f.endswith((".pkl", ".pickle", ".joblib", ".cloudpickle"))], files
    # pip_requirements is explicit (no inference); MLflow always adds its own pin in front
    assert (local / "requirements.txt").read_text().split() == [
        f"mlflow=={version('mlflow')}",
        f"lightgbm=={lgb.__version__}",
    ]
    mlmodel = (local / "MLmodel").read_text()
    assert "model_class: lightgbm.basic.Booster" in mlmodel and "signature:" in mlmodel


def test_tracking_uri(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert registry.tracking_uri(tmp_path) == f"sqlite:///{tmp_path.resolve()}/mlflow.db"
    assert registry.tracking_uri() == f"sqlite:///{ROOT}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://tracking:5000")
    assert registry.tracking_uri(tmp_path) == "http://tracking:5000"


def test_only_registry_imports_mlflow() -> None:
    pattern = re.compile(r"^\s*(import mlflow|from mlflow)\b", re.MULTILINE)
    hits = []
    for folder, dirs, files in os.walk(ROOT):
        dirs[:] = [d for d in dirs if not d.startswith(".") and d not in {"node_modules", "__pycache__"}]
        for f in files:
            path = Path(folder) / f
            if f.endswith(".py") and pattern.search(path.read_text(encoding="utf-8", errors="replace")):
                hits.append(path.relative_to(ROOT).as_posix())
    assert hits == ["models/registry.py"]
