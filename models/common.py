"""What every predictor shares: leak-free splits, one way to fit a LightGBM Booster, typed evaluations.

Predictors are plain `lightgbm.Booster`s (never the sklearn wrapper: ~10x slower per row on the router's
hot path). Splits are deterministic functions of the data, so a prompt or a time window always lands
on the same side, run after run.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported where used: `beast metrics` reads an Evaluation without LightGBM, numpy or pandas
    import lightgbm as lgb
    import numpy as np
    import pandas as pd


class TooLittleData(ValueError):
    """The traces cannot train this predictor (no labelled rows, an empty side of the split): a data problem
    the user fixes by adding traces, so the CLI reports it in one line instead of a traceback."""


@dataclass(frozen=True)
class Split:
    """Boolean masks over the rows of one frame; disjoint, together all rows."""

    train: np.ndarray
    test: np.ndarray

    def __post_init__(self) -> None:
        if (self.train & self.test).any() or not (self.train | self.test).all():
            raise ValueError("a split must put every row on exactly one side")


def _unit_hash(keys: pd.Series, salt: str) -> np.ndarray:
    """Stable value in [0, 1) per key (sha256 of salt + key): the same key always lands on the same side."""
    import numpy as np

    uniq, inverse = np.unique(keys.astype(str).to_numpy(), return_inverse=True)
    vals = np.array([int.from_bytes(hashlib.sha256(f"{salt}:{k}".encode()).digest()[:8], "big") / 2**64 for k in uniq])
    return vals[inverse]


def group_split(groups: pd.Series, test_fraction: float, salt: str = "beast") -> Split:
    """Hold out about `test_fraction` of the groups (e.g. prompt_id): rows of one group never sit on both sides."""
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    test = _unit_hash(groups, salt) < test_fraction
    return Split(~test, test)


def time_split(timestamps: pd.Series, holdout: pd.Timedelta) -> Split:
    """The last `holdout` of the time range is the test side: train strictly before it, no look-ahead."""
    cut = timestamps.max() - holdout
    test = (timestamps > cut).to_numpy()
    return Split(~test, test)


def train_booster(
    X: pd.DataFrame,
    y: np.ndarray,
    params: Mapping[str, object],
    num_boost_round: int,
    categorical: Sequence[str] = (),
    valid: tuple[pd.DataFrame, np.ndarray] | None = None,
    callbacks: Sequence[object] = (),
) -> lgb.Booster:
    """Fit a Booster; `feature_pre_filter` off so tuned `min_data_in_leaf` values are honoured."""
    import lightgbm as lgb

    ds_params = {"feature_pre_filter": False}
    train = lgb.Dataset(
        X, label=y, categorical_feature=list(categorical) or "auto", params=ds_params, free_raw_data=False
    )
    valid_sets = [lgb.Dataset(valid[0], label=valid[1], reference=train, params=ds_params)] if valid is not None else []
    full = {"verbosity": -1, "num_threads": 2, "deterministic": True, "force_row_wise": True} | dict(params)
    return lgb.train(full, train, num_boost_round=num_boost_round, valid_sets=valid_sets, callbacks=list(callbacks))


@dataclass(frozen=True)
class Evaluation:
    """Held-out metrics of a predictor and of each baseline on the same rows (what DVC and MLflow read)."""

    predictor: str
    metrics: Mapping[str, float]
    baselines: Mapping[str, Mapping[str, float]]
    n_train: int
    n_test: int
    notes: tuple[str, ...] = field(default=())
    tables: Mapping[str, tuple[Mapping[str, float], ...]] = field(default_factory=dict)  # plot data (rows of dicts)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=False)

    def table(self) -> str:
        """Metrics of the predictor beside each baseline, one metric per line."""
        names = [self.predictor, *self.baselines]
        cols = [self.metrics, *self.baselines.values()]
        width = max(len(m) for m in self.metrics) if self.metrics else 6
        head = f"{'metric':<{width}}  " + "  ".join(f"{n:>14}" for n in names)
        rows = [f"{m:<{width}}  " + "  ".join(f"{c.get(m, float('nan')):>14.4f}" for c in cols) for m in self.metrics]
        return "\n".join([head, *rows, f"(train {self.n_train:,} rows, test {self.n_test:,} rows)"])


@dataclass(frozen=True)
class TuningProblem:
    """What a tuner needs from a predictor: training rows, validation rows carved from the training side
    only (the test side stays untouched), base LightGBM params, and the validation metric to optimise."""

    X_train: pd.DataFrame
    y_train: np.ndarray
    X_valid: pd.DataFrame
    y_valid: np.ndarray
    lgb_params: Mapping[str, object]
    metric: str  # a LightGBM metric name, evaluated on the validation rows every round
    maximize: bool
    num_boost_round: int
    categorical: tuple[str, ...] = ()
