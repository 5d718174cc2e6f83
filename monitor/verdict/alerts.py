"""Alerts shaped like Alertmanager alerts (INTEGRATIONS.md "Alerts").

One object per event: ``labels`` (alertname, bake, service, severity, metric), ``annotations``
(summary, description), ``startsAt``, ``endsAt``, ``generatorURL`` and a ``fingerprint`` that is
stable for the same bake, alert name and metric, so a replayed event deduplicates downstream.
"""

from __future__ import annotations

import hashlib
from typing import Any

from monitor.bakes.spec import BakeSpec
from monitor.verdict.document import Status, iso
from monitor.verdict.engine import VerdictEvent

__all__ = ["alert_from_event"]

_NAMES = {
    ("verdict", Status.HALT): ("BakeHalted", "critical"),
    ("verdict", Status.INCONCLUSIVE): ("BakeInconclusive", "warning"),
    ("verdict", Status.PROMOTE): ("BakePromoted", "info"),
    ("drift", None): ("BakeDrift", "warning"),
    ("blast_radius", None): ("BakeBlastRadius", "warning"),
    ("override", None): ("BakeOverride", "info"),
}


def alert_from_event(event: VerdictEvent, spec: BakeSpec, *, base_url: str = "") -> dict[str, Any]:
    """The Alertmanager-shaped alert for a verdict event."""
    name, severity = (
        _NAMES.get((event.kind, event.status))
        or _NAMES.get((event.kind, None))
        or ("BakeEvent", "info")
    )
    labels = {
        "alertname": name,
        "bake": spec.id,
        "service": spec.service,
        "severity": severity,
        "metric": event.metric or "",
    }
    fingerprint = hashlib.sha256(
        "\x00".join(f"{k}={labels[k]}" for k in sorted(labels)).encode()
    ).hexdigest()[:16]
    return {
        "labels": labels,
        "annotations": {
            "summary": f"bake {spec.id}: {event.status.value}"
            if event.kind == "verdict"
            else f"bake {spec.id}: {event.kind.replace('_', ' ')}",
            "description": event.summary,
        },
        "startsAt": iso(event.event_time_s),
        "endsAt": None,
        "generatorURL": f"{base_url}/v1/bakes/{spec.id}",
        "fingerprint": fingerprint,
        "kind": event.kind,
        "status": event.status.value,
    }
