"""`beast serve`: the router over HTTP, served by uvicorn (httptools parser, uvloop loop) with worker processes.

The app is a raw ASGI callable (no framework) around one `Router` per worker process; each worker loads the bundle
itself, so the policy, budget and breaker state is per worker. Endpoints:

- `POST /route`: one JSON object (same fields as `beast route`) -> the decision as JSON; or a JSON array of up to
  `MAX_BATCH` objects -> an array in the same order (routed together with `route_many`; a bad item gets
  {"index", "error"} in its place). Bad input 400 with the reason, a body over `MAX_BODY` 413, a body not
  received within the read timeout 408. `request_id` is echoed only when it is a string of at most
  `MAX_REQUEST_ID` characters or an integer (else 400).
- `GET /health`: 200 {"status", "models", "policy", "pid"} (never behind the token).
- `GET /metrics`: Prometheus text: decisions by model and code, HTTP responses by status, a latency histogram of
  POST /route; summed over every worker (prometheus_client multiprocess mode) when served by `beast serve`.
- another method on a known path 405 with an Allow header; an unknown path 404.

Single-request POSTs that wait together in a worker are routed as one `route_many` call of at most `--coalesce`
(`Coalescer`: no added wait; same decisions as one by one).

With `BEAST_ROUTER_TOKEN` set, /route and /metrics need `Authorization: Bearer <token>` (401 otherwise).
A worker holds at most `--limit-concurrency` connections + requests; beyond that uvicorn answers 503 at once.
A request whose headers and body do not arrive within `--timeout-request` seconds of its first byte (or a new
connection that sends nothing for that long) gets 408 and is closed: slow clients hold a socket, never a worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import os
import shutil
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from core.errors import BeastError
from serving.router import Decision, Router, RouteRequest

MAX_BODY = 1 << 20  # 1 MiB: prompts beyond that are not routed
DRAIN_LIMIT = 4 * MAX_BODY  # an oversized body up to this is read (and dropped) so the 413 reaches the client
MAX_BATCH = 1000  # requests per batched POST
MAX_REQUEST_ID = 128  # characters of a string request_id
TOKEN_ENV = "BEAST_ROUTER_TOKEN"
BUNDLE_ENV, BUDGET_ENV = "BEAST_ROUTER_BUNDLE", "BEAST_ROUTER_BUDGET_FILE"  # how `serve` hands workers the bundle
COALESCE_ENV = "BEAST_ROUTER_COALESCE"  # ... and --coalesce
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


# ----------------------------------------------------------------------------------------------- request -> JSON
def check_request_id(request: dict) -> None:
    """A request_id is echoed back, so only plain identifiers are: a short string or an integer."""
    if "request_id" not in request:
        return
    rid = request["request_id"]
    if isinstance(rid, bool) or not (isinstance(rid, int) or (isinstance(rid, str) and len(rid) <= MAX_REQUEST_ID)):
        got = f"a string of {len(rid)} characters" if isinstance(rid, str) else _type_name(rid)
        raise ValueError(
            f"request_id: expected a string of at most {MAX_REQUEST_ID} characters or an integer, got {got}"
        )


def _type_name(value: object) -> str:
    return {type(None): "null", bool: "bool", float: "number", list: "array", dict: "object"}.get(
        type(value), type(value).__name__
    )


def _as_json(d: Decision, request: dict) -> dict:
    out = {
        "model": d.model,
        "predicted_quality": d.predicted_quality,
        "predicted_cost_usd": d.predicted_cost_usd,
        "policy": d.policy,
        "reason": d.reason,
        "code": d.code.value,
    }
    return {"request_id": request["request_id"]} | out if "request_id" in request else out


class Coalescer:
    """Routes the single-request POSTs that are waiting together as one `route_many` call (dynamic batching
    with no added wait): the first request of an event-loop turn schedules a flush after the turn's other
    ready requests, which join it. Idle, a request is routed alone at once; under load, the requests that
    arrived while a batch was routed form the next one, so the per-call costs are shared. Decisions equal
    `route`'s one by one (`route_many` is tested equal), in arrival order."""

    def __init__(self, router: Router, limit: int):
        self.router, self.limit = router, limit
        self.pending: list[tuple[RouteRequest, asyncio.Future]] = []

    def route(self, request: RouteRequest) -> asyncio.Future:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self.pending.append((request, future))
        if len(self.pending) == 1:
            loop.call_soon(self._flush)
        return future

    def _flush(self) -> None:
        batch, self.pending = self.pending[: self.limit], self.pending[self.limit :]
        if self.pending:
            asyncio.get_running_loop().call_soon(self._flush)
        try:
            decisions = self.router.route_many([r for r, _ in batch])
        except Exception:  # noqa: BLE001 - one request's failure must not fail the others: route each alone
            decisions = None
        for n, (request, future) in enumerate(batch):
            if future.done():
                continue
            if decisions is not None:
                future.set_result(decisions[n])
                continue
            try:
                future.set_result(self.router.route(request))
            except Exception as exc:  # noqa: BLE001 - handed to the request's own handler (500)
                future.set_exception(exc)


def batch_json(router: Router, items: list) -> list[dict]:
    """One answer per item, in order: the decision, or {"index", "error"} for an item that is not a request."""
    parsed: dict[int, RouteRequest] = {}
    answers: list[dict | None] = [None] * len(items)
    for i, item in enumerate(items):
        try:
            if not isinstance(item, dict):
                raise ValueError("expected a JSON object")
            check_request_id(item)
            parsed[i] = RouteRequest.from_dict(item)
        except (ValueError, TypeError) as exc:
            answers[i] = {"index": i, "error": str(exc).splitlines()[0]}
    for i, d in zip(parsed, router.route_many(list(parsed.values())), strict=True):
        answers[i] = _as_json(d, items[i])
    return answers  # type: ignore[return-value]


# ------------------------------------------------------------------------------------------------------ metrics
class Metrics:
    """Prometheus metrics of one app. In multiprocess mode (PROMETHEUS_MULTIPROC_DIR set before prometheus_client
    is imported, as `serve` does) every worker writes its values there and /metrics sums all workers."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Histogram, values

        self.multiprocess = values.ValueClass is not values.MutexValue
        self._owned = CollectorRegistry(auto_describe=True)
        self.decisions = Counter(
            "beast_router_decisions", "Routing decisions by chosen model and decision code", ["model", "code"],
            registry=self._owned,
        )  # fmt: skip
        self.responses = Counter(
            "beast_router_http_responses", "HTTP responses by status code", ["status"], registry=self._owned
        )
        self.latency = Histogram(
            "beast_router_request_seconds", "POST /route latency in seconds, body read to answer sent",
            buckets=LATENCY_BUCKETS, registry=self._owned,
        )  # fmt: skip
        self._decision_children: dict[tuple[str, str], Any] = {}
        self._status_children: dict[int, Any] = {}

    def decided(self, model: str, code: str) -> None:
        child = self._decision_children.get((model, code))
        if child is None:
            child = self._decision_children[(model, code)] = self.decisions.labels(model, code)
        child.inc()

    def responded(self, status: int) -> None:
        child = self._status_children.get(status)
        if child is None:
            child = self._status_children[status] = self.responses.labels(str(status))
        child.inc()

    def exposition(self) -> tuple[bytes, bytes]:
        from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest, multiprocess

        registry = self._owned
        if self.multiprocess:
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST.encode()


# ---------------------------------------------------------------------------------------------------- ASGI app
class _TooLarge(Exception):
    pass


class _Gone(Exception):
    pass


_JSON = (b"content-type", b"application/json")
_SERVER = (b"server", b"beast-router")
_CLOSE = (b"connection", b"close")
_ALLOW = {"/route": b"POST", "/health": b"GET, HEAD", "/metrics": b"GET, HEAD"}
_NOT_FOUND = b'{"error":"unknown path; POST /route, GET /health or GET /metrics"}'


class RouterApp:
    """The raw ASGI app. `on_error(exc)` is called for an unexpected exception (answered 500)."""

    def __init__(
        self,
        router: Router,
        token: str | None = None,
        on_error: Callable[[BaseException], None] | None = None,
        coalesce: int = 1,
    ):
        self.router = router
        self.coalescer = Coalescer(router, coalesce) if coalesce > 1 else None
        self.auth = None if not token else b"Bearer " + token.encode()
        self.metrics = Metrics()
        self.on_error = on_error
        self.health = orjson.dumps(
            {"status": "ok", "models": list(router.models), "policy": router.policy.name, "pid": os.getpid()}
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        path, method = scope["path"], scope["method"]
        try:
            if path == "/route" and method == "POST":
                await self._route(scope, receive, send)
            elif path not in _ALLOW:
                await self._send(send, 404, _NOT_FOUND)
            elif method not in ("GET", "HEAD") or path == "/route":
                error = orjson.dumps({"error": f"{method} not allowed on {path}; use {_ALLOW[path].decode()}"})
                await self._send(send, 405, error, ((b"allow", _ALLOW[path]),))
            elif path == "/health":
                await self._send(send, 200, self.health, head=method == "HEAD")
            elif not self._authorized(scope):
                await self._unauthorized(send)
            else:
                body, content_type = self.metrics.exposition()
                await self._send(send, 200, body, head=method == "HEAD", content_type=content_type)
        except _Gone:
            return
        except Exception as exc:  # noqa: BLE001 - a bug must cost one 500, never the worker or a traceback per client
            if self.on_error is not None:
                self.on_error(exc)
            with contextlib.suppress(Exception):  # the response had started or the client is gone
                await self._send(send, 500, b'{"error":"internal error"}', close=True)

    def _authorized(self, scope: Scope) -> bool:
        if self.auth is None:
            return True
        for name, value in scope["headers"]:
            if name == b"authorization":
                return hmac.compare_digest(value, self.auth)
        return False

    async def _unauthorized(self, send: Send) -> None:
        await self._send(
            send, 401, b'{"error":"missing or wrong bearer token"}', ((b"www-authenticate", b'Bearer realm="beast"'),)
        )

    async def _route(self, scope: Scope, receive: Receive, send: Send) -> None:
        start = time.perf_counter()
        if not self._authorized(scope):
            await self._unauthorized(send)
            return
        try:
            raw = await _read_body(scope, receive)
        except _TooLarge:
            await self._send(send, 413, b'{"error":"body must be at most %d bytes"}' % MAX_BODY, close=True)
            return
        try:
            try:
                body = orjson.loads(raw or b"null")
            except orjson.JSONDecodeError as exc:
                raise ValueError(f"body: not JSON: {exc}") from None
            if isinstance(body, list):
                if not 1 <= len(body) <= MAX_BATCH:
                    raise ValueError(f"a batch holds 1..{MAX_BATCH} requests, got {len(body)}")
                answer: dict | list = batch_json(self.router, body)
                for a in answer:
                    if "code" in a:
                        self.metrics.decided(a["model"], a["code"])
            elif not isinstance(body, dict):
                raise ValueError("expected a JSON object (one request) or an array of them (a batch)")
            else:
                check_request_id(body)
                request = RouteRequest.from_dict(body)
                routed = self.router.route(request) if self.coalescer is None else await self.coalescer.route(request)
                answer = _as_json(routed, body)
                self.metrics.decided(answer["model"], answer["code"])
        except (ValueError, TypeError, OverflowError) as exc:
            await self._send(send, 400, orjson.dumps({"error": str(exc).splitlines()[0]}))
            self.metrics.latency.observe(time.perf_counter() - start)
            return
        await self._send(send, 200, orjson.dumps(answer))
        self.metrics.latency.observe(time.perf_counter() - start)

    async def _send(
        self,
        send: Send,
        status: int,
        body: bytes,
        extra: tuple = (),
        *,
        close: bool = False,
        head: bool = False,
        content_type: bytes = b"application/json",
    ) -> None:
        headers = [
            (b"content-type", content_type),
            (b"content-length", str(len(body)).encode()),
            _SERVER,
            *extra,
        ]
        if close:
            headers.append(_CLOSE)
        self.metrics.responded(status)
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if head else body})


async def _read_body(scope: Scope, receive: Receive) -> bytes:
    """The request body, at most MAX_BODY bytes (_TooLarge beyond, after draining up to DRAIN_LIMIT so the client
    reads the 413); _Gone when the client disconnects. Slow bodies are cut off by the protocol's read timeout."""
    declared = -1
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                declared = int(value)
            except ValueError:
                declared = -1
            break
    if declared > DRAIN_LIMIT:
        raise _TooLarge
    chunks: list[bytes] = []
    size = 0
    more = True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Gone
        chunk = message.get("body", b"")
        more = message.get("more_body", False)
        size += len(chunk)
        if size > MAX_BODY:
            while more and size <= DRAIN_LIMIT:
                message = await receive()
                if message["type"] == "http.disconnect":
                    raise _Gone
                size += len(message.get("body", b""))
                more = message.get("more_body", False)
            raise _TooLarge
        if chunk:
            chunks.append(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def worker_app() -> RouterApp:
    """uvicorn's app factory in each worker process: the bundle named by the environment `serve` set."""
    budget = os.environ.get(BUDGET_ENV)
    router = Router.load(Path(os.environ[BUNDLE_ENV]), Path(budget) if budget else None)
    return RouterApp(router, os.environ.get(TOKEN_ENV), coalesce=int(os.environ.get(COALESCE_ENV, "1")))


# ---------------------------------------------------------------------------------------------------- protocol
class ReadTimeoutProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol plus a request read timeout (slowloris): a connection must deliver a whole
    request (headers and body) within `read_timeout` seconds of its first byte, and a new connection its first
    byte within that time; otherwise it gets 408 (if no response has started) and is closed."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._read_timer: asyncio.TimerHandle | None = None
        super().connection_made(transport)
        self._arm()

    def _arm(self) -> None:
        if self._read_timer is not None:
            self._read_timer.cancel()
        self._read_timer = self.loop.call_later(getattr(self.config, "read_timeout", 10.0), self._read_timed_out)

    def _disarm(self) -> None:
        if self._read_timer is not None:
            self._read_timer.cancel()
            self._read_timer = None

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm()

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _read_timed_out(self) -> None:
        self._read_timer = None
        if self.transport.is_closing():
            return
        if self.cycle is None or not self.cycle.response_started:
            body = b'{"error":"request not received in time"}'
            self.transport.write(
                b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\nserver: beast-router\r\n"
                b"connection: close\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body)
            )
            if self.cycle is not None:
                self.cycle.response_complete = True  # the app's own answer, if it ever comes, is dropped
                self.cycle.disconnected = True
                self.cycle.message_event.set()
        self.transport.close()


# ------------------------------------------------------------------------------------------------------ serving
@dataclass(frozen=True)
class ServeOptions:
    host: str = "127.0.0.1"
    port: int = 8808
    workers: int = 1
    backlog: int = 2048
    timeout_keep_alive: float = 5.0  # idle seconds before a keep-alive connection is closed
    timeout_request: float = 10.0  # seconds to receive a whole request (slowloris)
    limit_concurrency: int = 1024  # connections + requests per worker before 503
    coalesce: int = 64  # single-request POSTs routed together at most (Coalescer; 1 = each alone)

    def check(self) -> None:
        if not 0 <= self.port <= 65535:
            raise BeastError(f"--port {self.port}: expected 0..65535")
        for name, value, low in (
            ("--workers", self.workers, 1),
            ("--backlog", self.backlog, 1),
            ("--limit-concurrency", self.limit_concurrency, 1),
            ("--coalesce", self.coalesce, 1),
        ):
            if value < low:
                raise BeastError(f"{name} {value}: expected at least {low}")
        for name, value in (
            ("--timeout-keep-alive", self.timeout_keep_alive),
            ("--timeout-request", self.timeout_request),
        ):
            if not value > 0:
                raise BeastError(f"{name} {value}: expected seconds > 0")


def bind(host: str, port: int, backlog: int = 2048) -> socket.socket:
    """A listening TCP socket; an unknown host, a port in use or out of range -> BeastError (one line)."""
    if not 0 <= port <= 65535:
        raise BeastError(f"--port {port}: expected 0..65535")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as exc:
        raise BeastError(f"--host {host}: cannot resolve ({exc.args[-1] if exc.args else exc})") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        raise BeastError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.set_inheritable(True)
    return sock


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _config(app: RouterApp | str, opts: ServeOptions) -> Any:
    import uvicorn

    try:
        import uvloop  # noqa: F401

        loop = "uvloop"
    except ImportError:  # pragma: no cover - uvloop is a dependency, but not on every platform
        loop = "asyncio"
    config = uvicorn.Config(
        app,
        factory=isinstance(app, str),
        interface="asgi3",
        http=ReadTimeoutProtocol,
        loop=loop,
        lifespan="off",
        workers=opts.workers,
        backlog=opts.backlog,
        timeout_keep_alive=opts.timeout_keep_alive,
        limit_concurrency=opts.limit_concurrency,
        timeout_graceful_shutdown=5,
        server_header=False,
        date_header=False,
        proxy_headers=False,
        access_log=False,
        log_level="error",
    )
    config.read_timeout = opts.timeout_request  # read by ReadTimeoutProtocol (pickled with the config to workers)
    return config


def serve(bundle: Path, budget_file: Path | None, opts: ServeOptions, out=None, err=None) -> None:
    """`beast serve`: bind, then run `opts.workers` uvicorn workers (each loads the bundle) until SIGINT/SIGTERM."""
    opts.check()
    out, err = out or sys.stdout, err or sys.stderr
    token = os.environ.get(TOKEN_ENV) or None
    sock = bind(opts.host, opts.port, opts.backlog)  # a port in use fails before the (slow) bundle load
    if not is_loopback(opts.host) and token is None:
        print(
            f"beast serve: warning: listening on {opts.host} without {TOKEN_ENV}: anyone who can reach this address "
            "can route and read /metrics",
            file=err,
            flush=True,
        )
    try:
        Router.load(bundle, budget_file)  # a bad bundle fails here, once, before any worker starts
    except BaseException:
        sock.close()
        raise
    metrics_dir = tempfile.mkdtemp(prefix="beast-router-metrics-")
    os.environ.update(
        {
            BUNDLE_ENV: str(Path(bundle).resolve()),
            BUDGET_ENV: str(Path(budget_file).resolve()) if budget_file is not None else "",
            COALESCE_ENV: str(opts.coalesce),
            "PROMETHEUS_MULTIPROC_DIR": metrics_dir,
        }
    )
    if "prometheus_client" in sys.modules:  # imported before the directory was set: switch it to files now
        from prometheus_client import values

        values.ValueClass = values.get_value_class()
    port = sock.getsockname()[1]
    print(
        f"routing on http://{opts.host}:{port}/route (GET /health, GET /metrics) with {opts.workers} worker(s); "
        "Ctrl-C stops",
        file=out,
        flush=True,
    )
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    config = _config("serving.http:worker_app", opts)
    try:
        if opts.workers == 1:
            uvicorn.Server(config).run(sockets=[sock])
        else:
            Multiprocess(config, sockets=[sock]).run()
    except KeyboardInterrupt:
        pass
    finally:
        sock.close()
        shutil.rmtree(metrics_dir, ignore_errors=True)


class EmbeddedServer:
    """The same server in a thread of this process (tests, embedding): `serve_forever()` in a thread, then
    `shutdown()` and `server_close()`; `server_port`. `handle_error(request, address)` hears of every 500."""

    def __init__(self, router: Router, opts: ServeOptions) -> None:
        self._sock = bind(opts.host, opts.port, opts.backlog)
        self.server_address = self._sock.getsockname()[:2]
        self.server_port = self.server_address[1]
        self.app = RouterApp(
            router,
            os.environ.get(TOKEN_ENV),
            on_error=lambda exc: self.handle_error(None, None),
            coalesce=opts.coalesce,
        )
        import uvicorn

        self._server = uvicorn.Server(_config(self.app, opts))
        self._done = threading.Event()
        self._done.set()

    def handle_error(self, request: object, address: object) -> None:
        print("beast serve: internal error answering a request", file=sys.stderr)

    def serve_forever(self) -> None:
        self._done.clear()
        try:
            self._server.run(sockets=[self._sock])
        finally:
            self._done.set()

    def shutdown(self) -> None:
        self._server.should_exit = True
        self._done.wait(timeout=30)

    def server_close(self) -> None:
        self._sock.close()


def make_server(router: Router, host: str = "127.0.0.1", port: int = 8808, **options: Any) -> EmbeddedServer:
    """An in-process server on (host, port) (0 = any free port); options as ServeOptions (workers stay 1)."""
    opts = ServeOptions(host=host, port=port, **options)
    opts.check()
    return EmbeddedServer(router, opts)
