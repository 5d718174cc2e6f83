"""The web console over HTTP (issue 11): its files at ``/`` and ``/console/<file>``, the bake
page's HTML at ``/console/fragment/bakes/{id}``, and the document stream it follows,
``GET /v1/bakes/stream`` (server-sent events, one per changed document).

:mod:`.api` routes here; reads follow the API's token rules (the files themselves carry no
data and are always served, so the page can ask for a token). The stream runs on the server's
capped stream threads like the alert stream.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler
from typing import Any

import orjson

from monitor.surfaces.actions import ApiActions, HttpError
from monitor.surfaces.console import asset, render_bake_section
from monitor.surfaces.sse import last_event_id, open_stream

__all__ = ["CSP", "is_console", "needs_read_auth", "serve_console", "stream_documents", "summary"]

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' "
    "data:; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
STREAM_BATCH_S = 0.25  # a burst of documents goes out as one batch, each bake once
SUMMARY_DROPS = ("segments", "policy", "assumptions")


def is_console(parts: list[str]) -> bool:
    return not parts or parts[0] == "console"


def needs_read_auth(parts: list[str]) -> bool:
    """The fragment carries a bake's data; the page's files do not."""
    return parts[:2] == ["console", "fragment"]


def _send(h: BaseHTTPRequestHandler, status: int, body: bytes, content_type: str) -> None:
    h.send_response(status)
    h.send_header("Content-Type", content_type)
    h.send_header("Content-Length", str(len(body)))
    h.send_header("Cache-Control", "no-store")
    h.send_header("Content-Security-Policy", CSP)
    h.send_header("X-Content-Type-Options", "nosniff")
    h.end_headers()
    if h.command != "HEAD":
        h.wfile.write(body)


def serve_console(h: BaseHTTPRequestHandler, api: ApiActions, parts: list[str]) -> None:
    """``/`` (the page), ``/console/<file>``, ``/console/fragment/bakes/{id}``."""
    if not parts or parts == ["console"]:
        found = asset("index.html")
    elif len(parts) == 4 and parts[1:3] == ["fragment", "bakes"]:
        return _send(h, 200, _fragment(api, parts[3]).encode(), "text/html; charset=utf-8")
    else:
        found = asset(parts[1]) if len(parts) == 2 else None
    if found is None:
        msg = f"no console file {'/'.join(parts[1:])!r}"
        raise HttpError(404, msg)
    _send(h, 200, *found)


def _fragment(api: ApiActions, bake_id: str) -> str:
    ready, why = api.ready()
    if not ready:
        msg = f"monitor not ready: {why}"
        raise HttpError(503, msg)
    doc = api.document(bake_id)
    if doc is None:
        msg = f'bake "{bake_id}" is not registered'
        raise HttpError(404, msg)
    alerts = api.recent_alerts({"bake": bake_id, "limit": "50"})["alerts"]
    return render_bake_section(doc, api.timeline(bake_id), alerts)


def summary(doc: Mapping[str, Any]) -> dict[str, Any]:
    """A document without what a list does not show (segments, policy, the latency
    thresholds' detail), a fraction of its size."""
    out = {k: v for k, v in doc.items() if k not in SUMMARY_DROPS}
    metrics = doc.get("metrics")
    if isinstance(metrics, Mapping):
        out["metrics"] = {
            name: {k: v for k, v in m.items() if k != "thresholds"} if isinstance(m, Mapping) else m
            for name, m in metrics.items()
        }
    return out


def _stream_query(h: BaseHTTPRequestHandler, query: Mapping[str, str]) -> tuple[int | None, bool]:
    last_id = last_event_id(h, query)
    view = query.get("view", "full")
    if view not in ("full", "summary"):
        msg = f'view must be "full" or "summary", got {view!r}'
        raise HttpError(400, msg)
    return last_id, view == "summary"


def stream_documents(
    h: BaseHTTPRequestHandler,
    api: ApiActions,
    query: Mapping[str, str],
    stopping: Callable[[], bool],
) -> None:
    """``GET /v1/bakes/stream[?bake=ID][&view=summary]``: ``event: bake`` with a document
    each time one changes (``event: removed`` when one goes); the ``id:`` is the view's change
    number. Without ``Last-Event-ID`` it starts with every current document, so a client
    never misses a change between its first read and the stream."""
    last_id, short = _stream_query(h, query)
    open_stream(h, b"bakemon document stream")
    only = query.get("bake")
    seq, _ = api.view.changes()
    if last_id is None:
        docs = api.all_documents() if only is None else [d for d in [api.document(only)] if d]
        _write_docs(h, seq, docs, short)
        last_id = seq
    _follow(h, api, last_id, only, short, stopping)


def _write_docs(
    h: BaseHTTPRequestHandler, seq: int, docs: list[dict[str, Any]], short: bool
) -> None:
    for d in docs:
        data = orjson.dumps(summary(d) if short else d)
        h.wfile.write(b"id: %d\nevent: bake\ndata: %s\n\n" % (seq, data))
    h.wfile.flush()


def _follow(
    h: BaseHTTPRequestHandler,
    api: ApiActions,
    last_id: int,
    only: str | None,
    short: bool,
    stopping: Callable[[], bool],
) -> None:
    keepalive_s = api.settings.sse_keepalive_s
    keepalive_at = time.monotonic() + keepalive_s
    registry = api.follower.registry()
    specs = {b.id: b for b in registry.bakes}
    while not stopping():
        seq, changed = api.view.changes()
        ids = {i for i, n in changed.items() if n > last_id}
        now_registry = api.follower.registry()
        if now_registry is not registry:  # created, cancelled, overridden: no document yet
            registry, before = now_registry, specs
            specs = {b.id: b for b in registry.bakes}
            ids |= {i for i in specs.keys() | before.keys() if specs.get(i) != before.get(i)}
        for bake_id in sorted(ids):
            if only is not None and bake_id != only:
                continue
            doc = api.document(bake_id)
            if doc is None:
                data = orjson.dumps({"id": bake_id})
                h.wfile.write(b"id: %d\nevent: removed\ndata: %s\n\n" % (seq, data))
            else:
                _write_docs(h, seq, [doc], short)
        last_id = seq
        h.wfile.flush()
        if time.monotonic() >= keepalive_at:
            h.wfile.write(b": keepalive\n\n")
            h.wfile.flush()
            keepalive_at = time.monotonic() + keepalive_s
        api.view.wait(min(1.0, keepalive_s))
        time.sleep(STREAM_BATCH_S)
