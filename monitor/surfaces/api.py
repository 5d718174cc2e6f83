"""The HTTP API: bakes, verdict polling, gates by status code, alerts (JSON and SSE), health.

A stdlib ``ThreadingHTTPServer`` in a thread; handlers only read immutable snapshots published by
the followers (registry, verdicts, alerts), so a slow client never blocks the roles. Shapes
follow INTEGRATIONS.md: ``GET /v1/bakes/{id}`` is always 200 while the monitor is healthy
(``status`` is a capitalised string), the gates answer 200 or 409 (Flagger does not retry 409),
and every error is JSON with a message, never a stack trace.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson

from monitor.bakes.spec import BakeSpec
from monitor.bakes.store import BakeFollower, publish_bake
from monitor.errors import ConfigError
from monitor.kafka.io import Sink
from monitor.kafka.topics import TopicLayout
from monitor.surfaces.views import AlertLog, VerdictView
from monitor.verdict.engine import BakeVerdict, Status, iso

__all__ = ["Api", "ApiSettings"]

log = logging.getLogger("bakemon.api")

SSE_KEEPALIVE_S = 15.0


@dataclass(frozen=True)
class ApiSettings:
    host: str = "0.0.0.0"
    port: int = 8080
    token: str | None = None
    protect_reads: bool = False
    max_body_bytes: int = 64 * 1024
    stale_after_s: float = 120.0
    base_url: str = ""
    sse_keepalive_s: float = SSE_KEEPALIVE_S


class HttpError(Exception):
    def __init__(self, status: int, message: str, *, body: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.body = body


def _effective(doc: Mapping[str, Any]) -> str:
    """PROMOTE/HALT including INCONCLUSIVE resolved by policy; else the status."""
    status = str(doc.get("status"))
    if status == "INCONCLUSIVE" and doc.get("resolution"):
        return str(doc["resolution"])
    return status


class Api:
    """Routes and state of the HTTP surface."""

    def __init__(
        self,
        settings: ApiSettings,
        *,
        follower: BakeFollower,
        view: VerdictView,
        alerts: AlertLog,
        sink: Sink,
        layout: TopicLayout,
        metrics: Callable[[], bytes] | None = None,
        healthy: Callable[[], tuple[bool, str]] = lambda: (True, "ok"),
        ready: Callable[[], tuple[bool, str]] = lambda: (True, "ok"),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.follower = follower
        self.view = view
        self.alerts = alerts
        self.sink = sink
        self.layout = layout
        self.metrics = metrics
        self.healthy = healthy
        self.ready = ready
        self.clock = clock
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._publish_lock = threading.Lock()

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> Api:
        api = self

        class Handler(_Handler):
            pass

        Handler.api = api
        self._server = ThreadingHTTPServer((self.settings.host, self.settings.port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="api", daemon=True)
        self._thread.start()
        log.info("API listening on http://%s:%d", self.settings.host, self.port)
        return self

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.server_address[1])

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    # -- documents ---------------------------------------------------------------------------
    def document(self, bake_id: str) -> dict[str, Any] | None:
        """The verdict document of a bake (a PENDING one before any data), or None if unknown."""
        docs, arrived = self.view.documents()
        registry = self.follower.registry()
        doc = docs.get(bake_id)
        if doc is None and bake_id not in registry:
            return None
        if doc is None:
            out = self._document_without_data(registry.get(bake_id))
        else:
            age_s = self.clock() - arrived.get(bake_id, 0.0)
            out = {**doc, "stale": (not doc.get("decided")) and age_s > self.settings.stale_after_s}
        if bake_id in registry and (end := registry.get(bake_id).end_s) is not None:
            out["cancelled_at"] = iso(end)
        return out

    @staticmethod
    def _document_without_data(spec: BakeSpec) -> dict[str, Any]:
        """No partial folded yet: PENDING (or the operator's override), never good news."""
        engine = BakeVerdict(spec)
        if spec.override is not None:
            ov = spec.override
            engine.override(Status(ov["status"]), ov["by"], ov["reason"], ov["at"], source=dict(ov))
            return {**engine.document(), "stale": False}
        doc = engine.document()
        doc["reasons"] = ["no traffic observed for this bake yet", *doc["reasons"][:1]]
        return {**doc, "stale": False}

    def all_documents(self) -> list[dict[str, Any]]:
        registry = self.follower.registry()
        docs, _ = self.view.documents()
        ids = sorted({*docs, *(b.id for b in registry.bakes)})
        return [d for i in ids if (d := self.document(i)) is not None]

    # -- mutations ---------------------------------------------------------------------------
    def create(self, body: Any) -> tuple[int, dict[str, Any]]:
        if not isinstance(body, dict):
            raise HttpError(400, "request body must be a JSON object")
        data = _from_flagger(body) if _is_flagger(body) else dict(body)
        now = self.clock()
        if (
            "id" not in data
            and isinstance(data.get("service"), str)
            and isinstance(data.get("canary"), str)
        ):
            data["id"] = f"{data['service']}-{data['canary']}"
        data.setdefault("start", now)
        data.setdefault("created_at", iso(now))
        try:
            spec = BakeSpec.from_dict(data)
        except ConfigError as exc:
            raise HttpError(400, str(exc)) from None
        with self._publish_lock:
            registry = self.follower.registry()
            if spec.id in registry:
                existing = registry.get(spec.id)
                same = (
                    existing.service,
                    existing.canary_versions,
                    existing.baseline_versions,
                    existing.policy,
                ) == (spec.service, spec.canary_versions, spec.baseline_versions, spec.policy)
                if same:
                    return 200, self.document(spec.id) or {}
                raise HttpError(409, f'bake "{spec.id}" already exists with a different spec')
            publish_bake(self.sink, self.layout, spec)
            self.sink.flush(10.0)
            self.follower.wait_for(spec.id, 10.0)
        return 201, self.document(spec.id) or BakeVerdict(spec).document()

    def cancel(self, bake_id: str) -> dict[str, Any]:
        registry = self.follower.registry()
        if bake_id not in registry:
            raise HttpError(404, f'bake "{bake_id}" is not registered')
        spec = registry.get(bake_id)
        if spec.end_s is None:
            end = max(self.clock(), spec.start_s)
            d = spec.to_dict()
            d["end"] = end
            with self._publish_lock:
                publish_bake(self.sink, self.layout, BakeSpec.from_dict(d))
                self.sink.flush(10.0)
            deadline = time.monotonic() + 10.0
            while (
                self.follower.registry().get(bake_id).end_s is None and time.monotonic() < deadline
            ):
                time.sleep(0.05)
        return self.document(bake_id) or {}

    def override(self, bake_id: str, body: Any) -> dict[str, Any]:
        registry = self.follower.registry()
        if bake_id not in registry:
            raise HttpError(404, f'bake "{bake_id}" is not registered')
        if not isinstance(body, dict):
            raise HttpError(400, 'override body must be {"status", "by", "reason"}')
        unknown = sorted(set(body) - {"status", "by", "reason"})
        if unknown:
            raise HttpError(400, f"unknown override field(s) {unknown}; valid: by, reason, status")
        d = registry.get(bake_id).to_dict()
        d["override"] = {**body, "at": self.clock()}
        try:
            spec = BakeSpec.from_dict(d)
        except ConfigError as exc:
            raise HttpError(400, str(exc)) from None
        with self._publish_lock:
            publish_bake(self.sink, self.layout, spec)
            self.sink.flush(10.0)
        log.warning(
            'override of bake "%s" to %s by %s: %s',
            bake_id,
            body.get("status"),
            body.get("by"),
            body.get("reason"),
        )
        return {"accepted": True, "override": spec.override, "bake": bake_id}

    def find_for_gate(self, bake_id: str | None, body: Any) -> str:
        """The bake a gate call is about: path, Flagger ``metadata.bake``, or name+namespace."""
        registry = self.follower.registry()
        if bake_id:
            return bake_id
        if not isinstance(body, dict):
            raise HttpError(400, "gate needs a bake id in the path or a Flagger JSON payload")
        meta: dict[str, Any] = body["metadata"] if isinstance(body.get("metadata"), dict) else {}
        if isinstance(meta.get("bake"), str):
            return str(meta["bake"])
        name, ns = body.get("name"), body.get("namespace")
        if not isinstance(name, str):
            raise HttpError(400, 'Flagger payload needs "name" (or metadata.bake)')
        checksum = str(body.get("checksum") or "")[:10]
        exact = (
            _SAFE_ID.sub("-", f"{ns}-{name}-{checksum}")[:128]
            if checksum and isinstance(ns, str)
            else None
        )
        for candidate in (exact, f"{ns}-{name}" if isinstance(ns, str) else None, name):
            if candidate and candidate in registry:
                return candidate
        by_service = [b for b in registry.bakes if b.service == name]
        if by_service:
            return max(by_service, key=lambda b: b.start_s).id
        raise HttpError(404, f'no bake for Flagger canary "{ns}/{name}"')


class _Handler(BaseHTTPRequestHandler):
    api: Api
    server_version = "bakemon"
    sys_version = ""
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), fmt % args)

    # -- plumbing ----------------------------------------------------------------------------
    def _send(self, status: int, body: Any, *, content_type: str = "application/json") -> None:
        data = body if isinstance(body, bytes) else orjson.dumps(body)
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

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
        header = self.headers.get("Authorization", "")
        if not header.startswith("Bearer "):
            raise HttpError(401, "missing bearer token (Authorization: Bearer <token>)")
        if not hmac.compare_digest(header[7:].strip().encode(), token.encode()):
            raise HttpError(403, "invalid token")

    def _body(self) -> Any:
        length_text = self.headers.get("Content-Length")
        if length_text is None:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                raise HttpError(411, "chunked bodies are not accepted; send Content-Length")
            return None
        try:
            length = int(length_text)
        except ValueError:
            length = -1
        if length < 0:
            self.close_connection = True
            raise HttpError(400, "invalid Content-Length")
        if length > self.api.settings.max_body_bytes:
            self.close_connection = True
            raise HttpError(
                413,
                f"request body of {length} bytes exceeds the limit of {self.api.settings.max_body_bytes}",
            )
        raw = self.rfile.read(length) if length else b""
        if not raw.strip():
            return None
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise HttpError(400, f"malformed JSON: {exc}") from None

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
    def _route(self, method: str, parts: list[str], query: dict[str, str]) -> None:
        api = self.api
        if parts == ["healthz"] or parts == ["readyz"]:
            ok, why = (api.healthy if parts == ["healthz"] else api.ready)()
            return self._send(
                200 if ok else 503, {"status": "ok" if ok else "unavailable", "detail": why}
            )
        if parts == ["metrics"]:
            self._auth(False)
            if api.metrics is None:
                raise HttpError(404, "metrics are not enabled")
            return self._send(
                200, api.metrics(), content_type="text/plain; version=0.0.4; charset=utf-8"
            )
        if parts == ["openapi.json"]:
            from monitor.surfaces.openapi import OPENAPI

            return self._send(200, OPENAPI)
        if not parts or parts[0] != "v1":
            raise HttpError(404, f"no route for {self.path}")
        ready, why = api.ready()
        if not ready:
            raise HttpError(503, f"monitor not ready: {why}")
        rest = parts[1:]
        if rest == ["bakes"]:
            if method == "POST":
                self._auth(True)
                status, doc = api.create(self._body())
                return self._send(status, doc)
            self._require(method, "GET")
            self._auth(False)
            docs = api.all_documents()
            if "service" in query:
                docs = [d for d in docs if d.get("service") == query["service"]]
            if "status" in query:
                docs = [d for d in docs if d.get("status") == query["status"].upper()]
            return self._send(200, {"bakes": docs, "count": len(docs)})
        if len(rest) == 2 and rest[0] == "bakes":
            self._require(method, "GET")
            self._auth(False)
            found = api.document(rest[1])
            if found is None:
                raise HttpError(404, f'bake "{rest[1]}" is not registered')
            return self._send(200, found)
        if len(rest) == 3 and rest[0] == "bakes" and rest[2] == "override":
            self._require(method, "POST")
            self._auth(True)
            return self._send(202, api.override(rest[1], self._body()))
        if len(rest) == 3 and rest[0] == "bakes" and rest[2] == "cancel":
            self._require(method, "POST")
            self._auth(True)
            return self._send(200, api.cancel(rest[1]))
        if rest == ["verdict"]:
            self._require(method, "GET")
            self._auth(False)
            return self._verdict(query)
        if len(rest) in (2, 3) and rest[0] == "gate" and rest[1] in ("promote", "rollback"):
            self._require(method, "GET", "POST")
            self._auth(False)
            body = self._body() if method == "POST" else None
            return self._gate(rest[1], api.find_for_gate(rest[2] if len(rest) == 3 else None, body))
        if rest == ["alerts"]:
            self._require(method, "GET")
            self._auth(False)
            items = [a for a in api.alerts.alerts() if _alert_matches(a.alert, query)]
            limit = int(query.get("limit", "100")) if query.get("limit", "100").isdigit() else 100
            return self._send(200, {"alerts": [{"id": a.id, **a.alert} for a in items[-limit:]]})
        if rest == ["alerts", "stream"]:
            self._require(method, "GET")
            self._auth(False)
            return self._sse(query)
        raise HttpError(404, f"no route for {self.path}")

    def _require(self, method: str, *allowed: str) -> None:
        if method not in allowed:
            raise HttpError(405, f"method {method} not allowed here; use {', '.join(allowed)}")

    def _verdict(self, query: dict[str, str]) -> None:
        service, version = query.get("service"), query.get("version")
        if not service or not version:
            raise HttpError(400, 'query parameters "service" and "version" are required')
        registry = self.api.follower.registry()
        matches = [
            b for b in registry.bakes if b.service == service and version in b.canary_versions
        ]
        if not matches:
            raise HttpError(404, f'no bake for service "{service}" version "{version}"')
        self._send(200, self.api.document(max(matches, key=lambda b: b.start_s).id))

    def _gate(self, which: str, bake_id: str) -> None:
        doc = self.api.document(bake_id)
        if doc is None:
            raise HttpError(404, f'bake "{bake_id}" is not registered')
        effective = _effective(doc)
        want = "PROMOTE" if which == "promote" else "HALT"
        if effective == want:
            return self._send(200, {"reason": f"{want}: {doc['reasons'][0]}", **doc})
        short = (
            f"{doc['status']}: {doc['reasons'][0]}" if doc.get("reasons") else str(doc["status"])
        )
        raise HttpError(409, short, body=doc)

    def _sse(self, query: dict[str, str]) -> None:
        last = self.headers.get("Last-Event-ID") or query.get("last_event_id")
        try:
            last_id = int(last) if last not in (None, "") else None
        except ValueError:
            raise HttpError(400, f"Last-Event-ID must be an integer, got {last!r}") from None
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-store")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        api = self.api
        if last_id is None and query.get("replay") != "all":
            known = api.alerts.alerts()
            last_id = known[-1].id if known else -1
        keepalive_at = time.monotonic() + api.settings.sse_keepalive_s
        self.wfile.write(b": bakemon alert stream\n\n")
        self.wfile.flush()
        while not api._stopping.is_set():
            for a in api.alerts.after(last_id):
                last_id = a.id
                if not _alert_matches(a.alert, query):
                    continue
                data = orjson.dumps(a.alert)
                self.wfile.write(b"id: %d\nevent: alert\ndata: %s\n\n" % (a.id, data))
            self.wfile.flush()
            if time.monotonic() >= keepalive_at:
                self.wfile.write(b": keepalive\n\n")
                self.wfile.flush()
                keepalive_at = time.monotonic() + api.settings.sse_keepalive_s
            api.alerts.wait(min(1.0, api.settings.sse_keepalive_s))


_SAFE_ID = re.compile(r"[^A-Za-z0-9._-]+")
_FLAGGER_KEYS = {"name", "namespace", "phase", "checksum", "metadata"}


def _is_flagger(body: Mapping[str, Any]) -> bool:
    return "phase" in body and "name" in body and set(body) <= _FLAGGER_KEYS


def _from_flagger(body: Mapping[str, Any]) -> dict[str, Any]:
    """A bake spec from Flagger's pre-rollout webhook: the canary workload is ``<name>``, the
    primary ``<name>-primary`` (Flagger's naming), unless ``metadata`` says otherwise; metadata
    values are strings, so ``policy`` is JSON text."""
    meta: dict[str, Any] = body["metadata"] if isinstance(body.get("metadata"), dict) else {}
    name, ns = str(body["name"]), str(body.get("namespace") or "default")
    # One bake per rollout: the checksum names the revision, so a later rollout never reuses an
    # earlier (sticky) verdict.
    checksum = str(body.get("checksum") or "")[:10]
    default_id = f"{ns}-{name}-{checksum}" if checksum else f"{ns}-{name}"
    spec: dict[str, Any] = {
        "id": meta.get("bake") or _SAFE_ID.sub("-", default_id)[:128],
        "service": meta.get("service") or name,
        "canary": meta.get("canary") or name,
        "baseline": meta.get("baseline") or f"{name}-primary",
    }
    if meta.get("policy"):
        try:
            spec["policy"] = orjson.loads(meta["policy"])
        except orjson.JSONDecodeError as exc:
            raise HttpError(400, f"Flagger metadata.policy is not JSON: {exc}") from None
    return spec


def _alert_matches(alert: Mapping[str, Any], query: Mapping[str, str]) -> bool:
    labels = alert.get("labels", {})
    if "bake" in query and labels.get("bake") != query["bake"]:
        return False
    return not ("severity" in query and labels.get("severity") != query["severity"])
