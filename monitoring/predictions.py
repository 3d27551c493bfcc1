"""Predicted vs actual, for the champion predictors as exported (the bundle routers load, not MLflow).

For a seeded sample of successful requests whose model is one of the bundle's candidates, the router's
predictions for the model that actually served are compared with what happened: the logged or priced
`cost_usd`, and the `quality` label where there is one. Rows that cannot be compared are counted by reason,
never silently left out.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as sps

from monitoring.recommend import SkipCode, route_requests, row_skips
from serving.router import Router


class Skip(StrEnum):
    FAILED = "failed"  # an error has no answer to predict
    NOT_CANDIDATE = "not_a_candidate"  # the bundle has no predictions for this model
    NOT_SAMPLED = "not_sampled"  # beyond the sample size


@dataclass(frozen=True)
class CalibrationBin:
    predicted: float  # mean prediction in the bin
    actual: float  # mean actual value in the bin
    rows: int


@dataclass(frozen=True)
class PredictionCheck:
    """How well one predictor's outputs matched what happened."""

    target: str  # cost_usd | quality
    rows: int
    mean_predicted: float
    mean_actual: float
    mae: float
    bias: float  # mean(predicted - actual)
    spearman: float
    median_ape: float  # median |predicted - actual| / actual over actual > 0 (cost); NaN for quality
    bins: tuple[CalibrationBin, ...]  # equal-count bins of the prediction


def calibration_bins(pred: np.ndarray, actual: np.ndarray, bins: int) -> tuple[CalibrationBin, ...]:
    """Equal-count bins by prediction rank: mean predicted vs mean actual (the diagonal is calibrated)."""
    if len(pred) == 0:
        return ()
    order = np.argsort(pred, kind="stable")
    return tuple(
        CalibrationBin(float(pred[i].mean()), float(actual[i].mean()), len(i))
        for i in np.array_split(order, min(bins, len(pred)))
        if len(i)
    )


def prediction_check(target: str, pred: np.ndarray, actual: np.ndarray, bins: int = 10) -> PredictionCheck:
    """Pure: error summary of `pred` against `actual` (rows where either is NaN are left out)."""
    keep = ~(np.isnan(pred) | np.isnan(actual))
    p, a = pred[keep], actual[keep]
    n = len(p)
    pos = a > 0
    mdape = float(np.median(np.abs(p[pos] - a[pos]) / a[pos])) if target == "cost_usd" and pos.any() else math.nan
    rho = float(sps.spearmanr(p, a).statistic) if n > 2 and np.ptp(p) > 0 and np.ptp(a) > 0 else math.nan
    return PredictionCheck(
        target,
        n,
        float(p.mean()) if n else math.nan,
        float(a.mean()) if n else math.nan,
        float(np.abs(p - a).mean()) if n else math.nan,
        float((p - a).mean()) if n else math.nan,
        rho,
        mdape,
        calibration_bins(p, a, bins),
    )


@dataclass(frozen=True)
class ChampionCheck:
    bundle: str
    predictors: dict[str, Any]  # predictor -> registered name / version / run id, from the manifest
    skipped: dict[str, int]  # Skip -> rows
    cost: PredictionCheck
    quality: PredictionCheck
    points: dict[str, list[list[float]]]  # target -> [predicted, actual] pairs (for the scatter plot)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def comparable_rows(
    frame: pd.DataFrame, models: tuple[str, ...], max_rows: int, seed: int
) -> tuple[np.ndarray, dict[str, int]]:
    """Indices of the rows to predict (a seeded sample of successes of candidate models) and skip counts."""
    skip = row_skips(frame, models).to_numpy()  # the recommendations' rule: failed first, then unknown model
    eligible = np.flatnonzero(skip == "")
    failed, unknown = int((skip == SkipCode.ERROR_STATUS).sum()), int((skip == SkipCode.NOT_A_CANDIDATE).sum())
    skipped = {Skip.FAILED.value: failed, Skip.NOT_CANDIDATE.value: unknown, Skip.NOT_SAMPLED.value: 0}
    if len(eligible) > max_rows:
        skipped[Skip.NOT_SAMPLED.value] = len(eligible) - max_rows
        eligible = np.sort(np.random.default_rng(seed).choice(eligible, size=max_rows, replace=False))
    return eligible, skipped


def champion_check(
    frame: pd.DataFrame, router: Router, bundle_name: str, max_rows: int, seed: int, max_points: int = 2000
) -> ChampionCheck:
    """Predict the sampled rows with the router's own feature code and boosters; compare with the traces."""
    rows, skipped = comparable_rows(frame, router.models, max_rows, seed)
    sub = frame.iloc[rows].reset_index(drop=True)
    quality, cost = (
        router.predict_many(route_requests(sub))
        if len(sub)
        else (np.empty((0, len(router.models))), np.empty((0, len(router.models))))
    )
    col = pd.Index(router.models).get_indexer(sub["model"].astype(object))
    at = np.arange(len(sub))
    pred_cost, pred_q = cost[at, col], quality[at, col]
    actual_cost = (
        pd.to_numeric(sub["cost_usd"], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
        if "cost_usd" in sub
        else np.full(len(sub), np.nan)
    )
    actual_q = (
        pd.to_numeric(sub["quality"], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
        if "quality" in sub
        else np.full(len(sub), np.nan)
    )

    def points(p: np.ndarray, a: np.ndarray) -> list[list[float]]:
        keep = np.flatnonzero(~(np.isnan(p) | np.isnan(a)))[:max_points]
        return [[float(p[i]), float(a[i])] for i in keep]

    manifest = router.bundle.manifest
    predictors = {
        k: {f: v.get(f) for f in ("registered_name", "alias", "version", "run_id")}
        for k, v in manifest.get("predictors", {}).items()
    }
    return ChampionCheck(
        bundle_name,
        predictors,
        skipped,
        prediction_check("cost_usd", pred_cost, actual_cost),
        prediction_check("quality", pred_q, actual_q),
        {"cost_usd": points(pred_cost, actual_cost), "quality": points(pred_q, actual_q)},
    )
