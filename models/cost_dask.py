"""The cost predictor trained on a Dask cluster with `lightgbm.dask`: same splits, features, heads, P90
calibration and metrics as `models.cost.fit_and_evaluate`, for traces that do not fit one process.

What differs, and why it stays close:
- the two global facts the splits need (the time-split cut, the calibration cut) are reduced over the whole
  dataset first; then every row's side is a function of the row alone (`cost.row_sides`,
  `cost.calibration_mask`), so partitions are split where they lie, with the single-process answer;
- LightGBM trains data-parallel (`tree_learner=data`): each worker builds histograms on its rows and they are
  summed, but feature bins come from each worker's sample, so trees (and metrics) differ slightly from a
  single-process fit on the same rows (tests/models/test_scale.py states the tolerance);
- evaluation collects only what the metric needs: the test rows' predictions and a few columns, and the train
  side's (model, output tokens) for the per-model baseline; never the feature matrix.
"""

from __future__ import annotations

import time
import warnings

import dask
import numpy as np
import pandas as pd

from features.distributed import map_frames
from models.common import Evaluation, TooLittleData
from models.cost import (
    CATEGORICAL,
    HEAD_OBJECTIVES,
    HEADS,
    CostParams,
    CostPredictor,
    baseline_stats,
    baseline_tokens,
    booster_params,
    calibration_cut_between,
    calibration_mask,
    conformal_shifts,
    cost_features,
    evaluation_notes,
    holdout_cut,
    row_sides,
    score_set,
)
from traces.contract import STATUS_OK
from traces.prices import PriceTable

# columns the cost predictor reads from the dataset (features, label, splits, pricing)
COLUMNS = (
    "request_id",
    "timestamp",
    "model",
    "task",
    "status",
    "prompt_id",
    "prompt",
    "input_tokens",
    "cached_input_tokens",
    "output_tokens",
)
EVAL_COLUMNS = ("model", "timestamp", "input_tokens", "cached_input_tokens", "output_tokens")
FLAGS = ("_train", "_azure_train", "_alpaca_train", "_azure_test", "_alpaca_test", "_neither")


def _with_sides(part: pd.DataFrame, params: CostParams, cut: pd.Timestamp | None) -> pd.DataFrame:
    """The partition with one boolean column per side (`FLAGS`): failed rows on no side; `_neither` counts the
    rows of no evaluation set, as the single-process notes do."""
    s = row_sides(part, params, cut)
    ok = (part["status"] == STATUS_OK).to_numpy(dtype=bool, na_value=False)
    flags = {
        "_azure_train": s.azure_rows & s.azure.train & ok,
        "_alpaca_train": s.alpaca_rows & s.alpaca.train & ok,
        "_azure_test": s.azure_rows & s.azure.test & ok,
        "_alpaca_test": s.alpaca_rows & s.alpaca.test & ok,
    }
    flags["_train"] = s.train & ok
    flags["_neither"] = ~s.azure_rows & ~s.alpaca_rows
    return part.assign(**flags)


def _design(part: pd.DataFrame, categories: dict, fraction: float, salt: str, cut: pd.Timestamp | None) -> pd.DataFrame:
    """Features of the train rows plus their label (`_y`), model name, calibration flag and shuffle key."""
    X = cost_features(part, categories)
    calib = calibration_mask(part, fraction, salt, cut) if fraction > 0 else np.zeros(len(part), dtype=bool)
    key = pd.util.hash_pandas_object(part["request_id"], index=False).to_numpy()
    return X.assign(
        _y=part["output_tokens"].to_numpy(dtype=np.float64),
        _model=part["model"].astype(object).to_numpy(),
        _calib=calib,
        _key=key,
    )


def _predict(part: pd.DataFrame, predictor: CostPredictor) -> pd.DataFrame:
    """The evaluation columns of a test partition and the predicted tokens of each head (a filtered partition
    may be empty: LightGBM refuses zero rows)."""
    part = part.reset_index(drop=True)
    tokens = predictor.predict_tokens(part) if len(part) else pd.DataFrame({h: np.zeros(0) for h in HEADS})
    return pd.concat([part[list(EVAL_COLUMNS)], tokens.add_prefix("pred_")], axis=1)


def _log_residual(part: pd.DataFrame, booster, features: list[str]) -> pd.DataFrame:
    pred = booster.predict(part[features]) if len(part) else np.zeros(0)
    return pd.DataFrame({"resid": np.log1p(part["_y"].to_numpy()) - pred, "model": part["_model"].to_numpy()})


def _fit_head(client, X, y, params: dict, rounds: int):
    """One head on the cluster; returns the plain Booster (the router never sees the sklearn wrapper)."""
    from lightgbm import DaskLGBMRegressor

    lgb_params = {k: v for k, v in params.items() if k != "num_threads"}  # a Dask worker's own thread count rules
    lgb_params |= {"verbosity": -1, "deterministic": True, "force_row_wise": True, "tree_learner": "data"}
    model = DaskLGBMRegressor(client=client, n_estimators=rounds, **lgb_params)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Parameter n_jobs will be ignored")  # the wrapper's own default
        return model.fit(X, y, categorical_feature=list(CATEGORICAL)).booster_


def _progress(label: str, started: float) -> None:
    print(f"  cost on dask: {label} ({time.perf_counter() - started:.1f} s)", flush=True)


def fit_and_evaluate(client, traces, prices: PriceTable, params: CostParams) -> tuple[CostPredictor, Evaluation]:
    """`cost.fit_and_evaluate` for a Dask DataFrame of `COLUMNS` (`features.distributed.read_dataset`)."""
    started = time.perf_counter()
    cut = holdout_cut(traces["timestamp"][traces["model"].isin(list(params.time_split_models))].max().compute(), params)
    rows = map_frames(traces, _with_sides, params, cut).persist()
    train = rows[rows["_train"]]
    fraction = params.p90_calibration_fraction
    ungrouped = train["timestamp"][train["prompt_id"].isna()]
    # one pass over the persisted rows for every global fact the next steps need
    counts, first, last, *distinct = dask.compute(
        rows[list(FLAGS)].sum(),
        ungrouped.min(),
        ungrouped.max(),
        *(train[c].dropna().astype(str).unique() for c in CATEGORICAL),
    )
    n = {flag: int(v) for flag, v in counts.items()}
    if n["_train"] == 0:
        raise TooLittleData("no successful rows on the train side of the cost splits")
    categories = {col: tuple(sorted(map(str, values))) for col, values in zip(CATEGORICAL, distinct, strict=True)}
    calib_cut = calibration_cut_between(first, last, fraction) if fraction > 0 else None
    # Shuffled by a hash of request_id: LightGBM's data-parallel learner builds each feature's bins from one
    # worker's rows, so every worker must hold a random mix (dataset partitions follow date and source: on
    # the committed samples, unshuffled, alpaca MdAPE was 0.52 instead of 0.41).
    design = map_frames(train, _design, categories, fraction, "cost-p90-calibration", calib_cut)
    design = design.shuffle(
        on="_key", npartitions=max(design.npartitions, len(client.scheduler_info()["workers"]))
    ).persist()
    features = [c for c in design.columns if not c.startswith("_")]
    _progress(f"{n['_train']:,} train rows split and featurised in {design.npartitions} partitions", started)

    X, y = design[features], design["_y"]
    boosters = {}
    for head, (objective, target) in HEAD_OBJECTIVES.items():
        boosters[head] = _fit_head(client, X, target(y), booster_params(params, objective), params.num_boost_round)
        _progress(f"head {head} trained", started)
    shift: dict[str, float] = {"": 0.0}
    calib_rows = design["_calib"]
    n_calib = int(calib_rows.sum().compute())
    if fraction > 0 and 0 < n_calib < n["_train"]:
        rest = design[~calib_rows]
        p90 = _fit_head(
            client,
            rest[features],
            np.log1p(rest["_y"]),
            booster_params(params, HEAD_OBJECTIVES["p90"][0]),
            params.num_boost_round,
        )
        resid = map_frames(design[calib_rows], _log_residual, p90, features).compute()
        shift = conformal_shifts(resid["resid"].to_numpy(), resid["model"].astype(str).to_numpy())
        _progress(f"P90 calibrated on {n_calib:,} rows", started)
    predictor = CostPredictor(boosters, tuple(features), categories, params, shift)

    metrics: dict[str, float] = {}
    baseline: dict[str, float] = {}
    n_test = 0
    for name, priced in (("azure", False), ("alpaca", True)):
        if n[f"_{name}_test"] == 0:
            continue
        scored, side = dask.compute(
            map_frames(rows[rows[f"_{name}_test"]], _predict, predictor),
            rows[rows[f"_{name}_train"]][["model", "output_tokens"]],
        )
        test = scored[list(EVAL_COLUMNS)]
        pred = scored[[f"pred_{h}" for h in HEADS]].rename(columns=lambda c: c.removeprefix("pred_"))
        base = baseline_tokens(*baseline_stats(side["output_tokens"], side["model"].to_numpy()), test)
        m, b = score_set(name, test, pred, base, priced, prices)
        metrics |= m
        baseline |= b
        n_test += len(test)
    _progress("evaluated", started)
    notes = evaluation_notes(params, n["_azure_train"], n["_alpaca_train"], n["_neither"]) + (
        "trained on Dask (lightgbm.dask, data-parallel)",
    )
    return predictor, Evaluation("cost", metrics, {"per_model": baseline}, n["_train"], n_test, notes)
