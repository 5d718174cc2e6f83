"""A small HTTP/1.1 server that hostile clients cannot exhaust (issue 10, "Hostile HTTP").

The stdlib ``ThreadingHTTPServer`` gives every connection a thread that blocks reading it: a
client that opens connections and sends nothing (or a byte a minute) holds threads without
bound, a short body hangs its thread forever, and a body sent to a route that ignores it is
parsed as the next request. This server instead:

* **reads in one selector thread**: a connection costs a file descriptor, not a thread, until a
  whole request — headers and the ``Content-Length`` body — has arrived, so idle and slow
  connections never occupy a worker;
* **bounds the time** a request may take to arrive (``read_timeout_s`` from its first byte) and
  an idle keep-alive connection may stay (``idle_timeout_s``), then closes it;
* **bounds the work**: a fixed pool of ``workers`` threads runs the handlers; at most
  ``max_connections`` connections are open (the next one gets a 503 and is closed), at most
  ``max_streams`` long-lived responses (SSE) run, each on its own thread;
* **frames every request itself**: a handler sees exactly one request's bytes, so a body it
  does not read can never be taken for the next request; chunked bodies (no length) get 411
  and the connection is closed.

Handlers are ordinary :class:`http.server.BaseHTTPRequestHandler` subclasses; ``is_stream``
tells which requests are long-lived.
"""

from __future__ import annotations

import contextlib
import io
import logging
import selectors
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any

import orjson

__all__ = ["PROMETHEUS_TEXT", "BoundedHTTPServer", "JsonHandler", "ServerLimits"]

log = logging.getLogger("bakemon.http")

MAX_HEADER_BYTES = 32 * 1024
PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"


@dataclass(frozen=True)
class ServerLimits:
    """The server's bounds (settings ``api_workers``, ``api_max_connections``, …)."""

    workers: int = 8
    max_connections: int = 1000
    max_streams: int = 64
    read_timeout_s: float = 10.0
    idle_timeout_s: float = 60.0
    write_timeout_s: float = 10.0
    max_body_bytes: int = 64 * 1024


def canned(status: int, message: str) -> bytes:
    """A complete JSON error response that closes the connection."""
    body = orjson.dumps({"error": message, "status": status})
    reason = {400: "Bad Request", 408: "Request Timeout", 411: "Length Required", 413: "Content Too Large",
              431: "Request Header Fields Too Large", 503: "Service Unavailable"}.get(status, "Error")  # fmt: skip
    head = (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\nCache-Control: no-store\r\n\r\n"
    )
    return head.encode() + body


# After an error answer to a request not read to its end, the rest is drained (and dropped)
# this long before the socket closes: closing with unread input sends a TCP reset, which
# destroys the answer before the client reads it.
LINGER_S = 2.0


class _Conn:
    __slots__ = ("addr", "buf", "closing_until", "first_byte_at", "idle_since", "sock")

    def __init__(self, sock: socket.socket, addr: Any) -> None:
        self.sock = sock
        self.addr = addr
        self.buf = bytearray()
        self.first_byte_at: float | None = None
        self.idle_since = time.monotonic()
        self.closing_until: float | None = None  # answered and half-closed: drain, then close


class _Framing(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _frame(buf: bytearray, max_body: int) -> int | None:
    """Length of the first complete request in ``buf`` (None: not complete yet)."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        if len(buf) > MAX_HEADER_BYTES:
            raise _Framing(431, f"request headers exceed {MAX_HEADER_BYTES} bytes")
        return None
    if end > MAX_HEADER_BYTES:
        raise _Framing(431, f"request headers exceed {MAX_HEADER_BYTES} bytes")
    length = 0
    for line in bytes(buf[:end]).split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        key = name.strip().lower()
        if key == b"transfer-encoding":
            raise _Framing(411, "chunked bodies are not accepted; send Content-Length")
        if key == b"content-length":
            try:
                length = int(value.strip())
            except ValueError:
                raise _Framing(400, "invalid Content-Length") from None
            if length < 0:
                raise _Framing(400, "invalid Content-Length")
            if length > max_body:
                msg = f"request body of {length} bytes exceeds the limit of {max_body}"
                raise _Framing(413, msg)
    total = end + 4 + length
    return total if len(buf) >= total else None


class BoundedHTTPServer:
    """Serve ``handler`` on ``(host, port)`` within ``limits`` (see the module docstring)."""

    def __init__(
        self,
        address: tuple[str, int],
        handler: type[BaseHTTPRequestHandler],
        limits: ServerLimits,
        *,
        is_stream: Callable[[bytes], bool] = lambda request_line: False,
    ) -> None:
        self.handler = handler
        self.limits = limits
        self.is_stream = is_stream
        self._listen = socket.create_server(address, backlog=1024, reuse_port=False)
        self._listen.setblocking(False)
        self.server_address = self._listen.getsockname()
        self._sel = selectors.DefaultSelector()
        self._sel.register(self._listen, selectors.EVENT_READ, None)
        self._pool = ThreadPoolExecutor(limits.workers, thread_name_prefix="api")
        self._lock = threading.Lock()
        self._open = 0
        self._streams = 0
        self._back: list[_Conn] = []  # connections handed back by workers (keep-alive)
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._sel.register(self._wake_r, selectors.EVENT_READ, "wake")
        self._stop = threading.Event()
        self._done = threading.Event()
        self.rejected = 0  # connections refused at the cap, requests refused at the stream cap
        self.timed_out = 0  # connections closed for a request that did not arrive in time

    @property
    def open_connections(self) -> int:
        return self._open

    # -- the selector loop --------------------------------------------------------------------
    def serve_forever(self) -> None:
        while not self._stop.is_set():
            for key, _ in self._sel.select(timeout=0.25):
                if key.data is None:
                    self._accept()
                elif key.data == "wake":
                    with contextlib.suppress(OSError):
                        self._wake_r.recv(4096)
                else:
                    self._read(key.data)
            self._take_back()
            self._expire()
        self._close_all()
        self._done.set()

    def _accept(self) -> None:
        for _ in range(64):
            try:
                sock, addr = self._listen.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # EMFILE and the like: try again on the next event
                log.warning("accept failed: %s", exc)
                return
            if self._open >= self.limits.max_connections:
                self.rejected += 1
                with contextlib.suppress(OSError):
                    sock.setblocking(False)
                    sock.send(canned(503, "too many connections; try again"))
                sock.close()
                continue
            with contextlib.suppress(OSError):  # headers and body are separate writes: no Nagle
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setblocking(False)
            with self._lock:
                self._open += 1
            self._sel.register(sock, selectors.EVENT_READ, _Conn(sock, addr))

    def _read(self, conn: _Conn) -> None:
        try:
            chunk = conn.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            chunk = b""
        if not chunk:
            self._drop(conn)
            return
        if conn.closing_until is not None:  # lingering: what the client still sends is dropped
            return
        if conn.first_byte_at is None:
            conn.first_byte_at = time.monotonic()
        conn.buf += chunk
        self._dispatch_if_complete(conn)

    def _dispatch_if_complete(self, conn: _Conn) -> None:
        try:
            size = _frame(conn.buf, self.limits.max_body_bytes)
        except _Framing as exc:
            self._refuse(conn, exc.status, exc.message)
            return
        if size is None:
            return
        request = bytes(conn.buf[:size])
        del conn.buf[:size]
        self._sel.unregister(conn.sock)
        line = request.split(b"\r\n", 1)[0]
        if self.is_stream(line):
            with self._lock:
                full = self._streams >= self.limits.max_streams
                self._streams += 0 if full else 1
            if full:
                self.rejected += 1
                self._refuse(
                    conn,
                    503,
                    "too many event streams open (alerts and bakes share max_streams); try again",
                    registered=False,
                )
                return
            threading.Thread(target=self._handle, args=(conn, request, True), daemon=True).start()
            return
        self._pool.submit(self._handle, conn, request, False)

    def _refuse(self, conn: _Conn, status: int, message: str, *, registered: bool = True) -> None:
        """Answer ``status`` and close; a connection still registered (its request not read to
        the end) lingers half-closed for :data:`LINGER_S`, its input drained, so the client
        gets the answer instead of a reset."""
        try:
            conn.sock.setblocking(True)
            conn.sock.settimeout(1.0)
            conn.sock.sendall(canned(status, message))
            if registered:
                conn.sock.shutdown(socket.SHUT_WR)
                conn.sock.setblocking(False)
                conn.buf.clear()
                conn.closing_until = time.monotonic() + LINGER_S
                return
        except OSError:
            pass
        self._drop(conn, registered=registered)

    def _drop(self, conn: _Conn, *, registered: bool = True) -> None:
        if registered:
            with contextlib.suppress(KeyError, ValueError):
                self._sel.unregister(conn.sock)
        with contextlib.suppress(OSError):
            conn.sock.close()
        with self._lock:
            self._open -= 1

    def _expire(self) -> None:
        now = time.monotonic()
        for key in list(self._sel.get_map().values()):
            conn = key.data
            if not isinstance(conn, _Conn):
                continue
            if conn.closing_until is not None:
                if now > conn.closing_until:
                    self._drop(conn)
                continue
            if (
                conn.first_byte_at is not None
                and now - conn.first_byte_at > self.limits.read_timeout_s
            ):
                self.timed_out += 1
                self._refuse(conn, 408, "request not received in time")
            elif conn.first_byte_at is None and now - conn.idle_since > self.limits.idle_timeout_s:
                self._drop(conn)

    def _take_back(self) -> None:
        with self._lock:
            back, self._back = self._back, []
        for conn in back:
            conn.sock.setblocking(False)
            conn.idle_since = time.monotonic()
            conn.first_byte_at = time.monotonic() if conn.buf else None
            self._sel.register(conn.sock, selectors.EVENT_READ, conn)
            if conn.buf:
                self._dispatch_if_complete(conn)

    # -- workers ------------------------------------------------------------------------------
    def _handle(self, conn: _Conn, request: bytes, stream: bool) -> None:
        keep = False
        try:
            conn.sock.setblocking(True)
            conn.sock.settimeout(self.limits.write_timeout_s)
            h = _run_one(self.handler, conn.sock, conn.addr, self, request)
            keep = not h.close_connection and not stream and not self._stop.is_set()
        except Exception:  # a handler bug must not kill the worker or leak the connection
            log.exception("error handling a request from %s", conn.addr)
        finally:
            if stream:
                with self._lock:
                    self._streams -= 1
        if not keep:
            self._drop(conn, registered=False)
            return
        with self._lock:
            self._back.append(conn)
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")

    # -- lifecycle ----------------------------------------------------------------------------
    def shutdown(self, timeout_s: float = 5.0) -> None:
        """Stop the loop and wait for it (open connections are closed)."""
        self._stop.set()
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")
        self._done.wait(timeout_s)

    def _close_all(self) -> None:
        for key in list(self._sel.get_map().values()):
            if isinstance(key.data, _Conn):
                self._drop(key.data)
        self._pool.shutdown(wait=False, cancel_futures=True)

    def server_close(self) -> None:
        with contextlib.suppress(OSError):
            self._listen.close()
        self._sel.close()
        for s in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                s.close()


class JsonHandler(BaseHTTPRequestHandler):
    """The base of bakemon's handlers: HTTP/1.1, responses with a length, errors as JSON (the
    stdlib's own too: unknown method, malformed request line, …)."""

    server_version = "bakemon"
    sys_version = ""
    protocol_version = "HTTP/1.1"
    methods = "GET, HEAD, POST, PUT or DELETE"  # named in the 501 for any other method

    def log_message(self, fmt: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), fmt % args)

    def _send(self, status: int, body: Any, *, content_type: str = "application/json") -> None:
        data = body if isinstance(body, bytes) else orjson.dumps(body)
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def parse_request(self) -> bool:
        """The stdlib's parsing, minus HTTP/0.9 (a request line without a version would get a
        bare body without a status line, a classic desync vector)."""
        if not super().parse_request():
            return False
        if self.request_version == "HTTP/0.9":
            self.send_error(400, "a request line needs an HTTP version (HTTP/1.0 or HTTP/1.1)")
            return False
        return True

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        self.close_connection = True
        if self.request_version == "HTTP/0.9":  # the request line did not parse: answer 1.1
            self.request_version = self.protocol_version
        text = message or self.responses.get(code, ("error",))[0]
        if code == 501 and self.command:
            text = f"method {self.command} is not supported; use {self.methods}"
        with contextlib.suppress(OSError):
            self._send(code, {"error": text, "status": code})


def _run_one(
    handler: type[BaseHTTPRequestHandler],
    sock: socket.socket,
    addr: Any,
    server: BoundedHTTPServer,
    request: bytes,
) -> BaseHTTPRequestHandler:
    """Run ``handler`` on one framed request: input from memory, output to the socket (what
    ``BaseHTTPRequestHandler.__init__`` does for a socket, minus reading it)."""
    h = handler.__new__(handler)
    h.request = sock
    h.connection = sock
    h.client_address = addr
    h.server = server  # type: ignore[assignment]
    h.rfile = io.BytesIO(request)
    h.wfile = sock.makefile("wb", buffering=0)  # type: ignore[assignment]
    h.close_connection = True
    try:
        h.handle_one_request()
    finally:
        with contextlib.suppress(OSError):
            h.wfile.close()
    return h
