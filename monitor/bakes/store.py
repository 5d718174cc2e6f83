"""The bake registry as a Kafka topic: bake specs keyed by id in the compacted ``bakes`` topic.

Every instance reads the topic to its end before it is ready, then follows it in a background
thread; readers get an immutable :class:`~monitor.bakes.Registry` snapshot, swapped on change.

Two kinds of records share the topic:

- an explicit spec (API, config, an operator's cancel or override), keyed by the bake id; the
  latest per id wins, as compaction keeps it;
- a discovery *proposal* (:mod:`monitor.bakes.discovery`), keyed ``proposal/<bake id>/<digest
  of the spec>`` (a bake id cannot contain "/"), value ``{"proposal": spec}``; distinct
  proposals have distinct keys, so compaction keeps them all.

The registry is a pure function of the latest record per key, so it does not depend on read
order, rebalances or compaction and is the same on every instance that has read as far:

1. an explicit spec always wins over proposals for its id (an operator's cancel or override of
   an auto-bake publishes an explicit spec based on the merged one);
2. a proposal whose canary version is already selected by an explicit bake of its service is
   ignored (discovery never shadows a bake someone created);
3. of the remaining proposals for an id, the one with the earliest start wins (ties: the
   smallest canonical JSON), so two ingest instances proposing the same bake agree on one.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any

import orjson

from monitor.bakes.spec import BakeSpec, Registry
from monitor.errors import ConfigError
from monitor.kafka.follower import SourceFactory, TopicFollower
from monitor.kafka.io import Sink
from monitor.kafka.topics import TopicLayout

__all__ = ["PROPOSAL_PREFIX", "BakeFollower", "merge_specs", "proposal_record", "publish_bake"]

PROPOSAL_PREFIX = "proposal/"

log = logging.getLogger("bakemon.bakes")


def publish_bake(sink: Sink, layout: TopicLayout, spec: BakeSpec) -> None:
    """Append a bake spec to the bakes topic (the latest spec per id wins)."""
    sink.send(layout.bakes, orjson.dumps(spec.to_dict()), key=spec.id.encode(), partition=0)


def _canonical(spec: BakeSpec) -> bytes:
    return orjson.dumps(spec.to_dict(), option=orjson.OPT_SORT_KEYS)


def proposal_record(spec: BakeSpec) -> tuple[bytes, bytes]:
    """(key, value) of a discovery proposal for the bakes topic (partition 0)."""
    digest = hashlib.sha256(_canonical(spec)).hexdigest()[:16]
    key = f"{PROPOSAL_PREFIX}{spec.id}/{digest}".encode()
    return key, orjson.dumps({"proposal": spec.to_dict()})


def merge_specs(
    explicit: Mapping[str, BakeSpec], proposals: Iterable[BakeSpec]
) -> dict[str, BakeSpec]:
    """The registry's bakes: explicit specs, plus the earliest-starting proposal per id that
    neither an explicit spec nor an explicit bake of the same canary version shadows."""
    out = dict(explicit)
    selected = {
        (b.service, v)
        for b in explicit.values()
        for v in (*b.canary_versions, *b.baseline_versions)
    }
    for spec in sorted(proposals, key=lambda s: (s.start_s, _canonical(s))):
        if spec.id in out or any((spec.service, v) in selected for v in spec.canary_versions):
            continue
        out[spec.id] = spec
    return out


class BakeFollower(TopicFollower):
    """Keeps a registry in sync with the bakes topic (plus config-file bakes)."""

    name = "bake-follower"

    def __init__(
        self,
        bootstrap_servers: str,
        layout: TopicLayout,
        *,
        static: Iterable[BakeSpec] = (),
        client: Mapping[str, Any] | None = None,
        source_factory: SourceFactory | None = None,
    ) -> None:
        super().__init__(
            bootstrap_servers, layout.bakes, [0], client=client, source_factory=source_factory
        )
        self._specs: dict[str, BakeSpec] = {s.id: s for s in static}
        self._proposals: dict[bytes, BakeSpec] = {}
        self._registry = Registry(self._specs.values())
        self._published = threading.Condition()
        # Explicit specs added or replaced since the last publication; None: rebuild (a
        # proposal or a deletion changed, which can change which bakes the merge keeps).
        self._changed: list[BakeSpec] | None = []
        self.invalid = 0

    def registry(self) -> Registry:
        """The current registry snapshot (never mutated after publication)."""
        return self._registry

    def apply(self, partition: int, offset: int, key: bytes | None, value: bytes | None) -> bool:
        if key is None:
            return False
        if key.startswith(PROPOSAL_PREFIX.encode()):
            return self._apply_proposal(offset, key, value)
        bake_id = key.decode(errors="replace")
        if value is None:
            gone = self._specs.pop(bake_id, None) is not None
            if gone:
                self._changed = None
            return gone
        try:
            spec = BakeSpec.from_dict(orjson.loads(value))
        except (orjson.JSONDecodeError, ConfigError) as exc:
            self.invalid += 1
            log.warning(
                'ignoring invalid bake "%s" at offset %d of %s: %s',
                bake_id,
                offset,
                self.topic,
                exc,
            )
            return False
        if self._specs.get(spec.id) == spec:
            return False
        self._specs[spec.id] = spec
        if self._changed is not None:
            self._changed.append(spec)
        return True

    def _apply_proposal(self, offset: int, key: bytes, value: bytes | None) -> bool:
        if value is None:
            return self._proposals.pop(key, None) is not None
        try:
            data = orjson.loads(value)
            spec = BakeSpec.from_dict(data["proposal"] if isinstance(data, dict) else data)
        except (orjson.JSONDecodeError, KeyError, ConfigError) as exc:
            self.invalid += 1
            log.warning("ignoring invalid bake proposal at %d of %s: %s", offset, self.topic, exc)
            return False
        if self._proposals.get(key) == spec:
            return False
        self._proposals[key] = spec
        self._changed = None
        return True

    def publish(self) -> None:
        """Publish the registry: explicit specs added or replaced go into a copy of the last
        one (no rebuild: the cost of a create does not grow with the bakes); a proposal or a
        deletion rebuilds from the merge."""
        changed, self._changed = self._changed, []
        if changed is not None and not self._proposals:
            registry = self._registry.with_specs(changed)
        else:
            merged = merge_specs(self._specs, self._proposals.values())
            registry = Registry(sorted(merged.values(), key=lambda s: (s.start_s, s.id)))
        with self._published:
            self._registry = registry
            self._published.notify_all()

    def wait_for(self, bake_id: str, timeout_s: float) -> bool:
        """Wait until ``bake_id`` is in the registry (woken by each publication)."""
        deadline = time.monotonic() + timeout_s
        with self._published:
            while bake_id not in self._registry:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._published.wait(min(left, 0.5))
        return True
