"""The operations port every process serves, whatever its roles: ``/metrics``, ``/healthz``,
``/readyz`` (issue 10, "every role observable"). An ingest-only or judge-only process has no API,
but its reject counters, lag and health must still be scrapeable and probeable.

It runs on the same bounded server as the API (:mod:`.httpserver`), with a small worker pool.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from typing import Any

import orjson

from monitor.surfaces.httpserver import BoundedHTTPServer, ServerLimits

__all__ = ["OpsServer"]

log = logging.getLogger("bakemon.ops")

_PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"
Check = Callable[[], tuple[bool, str]]


class _OpsHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "bakemon"
    sys_version = ""
    metrics: Callable[[], bytes]
    healthy: Check
    ready: Check

    def log_message(self, fmt: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), fmt % args)

    def _send(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        self.close_connection = True
        if self.request_version == "HTTP/0.9":
            self.request_version = self.protocol_version
        text = message or self.responses.get(code, ("error",))[0]
        self._send(code, orjson.dumps({"error": text, "status": code}))

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0].rstrip("/")
        if path == "/metrics":
            return self._send(200, type(self).metrics(), _PROMETHEUS_TEXT)
        if path in ("/healthz", "/readyz"):
            ok, why = (type(self).healthy if path == "/healthz" else type(self).ready)()
            body = {"status": "ok" if ok else "unavailable", "detail": why}
            return self._send(200 if ok else 503, orjson.dumps(body))
        msg = f"no route for {self.path} on the operations port (try /metrics, /healthz, /readyz)"
        return self._send(404, orjson.dumps({"error": msg, "status": 404}))

    def do_HEAD(self) -> None:
        self.do_GET()


class OpsServer:
    """``/metrics``, ``/healthz`` and ``/readyz`` on ``(host, port)``."""

    def __init__(
        self, host: str, port: int, *, metrics: Callable[[], bytes], healthy: Check, ready: Check
    ) -> None:
        class Handler(_OpsHandler):
            pass

        Handler.metrics = staticmethod(metrics)
        Handler.healthy = staticmethod(healthy)
        Handler.ready = staticmethod(ready)
        self._server = BoundedHTTPServer(
            (host, port), Handler, ServerLimits(workers=2, max_connections=256, max_streams=1)
        )
        self._thread = threading.Thread(target=self._server.serve_forever, name="ops", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> OpsServer:
        self._thread.start()
        log.info(
            "operations port on %s:%d (/metrics, /healthz, /readyz)",
            *self._server.server_address[:2],
        )
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
