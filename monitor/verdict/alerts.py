"""Alerts shaped like Alertmanager alerts (INTEGRATIONS.md "Alerts"), written for the on-call
who reads them far from here.

One object per event: ``labels`` (alertname, bake, service, severity, metric — the metric that
decided a HALT, the drifting one, the blast-radius segment, else ``verdict``), ``annotations``
(a one-line ``summary`` with the numbers, ``description``, the ``segment`` value whose test
HALTed, ``runbook_url`` when set), ``startsAt``, ``endsAt``, an absolute ``generatorURL`` (the
bake's document), and a ``fingerprint`` stable for the same bake, alert name and metric, so a
replayed event deduplicates downstream. An override or a cancel raises its own warning (who and
why); the Alertmanager pusher resolves the bake's open alerts then.
"""

from __future__ import annotations

import hashlib
from typing import Any

from monitor.bakes.spec import BakeSpec
from monitor.verdict.document import Status, iso
from monitor.verdict.engine import VerdictEvent

__all__ = ["RESOLVING_KINDS", "alert_from_event"]

_NAMES = {
    ("verdict", Status.HALT): ("BakeHalted", "critical"),
    ("verdict", Status.INCONCLUSIVE): ("BakeInconclusive", "warning"),
    ("verdict", Status.PROMOTE): ("BakePromoted", "info"),
    ("drift", None): ("BakeDrift", "warning"),
    ("blast_radius", None): ("BakeBlastRadius", "warning"),
    ("override", None): ("BakeOverridden", "warning"),
    ("cancel", None): ("BakeCancelled", "warning"),
}
# Events after which the bake's earlier alerts are no longer true: they get resolved.
RESOLVING_KINDS = ("override", "cancel")


def _summary(event: VerdictEvent, spec: BakeSpec) -> str:
    canary = ",".join(spec.canary_versions)
    what = {
        "verdict": event.status.value,
        "drift": "drift",
        "blast_radius": "blast radius",
        "override": f"overridden to {event.status.value}",
        "cancel": "cancelled",
    }.get(event.kind, event.kind)
    where = f" on {event.segment}" if event.segment else ""
    return f"{spec.service} canary {canary} (bake {spec.id}) {what}{where}: {event.summary}"


def alert_from_event(
    event: VerdictEvent, spec: BakeSpec, *, base_url: str = "", runbook_url: str = ""
) -> dict[str, Any]:
    """The Alertmanager-shaped alert for a verdict event; ``base_url``: where bakemon's API is
    reached from outside (``external_url``); ``runbook_url``: the default runbook (the bake's
    own wins)."""
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
        "metric": event.metric or "verdict",
    }
    fingerprint = hashlib.sha256(
        "\x00".join(f"{k}={labels[k]}" for k in sorted(labels)).encode()
    ).hexdigest()[:16]
    annotations = {"summary": _summary(event, spec), "description": event.summary}
    if event.segment:
        annotations["segment"] = event.segment
    runbook = spec.runbook_url or runbook_url
    if runbook:
        annotations["runbook_url"] = runbook
    return {
        "labels": labels,
        "annotations": annotations,
        "startsAt": iso(event.event_time_s),
        "endsAt": None,
        "generatorURL": f"{base_url.rstrip('/')}/v1/bakes/{spec.id}",
        "fingerprint": fingerprint,
        "kind": event.kind,
        "status": event.status.value,
    }
