"""Cache-hit predictor: at a request's arrival, the probability that a later request reuses its prompt prefix.

A router or KV cache asks this to decide whether a request's prefix blocks are worth keeping.
Only rows with `prefix_blocks` are used (today: the Mooncake conversation trace; block 0 is a system
prompt shared by every request, and equal ids mean an equal prefix, so ids form a hash chain).

Label rule (`cache_labels`), exact:

1. Order the rows by `timestamp`, ties broken by row order (a stable sort); that order is "earlier / later".
2. Explode (request, block) pairs from `prefix_blocks`, keeping a block's first position when a list
   repeats an id (a block counts once per request).
3. A request is *reused* (label 1) when any of its blocks at position >= 1 (anything past the first,
   shared system block) occurs again in a strictly later request whose timestamp is at most `horizon_s`
   seconds after its own (difference <= horizon_s; an equal timestamp counts). Otherwise 0; a request
   with a single block is always 0.
   Why not "its last block": the last block is usually partial, and its hash changes once the conversation
   grows, so on the sample only 0.8 % of last blocks recur within 300 s (a degenerate label), whereas any
   block past the system prompt recurring means the request's own context is served again.
   (With hash-chained ids this is the same as "block 1 recurs".)
4. Right censoring: a request within `horizon_s` of the frame's last timestamp cannot see its whole horizon,
   so its 0 may be false; `label_observed` marks the rows whose horizon lies inside the frame, and
   `fit_and_evaluate` trains and scores only on those.

Features (`cache_features`), each computed for a request from strictly earlier requests only (same order
as above), so a router can compute them online at arrival; NaN means "never seen before":

| feature | meaning |
|---|---|
| `input_tokens` | prompt tokens |
| `n_blocks` | length of `prefix_blocks` |
| `n_blocks_seen` | its distinct blocks that occurred in an earlier request |
| `frac_blocks_seen` | `n_blocks_seen / n_distinct_blocks` |
| `n_blocks_new` | distinct blocks never seen before |
| `first_block_count` | earlier requests holding its first block |
| `last_block_count` | earlier requests holding its last block |
| `secs_since_first_block` | seconds since its first block was last seen (NaN if never) |
| `secs_since_last_block` | seconds since its last block was last seen (NaN if never) |
| `conv_turn` | earlier requests holding its second block = its turn in the conversation (NaN if < 2 blocks) |
| `secs_since_conv_seen` | seconds since its second block was last seen: gap since the conversation's previous turn |
| `conv_age_s` | seconds since its second block was first seen: age of the conversation |
| `rate_60s` | earlier requests with timestamp in [t - 60 s, t] (load) |

The conversation of a request is keyed by its first two blocks (system block + the conversation's first
user block); with hash-chained ids that is the same as keying by its second block.

All are vectorised (pyarrow flatten, numpy lexsort, grouped shifts); no Python loop per row.

Split and scoring (`fit_and_evaluate`): `time_split` holds out the last `holdout_fraction_of_time` of the
time range. Training rows are purged of those within `horizon_s` of the cut (their labels would look into
the test window), and both sides drop right-censored rows (rule 4). Features are computed once over the
whole frame in time order, as the router would see them. Baseline: the stronger, by training AUC, of two
one-feature heuristics, a frequency score (`frac_blocks_seen`) and a recency score (minus
`secs_since_conv_seen`, never seen ranked lowest); it is scored on the same test rows as the booster.
(The prior count of the last block is no contender: it is almost always 0, train AUC 0.500 on the sample.)
Metrics: ROC AUC, PR AUC (average precision) and the test base rate.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import lightgbm as lgb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from sklearn.metrics import average_precision_score, roc_auc_score

from models.common import Evaluation, Split, TooLittleData, TuningProblem, time_split, train_booster
from models.params import CacheParams

FEATURES: tuple[str, ...] = (
    "input_tokens",
    "n_blocks",
    "n_blocks_seen",
    "frac_blocks_seen",
    "n_blocks_new",
    "first_block_count",
    "last_block_count",
    "secs_since_first_block",
    "secs_since_last_block",
    "conv_turn",
    "secs_since_conv_seen",
    "conv_age_s",
    "rate_60s",
)
RATE_WINDOW_S = 60.0


@dataclass(frozen=True)
class CachePredictor:
    booster: lgb.Booster
    feature_names: tuple[str, ...]
    params: CacheParams

    def predict(self, features: pd.DataFrame) -> np.ndarray:
        """Probability of reuse within `params.horizon_s`, one per row of `cache_features(...)`."""
        return self.booster.predict(features[list(self.feature_names)])


def select_rows(traces: pd.DataFrame) -> pd.DataFrame:
    """Rows with non-null `prefix_blocks`, sorted by timestamp (stable: ties keep their row order)."""
    rows = traces[traces["prefix_blocks"].notna()]
    return rows.sort_values("timestamp", kind="stable")


# --- shared machinery ---------------------------------------------------------------------------------


def _millis(timestamps: pd.Series) -> np.ndarray:
    """Timestamps as epoch milliseconds (UTC), float64: exact integers, so differences and horizons are exact."""
    idx = pd.DatetimeIndex(pd.to_datetime(timestamps, utc=True)).as_unit("ms")
    return idx.asi8.astype(np.float64)


@dataclass(frozen=True)
class _Pairs:
    """Distinct (request, block) pairs, sorted by (block, request); requests numbered in time order."""

    n_rows: int
    order: np.ndarray  # position in time order -> positional row of the frame
    t: np.ndarray  # epoch ms, per request in time order
    n_blocks: np.ndarray  # list length, per request in time order
    row: np.ndarray  # per pair: request (time order)
    pos: np.ndarray  # per pair: position of the block in its request's list
    pair_t: np.ndarray
    prev_t: np.ndarray  # time of the previous request holding the block (NaN: none)
    next_t: np.ndarray  # time of the next request holding the block (NaN: none)
    prior_count: np.ndarray  # earlier requests holding the block
    first_t: np.ndarray  # time the block was first seen, if before this request (NaN otherwise)


def _pairs(frame: pd.DataFrame) -> _Pairs:
    t_raw = _millis(frame["timestamp"])
    order = np.argsort(t_raw, kind="stable")
    t = t_raw[order]
    lists = pa.array(frame["prefix_blocks"].iloc[order], type=pa.list_(pa.int64()))
    if isinstance(lists, pa.ChunkedArray):
        lists = lists.combine_chunks()
    n_blocks = pc.fill_null(pc.list_value_length(lists), 0).to_numpy(zero_copy_only=False).astype(np.int64)
    block = pc.list_flatten(lists).to_numpy(zero_copy_only=False).astype(np.int64)
    row = np.repeat(np.arange(len(t)), n_blocks)
    starts = np.concatenate([[0], np.cumsum(n_blocks)[:-1]]).astype(np.int64)
    pos = np.arange(len(block)) - np.repeat(starts, n_blocks)

    # sort by (block, row, pos); drop a block repeated inside one request (keep its first position)
    s = np.lexsort((pos, row, block))
    block, row, pos = block[s], row[s], pos[s]
    keep = np.ones(len(block), dtype=bool)
    keep[1:] = (block[1:] != block[:-1]) | (row[1:] != row[:-1])
    block, row, pos = block[keep], row[keep], pos[keep]

    pair_t = t[row]
    new_group = np.ones(len(block), dtype=bool)
    new_group[1:] = block[1:] != block[:-1]
    group_start = np.maximum.accumulate(np.where(new_group, np.arange(len(block)), 0))
    prior_count = np.arange(len(block)) - group_start
    prev_t = np.full(len(block), np.nan)
    prev_t[1:] = np.where(new_group[1:], np.nan, pair_t[:-1])
    next_t = np.full(len(block), np.nan)
    last_of_group = np.ones(len(block), dtype=bool)
    last_of_group[:-1] = new_group[1:]
    next_t[:-1] = np.where(last_of_group[:-1], np.nan, pair_t[1:])
    first_t = np.where(prior_count > 0, pair_t[group_start], np.nan)
    return _Pairs(len(t), order, t, n_blocks, row, pos, pair_t, prev_t, next_t, prior_count.astype(float), first_t)


def _at_position(p: _Pairs, values: np.ndarray, which: np.ndarray) -> np.ndarray:
    """Per request (time order): `values` of the pair at position `which[row]` (NaN if there is none)."""
    out = np.full(p.n_rows, np.nan)
    hit = p.pos == which[p.row]
    out[p.row[hit]] = values[hit]
    return out


def _to_frame_order(p: _Pairs, values: np.ndarray) -> np.ndarray:
    out = np.empty_like(values)
    out[p.order] = values
    return out


# --- features and labels ------------------------------------------------------------------------------


def cache_features(frame: pd.DataFrame) -> pd.DataFrame:
    """The features of the module docstring, one row per row of `frame` (same index, same order).

    Uses only `timestamp`, `input_tokens` and `prefix_blocks`; each row's values depend only on rows that
    come before it in (timestamp, row order), never on later ones.
    """
    p = _pairs(frame)
    n = p.n_rows
    seen = ~np.isnan(p.prev_t)
    n_distinct = np.bincount(p.row, minlength=n).astype(float)
    n_seen = np.bincount(p.row, weights=seen.astype(float), minlength=n)
    zeros, ones = np.zeros(n, dtype=np.int64), np.ones(n, dtype=np.int64)
    last = p.n_blocks - 1
    since = (p.pair_t - p.prev_t) / 1e3
    left = np.searchsorted(p.t, p.t - RATE_WINDOW_S * 1e3, side="left")
    cols = {
        "input_tokens": pd.to_numeric(frame["input_tokens"]).to_numpy(dtype=float, na_value=np.nan)[p.order],
        "n_blocks": p.n_blocks.astype(float),
        "n_blocks_seen": n_seen,
        "frac_blocks_seen": np.divide(n_seen, n_distinct, out=np.full(n, np.nan), where=n_distinct > 0),
        "n_blocks_new": n_distinct - n_seen,
        "first_block_count": _at_position(p, p.prior_count, zeros),
        "last_block_count": _at_position(p, p.prior_count, last),
        "secs_since_first_block": _at_position(p, since, zeros),
        "secs_since_last_block": _at_position(p, since, last),
        "conv_turn": _at_position(p, p.prior_count, ones),
        "secs_since_conv_seen": _at_position(p, since, ones),
        "conv_age_s": _at_position(p, (p.pair_t - p.first_t) / 1e3, ones),
        "rate_60s": (np.arange(n) - left).astype(float),
    }
    return pd.DataFrame({k: _to_frame_order(p, v) for k, v in cols.items()}, index=frame.index)[list(FEATURES)]


def cache_labels(frame: pd.DataFrame, horizon_s: float) -> np.ndarray:
    """1 if a block of the row past position 0 recurs in a later row within `horizon_s` seconds, else 0."""
    p = _pairs(frame)
    reused = (p.pos >= 1) & (p.next_t - p.pair_t <= horizon_s * 1e3)  # NaN compares False
    hit = np.bincount(p.row[reused], minlength=p.n_rows) > 0
    return _to_frame_order(p, hit.astype(np.int8))


def label_observed(frame: pd.DataFrame, horizon_s: float) -> np.ndarray:
    """True where the row's whole horizon lies inside the frame (t + horizon_s <= last timestamp)."""
    t = _millis(frame["timestamp"])
    return t + horizon_s * 1e3 <= t.max() if len(t) else np.zeros(0, dtype=bool)


# --- baseline, fit, evaluate --------------------------------------------------------------------------

HEURISTICS: dict[str, Callable[[pd.DataFrame], np.ndarray]] = {
    "frequency:frac_blocks_seen": lambda X: X["frac_blocks_seen"].fillna(0.0).to_numpy(),
    "recency:-secs_since_conv_seen": lambda X: -X["secs_since_conv_seen"].fillna(1e18).to_numpy(),
}


def _scores(y: np.ndarray, score: np.ndarray) -> dict[str, float]:
    two = len(np.unique(y)) == 2
    return {
        "auc": float(roc_auc_score(y, score)) if two else float("nan"),
        "pr_auc": float(average_precision_score(y, score)) if two else float("nan"),
        "base_rate": float(np.mean(y)) if len(y) else float("nan"),
    }


@dataclass(frozen=True)
class CacheRows:
    """The time split of a frame and the rows of each side that are trained / scored on."""

    split: Split
    train: np.ndarray  # split.train minus censored rows and rows within horizon_s of the cut
    test: np.ndarray  # split.test minus censored rows


def split_rows(frame: pd.DataFrame, params: CacheParams) -> CacheRows:
    """`time_split` on the last `holdout_fraction_of_time` of the time range, then purge and drop censored."""
    stamps = pd.to_datetime(frame["timestamp"], utc=True)
    span = stamps.max() - stamps.min()
    split = time_split(stamps, span * params.holdout_fraction_of_time)
    t = _millis(frame["timestamp"])
    observed = label_observed(frame, params.horizon_s)
    cut = t[split.test].min() if split.test.any() else np.inf
    train = split.train & observed & (t + params.horizon_s * 1e3 < cut)
    test = split.test & observed
    return CacheRows(split, train, test)


def tuning_problem(traces: pd.DataFrame, params: CacheParams) -> TuningProblem:
    """The training side split again in time (same purge and censoring rules); the test side is unused."""
    frame = select_rows(traces)
    X, y = cache_features(frame), cache_labels(frame, params.horizon_s)
    train = split_rows(frame, params).train
    inner = split_rows(frame[train].reset_index(drop=True), params)
    Xt, yt = X[train].reset_index(drop=True), y[train]
    base = params.booster_params() | {"metric": "auc"}
    return TuningProblem(
        Xt[inner.train], yt[inner.train], Xt[inner.test], yt[inner.test], base, "auc", True, params.num_boost_round
    )


def fit_and_evaluate(traces: pd.DataFrame, params: CacheParams) -> tuple[CachePredictor, Evaluation]:
    """Select rows, build features and labels, fit on the early part of the trace, score on the late part."""
    frame = select_rows(traces)
    if len(frame) == 0:
        raise TooLittleData("cache predictor: no rows with prefix_blocks in the traces")
    X = cache_features(frame)
    y = cache_labels(frame, params.horizon_s)
    rows = split_rows(frame, params)
    train, test = rows.train, rows.test
    if train.sum() == 0 or test.sum() == 0:
        raise TooLittleData(f"cache predictor: empty side after purging (train {train.sum()}, test {test.sum()} rows)")

    booster = train_booster(X[train], y[train], params.booster_params(), params.num_boost_round)
    predictor = CachePredictor(booster, FEATURES, params)

    train_auc = {name: _scores(y[train], h(X[train]))["auc"] for name, h in HEURISTICS.items()}
    best = max(train_auc, key=lambda k: (np.nan_to_num(train_auc[k], nan=-1.0), k))
    metrics = _scores(y[test], predictor.predict(X[test]))
    baseline = _scores(y[test], HEURISTICS[best](X[test]))
    notes = (
        f"label: a block past position 0 recurs in a later request within {params.horizon_s:g} s",
        f"test: last {params.holdout_fraction_of_time:g} of the time range; train purged of rows within "
        f"{params.horizon_s:g} s of the cut; {int((~label_observed(frame, params.horizon_s)).sum())} "
        "right-censored rows dropped",
        f"baseline recency_frequency = {best} (train AUC "
        + ", ".join(f"{k} {v:.4f}" for k, v in train_auc.items())
        + ")",
    )
    baselines = {"recency_frequency": baseline}
    return predictor, Evaluation("cache", metrics, baselines, int(train.sum()), int(test.sum()), notes)


# --- transfer: train on one trace, score on another ---------------------------------------------------

# Scale-free request features (no seconds, no load, no counts that grow with the trace): what a model
# fitted on one workload may carry to another (`caching.transfer`, `beast cache transfer`).
TRANSFER_FEATURES: tuple[str, ...] = ("n_blocks", "n_blocks_seen", "frac_blocks_seen", "n_blocks_new", "conv_turn")


def transfer_auc(
    frames: dict[str, pd.DataFrame], params: CacheParams, features: tuple[str, ...] = FEATURES
) -> list[dict[str, object]]:
    """For every ordered pair (A, B): fit on A's training rows (`split_rows`), score ROC AUC on B's test rows
    (A -> A is the usual held-out evaluation). Pairs whose side has one class only get AUC None."""
    prepared = {}
    for name, traces in frames.items():
        frame = select_rows(traces).reset_index(drop=True)
        X, y = cache_features(frame)[list(features)], cache_labels(frame, params.horizon_s)
        prepared[name] = (X, y, split_rows(frame, params))
    out = []
    for a, (Xa, ya, ra) in prepared.items():
        booster = None
        if ra.train.sum() and len(np.unique(ya[ra.train])) == 2:
            booster = train_booster(Xa[ra.train], ya[ra.train], params.booster_params(), params.num_boost_round)
        for b, (Xb, yb, rb) in prepared.items():
            auc = float("nan")
            if booster is not None and rb.test.sum():
                auc = _scores(yb[rb.test], booster.predict(Xb[rb.test]))["auc"]
            out.append(
                {
                    "train": a,
                    "test": b,
                    "features": len(features),
                    "auc": None if auc != auc else auc,  # NaN -> null: strict JSON
                    "test_rows": int(rb.test.sum()),
                }
            )
    return out
