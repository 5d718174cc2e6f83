"""What every server-sent-event stream of the API shares: the resume position and the opening."""

from __future__ import annotations

from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler

from monitor.surfaces.actions import HttpError

__all__ = ["last_event_id", "open_stream"]


def last_event_id(h: BaseHTTPRequestHandler, query: Mapping[str, str]) -> int | None:
    """Where a client resumes: ``Last-Event-ID`` (or ``?last_event_id=``); 400 if not an int."""
    last = h.headers.get("Last-Event-ID") or query.get("last_event_id")
    try:
        return int(last) if last not in (None, "") else None
    except ValueError:
        msg = f"Last-Event-ID must be an integer, got {last!r}"
        raise HttpError(400, msg) from None


def open_stream(h: BaseHTTPRequestHandler, comment: bytes) -> None:
    """The 200 and headers of an event stream, then a first comment line, flushed."""
    h.send_response(200)
    h.send_header("Content-Type", "text/event-stream")
    h.send_header("Cache-Control", "no-store")
    h.send_header("Connection", "close")
    h.end_headers()
    h.close_connection = True
    h.wfile.write(b": " + comment + b"\n\n")
    h.wfile.flush()
