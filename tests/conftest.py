"""Shared fixtures: the committed price table and a throwaway dataset layout per test."""

from __future__ import annotations

import json
import os
import shutil
import tomllib
import warnings
from collections.abc import Callable
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from traces.ingest import IngestParams
from traces.prices import PriceTable, load_prices

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PACKAGES = tuple(PYPROJECT["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"])  # every package of ours


# The longest files (`pytest --durations`, 1-4 min each) run first: `make test` hands whole files to its two
# workers in collection order, and one of these at the end kept a worker busy for minutes while the other idled
# (tests/system runs apart, after the others: its files lead its own run).
LONGEST_FIRST = (
    "system/test_dvc_repro.py",
    "system/test_crash.py",
    "system/test_stack.py",
    "pipelines/test_flows.py",
    "serving/test_router.py",
    "abtest/test_abtest_error_rates.py",
    "caching/test_guard.py",
    "models/test_scale.py",
    "serving/test_js_router.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test under tests/system/ carries the `system` marker (no decorator to forget); the longest files
    come first (`LONGEST_FIRST`), the rest in their order."""
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    for item in items:
        if "system" in item.path.relative_to(ROOT / "tests").parts[:-1]:
            item.add_marker(pytest.mark.system)
    items.sort(key=lambda item: rank.get(item.path.relative_to(ROOT / "tests").as_posix(), len(rank)))


needs_cc = pytest.mark.skipif(shutil.which(os.environ.get("CC") or "cc") is None, reason="no C compiler here")


def assert_a_missing_kernel_is_said_once(
    monkeypatch: pytest.MonkeyPatch, load: Callable[[], object], said: str
) -> None:
    """`load()` of a C kernel binding gives None with one warning "{said}: no C kernel (why)" when no kernel builds,
    and None silently when BEAST_NATIVE=0 said so."""
    from core import native

    missing = native.NativeLibrary(None, "no C compiler (cc not on PATH)")
    monkeypatch.setattr(native, "shared_library", lambda source: missing)
    with pytest.warns(UserWarning, match=rf"{said}: no C kernel \(no C compiler \(cc not on PATH\)\)"):
        assert load() is None
    disabled = native.NativeLibrary(None, "BEAST_NATIVE=0", disabled=True)
    monkeypatch.setattr(native, "shared_library", lambda source: disabled)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load() is None


SYSTEM_FILES = (Path("/etc/passwd"), Path("/etc/group"), Path("/etc/hosts"))  # CI runs as root: a stray write is real


@pytest.fixture(scope="session", autouse=True)
def system_files_untouched() -> object:
    """Fails the session if any test wrote to a system file (a fuzzed "/etc/passwd" once did: `root / "/x"` is "/x")."""
    before = {p: p.read_bytes() for p in SYSTEM_FILES if p.exists()}
    yield
    changed = [str(p) for p, data in before.items() if p.read_bytes() != data]
    assert not changed, f"the tests changed {', '.join(changed)}"


@pytest.fixture(scope="session")
def prices() -> PriceTable:
    return load_prices(ROOT / "data" / "prices.yaml")


@pytest.fixture
def params(tmp_path: Path) -> IngestParams:
    return IngestParams(out=tmp_path / "traces", quarantine=tmp_path / "quarantine", metrics=None)


def good_row(i: int = 0, **fields: object) -> dict:
    """A valid contract-v1 row; override any field."""
    row = {
        "request_id": f"r{i}",
        "timestamp": f"2024-03-01T00:{i // 60 % 60:02d}:{i % 60:02d}Z",
        "model": "gpt-3.5-turbo-1106",
        "input_tokens": 1000 + i,
        "output_tokens": 500,
        "status": "ok",
    }
    row.update(fields)
    return row


def write_jsonl(path: Path, rows: list[dict | str]) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


@pytest.fixture(scope="session")
def sample_dataset(tmp_path_factory: pytest.TempPathFactory, prices: PriceTable) -> Path:
    """The samples the main job trains on (params.yaml retrain.traces), ingested once per test session: the
    dataset folder later stages read. The RouteLLM routing samples are read by the routing-bench tests."""
    import yaml

    from traces.ingest import ingest

    tmp = tmp_path_factory.mktemp("sample")
    params = IngestParams(out=tmp / "traces", quarantine=tmp / "q", metrics=None)
    traces = yaml.safe_load((ROOT / "params.yaml").read_text())["retrain"]["traces"]
    ingest(sorted(ROOT / t for t in traces), params, prices)
    return params.out


@pytest.fixture(scope="session")
def sample_traces(sample_dataset: Path):
    """The committed samples as a contract-v1 frame, as later stages see it."""
    from traces.store import read_traces

    return read_traces(sample_dataset)


@pytest.fixture(scope="session")
def routed(sample_dataset: Path, tmp_path_factory: pytest.TempPathFactory):
    """Predictors trained small on the committed samples and exported: (folder, trained results, Router).
    Shared by the router, report and recommendation tests (training once per session)."""
    import yaml

    from models.export import DEFAULT_TARGET_QUALITY, build_bundle
    from models.train import main as train_main
    from serving.router import Router

    tmp = tmp_path_factory.mktemp("router")
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["train"] |= {
        "out": str(tmp / "models"),
        "metrics": str(tmp / "metrics"),
        "plots": str(tmp / "plots"),
        "register": False,
    }
    params["train"]["quality"] |= {"heads": "shared", "num_boost_round": 150}
    params["features"]["text"] |= {"k": 8, "n_features": 1024}
    (tmp / "params.yaml").write_text(yaml.safe_dump(params))
    results = {
        r.name: r.trained
        for r in train_main(["quality", "cost", "cache"], params_file=tmp / "params.yaml", traces=[sample_dataset])
    }
    prices = load_prices(ROOT / "data/prices.yaml")
    policy = {
        "name": "threshold",
        "args": {"target_quality": DEFAULT_TARGET_QUALITY},
    }  # fallback order: the candidates, cheapest first
    build_bundle(tmp / "models", prices, tmp / "bundle", None, policy)
    return tmp, results, Router.load(tmp / "bundle")


@pytest.fixture(scope="session")
def routed_per_model(routed, sample_dataset: Path):
    """The `routed` bundle with per-model quality heads (the production default), trained small (a Router;
    its folder is `.bundle.root`, the models it was exported from are beside it)."""
    import shutil

    import yaml

    from models.export import DEFAULT_TARGET_QUALITY, build_bundle
    from models.train import main as train_main
    from serving.router import Router

    tmp, _, _ = routed
    out = tmp / "per_model"
    shutil.copytree(
        tmp / "models", out / "models", ignore=lambda folder, names: names if folder.endswith("quality") else []
    )
    params = yaml.safe_load((tmp / "params.yaml").read_text())
    params["train"] |= {"out": str(out / "models"), "metrics": str(out / "metrics"), "plots": str(out / "plots")}
    params["train"]["quality"] |= {"heads": "per_model", "num_boost_round": 40}
    (out / "params.yaml").write_text(yaml.safe_dump(params))
    train_main(["quality"], params_file=out / "params.yaml", traces=[sample_dataset])
    prices = load_prices(ROOT / "data/prices.yaml")
    policy = {
        "name": "threshold",
        "args": {"target_quality": DEFAULT_TARGET_QUALITY},
    }  # fallback order: the candidates, cheapest first
    build_bundle(out / "models", prices, out / "bundle", None, policy)
    return Router.load(out / "bundle")


# ------------------------------------------------------------- stand-in predictors for export / registry tests

FEATURES = ["len_tokens", "price", "depth"]
BOOSTER_KEYS = {"quality": ["big", "small"], "cost": ["mean", "p50", "p90"], "cache": ["model"]}
SIDES = {
    "quality": {
        "heads": "per_model",
        "feature_names": FEATURES,
        "feature_spec": {"kind": "beast-feature-spec", "columns": FEATURES, "version": "0123456789abcdef"},
    },
    "cost": {"feature_names": FEATURES, "categories": {"model": ["big", "small"]}, "p90_shift": {"": 0.1, "big": 0.2}},
    "cache": {"feature_names": FEATURES, "horizon_s": 300.0},
}


def fake_booster(seed: int, objective: str = "binary", alpha: float | None = None) -> tuple[lgb.Booster, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.normal(size=(200, 3)), columns=FEATURES)
    y = (X["len_tokens"] + 0.5 * rng.normal(size=200) > 0).astype(float) if objective == "binary" else X.sum(axis=1)
    params = {"objective": objective, "verbosity": -1, "seed": seed, "num_threads": 1, "deterministic": True} | (
        {"alpha": alpha} if alpha else {}
    )
    return lgb.train(params, lgb.Dataset(X, label=y), num_boost_round=5 + seed), X


def fake_boosters() -> dict[str, dict[str, lgb.Booster]]:
    objectives = {"quality": ("binary", None), "cost": ("regression", None), "cache": ("binary", None)}
    out, seed = {}, 0
    for p, keys in BOOSTER_KEYS.items():
        out[p] = {}
        for key in keys:
            objective, alpha = ("quantile", 0.9) if key == "p90" else objectives[p]
            out[p][key] = fake_booster(seed, objective, alpha)[0]
            seed += 1
    return out


def register_fake(folder: Path, boosters: dict[str, dict[str, lgb.Booster]], sides: dict[str, dict]) -> dict:
    """Log every predictor as `beast train` does: first key registered (and tagged), the rest as
    boosters/<key>.txt, the side JSON as the run artifact <predictor>.json."""
    from models import registry

    versions = {}
    for p, by_key in boosters.items():
        keys = list(by_key)
        side = folder / f"{p}-{len(list(folder.glob('*.json')))}.json"
        side.write_text(json.dumps(sides[p]))
        versions[p] = registry.log_predictor(
            p, by_key[keys[0]], fake_booster(0)[1].head(5), params={}, metrics={"auc": 0.5},
            extra_boosters={k: by_key[k] for k in keys[1:]}, artifacts={f"{p}.json": side}, tags={registry.REGISTERED_BOOSTER_TAG: keys[0]},
        )  # fmt: skip
    return versions
