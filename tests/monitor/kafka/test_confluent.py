"""ConfluentSource/ConfluentSink on the embedded broker: the Source/Sink semantics the roles use."""

from __future__ import annotations

import time

import pytest

from monitor.kafka.broker import EmbeddedBroker
from monitor.kafka.io import KafkaIOError, consume_to_end, read_to_end
from monitor.kafka.topics import TopicLayout, ensure_topics

pytest.importorskip("confluent_kafka", reason="confluent-kafka is not installed")

from monitor.kafka.confluent import ConfluentSink, ConfluentSource


def _topic(bs: str, name: str, partitions: int) -> None:
    ensure_topics(bs, TopicLayout("cfk."), extra=[(name, partitions)])


def _fill(bs: str, topic: str, per_partition: dict[int, int]) -> None:
    sink = ConfluentSink(bs)
    for p, n in per_partition.items():
        for i in range(n):
            sink.send(topic, b"v%d" % i, key=b"k%d" % (i % 3), partition=p, headers=[("h", b"x")])
    sink.flush(10)
    sink.close()


def test_read_to_end_seeks_fresh_partitions_and_stops_at_the_fetch_high_watermark(
    broker: EmbeddedBroker,
) -> None:
    """Seeks right after assign work, an empty partition counts as caught up, and read_to_end
    returns the latest value per key (Tansu's ListOffsets "latest" would stop too early)."""
    bs = broker.bootstrap_servers
    _topic(bs, "t", 3)
    _fill(bs, "t", {0: 10, 1: 4})  # one batch each: ListOffsets "latest" answers 1
    src = ConfluentSource(bs, partitions=[("t", 0), ("t", 1), ("t", 2)])
    try:
        seen: list[tuple[int, int]] = []
        consume_to_end(src, "t", [0, 1, 2], lambda p, r: seen.append((p, r.offset)), timeout_s=20)
        assert sorted(seen) == [(0, i) for i in range(10)] + [(1, i) for i in range(4)]
        assert src.caught_up(("t", 2)) and src.highwater(("t", 0)) == 10
        assert src.lag() == {("t", 0): 0, ("t", 1): 0, ("t", 2): 0}
        src.seek(("t", 0), 7)
        assert not src.caught_up(("t", 0)) and src.lag()[("t", 0)] == 3
        snap = read_to_end(src, "t", [0], timeout_s=20)
        assert snap.values == {b"k0": b"v9", b"k1": b"v7", b"k2": b"v8"}
        assert src.partitions_of("t") == 3 and src.partitions_of("missing") is None
    finally:
        src.close()


def test_records_carry_offset_timestamp_key_value(broker: EmbeddedBroker) -> None:
    """poll groups records by (topic, partition) with the Record attributes, in offset order."""
    bs = broker.bootstrap_servers
    _topic(bs, "r", 2)
    t0_ms = int(time.time() * 1000) - 1000
    _fill(bs, "r", {0: 3, 1: 2})
    src = ConfluentSource(bs, partitions=[("r", 0), ("r", 1)])
    try:
        got: dict[tuple[str, int], list[tuple[int, bytes | None, bytes | None]]] = {}
        deadline = time.monotonic() + 20
        while sum(map(len, got.values())) < 5 and time.monotonic() < deadline:
            for tp, recs in src.poll(0.5, 100).items():
                assert all(r.timestamp >= t0_ms for r in recs)
                got.setdefault(tp, []).extend((r.offset, r.key, r.value) for r in recs)
        assert got == {
            ("r", 0): [(0, b"k0", b"v0"), (1, b"k1", b"v1"), (2, b"k2", b"v2")],
            ("r", 1): [(0, b"k0", b"v0"), (1, b"k1", b"v1")],
        }
    finally:
        src.close()


def test_group_commits_explicit_offsets_and_an_eager_rebalance_reports_kept_partitions(
    broker: EmbeddedBroker,
) -> None:
    """committed() returns what commit() stored; when a second member joins, the first sees its
    kept partition both revoked and assigned (eager), and restarts it at the committed offset."""
    bs = broker.bootstrap_servers
    _topic(bs, "g", 2)
    _fill(bs, "g", {0: 6, 1: 6})
    a = ConfluentSource(bs, group_id="grp", topics=["g"])
    b: ConfluentSource | None = None
    try:
        deadline = time.monotonic() + 30
        seen = 0  # read all 12 first: records polled later come only after the rebalance
        while (len(a.assignment()) < 2 or seen < 12) and time.monotonic() < deadline:
            seen += sum(map(len, a.poll(0.2, 100).values()))
        assert a.take_rebalance() == ({("g", 0), ("g", 1)}, set())
        a.commit({("g", 0): 4, ("g", 1): 2})
        assert (a.committed(("g", 0)), a.committed(("g", 1))) == (4, 2)
        b = ConfluentSource(bs, group_id="grp", topics=["g"])
        first: dict[tuple[str, int], int] = {}
        deadline = time.monotonic() + 30
        while not (a.assignment() and b.assignment()) and time.monotonic() < deadline:
            for src in (a, b):
                for tp, recs in src.poll(0.1, 100).items():
                    first.setdefault(tp, recs[0].offset)
        assigned, revoked = a.take_rebalance()
        assert revoked == {("g", 0), ("g", 1)} and assigned == a.assignment()
        assert len(assigned) == 1 and b.assignment() == {("g", 0), ("g", 1)} - assigned
        deadline = time.monotonic() + 10
        while len(first) < 2 and time.monotonic() < deadline:
            for src in (a, b):
                for tp, recs in src.poll(0.1, 100).items():
                    first.setdefault(tp, recs[0].offset)
        assert first == {("g", 0): 4, ("g", 1): 2}
    finally:
        a.close()
        if b is not None:
            b.close()


def test_send_and_flush_raise_kafka_io_errors(broker: EmbeddedBroker) -> None:
    """A send the client refuses, or a message not acknowledged (broker gone), raise the
    transient KafkaIOError the checkpoint retries on: nothing is committed after it."""
    bs = broker.bootstrap_servers
    _topic(bs, "f", 1)
    sink = ConfluentSink(bs, client={"rdkafka_message_timeout_ms": 2000})
    try:
        sink.send("f", b"ok", partition=0)
        sink.flush(10)
        with pytest.raises(KafkaIOError, match="Unknown partition"):
            sink.send("f", b"nowhere", partition=5)
        broker.stop()
        sink.send("f", b"lost", partition=0)
        with pytest.raises(KafkaIOError, match="failed"):
            sink.flush(10)
    finally:
        sink.close()
