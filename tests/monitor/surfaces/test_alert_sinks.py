"""Tests of the Alertmanager push (against a real HTTP receiver) and the JSON-lines sink."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import orjson

from monitor.surfaces.alert_sinks import AlertmanagerPusher, JsonLinesWriter
from monitor.surfaces.views import StoredAlert


class FakeAlertLog:
    """The AlertSource interface over a list (the real one follows a Kafka topic)."""

    def __init__(self) -> None:
        self.items: list[StoredAlert] = []
        self.cond = threading.Condition()

    def add(self, alert: dict[str, Any]) -> None:
        with self.cond:
            self.items.append(StoredAlert(len(self.items), alert))
            self.cond.notify_all()

    def alerts(self) -> tuple[StoredAlert, ...]:
        return tuple(self.items)

    def after(self, last_id: int | None) -> list[StoredAlert]:
        return [a for a in self.items if last_id is None or a.id > last_id]

    def wait(self, timeout_s: float) -> None:
        with self.cond:
            self.cond.wait(timeout_s)


def _alert(name: str, severity: str) -> dict[str, Any]:
    return {
        "labels": {
            "alertname": name,
            "bake": "b1",
            "service": "s",
            "severity": severity,
            "metric": "",
        },
        "annotations": {"summary": "x", "description": "y"},
        "startsAt": "2026-11-28T10:00:00.000Z",
        "endsAt": None,
        "generatorURL": "/v1/bakes/b1",
        "fingerprint": name,
    }


def test_pushes_resends_and_resolves(alertmanager: tuple[str, list[list[dict[str, Any]]]]) -> None:
    """A warning/critical alert is pushed at once, re-sent while firing, resolved with endsAt."""
    url, posts = alertmanager
    now = [1000.0]
    log = FakeAlertLog()
    pusher = AlertmanagerPusher(log, url, resend_s=10, ttl_s=30, clock=lambda: now[0])
    pusher.start()
    pusher.stop()  # drive it by hand below (deterministic clock)
    log.add(_alert("BakeHalted", "critical"))
    log.add(_alert("BakePromoted", "info"))  # info alerts are not pushed
    pusher.step()
    assert len(posts) == 1 and [a["labels"]["alertname"] for a in posts[0]] == ["BakeHalted"]
    assert "endsAt" not in posts[0][0]
    now[0] += 5
    pusher.step()
    assert len(posts) == 1  # not due yet
    now[0] += 6
    pusher.step()
    assert len(posts) == 2  # re-sent after resend_s
    now[0] += 30
    pusher.step()
    assert posts[-1][0]["endsAt"] is not None  # resolved after ttl_s
    now[0] += 60
    pusher.step()
    assert len(posts) == 3  # nothing firing: nothing sent


def test_a_cancel_or_override_resolves_the_bakes_open_alerts(
    alertmanager: tuple[str, list[list[dict[str, Any]]]],
) -> None:
    """A cancel (or override) alert resolves every firing alert of its bake at once (endsAt),
    leaves other bakes' alerts firing, and is pushed itself (a warning)."""
    url, posts = alertmanager
    now = [1000.0]
    log = FakeAlertLog()
    pusher = AlertmanagerPusher(log, url, resend_s=600, ttl_s=3600, clock=lambda: now[0])
    pusher.start()
    pusher.stop()
    log.add(_alert("BakeHalted", "critical"))
    log.add(
        {**_alert("BakeDrift", "warning"), "labels": {**_alert("x", "warning")["labels"],
         "alertname": "BakeDrift", "bake": "other"}, "fingerprint": "other-drift"}
    )  # fmt: skip
    pusher.step()
    assert {a["labels"]["alertname"] for a in posts[-1]} == {"BakeHalted", "BakeDrift"}
    for kind in ("cancel", "override"):
        log.add({**_alert(f"Bake-{kind}", "warning"), "kind": kind, "fingerprint": kind})
        now[0] += 1
        pusher.step()
        sent = {a["labels"]["alertname"]: a for a in posts[-1]}
        assert f"Bake-{kind}" in sent and "endsAt" not in sent[f"Bake-{kind}"]
        assert "endsAt" not in sent["BakeDrift"]  # another bake's alert keeps firing
        if kind == "cancel":
            assert sent["BakeHalted"]["endsAt"] is not None  # resolved by the cancel
        else:  # the override resolves the cancel alert of the same bake too
            assert sent["Bake-cancel"]["endsAt"] is not None and "BakeHalted" not in sent


def test_restart_does_not_refire_expired_alerts(
    alertmanager: tuple[str, list[list[dict[str, Any]]]],
) -> None:
    """At start-up only alerts still within their TTL (by startsAt) are tracked again."""
    url, posts = alertmanager
    log = FakeAlertLog()
    log.add(_alert("Old", "critical"))  # startsAt 2026-11-28T10:00:00Z
    log.add({**_alert("Recent", "critical"), "startsAt": "2026-11-28T10:50:00.000Z"})
    now = 1795864200.0  # 2026-11-28T11:10:00Z
    pusher = AlertmanagerPusher(log, url, resend_s=10, ttl_s=1800, clock=lambda: now)
    pusher.start()
    pusher.stop()
    pusher.step()
    assert [a["labels"]["alertname"] for a in posts[-1]] == ["Recent"]


def test_unreachable_alertmanager_is_retried_not_fatal() -> None:
    """A receiver that is down counts a failure and is retried on the next step."""
    from monitor.kafka.broker import free_port

    log = FakeAlertLog()
    pusher = AlertmanagerPusher(log, f"http://127.0.0.1:{free_port()}", resend_s=60, timeout_s=1)
    log.add(_alert("BakeHalted", "critical"))
    pusher.step()
    pusher.step()
    assert pusher.failures == 2 and pusher.pushes == 0


def test_json_lines_writer_appends_new_alerts(tmp_path: Path) -> None:
    """Alerts arriving after start are written as one JSON object per line."""
    log = FakeAlertLog()
    log.add(_alert("Old", "warning"))
    out = tmp_path / "alerts.jsonl"
    w = JsonLinesWriter(log, str(out)).start()
    log.add(_alert("BakeHalted", "critical"))
    log.add(_alert("BakeDrift", "warning"))
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and (
        not out.exists() or len(out.read_text().splitlines()) < 2
    ):
        time.sleep(0.05)
    w.stop()
    lines = [orjson.loads(x) for x in out.read_text().splitlines()]
    assert [a["labels"]["alertname"] for a in lines] == ["BakeHalted", "BakeDrift"]
