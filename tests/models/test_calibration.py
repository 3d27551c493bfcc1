"""Knob grids and the bundle's operating point from training-side predictions (models/calibration.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.calibration import break_even_lambdas, calibrate_tradeoff, share_thresholds, threshold_grid, tradeoff_grid
from serving.router import Threshold, Tradeoff


def test_threshold_grid_runs_from_every_model_qualifying_to_none() -> None:
    q = np.array([0.2, 0.9, 0.5, 0.4, np.nan])
    grid = threshold_grid(q, 5)
    assert grid[0] == 0.2 and grid[-1] > 0.9 and np.all(np.diff(grid) >= 0)
    assert grid[2] == pytest.approx(0.45)  # the median of the finite predictions (0.2, 0.4, 0.5, 0.9)
    # the shipped policy on these values: level 0 picks the cheapest, level 1 the best predicted
    models, cost = ("cheap", "mid", "dear"), np.array([1.0, 2.0, 3.0])
    quality = np.array([0.2, 0.5, 0.9])
    assert Threshold(grid[0]).choose(models, quality, cost)[0] == 0
    assert Threshold(grid[-1]).choose(models, quality, cost)[0] == 2


def test_break_even_lambdas_and_the_tradeoff_grid_span_best_to_cheapest() -> None:
    # one prompt: (cost 1e-3, q .2), (2e-3, .5), (4e-3, .9) -> slopes per USD / 1k: .3, .7 / 3, .2
    q, c, starts = np.array([0.2, 0.5, 0.9]), np.array([1e-3, 2e-3, 4e-3]), np.array([0, 3])
    assert sorted(break_even_lambdas(q, c, starts)) == pytest.approx(sorted([0.3, 0.7 / 3, 0.2]))
    grid = tradeoff_grid(q, c, starts, 5)
    assert grid[0] == 0 and grid[-1] == pytest.approx(0.6) and len(grid) == 5
    assert Tradeoff(grid[0]).choose(("a", "b", "c"), q, c)[0] == 2  # lambda 0: best quality
    assert Tradeoff(grid[-1]).choose(("a", "b", "c"), q, c)[0] == 0  # beyond every break-even: cheapest


def test_share_thresholds_send_that_share_of_training_prompts_to_strong() -> None:
    train = np.arange(100, dtype=float)
    tau = share_thresholds(train, np.array([0.0, 0.25, 0.5, 1.0]))
    assert tau[0] == np.inf and tau[-1] == -np.inf
    assert [(train > t).mean() for t in tau] == pytest.approx([0.0, 0.25, 0.5, 1.0], abs=0.01)


def test_calibrate_tradeoff_picks_the_cheapest_lambda_at_95_percent_of_the_best_quality() -> None:
    """Two models, 4 prompts. `cheap` (cost 1e-3) is as good as `dear` (1e-2) on prompts a, b and useless on
    c, d; the predictions know it. Routing a, b to cheap keeps the mean quality at 0.9 (= dear's) for 55% of
    dear's cost; the calibrated lambda must land there, not at lambda 0 (always dear: no saving)."""
    rows = pd.DataFrame(
        {
            "prompt_id": ["a", "a", "b", "b", "c", "c", "d", "d"],
            "model": ["cheap", "dear"] * 4,
            "quality": [0.9, 0.9, 0.9, 0.9, 0.1, 0.9, 0.1, 0.9],
            "cost_usd": [1e-3, 1e-2] * 4,
        }
    )
    pred = np.array([0.88, 0.9, 0.87, 0.9, 0.2, 0.9, 0.15, 0.9])
    cal = calibrate_tradeoff(rows, pred, 0.95)
    assert cal is not None and cal.policy == "tradeoff" and cal.reached and cal.best_model == "dear"
    assert cal.mean_quality == pytest.approx(0.9) and cal.cost_vs_best == pytest.approx(0.55)
    chosen = [
        Tradeoff(cal.lam).choose(("cheap", "dear"), pred[i : i + 2], np.array([1e-3, 1e-2]))[0] for i in range(0, 8, 2)
    ]
    assert chosen == [0, 0, 1, 1]
    assert calibrate_tradeoff(rows.drop(columns="cost_usd"), pred, 0.95) is None
    assert (
        calibrate_tradeoff(rows[rows["model"] == "dear"], pred[1::2], 0.95) is None
    )  # one model per prompt: nothing to trade
