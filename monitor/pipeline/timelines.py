"""The judge's timelines: one :class:`~monitor.verdict.timeline.Timeline` per bake, published
to the compacted timelines topic (key = bake id, co-partitioned with the partials) and read
back from it when the judge is assigned a partition.

The timeline is a view of the evidence, not evidence: it is not part of the judge's state
snapshot (500 points would make every snapshot ~150 kB), so publication is cheaper — at most
once per ``publish_interval_s`` per bake, and at once when its status changes. After a crash the
restored timeline may lack the points taken since its last publication (a gap in the chart,
never a wrong point): points beyond the restored state are dropped, and the series goes on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass

import orjson

from monitor.kafka.io import Sink
from monitor.kafka.topics import DOCUMENT_MAX_BYTES
from monitor.verdict.engine import BakeVerdict
from monitor.verdict.timeline import Timeline

__all__ = ["DEFAULT_PUBLISH_INTERVAL_S", "TimelineBook"]

log = logging.getLogger("bakemon.judge")

DEFAULT_PUBLISH_INTERVAL_S = 5.0


@dataclass
class _Entry:
    timeline: Timeline
    partition: int
    sent_version: int = 0  # version of the last publication acknowledged
    sent_status: str = ""
    sent_at: float = float("-inf")


class TimelineBook:
    """Timelines of the bakes a judge owns, and their publication at checkpoints."""

    def __init__(
        self,
        topic: str,
        *,
        publish_interval_s: float = DEFAULT_PUBLISH_INTERVAL_S,
        clock: Callable[[], float],
    ) -> None:
        self.topic = topic
        self.publish_interval_s = publish_interval_s
        self.clock = clock
        self._entries: dict[str, _Entry] = {}
        self._in_flight: list[tuple[_Entry, int, str, float]] = []

    def get(self, bake_id: str) -> Timeline | None:
        e = self._entries.get(bake_id)
        return None if e is None else e.timeline

    def observe(self, bake_id: str, verdict: BakeVerdict, partition: int) -> None:
        """Sample a bake after it was fed (a point only if its tests or status moved)."""
        e = self._entries.get(bake_id)
        if e is None:
            e = self._entries[bake_id] = _Entry(Timeline(), partition)
        e.partition = partition
        e.timeline.observe(verdict)

    # -- assignment ------------------------------------------------------------------------
    def restore(
        self,
        partition: int,
        values: Mapping[bytes, bytes | None],
        verdicts: Mapping[str, BakeVerdict],
    ) -> int:
        """Timelines read from a partition of the topic, trimmed to the restored verdicts."""
        n = 0
        for key, value in values.items():
            bake_id = key.decode(errors="replace")
            v = verdicts.get(bake_id)
            if value is None or v is None:
                continue
            try:
                doc = orjson.loads(value)
                t = Timeline.from_document(doc, within=v)
            except (orjson.JSONDecodeError, TypeError, ValueError, KeyError) as exc:
                log.warning('ignoring unreadable timeline of bake "%s": %s', bake_id, exc)
                continue
            self._entries[bake_id] = _Entry(t, partition, t.version, v.status.value, self.clock())
            n += 1
        return n

    def forget(
        self, partitions: Collection[int] | None = None, bakes: Collection[str] = ()
    ) -> None:
        """Drop the timelines of these partitions (revoked) or bakes (retired)."""
        for bake_id in [
            b
            for b, e in self._entries.items()
            if b in bakes or (partitions is not None and e.partition in partitions)
        ]:
            del self._entries[bake_id]

    # -- publication -----------------------------------------------------------------------
    def send(self, sink: Sink, owned: Collection[int], statuses: Mapping[str, str]) -> None:
        """Publish the timelines that changed, due by interval or by a status change."""
        self._in_flight = []
        now = self.clock()
        for bake_id, e in self._entries.items():
            t = e.timeline
            if e.partition not in owned or t.version == e.sent_version:
                continue
            status = statuses.get(bake_id, "")
            if status == e.sent_status and now - e.sent_at < self.publish_interval_s:
                continue
            value = orjson.dumps(t.document(bake_id))
            if len(value) > DOCUMENT_MAX_BYTES:  # not at 500 points; never block on it
                log.error('timeline of bake "%s" is %d bytes: not published', bake_id, len(value))
                e.sent_version = t.version
                continue
            sink.send(self.topic, value, key=bake_id.encode(), partition=e.partition)
            self._in_flight.append((e, t.version, status, now))

    def acked(self) -> None:
        for e, version, status, at in self._in_flight:
            e.sent_version, e.sent_status, e.sent_at = version, status, at
        self._in_flight = []

    def failed(self) -> None:
        self._in_flight = []
