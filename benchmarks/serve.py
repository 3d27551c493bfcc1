"""`beast bench serve`: `beast serve` in a second process under load from wrk (a third process).

Two runs of `seconds` each against one server: a clean run (wrk, `concurrency` keep-alive connections POSTing real
AlpacaEval prompts, one request per POST or `batch` of them as a JSON array), then a hostile run: the same wrk
load, plus a second wrk whose POSTs are all malformed (sized to about `malformed` of the POSTs) and `slow_clients`
connections that dribble a request body one byte at a time (the server must cut them off with 408). Reported:
decisions/s, p50 / p95 / p99 of the good POSTs (wrk's own numbers), every status and every socket error, and
the good p99 of the hostile run relative to the clean one (goal: within 20%). Optionally `baseline`, a module file
with `make_server(router, host, port)` (a copy of the old ThreadingHTTPServer module, say), is measured with the
same clean run first. wrk is needed: `apt-get install -y wrk` (Debian/Ubuntu) or `brew install wrk` (macOS).
"""

from __future__ import annotations

import http.client
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from core.errors import BeastError

GOAL_DECISIONS_PER_S = 10_000.0
GOAL_P99_MS = 10.0
GOAL_HOSTILE_P99_RATIO = 1.2
MALFORMED = (b"{not json", b'{"prompt": 5}', b'{"input_tokens": -3}', b"[]", b'"just a string"', b'{"timestamp": 0}')
WRK_HELP = "wrk not found on PATH: install it (`apt-get install -y wrk` on Debian/Ubuntu, `brew install wrk` on macOS)"

# wrk script: rotate through the request bodies, count statuses per thread, print one JSON line at the end.
LUA = r"""
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args)
  statuses = {}
  local bodies = {%s}
  reqs = {}
  for i, b in ipairs(bodies) do reqs[i] = wrk.format("POST", "/route", {["Content-Type"] = "application/json"}, b) end
  n = math.random(#reqs)
end
function request() n = n %% #reqs + 1; return reqs[n] end
function response(status, headers, body) statuses[status] = (statuses[status] or 0) + 1 end
function done(summary, latency, requests)
  local merged = {}
  for _, t in ipairs(threads) do
    for k, v in pairs(t:get("statuses")) do merged[tostring(k)] = (merged[tostring(k)] or 0) + v end
  end
  local parts = {}
  for k, v in pairs(merged) do table.insert(parts, string.format('"%%s": %%d', k, v)) end
  local e = summary.errors
  io.write(string.format('BENCH {"requests": %%d, "us": %%d, "p50": %%d, "p95": %%d, "p99": %%d, "errors": {"connect": %%d, "read": %%d, "write": %%d, "timeout": %%d}, "statuses": {%%s}}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(95), latency:percentile(99),
    e.connect, e.read, e.write, e.timeout, table.concat(parts, ", ")))
end
"""


@dataclass(frozen=True)
class LoadResult:
    seconds: float
    posts: int
    decisions: int
    statuses: dict[str, int] = field(default_factory=dict)  # "200", "400", ... of every POST
    p50_ms: float = float("nan")  # good POSTs only
    p95_ms: float = float("nan")
    p99_ms: float = float("nan")
    socket_errors: dict[str, int] = field(default_factory=dict)  # wrk's connect / read / write / timeout
    slow: dict[str, int] = field(default_factory=dict)  # slow clients: how each attempt ended
    clean: LoadResult | None = None  # the clean run before this hostile one
    baseline: LoadResult | None = None  # the baseline server's clean run

    @property
    def server_errors(self) -> int:
        """5xx answers, socket errors (resets, timeouts) and slow clients that were reset instead of answered."""
        fives = sum(n for s, n in self.statuses.items() if s.startswith("5"))
        return fives + sum(self.socket_errors.values()) + self.slow.get("reset", 0)

    @property
    def decisions_per_s(self) -> float:
        return self.decisions / self.seconds if self.seconds else 0.0


def free_port() -> int:
    """A TCP port on localhost nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_healthy(port: int, proc: subprocess.Popen, timeout_s: float = 180.0) -> None:
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


def _lua(bodies: list[bytes], folder: Path, name: str) -> Path:
    def quote(b: bytes) -> str:
        text = b.decode()
        level = 1
        while "]" + "=" * level + "]" in text:
            level += 1
        return "[" + "=" * level + "[" + text + "]" + "=" * level + "]"

    path = folder / f"{name}.lua"
    path.write_text(LUA % ", ".join(quote(b) for b in bodies))
    return path


def _wrk(port: int, script: Path, seconds: float, connections: int, threads: int) -> dict:
    """Start wrk; returns the Popen (read with `_wrk_result`)."""
    return subprocess.Popen(
        [
            "wrk", f"-t{max(1, min(threads, connections))}", f"-c{connections}", f"-d{max(1, round(seconds))}s",
            "--timeout", "5s", "-s", str(script), f"http://127.0.0.1:{port}/route",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip


def _wrk_result(proc: subprocess.Popen) -> dict:
    out, err = proc.communicate()
    lines = [line for line in out.splitlines() if line.startswith("BENCH ")]
    if proc.returncode != 0 or not lines:
        raise BeastError(f"bench-serve: wrk failed (exit {proc.returncode}): {(err or out).strip()[:300]}")
    return json.loads(lines[-1][len("BENCH ") :])


def _slow_client(port: int, stop: float, outcomes: Counter, lock: threading.Lock) -> None:
    """Open a POST, then send its body one byte every 0.5 s; reconnect when the server ends it."""
    while time.monotonic() < stop:
        outcome = "held"
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
                sock.sendall(
                    b"POST /route HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 4096\r\n\r\n"
                )
                sock.settimeout(0.5)
                while time.monotonic() < stop:
                    try:
                        data = sock.recv(4096)
                    except TimeoutError:
                        sock.sendall(b" ")
                        continue
                    outcome = data.split(b" ", 2)[1].decode() if data.startswith(b"HTTP/") else "closed"
                    break
        except ConnectionResetError:
            outcome = "reset"
        except OSError:
            outcome = "connect_error"
        with lock:
            outcomes[outcome] += 1


def _as_result(good: dict, bad: dict | None, batch: int, slow: Counter | None = None) -> LoadResult:
    statuses = Counter(good["statuses"])
    errors = Counter(good["errors"])
    if bad is not None:
        statuses += Counter(bad["statuses"])
        errors += Counter(bad["errors"])
    seconds = good["us"] / 1e6
    ok = good["statuses"].get("200", 0)
    return LoadResult(
        seconds,
        sum(statuses.values()),
        ok * batch,
        dict(sorted(statuses.items())),
        good["p50"] / 1e3,
        good["p95"] / 1e3,
        good["p99"] / 1e3,
        {k: v for k, v in errors.items() if v},
        dict(slow or {}),
    )


def _start(cmd: list[str], port: int) -> subprocess.Popen:
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        _wait_healthy(port, proc)
    except BaseException:
        err = _stop(proc).strip().splitlines()
        print(f"bench-serve: {cmd[:3]} stderr: {err[-1] if err else ''}", file=sys.stderr)
        raise
    return proc


def _stop(proc: subprocess.Popen) -> str:
    proc.terminate()
    try:
        _, err = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    return err or ""


def main(
    bundle: Path,
    seconds: float = 10.0,
    concurrency: int = 16,
    batch: int = 1,
    malformed: float = 0.05,
    workers: int = 2,
    slow_clients: int = 50,
    baseline: Path | None = None,
    coalesce: int = 64,
    baseline_coalesce: int | None = None,
    prompts_file: Path = Path("data/sample/alpaca_eval.parquet"),
    threads: int = 2,
) -> LoadResult:
    """Clean run, then the hostile run; returns the hostile run's result (the clean one in `.clean`). A baseline
    (another server module, or `beast serve --coalesce baseline_coalesce`) gets a clean run first."""
    if shutil.which("wrk") is None:
        raise BeastError(WRK_HELP)
    if baseline is not None and baseline_coalesce is not None:
        raise BeastError("bench-serve: give --baseline or --baseline-coalesce, not both")
    prompts = pd.read_parquet(prompts_file, columns=["prompt"])["prompt"].drop_duplicates().tolist()[:200]
    requests = [{"prompt": p, "request_id": f"load-{i}"} for i, p in enumerate(prompts)]
    if batch > 1:
        bodies = [json.dumps([requests[(i + k) % len(requests)] for k in range(batch)]).encode() for i in range(50)]
    else:
        bodies = [json.dumps(r).encode() for r in requests]
    with tempfile.TemporaryDirectory(prefix="beast-bench-serve-") as tmp:
        good_lua, bad_lua = _lua(bodies, Path(tmp), "good"), _lua(list(MALFORMED), Path(tmp), "bad")
        base = None

        def clean_run(port: int, proc: subprocess.Popen) -> LoadResult:
            """A baseline server's clean run after a warm-up; the server is stopped after it."""
            try:
                _wrk_result(_wrk(port, good_lua, 2, concurrency, threads))  # warm-up, not reported
                return _as_result(_wrk_result(_wrk(port, good_lua, seconds, concurrency, threads)), None, batch)
            finally:
                _stop(proc)

        if baseline is not None:
            port = free_port()
            launcher = (
                "import importlib.util, sys; from serving.router import Router; "
                f"spec = importlib.util.spec_from_file_location('baseline_http', {str(baseline)!r}); "
                "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m); "
                f"m.make_server(Router.load({str(bundle)!r}), '127.0.0.1', {port}).serve_forever()"
            )
            base = clean_run(port, _start([sys.executable, "-c", launcher], port))
        cut = max(1.0, min(10.0, seconds / 4))  # slow clients are cut off (408) several times within a run

        def serve(k: int) -> tuple[int, subprocess.Popen]:
            port = free_port()
            cmd = [sys.executable, "-m", "beast.cli", "serve", "--bundle", str(bundle), "--port", str(port)]
            options = ["--workers", str(workers), "--timeout-request", f"{cut:g}", "--coalesce", str(k)]
            return port, _start([*cmd, *options], port)

        if baseline_coalesce is not None:
            base = clean_run(*serve(baseline_coalesce))
        port, proc = serve(coalesce)
        try:
            _wrk_result(_wrk(port, good_lua, 2, concurrency, threads))  # warm-up, not reported
            clean = _as_result(_wrk_result(_wrk(port, good_lua, seconds, concurrency, threads)), None, batch)
            stop = time.monotonic() + seconds
            outcomes: Counter = Counter()
            lock = threading.Lock()
            slow = [
                threading.Thread(target=_slow_client, args=(port, stop, outcomes, lock), daemon=True)
                for _ in range(slow_clients)
            ]
            for t in slow:
                t.start()
            good = _wrk(port, good_lua, seconds, concurrency, threads)
            # one malformed connection per ~(1/malformed - 1) good ones: malformed answers are cheaper, so the
            # share is measured and printed, not assumed
            bad = _wrk(port, bad_lua, seconds, max(1, round(concurrency * malformed)), 1) if malformed > 0 else None
            good_result, bad_result = _wrk_result(good), (_wrk_result(bad) if bad is not None else None)
            for t in slow:
                t.join(timeout=5)
        finally:
            stderr = _stop(proc)
    hostile = _as_result(good_result, bad_result, batch, outcomes)
    result = LoadResult(**{**hostile.__dict__, "clean": clean, "baseline": base})
    _print(result, concurrency, batch, workers, slow_clients, stderr, coalesce, baseline_coalesce)
    return result


def _line(name: str, r: LoadResult) -> str:
    return (
        f"  {name}: {r.posts / r.seconds:,.0f} POSTs/s, {r.decisions_per_s:,.0f} decisions/s; good POSTs p50 "
        f"{r.p50_ms:.2f} ms, p95 {r.p95_ms:.2f} ms, p99 {r.p99_ms:.2f} ms; statuses {r.statuses}; "
        f"socket errors {r.socket_errors or 0}"
    )


def _print(
    r: LoadResult,
    concurrency: int,
    batch: int,
    workers: int,
    slow_clients: int,
    stderr: str,
    coalesce: int,
    baseline_coalesce: int | None = None,
) -> None:
    clean = r.clean
    assert clean is not None
    print(
        f"wrk, {concurrency} keep-alive connections, batch {batch}, {r.seconds:.0f} s per run; "
        f"`beast serve --workers {workers} --coalesce {coalesce}`"
    )
    if r.baseline is not None:
        b = r.baseline
        name = "baseline (clean)" if baseline_coalesce is None else f"baseline --coalesce {baseline_coalesce} (clean)"
        print(_line(name, b))
        print(
            f"  ratio vs baseline: {clean.decisions_per_s / max(b.decisions_per_s, 1e-9):.2f}x decisions/s, "
            f"p99 {clean.p99_ms / b.p99_ms if b.p99_ms else float('nan'):.2f}x"
        )
    print(_line("clean", clean))
    per_s = clean.decisions_per_s
    print(
        f"    goal {GOAL_DECISIONS_PER_S:,.0f} decisions/s: {'met' if per_s >= GOAL_DECISIONS_PER_S else 'MISSED'}; "
        f"goal p99 < {GOAL_P99_MS:.0f} ms: {'met' if clean.p99_ms < GOAL_P99_MS else 'MISSED'}"
    )
    bad = sum(n for s, n in r.statuses.items() if s.startswith("4"))
    print(_line("hostile", r))
    ratio = r.p99_ms / clean.p99_ms if clean.p99_ms else float("nan")
    print(
        f"    malformed share {bad / max(r.posts, 1):.1%}; {slow_clients} slow clients ended as {r.slow}; good p99 "
        f"{ratio:.2f}x the clean run (goal <= {GOAL_HOSTILE_P99_RATIO:.1f}x: {'met' if ratio <= GOAL_HOSTILE_P99_RATIO else 'MISSED'})"
    )
    traces = stderr.count("Traceback")
    print(
        f"  server errors (5xx, socket errors, reset slow clients): {r.server_errors}; tracebacks on the server's stderr: {traces}"
    )
