"""The bake registry as a Kafka topic: bake specs keyed by id in the compacted ``bakes`` topic.

Every instance reads the topic to its end before it is ready, then follows it in a background
thread; readers get an immutable :class:`~monitor.bakes.Registry` snapshot, swapped on change.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from typing import Any

import orjson

from monitor.bakes.spec import BakeSpec, Registry
from monitor.errors import ConfigError
from monitor.kafka.follower import TopicFollower
from monitor.kafka.io import Sink
from monitor.kafka.topics import TopicLayout

__all__ = ["BakeFollower", "publish_bake"]

log = logging.getLogger("bakemon.bakes")


def publish_bake(sink: Sink, layout: TopicLayout, spec: BakeSpec) -> None:
    """Append a bake spec to the bakes topic (the latest spec per id wins)."""
    sink.send(layout.bakes, orjson.dumps(spec.to_dict()), key=spec.id.encode(), partition=0)


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
    ) -> None:
        super().__init__(bootstrap_servers, layout.bakes, [0], client=client)
        self._specs: dict[str, BakeSpec] = {s.id: s for s in static}
        self._registry = Registry(self._specs.values())
        self.invalid = 0

    def registry(self) -> Registry:
        """The current registry snapshot (never mutated after publication)."""
        return self._registry

    def apply(self, partition: int, offset: int, key: bytes | None, value: bytes | None) -> bool:
        if key is None:
            return False
        bake_id = key.decode(errors="replace")
        if value is None:
            return self._specs.pop(bake_id, None) is not None
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
        return True

    def publish(self) -> None:
        self._registry = Registry(sorted(self._specs.values(), key=lambda s: (s.start_s, s.id)))

    def wait_for(self, bake_id: str, timeout_s: float) -> bool:
        """Wait until ``bake_id`` is in the registry (e.g. a partial arrived first)."""
        deadline = time.monotonic() + timeout_s
        while bake_id not in self._registry:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True
