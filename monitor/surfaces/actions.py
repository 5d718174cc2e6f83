"""What the HTTP API can do, apart from HTTP: read documents, create, cancel, override, gate.

:class:`ApiActions` holds the API's collaborators (bake registry follower, verdict view, alert
log, sink) and answers in plain values or by raising :class:`HttpError`; :mod:`.api` routes
requests to it. Documents come from the verdict package — the no-data document too — and the
gates' status codes from its one interpretation (:func:`monitor.verdict.interpret`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from monitor.bakes.spec import BakeSpec, default_bake_id, safe_bake_id
from monitor.bakes.store import BakeFollower, publish_bake
from monitor.errors import ConfigError, MonitorError
from monitor.kafka.io import Sink
from monitor.kafka.topics import TopicLayout
from monitor.surfaces.httpserver import ServerLimits
from monitor.surfaces.timelines import TimelineView
from monitor.surfaces.views import AlertLog, VerdictView
from monitor.verdict import Gate, document_without_data, interpret, iso
from monitor.verdict.document import GATE_BROKEN
from monitor.verdict.timeline import MAX_POINTS

__all__ = ["ApiActions", "ApiSettings", "HttpError", "alert_matches"]

log = logging.getLogger("bakemon.api")

SSE_KEEPALIVE_S = 15.0
PUBLISH_WAIT_S = 10.0  # how long a mutation waits for its own write to come back


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
    limits: ServerLimits = field(default_factory=ServerLimits)
    max_active_bakes: int = 1000


class HttpError(MonitorError):
    """An answer other than success: the HTTP status, a message, optionally a JSON body."""

    def __init__(self, status: int, message: str, *, body: dict[str, Any] | None = None) -> None:
        super().__init__(message, value=status)
        self.status = status
        self.message = message
        self.body = body


def _not_registered(bake_id: str) -> HttpError:
    msg = f'bake "{bake_id}" is not registered'
    return HttpError(404, msg)


class ApiActions:
    """The API's state and operations, independent of the HTTP server."""

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
        timelines: TimelineView | None = None,
    ) -> None:
        self.settings = settings
        self.timelines = timelines
        self.follower = follower
        self.view = view
        self.alerts = alerts
        self.sink = sink
        self.layout = layout
        self.metrics = metrics
        self.healthy = healthy
        self.ready = ready
        self.clock = clock
        self._publish_lock = threading.Lock()

    # -- documents ---------------------------------------------------------------------------
    def document(self, bake_id: str) -> dict[str, Any] | None:
        """The verdict document of a bake (a PENDING one before any data), or None if unknown."""
        docs, arrived = self.view.documents()
        registry = self.follower.registry()
        doc = docs.get(bake_id)
        if doc is None and bake_id not in registry:
            return None
        if doc is None:
            out = document_without_data(registry.get(bake_id))
        else:
            age_s = self.clock() - arrived.get(bake_id, 0.0)
            retired = bool(doc.get("retired_at"))
            stale = not retired and not interpret(doc).final and age_s > self.settings.stale_after_s
            out = {**doc, "stale": stale}
        if bake_id in registry and (end := registry.get(bake_id).end_s) is not None:
            out["cancelled_at"] = iso(end)
        return out

    def timeline(self, bake_id: str) -> dict[str, Any] | None:
        """The bake's evidence over time (no points before its first closed window), or None
        if the bake is unknown."""
        found = None if self.timelines is None else self.timelines.timeline(bake_id)
        if found is not None:
            return found
        if bake_id not in self.follower.registry() and bake_id not in self.view.documents()[0]:
            return None
        return {"id": bake_id, "max_points": MAX_POINTS, "points": []}

    def active_bakes(self) -> int:
        """Registered bakes neither cancelled nor decided (what ``max_active_bakes`` caps)."""
        docs, _ = self.view.documents()
        n = 0
        for b in self.follower.registry().bakes:
            doc = docs.get(b.id)
            if b.end_s is None and (doc is None or not interpret(doc).final):
                n += 1
        return n

    def all_documents(self) -> list[dict[str, Any]]:
        registry = self.follower.registry()
        docs, _ = self.view.documents()
        ids = sorted({*docs, *(b.id for b in registry.bakes)})
        return [d for i in ids if (d := self.document(i)) is not None]

    def verdict_for(self, service: str | None, version: str | None) -> dict[str, Any]:
        """The document of the latest bake whose canary is ``version`` of ``service``."""
        if not service or not version:
            msg = 'query parameters "service" and "version" are required'
            raise HttpError(400, msg)
        registry = self.follower.registry()
        matches = [
            b for b in registry.bakes if b.service == service and version in b.canary_versions
        ]
        if not matches:
            msg = f'no bake for service "{service}" version "{version}"'
            raise HttpError(404, msg)
        return self.document(max(matches, key=lambda b: b.start_s).id) or {}

    def gate(self, which: Gate, bake_id: str) -> tuple[int, dict[str, Any]]:
        """The promote or rollback gate: 200 to let it through, 409 to hold, 503 if unreadable."""
        doc = self.document(bake_id)
        if doc is None:
            raise _not_registered(bake_id)
        code, reason = interpret(doc).gate(which)
        if code == GATE_BROKEN:
            raise HttpError(code, reason)
        return code, {"reason": reason, **doc}

    def recent_alerts(self, query: Mapping[str, str]) -> dict[str, Any]:
        items = [a for a in self.alerts.alerts() if alert_matches(a.alert, query)]
        text = query.get("limit", "100")
        limit = int(text) if text.isdigit() else 100
        return {"alerts": [{"id": a.id, **a.alert} for a in items[-limit:]]}

    # -- mutations ---------------------------------------------------------------------------
    def create(self, body: Any) -> tuple[int, dict[str, Any]]:
        if not isinstance(body, dict):
            msg = "request body must be a JSON object"
            raise HttpError(400, msg)
        data = _from_flagger(body) if _is_flagger(body) else dict(body)
        now = self.clock()
        if (
            "id" not in data
            and isinstance(data.get("service"), str)
            and isinstance(data.get("canary"), str)
        ):
            data["id"] = default_bake_id(data["service"], data["canary"])
        data.setdefault("start", now)
        data.setdefault("created_at", iso(now))
        spec = _spec_from(data)
        with self._publish_lock:
            registry = self.follower.registry()
            if spec.id in registry:
                existing = registry.get(spec.id)
                if _same_bake(existing, spec):
                    return 200, self.document(spec.id) or {}
                msg = f'bake "{spec.id}" already exists with a different spec'
                raise HttpError(409, msg)
            active, cap = self.active_bakes(), self.settings.max_active_bakes
            if active >= cap:
                msg = (
                    f"{active:,} bakes are active, the most max_active_bakes allows ({cap:,}); "
                    "cancel bakes that are not needed, or wait for decisions"
                )
                raise HttpError(429, msg)
            publish_bake(self.sink, self.layout, spec)
            self.sink.flush(PUBLISH_WAIT_S)
            self.follower.wait_for(spec.id, PUBLISH_WAIT_S)
        return 201, self.document(spec.id) or document_without_data(spec)

    def cancel(self, bake_id: str) -> dict[str, Any]:
        registry = self.follower.registry()
        if bake_id not in registry:
            raise _not_registered(bake_id)
        spec = registry.get(bake_id)
        if spec.end_s is None:
            d = spec.to_dict()
            d["end"] = max(self.clock(), spec.start_s)
            with self._publish_lock:
                publish_bake(self.sink, self.layout, BakeSpec.from_dict(d))
                self.sink.flush(PUBLISH_WAIT_S)
            deadline = time.monotonic() + PUBLISH_WAIT_S
            while (
                self.follower.registry().get(bake_id).end_s is None and time.monotonic() < deadline
            ):
                time.sleep(0.05)
        return self.document(bake_id) or {}

    def override(self, bake_id: str, body: Any) -> dict[str, Any]:
        """Record an operator override in the bake's spec; the judge's engine applies it."""
        registry = self.follower.registry()
        if bake_id not in registry:
            raise _not_registered(bake_id)
        if not isinstance(body, dict):
            msg = 'override body must be {"status", "by", "reason"}'
            raise HttpError(400, msg)
        unknown = sorted(set(body) - {"status", "by", "reason"})
        if unknown:
            msg = f"unknown override field(s) {unknown}; valid: by, reason, status"
            raise HttpError(400, msg)
        d = registry.get(bake_id).to_dict()
        d["override"] = {**body, "at": self.clock()}
        spec = _spec_from(d)
        with self._publish_lock:
            publish_bake(self.sink, self.layout, spec)
            self.sink.flush(PUBLISH_WAIT_S)
        log.warning(
            'override of bake "%s" to %s by %s: %s',
            bake_id,
            body.get("status"),
            body.get("by"),
            body.get("reason"),
        )
        return {"accepted": True, "override": spec.override, "bake": bake_id}

    def find_for_gate(self, bake_id: str | None, body: Any) -> str:
        """The bake a gate call is about: the path, Flagger's ``metadata.bake``, or the revision
        the payload's name, namespace and checksum name: its bake ``<ns>-<name>-<checksum>``,
        or 404 (Flagger calls the rollback hook before pre-rollout creates the new bake) — never
        a previous revision's bake. A payload without a checksum is a 400 (``_checksum``)."""
        registry = self.follower.registry()
        if bake_id:
            return bake_id
        if not isinstance(body, dict):
            msg = "gate needs a bake id in the path or a Flagger JSON payload"
            raise HttpError(400, msg)
        meta: dict[str, Any] = body["metadata"] if isinstance(body.get("metadata"), dict) else {}
        if isinstance(meta.get("bake"), str):
            return str(meta["bake"])
        name, ns = body.get("name"), body.get("namespace")
        if not isinstance(name, str):
            msg = 'Flagger payload needs "name" (or metadata.bake)'
            raise HttpError(400, msg)
        ns = ns if isinstance(ns, str) and ns else "default"
        exact = safe_bake_id(f"{ns}-{name}-{_checksum(body)}")
        # this revision's bake or none: never a previous revision's
        if exact in registry:
            return exact
        msg = f'no bake for revision {_checksum(body)} of Flagger canary "{ns}/{name}" yet'
        raise HttpError(404, msg)


def _spec_from(data: Mapping[str, Any]) -> BakeSpec:
    try:
        return BakeSpec.from_dict(data)
    except ConfigError as exc:
        raise HttpError(400, str(exc)) from None


def _same_bake(a: BakeSpec, b: BakeSpec) -> bool:
    """Creating a bake again with the same selectors and policy is idempotent."""
    return (a.service, a.canary_versions, a.baseline_versions, a.policy) == (
        b.service,
        b.canary_versions,
        b.baseline_versions,
        b.policy,
    )


_FLAGGER_KEYS = {"name", "namespace", "phase", "checksum", "metadata"}


def _checksum(body: Mapping[str, Any]) -> str:
    """The revision a Flagger payload is about (the first 10 characters of its checksum). Without
    one — Flagger before 1.34, or a hand-written call — two rollouts of the same canary cannot be
    told apart, and the second would be judged by the first's (sticky) verdict: refused, unless
    ``metadata.bake`` names the bake."""
    checksum = body.get("checksum")
    if isinstance(checksum, str) and checksum.strip():
        return checksum[:10]
    msg = (
        "Flagger payload has no checksum, so this rollout's bake cannot be told from an earlier "
        "rollout's: use Flagger >= 1.34 (its payloads carry the canary's checksum), or name a bake "
        "unique to this rollout in the webhook's metadata.bake"
    )
    raise HttpError(400, msg)


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
    bake = meta.get("bake") or safe_bake_id(f"{ns}-{name}-{_checksum(body)}")
    spec: dict[str, Any] = {
        "id": bake,
        "service": meta.get("service") or name,
        "canary": meta.get("canary") or name,
        "baseline": meta.get("baseline") or f"{name}-primary",
    }
    if meta.get("policy"):
        try:
            spec["policy"] = orjson.loads(meta["policy"])
        except orjson.JSONDecodeError as exc:
            msg = f"Flagger metadata.policy is not JSON: {exc}"
            raise HttpError(400, msg) from None
    return spec


def alert_matches(alert: Mapping[str, Any], query: Mapping[str, str]) -> bool:
    labels = alert.get("labels", {})
    if "bake" in query and labels.get("bake") != query["bake"]:
        return False
    return not ("severity" in query and labels.get("severity") != query["severity"])
