"""Read models for the HTTP API: verdict documents and the alert log, followed from Kafka.

Every API instance follows the whole verdicts topic (so any instance answers for any bake) and
the alerts topic. The verdicts topic holds only documents (the judge's state is in its own
topic, which API instances never read). Handlers only read the immutable snapshots these publish.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from monitor.kafka.follower import SourceFactory, TopicFollower
from monitor.kafka.topics import TopicLayout

__all__ = ["AlertLog", "AlertSource", "StoredAlert", "VerdictView"]

MAX_ALERTS = 10_000


class VerdictView(TopicFollower):
    """Latest verdict document per bake, with the wall-clock time it arrived (for staleness);
    wakes the console's document streams when documents arrive.

    Every arrival (or removal) of a bake's document takes the next change number; a stream
    sends the bakes whose number is above the last one it sent (:meth:`changes`)."""

    name = "verdict-view"

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
            layout.verdicts,
            range(layout.partials_partitions),
            client=client,
            source_factory=source_factory,
        )
        self._docs: dict[str, dict[str, Any]] = {}
        self._arrived: dict[str, float] = {}
        self._view: tuple[dict[str, dict[str, Any]], dict[str, float]] = ({}, {})
        self._seq = 0
        self._changed_at: dict[str, int] = {}  # bake id → change number of its last arrival
        self._changes: tuple[int, dict[str, int]] = (0, {})
        self._changed = threading.Condition()
        self.unreadable = 0

    def apply(self, partition: int, offset: int, key: bytes | None, value: bytes | None) -> bool:
        if key is None:
            return False
        bake_id = key.decode(errors="replace")
        if value is None:
            self._docs.pop(bake_id, None)
            self._note_change(bake_id)
            return True
        try:
            doc = orjson.loads(value)
        except orjson.JSONDecodeError:
            doc = None
        if isinstance(doc, dict) and isinstance(doc.get("state"), dict):
            doc = doc.get("document")  # written by a v1 judge: {"document", "state"}
        if not isinstance(doc, dict) or doc.get("id") != bake_id:
            self.unreadable += 1
            return False
        self._docs[bake_id] = doc
        self._arrived[bake_id] = time.time()
        self._note_change(bake_id)
        return True

    def _note_change(self, bake_id: str) -> None:
        self._seq += 1
        self._changed_at[bake_id] = self._seq

    def publish(self) -> None:
        with self._changed:
            self._view = (dict(self._docs), dict(self._arrived))
            self._changes = (self._seq, dict(self._changed_at))
            self._changed.notify_all()

    def documents(self) -> tuple[dict[str, dict[str, Any]], dict[str, float]]:
        """(document per bake id, wall-clock arrival per bake id) — do not mutate."""
        return self._view

    def changes(self) -> tuple[int, dict[str, int]]:
        """(latest change number, change number of each bake's last arrival or removal), as
        published with :meth:`documents` — do not mutate."""
        return self._changes

    def wait(self, timeout_s: float) -> None:
        """Block until documents arrive or ``timeout_s`` passes."""
        with self._changed:
            self._changed.wait(timeout_s)


@dataclass(frozen=True)
class StoredAlert:
    """An alert with its position in the alerts topic (the SSE event id)."""

    id: int
    alert: dict[str, Any]


class AlertSource(Protocol):
    """What alert sinks read: the log in order, what came after an id, and a wake-up."""

    def alerts(self) -> tuple[StoredAlert, ...]: ...
    def after(self, last_id: int | None) -> list[StoredAlert]: ...
    def wait(self, timeout_s: float) -> None: ...


class AlertLog(TopicFollower):
    """The most recent alerts, in topic order; wakes SSE streams when new ones arrive."""

    name = "alert-log"

    def __init__(
        self,
        bootstrap_servers: str,
        layout: TopicLayout,
        *,
        max_alerts: int = MAX_ALERTS,
        client: Mapping[str, Any] | None = None,
        source_factory: SourceFactory | None = None,
    ) -> None:
        super().__init__(
            bootstrap_servers, layout.alerts, [0], client=client, source_factory=source_factory
        )
        self._buffer: deque[StoredAlert] = deque(maxlen=max_alerts)
        self._view: tuple[StoredAlert, ...] = ()
        self._changed = threading.Condition()

    def apply(self, partition: int, offset: int, key: bytes | None, value: bytes | None) -> bool:
        if value is None:
            return False
        try:
            alert = orjson.loads(value)
        except orjson.JSONDecodeError:
            return False
        self._buffer.append(StoredAlert(offset, alert))
        return True

    def publish(self) -> None:
        with self._changed:
            self._view = tuple(self._buffer)
            self._changed.notify_all()

    def alerts(self) -> tuple[StoredAlert, ...]:
        return self._view

    def after(self, last_id: int | None) -> list[StoredAlert]:
        """Alerts with an id above ``last_id`` (all when None)."""
        view = self._view
        if last_id is None:
            return list(view)
        return [a for a in view if a.id > last_id]

    def wait(self, timeout_s: float) -> None:
        """Block until new alerts arrive or ``timeout_s`` passes."""
        with self._changed:
            self._changed.wait(timeout_s)
