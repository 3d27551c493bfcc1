"""Training benchmark: features + the three predictors + N Optuna trials each, on the real samples scaled
to a target row count (copies shifted in time, with fresh request / prompt / prefix ids, so each copy is
new traffic with the real distributions). Prints seconds per step against the 10-minute goal."""

from __future__ import annotations

import math
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from core.config import load_params
from features.build import FeatureParams, build_features, fit_features
from features.model_cards import load_cards
from models import cache, cost, quality
from models.train import TrainParams
from models.tune import TuneParams, problems, tune_one
from traces.load import load_traces
from traces.prices import load_prices

GOAL_SECONDS = 600


def scaled(traces: pd.DataFrame, rows: int) -> pd.DataFrame:
    """`traces` repeated until `rows`, each copy later in time and with its own ids (then cut to `rows`)."""
    copies = max(1, math.ceil(rows / len(traces)))
    span = traces["timestamp"].max() - traces["timestamp"].min() + pd.Timedelta(hours=1)
    parts = []
    for c in range(copies):
        part = traces.copy()
        part["request_id"] = part["request_id"] + f"#{c}"
        part["prompt_id"] = part["prompt_id"] + f"#{c}"
        part["session_id"] = part["session_id"] + f"#{c}"
        part["timestamp"] = part["timestamp"] + c * span
        blocks = pa.chunked_array(pa.array(part["prefix_blocks"].array)).combine_chunks()
        shifted = pa.ListArray.from_arrays(blocks.offsets, pc.add(blocks.values, c * 10**12), mask=blocks.is_null())
        part["prefix_blocks"] = pd.Series(pd.arrays.ArrowExtensionArray(shifted), index=part.index)
        parts.append(part)
    out = pd.concat(parts, ignore_index=True)
    keep = (
        np.sort(np.random.default_rng(0).choice(len(out), size=rows, replace=False))
        if rows < len(out)
        else np.arange(len(out))
    )
    return out.iloc[keep].reset_index(drop=True)


def _timed(label: str, fn, table: list[tuple[str, float]]) -> object:
    started = time.perf_counter()
    result = fn()
    table.append((label, time.perf_counter() - started))
    print(f"  {label:<34}{table[-1][1]:>8.1f} s", flush=True)
    return result


def main(rows: int, trials: int, params_file: Path | None = None) -> float:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    train = load_params(params_file, "train", TrainParams)
    features = load_params(params_file, "features", FeatureParams)
    prices, cards = load_prices(train.prices), load_cards(train.cards)
    traces = scaled(load_traces([train.traces], train.prices), rows)
    print(
        f"{len(traces):,} rows ({traces['model'].nunique()} models; {quality.quality_rows(traces).shape[0]:,} with quality labels)"
    )
    steps: list[tuple[str, float]] = []
    rows_q = quality.quality_rows(traces)
    spec = _timed("features: fit (quality rows)", lambda: fit_features(rows_q, features, cards, prices), steps)
    _timed(f"features: build ({len(traces):,} rows)", lambda: build_features(traces, spec), steps)
    print(f"  {'':<34}({len(traces) / max(steps[-1][1], 1e-9):,.0f} rows/s)")
    _timed(
        "train quality (heads auto)",
        lambda: quality.fit_and_evaluate(traces, train.quality, features, cards, prices),
        steps,
    )
    _timed("train cost", lambda: cost.fit_and_evaluate(traces, prices, train.cost), steps)
    _timed("train cache", lambda: cache.fit_and_evaluate(traces, train.cache), steps)
    tune = replace(load_params(params_file, "tune", TuneParams), trials=trials)
    with tempfile.TemporaryDirectory(prefix="beast-bench-tune-") as tmp:
        tune = replace(tune, storage=f"sqlite:///{tmp}/optuna.db")
        for name, job in problems(traces, train, features).items():
            _timed(
                f"tune {name} ({trials} trials + verdict)", lambda job=job, name=name: tune_one(name, job, tune), steps
            )
    total = sum(s for _, s in steps)
    verdict = "meets" if total <= GOAL_SECONDS else "MISSES"
    print(f"  {'total':<34}{total:>8.1f} s  ({verdict} the goal of {GOAL_SECONDS} s; ratio {total / GOAL_SECONDS:.2f})")
    return total
