"""Routing speed benchmark, one run, ratios against a reference measured in the same run:

- single request: `route()` latency p50 / p99 over real prompts, next to the router's old way of calling
  LightGBM (one `Booster.predict` per quality head plus one for the cost rows), the reference ratio;
- batched: `route_many()` decisions/s over the same prompts (features included), and the model part
  alone (`Booster.predict` over the batch's rows), on one core.
"""

from __future__ import annotations

import gc
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from serving.router import Router, RouteRequest

GOAL_P99_US = 500.0
GOAL_BATCH_PER_S = 50_000.0


@dataclass(frozen=True)
class RouteSpeed:
    requests: int
    candidates: int
    p50_us: float
    p99_us: float
    booster_predict_us: float  # per request, Booster.predict per quality head + cost rows (the old path)
    batch_per_s: float  # route_many, features included
    batch_model_per_s: float  # the batch's Booster.predict calls alone


def _latencies(router: Router, requests: list[RouteRequest]) -> np.ndarray:
    for r in requests[:50]:
        router.route(r)
    lat = np.empty(len(requests))
    for j, r in enumerate(requests):
        t = time.perf_counter()
        router.route(r)
        lat[j] = time.perf_counter() - t
    return lat * 1e6


def _booster_predict_us(router: Router, requests: list[RouteRequest]) -> float:
    """The per-request model calls as `Booster.predict` makes them (the reference the fast path beats)."""
    start = time.perf_counter()
    for r in requests:
        _, v = router.request_vector(r)
        Xq, Xc = router.quality_features(v), router.cost_features(v)
        for i, booster in enumerate(router.q_heads):
            if booster is not None:
                booster.predict(Xq[i : i + 1], num_threads=1)
        router.c_p50.predict(Xc, num_threads=1)
    return (time.perf_counter() - start) / len(requests) * 1e6


def _batched(router: Router, requests: list[RouteRequest], batch: int) -> tuple[float, float]:
    chunks = [requests[i : i + batch] for i in range(0, len(requests), batch)]
    start = time.perf_counter()
    for chunk in chunks:
        router.route_many(chunk)
    total = time.perf_counter() - start
    n = len(router.models)
    X = [
        (
            np.concatenate([router.quality_features(router.request_vector(r)[1]) for r in c]),
            np.concatenate([router.cost_features(router.request_vector(r)[1]) for r in c]),
        )
        for c in chunks
    ]
    start = time.perf_counter()
    for Xq, Xc in X:
        for i, booster in enumerate(router.q_heads):
            if booster is not None:
                booster.predict(Xq[i::n], num_threads=1)
        router.c_p50.predict(Xc, num_threads=1)
    model = time.perf_counter() - start
    return len(requests) / total, len(requests) / model


def main(
    bundle: Path, prompts_file: Path = Path("data/sample/alpaca_eval.parquet"), n: int = 800, batch: int = 1000
) -> RouteSpeed:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    router = Router.load(bundle)
    prompts = pd.read_parquet(prompts_file, columns=["prompt"])["prompt"].drop_duplicates().head(n).tolist()
    requests = [RouteRequest(prompt=p) for p in prompts]
    gc.collect()
    gc.disable()  # a collection pause is the process's, not the router's; reported separately below
    try:
        lat = _latencies(router, requests)
    finally:
        gc.enable()
    lat_gc = _latencies(router, requests)
    ref_us = _booster_predict_us(router, requests)
    per_s, model_per_s = _batched(router, requests, batch)
    out = RouteSpeed(
        len(requests),
        len(router.models),
        float(np.percentile(lat, 50)),
        float(np.percentile(lat, 99)),
        ref_us,
        per_s,
        model_per_s,
    )
    print(
        f"{out.requests} AlpacaEval prompts over {out.candidates} candidates, quality heads: {router.heads}, one thread"
    )
    verdict = "meets" if out.p99_us <= GOAL_P99_US else "MISSES"
    print(
        f"  route()            p50 {out.p50_us:6.0f} us  p99 {out.p99_us:6.0f} us  ({verdict} the p99 goal of {GOAL_P99_US:.0f} us)"
    )
    print(
        f"    with the garbage collector on: p50 {np.percentile(lat_gc, 50):.0f} us, p99 {np.percentile(lat_gc, 99):.0f} us"
    )
    print(
        f"  Booster.predict per head + cost rows (the model calls alone, old path): {ref_us:.0f} us per request; route() p50 / that = {out.p50_us / ref_us:.2f}x"
    )
    verdict = "meets" if out.batch_per_s >= GOAL_BATCH_PER_S else "MISSES"
    print(
        f"  route_many({batch})   {out.batch_per_s:8,.0f} decisions/s with features  ({verdict} the goal of {GOAL_BATCH_PER_S:,.0f}/s)"
    )
    print(
        f"    Booster.predict alone over the same batches: {out.batch_model_per_s:,.0f} requests/s (features are {1 - out.batch_per_s / out.batch_model_per_s:.0%} of the batched time)"
    )
    return out
