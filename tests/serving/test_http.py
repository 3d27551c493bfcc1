"""The uvicorn server of `beast serve`: defects of the old ThreadingHTTPServer stay fixed (405 + Allow, no
Python version in Server, request_id checked, clean start-up errors), auth, metrics, limits, slow clients."""

from __future__ import annotations

import http.client
import json
import socket
import subprocess
import sys
import threading
import time

import pytest
from conftest import ROOT

from core.errors import BeastError


class _Stub:
    models = ("a", "b")

    class policy:  # noqa: N801
        name = "stub"

    def route(self, request):
        from serving.router import Decision, DecisionCode

        return Decision("a", 0.5, 1e-6, "stub", "stub", DecisionCode.OK)

    def route_many(self, requests):
        return [self.route(r) for r in requests]


@pytest.fixture
def serve(monkeypatch: pytest.MonkeyPatch):
    from serving.http import make_server

    servers = []

    def start(token: str | None = None, **options):
        if token is None:
            monkeypatch.delenv("BEAST_ROUTER_TOKEN", raising=False)
        else:
            monkeypatch.setenv("BEAST_ROUTER_TOKEN", token)
        server = make_server(_Stub(), "127.0.0.1", 0, **options)
        errors: list[str] = []
        server.handle_error = lambda request, address: errors.append("500")
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", server.server_port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        return server.server_port, errors

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def call(port: int, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request(method, path, body=body, headers=headers or {})
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp, data


def test_get_route_is_405_with_allow_and_server_header_names_no_python(serve) -> None:
    port, errors = serve()
    resp, data = call(port, "GET", "/route")
    assert resp.status == 405 and resp.getheader("Allow") == "POST" and json.loads(data)["error"]
    assert call(port, "POST", "/health", b"{}")[0].status == 405
    assert call(port, "GET", "/nowhere")[0].status == 404
    resp, data = call(port, "POST", "/route", json.dumps({"prompt": "hi", "request_id": "x1"}).encode())
    assert resp.status == 200 and json.loads(data)["request_id"] == "x1"
    server = resp.getheader("Server") or ""
    assert server == "beast-router" and "python" not in server.lower()
    assert not errors


@pytest.mark.parametrize(
    "rid, ok",
    [("x" * 128, True), (7, True), (-3, True), ("x" * 129, False), ([1], False), ({"a": 1}, False), (None, False),
     (True, False), (1.5, False)],
)  # fmt: skip
def test_request_id_is_a_short_string_or_an_integer(serve, rid, ok) -> None:
    port, _ = serve()
    resp, data = call(port, "POST", "/route", json.dumps({"prompt": "hi", "request_id": rid}).encode())
    answer = json.loads(data)
    if ok:
        assert resp.status == 200 and answer["request_id"] == rid
    else:
        assert resp.status == 400 and answer["error"].startswith("request_id: expected a string of at most 128")
    resp, data = call(
        port, "POST", "/route", json.dumps([{"prompt": "a", "request_id": rid}, {"prompt": "b"}]).encode()
    )
    answers = json.loads(data)
    assert resp.status == 200 and answers[1]["model"] == "a"
    assert (
        (answers[0].get("request_id") == rid)
        if ok
        else (answers[0]["index"] == 0 and "request_id" in answers[0]["error"])
    )


def test_bearer_token_guards_route_and_metrics_not_health(serve) -> None:
    port, _ = serve(token="s3cret")
    assert call(port, "GET", "/health")[0].status == 200
    body = b'{"prompt": "hi"}'
    resp, _ = call(port, "POST", "/route", body)
    assert resp.status == 401 and resp.getheader("WWW-Authenticate", "").startswith("Bearer")
    assert call(port, "POST", "/route", body, {"Authorization": "Bearer wrong"})[0].status == 401
    assert call(port, "GET", "/metrics")[0].status == 401
    assert call(port, "POST", "/route", body, {"Authorization": "Bearer s3cret"})[0].status == 200
    assert call(port, "GET", "/metrics", None, {"Authorization": "Bearer s3cret"})[0].status == 200


def test_metrics_count_decisions_statuses_and_latency(serve) -> None:
    port, _ = serve()
    call(port, "POST", "/route", b'[{"prompt": "a"}, {"prompt": "b"}, 3]')
    call(port, "POST", "/route", b"{nope")
    resp, data = call(port, "GET", "/metrics")
    text = data.decode()
    assert resp.status == 200 and resp.getheader("Content-Type").startswith("text/plain")
    assert 'beast_router_decisions_total{code="ok",model="a"} 2.0' in text
    assert 'beast_router_http_responses_total{status="400"} 1.0' in text
    assert "beast_router_request_seconds_bucket" in text and "beast_router_request_seconds_count 2.0" in text


def test_body_limit_413_and_bad_json_400(serve) -> None:
    port, errors = serve()
    assert call(port, "POST", "/route", b"x" * ((1 << 20) + 1))[0].status == 413
    assert call(port, "POST", "/route", b"[" * 100_000 + b"]" * 100_000)[0].status == 400
    assert call(port, "POST", "/route", b'{"input_tokens": ' + b"9" * 400 + b"}")[0].status == 400
    assert call(port, "POST", "/route", b"[]")[0].status == 400
    assert not errors


def test_a_slow_body_is_cut_off_with_408(serve) -> None:
    port, _ = serve(timeout_request=1.0)
    start = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"POST /route HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
        data = b""
        while chunk := sock.recv(4096):
            data += chunk
    assert data.startswith(b"HTTP/1.1 408") and time.monotonic() - start < 5
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:  # slow headers, and silence, too
        sock.sendall(b"POST /route HTTP/1.1\r\nHo")
        assert sock.recv(4096).startswith(b"HTTP/1.1 408")
    assert call(port, "GET", "/health")[0].status == 200  # the worker was never held


def test_beyond_the_concurrency_limit_503_not_a_reset(serve) -> None:
    port, _ = serve(limit_concurrency=2)
    with socket.create_connection(("127.0.0.1", port), timeout=10):  # an idle connection holds one slot
        time.sleep(0.2)
        resp, _ = call(port, "POST", "/route", b'{"prompt": "hi"}')
        assert resp.status == 503
    time.sleep(0.2)
    assert call(port, "POST", "/route", b'{"prompt": "hi"}')[0].status == 200


def test_vanishing_clients_leave_no_traceback(serve, capfd: pytest.CaptureFixture) -> None:
    port, errors = serve()
    for _ in range(20):
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")  # RST on close
        sock.sendall(b'POST /route HTTP/1.1\r\nHost: x\r\nContent-Length: 16\r\n\r\n{"prompt": "hi"}')
        sock.close()
    time.sleep(0.5)
    assert call(port, "GET", "/health")[0].status == 200
    out, err = capfd.readouterr()
    assert "Traceback" not in err and "Error" not in err and not errors


def test_bind_errors_are_one_clean_line() -> None:
    from serving.http import bind

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(BeastError, match=r"cannot listen on 127\.0\.0\.1:\d+: "):
            bind("127.0.0.1", taken.getsockname()[1])
    with pytest.raises(BeastError, match="--port 99999: expected 0..65535"):
        bind("127.0.0.1", 99999)
    with pytest.raises(BeastError, match="--host no-such-host.invalid: cannot resolve"):
        bind("no-such-host.invalid", 0)


@pytest.mark.parametrize("args", [["--port", "99999"], ["--host", "no-such-host.invalid"], ["--port", "IN_USE"]])
def test_serve_start_up_errors_exit_2_with_one_line(args: list[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        args = [str(taken.getsockname()[1]) if a == "IN_USE" else a for a in args]
        proc = subprocess.run(
            [sys.executable, "-m", "beast.cli", "serve", "--bundle", "no-such-bundle", *args],
            cwd=ROOT, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert lines[0].startswith("beast serve: error: ")


def test_non_loopback_without_token_warns(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    from serving import http as served

    monkeypatch.delenv("BEAST_ROUTER_TOKEN", raising=False)
    monkeypatch.setattr(served.Router, "load", staticmethod(lambda *a, **k: (_ for _ in ()).throw(BeastError("stop"))))
    with pytest.raises(BeastError, match="stop"):
        served.serve("b", None, served.ServeOptions(host="0.0.0.0", port=0))
    assert "warning: listening on 0.0.0.0 without BEAST_ROUTER_TOKEN" in capsys.readouterr().err
    assert served.is_loopback("127.0.0.1") and served.is_loopback("::1") and not served.is_loopback("0.0.0.0")


class _Batching(_Stub):
    """Answers with the request's own prompt (a misrouted answer shows), blocks 50 ms per call (requests queue
    up behind it) and refuses every batch that holds a "poison" prompt (as a bug in the batch path would)."""

    def __init__(self) -> None:
        self.batches: list[int] = []

    def route(self, request):
        from serving.router import Decision, DecisionCode

        if request.prompt == "bad":
            raise ValueError("bad prompt")
        return Decision("a", 0.5, 1e-6, "stub", request.prompt, DecisionCode.OK)

    def route_many(self, requests):
        self.batches.append(len(requests))
        time.sleep(0.05)
        if any(r.prompt in ("poison", "bad") for r in requests):
            raise RuntimeError("batch path failed")
        return [self.route(r) for r in requests]


@pytest.mark.parametrize("coalesce", [1, 8])
def test_concurrent_single_posts_are_routed_together_each_getting_its_own_answer(coalesce: int) -> None:
    """`--coalesce`: single-request POSTs waiting together go through one `route_many` call of at most
    `coalesce`; every client still gets the decision of its own request, a failing batch falls back to
    routing each request alone (only the bad one fails, with its own 400), and with 1 nothing is batched."""
    from serving.http import make_server

    stub = _Batching()
    server = make_server(stub, "127.0.0.1", 0, coalesce=coalesce)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    prompts = [f"p{i}" for i in range(38)] + ["poison", "bad"]
    answers: dict[str, tuple[int, dict]] = {}
    ready = threading.Barrier(len(prompts))

    def post(prompt: str) -> None:  # keep-alive clients, as load balancers and SDKs are: connected, then all send
        conn = http.client.HTTPConnection("127.0.0.1", server.server_port, timeout=10)
        conn.connect()
        ready.wait()
        conn.request("POST", "/route", body=json.dumps({"prompt": prompt}).encode())
        resp = conn.getresponse()
        answers[prompt] = (resp.status, json.loads(resp.read()))
        conn.close()

    try:
        threads = [threading.Thread(target=post, args=(p,)) for p in prompts]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
    finally:
        server.shutdown()
        server.server_close()
    assert all(answers[p] == (200, answers[p][1]) and answers[p][1]["reason"] == p for p in prompts[:-1])
    assert answers["bad"] == (400, {"error": "bad prompt"})
    if coalesce == 1:
        assert stub.batches == []  # each routed alone by route()
    else:
        assert max(stub.batches) == coalesce and sum(stub.batches) == len(prompts)
        assert len(stub.batches) < len(prompts) / 2
