"""The API's HTTP server under hostile clients: framing, timeouts, caps, JSON errors.

Loopback only, every socket with a timeout, every server stopped: nothing here can hang.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler

import orjson
import pytest

from monitor.surfaces.api import _Handler, _is_stream
from monitor.surfaces.httpserver import BoundedHTTPServer, ServerLimits


class _FakeApi:
    """Just enough of the API for /healthz."""

    stopping = False

    def healthy(self) -> tuple[bool, str]:
        return True, "ok"

    ready = healthy


class _Echo(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    gate = threading.Event()

    def log_message(self, fmt: str, *args: object) -> None:
        pass

    def _reply(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path.startswith("/stream"):
            self._reply(b"stream")
            self.gate.wait(5)  # a long-lived response holds its own thread, not a worker
            return
        self._reply(self.path.encode())

    def do_POST(self) -> None:
        n = int(self.headers.get("Content-Length", 0))
        self._reply(b"posted:" + self.rfile.read(n))


@contextlib.contextmanager
def _serve(handler: type[BaseHTTPRequestHandler], **limits: object) -> Iterator[BoundedHTTPServer]:
    lim = ServerLimits(**{"read_timeout_s": 0.5, "idle_timeout_s": 5.0, **limits})  # type: ignore[arg-type]
    srv = BoundedHTTPServer(
        ("127.0.0.1", 0), handler, lim, is_stream=lambda line: b" /stream" in line
    )
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield srv
    finally:
        _Echo.gate.set()
        srv.shutdown()
        srv.server_close()
        t.join(5)
        _Echo.gate.clear()


def _connect(srv: BoundedHTTPServer) -> socket.socket:
    return socket.create_connection(srv.server_address[:2], timeout=5)


def _responses(sock: socket.socket, count: int) -> list[tuple[int, bytes]]:
    """Read ``count`` responses (Content-Length framed) from ``sock``."""
    buf, out = b"", []
    while len(out) < count:
        while b"\r\n\r\n" not in buf:
            chunk = sock.recv(65536)
            if not chunk:
                return out
            buf += chunk
        head, _, rest = buf.partition(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            k, _, v = line.partition(b":")
            if k.strip().lower() == b"content-length":
                length = int(v)
        while len(rest) < length:
            chunk = sock.recv(65536)
            if not chunk:
                break
            rest += chunk
        out.append((status, rest[:length]))
        buf = rest[length:]
    return out


def _get(srv: BoundedHTTPServer, path: str = "/x") -> tuple[int, bytes]:
    with _connect(srv) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode())
        (got,) = _responses(s, 1)
        return got


def test_an_unread_body_is_never_parsed_as_the_next_request() -> None:
    """A body sent to a route that ignores it (GET) cannot smuggle a request: the server frames
    each request by its Content-Length before a handler sees it."""
    smuggled = b"GET /evil HTTP/1.1\r\nHost: t\r\n\r\n"
    with _serve(_Echo) as srv, _connect(srv) as s:
        s.sendall(
            b"GET /first HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % len(smuggled)
            + smuggled
            + b"GET /second HTTP/1.1\r\nHost: t\r\n\r\n"
        )
        got = _responses(s, 2)
    assert got == [(200, b"/first"), (200, b"/second")]


def test_keep_alive_and_pipelined_posts_are_framed_exactly() -> None:
    with _serve(_Echo) as srv, _connect(srv) as s:
        s.sendall(
            b"POST /a HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc"
            b"POST /b HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nde"
        )
        assert _responses(s, 2) == [(200, b"posted:abc"), (200, b"posted:de")]


def test_a_short_body_times_out_without_holding_a_worker() -> None:
    """A body shorter than its Content-Length is answered 408 after the read timeout and the
    connection closed; meanwhile the only worker keeps serving everyone else."""
    with _serve(_Echo, workers=1) as srv, _connect(srv) as slow:
        slow.sendall(b"POST /a HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\nshort")
        assert _get(srv, "/meanwhile") == (200, b"/meanwhile")
        got = _responses(slow, 1)
        assert got and got[0][0] == 408
        assert slow.recv(10) == b""  # closed
        assert srv.timed_out == 1


def test_idle_connections_cost_no_worker() -> None:
    """300 connections that send nothing (slowloris) while one worker serves: normal requests
    are still answered."""
    with _serve(_Echo, workers=1, max_connections=400) as srv:
        idle = [_connect(srv) for _ in range(300)]
        try:
            for s in idle[:100]:
                s.sendall(b"GET /par")  # a partial request line: waiting, not working
            assert [_get(srv, f"/n{i}")[1] for i in range(20)] == [
                f"/n{i}".encode() for i in range(20)
            ]
        finally:
            for s in idle:
                s.close()


def test_the_connection_cap_answers_503_instead_of_a_thread() -> None:
    with _serve(_Echo, max_connections=5) as srv:
        held = [_connect(srv) for _ in range(5)]
        try:
            deadline = time.monotonic() + 5
            while srv.open_connections < 5 and time.monotonic() < deadline:
                time.sleep(0.01)
            with _connect(srv) as extra:
                ((status, body),) = _responses(extra, 1)
            assert status == 503 and b"too many connections" in body
            assert srv.rejected == 1
        finally:
            for s in held:
                s.close()


def test_streams_run_on_their_own_capped_threads() -> None:
    """A long-lived response does not take a worker; past max_streams the next gets 503."""
    with _serve(_Echo, workers=1, max_streams=1) as srv, _connect(srv) as first:
        first.sendall(b"GET /stream HTTP/1.1\r\nHost: t\r\n\r\n")
        assert _responses(first, 1) == [(200, b"stream")]
        assert _get(srv, "/still") == (200, b"/still")
        status, body = _get(srv, "/stream")
        assert status == 503 and b"too many event streams" in body


@pytest.mark.parametrize(
    ("raw", "status", "words"),
    [
        (
            b"POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            411,
            b"chunked",
        ),
        (b"POST /a HTTP/1.1\r\nContent-Length: -3\r\n\r\n", 400, b"Content-Length"),
        (b"POST /a HTTP/1.1\r\nContent-Length: 999999999\r\n\r\n", 413, b"exceeds"),
        (b"GET /a HTTP/1.1\r\nX: " + b"y" * 40_000 + b"\r\n\r\n", 431, b"headers"),
        # far more than the server reads: it lingers and drains, so the answer is not reset
        (b"GET /a HTTP/1.1\r\nX: " + b"y" * 400_000 + b"\r\n\r\n", 431, b"headers"),
    ],
)
def test_unframeable_requests_get_json_and_a_close(raw: bytes, status: int, words: bytes) -> None:
    with _serve(_Echo) as srv, _connect(srv) as s:
        s.sendall(raw)
        ((got_status, body),) = _responses(s, 1)
        assert got_status == status and words in body
        assert orjson.loads(body)["status"] == status
        assert s.recv(10) == b""


class _Api(_Handler):
    api = _FakeApi()  # type: ignore[assignment]


@pytest.mark.parametrize(
    ("raw", "status", "words"),
    [
        (b"BREW /pot HTTP/1.1\r\nHost: t\r\n\r\n", 501, "BREW is not supported"),
        (b"GARBAGE\r\n\r\n", 400, "Bad request"),
        # HTTP/0.9 would get a bare body without a status line
        (b"GET /healthz\r\n\r\n", 400, "needs an HTTP version"),
        (b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n", 200, "ok"),
    ],
)
def test_the_api_answers_json_for_every_status(raw: bytes, status: int, words: str) -> None:
    with _serve(_Api) as srv, _connect(srv) as s:
        s.sendall(raw)
        ((got_status, body),) = _responses(s, 1)
    assert got_status == status
    assert words.lower() in orjson.dumps(orjson.loads(body)).decode().lower()


def test_only_the_alert_stream_is_long_lived() -> None:
    assert _is_stream(b"GET /v1/alerts/stream?bake=x HTTP/1.1")
    assert not _is_stream(b"GET /v1/alerts HTTP/1.1")
    assert not _is_stream(b"GARBAGE")
