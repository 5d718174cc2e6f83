"""The HTTP API: bakes, verdict polling, gates by status code, alerts (JSON and SSE), health.

A stdlib ``ThreadingHTTPServer`` in a thread; handlers only read immutable snapshots published by
the followers (registry, verdicts, alerts), so a slow client never blocks the roles. Shapes
follow INTEGRATIONS.md: ``GET /v1/bakes/{id}`` is always 200 while the monitor is healthy
(``status`` is a capitalised string), the gates answer 200 or 409 (Flagger does not retry 409),
and every error is JSON with a message, never a stack trace. What each route does lives in
:mod:`.actions`; this module is the server and the routing.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hmac
import logging
import threading
import time
from dataclasses import replace
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson

from monitor.surfaces import console_http
from monitor.surfaces.actions import ApiActions, ApiSettings, HttpError, alert_matches
from monitor.surfaces.httpserver import PROMETHEUS_TEXT, BoundedHTTPServer, JsonHandler
from monitor.surfaces.openapi import OPENAPI
from monitor.surfaces.sse import last_event_id, open_stream

__all__ = ["Api", "ApiSettings", "HttpError"]

log = logging.getLogger("bakemon.api")


class Api(ApiActions):
    """The API's actions served over HTTP."""

    _server: BoundedHTTPServer | None = None
    _thread: threading.Thread | None = None

    def start(self) -> Api:
        api = self
        self._stopping = threading.Event()

        class Handler(_Handler):
            pass

        Handler.api = api
        self._server = BoundedHTTPServer(
            (self.settings.host, self.settings.port),
            Handler,
            replace(self.settings.limits, max_body_bytes=self.settings.max_body_bytes),
            is_stream=_is_stream,
        )
        self._thread = threading.Thread(target=self._server.serve_forever, name="api", daemon=True)
        self._thread.start()
        log.info("API listening on http://%s:%d", self.settings.host, self.port)
        return self

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.server_address[1])

    @property
    def stopping(self) -> bool:
        return self._server is None or self._stopping.is_set()

    def stop(self) -> None:
        if self._server is not None:
            self._stopping.set()
            self._server.shutdown()
            self._server.server_close()


def _is_stream(request_line: bytes) -> bool:
    """The long-lived requests (SSE), which run on their own capped threads."""
    parts = request_line.split(b" ")
    return len(parts) >= 2 and parts[1].split(b"?", 1)[0].rstrip(b"/") in _STREAMS


_STREAMS = (b"/v1/alerts/stream", b"/v1/bakes/stream")


def _require(method: str, *allowed: str) -> None:
    if method not in allowed:
        msg = f"method {method} not allowed here; use {', '.join(allowed)}"
        raise HttpError(405, msg)


def _presented_token(header: str) -> bytes | None:
    """The token an ``Authorization`` header presents: ``Bearer <token>``, or ``Basic`` with the
    token as the password (any user name). Tools that cannot set headers, such as Flagger's
    webhooks, send Basic credentials from a URL's user info (``http://bake:<token>@host/…``)."""
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip().encode()
    if scheme.lower() == "basic" and value.strip():
        try:
            decoded = base64.b64decode(value.strip(), validate=True)
        except (binascii.Error, ValueError):
            return None
        _user, colon, password = decoded.partition(b":")
        return password if colon else None
    return None


class _Handler(JsonHandler):
    api: Api

    def _error(self, status: int, message: str, body: dict[str, Any] | None = None) -> None:
        if status in (401, 403, 411):  # a body we did not read must not parse as a next request
            self.close_connection = True
        payload = {"error": message, "status": status}
        if body:
            payload = {"reason": message, **body}
        self._send(status, payload)

    def _auth(self, mutating: bool) -> None:
        token = self.api.settings.token
        if not token or not (mutating or self.api.settings.protect_reads):
            return
        given = _presented_token(self.headers.get("Authorization", ""))
        if given is None:
            msg = (
                "missing bearer token (Authorization: Bearer <token>, or Basic with the token as "
                "the password)"
            )
            raise HttpError(401, msg)
        if not hmac.compare_digest(given, token.encode()):
            msg = "invalid token"
            raise HttpError(403, msg)

    def _length(self) -> int | None:
        text = self.headers.get("Content-Length")
        if text is None:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                msg = "chunked bodies are not accepted; send Content-Length"
                raise HttpError(411, msg)
            return None
        try:
            length = int(text)
        except ValueError:
            length = -1
        limit = self.api.settings.max_body_bytes
        if length < 0 or length > limit:
            self.close_connection = True
            if length < 0:
                msg = "invalid Content-Length"
                raise HttpError(400, msg)
            msg = f"request body of {length} bytes exceeds the limit of {limit}"
            raise HttpError(413, msg)
        return length

    def _body(self) -> Any:
        length = self._length()
        if length is None:
            return None
        raw = self.rfile.read(length) if length else b""
        if not raw.strip():
            return None
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            msg = f"malformed JSON: {exc}"
            raise HttpError(400, msg) from None

    def _dispatch(self, method: str) -> None:
        try:
            url = urlsplit(self.path)
            parts = [p for p in url.path.split("/") if p]
            query = {k: v[-1] for k, v in parse_qs(url.query).items()}
            self._route(method, parts, query)
        except HttpError as exc:
            self._error(exc.status, exc.message, exc.body)
        except (BrokenPipeError, ConnectionResetError):
            pass
        except Exception:
            log.exception("internal error on %s %s", method, self.path)
            with contextlib.suppress(OSError):
                self._error(500, "internal error (logged by bakemon)")

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    # -- routes ------------------------------------------------------------------------------
    def _no_route(self) -> HttpError:
        msg = f"no route for {self.path}"
        return HttpError(404, msg)

    def _route(self, method: str, parts: list[str], query: dict[str, str]) -> None:
        api = self.api
        if parts in (["healthz"], ["readyz"]):
            ok, why = (api.healthy if parts == ["healthz"] else api.ready)()
            detail = {"status": "ok" if ok else "unavailable", "detail": why}
            return self._send(200 if ok else 503, detail)
        if parts == ["metrics"]:
            self._auth(False)
            if api.metrics is None:
                msg = "metrics are not enabled"
                raise HttpError(404, msg)
            return self._send(200, api.metrics(), content_type=PROMETHEUS_TEXT)
        if parts == ["openapi.json"]:
            return self._send(200, OPENAPI)
        if console_http.is_console(parts):  # the web console: monitor/surfaces/console/
            _require(method, "GET")
            if console_http.needs_read_auth(parts):
                self._auth(False)
            return console_http.serve_console(self, api, parts)
        if not parts or parts[0] != "v1":
            raise self._no_route()
        ready, why = api.ready()
        if not ready:
            msg = f"monitor not ready: {why}"
            raise HttpError(503, msg)
        rest = parts[1:]
        if rest and rest[0] == "bakes":
            return self._bakes(method, rest[1:], query)
        if len(rest) in (2, 3) and rest[0] == "gate" and rest[1] in ("promote", "rollback"):
            _require(method, "GET", "POST")
            self._auth(False)
            body = self._body() if method == "POST" else None
            bake_id = api.find_for_gate(rest[2] if len(rest) == 3 else None, body)
            return self._send(*api.gate("promote" if rest[1] == "promote" else "rollback", bake_id))
        if rest not in (["verdict"], ["alerts"], ["alerts", "stream"]):
            raise self._no_route()
        _require(method, "GET")
        self._auth(False)
        if rest == ["verdict"]:
            return self._send(200, api.verdict_for(query.get("service"), query.get("version")))
        if rest == ["alerts"]:
            return self._send(200, api.recent_alerts(query))
        return self._sse(query)

    def _bakes(self, method: str, rest: list[str], query: dict[str, str]) -> None:
        """``/v1/bakes`` and ``/v1/bakes/{id}[/timeline|/override|/cancel]``."""
        api = self.api
        if not rest:
            if method == "POST":
                self._auth(True)
                return self._send(*api.create(self._body()))
            _require(method, "GET")
            self._auth(False)
            docs = api.all_documents()
            if "service" in query:
                docs = [d for d in docs if d.get("service") == query["service"]]
            if "status" in query:
                docs = [d for d in docs if d.get("status") == query["status"].upper()]
            return self._send(200, {"bakes": docs, "count": len(docs)})
        if rest == ["stream"]:  # the console's live updates
            _require(method, "GET")
            self._auth(False)
            return console_http.stream_documents(self, api, query, lambda: api.stopping)
        if len(rest) == 1 or rest[1:] == ["timeline"]:  # the document, or its evidence over time
            _require(method, "GET")
            self._auth(False)
            found = api.document(rest[0]) if len(rest) == 1 else api.timeline(rest[0])
            if found is None:
                msg = f'bake "{rest[0]}" is not registered'
                raise HttpError(404, msg)
            return self._send(200, found)
        if len(rest) == 2 and rest[1] in ("override", "cancel"):
            _require(method, "POST")
            self._auth(True)
            if rest[1] == "override":
                return self._send(202, api.override(rest[0], self._body()))
            return self._send(200, api.cancel(rest[0]))
        raise self._no_route()

    def _sse(self, query: dict[str, str]) -> None:
        last_id = last_event_id(self, query)
        open_stream(self, b"bakemon alert stream")
        if last_id is None and query.get("replay") != "all":
            known = self.api.alerts.alerts()
            last_id = known[-1].id if known else -1
        self._stream_alerts(last_id, query)

    def _stream_alerts(self, last_id: int | None, query: dict[str, str]) -> None:
        api = self.api
        keepalive_s = api.settings.sse_keepalive_s
        keepalive_at = time.monotonic() + keepalive_s
        while not api.stopping:
            for a in api.alerts.after(last_id):
                last_id = a.id
                if not alert_matches(a.alert, query):
                    continue
                data = orjson.dumps(a.alert)
                self.wfile.write(b"id: %d\nevent: alert\ndata: %s\n\n" % (a.id, data))
            self.wfile.flush()
            if time.monotonic() >= keepalive_at:
                self.wfile.write(b": keepalive\n\n")
                self.wfile.flush()
                keepalive_at = time.monotonic() + keepalive_s
            api.alerts.wait(min(1.0, keepalive_s))
