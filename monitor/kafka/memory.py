"""An in-memory broker with :class:`MemorySource` / :class:`MemorySink` for unit tests.

It models what the exactly-once scheme depends on, and nothing else: topics with partitions and
offsets, the high watermark, committed offsets per consumer group, group membership with
*eager* rebalances (every member's partitions are revoked and the new ones assigned, so a kept
partition shows up in both, as with :meth:`KafkaSource.take_rebalance`), and a producer whose
sends are appended only at :meth:`MemorySink.flush` — so dropping a sink without flushing (a
crash) loses its unflushed sends, as Kafka could. Tests can also make a flush fail
transiently and make a commit crash the process (:class:`SimulatedCrash`).

>>> broker = MemoryBroker()
>>> broker.create_topic("t", 2)
>>> sink = MemorySink(broker)
>>> sink.send("t", b"v", key=b"k", partition=1)
>>> broker.high_watermark(("t", 1)), sink.flush(), broker.high_watermark(("t", 1))
(0, None, 1)
>>> src = MemorySource(broker, group_id="g", topics=["t"])
>>> sorted(src.take_rebalance()[0])
[('t', 0), ('t', 1)]
>>> [r.value for r in src.poll(0.0, 10)[("t", 1)]]
[b'v']
"""

from __future__ import annotations

import threading
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from monitor.errors import MonitorError
from monitor.kafka.io import TP, KafkaIOError

__all__ = ["MemoryBroker", "MemoryRecord", "MemorySink", "MemorySource", "SimulatedCrash"]


class SimulatedCrash(MonitorError):
    """Raised where a test asked the process to die (not a transient error: roles let it out)."""


@dataclass(frozen=True, slots=True)
class MemoryRecord:
    """One stored message (fits the roles' ``Record`` protocol)."""

    topic: str
    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()


class MemoryBroker:
    """Topics, committed offsets and consumer groups, shared by sources and sinks."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.RLock())
        self._logs: dict[str, list[list[MemoryRecord]]] = {}
        self._committed: dict[str, dict[TP, int]] = {}
        self._members: dict[str, list[MemorySource]] = {}

    # -- topics ------------------------------------------------------------------------------
    def create_topic(self, name: str, partitions: int = 1) -> None:
        """Create ``name`` (idempotent for the same partition count)."""
        with self._cond:
            have = self._logs.get(name)
            if have is not None and len(have) != partitions:
                msg = f'topic "{name}" exists with {len(have)} partitions, not {partitions}'
                raise KafkaIOError(msg, value=name)
            if have is None:
                self._logs[name] = [[] for _ in range(partitions)]

    def create_topics(self, specs: Iterable[tuple[str, int]]) -> None:
        for name, partitions in specs:
            self.create_topic(name, partitions)

    def partitions(self, topic: str) -> int:
        return len(self._log(topic))

    def _log(self, topic: str) -> list[list[MemoryRecord]]:
        try:
            return self._logs[topic]
        except KeyError:
            msg = f'topic "{topic}" does not exist'
            raise KafkaIOError(msg, value=topic) from None

    def append(
        self,
        topic: str,
        value: bytes | None,
        *,
        key: bytes | None = None,
        partition: int | None = None,
        headers: Sequence[tuple[str, bytes]] = (),
        timestamp_ms: int = 0,
    ) -> int:
        """Append one message now; returns its offset (keyed messages without a partition go
        to CRC-32(key) mod partitions, unkeyed ones to partition 0)."""
        with self._cond:
            log = self._log(topic)
            if partition is None:
                partition = zlib.crc32(key) % len(log) if key is not None else 0
            if not 0 <= partition < len(log):
                msg = f'topic "{topic}" has no partition {partition}'
                raise KafkaIOError(msg, value=partition)
            part = log[partition]
            # Stored at its own size, as a broker holds it: a value from orjson.dumps keeps a ~4 KB
            # buffer, which would count against the producer's process (benchmarks/scaling.py).
            kept = None if value is None else memoryview(value).tobytes()
            part.append(
                MemoryRecord(topic, partition, len(part), timestamp_ms, key, kept, tuple(headers))
            )
            self._cond.notify_all()
            return len(part) - 1

    def high_watermark(self, tp: TP) -> int:
        with self._cond:
            return len(self._log(tp[0])[tp[1]])

    def records(self, topic: str, partition: int | None = None) -> list[MemoryRecord]:
        """Every message of a topic (or of one partition), in partition then offset order."""
        with self._cond:
            log = self._log(topic)
            parts = range(len(log)) if partition is None else [partition]
            return [r for p in parts for r in log[p]]

    def latest(self, topic: str) -> dict[bytes, bytes]:
        """The compacted view: the latest value per key, tombstoned keys left out."""
        out: dict[bytes, bytes | None] = {}
        for r in self.records(topic):
            if r.key is not None:
                out[r.key] = r.value
        return {k: v for k, v in out.items() if v is not None}

    # -- groups ------------------------------------------------------------------------------
    def committed(self, group: str, tp: TP) -> int | None:
        with self._cond:
            return self._committed.get(group, {}).get(tp)

    def _commit(self, group: str, offsets: Mapping[TP, int]) -> None:
        with self._cond:
            self._committed.setdefault(group, {}).update(offsets)

    def _join(self, member: MemorySource) -> None:
        with self._cond:
            self._members.setdefault(member.group_id or "", []).append(member)
            self.rebalance(member.group_id or "")

    def _leave(self, member: MemorySource) -> None:
        with self._cond:
            members = self._members.get(member.group_id or "", [])
            if member in members:
                members.remove(member)
                self.rebalance(member.group_id or "")

    def members(self, group: str) -> list[MemorySource]:
        with self._cond:
            return list(self._members.get(group, []))

    def rebalance(
        self,
        group: str,
        assignment: Mapping[MemorySource, Iterable[TP]] | None = None,
        *,
        eager: bool = True,
    ) -> None:
        """Reassign the group's partitions: ``assignment`` per member, or round-robin over the
        members in join order. Eager (kafka-python's protocol): every member loses all its
        partitions and gets its new set, kept ones included; else only moved ones change."""
        with self._cond:
            members = self._members.get(group, [])
            if assignment is None:
                topics = sorted({t for m in members for t in m.topics})
                tps = [(t, p) for t in topics for p in range(self.partitions(t))]
                assignment = {m: tps[i :: len(members)] for i, m in enumerate(members)}
            for m in members:
                m._reassign(set(assignment.get(m, ())), eager=eager)


_Send = tuple[str, bytes | None, bytes | None, int | None, tuple[tuple[str, bytes], ...]]


class MemorySource:
    """A consumer of a :class:`MemoryBroker`, in a group (``topics``) or on fixed partitions."""

    def __init__(
        self,
        broker: MemoryBroker,
        *,
        group_id: str | None = None,
        topics: Sequence[str] = (),
        partitions: Sequence[TP] = (),
        fetch_records: int | None = None,
    ) -> None:
        self.broker = broker
        self.group_id = group_id
        self.topics = tuple(topics)
        self.fetch_records = fetch_records  # per partition and poll, like a fetch size
        self._crash_on_commit = False
        self._assigned: set[TP] = set()
        self._pos: dict[TP, int] = {}
        self._events_assigned: set[TP] = set()
        self._events_revoked: set[TP] = set()
        self.closed = False
        if group_id:
            broker._join(self)
        else:
            self._reassign(set(partitions), eager=True)

    def _reassign(self, new: set[TP], *, eager: bool) -> None:
        old = self._assigned
        assigned, revoked = (new, old) if eager else (new - old, old - new)
        self._events_assigned |= assigned
        self._events_revoked |= revoked
        self._assigned = set(new)
        for tp in assigned:
            self._pos[tp] = self.committed(tp) or 0  # auto_offset_reset = earliest
        for tp in old - new:
            self._pos.pop(tp, None)

    def crash_on_next_commit(self) -> None:
        """The next :meth:`commit` raises :class:`SimulatedCrash` and commits nothing."""
        self._crash_on_commit = True

    # -- the Source protocol -----------------------------------------------------------------
    def poll(self, timeout_s: float, max_records: int) -> dict[TP, list[MemoryRecord]]:
        with self.broker._cond:
            if timeout_s > 0 and not self._available():
                self.broker._cond.wait_for(self._available, timeout_s)
            out: dict[TP, list[MemoryRecord]] = {}
            budget = max_records
            for tp in sorted(self._assigned):
                pos = self._pos[tp]
                n = budget if self.fetch_records is None else min(budget, self.fetch_records)
                recs = self.broker._log(tp[0])[tp[1]][pos : pos + n]
                if recs:
                    out[tp] = recs
                    self._pos[tp] = pos + len(recs)
                    budget -= len(recs)
                if budget <= 0:
                    break
            return out

    def _available(self) -> bool:
        return bool(self._events_assigned or self._events_revoked) or any(
            self._pos[tp] < self.broker.high_watermark(tp) for tp in self._assigned
        )

    def take_rebalance(self) -> tuple[set[TP], set[TP]]:
        assigned, revoked = self._events_assigned, self._events_revoked
        self._events_assigned, self._events_revoked = set(), set()
        return assigned, revoked

    def assignment(self) -> set[TP]:
        return set(self._assigned)

    def commit(self, offsets: Mapping[TP, int]) -> None:
        if self._crash_on_commit:
            self._crash_on_commit = False
            msg = "simulated crash at commit"
            raise SimulatedCrash(msg, value=dict(offsets))
        if not self.group_id:
            msg = "commit needs a consumer group"
            raise KafkaIOError(msg, value=None)
        stale = sorted(set(offsets) - self._assigned)
        if stale:  # like CommitFailedError after a rebalance: a zombie may not commit
            msg = f"commit of partitions {stale} not assigned to this member"
            raise KafkaIOError(msg, value=stale)
        self.broker._commit(self.group_id, offsets)

    def committed(self, tp: TP) -> int | None:
        return self.broker.committed(self.group_id, tp) if self.group_id else None

    def seek(self, tp: TP, offset: int) -> None:
        self._pos[tp] = offset

    def seek_to_beginning(self, tp: TP) -> None:
        self._pos[tp] = 0

    def position(self, tp: TP) -> int:
        return self._pos[tp]

    def caught_up(self, tp: TP) -> bool:
        return self._pos[tp] >= self.broker.high_watermark(tp)

    def lag(self) -> dict[TP, int]:
        return {tp: self.broker.high_watermark(tp) - self._pos[tp] for tp in self._assigned}

    def partitions_of(self, topic: str) -> int | None:
        return self.broker.partitions(topic)

    def close(self) -> None:
        """Leave the group without committing (also what a crash looks like to the group)."""
        if not self.closed:
            self.closed = True
            if self.group_id:
                self.broker._leave(self)


class MemorySink:
    """A producer of a :class:`MemoryBroker`: sends are buffered and appended at flush."""

    def __init__(self, broker: MemoryBroker) -> None:
        self.broker = broker
        self._pending: list[_Send] = []
        self._fail: list[int] = []
        self.flushes = 0

    def fail_next_flush(self, delivered: int = 0) -> None:
        """The next flush appends only the first ``delivered`` pending sends, drops the rest
        and raises a transient :class:`KafkaIOError`."""
        self._fail.append(delivered)

    @property
    def pending(self) -> int:
        """Sends not yet appended (lost if the sink is dropped now)."""
        return len(self._pending)

    def send(
        self,
        topic: str,
        value: bytes | None,
        *,
        key: bytes | None = None,
        partition: int | None = None,
        headers: Sequence[tuple[str, bytes]] | None = None,
    ) -> None:
        self.broker.partitions(topic)  # an unknown topic fails at send, as a metadata error
        self._pending.append((topic, value, key, partition, tuple(headers or ())))

    def flush(self, timeout_s: float = 30.0) -> None:
        pending, self._pending = self._pending, []
        delivered = self._fail.pop(0) if self._fail else None
        for topic, value, key, partition, headers in pending[:delivered]:
            self.broker.append(topic, value, key=key, partition=partition, headers=headers)
        self.flushes += 1
        if delivered is not None:
            msg = f"simulated produce failure ({len(pending) - delivered} sends lost)"
            raise KafkaIOError(msg, value=len(pending) - delivered)

    def close(self) -> None:
        """Drop unflushed sends (call :meth:`flush` first for a clean shutdown)."""
        self._pending = []
