"""Routing speed benchmark, one run, ratios against a reference measured in the same run:

- single request: `route()` latency p50 / p99 over real prompts with the compiled trees (serving/compiled.py),
  measured after `WARM_REQUESTS` other sample prompts (a server in steady state: its word memos know other
  prompts' words, not these), then again with the garbage collector on and with the LightGBM path
  (`BEAST_TREES=lightgbm`), their ratio; the tree part alone per request: compiled, LightGBM's single-row
  fast C API (`RowPredictor`), and the router's old way of calling LightGBM (one `Booster.predict` per
  quality head plus one for the cost rows), the reference ratio;
- batched: `route_many()` decisions/s over the same prompts (features included), and the model part
  alone over the batch's rows, compiled and `Booster.predict`, on one core;
- the compiled trees' build time: cold (compile into an empty cache) and warm (load from it);
- every prompt of the committed samples (AlpacaEval, MT-Bench, MMLU: every length they hold) and a length
  sweep of real text to 1 MB: `route()` p50 / p99 per group, next to the JavaScript router (`node
  serving/js/bench.mjs --requests`, when node is installed) on the same requests.
"""

from __future__ import annotations

import gc
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from core.files import PROJECT
from features.text_kernel import kernel as text_kernel
from serving.bundle import Bundle
from serving.compiled import CompiledTrees, compile_booster
from serving.router import LightGBMTrees, Router, RouteRequest

GOAL_P99_US = 500.0
GOAL_BATCH_PER_S = 50_000.0
SAMPLE_PROMPTS = tuple(
    PROJECT / "data" / "sample" / f"{name}.parquet" for name in ("alpaca_eval", "routellm_mt_bench", "routellm_mmlu")
)
WARM_REQUESTS = 2_000  # other prompts routed before the single-request measurement
BATCH_PASSES = 5  # route_many passes over the same prompts, each by a fresh router: the median is the result
SWEEP_CHARS = (100, 1_000, 4_096, 65_536, 1_048_576)  # prompt lengths of the sweep, in code points
SWEEP_PROMPTS = 40  # distinct prompts per sweep length (cut from the samples' text at different offsets)
JS_BENCH = PROJECT / "serving" / "js" / "bench.mjs"


@dataclass(frozen=True)
class GroupLatency:
    """`route()` latency over one group of requests, in Python and (None without node) in the JS router."""

    label: str
    requests: int
    p50_us: float
    p99_us: float
    js_p50_us: float | None
    js_p99_us: float | None


@dataclass(frozen=True)
class RouteSpeed:
    requests: int
    candidates: int
    p50_us: float  # route(), compiled trees (LightGBM if they are unavailable: see `compiled`)
    p99_us: float
    lightgbm_p50_us: float  # route() with the LightGBM path
    lightgbm_p99_us: float
    compiled_trees_us: float  # per request, the tree part alone: compiled
    row_predictor_us: float  # ... LightGBM single-row fast C API, one call per head + one per cost row
    booster_predict_us: float  # ... Booster.predict per quality head + cost rows (the old path)
    batch_per_s: float  # route_many, features included: the median of BATCH_PASSES passes
    batch_range: tuple[float, float]  # ... their slowest and fastest
    batch_compiled_per_s: float  # the batch's model part alone: compiled
    batch_model_per_s: float  # the batch's Booster.predict calls alone
    compile_cold_s: float  # every booster of the router compiled into an empty cache
    compile_warm_s: float  # ... loaded from that cache
    compiled: bool  # the router runs the compiled trees


def _latencies(router: Router, requests: list[RouteRequest]) -> np.ndarray:
    for r in requests[:50]:
        router.route(r)
    lat = np.empty(len(requests))
    for j, r in enumerate(requests):
        t = time.perf_counter()
        router.route(r)
        lat[j] = time.perf_counter() - t
    return lat * 1e6


def _tree_us(router: Router, trees: object, requests: list[RouteRequest]) -> float:
    """The per-request tree part alone (one request's candidate rows in, quality + cost out), features excluded."""
    X = [(router.quality_features(v), router.cost_features(v)) for _, v in map(router.request_vector, requests)]
    for Xq, Xc in X[:50]:
        trees.one(Xq, Xc)
    start = time.perf_counter()
    for Xq, Xc in X:
        trees.one(Xq, Xc)
    return (time.perf_counter() - start) / len(X) * 1e6


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


def _batched(
    bundle: Bundle, requests: list[RouteRequest], batch: int, warm: list[list[RouteRequest]]
) -> tuple[list[float], float, float]:
    """(route_many requests/s of each pass, compiled trees alone, Booster.predict alone; the last two as the median
    of as many passes). Each pass is a fresh router that routes its own `warm` prompts first (other prompts), so
    the batch path's one-time tables are built and its memos hold other prompts' words, not these: every pass sees
    these prompts for the first time, and one pass (~20 ms) is at the mercy of the host, hence several."""
    chunks = [requests[i : i + batch] for i in range(0, len(requests), batch)]
    per_s = []
    for others in warm:
        router = Router(bundle)
        for i in range(0, len(others), batch):
            router.route_many(others[i : i + batch])
        start = time.perf_counter()
        for chunk in chunks:
            router.route_many(chunk)
        per_s.append(len(requests) / (time.perf_counter() - start))
    n = len(router.models)
    X = [  # request-major rows, one Booster.predict per head over its strided rows: the old path
        (
            np.concatenate([router.quality_features(router.request_vector(r)[1]) for r in c]),
            np.concatenate([router.cost_features(router.request_vector(r)[1]) for r in c]),
        )
        for c in chunks
    ]

    def booster_predict() -> None:
        for Xq, Xc in X:
            for i, booster in enumerate(router.q_heads):
                if booster is not None:
                    booster.predict(Xq[i::n], num_threads=1)
            router.c_p50.predict(Xc, num_threads=1)

    model = _median_rate(booster_predict, len(requests), len(warm))
    vectors = [np.vstack([router.request_vector(r)[1] for r in c]) for c in chunks]
    cost_blocks = router.trees.cost_blocks
    laid = [(router.q_layout.fill_many(v), router.c_layout.fill_many(v, cost_blocks)) for v in vectors]  # as route_many
    trees = _median_rate(lambda: [router.trees.many(Xq, Xc) for Xq, Xc in laid], len(requests), len(warm))
    return per_s, trees, model


def _median_rate(run: Callable[[], object], n: int, passes: int) -> float:
    """n / seconds of one call of `run`, the median of `passes` calls."""
    rates = []
    for _ in range(passes):
        start = time.perf_counter()
        run()
        rates.append(n / (time.perf_counter() - start))
    return float(np.median(rates))


def _compile_seconds(router: Router) -> tuple[float, float]:
    """(cold, warm): every distinct booster text of the router compiled into an empty cache, then loaded from it."""
    bundle = router.bundle
    keys = ["shared"] if router.heads == "shared" else [m for m, b in zip(router.models, router.q_heads) if b]
    texts = [bundle.model_text("quality", k) for k in keys] + [bundle.model_text("cost", "p50")]
    with tempfile.TemporaryDirectory(prefix="beast-bench-compiled-") as tmp:
        cold = sum(compile_booster(t, Path(tmp)).seconds for t in texts)
        warm = sum(compile_booster(t, Path(tmp)).seconds for t in texts)
    return cold, warm


def _route_latencies(router: Router, requests: list[RouteRequest]) -> np.ndarray:
    gc.collect()
    gc.disable()  # a collection pause is the process's, not the router's; reported separately
    try:
        return _latencies(router, requests)
    finally:
        gc.enable()


def sample_prompts(files: tuple[Path, ...] = SAMPLE_PROMPTS) -> list[str]:
    """Every distinct prompt of the committed sample files that exist (every length they hold)."""
    frames = [pd.read_parquet(f, columns=["prompt"])["prompt"] for f in files if f.exists()]
    return pd.concat(frames).dropna().drop_duplicates().tolist() if frames else []


def sweep_prompts(corpus: list[str], chars: int, k: int = SWEEP_PROMPTS) -> list[str]:
    """`k` distinct prompts of exactly `chars` code points of real text: windows of the joined corpus
    (repeated as needed) at evenly spread offsets."""
    text = "\n\n".join(corpus) or "Explain this. "
    text *= -(-(chars + k) // len(text)) + 1
    step = max(1, (len(text) - chars) // k)
    return [text[i * step : i * step + chars] for i in range(k)]


def node_latency(bundle: Path, requests: list[dict], seconds: float = 2.0) -> tuple[float, float] | None:
    """(p50, p99) us of the JS router over `requests` (bench.mjs, one thread), None when node is missing."""
    node = shutil.which("node")
    if node is None:
        return None
    with tempfile.NamedTemporaryFile("w", suffix=".jsonl", encoding="utf-8") as f:
        f.writelines(json.dumps(r) + "\n" for r in requests)
        f.flush()
        done = subprocess.run(
            [node, str(JS_BENCH), str(bundle), "--requests", f.name, "--seconds", str(seconds), "--json"],
            capture_output=True,
            text=True,
            timeout=120 + 10 * seconds,
            check=False,
        )
    if done.returncode != 0:
        raise RuntimeError(f"node serving/js/bench.mjs failed: {done.stderr.strip()[-500:]}")
    got = json.loads(done.stdout)
    return got["p50_us"], got["p99_us"]


def group_latency(router: Router, label: str, prompts: list[str], js: bool = True) -> GroupLatency:
    """Python `route()` p50 / p99 over `prompts` (fixed timestamp, garbage collector paused) and the JS router's."""
    stamp = "2025-01-01T12:00:00Z"
    requests = [RouteRequest.from_dict({"prompt": p, "timestamp": stamp}) for p in prompts]
    lat = _route_latencies(router, requests * max(1, 200 // max(1, len(requests))))
    node = node_latency(router.bundle.root, [{"prompt": p, "timestamp": stamp} for p in prompts]) if js else None
    return GroupLatency(
        label,
        len(prompts),
        float(np.percentile(lat, 50)),
        float(np.percentile(lat, 99)),
        None if node is None else node[0],
        None if node is None else node[1],
    )


def print_groups(groups: list[GroupLatency]) -> None:
    width = max(len(g.label) for g in groups)
    for g in groups:
        verdict = "meets" if g.p99_us <= GOAL_P99_US else "MISSES"
        js = "" if g.js_p50_us is None else f"   JS p50 {g.js_p50_us:6.0f} us  p99 {g.js_p99_us:6.0f} us"
        print(f"  {g.label:<{width}}  {g.requests:6,d}  p50 {g.p50_us:6.0f} us  p99 {g.p99_us:6.0f} us ({verdict}){js}")


def main(
    bundle: Path, prompts_file: Path = Path("data/sample/alpaca_eval.parquet"), n: int = 800, batch: int = 1000
) -> RouteSpeed:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    router = Router.load(bundle)
    reference = Router(router.bundle, trees="lightgbm")
    lightgbm = reference.trees
    assert isinstance(lightgbm, LightGBMTrees)
    prompts = pd.read_parquet(prompts_file, columns=["prompt"])["prompt"].drop_duplicates().head(n).tolist()
    requests = [RouteRequest(prompt=p) for p in prompts]
    seen = set(prompts)
    others = [RouteRequest(prompt=p) for p in sample_prompts() if p not in seen]
    for r in others[:WARM_REQUESTS]:  # a server that has routed other traffic: its word memos hold other prompts
        router.route(r)
        reference.route(r)
    lat = _route_latencies(router, requests)  # first: these prompts' new words are still new
    lat_gc = _latencies(router, requests)
    lat_lgb = _route_latencies(reference, requests)
    ref_us = _booster_predict_us(router, requests)
    # fresh routers (their embedding memos empty), each warmed on other prompts: these prompts' words stay new
    warm = [others[WARM_REQUESTS + k * batch : WARM_REQUESTS + (k + 1) * batch] for k in range(BATCH_PASSES)]
    passes, trees_per_s, model_per_s = _batched(router.bundle, requests, batch, warm)
    cold, warm = _compile_seconds(router)
    out = RouteSpeed(
        len(requests),
        len(router.models),
        float(np.percentile(lat, 50)),
        float(np.percentile(lat, 99)),
        float(np.percentile(lat_lgb, 50)),
        float(np.percentile(lat_lgb, 99)),
        _tree_us(router, router.trees, requests),
        _tree_us(router, lightgbm, requests),
        ref_us,
        float(np.median(passes)),
        (min(passes), max(passes)),
        trees_per_s,
        model_per_s,
        cold,
        warm,
        isinstance(router.trees, CompiledTrees),
    )
    trees = "compiled" if out.compiled else "LightGBM (compiled trees unavailable)"
    if router.text is None:
        hashing = "none (no text features)"
    else:
        hashing = "C" if text_kernel(router.text.params.n_features) else "Python"
    counts = "C" if router.prompt_counts_in_c else "regexes"
    embedding = "none" if router.embed is None else "C" if router.embeds_in_c else "memos + tokenizers"
    print(
        f"{out.requests} AlpacaEval prompts over {out.candidates} candidates, quality heads: {router.heads}, trees: {trees}, text hashing: {hashing}, prompt counts: {counts}, embedding: {embedding}, one thread"
    )
    verdict = "meets" if out.p99_us <= GOAL_P99_US else "MISSES"
    print(
        f"  route()            p50 {out.p50_us:6.0f} us  p99 {out.p99_us:6.0f} us  ({verdict} the p99 goal of {GOAL_P99_US:.0f} us)"
    )
    print(
        f"    second pass (their words now memoised), garbage collector on: p50 {np.percentile(lat_gc, 50):.0f} us, p99 {np.percentile(lat_gc, 99):.0f} us"
    )
    print(
        f"    second pass, LightGBM path (BEAST_TREES=lightgbm): p50 {out.lightgbm_p50_us:.0f} us, p99 {out.lightgbm_p99_us:.0f} us; compiled p50 / that = {out.p50_us / out.lightgbm_p50_us:.2f}x"
    )
    print(
        f"  the trees alone per request: compiled {out.compiled_trees_us:.1f} us, LightGBM single-row C API {out.row_predictor_us:.1f} us ({out.row_predictor_us / out.compiled_trees_us:.1f}x)"
    )
    print(
        f"  Booster.predict per head + cost rows (the model calls alone, old path): {ref_us:.0f} us per request; route() p50 / that = {out.p50_us / ref_us:.2f}x"
    )
    verdict = "meets" if out.batch_per_s >= GOAL_BATCH_PER_S else "MISSES"
    print(
        f"  route_many({batch})   {out.batch_per_s:8,.0f} decisions/s with features  ({verdict} the goal of {GOAL_BATCH_PER_S:,.0f}/s;"
        f" median of {BATCH_PASSES} passes, {out.batch_range[0]:,.0f}-{out.batch_range[1]:,.0f})"
    )
    print(
        f"    Booster.predict alone over the same batches: {out.batch_model_per_s:,.0f} requests/s (route_many, features included, makes {out.batch_per_s / out.batch_model_per_s:.2f}x that)"
    )
    print(
        f"    the router's trees alone over the same batches: {out.batch_compiled_per_s:,.0f} requests/s ({out.batch_compiled_per_s / out.batch_model_per_s:.1f}x Booster.predict; features are {1 - out.batch_per_s / out.batch_compiled_per_s:.0%} of the batched time)"
    )
    print(f"  compiled trees: {cold:.2f} s to compile cold (empty cache), {warm:.3f} s to load warm (from the cache)")
    corpus = sample_prompts()
    if corpus:
        print(
            f"route() per group, Python and JS (node serving/js/bench.mjs) on the same requests; goal p99 <= {GOAL_P99_US:.0f} us:"
        )
        groups = [
            group_latency(
                router, f"every sample prompt ({min(map(len, corpus))}..{max(map(len, corpus))} chars)", corpus
            )
        ]
        groups += [group_latency(router, f"{c:,} chars", sweep_prompts(corpus, c)) for c in SWEEP_CHARS]
        print_groups(groups)
    return out
