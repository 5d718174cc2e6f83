"""The timelines read model: the latest published timeline per bake, followed from Kafka.

Kept as the bytes the judge wrote (a timeline is up to ~150 kB of JSON; parsing each one only
when asked keeps an API instance following thousands of bakes small).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from monitor.kafka.follower import SourceFactory, TopicFollower
from monitor.kafka.topics import TopicLayout

__all__ = ["TimelineView"]


class TimelineView(TopicFollower):
    """Latest timeline per bake id (raw JSON)."""

    name = "timeline-view"

    def __init__(
        self,
        bootstrap_servers: str,
        layout: TopicLayout,
        *,
        client: Mapping[str, Any] | None = None,
        source_factory: SourceFactory | None = None,
    ) -> None:
        super().__init__(
            bootstrap_servers,
            layout.timelines,
            range(layout.partials_partitions),
            client=client,
            source_factory=source_factory,
        )
        self._raw: dict[str, bytes] = {}
        self._view: dict[str, bytes] = {}

    def apply(self, partition: int, offset: int, key: bytes | None, value: bytes | None) -> bool:
        if key is None:
            return False
        bake_id = key.decode(errors="replace")
        if value is None:
            self._raw.pop(bake_id, None)
        else:
            self._raw[bake_id] = value
        return True

    def publish(self) -> None:
        self._view = dict(self._raw)

    def timeline(self, bake_id: str) -> dict[str, Any] | None:
        """The bake's timeline document, or None if none was published (or it is unreadable)."""
        raw = self._view.get(bake_id)
        if raw is None:
            return None
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return None
        return doc if isinstance(doc, dict) and isinstance(doc.get("points"), list) else None
