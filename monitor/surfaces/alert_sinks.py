"""Alert sinks fed from the alert log: Alertmanager push and JSON lines.

:class:`AlertmanagerPusher` posts firing alerts (severity warning or critical) as a JSON array to
``<url>/api/v2/alerts``, re-sends them every ``resend_s`` (Alertmanager expires alerts that are not
re-sent), and resolves each one ``ttl_s`` after it started by sending it with ``endsAt``.
:class:`JsonLinesWriter` appends every alert as one JSON line to a file or stdout.
Both run in a daemon thread, survive an unreachable receiver (logged, retried) and stop cleanly.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import datetime
from typing import IO, Any

import orjson

from monitor.surfaces.views import AlertSource
from monitor.verdict.alerts import RESOLVING_KINDS
from monitor.verdict.document import iso

__all__ = ["AlertmanagerPusher", "JsonLinesWriter"]

log = logging.getLogger("bakemon.alerts")

PUSHED_SEVERITIES = ("warning", "critical")


def _epoch(text: Any) -> float | None:
    if not isinstance(text, str):
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


class AlertmanagerPusher:
    """Pushes alerts from an :class:`AlertLog` to Alertmanager's v2 API."""

    def __init__(
        self,
        alerts: AlertSource,
        url: str,
        *,
        resend_s: float = 60.0,
        ttl_s: float = 3600.0,
        clock: Callable[[], float] = time.time,
        timeout_s: float = 5.0,
    ) -> None:
        self.alerts = alerts
        self.endpoint = url.rstrip("/") + "/api/v2/alerts"
        self.resend_s = resend_s
        self.ttl_s = ttl_s
        self.clock = clock
        self.timeout_s = timeout_s
        self._firing: dict[str, tuple[float, dict[str, Any]]] = {}
        self._last_id: int | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.pushes = 0
        self.failures = 0
        self._next_resend = 0.0

    def start(self) -> AlertmanagerPusher:
        known = self.alerts.alerts()
        # Alerts already in the topic at start-up: only those still within their TTL, aged from
        # when they started (a restart must not re-fire last week's alerts).
        now = self.clock()
        for a in known:
            started = _epoch(a.alert.get("startsAt"))
            if started is not None and now - started < self.ttl_s:
                self._track(a.alert, started)
        self._last_id = known[-1].id if known else None
        self._thread = threading.Thread(target=self._run, name="alertmanager", daemon=True)
        self._thread.start()
        return self

    def _track(self, alert: dict[str, Any], started: float) -> bool:
        if alert.get("labels", {}).get("severity") not in PUSHED_SEVERITIES:
            return False
        fp = str(alert.get("fingerprint") or orjson.dumps(alert.get("labels", {})).decode())
        self._firing[fp] = (started, alert)
        return True

    def step(self) -> None:
        """Send new alerts, re-send firing ones when due, resolve expired ones."""
        now = self.clock()
        new = False
        resolved: dict[str, tuple[float, dict[str, Any]]] = {}
        for a in self.alerts.after(self._last_id):
            self._last_id = a.id
            if a.alert.get("kind") in RESOLVING_KINDS:  # an override or cancel: no longer true
                bake = a.alert.get("labels", {}).get("bake")
                for fp, (_, alert) in list(self._firing.items()):
                    if alert.get("labels", {}).get("bake") == bake:
                        resolved[fp] = self._firing.pop(fp)
            new |= self._track(a.alert, now)
        expired = {fp: v for fp, v in self._firing.items() if now - v[0] >= self.ttl_s}
        for fp in expired:
            del self._firing[fp]
        expired |= resolved
        new |= bool(resolved)
        payload = [self._am(alert, started, None) for started, alert in self._firing.values()]
        payload += [self._am(alert, started, now) for started, alert in expired.values()]
        if payload and (new or expired or now >= self._next_resend):
            self._next_resend = now + self.resend_s
            self._post(payload)  # a failed push resets _next_resend: retried on the next step

    @staticmethod
    def _am(alert: dict[str, Any], started: float, ends: float | None) -> dict[str, Any]:
        out = {
            "labels": dict(alert.get("labels", {})),
            "annotations": dict(alert.get("annotations", {})),
            "startsAt": alert.get("startsAt") or iso(started),
            "generatorURL": alert.get("generatorURL", ""),
        }
        if ends is not None:
            out["endsAt"] = iso(ends)
        return out

    def _post(self, payload: list[dict[str, Any]]) -> None:
        req = urllib.request.Request(
            self.endpoint,
            data=orjson.dumps(payload),
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                resp.read()
            self.pushes += 1
        except (urllib.error.URLError, OSError) as exc:
            self.failures += 1
            log.warning("Alertmanager push to %s failed (will retry): %s", self.endpoint, exc)
            self._next_resend = 0.0

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.step()
            except Exception:
                log.exception("Alertmanager pusher step failed")
            self.alerts.wait(min(1.0, self.resend_s))

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)


class JsonLinesWriter:
    """Writes every new alert as a JSON line to ``path`` (``-`` = stdout)."""

    def __init__(self, alerts: AlertSource, path: str) -> None:
        self.alerts = alerts
        self.path = path
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> JsonLinesWriter:
        known = self.alerts.alerts()
        last = known[-1].id if known else None
        out: IO[bytes] = sys.stdout.buffer if self.path == "-" else open(self.path, "ab")  # noqa: SIM115

        def run() -> None:
            nonlocal last
            try:
                while not self._stop.is_set():
                    for a in self.alerts.after(last):
                        last = a.id
                        out.write(orjson.dumps(a.alert) + b"\n")
                    out.flush()
                    self.alerts.wait(1.0)
            finally:
                if out is not sys.stdout.buffer:
                    out.close()

        self._thread = threading.Thread(target=run, name="alerts-jsonl", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
