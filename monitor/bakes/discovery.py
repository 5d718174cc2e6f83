"""Auto-discovery of new versions: propose a bake when a service starts serving a new version.

Opt-in (``[discovery] enabled = true``). Ingest hands every decoded batch to :meth:`Discovery.sight`
(a few numpy reductions per batch, no I/O); at its checkpoint it asks :meth:`Discovery.proposals`
and sends them to the bakes topic as *proposals* (:func:`monitor.bakes.store.publish_proposal`).
When the newest version of a service that is in no bake has ``min_requests`` requests and an
older version has served at least as many within the last ``RECENT_S`` of event time, it proposes
the bake ``auto-<service>-<version>`` with the new version as canary, the busiest other recent
version as baseline, the discovery policy, and a start at the latest event time seen. At most
``max_active`` auto-bakes may start within ``window_s`` of event time (as this instance's
registry sees them); the rest are counted as skipped.

Several ingest instances (each sees only its partitions) may propose the same bake with
different starts. They never race to *create* it: the registry (:class:`~monitor.bakes.store.
BakeFollower`) merges proposals by a deterministic rule, the same on every instance.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from monitor.bakes.spec import BakeSpec, Registry, safe_bake_id
from monitor.errors import ConfigError
from monitor.records.columns import RecordBatch

__all__ = ["Discovery", "DiscoverySettings"]

log = logging.getLogger("bakemon.discovery")
RECENT_S = 600.0  # a version not seen for this long (event time) is not serving any more


@dataclass(frozen=True)
class DiscoverySettings:
    enabled: bool = False
    services: tuple[str, ...] = ()  # empty = every service
    min_requests: int = 200
    max_active: int = 5
    window_s: float = 86_400.0
    policy: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DiscoverySettings:
        allowed = {"enabled", "services", "min_requests", "max_active", "window_s", "policy"}
        unknown = sorted(set(data) - allowed)
        if unknown:
            msg = f"unknown [discovery] key(s) {unknown}; valid: {sorted(allowed)}"
            raise ConfigError(msg, value=unknown)
        s = cls(
            enabled=bool(data.get("enabled", False)),
            services=tuple(data.get("services", ())),
            min_requests=int(data.get("min_requests", 200)),
            max_active=int(data.get("max_active", 5)),
            window_s=float(data.get("window_s", 86_400.0)),
            policy=dict(data.get("policy", {})),
        )
        if s.min_requests < 1 or s.max_active < 0 or s.window_s <= 0:
            msg = "[discovery] needs min_requests >= 1, max_active >= 0, window_s > 0"
            raise ConfigError(msg, value=data)
        # Fail now, not at the first discovery, on a bad policy.
        BakeSpec.from_dict(
            {
                "id": "probe",
                "service": "s",
                "canary": "a",
                "baseline": "b",
                "policy": dict(s.policy),
            }
        )
        return s


class Discovery:
    """Tracks traffic per (service, version) and proposes auto-bakes."""

    def __init__(self, settings: DiscoverySettings) -> None:
        self.settings = settings
        self._counts: dict[str, dict[str, int]] = {}
        self._last_seen: dict[str, dict[str, float]] = {}
        self._first_seen: dict[str, dict[str, float]] = {}
        self._touched: set[str] = set()
        self._proposed: set[str] = set()
        self.skipped_cap = 0

    def observe(self, batch: RecordBatch, registry: Registry) -> list[BakeSpec]:
        """:meth:`sight` then :meth:`proposals` (for notebooks and tests)."""
        self.sight(batch)
        return self.proposals(registry)

    def sight(self, batch: RecordBatch) -> None:
        """Count one batch's traffic per (service, version), with first and last event times.

        Every version counts, tagged or not: the baseline is usually a version in an earlier
        bake."""
        if not self.settings.enabled or batch.n == 0:
            return
        n_ver = max(len(batch.version.categories), 1)
        key = batch.service.codes.astype(np.int64) * n_ver + batch.version.codes
        uniq, inverse, counts = np.unique(key, return_inverse=True, return_counts=True)
        last = np.full(uniq.size, -np.inf)
        np.maximum.at(last, inverse, batch.time_s)
        earliest = np.full(uniq.size, np.inf)
        np.minimum.at(earliest, inverse, batch.time_s)
        for k, c, t, t0 in zip(
            uniq.tolist(), counts.tolist(), last.tolist(), earliest.tolist(), strict=True
        ):
            service = batch.service.categories[k // n_ver]
            version = batch.version.categories[k % n_ver] if batch.version.categories else ""
            if not version or (self.settings.services and service not in self.settings.services):
                continue
            per = self._counts.setdefault(service, {})
            seen = self._last_seen.setdefault(service, {})
            per[version] = per.get(version, 0) + c
            seen[version] = max(seen.get(version, -np.inf), t)
            firsts = self._first_seen.setdefault(service, {})
            firsts[version] = min(firsts.get(version, np.inf), t0)
            self._touched.add(service)

    def proposals(self, registry: Registry) -> list[BakeSpec]:
        """Bakes to propose for the services sighted since the last call (each once)."""
        touched, self._touched = self._touched, set()
        out: list[BakeSpec] = []
        for service in sorted(touched):
            spec = self._propose(service, registry)
            if spec is not None:
                out.append(spec)
        return out

    def _propose(self, service: str, registry: Registry) -> BakeSpec | None:
        per, seen = self._counts[service], self._last_seen[service]
        now = max(seen.values())
        known = {
            v
            for b in registry.bakes
            if b.service == service
            for v in (*b.canary_versions, *b.baseline_versions)
        }
        busy = [
            v
            for v, c in per.items()
            if c >= self.settings.min_requests and now - seen[v] <= RECENT_S
        ]
        new = [v for v in busy if v not in known]
        if not new or len(busy) < 2:
            return None
        # The canary is the newest unbaked version; it needs an older version serving beside it.
        first = self._first_seen[service]
        canary = max(new, key=lambda v: (first[v], v))
        older = [v for v in busy if first[v] < first[canary]]
        if not older:
            return None
        baseline = max(older, key=lambda v: (per[v], v))
        bake_id = safe_bake_id(f"auto-{service}-{canary}")
        if bake_id in self._proposed or bake_id in registry:
            return None
        active = sum(
            1
            for b in registry.bakes
            if b.id.startswith("auto-") and now - b.start_s < self.settings.window_s
        )
        if active >= self.settings.max_active:
            self.skipped_cap += 1
            return None
        self._proposed.add(bake_id)
        log.info(
            'discovered version "%s" of "%s": proposing bake "%s" vs "%s"',
            canary,
            service,
            bake_id,
            baseline,
        )
        return BakeSpec.from_dict(
            {
                "id": bake_id,
                "service": service,
                "canary": canary,
                "baseline": baseline,
                "policy": dict(self.settings.policy),
                "start": now,
            }
        )
