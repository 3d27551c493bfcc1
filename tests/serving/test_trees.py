"""Pure-numpy LightGBM evaluator: predictions from the JSON dump equal `Booster.predict` on rows with
NaN, exact zeros, values equal to split thresholds, tiny values and unseen / negative / fractional categories."""

from __future__ import annotations

import json

import lightgbm as lgb
import numpy as np
import pytest

from serving.trees import K_ZERO_THRESHOLD, TreeModel, TreeModelError

N_FEATURES = 6
CAT = (4, 5)  # categorical columns in the categorical model


def _data(rng: np.random.Generator, n: int, categorical: bool) -> np.ndarray:
    X = rng.normal(size=(n, N_FEATURES))
    X[:, 1] = np.round(X[:, 1], 1)  # many exact repeats and exact zeros
    X[rng.random(n) < 0.3, 2] = 0.0
    X[rng.random(X.shape) < 0.08] = np.nan
    if categorical:
        X[:, CAT[0]] = rng.integers(0, 8, n)
        X[:, CAT[1]] = rng.integers(0, 40, n)
        X[rng.random(n) < 0.05, CAT[0]] = np.nan
    return X


def _label(X: np.ndarray, rng: np.random.Generator, objective: str) -> np.ndarray:
    z = np.nan_to_num(X[:, 0]) * 1.5 + (np.isnan(X[:, 3])) - (X[:, 2] == 0) + np.nan_to_num(X[:, 1]) ** 2
    z = (
        z
        + np.isin(np.nan_to_num(X[:, 4], nan=-1), (1, 3, 6))
        + (np.nan_to_num(X[:, 5]) % 3 == 0)
        + rng.normal(scale=0.3, size=len(X))
    )
    if objective == "binary":
        return (z > np.median(z)).astype(float)
    if objective == "cross_entropy":
        return 1.0 / (1.0 + np.exp(-z))
    if objective == "poisson":
        return rng.poisson(np.exp(np.clip(z, -3, 3) / 2)).astype(float)
    return z


def _thresholds(dump: dict) -> dict[int, list[float]]:
    out: dict[int, list[float]] = {}
    stack = [t["tree_structure"] for t in dump["tree_info"]]
    while stack:
        node = stack.pop()
        if "split_feature" in node:
            if node["decision_type"] == "<=":
                out.setdefault(node["split_feature"], []).append(float(node["threshold"]))
            stack += [node["left_child"], node["right_child"]]
    return out


def _held_out(dump: dict, rng: np.random.Generator, categorical: bool) -> np.ndarray:
    """Fresh rows plus edge rows: every split threshold exactly, NaN / 0 / +-kZeroThreshold / tiny / huge
    in every column, and unseen, negative, fractional and huge categories."""
    X = _data(rng, 300, categorical)
    edge = []
    for f, ths in _thresholds(dump).items():
        for th in ths:
            row = X[rng.integers(len(X))].copy()
            row[f] = th
            edge.append(row)
            row = row.copy()
            row[f] = np.nextafter(th, np.inf)
            edge.append(row)
    specials = [
        np.nan,
        0.0,
        -0.0,
        K_ZERO_THRESHOLD,
        -K_ZERO_THRESHOLD,
        1e-36,
        -1e-36,
        1e-30,
        1e300,
        -1e300,
        np.inf,
        -np.inf,
    ]
    if categorical:
        specials += [-1.0, -0.5, 0.5, 2.7, 7.0, 8.0, 39.0, 40.0, 1000.0, 3e9, 31.0, 32.0, 33.0, 63.0, 64.0]
    for f in range(N_FEATURES):
        for v in specials:
            row = X[rng.integers(len(X))].copy()
            row[f] = v
            edge.append(row)
    return np.vstack([X, np.array(edge), np.full((1, N_FEATURES), np.nan), np.zeros((1, N_FEATURES))])


MODELS = {
    "regression": ({"objective": "regression"}, False),
    "regression_zero_as_missing": ({"objective": "regression", "zero_as_missing": True}, False),
    "regression_no_missing": ({"objective": "regression", "use_missing": False}, False),
    "regression_sqrt": ({"objective": "regression", "reg_sqrt": True}, False),
    "binary": ({"objective": "binary"}, False),
    "cross_entropy": ({"objective": "cross_entropy"}, False),
    "quantile": ({"objective": "quantile", "alpha": 0.9}, False),
    "poisson": ({"objective": "poisson"}, False),
    "binary_categorical": ({"objective": "binary", "max_cat_to_onehot": 4}, True),
    "regression_categorical": ({"objective": "regression", "max_cat_to_onehot": 4, "zero_as_missing": True}, True),
}


def _train(params: dict, categorical: bool, seed: int = 0, rounds: int = 60) -> tuple[lgb.Booster, np.random.Generator]:
    rng = np.random.default_rng(seed)
    X = _data(rng, 1500, categorical)
    y = _label(X, rng, params["objective"])
    base = {
        "verbose": -1,
        "seed": seed,
        "num_leaves": 15,
        "learning_rate": 0.1,
        "min_data_in_leaf": 5,
        "deterministic": True,
        "num_threads": 1,
    }
    if categorical:
        base |= {"min_data_per_group": 5, "cat_smooth": 1.0, "cat_l2": 1.0}
    dataset = lgb.Dataset(X, y, categorical_feature=list(CAT) if categorical else "auto", free_raw_data=False)
    return lgb.train(base | params, dataset, rounds), rng


@pytest.mark.parametrize("name", list(MODELS))
def test_matches_lightgbm(name: str) -> None:
    params, categorical = MODELS[name]
    booster, rng = _train(params, categorical)
    dump = json.loads(json.dumps(booster.dump_model()))  # through JSON text, as the bundle ships it
    model = TreeModel.from_dump(dump)
    X = _held_out(dump, rng, categorical)
    want = booster.predict(X)
    np.testing.assert_allclose(model.predict(X), want, rtol=1e-12, atol=0)
    np.testing.assert_allclose(model.raw(X), booster.predict(X, raw_score=True), rtol=1e-12, atol=1e-300)
    for i in range(len(X) - 120, len(X)):  # single rows (their own code path): the edge rows, 1-d and 2-d
        np.testing.assert_allclose(model.predict(X[i]), want[i : i + 1], rtol=1e-12, atol=0)
        np.testing.assert_allclose(model.predict(X[i : i + 1]), want[i : i + 1], rtol=1e-12, atol=0)
    if categorical:
        assert len(model.cat_nodes) > 0, "the categorical model has no categorical split to test"


def test_missing_zero_model_has_zero_splits() -> None:
    """The zero_as_missing dump really exercises missing_type Zero in both default directions."""
    booster, _ = _train(MODELS["regression_zero_as_missing"][0], False)
    kinds = set()
    stack = [t["tree_structure"] for t in booster.dump_model()["tree_info"]]
    while stack:
        node = stack.pop()
        if "split_feature" in node:
            kinds.add((node["missing_type"], node["default_left"]))
            stack += [node["left_child"], node["right_child"]]
    assert {("Zero", True), ("Zero", False)} <= kinds


def test_single_leaf_trees() -> None:
    """A constant label gives one-leaf trees: the prediction is the (boost-from-average) constant."""
    rng = np.random.default_rng(1)
    X = rng.normal(size=(200, 3))
    booster = lgb.train({"objective": "regression", "verbose": -1}, lgb.Dataset(X, np.full(200, 2.5)), 5)
    dump = booster.dump_model()
    assert all(t["num_leaves"] == 1 for t in dump["tree_info"])
    model = TreeModel.from_dump(dump)
    Xt = np.vstack([rng.normal(size=(5, 3)), np.full((1, 3), np.nan)])
    np.testing.assert_allclose(model.predict(Xt), booster.predict(Xt), rtol=1e-12, atol=0)
    np.testing.assert_allclose(model.predict(Xt), 2.5, rtol=1e-12)


def test_many_trees_and_deep_unbalanced_trees() -> None:
    booster, rng = _train({"objective": "binary", "num_leaves": 63}, False, seed=3, rounds=200)
    model = TreeModel.from_dump(booster.dump_model())
    assert len(model.live) > 8 and model.live[-1] < model.n_trees  # trees finish at different depths
    X = _data(rng, 500, False)
    np.testing.assert_allclose(model.predict(X), booster.predict(X), rtol=1e-12, atol=0)


def test_zero_trees_and_zero_rows() -> None:
    booster, _ = _train({"objective": "regression"}, False, rounds=3)
    model = TreeModel.from_dump(booster.dump_model())
    assert model.predict(np.empty((0, N_FEATURES))).shape == (0,)
    empty = TreeModel.from_dump(booster.dump_model() | {"tree_info": []})
    np.testing.assert_array_equal(empty.raw(np.ones((2, N_FEATURES))), [0.0, 0.0])


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"objective": "multiclass num_class:3"}, "multiclass"),
        ({"objective": "lambdarank"}, "lambdarank"),
        ({"objective": "cross_entropy_lambda"}, "cross_entropy_lambda"),
        ({"objective": "binary sqrt"}, "sqrt"),
        ({"num_class": 3}, "num_class"),
        ({"num_tree_per_iteration": 3}, "num_tree_per_iteration"),
        ({"average_output": True}, "average_output"),
    ],
)
def test_unsupported_dump_raises_value_error(change: dict, needle: str) -> None:
    booster, _ = _train({"objective": "regression"}, False, rounds=2)
    with pytest.raises(ValueError, match=needle):
        TreeModel.from_dump(booster.dump_model() | change)


def test_custom_objective_dump_raises() -> None:
    booster, _ = _train({"objective": "regression"}, False, rounds=2)
    dump = booster.dump_model()
    del dump["objective"]
    with pytest.raises(TreeModelError, match="unsupported"):
        TreeModel.from_dump(dump)


def test_wrong_feature_count_raises() -> None:
    booster, _ = _train({"objective": "regression"}, False, rounds=2)
    model = TreeModel.from_dump(booster.dump_model())
    with pytest.raises(ValueError, match=f"\\(n_rows, {N_FEATURES}\\)"):
        model.predict(np.ones((2, N_FEATURES + 1)))


def test_export_guard_finds_a_dump_that_predicts_otherwise() -> None:
    """The export refuses a booster whose JSON disagrees with the model: one changed leaf is found."""
    from serving.trees import dump_disagreement, probe_rows

    booster, _ = _train({"objective": "binary"}, categorical=False)
    dump = booster.dump_model()
    assert len(probe_rows(dump)) > 2 * N_FEATURES and dump_disagreement(dump, booster.predict) is None
    node = dump["tree_info"][0]["tree_structure"]
    while "leaf_value" not in node:
        node = node["left_child"]
    node["leaf_value"] += 0.5
    problem = dump_disagreement(dump, booster.predict)
    assert problem is not None and "probe rows differ" in problem
