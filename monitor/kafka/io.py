"""Kafka adapters: a small source/sink interface and its kafka-python implementation.

The roles depend only on :class:`Source` and :class:`Sink`; kafka-python is the default client
(an optional confluent-kafka backend can implement the same two protocols, and
:mod:`monitor.kafka.memory` does for unit tests). "Read a topic to its end" exists once here
(:func:`consume_to_end`), by the fetch high watermark (ListOffsets "latest" is not trustworthy on
every broker, see ARCHITECTURE.md); topic names, sizes and our key → partition map are in
:mod:`monitor.kafka.topics`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from monitor.errors import MonitorError

__all__ = [
    "KafkaIOError",
    "KafkaSink",
    "KafkaSource",
    "Record",
    "Sink",
    "Source",
    "TopicSnapshot",
    "consume_to_end",
    "read_partitions_to_end",
    "read_to_end",
]

log = logging.getLogger("bakemon.kafka")

TP = tuple[str, int]
MAX_MESSAGE_BYTES = 16 * 1024 * 1024


class KafkaIOError(MonitorError):
    """Kafka could not be reached or refused an operation we cannot do without."""


class Record(Protocol):
    """What the roles read from a consumed message (kafka-python's ConsumerRecord fits)."""

    @property
    def offset(self) -> int: ...
    @property
    def timestamp(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...


class Source(Protocol):
    """A consumer: batch polls, manual commits, rebalance notifications, seek, lag."""

    def poll(self, timeout_s: float, max_records: int) -> Mapping[TP, Sequence[Record]]: ...
    def commit(self, offsets: Mapping[TP, int]) -> None: ...
    def seek(self, tp: TP, offset: int) -> None: ...
    def assignment(self) -> set[TP]: ...
    def take_rebalance(self) -> tuple[set[TP], set[TP]]:
        """(assigned, revoked) since the last call; a partition kept through an eager
        rebalance is in both, and its owner must treat it as newly assigned."""
        ...

    def committed(self, tp: TP) -> int | None: ...
    def seek_to_beginning(self, tp: TP) -> None: ...
    def caught_up(self, tp: TP) -> bool:
        """The position is at the fetch high watermark (or the partition is empty)."""
        ...

    def lag(self) -> dict[TP, int]: ...
    def partitions_of(self, topic: str) -> int | None:
        """How many partitions ``topic`` has (None if unknown)."""
        ...

    def close(self) -> None: ...


class Sink(Protocol):
    """A producer."""

    def send(
        self,
        topic: str,
        value: bytes | None,
        *,
        key: bytes | None = None,
        partition: int | None = None,
        headers: Sequence[tuple[str, bytes]] | None = None,
    ) -> None: ...
    def flush(self, timeout_s: float) -> None: ...
    def close(self) -> None: ...


def transient_errors() -> tuple[type[BaseException], ...]:
    """Errors a checkpoint survives by retrying at the next interval (broker restarts,
    coordinator moves, produce timeouts): skipping a commit is always safe here."""
    from kafka.errors import KafkaError

    return (KafkaIOError, KafkaError)


def client_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """Client settings without the unset (None) ones, strings typed like kafka-python's defaults.

    ``BAKEMON_KAFKA_*`` values arrive as strings: ``ssl_check_hostname=false`` must reach the
    client as False (the string is truthy), ``request_timeout_ms=5000`` as 5000 and
    ``api_version=2.5.0`` as (2, 5, 0). Keys whose default is None (passwords, file paths) stay
    strings; a value that does not fit its key's type is a :class:`ConfigError` naming both.
    """
    kinds = _client_kinds()
    out: dict[str, Any] = {}
    for key, value in config.items():
        if value is not None:
            out[key] = _typed(key, value, kinds.get(key)) if isinstance(value, str) else value
    return out


def _client_kinds() -> dict[str, type]:
    """The type of every kafka-python client setting with a bool, int or float default."""
    from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer

    kinds: dict[str, type] = {"api_version": tuple}
    for cls in (KafkaConsumer, KafkaProducer, KafkaAdminClient):
        for key, default in cls.DEFAULT_CONFIG.items():
            if type(default) in (bool, int, float) and key not in kinds:
                kinds[key] = type(default)
    kinds["acks"] = int  # also "all"
    return kinds


def _typed(key: str, text: str, kind: type | None) -> Any:
    from monitor.errors import ConfigError

    raw = text.strip()
    low = raw.lower()
    try:
        if kind is bool:
            if low not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                raise ValueError(raw)
            return low in ("1", "true", "yes", "on")
        if kind is int:
            return "all" if key == "acks" and low == "all" else int(raw)
        if kind is float:
            return float(raw)
        if kind is tuple:
            return tuple(int(part) for part in raw.split("."))
    except ValueError:
        want = "true or false" if kind is bool else "a number"
        want = 'a version like "2.5.0"' if kind is tuple else want
        msg = f'Kafka setting "{key}" must be {want}, got "{text}"'
        raise ConfigError(msg, value=text) from None
    return text


class _Listener:
    """Records rebalance events for the poll loop; does no blocking work on the I/O path."""

    def __init__(self) -> None:
        self.assigned: set[TP] = set()
        self.revoked: set[TP] = set()
        # Every partition named in an assign/revoke callback since the poll loop last looked:
        # a partition kept through an eager rebalance shows up in both.
        self.events_assigned: set[TP] = set()
        self.events_revoked: set[TP] = set()

    def as_kafka_listener(self) -> Any:
        from kafka import ConsumerRebalanceListener

        outer = self

        class _Adapter(ConsumerRebalanceListener):  # type: ignore[misc]
            def on_partitions_revoked(self, revoked: Any) -> None:
                outer.on_partitions_revoked(revoked)

            def on_partitions_assigned(self, assigned: Any) -> None:
                outer.on_partitions_assigned(assigned)

        return _Adapter()

    def on_partitions_revoked(self, revoked: Iterable[Any]) -> None:
        for tp in revoked:
            t = (tp.topic, tp.partition)
            self.revoked.add(t)
            self.assigned.discard(t)
            self.events_revoked.add(t)

    def on_partitions_assigned(self, assigned: Iterable[Any]) -> None:
        for tp in assigned:
            t = (tp.topic, tp.partition)
            self.assigned.add(t)
            self.revoked.discard(t)
            self.events_assigned.add(t)


# Fetch settings for throughput: big fetches, few round trips.
THROUGHPUT_CONSUMER = {
    "fetch_max_bytes": 64 * 1024 * 1024,
    "max_partition_fetch_bytes": 16 * 1024 * 1024,
    "fetch_min_bytes": 1,
    "fetch_max_wait_ms": 100,
    "max_poll_records": 20_000,
    "receive_buffer_bytes": 4 * 1024 * 1024,
}
GROUP_TIMING = {
    "session_timeout_ms": 6000,
    "heartbeat_interval_ms": 500,
    "max_poll_interval_ms": 300_000,
}


class KafkaSource:
    """kafka-python consumer in a group (``topics``) or on fixed partitions (``partitions``)."""

    def __init__(
        self,
        bootstrap_servers: str,
        *,
        group_id: str | None = None,
        topics: Sequence[str] = (),
        partitions: Sequence[TP] = (),
        client: Mapping[str, Any] | None = None,
        auto_offset_reset: str = "earliest",
    ) -> None:
        from kafka import KafkaConsumer, TopicPartition
        from kafka.errors import KafkaError

        self._tp_cls = TopicPartition
        cfg: dict[str, Any] = {
            "bootstrap_servers": bootstrap_servers,
            "enable_auto_commit": False,
            "auto_offset_reset": auto_offset_reset,
            **THROUGHPUT_CONSUMER,
            **(GROUP_TIMING if group_id else {}),
            **client_config(client or {}),
        }
        try:
            self._c = KafkaConsumer(group_id=group_id, **cfg)
        except KafkaError as exc:
            msg = f"cannot reach Kafka at {bootstrap_servers}: {exc}"
            raise KafkaIOError(msg, value=bootstrap_servers) from exc
        self._listener = _Listener()
        self._lag: dict[TP, int] = {}
        if group_id:
            self._c.subscribe(list(topics), listener=self._listener.as_kafka_listener())
        else:
            self._c.assign([TopicPartition(t, p) for t, p in partitions])
            self._listener.assigned = set(partitions)
            self._listener.events_assigned = set(partitions)

    @property
    def consumer(self) -> Any:
        return self._c

    def poll(self, timeout_s: float, max_records: int) -> Mapping[TP, Sequence[Record]]:
        raw = self._c.poll(timeout_ms=int(timeout_s * 1000), max_records=max_records)
        self._lag = self._measure_lag()  # here, in the thread that owns the consumer
        return {(tp.topic, tp.partition): recs for tp, recs in raw.items()}

    def take_rebalance(self) -> tuple[set[TP], set[TP]]:
        """(assigned, revoked) in rebalance callbacks since the last call. A partition kept
        through an (eager) rebalance is in both: its owner must treat it as newly assigned."""
        lst = self._listener
        assigned, revoked = set(lst.events_assigned), set(lst.events_revoked)
        lst.events_assigned.clear()
        lst.events_revoked.clear()
        return assigned, revoked

    def assignment(self) -> set[TP]:
        return {(tp.topic, tp.partition) for tp in self._c.assignment()}

    def commit(self, offsets: Mapping[TP, int]) -> None:
        from kafka import OffsetAndMetadata

        if offsets:
            self._c.commit(
                {self._tp_cls(t, p): OffsetAndMetadata(o, "", -1) for (t, p), o in offsets.items()}
            )

    def committed(self, tp: TP) -> int | None:
        c: int | None = self._c.committed(self._tp_cls(*tp))
        return c

    def seek(self, tp: TP, offset: int) -> None:
        self._c.seek(self._tp_cls(*tp), offset)

    def seek_to_beginning(self, tp: TP) -> None:
        self._c.seek_to_beginning(self._tp_cls(*tp))

    def position(self, tp: TP) -> int:
        p: int = self._c.position(self._tp_cls(*tp))
        return p

    def reported_end(self, tp: TP) -> int | None:
        """ListOffsets "latest". Only trusted to tell an empty partition (0) from a non-empty
        one: some brokers answer the last batch's base offset + 1 instead of the true end.
        None when the broker gave no answer for it: unknown is not empty (a restore that took
        it for empty would skip a partition's state)."""
        ends = self._c.end_offsets([self._tp_cls(*tp)])
        end = ends.get(self._tp_cls(*tp))
        return None if end is None else int(end)

    def caught_up(self, tp: TP) -> bool:
        """Position at the fetch high watermark, or the partition is empty."""
        hw = self.highwater(tp)
        pos = self.position(tp)
        if hw is not None:
            return pos >= hw
        return pos == 0 and self.reported_end(tp) == 0

    def highwater(self, tp: TP) -> int | None:
        h: int | None = self._c.highwater(self._tp_cls(*tp))
        return h

    def partitions_of(self, topic: str) -> int | None:
        parts = self._c.partitions_for_topic(topic)
        return len(parts) if parts else None

    def lag(self) -> dict[TP, int]:
        """Records behind the fetch high watermark per assigned partition, as of the last poll.
        Safe from any thread (the metrics and health endpoints): a kafka-python consumer is
        not thread-safe, and ``position()`` of a partition whose position is unknown blocks
        on the network — an HTTP thread asking for it could hang behind the poll loop."""
        return dict(self._lag)

    def _measure_lag(self) -> dict[TP, int]:
        out: dict[TP, int] = {}
        for tp in self._c.assignment():
            hw = self._c.highwater(tp)
            if hw is not None:
                out[(tp.topic, tp.partition)] = max(hw - self._c.position(tp), 0)
        return out

    def close(self) -> None:
        self._c.close(autocommit=False)


class KafkaSink:
    """kafka-python producer tuned for batches; thread-safe (shared by the roles)."""

    def __init__(self, bootstrap_servers: str, *, client: Mapping[str, Any] | None = None) -> None:
        from kafka import KafkaProducer
        from kafka.errors import KafkaError

        try:
            self._p = KafkaProducer(
                bootstrap_servers=bootstrap_servers,
                acks="all",
                linger_ms=5,
                batch_size=512 * 1024,
                max_request_size=MAX_MESSAGE_BYTES,
                compression_type="lz4",  # gzip (level 9 in kafka-python) cost 20 % of ingest
                **client_config(client or {}),
            )
        except KafkaError as exc:
            msg = f"cannot reach Kafka at {bootstrap_servers}: {exc}"
            raise KafkaIOError(msg, value=bootstrap_servers) from exc
        self._futures: list[Any] = []
        self._lock = threading.Lock()

    def send(
        self,
        topic: str,
        value: bytes | None,
        *,
        key: bytes | None = None,
        partition: int | None = None,
        headers: Sequence[tuple[str, bytes]] | None = None,
    ) -> None:
        fut = self._p.send(
            topic, value=value, key=key, partition=partition, headers=list(headers or [])
        )
        with self._lock:
            self._futures.append(fut)

    def flush(self, timeout_s: float = 30.0) -> None:
        """Wait until everything sent so far is acknowledged; raise if any send failed."""
        self._p.flush(timeout=timeout_s)
        with self._lock:
            futures, self._futures = self._futures, []
        for f in futures:
            if f.failed():
                msg = f"a produce to Kafka failed: {f.exception}"
                raise KafkaIOError(msg, value=None)

    def close(self) -> None:
        self._p.close(timeout=5)


@dataclass
class TopicSnapshot:
    """Latest value per key of a topic read to its end."""

    values: dict[bytes, bytes | None] = field(default_factory=dict)


READ_POLL_TIMEOUT_S = 0.2
READ_POLL_RECORDS = 50_000


def consume_to_end(
    source: Source,
    topic: str,
    partitions: Iterable[int],
    apply: Callable[[int, Record], None],
    *,
    timeout_s: float = 30.0,
) -> None:
    """Read partitions of ``topic`` from the beginning to the fetch high watermark, in order,
    calling ``apply(partition, record)`` for each record; the one "read to the end" loop.
    Records of other partitions the source is assigned (it may be shared between reads of one
    partition at a time, on a topic still being written) are not applied: they would be taken
    for this read's."""
    parts = set(partitions)
    for p in parts:
        source.seek_to_beginning((topic, p))
    deadline = time.monotonic() + timeout_s
    done: set[int] = set()
    while done != parts:
        if time.monotonic() > deadline:
            msg = f'timed out reading topic "{topic}" to its end'
            raise KafkaIOError(msg, value=topic)
        batch = source.poll(READ_POLL_TIMEOUT_S, READ_POLL_RECORDS)
        for (t, p), recs in batch.items():
            if t != topic or p not in parts:
                continue
            for r in recs:
                apply(p, r)
        done |= {p for p in parts - done if source.caught_up((topic, p))}


def read_to_end(
    source: Source, topic: str, partitions: Iterable[int], *, timeout_s: float = 30.0
) -> TopicSnapshot:
    """The latest value per key (None = tombstone) of partitions of ``topic``."""
    snap = TopicSnapshot()

    def keep(_: int, r: Record) -> None:
        if r.key is not None:
            snap.values[r.key] = r.value

    consume_to_end(source, topic, partitions, keep, timeout_s=timeout_s)
    return snap


def read_partitions_to_end(
    source: Source, topic: str, partitions: Iterable[int], *, timeout_s: float = 30.0
) -> dict[int, TopicSnapshot]:
    """:func:`read_to_end` per partition, all partitions in one read (one consumer for a
    restore of many partitions, instead of one consumer each)."""
    parts = sorted(set(partitions))
    snaps = {p: TopicSnapshot() for p in parts}

    def keep(p: int, r: Record) -> None:
        if r.key is not None:
            snaps[p].values[r.key] = r.value

    consume_to_end(source, topic, parts, keep, timeout_s=timeout_s)
    return snaps
