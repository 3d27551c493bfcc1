"""Compiled trees (serving/compiled.py): the same numbers as `Booster.predict` on every leaf and edge value,
a disk cache that is rebuilt when corrupt, and a router that falls back to LightGBM when compiling fails."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pytest
from conftest import ROOT

from core import native
from serving import compiled
from serving.bundle import BundleError, load
from serving.compiled import compilable_text, compile_booster, needs_snap
from serving.forest import CATEGORY, KERNEL, Forest, tree_model
from serving.router import LightGBMTrees, Router, RouteRequest
from serving.trees import K_ZERO_THRESHOLD, probe_rows

BUNDLE = ROOT / "data" / "bundle"


def _data(seed: int, n: int = 600, k: int = 6) -> tuple[np.ndarray, np.ndarray]:
    """Seeded rows with NaN, exact zeros (LightGBM puts bin edges at +-kZeroThreshold) and a category-like column."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, k))
    X[rng.random(X.shape) < 0.3] = 0.0
    X[rng.random(X.shape) < 0.1] = np.nan
    X[:, 0] = rng.integers(0, 9, n)
    y = X[:, 1] * 2 + np.nan_to_num(X[:, 2]) - (X[:, 0] % 3) + rng.normal(size=n) * 0.1
    return X, y


def _train(params: dict, seed: int, rounds: int = 25, label=None, **dataset) -> lgb.Booster:
    X, y = _data(seed)
    y = label(y) if label else y
    base = {"verbose": -1, "num_threads": 1, "seed": seed, "min_data_in_leaf": 5, "num_leaves": 15}
    return lgb.train(base | params, lgb.Dataset(X, y, **dataset), num_boost_round=rounds)


BOOSTERS = {
    "binary_nan": lambda: _train({"objective": "binary"}, 1, label=lambda y: (y > 0).astype(float)),
    "cross_entropy": lambda: _train({"objective": "cross_entropy"}, 2, label=lambda y: 1 / (1 + np.exp(-y))),
    "regression_zero_missing": lambda: _train({"objective": "regression", "zero_as_missing": True}, 3),
    "quantile_categorical": lambda: _train({"objective": "quantile", "alpha": 0.5}, 4, categorical_feature=[0]),
    "binary_categorical": lambda: _train(
        {"objective": "binary", "cat_smooth": 1, "min_data_per_group": 5},
        5,
        label=lambda y: (y > 0).astype(float),
        categorical_feature=[0],
    ),
    "one_tree": lambda: _train({"objective": "regression"}, 6, rounds=1),
    "constant": lambda: _train({"objective": "regression", "min_data_in_leaf": 10_000}, 7, rounds=3),
}


def _rows(booster: lgb.Booster, seed: int = 0) -> np.ndarray:
    """Every leaf and edge value (`probe_rows`), plus seeded rows like the training data."""
    return np.vstack([probe_rows(booster.dump_model()), _data(seed + 100)[0]])


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("compiled")


@pytest.mark.parametrize("name", BOOSTERS)
def test_compiled_booster_predicts_what_lightgbm_predicts(name: str, cache: Path) -> None:
    booster = BOOSTERS[name]()
    text = booster.model_to_string()
    X = _rows(booster)
    got, want = compile_booster(text, cache).predict(X), booster.predict(X, num_threads=1)
    assert got.shape == want.shape == (len(X),)
    assert not np.isnan(want).any()
    np.testing.assert_array_equal(got, want)  # bit for bit: trees summed in LightGBM's order


def test_the_edge_cases_are_really_exercised(cache: Path) -> None:
    """The boosters above do have what the compiled path treats specially: categorical splits, missing-type
    Zero and NaN splits, thresholds at exactly -kZeroThreshold (moved), a 1-tree and a single-leaf model."""
    texts = {name: make().model_to_string() for name, make in BOOSTERS.items()}
    kinds = {name: [int(v) for line in t.splitlines() if line.startswith("decision_type=") for v in line[14:].split()]
             for name, t in texts.items()}  # fmt: skip
    assert any(k & 1 for k in kinds["quantile_categorical"]) and any(k & 1 for k in kinds["binary_categorical"])
    assert any((k >> 2) & 3 == 2 for k in kinds["binary_nan"])
    assert needs_snap(texts["regression_zero_missing"]) and not needs_snap(texts["binary_nan"])
    assert any(compilable_text(t) != t for t in texts.values())
    assert "num_leaves=1" in texts["constant"] and texts["one_tree"].count("Tree=") == 1
    # tiny values are read as 0.0 by LightGBM's C API: the compiled trees agree on them too
    booster = BOOSTERS["regression_zero_missing"]()
    X = np.zeros((4, booster.num_feature()))
    X[:, 1:] = np.array([K_ZERO_THRESHOLD, -K_ZERO_THRESHOLD, 1e-36, 0.0])[:, None]
    np.testing.assert_array_equal(compile_booster(booster.model_to_string(), cache).predict(X), booster.predict(X))


def test_cache_is_warm_atomic_and_a_corrupt_entry_is_rebuilt(tmp_path: Path) -> None:
    booster = BOOSTERS["binary_nan"]()
    text, X = booster.model_to_string(), _rows(booster)
    cold = compile_booster(text, tmp_path)
    (entry,) = tmp_path.glob("*.o")
    assert not cold.cached and entry.name == f"{cold.key}.o" and not list(tmp_path.glob(".*"))
    warm = compile_booster(text, tmp_path)
    assert warm.cached and warm.key == cold.key
    np.testing.assert_array_equal(warm.predict(X), cold.predict(X))
    good = entry.read_bytes()
    for bad in (good[:-1] + bytes([good[-1] ^ 1]), good[: len(good) // 2], b"", b"junk"):
        entry.write_bytes(bad)
        rebuilt = compile_booster(text, tmp_path)
        assert not rebuilt.cached and entry.read_bytes() == good
        np.testing.assert_array_equal(rebuilt.predict(X), cold.predict(X))
    other = BOOSTERS["one_tree"]().model_to_string()  # another model's (valid) entry under this key: rebuilt
    entry.write_bytes(good.replace(cold.key.encode(), compile_booster(other, tmp_path).key.encode()))
    assert not compile_booster(text, tmp_path).cached
    assert compile_booster(text, tmp_path / "new" / "dir").cached is False  # a missing folder is created


def test_two_processes_compiling_into_one_cache_at_once_both_get_a_valid_entry(tmp_path: Path) -> None:
    """Two HTTP workers loading the same bundle at once: each writes a temporary file and renames it."""
    text = tmp_path / "model.txt"
    text.write_text(BOOSTERS["binary_categorical"]().model_to_string())
    code = (
        "import sys; from pathlib import Path; from serving.compiled import compile_booster; "
        "b = compile_booster(Path(sys.argv[1]).read_text(), Path(sys.argv[2])); print(b.key)"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(text), str(tmp_path / "cache")], stdout=subprocess.PIPE, cwd=ROOT
        )
        for _ in range(2)
    ]
    keys = {p.communicate(timeout=120)[0].decode().strip() for p in procs}
    assert all(p.returncode == 0 for p in procs) and len(keys) == 1
    assert [f.name for f in (tmp_path / "cache").iterdir()] == [f"{keys.pop()}.o"]  # no temporary file left
    assert compile_booster(text.read_text(), tmp_path / "cache").cached


def test_a_model_lleaves_cannot_compile_is_a_bundle_error(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="lleaves could not compile"):
        compile_booster("tree\nversion=v4\nmax_feature_idx=2\nobjective=regression\n\nTree=0\nnonsense\n", tmp_path)


@pytest.mark.parametrize("n_requests", [1, 2, 7])
def test_a_batch_predicts_what_each_request_and_lightgbm_predict(n_requests: int, cache: Path) -> None:
    # per-model heads with a missing one (NaN quality) and one whose rows are snapped to zero; the batch path
    # calls each head's entry on its block of the candidate-major rows in place
    names = ["binary_nan", "regression_zero_missing", "cross_entropy"]
    boosters = [BOOSTERS[n]() for n in names]
    heads = [compile_booster(b.model_to_string(), cache) for b in boosters]
    assert [h.snap_zero for h in heads] == [False, True, False]
    cost_booster = BOOSTERS["quantile_categorical"]()
    trees = compiled.CompiledTrees(
        [heads[0], None, heads[1], heads[2]], False, compile_booster(cost_booster.model_to_string(), cache)
    )
    rows = _rows(boosters[1])
    Xq = rows[len(rows) - 4 * n_requests :].reshape(4, n_requests, rows.shape[1])  # candidate i's rows: Xq[i]
    Xq[2, :, 1:3] = K_ZERO_THRESHOLD / 2  # tiny values the snapped head must read as 0.0 (missing)
    Xc = Xq[::-1].copy()
    quality, cost = trees.many(Xq, Xc)
    calls = copy.copy(trees)
    calls._fused = None  # one ctypes call per booster (no C compiler): the same predictions
    assert trees._fused is not None or not native.shared_library(compiled.KERNEL).library
    for r in range(n_requests):
        for each in (trees, calls):
            q, c = each.one(np.ascontiguousarray(Xq[:, r]), np.ascontiguousarray(Xc[:, r]))
            np.testing.assert_array_equal(quality[r], q)
            np.testing.assert_array_equal(cost[r], c)
    for i, booster in ((0, boosters[0]), (2, boosters[1]), (3, boosters[2])):
        np.testing.assert_array_equal(quality[:, i], booster.predict(Xq[i], num_threads=1))
    assert np.isnan(quality[:, 1]).all()
    one_block = Xq[2:3]  # a block every head reads (the quality layout without candidate columns) = the block repeated
    lightgbm_trees = LightGBMTrees([boosters[0], None, boosters[1], boosters[2]], False, cost_booster)
    shared = (
        compiled.CompiledTrees([heads[1]] * 4, True, trees.cost),
        LightGBMTrees([boosters[1]] * 4, True, cost_booster),
    )
    forest = Forest.from_models([tree_model(b.model_to_string()) for b in boosters])
    walked = compiled.CompiledTrees(trees.heads, False, trees.cost, forest)  # the batch kernel (serving/forest.py)
    assert forest is not None or not native.shared_library(KERNEL).library
    np.testing.assert_array_equal(walked.many(Xq, Xc)[0], quality)
    shared_forest = Forest.from_models([tree_model(boosters[1].model_to_string())])
    shared += (compiled.CompiledTrees([heads[1]] * 4, True, trees.cost, shared_forest),)
    for each in (trees, lightgbm_trees, walked, *shared):
        q1, c1 = each.many(one_block, Xc)
        q4, c4 = each.many(np.repeat(one_block, 4, axis=0), Xc)
        np.testing.assert_array_equal(q1, q4)
        np.testing.assert_array_equal(c1, c4)
        np.testing.assert_array_equal(c1, cost)
    np.testing.assert_array_equal(
        cost, cost_booster.predict(Xc.reshape(-1, Xc.shape[2]), num_threads=1).reshape(4, n_requests).T
    )


NUMERICAL = ["binary_nan", "cross_entropy", "regression_zero_missing", "one_tree", "constant"]


def test_the_batch_kernel_predicts_what_lightgbm_predicts() -> None:
    """serving/forest.py: every numerical booster above (NaN and Zero missing types in both directions, bins at
    -kZeroThreshold, one tree, one leaf) plus a sigmoid of 0.7 as heads of one forest, bit for bit on every leaf
    and edge value, tiny values and infinities; categorical splits of several models are left to lleaves."""
    if not native.shared_library(KERNEL).library:
        pytest.skip("no C compiler: the batch kernel is not built (lleaves walks the batches)")
    boosters = [BOOSTERS[n]() for n in NUMERICAL]
    boosters.append(_train({"objective": "binary", "sigmoid": 0.7}, 8, label=lambda y: (y > 0).astype(float)))
    forest = Forest.from_models([tree_model(b.model_to_string()) for b in boosters])
    assert forest is not None and forest.n_heads == len(boosters)
    assert set(forest.rules) >= {0, 1, 2, 4, 5}  # NaN -> 0, Zero left / right, NaN right, the leaves' constant
    rows = np.vstack([_rows(b, seed) for seed, b in enumerate(boosters)])
    extra = np.zeros((6, rows.shape[1]))
    extra[:, 1:] = np.array([K_ZERO_THRESHOLD, -K_ZERO_THRESHOLD, 1e-36, np.inf, -np.inf, -0.0])[:, None]
    X = np.vstack([rows, extra])
    got = forest.predict(X)
    assert got.shape == (len(boosters), len(X))
    for h, booster in enumerate(boosters):
        np.testing.assert_array_equal(got[h], booster.predict(X, num_threads=1), err_msg=NUMERICAL[h : h + 1])
    assert len(set(np.round(got[-1], 12))) > 10  # the sigmoid head really varies
    assert Forest.from_models([tree_model(BOOSTERS["quantile_categorical"]().model_to_string())]) is None
    with pytest.raises(ValueError, match="the forest needs"):
        forest.predict(X[:, :3])


@pytest.mark.parametrize("name", ["quantile_categorical", "binary_categorical", "regression_zero_missing"])
def test_a_booster_pruned_per_candidate_predicts_what_lightgbm_predicts(name: str) -> None:
    """Forest.specialized: feature 0 (a category, as the cost booster's model code) and feature 5 (numerical, Zero
    missing type in one booster) hold each candidate's own values, decided and pruned away per candidate; every
    head then reads the request's other columns from any row and gives LightGBM's bits for its candidate's row,
    with candidates inside, outside and below the category sets, fractional, tiny, zero and NaN."""
    if not native.shared_library(KERNEL).library:
        pytest.skip("no C compiler: the batch kernel is not built (lleaves walks the batches)")
    booster = BOOSTERS[name]()
    model = tree_model(booster.model_to_string())
    template = np.full((9, booster.num_feature()), np.nan)
    template[:, 0] = [0, 1, 2, 5, 8, 40, -3, 2.7, np.nan]
    template[:, 5] = [0.0, 1e-36, -0.4, 0.3, np.nan, 2.0, -1.0, 0.0, 0.5]
    varies = np.ones(booster.num_feature(), dtype=bool)
    varies[[0, 5]] = False
    forest = Forest.specialized(model, template, varies)
    assert forest is not None and forest.n_heads == len(template)
    assert len(forest.roots) < len(template) * model.n_trees  # candidates share pruned trees
    rows = _rows(booster, 3)
    got = forest.predict(rows)  # candidate 0's values are not read: any row's request columns will do
    for c, own in enumerate(template):
        X = rows.copy()
        X[:, [0, 5]] = own[[0, 5]]
        np.testing.assert_array_equal(got[c], booster.predict(X, num_threads=1), err_msg=f"candidate {c}")
    if name != "regression_zero_missing":
        assert CATEGORY not in forest.rules  # the only categorical feature is decided
    varies[0] = True  # the category comes from the request: its nodes stay, read through the sets
    kept = Forest.specialized(model, template, varies)
    assert kept is not None and (CATEGORY in kept.rules) == (name != "regression_zero_missing")
    for c, own in enumerate(template):
        X = rows.copy()
        X[:, 5] = own[5]
        np.testing.assert_array_equal(
            kept.predict(rows)[c], booster.predict(X, num_threads=1), err_msg=f"candidate {c}"
        )


def test_rows_of_the_wrong_shape_are_refused(cache: Path) -> None:
    booster = BOOSTERS["one_tree"]()
    with pytest.raises(BundleError, match="needs"):
        compile_booster(booster.model_to_string(), cache).predict(np.zeros((2, booster.num_feature() + 1)))


@pytest.mark.skipif(not (BUNDLE / "manifest.json").exists(), reason="no built bundle (make run)")
def test_every_shipped_booster_matches_on_probe_rows_and_real_requests() -> None:
    bundle = load(BUNDLE)
    router = Router(bundle, trees="lightgbm")
    requests = [json.loads(line)["request"] for line in bundle.text("conformance.jsonl").splitlines()]
    vectors = [router.request_vector(RouteRequest.from_dict(r))[1] for r in requests]
    real = {
        "quality": np.vstack([router.quality_features(v) for v in vectors]),
        "cost": np.vstack([router.cost_features(v) for v in vectors]),
    }
    rows = 0
    for predictor, side in bundle.predictors.items():
        for key in side["keys"]:
            text = bundle.model_text(predictor, key)
            X = probe_rows(bundle.model_json(predictor, key))
            X = np.vstack([X, real[predictor]]) if predictor in real else X
            got, want = compiled.load_booster(text).predict(X), lgb.Booster(model_str=text).predict(X, num_threads=1)
            np.testing.assert_array_equal(got, want, err_msg=f"{predictor}/{key}")  # bit for bit
            rows += len(X)
    assert rows > 50_000  # every leaf of 19 boosters, their edge values, and the conformance requests' rows


@pytest.mark.skipif(not (BUNDLE / "manifest.json").exists(), reason="no built bundle (make run)")
def test_router_decisions_are_identical_with_compiled_trees() -> None:
    bundle = load(BUNDLE)
    fast, ref = Router(bundle), Router(bundle, trees="lightgbm")
    assert isinstance(fast.trees, compiled.CompiledTrees) and isinstance(ref.trees, LightGBMTrees)
    requests = [
        RouteRequest.from_dict(json.loads(line)["request"]) for line in bundle.text("conformance.jsonl").splitlines()
    ]
    for r in requests[:60]:
        for got, want in zip(fast.predict(r), ref.predict(r)):
            np.testing.assert_array_equal(got, want)
    for got, want in zip(fast.predict_many(requests), ref.predict_many(requests)):
        np.testing.assert_array_equal(got, want)
    assert fast.route_many(requests, now=1.0) == ref.route_many(requests, now=1.0)


@pytest.mark.skipif(not (BUNDLE / "manifest.json").exists(), reason="no built bundle (make run)")
def test_router_falls_back_to_lightgbm_with_one_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    bundle = load(BUNDLE)
    monkeypatch.setattr(compiled, "_memo", {})
    monkeypatch.setitem(sys.modules, "lleaves", None)  # `import lleaves` raises ImportError
    with pytest.warns(RuntimeWarning, match="routing with LightGBM: lleaves is not importable") as caught:
        router = Router(bundle)
    assert len(caught) == 1 and isinstance(router.trees, LightGBMTrees)
    assert router.route(RouteRequest(prompt="hi")).model in router.models
    monkeypatch.setitem(sys.modules, "lleaves", None)
    monkeypatch.setenv("BEAST_TREES", "lightgbm")  # forced: no compile attempted, no warning
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert isinstance(Router(bundle).trees, LightGBMTrees)
    with pytest.raises(BundleError, match="expected 'compiled' or 'lightgbm'"):
        Router(bundle, trees="gpu")
    monkeypatch.delenv("BEAST_TREES")
    monkeypatch.setattr(compiled, "load_booster", lambda text: Path("/nonexistent/beast").read_text())  # any failure
    with pytest.warns(RuntimeWarning, match="routing with LightGBM: compiling the trees failed: FileNotFoundError"):
        assert isinstance(Router(bundle).trees, LightGBMTrees)


@pytest.mark.skipif(not (BUNDLE / "manifest.json").exists(), reason="no built bundle (make run)")
def test_compiled_trees_that_disagree_are_not_used(monkeypatch: pytest.MonkeyPatch) -> None:
    bundle = load(BUNDLE)
    real = compiled.CompiledTrees.many
    monkeypatch.setattr(
        compiled.CompiledTrees, "many", lambda self, Xq, Xc: (real(self, Xq, Xc)[0] + 1e-6, real(self, Xq, Xc)[1])
    )
    with pytest.warns(RuntimeWarning, match="compiled quality booster disagrees with LightGBM"):
        assert isinstance(Router(bundle).trees, LightGBMTrees)
