"""Cost predictor: output tokens of a request for a candidate model (P50, P90, mean), hence USD via the price table.

Three LightGBM heads share one feature frame (`cost_features`):

- `p50`, `p90`: `objective: quantile` (alpha 0.5 / 0.9) on log1p(output_tokens). A quantile is unchanged by a
  monotone transform, so expm1 of the predicted log-quantile is the token quantile; the log scale keeps
  leaves on comparable scales for 3-token and 3,000-token answers.
- `mean`: `objective: regression` (L2) on raw output tokens: the conditional mean, the head whose per-row
  predictions add up to the right total. The median of a right-skewed length sits below its mean, so summing
  P50s underestimates a window's tokens (and spend); budgets and bills use `mean`, per-request
  "what will this likely cost" uses `p50`, and "at most, 9 times in 10" uses `p90`.

Evaluation (`fit_and_evaluate`) holds out two sets, each leak-free: the last `azure_holdout_minutes` of the
time-split models (Azure traces: train strictly before the cut) and `alpaca_test_fraction` of the prompt_ids
of the prompt-grouped rows (AlpacaEval: a prompt never sits on both sides). ONE predictor is fit on the union
of both train sides (model identity is a feature) and scored on each test side, metric names prefixed
`azure.` / `alpaca.`, beside a per-model baseline (train-side median / P90 / mean of each model).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import lightgbm as lgb
import numpy as np
import pandas as pd

from features.build import token_features
from features.model_cards import category_codes
from features.prompt import prompt_features
from models.common import Evaluation, Split, TuningProblem, group_split, train_booster
from models.params import CostParams
from traces.contract import STATUS_OK
from traces.prices import PriceTable, price_rows

CATEGORICAL: tuple[str, ...] = ("model", "task")
HEADS: tuple[str, ...] = ("p50", "p90", "mean")
MIN_CALIBRATION_ROWS = 50  # fewer calibration rows of a model -> it gets the all-model P90 shift


# ------------------------------------------------------------------------------------------ features


def fit_categories(frame: pd.DataFrame) -> dict[str, tuple[str, ...]]:
    """Sorted distinct values of each categorical column (absent column = no categories): code i = position i."""
    return {
        col: tuple(sorted(frame[col].dropna().astype(str).unique())) if col in frame.columns else ()
        for col in CATEGORICAL
    }


def _prompt_block(frame: pd.DataFrame) -> pd.DataFrame:
    """Prompt features (prefixed `prompt_`), NaN rows where there is no prompt."""
    prompts = (
        frame["prompt"]
        if "prompt" in frame.columns
        else pd.Series([None] * len(frame), index=frame.index, dtype=object)
    )
    return prompt_features(prompts).add_prefix("prompt_").astype(np.float64).reset_index(drop=True)


def cost_features(frame: pd.DataFrame, categories: Mapping[str, tuple[str, ...]] | None = None) -> pd.DataFrame:
    """The cost predictor's feature frame, one row per trace row (positional, fresh RangeIndex). Pure, vectorised.

    - `model`, `task`: codes into `categories` (default: this frame's own sorted values), NaN when null / unseen
    - `hour`: UTC hour of day of `timestamp`
    - `log_input_tokens`, `cached_share`: `features.build.token_features` (the quality predictor's too)
    - `prompt_*`: prompt features when a `prompt` is there (`prompt_chars`, `prompt_lines`, ...), NaN otherwise
    """
    cats = fit_categories(frame) if categories is None else categories
    n = len(frame)
    tokens = token_features(frame)
    ts = pd.to_datetime(frame["timestamp"], utc=True)
    out = pd.DataFrame(
        {
            "log_input_tokens": tokens["log_input_tokens"].to_numpy(),
            "model": category_codes(frame["model"], cats.get("model", ())) if "model" in frame else np.full(n, np.nan),
            "task": category_codes(frame["task"], cats.get("task", ())) if "task" in frame else np.full(n, np.nan),
            "hour": ts.dt.hour.to_numpy(dtype=np.float64),
            "cached_share": tokens["cached_share"].to_numpy(),
        }
    )
    return pd.concat([out, _prompt_block(frame)], axis=1)


# ------------------------------------------------------------------------------------------ predictor

# head -> (LightGBM objective, target from output tokens): P50 / P90 on log1p tokens, mean on raw tokens
HEAD_OBJECTIVES: dict[str, tuple[dict[str, object], Callable[[np.ndarray], np.ndarray]]] = {
    "p50": ({"objective": "quantile", "alpha": 0.5}, np.log1p),
    "p90": ({"objective": "quantile", "alpha": 0.9}, np.log1p),
    "mean": ({"objective": "regression"}, lambda y: y),
}


@dataclass(frozen=True)
class CostPredictor:
    boosters: Mapping[str, lgb.Booster]  # "p50", "p90" (log1p scale), "mean" (tokens)
    feature_names: tuple[str, ...]
    categories: Mapping[str, tuple[str, ...]]
    params: CostParams
    p90_shift: Mapping[str, float] = field(default_factory=lambda: {"": 0.0})  # log-scale, per model; "" = other

    def features(self, frame: pd.DataFrame) -> pd.DataFrame:
        return cost_features(frame, self.categories)[list(self.feature_names)]

    def predict_tokens(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Output tokens per row: columns p50, p90 (>= p50), mean; all >= 0, index = frame's index."""
        X = self.features(frame)
        p50 = np.expm1(self.boosters["p50"].predict(X))
        shift = pd.Series(frame["model"].to_numpy(), dtype=object).map(self.p90_shift).fillna(self.p90_shift[""])
        p90 = np.expm1(self.boosters["p90"].predict(X) + shift.to_numpy(dtype=np.float64))
        mean = self.boosters["mean"].predict(X)
        p50 = np.clip(p50, 0, None)
        return pd.DataFrame(
            {"p50": p50, "p90": np.maximum(p90, p50), "mean": np.clip(mean, 0, None)}, index=frame.index
        )

    def predict_cost(self, frame: pd.DataFrame, prices: PriceTable) -> pd.DataFrame:
        """USD per row for each head (input at the price in force, output = predicted tokens); NaN = no price."""
        return token_costs(frame, self.predict_tokens(frame), prices)


def token_costs(frame: pd.DataFrame, tokens: pd.DataFrame, prices: PriceTable) -> pd.DataFrame:
    """USD of each column of `tokens` taken as the output tokens of `frame`'s rows (cached input at its price)."""
    p = price_rows(prices, frame["model"].reset_index(drop=True), frame["timestamp"].reset_index(drop=True))
    inp = frame["input_tokens"].to_numpy(dtype=np.float64, na_value=np.nan)
    cached = (
        frame["cached_input_tokens"].fillna(0).to_numpy(dtype=np.float64)
        if "cached_input_tokens" in frame.columns
        else np.zeros(len(frame))
    )
    fixed = (inp - cached) * p["input"].to_numpy() + cached * p["cached_input"].to_numpy()
    out_price = p["output"].to_numpy()
    usd = {c: (fixed + tokens[c].to_numpy(dtype=np.float64) * out_price) / 1e6 for c in tokens.columns}
    return pd.DataFrame(usd, index=frame.index)


def booster_params(params: CostParams, objective: dict[str, object]) -> dict[str, object]:
    return {
        "num_leaves": params.num_leaves,
        "learning_rate": params.learning_rate,
        "min_data_in_leaf": params.min_data_in_leaf,
        "feature_fraction": params.feature_fraction,
        "lambda_l2": params.lambda_l2,
        "seed": params.seed,
        "num_threads": 1,  # ~25k rows: one thread is ~1 s per head; 2 threads on a busy 2-core box took 10x longer
    } | objective


def calibration_cut_between(first: pd.Timestamp, last: pd.Timestamp, fraction: float) -> pd.Timestamp | None:
    """Rows without a prompt_id after this instant calibrate P90: the last `fraction` of their time range
    [first, last] (None without such rows). Takes the extremes so a partitioned frame can reduce them first."""
    return None if pd.isna(last) else last - (last - first) * fraction


def calibration_cut(timestamps: pd.Series, fraction: float) -> pd.Timestamp | None:
    return calibration_cut_between(timestamps.min(), timestamps.max(), fraction)


def calibration_mask(frame: pd.DataFrame, fraction: float, salt: str, cut: pd.Timestamp | None) -> np.ndarray:
    """Calibration rows given the global `cut` (`calibration_cut` of the rows without a prompt_id): a function
    of each row alone, so a partitioned frame is masked partition by partition."""
    n = len(frame)
    pid = frame["prompt_id"] if "prompt_id" in frame.columns else pd.Series([None] * n, index=frame.index, dtype=object)
    grouped = pid.notna().to_numpy()
    calib = np.zeros(n, dtype=bool)
    if grouped.any():
        calib[grouped] = group_split(pid[grouped], fraction, salt).test
    if (~grouped).any() and cut is not None:
        calib[~grouped] = (frame["timestamp"][~grouped] > cut).to_numpy()
    return calib


def _calibration_rows(frame: pd.DataFrame, fraction: float, salt: str) -> np.ndarray:
    """Rows held out to calibrate P90, as leak-free as the evaluation: a `fraction` of the prompt_ids, and the
    last `fraction` of the time range of the rows without a prompt_id."""
    ungrouped = frame["prompt_id"].isna() if "prompt_id" in frame.columns else pd.Series(True, index=frame.index)
    return calibration_mask(frame, fraction, salt, calibration_cut(frame["timestamp"][ungrouped], fraction))


def conformal_shifts(resid: np.ndarray, names: np.ndarray) -> dict[str, float]:
    """Per model, the finite-sample-corrected 0.9 quantile of log1p(y) - predicted log-P90 ("" = all rows, used
    for a model with fewer than `MIN_CALIBRATION_ROWS` calibration rows)."""

    def q(r: np.ndarray) -> float:
        level = min(1.0, 0.9 * (1 + 1 / len(r)))
        return float(np.quantile(r, level, method="higher"))

    shifts = {"": q(resid)}
    for name in np.unique(names):
        r = resid[names == name]
        if len(r) >= MIN_CALIBRATION_ROWS:
            shifts[str(name)] = q(r)
    return shifts


def _p90_shift(
    X: pd.DataFrame, log_y: np.ndarray, models: pd.Series, calib: np.ndarray, params: CostParams
) -> dict[str, float]:
    """Split-conformal shift (log scale) per model that makes the P90 head cover 90% of calibration rows.

    A quantile booster fit on the other rows is scored on `calib`; the shifts are `conformal_shifts` of its
    residuals. Without calibration rows: no shift."""
    if calib.sum() == 0 or (~calib).sum() == 0:
        return {"": 0.0}
    p90_params = booster_params(params, {"objective": "quantile", "alpha": 0.9})
    booster = train_booster(X[~calib], log_y[~calib], p90_params, params.num_boost_round, CATEGORICAL)
    resid = log_y[calib] - booster.predict(X[calib])
    return conformal_shifts(resid, models.to_numpy()[calib].astype(str))


def fit(frame: pd.DataFrame, params: CostParams) -> CostPredictor:
    """Fit the three heads on `frame` (ok rows only: a failed request's 0 tokens are not an answer length),
    then calibrate P90 on held-out rows (`_p90_shift`)."""
    rows = frame[frame["status"] == STATUS_OK] if "status" in frame.columns else frame
    categories = fit_categories(rows)
    X = cost_features(rows, categories)
    y = rows["output_tokens"].to_numpy(dtype=np.float64)
    boosters = {
        head: train_booster(X, target(y), booster_params(params, obj), params.num_boost_round, categorical=CATEGORICAL)
        for head, (obj, target) in HEAD_OBJECTIVES.items()
    }
    shift: dict[str, float] = {"": 0.0}
    if params.p90_calibration_fraction > 0:
        calib = _calibration_rows(rows, params.p90_calibration_fraction, "cost-p90-calibration")
        shift = _p90_shift(X, np.log1p(y), rows["model"], calib, params)
    return CostPredictor(boosters, tuple(X.columns), categories, params, shift)


def tuning_problem(traces: pd.DataFrame, params: CostParams) -> TuningProblem:
    """The P50 head (log tokens) on the training side, validated on its calibration rows (test side unused)."""
    ok = (traces["status"] == STATUS_OK).to_numpy() if "status" in traces.columns else np.ones(len(traces), dtype=bool)
    rows = traces[cost_splits(traces, params).train & ok]
    valid = _calibration_rows(rows, params.p90_calibration_fraction or 0.2, "cost-tuning")
    X = cost_features(rows, fit_categories(rows[~valid]))
    y = np.log1p(rows["output_tokens"].to_numpy(dtype=np.float64))
    base = booster_params(params, {"objective": "quantile", "alpha": 0.5, "metric": "quantile"})
    return TuningProblem(
        X[~valid], y[~valid], X[valid], y[valid], base, "quantile", False, params.num_boost_round, CATEGORICAL
    )


# ------------------------------------------------------------------------------------------ evaluation


@dataclass(frozen=True)
class CostSplits:
    """Row masks over one trace frame: the two evaluation sets, each split into train / test."""

    azure: Split
    alpaca: Split
    azure_rows: np.ndarray = field(repr=False)
    alpaca_rows: np.ndarray = field(repr=False)

    @property
    def train(self) -> np.ndarray:
        return (self.azure_rows & self.azure.train) | (self.alpaca_rows & self.alpaca.train)


def holdout_cut(latest: pd.Timestamp, params: CostParams) -> pd.Timestamp | None:
    """Time-split rows after this instant are the azure test side: the last `azure_holdout_minutes` before the
    `latest` time-split row (None without such rows)."""
    return None if pd.isna(latest) else latest - pd.Timedelta(minutes=params.azure_holdout_minutes)


def split_cut(traces: pd.DataFrame, params: CostParams) -> pd.Timestamp | None:
    return holdout_cut(traces["timestamp"][traces["model"].isin(params.time_split_models).to_numpy()].max(), params)


def row_sides(traces: pd.DataFrame, params: CostParams, cut: pd.Timestamp | None) -> CostSplits:
    """The splits given the global `cut` (`split_cut` over all rows): each row's side is a function of that
    row alone, so a partitioned frame splits partition by partition with the same answer."""
    n = len(traces)
    azure_rows = traces["model"].isin(params.time_split_models).to_numpy()
    pid = traces["prompt_id"] if "prompt_id" in traces.columns else pd.Series([None] * n, index=traces.index)
    alpaca_rows = pid.notna().to_numpy() & ~azure_rows
    azure_test = azure_rows & (traces["timestamp"] > cut).to_numpy() if cut is not None else np.zeros(n, dtype=bool)
    alpaca_test = np.zeros(n, dtype=bool)
    if alpaca_rows.any():
        alpaca_test[alpaca_rows] = group_split(pid[alpaca_rows], params.alpaca_test_fraction, params.split_salt).test
    return CostSplits(Split(~azure_test, azure_test), Split(~alpaca_test, alpaca_test), azure_rows, alpaca_rows)


def cost_splits(traces: pd.DataFrame, params: CostParams) -> CostSplits:
    """Azure: time split of the `time_split_models` rows; AlpacaEval: prompt_id group split of the other rows
    with a prompt_id. Other rows (e.g. Mooncake: no model, no prompt) are on neither side."""
    return row_sides(traces, params, split_cut(traces, params))


def _token_metrics(y: np.ndarray, p50: np.ndarray, p90: np.ndarray, mean: np.ndarray) -> dict[str, float]:
    pos = y > 0
    total = y.sum()
    return {
        "mdape": float(np.median(np.abs(p50[pos] - y[pos]) / y[pos])),
        "p90_coverage": float(np.mean(y <= p90)),
        "sum_error_p50": float(abs(p50.sum() - total) / total),
        "sum_error_mean": float(abs(mean.sum() - total) / total),
    }


def _cost_metrics(test: pd.DataFrame, tokens: pd.DataFrame, y: np.ndarray, prices: PriceTable) -> dict[str, float]:
    both = tokens.assign(actual=y)
    usd = token_costs(test, both, prices)
    priced = usd["actual"].notna().to_numpy()
    total = usd["actual"][priced].sum()
    if not priced.any() or total <= 0:
        return {}
    return {
        "cost_sum_error_p50": float(abs(usd["p50"][priced].sum() - total) / total),
        "cost_sum_error_mean": float(abs(usd["mean"][priced].sum() - total) / total),
    }


def baseline_stats(y: pd.Series, models: np.ndarray) -> tuple[pd.DataFrame, pd.Series]:
    """Per model and over all rows: median / P90 / mean of the train side's output tokens (the baseline)."""
    y = y.astype(np.float64)
    stats = y.groupby(models).agg(p50="median", p90=lambda s: s.quantile(0.9), mean="mean")
    return stats, pd.Series({"p50": y.median(), "p90": y.quantile(0.9), "mean": y.mean()})


def baseline_tokens(stats: pd.DataFrame, glob: pd.Series, test: pd.DataFrame) -> pd.DataFrame:
    """The baseline's tokens for `test`: its model's train-side stats, the global ones for an unseen model."""
    return stats.reindex(test["model"].to_numpy()).fillna(glob).set_axis(test.index)


def _per_model_baseline(train: pd.DataFrame, test: pd.DataFrame) -> pd.DataFrame:
    return baseline_tokens(*baseline_stats(train["output_tokens"], train["model"].to_numpy()), test)


def score_set(
    name: str, test: pd.DataFrame, pred: pd.DataFrame, base: pd.DataFrame, priced: bool, prices: PriceTable
) -> tuple[dict[str, float], dict[str, float]]:
    """Metrics (`<name>.<metric>`) of the predictor's and the baseline's tokens on one test side."""
    y = test["output_tokens"].to_numpy(dtype=np.float64)
    out = []
    for tokens in (pred, base):
        m = _token_metrics(y, *(tokens[c].to_numpy() for c in HEADS))
        if priced:
            m |= _cost_metrics(test, tokens, y, prices)
        out.append({f"{name}.{k}": v for k, v in m.items()})
    return out[0], out[1]


def fit_and_evaluate(traces: pd.DataFrame, prices: PriceTable, params: CostParams) -> tuple[CostPredictor, Evaluation]:
    """Fit one predictor on the union of both train sides; score it and the per-model baseline on each test side."""
    ok = (traces["status"] == STATUS_OK).to_numpy() if "status" in traces.columns else np.ones(len(traces), dtype=bool)
    splits = cost_splits(traces, params)
    train = traces[splits.train & ok]
    predictor = fit(train, params)

    metrics: dict[str, float] = {}
    baseline: dict[str, float] = {}
    n_test = 0
    sets = (("azure", splits.azure_rows, splits.azure, False), ("alpaca", splits.alpaca_rows, splits.alpaca, True))
    for name, rows, split, priced in sets:
        test = traces[rows & split.test & ok]
        if test.empty:
            continue
        n_test += len(test)
        base = _per_model_baseline(traces[rows & split.train & ok], test)
        m, b = score_set(name, test, predictor.predict_tokens(test), base, priced, prices)
        metrics |= m
        baseline |= b
    counts = (
        int((splits.azure_rows & splits.azure.train & ok).sum()),
        int((splits.alpaca_rows & splits.alpaca.train & ok).sum()),
        int((~splits.azure_rows & ~splits.alpaca_rows).sum()),
    )
    return predictor, Evaluation(
        "cost", metrics, {"per_model": baseline}, len(train), n_test, evaluation_notes(params, *counts)
    )


def evaluation_notes(params: CostParams, azure_train: int, alpaca_train: int, neither: int) -> tuple[str, ...]:
    return (
        "sums use the `mean` head (L2 on tokens); `p50` underestimates the sum of a right-skewed length",
        f"P90 calibrated per model on {params.p90_calibration_fraction:g} of the train side (log-scale shift)",
        f"train rows: {azure_train + alpaca_train:,} (azure {azure_train:,}, alpaca {alpaca_train:,}); "
        f"{neither:,} rows in neither set (no time-split model, no prompt_id)",
    )
