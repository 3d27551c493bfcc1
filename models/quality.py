"""Quality predictor: how good will model m's answer to request x be (judge preference vs GPT-4 Turbo, in [0, 1]).

One LightGBM Booster with the model's identity and attributes as features scores every candidate
(`shared`), or one Booster per model on request features only (`per_model`); `heads: auto` picks the one
with the lower validation loss on prompts held out of the training side, never on the test prompts.
Objective `cross_entropy`: the label is a probability, so predictions stay in [0, 1] and can be calibrated.

Honest evaluation: test prompts are held out by prompt_id (every model's answer to a test prompt is
unseen) and the text transforms are fitted on training prompts only. Baselines: each model's mean
quality, and kNN over prompt text (the model's mean quality on the k most similar training prompts).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field

import lightgbm as lgb
import numpy as np
import pandas as pd
from scipy.stats import spearmanr
from sklearn.metrics import roc_auc_score
from sklearn.neighbors import NearestNeighbors

from features.build import FeatureParams, FeatureSpec, build_features, fit_features
from features.context import CONTEXT_FEATURES
from features.model_cards import MODEL_FEATURES, ModelCard
from models.calibration import PolicyCalibration, calibrate_tradeoff
from models.common import Evaluation, Split, TooLittleData, TuningProblem, group_split, train_booster
from models.params import QualityParams
from traces.prices import PriceTable

HEADS = ("shared", "per_model")


@dataclass(frozen=True)
class QualityPredictor:
    heads: str
    boosters: Mapping[str, lgb.Booster]  # {"shared": b} or {model name: b}
    feature_names: tuple[str, ...]
    spec: FeatureSpec
    valid_loss: Mapping[str, float] = field(
        default_factory=dict
    )  # validation log loss of each heads candidate and of the prior
    fallback: str | None = (
        None  # "prior": the heads added nothing on validation, each head is its model's training mean
    )
    policy: PolicyCalibration | None = None  # the bundle's tradeoff lambda, calibrated on held-out training prompts

    def predict(self, X: pd.DataFrame, models: pd.Series) -> np.ndarray:
        """Predicted quality per row; NaN for a model without a head (per_model only)."""
        X = X[list(self.feature_names)]
        if self.heads == "shared":
            return self.boosters["shared"].predict(X)
        out = np.full(len(X), np.nan)
        names = models.astype(object).to_numpy()
        for model, booster in self.boosters.items():
            rows = names == model
            if rows.any():
                out[rows] = booster.predict(X[rows])
        return out


def quality_rows(traces: pd.DataFrame) -> pd.DataFrame:
    """Rows that carry a quality label and a prompt (AlpacaEval today; user feedback later)."""
    rows = traces[traces["quality"].notna() & traces["prompt"].notna() & traces["prompt_id"].notna()]
    return rows.reset_index(drop=True)


def feature_columns(spec: FeatureSpec, heads: str) -> tuple[str, ...]:
    """Context features are left out (quality is a property of request x model, not of load); a per-model
    head does not need the model's identity."""
    drop = set(CONTEXT_FEATURES) | (set(MODEL_FEATURES) if heads == "per_model" else set())
    return tuple(c for c in spec.columns if c not in drop)


# A one-tree booster that cannot split predicts its training rows' mean (boost_from_average): the per-model
# prior, in the same LightGBM format as any head, so the bundle and every router read it unchanged.
CONSTANT = {"min_data_in_leaf": 2**31 - 1, "min_data_in_bin": 1}


def row_log_loss(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return -(y * np.log(p) + (1 - y) * np.log(1 - p))


def log_loss(y: np.ndarray, p: np.ndarray) -> float:
    return float(row_log_loss(y, p).mean())


def beats(loss: np.ndarray, baseline: np.ndarray, prompt_ids: np.ndarray, z: float) -> bool:
    """Is `loss` lower than `baseline` (per validation row) by more than z standard errors? Rows of one prompt
    are one cluster (14 answers to one prompt are not 14 independent tests); early stopping picked the heads'
    length on these rows, so a bare "lower" would favour them."""
    d = pd.Series(baseline - loss).groupby(prompt_ids).sum()
    if len(d) < 2:
        return False
    return bool(d.mean() > z * d.std(ddof=1) / np.sqrt(len(d)))


def _fit_heads(
    X: pd.DataFrame,
    rows: pd.DataFrame,
    heads: str,
    params: QualityParams,
    split: Split,
    rounds: Mapping[str, int] | None,
) -> tuple[dict[str, lgb.Booster], np.ndarray]:
    """Fit `heads` (or "prior": constant per-model heads) on split.train; the prediction of every split.test
    row (NaN elsewhere); early stopping on split.test when `rounds` is None."""
    y = rows["quality"].to_numpy(dtype=float)
    groups = (
        {"shared": np.ones(len(rows), dtype=bool)}
        if heads == "shared"
        else {m: (rows["model"] == m).to_numpy() for m in sorted(rows["model"].unique())}
    )
    boosters, pred = {}, np.full(len(rows), np.nan)
    for key, mask in groups.items():
        tr, va = mask & split.train, mask & split.test
        if heads == "prior":
            b = train_booster(X[tr], y[tr], params.lgb_params() | CONSTANT, 1)
        elif rounds is None:
            b = train_booster(
                X[tr],
                y[tr],
                params.lgb_params(),
                params.num_boost_round,
                valid=(X[va], y[va]),
                callbacks=[lgb.early_stopping(params.early_stopping_rounds, verbose=False)],
            )
        else:
            b = train_booster(X[tr], y[tr], params.lgb_params(), rounds[key])
        boosters[key] = b
        if va.any():
            pred[va] = b.predict(X[va])
    return boosters, pred


def ece(pred: np.ndarray, actual: np.ndarray, bins: int) -> float:
    """Expected calibration error: row-weighted mean |mean predicted - mean actual| over equal-width bins."""
    idx = np.minimum((pred * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        sel = idx == b
        if sel.any():
            total += sel.sum() * abs(pred[sel].mean() - actual[sel].mean())
    return total / len(pred)


def reliability(pred: np.ndarray, actual: np.ndarray, bins: int) -> pd.DataFrame:
    """Per bin: rows, mean predicted, mean actual (the data of the reliability plot)."""
    idx = np.minimum((pred * bins).astype(int), bins - 1)
    df = pd.DataFrame({"bin": idx, "pred": pred, "actual": actual})
    return (
        df.groupby("bin")
        .agg(rows=("pred", "size"), predicted=("pred", "mean"), actual=("actual", "mean"))
        .reset_index()
    )


def strongest_model(rows: pd.DataFrame) -> str:
    return str(rows.groupby("model")["quality"].mean().idxmax())


def quality_metrics(rows: pd.DataFrame, pred: np.ndarray, strongest: str, bins: int) -> dict[str, float]:
    """Spearman, MAE, ECE, and AUC of "m's answer is at least as good as the strongest model's" on the
    same prompt, scored by pred(m) - pred(strongest)."""
    actual = rows["quality"].to_numpy(dtype=float)
    df = pd.DataFrame(
        {"prompt_id": rows["prompt_id"].to_numpy(), "model": rows["model"].to_numpy(), "q": actual, "p": pred}
    )
    best = df[df["model"] == strongest].set_index("prompt_id")
    best = best[["q", "p"]].rename(columns={"q": "q_best", "p": "p_best"})
    others = df[df["model"] != strongest].join(best, on="prompt_id").dropna(subset=["q_best"])
    label = (others["q"] >= others["q_best"]).to_numpy()
    auc = (
        roc_auc_score(label, (others["p"] - others["p_best"]).to_numpy())
        if 0 < label.sum() < len(label)
        else float("nan")
    )
    return {
        "logloss": log_loss(actual, pred),
        "auc_vs_strongest": float(auc),
        "spearman": float(spearmanr(pred, actual).statistic),
        "mae": float(np.abs(pred - actual).mean()),
        "ece": float(ece(np.clip(pred, 0, 1), actual, bins)),
    }


def tuning_problem(
    traces: pd.DataFrame,
    params: QualityParams,
    features: FeatureParams,
    cards: tuple[ModelCard, ...],
    prices: PriceTable,
) -> TuningProblem:
    """The shared head on training prompts, validated on prompts held out of them (test prompts unused)."""
    rows = quality_rows(traces)
    split = group_split(rows["prompt_id"], params.test_fraction, salt=f"quality-test-{params.seed}")
    train_rows = rows[split.train].reset_index(drop=True)
    inner = group_split(train_rows["prompt_id"], params.valid_fraction, salt=f"quality-valid-{params.seed}")
    spec = fit_features(train_rows[inner.train], features, cards, prices)
    X = build_features(train_rows, spec)[list(feature_columns(spec, "shared"))]
    y = train_rows["quality"].to_numpy(dtype=float)
    return TuningProblem(
        X[inner.train],
        y[inner.train],
        X[inner.test],
        y[inner.test],
        params.lgb_params(),
        "cross_entropy",
        False,
        params.num_boost_round,
    )


def knn_baseline(X: pd.DataFrame, rows: pd.DataFrame, split: Split, k: int, column: str = "quality") -> np.ndarray:
    """Model m's mean `column` (quality; the routing bench also asks for cost_usd) on the k training prompts
    nearest (cosine over the text features the learned heads see: TF-IDF SVD and embedding) to each test prompt;
    NaN where none of them was answered by m (pooled data sets: a model that only answers other kinds of prompt)."""
    text_cols = [c for c in X.columns if c.startswith(("text_", "emb_"))]
    prompts = pd.DataFrame(X[text_cols].to_numpy(), index=rows["prompt_id"].to_numpy())
    train_p = prompts[split.train].groupby(level=0).first()
    table = (
        rows[split.train]
        .pivot_table(index="prompt_id", columns="model", values=column, aggfunc="mean")
        .reindex(train_p.index)
    )
    nn = NearestNeighbors(n_neighbors=min(k, len(train_p)), metric="cosine").fit(train_p.to_numpy())
    test_p = prompts[split.test].groupby(level=0).first()
    _, idx = nn.kneighbors(test_p.to_numpy())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices: no neighbour answered that model
        means = pd.DataFrame(np.nanmean(table.to_numpy()[idx], axis=1), index=test_p.index, columns=table.columns)
    test_rows = rows[split.test]
    return (
        means.stack()
        .reindex(pd.MultiIndex.from_arrays([test_rows["prompt_id"], test_rows["model"]]))
        .to_numpy(dtype=float)
    )


def fit(
    train_rows: pd.DataFrame,
    params: QualityParams,
    features: FeatureParams,
    cards: tuple[ModelCard, ...],
    prices: PriceTable,
) -> QualityPredictor:
    """Pure: fit features on `train_rows` only, pick heads on a validation split of their prompts, refit on all
    of them. Reusable wherever a predictor must be trained on one side of a split (training, the routing bench)."""
    train_rows = train_rows.reset_index(drop=True)
    spec = fit_features(train_rows, features, cards, prices)
    X_train = build_features(train_rows, spec)
    inner = group_split(train_rows["prompt_id"], params.valid_fraction, salt=f"quality-valid-{params.seed}")

    candidates = HEADS if params.heads == "auto" else (params.heads,)
    chosen: dict[str, tuple[dict[str, lgb.Booster], np.ndarray]] = {}
    for heads in candidates:
        cols = list(feature_columns(spec, heads))
        chosen[heads] = _fit_heads(X_train[cols], train_rows, heads, params, inner, None)
    y = train_rows["quality"].to_numpy(dtype=float)
    valid_loss = {
        h: float(row_log_loss(y[inner.test], pred[inner.test]).mean()) if inner.test.any() else float("nan")
        for h, (_, pred) in chosen.items()
    }
    heads = min(chosen, key=lambda h: valid_loss[h])
    everything = Split(np.ones(len(train_rows), dtype=bool), np.zeros(len(train_rows), dtype=bool))
    rounds = {key: max(b.best_iteration, 1) for key, b in chosen[heads][0].items()}
    fallback, policy = None, None
    if inner.test.any():
        head_pred, prior_pred, scored = _held_out(
            X_train, train_rows, spec, heads, chosen[heads][1], rounds, params, inner
        )
        ids = train_rows["prompt_id"].to_numpy()[scored]
        head_loss, prior_loss = row_log_loss(y[scored], head_pred[scored]), row_log_loss(y[scored], prior_pred[scored])
        valid_loss["prior"] = float(prior_loss.mean())
        if params.prior_fallback and not beats(
            head_loss, prior_loss, ids, params.fallback_z
        ):  # the features add nothing on held-out prompts
            fallback, head_pred = "prior", prior_pred
        policy = calibrate_tradeoff(train_rows[scored], head_pred[scored], params.policy_quality_share)
    if fallback is not None:
        heads, rounds = "per_model", None
    cols = list(feature_columns(spec, heads))
    boosters, _ = _fit_heads(X_train[cols], train_rows, fallback or heads, params, everything, rounds)
    return QualityPredictor(heads, boosters, tuple(cols), spec, valid_loss, fallback, policy)


def _held_out(
    X: pd.DataFrame,
    rows: pd.DataFrame,
    spec: FeatureSpec,
    heads: str,
    inner_pred: np.ndarray,
    rounds: Mapping[str, int],
    params: QualityParams,
    inner: Split,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Held-out predictions of the chosen heads and of the prior, and the mask of rows that have them. Up to
    `fallback_cv_prompts` training prompts: k-fold over all of them with the heads' rounds fixed (chosen on the
    inner split, so no row is scored by a model stopped on it): honest, and a small data set gets every prompt
    as evidence. Larger: the inner split, where early stopping's optimism is small beside the evidence."""
    per_model = list(feature_columns(spec, "per_model"))
    if rows["prompt_id"].nunique() > params.fallback_cv_prompts:
        return inner_pred, _fit_heads(X[per_model], rows, "prior", params, inner, None)[1], inner.test
    codes, uniques = pd.factorize(rows["prompt_id"])
    fold = np.random.default_rng(params.seed).permutation(len(uniques))[codes] % params.fallback_folds
    head_pred, prior_pred = np.full(len(rows), np.nan), np.full(len(rows), np.nan)
    cols = list(feature_columns(spec, heads))
    for f in range(params.fallback_folds):
        split = Split(fold != f, fold == f)
        head_pred[split.test] = _fit_heads(X[cols], rows, heads, params, split, rounds)[1][split.test]
        prior_pred[split.test] = _fit_heads(X[per_model], rows, "prior", params, split, None)[1][split.test]
    return head_pred, prior_pred, np.ones(len(rows), dtype=bool)


def fit_and_evaluate(
    traces: pd.DataFrame,
    params: QualityParams,
    features: FeatureParams,
    cards: tuple[ModelCard, ...],
    prices: PriceTable,
) -> tuple[QualityPredictor, Evaluation]:
    """Pure: split by prompt, `fit` on the train prompts, evaluate on the test prompts beside the baselines."""
    rows = quality_rows(traces)
    if rows.empty:
        raise TooLittleData("no rows with quality, prompt and prompt_id: nothing to train the quality predictor on")
    split = group_split(rows["prompt_id"], params.test_fraction, salt=f"quality-test-{params.seed}")
    train_rows = rows[split.train].reset_index(drop=True)
    predictor = fit(train_rows, params, features, cards, prices)
    heads = predictor.heads
    X_all = build_features(rows, predictor.spec)

    test_rows = rows[split.test].reset_index(drop=True)
    X_test = X_all[split.test].reset_index(drop=True)
    strongest = strongest_model(train_rows)
    model_mean = train_rows.groupby("model")["quality"].mean()
    prior = test_rows["model"].map(model_mean).to_numpy(dtype=float)
    knn = knn_baseline(X_all, rows, split, params.knn_k)
    pred = predictor.predict(X_test, test_rows["model"])
    metrics = quality_metrics(test_rows, pred, strongest, params.ece_bins)
    calibration = reliability(np.clip(pred, 0, 1), test_rows["quality"].to_numpy(dtype=float), params.ece_bins)
    metrics |= {f"valid_logloss_{h}": loss for h, loss in predictor.valid_loss.items()}
    baselines = {
        "per_model_mean": quality_metrics(test_rows, prior, strongest, params.ece_bins),
        "knn_text": quality_metrics(
            test_rows, np.where(np.isnan(knn), prior, knn), strongest, params.ece_bins
        ),  # no neighbour answered: the prior
    }
    fallback = (
        " -> fallback to the per-model prior: the heads did not beat it on validation" if predictor.fallback else ""
    )
    notes = (
        f"heads={heads} (validation log loss {', '.join(f'{h}={loss:.4f}' for h, loss in predictor.valid_loss.items())}){fallback}",
        f"strongest model on train prompts: {strongest}",
    )
    per_model = pd.DataFrame(
        {"model": test_rows["model"].to_numpy(), "abs_error": np.abs(pred - test_rows["quality"].to_numpy(dtype=float))}
    )
    by_model = per_model.groupby("model")["abs_error"].mean().sort_index()
    tables = {
        "reliability": tuple(calibration.to_dict("records")),
        "error_by_model": tuple({"group": str(k), "value": float(v)} for k, v in by_model.items()),
    }
    return predictor, Evaluation(
        "quality", metrics, baselines, int(split.train.sum()), int(split.test.sum()), notes, tables
    )
