"""The operations port every process serves, whatever its roles: ``/metrics``, ``/healthz``,
``/readyz`` (issue 10, "every role observable"). An ingest-only or judge-only process has no API,
but its reject counters, lag and health must still be scrapeable and probeable.

It runs on the same bounded server as the API (:mod:`.httpserver`), with a small worker pool.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from monitor.surfaces.httpserver import (
    PROMETHEUS_TEXT,
    BoundedHTTPServer,
    JsonHandler,
    ServerLimits,
)

__all__ = ["OpsServer"]

log = logging.getLogger("bakemon.ops")

Check = Callable[[], tuple[bool, str]]


class _OpsHandler(JsonHandler):
    methods = "GET or HEAD"
    metrics: Callable[[], bytes]
    healthy: Check
    ready: Check

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0].rstrip("/")
        if path == "/metrics":
            return self._send(200, type(self).metrics(), content_type=PROMETHEUS_TEXT)
        if path in ("/healthz", "/readyz"):
            ok, why = (type(self).healthy if path == "/healthz" else type(self).ready)()
            body = {"status": "ok" if ok else "unavailable", "detail": why}
            return self._send(200 if ok else 503, body)
        msg = f"no route for {self.path} on the operations port (try /metrics, /healthz, /readyz)"
        return self._send(404, {"error": msg, "status": 404})

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
