"""`beast bench serve`: `beast serve` in a second process under a bounded load from this one.

Threads with keep-alive connections POST real AlpacaEval prompts (one request per POST, or `batch` of
them as a JSON array) for `seconds`; a share `malformed` of the POSTs are broken (bad JSON, wrong types)
and must get 4xx, never 5xx. Reported: requests/s and decisions/s sustained, p50 / p95 / p99 latency
of the good POSTs, and every status or connection error counted. The server is stopped at the end.
"""

from __future__ import annotations

import http.client
import json
import random
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from core.errors import BeastError

GOAL_DECISIONS_PER_S = 10_000.0
GOAL_P99_MS = 10.0
MALFORMED = (b"{not json", b'{"prompt": 5}', b'{"input_tokens": -3}', b"[]", b'"just a string"', b'{"timestamp": 0}')


@dataclass(frozen=True)
class LoadResult:
    seconds: float
    posts: int
    decisions: int
    statuses: dict[str, int] = field(default_factory=dict)  # "200", "400", ..., "connection_error"
    p50_ms: float = float("nan")
    p95_ms: float = float("nan")
    p99_ms: float = float("nan")

    @property
    def server_errors(self) -> int:
        return sum(n for s, n in self.statuses.items() if s.startswith("5") or s == "connection_error")


def free_port() -> int:
    """A TCP port on localhost nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_healthy(port: int, proc: subprocess.Popen, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BeastError(f"bench-serve: the server exited with code {proc.returncode} before answering /health")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/health")
            if conn.getresponse().status == 200:
                return
        except OSError:
            time.sleep(0.2)
    raise BeastError(f"bench-serve: no /health answer on port {port} within {timeout_s:.0f} s")


def _worker(port: int, bodies: list[bytes], batch: int, malformed: float, seed: int, stop: float, out: dict) -> None:
    rng = random.Random(seed)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    latencies, statuses, decisions = [], Counter(), 0
    while time.monotonic() < stop:
        bad = rng.random() < malformed
        body = rng.choice(MALFORMED) if bad else bodies[rng.randrange(len(bodies))]
        start = time.perf_counter()
        try:
            conn.request("POST", "/route", body=body, headers={"Content-Type": "application/json"})
            response = conn.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException):
            statuses["connection_error"] += 1
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            continue
        elapsed = time.perf_counter() - start
        statuses[str(response.status)] += 1
        if response.status == 200 and not bad:
            latencies.append(elapsed)
            decisions += batch if batch > 1 else 1
        if response.getheader("Connection", "").lower() == "close":
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        del data
    conn.close()
    out.update(latencies=latencies, statuses=statuses, decisions=decisions)


def run_load(
    port: int, prompts: list[str], seconds: float, concurrency: int, batch: int, malformed: float, seed: int = 0
) -> LoadResult:
    """Load an already running server; pure apart from the network."""
    rng = random.Random(seed)
    requests = [{"prompt": p, "request_id": f"load-{i}"} for i, p in enumerate(prompts)]
    if batch > 1:
        bodies = [
            json.dumps([requests[rng.randrange(len(requests))] for _ in range(batch)]).encode() for _ in range(200)
        ]
    else:
        bodies = [json.dumps(r).encode() for r in requests]
    stop = time.monotonic() + seconds
    results: list[dict] = [{} for _ in range(concurrency)]
    threads = [
        threading.Thread(target=_worker, args=(port, bodies, batch, malformed, seed + i, stop, results[i]))
        for i in range(concurrency)
    ]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started
    latencies = np.array([x for r in results for x in r["latencies"]]) * 1e3
    statuses = sum((r["statuses"] for r in results), Counter())
    pct = np.percentile(latencies, [50, 95, 99]) if latencies.size else [float("nan")] * 3
    return LoadResult(
        elapsed,
        sum(statuses.values()),
        sum(r["decisions"] for r in results),
        dict(sorted(statuses.items())),
        *map(float, pct),
    )


def main(
    bundle: Path,
    seconds: float = 10.0,
    concurrency: int = 4,
    batch: int = 1,
    malformed: float = 0.05,
    prompts_file: Path = Path("data/sample/alpaca_eval.parquet"),
) -> LoadResult:
    prompts = pd.read_parquet(prompts_file, columns=["prompt"])["prompt"].drop_duplicates().tolist()
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "beast.cli", "serve", "--bundle", str(bundle), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        _wait_healthy(port, server)
        result = run_load(port, prompts, seconds, concurrency, batch, malformed)
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
    per_s = result.decisions / result.seconds
    print(
        f"{result.posts:,} POSTs in {result.seconds:.1f} s from {concurrency} connections, batch {batch}, {malformed:.0%} malformed"
    )
    print(
        f"  {result.posts / result.seconds:,.0f} POSTs/s, {per_s:,.0f} decisions/s (goal {GOAL_DECISIONS_PER_S:,.0f}/s: {'met' if per_s >= GOAL_DECISIONS_PER_S else 'MISSED'})"
    )
    print(
        f"  latency of good POSTs: p50 {result.p50_ms:.2f} ms, p95 {result.p95_ms:.2f} ms, p99 {result.p99_ms:.2f} ms (goal p99 < {GOAL_P99_MS:.0f} ms: {'met' if result.p99_ms < GOAL_P99_MS else 'MISSED'})"
    )
    print(f"  statuses {result.statuses}; server errors (5xx or dropped connections): {result.server_errors}")
    return result
