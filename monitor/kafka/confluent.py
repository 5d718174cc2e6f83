"""The confluent-kafka (librdkafka) backend of :class:`~monitor.kafka.io.Source` and ``Sink``.

Optional (``pip install 'bakemon[confluent]'``), selected with ``kafka_client = "confluent"``.
Same semantics as :class:`~monitor.kafka.io.KafkaSource`/``KafkaSink``: group consumption with an
eager (``range``) assignment so a partition kept through a rebalance is reported as revoked and
assigned, manual commits of explicit offsets, and "caught up"/lag from the fetch high watermark
(``get_watermark_offsets(cached=True)``), never from ListOffsets "latest" (ARCHITECTURE.md quirks).
Positions are tracked here from the records returned: librdkafka reports none until a message is
consumed after an assign or a seek. Settings arrive under kafka-python's names and are mapped by
:func:`librdkafka_config`.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from operator import itemgetter, ne
from typing import Any

import numpy as np

from monitor.errors import ConfigError
from monitor.kafka.io import MAX_MESSAGE_BYTES, TP, KafkaIOError, Record
from monitor.kafka.runs import RecordRun

__all__ = [
    "ConfluentSink",
    "ConfluentSource",
    "import_confluent",
    "librdkafka_config",
]

log = logging.getLogger("bakemon.kafka.confluent")
# librdkafka's own log lines; "kafka*" loggers are quiet unless bakemon logs at debug.
_RDKAFKA_LOG = "kafka.librdkafka"

# kafka-python setting → librdkafka property (README "Kafka clients").
LIBRDKAFKA_NAMES: dict[str, str] = {
    "bootstrap_servers": "bootstrap.servers",
    "client_id": "client.id",
    "security_protocol": "security.protocol",
    "sasl_mechanism": "sasl.mechanism",
    "sasl_plain_username": "sasl.username",
    "sasl_plain_password": "sasl.password",
    "sasl_kerberos_service_name": "sasl.kerberos.service.name",
    "ssl_cafile": "ssl.ca.location",
    "ssl_certfile": "ssl.certificate.location",
    "ssl_keyfile": "ssl.key.location",
    "ssl_password": "ssl.key.password",
    "ssl_crlfile": "ssl.crl.location",
    "ssl_ciphers": "ssl.cipher.suites",
    "request_timeout_ms": "socket.timeout.ms",
    "session_timeout_ms": "session.timeout.ms",
    "heartbeat_interval_ms": "heartbeat.interval.ms",
    "max_poll_interval_ms": "max.poll.interval.ms",
    "connections_max_idle_ms": "connections.max.idle.ms",
    "reconnect_backoff_ms": "reconnect.backoff.ms",
    "reconnect_backoff_max_ms": "reconnect.backoff.max.ms",
    "retry_backoff_ms": "retry.backoff.ms",
    "metadata_max_age_ms": "metadata.max.age.ms",
    "fetch_max_bytes": "fetch.max.bytes",
    "max_partition_fetch_bytes": "max.partition.fetch.bytes",
    "fetch_min_bytes": "fetch.min.bytes",
    "fetch_max_wait_ms": "fetch.wait.max.ms",
    "isolation_level": "isolation.level",
    "receive_buffer_bytes": "socket.receive.buffer.bytes",
    "send_buffer_bytes": "socket.send.buffer.bytes",
    "linger_ms": "linger.ms",
    "batch_size": "batch.size",
    "compression_type": "compression.type",
    "acks": "acks",
    "retries": "retries",
    "max_request_size": "message.max.bytes",
    "enable_idempotence": "enable.idempotence",
}
# kafka-python settings with no librdkafka meaning: the caller's poll size is passed per call.
IGNORED = frozenset({"max_poll_records", "api_version_auto_timeout_ms"})
RDKAFKA_PREFIX = (
    "rdkafka_"  # BAKEMON_KAFKA_RDKAFKA_SOCKET_KEEPALIVE_ENABLE → socket.keepalive.enable
)


def librdkafka_config(client: Mapping[str, Any]) -> dict[str, Any]:
    """librdkafka properties for bakemon's ``[kafka]`` settings (kafka-python names).

    Known kafka-python names are renamed (:data:`LIBRDKAFKA_NAMES`); ``ssl_check_hostname``
    becomes ``ssl.endpoint.identification.algorithm`` (https/none) and ``api_version`` becomes
    ``broker.version.fallback``. A key with a dot is a librdkafka property and passes through
    verbatim, as does ``rdkafka_a_b`` (→ ``a.b``, for environment variables: librdkafka names
    have no underscores). Any other key is a :class:`ConfigError` naming it.
    """
    out: dict[str, Any] = {}
    for key, value in client.items():
        if value is None or key in IGNORED:
            continue
        if "." in key:
            out[key] = value
        elif key.startswith(RDKAFKA_PREFIX):
            out[key[len(RDKAFKA_PREFIX) :].replace("_", ".")] = value
        elif key in LIBRDKAFKA_NAMES:
            out[LIBRDKAFKA_NAMES[key]] = value
        elif key == "ssl_check_hostname":
            out["ssl.endpoint.identification.algorithm"] = "https" if value else "none"
        elif key == "api_version":
            v = value if isinstance(value, str) else ".".join(str(x) for x in value)
            out["broker.version.fallback"] = v
        else:
            msg = (
                f'Kafka setting "{key}" has no confluent-kafka equivalent; use the librdkafka '
                f'property name (a key with a dot, or "{RDKAFKA_PREFIX}…" in the environment)'
            )
            raise ConfigError(msg, value=key)
    return out


def import_confluent() -> Any:
    try:
        import confluent_kafka
    except ImportError:
        msg = (
            'kafka_client = "confluent" needs the confluent-kafka package: '
            "pip install 'bakemon[confluent]' (or 'confluent-kafka>=2.3')"
        )
        raise ConfigError(msg, value="confluent") from None
    return confluent_kafka


@contextmanager
def _io(what: str) -> Iterator[None]:
    """confluent-kafka's errors as the transient :class:`KafkaIOError` the roles retry on."""
    from confluent_kafka import KafkaException

    try:
        yield
    except KafkaException as exc:
        msg = f"Kafka {what} failed: {exc}"
        raise KafkaIOError(msg, value=what) from exc


_SECOND = itemgetter(1)


def _by_partition(msgs: Sequence[Any], kind: Any, topic: str | None) -> dict[TP, list[Any]]:
    """The messages grouped by (topic, partition), in their order within each (a poll returns
    runs of a partition, interleaved); ``topic``: the one topic they all come from, if known."""
    if not msgs:
        return {}
    parts = np.fromiter(map(kind.partition, msgs), dtype=np.int64, count=len(msgs))
    if topic is None:  # several topics: runs of (topic, partition)
        tps: list[TP] = list(zip(map(kind.topic, msgs), parts.tolist(), strict=True))
        change = np.fromiter(map(ne, tps[1:], tps[:-1]), dtype=bool, count=len(tps) - 1)
    else:
        tps = []
        change = parts[1:] != parts[:-1]
    groups: dict[TP, list[Any]] = {}
    start = 0
    for end in [*(np.flatnonzero(change) + 1).tolist(), len(msgs)]:
        tp: TP = (topic, int(parts[start])) if topic is not None else tps[start]
        groups.setdefault(tp, []).extend(msgs[start:end])
        start = end
    return groups


# Fetch and group settings matching io.THROUGHPUT_CONSUMER / io.GROUP_TIMING.
THROUGHPUT_CONSUMER: dict[str, Any] = {
    "fetch.max.bytes": 64 * 1024 * 1024,
    "max.partition.fetch.bytes": 16 * 1024 * 1024,
    "fetch.wait.max.ms": 100,
    "queued.max.messages.kbytes": 256 * 1024,
    "socket.receive.buffer.bytes": 4 * 1024 * 1024,
}
GROUP_TIMING: dict[str, Any] = {
    "session.timeout.ms": 6000,
    "heartbeat.interval.ms": 500,
    "max.poll.interval.ms": 300_000,
    "partition.assignment.strategy": "range",  # eager: kept partitions are revoked + assigned
}
COMMON: dict[str, Any] = {"log.connection.close": False}  # Tansu closes idle connections
METADATA_TIMEOUT_S = 10.0
_OFFSET_BEGINNING = -2


class ConfluentSource:
    """confluent-kafka consumer in a group (``topics``) or on fixed partitions (``partitions``)."""

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
        ck = import_confluent()
        self._tp = ck.TopicPartition
        cfg: dict[str, Any] = {
            "bootstrap.servers": bootstrap_servers,
            # librdkafka needs a group id even for assign(); this one never joins.
            "group.id": group_id or f"bakemon-assign-{uuid.uuid4().hex[:12]}",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": auto_offset_reset,
            **COMMON,
            **THROUGHPUT_CONSUMER,
            **(GROUP_TIMING if group_id else {}),
            **librdkafka_config(client or {}),
            "logger": logging.getLogger(_RDKAFKA_LOG),
        }
        try:
            self._c = ck.Consumer(cfg)
        except (ck.KafkaException, ValueError) as exc:
            msg = f"cannot create a Kafka consumer for {bootstrap_servers}: {exc}"
            raise KafkaIOError(msg, value=bootstrap_servers) from exc
        self._group = bool(group_id)
        # Next offset per partition, from the records returned and seeks (None: the start).
        self._pos: dict[TP, int | None] = {}
        self._events_assigned: set[TP] = set()
        self._events_revoked: set[TP] = set()
        # The one topic every message comes from, when there is one (no topic read per message).
        names = set(topics) if group_id else {t for t, _ in partitions}
        self._topic: str | None = next(iter(names)) if len(names) == 1 else None
        if group_id:
            self._c.subscribe(list(topics), on_assign=self._on_assign, on_revoke=self._on_revoke)
        else:
            self._c.assign([self._tp(t, p) for t, p in partitions])
            self._events_assigned = set(partitions)

    def _on_assign(self, _consumer: Any, parts: Sequence[Any]) -> None:
        for tp in parts:
            t = (tp.topic, tp.partition)
            self._pos.pop(t, None)
            self._events_assigned.add(t)

    def _on_revoke(self, _consumer: Any, parts: Sequence[Any]) -> None:
        for tp in parts:
            t = (tp.topic, tp.partition)
            self._pos.pop(t, None)
            self._events_revoked.add(t)

    @property
    def consumer(self) -> Any:
        return self._c

    def poll(self, timeout_s: float, max_records: int) -> Mapping[TP, Sequence[Record]]:
        with _io("poll"):
            msgs = self._c.consume(
                num_messages=max(1, min(max_records, 1_000_000)), timeout=timeout_s
            )
        if not msgs:
            return {}
        kind = type(msgs[0])  # librdkafka's Message: its methods mapped at C speed below
        errors = list(map(kind.error, msgs))
        if errors.count(None) != len(msgs):
            for err in errors:
                if err is not None:
                    self._message_error(err)
            msgs = [m for m, err in zip(msgs, errors, strict=True) if err is None]
        out: dict[TP, Sequence[Record]] = {}
        for tp, run in _by_partition(msgs, kind, self._topic).items():
            offsets = list(map(kind.offset, run))
            stamps = list(map(_SECOND, map(kind.timestamp, run)))  # (type, ms)
            out[tp] = RecordRun(
                offsets, stamps, list(map(kind.key, run)), list(map(kind.value, run))
            )
            self._pos[tp] = offsets[-1] + 1
        return out

    def _message_error(self, err: Any) -> None:
        if err.fatal():
            msg = f"Kafka consumer failed: {err.str()}"
            raise KafkaIOError(msg, value=err.code())
        log.debug("consumer: %s", err.str())  # e.g. a subscribed topic that does not exist yet

    def take_rebalance(self) -> tuple[set[TP], set[TP]]:
        """(assigned, revoked) in rebalance callbacks since the last call. A partition kept
        through an (eager) rebalance is in both: its owner must treat it as newly assigned."""
        assigned, revoked = set(self._events_assigned), set(self._events_revoked)
        self._events_assigned.clear()
        self._events_revoked.clear()
        return assigned, revoked

    def assignment(self) -> set[TP]:
        with _io("assignment"):
            return {(tp.topic, tp.partition) for tp in self._c.assignment()}

    def commit(self, offsets: Mapping[TP, int]) -> None:
        if offsets:
            with _io("commit"):
                self._c.commit(
                    offsets=[self._tp(t, p, o) for (t, p), o in offsets.items()],
                    asynchronous=False,
                )

    def committed(self, tp: TP) -> int | None:
        with _io("committed"):
            got = self._c.committed([self._tp(*tp)], timeout=METADATA_TIMEOUT_S)
        off = int(got[0].offset) if got else -1
        return off if off >= 0 else None

    def seek(self, tp: TP, offset: int) -> None:
        self._seek(tp, offset)
        self._pos[tp] = offset if offset >= 0 else None

    def seek_to_beginning(self, tp: TP) -> None:
        self._seek(tp, _OFFSET_BEGINNING)
        self._pos[tp] = None

    def _seek(self, tp: TP, offset: int) -> None:
        """Seek; a partition librdkafka has not started fetching yet (just assigned) refuses
        with _STATE, so it is assigned again with the whole assignment at known positions."""
        from confluent_kafka import KafkaError, KafkaException

        try:
            self._c.seek(self._tp(tp[0], tp[1], offset))
            return
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError._STATE:
                msg = f"Kafka seek failed: {exc}"
                raise KafkaIOError(msg, value=tp) from exc
        with _io("seek"):
            parts = []
            for a in self._c.assignment():
                t = (a.topic, a.partition)
                at = offset if t == tp else self._known_start(t)
                parts.append(self._tp(a.topic, a.partition, at))
            self._c.assign(parts)

    def _known_start(self, tp: TP) -> int:
        pos = self._pos.get(tp, -1)
        if pos is None:
            return _OFFSET_BEGINNING
        return pos if pos >= 0 else -1001  # OFFSET_INVALID: the committed offset, else the reset

    def position(self, tp: TP) -> int:
        """The next offset this consumer returns for ``tp`` (committed/reset/beginning if it has
        returned none since its assignment or seek)."""
        pos = self._pos.get(tp, -1)
        if pos is None:  # from the beginning: the log start, once a fetch has reported it
            low, _ = self._watermarks(tp)
            return max(low, 0)
        if pos < 0:
            start = self.committed(tp)
            if start is None:
                low, _ = self._watermarks(tp)
                start = max(low, 0)
            self._pos[tp] = pos = start
        return pos

    def _watermarks(self, tp: TP) -> tuple[int, int]:
        with _io("watermarks"):
            low, high = self._c.get_watermark_offsets(self._tp(*tp), cached=True)
        return int(low), int(high)

    def highwater(self, tp: TP) -> int | None:
        """The high watermark of the last fetch response (None before one arrived)."""
        _, high = self._watermarks(tp)
        return high if high >= 0 else None

    def reported_end(self, tp: TP) -> int:
        """ListOffsets "latest"; only trusted to tell an empty partition (0) from another."""
        with _io("list offsets"):
            _, high = self._c.get_watermark_offsets(self._tp(*tp), timeout=METADATA_TIMEOUT_S)
        return max(int(high), 0)

    def caught_up(self, tp: TP) -> bool:
        """Position at the fetch high watermark, or the partition is empty."""
        hw = self.highwater(tp)
        if hw is not None:
            return hw == 0 or self.position(tp) >= hw
        return self.reported_end(tp) == 0

    def partitions_of(self, topic: str) -> int | None:
        with _io("metadata"):
            md = self._c.list_topics(topic, timeout=METADATA_TIMEOUT_S)
        t = md.topics.get(topic)
        return len(t.partitions) if t is not None and t.error is None and t.partitions else None

    def lag(self) -> dict[TP, int]:
        out: dict[TP, int] = {}
        for tp in self.assignment():
            hw = self.highwater(tp)
            if hw is not None:
                out[tp] = max(hw - self.position(tp), 0)
        return out

    def close(self) -> None:
        self._c.close()


FLUSH_POLL_S = 0.1


class ConfluentSink:
    """confluent-kafka producer tuned for batches; thread-safe (shared by the roles).

    :meth:`flush` returns only when every message sent so far is acknowledged (``acks=all``)
    and raises if one failed or is still pending: the checkpoint commits offsets only then.
    """

    def __init__(self, bootstrap_servers: str, *, client: Mapping[str, Any] | None = None) -> None:
        ck = import_confluent()
        cfg: dict[str, Any] = {
            "bootstrap.servers": bootstrap_servers,
            "acks": "all",
            "linger.ms": 5,
            "batch.size": 512 * 1024,
            "message.max.bytes": MAX_MESSAGE_BYTES,
            "compression.type": "lz4",
            "partitioner": "murmur2_random",  # kafka-python's (and Java's) key → partition
            **COMMON,
            **librdkafka_config(client or {}),
            "logger": logging.getLogger(_RDKAFKA_LOG),
        }
        try:
            self._p = ck.Producer(cfg)
        except (ck.KafkaException, ValueError) as exc:
            msg = f"cannot create a Kafka producer for {bootstrap_servers}: {exc}"
            raise KafkaIOError(msg, value=bootstrap_servers) from exc
        self._lock = threading.Lock()
        self._failures: list[str] = []
        self._closed = False

    def _delivered(self, err: Any, _msg: Any) -> None:
        if err is not None:
            with self._lock:
                self._failures.append(str(err))

    def send(
        self,
        topic: str,
        value: bytes | None,
        *,
        key: bytes | None = None,
        partition: int | None = None,
        headers: Sequence[tuple[str, bytes]] | None = None,
    ) -> None:
        kwargs: dict[str, Any] = {"key": key, "on_delivery": self._delivered}
        if partition is not None:
            kwargs["partition"] = partition
        if headers:
            kwargs["headers"] = list(headers)
        with _io("produce"):
            try:
                self._p.produce(topic, value, **kwargs)
            except BufferError:  # the local queue is full: serve acks, then try once more
                self._p.poll(FLUSH_POLL_S)
                self._p.produce(topic, value, **kwargs)
            self._p.poll(0)

    def flush(self, timeout_s: float = 30.0) -> None:
        """Wait until everything sent so far is acknowledged; raise if any send failed."""
        deadline = time.monotonic() + timeout_s
        with _io("flush"):
            left = self._p.flush(timeout_s)
            while left and time.monotonic() < deadline:
                left = self._p.flush(max(deadline - time.monotonic(), 0.0))
        with self._lock:
            failures, self._failures = self._failures, []
        if failures:
            msg = f"a produce to Kafka failed: {failures[0]} ({len(failures)} failed)"
            raise KafkaIOError(msg, value=len(failures))
        if left:
            msg = f"{left} produce(s) to Kafka not acknowledged within {timeout_s:g}s"
            raise KafkaIOError(msg, value=left)

    def close(self) -> None:
        """Flush for up to 5 s and drop the broker connections (``Producer.close`` where the
        installed confluent-kafka has it; older ones close when the object goes away)."""
        if self._closed:
            return
        self._closed = True
        self._p.flush(5.0)
        close = getattr(self._p, "close", None)
        if close is not None:
            close()
