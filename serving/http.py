"""`beast serve`: POST /route on localhost for routers written in other languages.

Standard library HTTP server (threads, HTTP/1.1 keep-alive), one shared Router. A request body is one JSON
object (same fields as `beast route`) and the answer is the decision as JSON; or a JSON array of up to
`MAX_BATCH` such objects, answered by an array in the same order (routed together with `route_many`; a bad
item gets {"index", "error"} in its place). Bad input gets 400 with the reason, an oversized body 413, an
unknown path 404; nothing is ever echoed into a format string or a path.
"""

from __future__ import annotations

import json
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from serving.router import Decision, Router, RouteRequest

MAX_BODY = 1 << 20  # 1 MiB: prompts beyond that are not routed
MAX_BATCH = 1000  # requests per batched POST


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


def decision_json(router: Router, request: dict) -> dict:
    return _as_json(router.route(RouteRequest.from_dict(request)), request)


def batch_json(router: Router, items: list) -> list[dict]:
    """One answer per item, in order: the decision, or {"index", "error"} for an item that is not a request."""
    parsed: dict[int, RouteRequest] = {}
    answers: list[dict | None] = [None] * len(items)
    for i, item in enumerate(items):
        try:
            if not isinstance(item, dict):
                raise ValueError("expected a JSON object")
            parsed[i] = RouteRequest.from_dict(item)
        except (ValueError, TypeError) as exc:
            answers[i] = {"index": i, "error": str(exc).splitlines()[0]}
    for i, d in zip(parsed, router.route_many(list(parsed.values())), strict=True):
        answers[i] = _as_json(d, items[i])
    return answers  # type: ignore[return-value]


def make_server(router: Router, host: str = "127.0.0.1", port: int = 8808) -> ThreadingHTTPServer:
    lock = threading.Lock()  # the router's breaker and budget state are shared

    class Handler(BaseHTTPRequestHandler):
        server_version = "beast-router/1"
        protocol_version = "HTTP/1.1"  # keep-alive: every answer carries a Content-Length
        disable_nagle_algorithm = True  # headers and body go out as two writes: without this, +40 ms delayed ACKs

        def _send(self, status: HTTPStatus, body: dict | list) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802 - http.server naming
            if self.path == "/health":
                self._send(HTTPStatus.OK, {"status": "ok", "models": list(router.models), "policy": router.policy.name})
            else:
                self._send(HTTPStatus.NOT_FOUND, {"error": "unknown path; POST /route or GET /health"})

        def do_POST(self) -> None:  # noqa: N802
            if self.path != "/route":
                self._send(HTTPStatus.NOT_FOUND, {"error": "unknown path; POST /route or GET /health"})
                return
            try:
                length = int(self.headers.get("Content-Length", "0"))
            except ValueError:
                length = -1
            if length < 0 or length > MAX_BODY:
                if MAX_BODY < length <= 4 * MAX_BODY:  # read what the client is sending, so the answer reaches it
                    left = length
                    while left > 0:
                        chunk = self.rfile.read(min(1 << 16, left))
                        if not chunk:
                            break
                        left -= len(chunk)
                self.close_connection = True
                self._send(
                    HTTPStatus.REQUEST_ENTITY_TOO_LARGE if length > MAX_BODY else HTTPStatus.BAD_REQUEST,
                    {"error": f"body must be 0..{MAX_BODY} bytes with a Content-Length"},
                )
                return
            try:
                try:
                    body = json.loads(self.rfile.read(length) or b"null")
                except RecursionError:
                    raise ValueError("body: JSON nested too deeply") from None
                if isinstance(body, list):
                    if not 1 <= len(body) <= MAX_BATCH:
                        raise ValueError(f"a batch holds 1..{MAX_BATCH} requests, got {len(body)}")
                    with lock:
                        answer: dict | list = batch_json(router, body)
                elif not isinstance(body, dict):
                    raise ValueError("expected a JSON object (one request) or an array of them (a batch)")
                else:
                    with lock:
                        answer = decision_json(router, body)
            except (ValueError, TypeError) as exc:
                self._send(HTTPStatus.BAD_REQUEST, {"error": str(exc).splitlines()[0]})
                return
            self._send(HTTPStatus.OK, answer)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - quiet by default
            return

    return ThreadingHTTPServer((host, port), Handler)
