"""Knob grids and the shipped policy's operating point, from predictions on training prompts (pure numpy).

The routing policies (`serving.router`: threshold, tradeoff) take one knob each. A fixed grid of knob values
means different things on different data (predicted qualities and costs have other scales), so sweeps
degenerate; here every grid is derived from the training side's own predictions, so it always runs from
the cheapest model to the best predicted one. The benchmark sweeps these grids per fold; training picks one
operating point for the bundle (`calibrate_tradeoff`). Never computed from test rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


def quantile_levels(n: int) -> np.ndarray:
    """n evenly spaced levels in [0, 1]: a calibrated knob is named by its level, the same in every fold."""
    return np.linspace(0.0, 1.0, n) if n > 1 else np.array([0.5])


def threshold_grid(train_quality: np.ndarray, n: int) -> np.ndarray:
    """Target qualities for the threshold policy at `n` levels, from training-side predictions: level 0 is the
    lowest prediction (every model qualifies: the cheapest is chosen), level 1 lies above the highest (none
    does: the best predicted is chosen), levels between are quantiles. The sweep spans cheapest to best."""
    q = np.asarray(train_quality, dtype=float)
    q = q[np.isfinite(q)]
    if len(q) == 0:
        return np.zeros(n)
    out = np.quantile(q, quantile_levels(n))
    out[-1] = np.nextafter(q.max(), np.inf)
    return out


def break_even_lambdas(quality: np.ndarray, cost: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Per prompt (rows starts[i]..starts[i+1]), every lambda at which `quality - lambda x cost x 1000`
    prefers a dearer model to a cheaper one: (q_i - q_j) / ((c_i - c_j) x 1000) for c_i > c_j, q_i > q_j."""
    q, c = np.asarray(quality, dtype=float), np.asarray(cost, dtype=float)
    out = []
    for s, e in zip(starts[:-1], starts[1:], strict=True):
        dq = q[s:e, None] - q[None, s:e]
        dc = (c[s:e, None] - c[None, s:e]) * 1000
        with np.errstate(invalid="ignore", divide="ignore"):
            lam = dq / dc
        ok = (dc > 0) & (dq > 0) & np.isfinite(lam)
        out.append(lam[ok])
    return np.concatenate(out) if out else np.empty(0)


def tradeoff_grid(train_quality: np.ndarray, train_cost: np.ndarray, starts: np.ndarray, n: int) -> np.ndarray:
    """Lambdas for the tradeoff policy at `n` levels, from training-side predictions: level 0 is lambda 0 (best
    predicted quality), level 1 is twice the largest break-even lambda (the cheapest model everywhere), the
    levels between are quantiles of the break-even lambdas, where the choices actually change."""
    lam = break_even_lambdas(train_quality, train_cost, starts)
    if len(lam) == 0:
        return np.concatenate([[0.0], np.full(n - 1, 1e12)]) if n > 1 else np.zeros(1)
    inner = np.quantile(lam, quantile_levels(max(n - 2, 1))) if n > 2 else np.empty(0)
    return np.concatenate([[0.0], inner, [2.0 * lam.max()]])[:n]


def share_thresholds(train_scores: np.ndarray, shares: np.ndarray) -> np.ndarray:
    """RouteLLM-style calibration: for each target share x of strong calls, the score above which a request
    goes to the strong model, set so that a share x of the *training* prompts would (x = 0: +inf, x = 1: -inf)."""
    s = np.asarray(train_scores, dtype=float)
    s = s[np.isfinite(s)]
    x = np.asarray(shares, dtype=float)
    out = np.quantile(s, np.clip(1.0 - x, 0.0, 1.0)) if len(s) else np.zeros(len(x))
    return np.where(x <= 0, np.inf, np.where(x >= 1, -np.inf, out))


@dataclass(frozen=True)
class PolicyCalibration:
    """The tradeoff policy's lambda for the bundle, chosen on held-out training prompts (never the test side):
    the cheapest routing whose mean actual quality reaches `quality_share` of the best single model's."""

    policy: str  # "tradeoff"
    lam: float
    quality_share: float
    reached: bool  # False: no lambda reached it; the one with the highest mean quality instead
    mean_quality: float  # of that routing on the calibration prompts
    best_model: str
    best_model_quality: float
    cost_vs_best: float  # its mean cost / the best model's mean cost
    prompts: int


def calibrate_tradeoff(rows: pd.DataFrame, pred: np.ndarray, share: float, n: int = 41) -> PolicyCalibration | None:
    """On held-out rows (prompt_id, model, quality, cost_usd) and their predicted quality: per prompt the model
    maximising pred - lam x cost x 1000 (the tradeoff policy), lam over `tradeoff_grid`; the largest-saving lam
    whose mean actual quality reaches `share` of the best single model's (none does: the best quality). None
    without costs or without a prompt answered by two models."""
    if "cost_usd" not in rows:
        return None
    df = pd.DataFrame(
        {
            "pid": rows["prompt_id"].astype(str).to_numpy(),
            "model": rows["model"].astype(str).to_numpy(),
            "q": rows["quality"].to_numpy(dtype=float),
            "c": rows["cost_usd"].to_numpy(dtype=float),
            "p": np.asarray(pred, dtype=float),
        }
    )
    df = df.dropna()
    df = (
        df[df.groupby("pid")["model"].transform("nunique") >= 2]
        .sort_values(["pid", "model"], kind="stable")
        .reset_index(drop=True)
    )
    if df.empty:
        return None
    singles = df.groupby("model")[["q", "c"]].mean()
    best = str(singles["q"].idxmax())
    goal = share * float(singles.loc[best, "q"])
    pid = df["pid"].to_numpy()
    starts = np.flatnonzero(np.r_[True, pid[1:] != pid[:-1], True])
    points = []
    for lam in np.unique(tradeoff_grid(df["p"].to_numpy(), df["c"].to_numpy(), starts, n)):
        chosen = (df["p"] - lam * df["c"] * 1000).groupby(df["pid"], sort=False).idxmax().to_numpy()
        points.append((float(lam), float(df.loc[chosen, "q"].mean()), float(df.loc[chosen, "c"].mean())))
    reach = [p for p in points if p[1] >= goal]
    lam, q, c = min(reach, key=lambda p: (p[2], -p[0])) if reach else max(points, key=lambda p: (p[1], -p[2]))
    return PolicyCalibration(
        "tradeoff",
        lam,
        share,
        bool(reach),
        q,
        best,
        float(singles.loc[best, "q"]),
        c / float(singles.loc[best, "c"]),
        int(df["pid"].nunique()),
    )
