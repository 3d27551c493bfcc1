"""Routing speed benchmark: one decision at a time (p50 / p99 over real prompts), printed next to a raw
`Booster.predict` of the same quality-feature rows, the reference a router cannot beat with LightGBM."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd

from serving.router import RouteRequest, Router

GOAL_P99_US = 500.0


def main(bundle: Path, prompts_file: Path = Path("data/sample/alpaca_eval.parquet"), n: int = 800) -> dict[str, float]:
    router = Router.load(bundle)
    prompts = pd.read_parquet(prompts_file, columns=["prompt"])["prompt"].drop_duplicates().head(n).tolist()
    requests = [RouteRequest(prompt=p) for p in prompts]
    for r in requests[:20]:
        router.route(r)
    lat = []
    for r in requests:
        t = time.perf_counter()
        router.route(r)
        lat.append(time.perf_counter() - t)
    lat_us = np.array(lat) * 1e6
    tokens, prompt, text = router.request_features(requests[0])
    X = router.quality_features(requests[0], tokens, prompt, text)
    booster = next(iter(router.q_boosters.values()))
    t = time.perf_counter()
    for _ in range(len(requests)):
        booster.predict(X, num_threads=1)
    raw_us = (time.perf_counter() - t) / len(requests) * 1e6
    out = {"p50_us": float(np.percentile(lat_us, 50)), "p99_us": float(np.percentile(lat_us, 99)), "raw_predict_us": raw_us}
    print(f"{len(requests)} requests over {len(router.models)} candidates, quality heads: {router.heads}")
    print(f"  route() p50 {out['p50_us']:.0f} us, p99 {out['p99_us']:.0f} us ({'meets' if out['p99_us'] <= GOAL_P99_US else 'MISSES'} the p99 goal of {GOAL_P99_US:.0f} us)")
    print(f"  one raw Booster.predict of the {len(router.models)} candidate rows: {raw_us:.0f} us (p50 ratio {out['p50_us'] / raw_us:.1f}x)")
    return out
