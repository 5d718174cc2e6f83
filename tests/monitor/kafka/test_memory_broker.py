"""The in-memory broker behaves like Kafka where the pipeline depends on it."""

from __future__ import annotations

import doctest

import pytest

import monitor.kafka.memory
from monitor.kafka.io import KafkaIOError, read_to_end
from monitor.kafka.memory import MemoryBroker, MemorySink, MemorySource, SimulatedCrash


def _broker() -> MemoryBroker:
    b = MemoryBroker()
    b.create_topic("t", 2)
    return b


def test_module_examples_run() -> None:
    """The module docstring's example is correct."""
    assert doctest.testmod(monitor.kafka.memory).failed == 0


def test_eager_rebalance_reports_a_kept_partition_as_revoked_and_assigned() -> None:
    """Eager: a kept partition is in both sets and its position goes back to the commit."""
    b = _broker()
    for i in range(10):
        b.append("t", b"%d" % i, partition=i % 2)
    a = MemorySource(b, group_id="g", topics=["t"])
    assert a.take_rebalance() == ({("t", 0), ("t", 1)}, set())
    a.poll(0.0, 100)
    a.commit({("t", 0): 2})
    other = MemorySource(b, group_id="g", topics=["t"])
    assert a.take_rebalance() == ({("t", 0)}, {("t", 0), ("t", 1)})
    assert other.take_rebalance() == ({("t", 1)}, set())
    assert a.position(("t", 0)) == 2 and other.position(("t", 1)) == 0


def test_cooperative_rebalance_reports_only_moved_partitions() -> None:
    """Not eager: only the partitions that moved are reported, kept ones keep their position."""
    b = _broker()
    b.append("t", b"x", partition=0)
    a = MemorySource(b, group_id="g", topics=["t"])
    other = MemorySource(b, group_id="g", topics=["t"])
    a.poll(0.0, 10)
    a.take_rebalance(), other.take_rebalance()
    b.rebalance("g", {a: [("t", 0), ("t", 1)], other: []}, eager=False)
    assert a.take_rebalance() == ({("t", 1)}, set())
    assert other.take_rebalance() == (set(), {("t", 1)})
    assert a.position(("t", 0)) == 1


def test_sends_are_visible_only_after_flush_and_a_failed_flush_loses_the_rest() -> None:
    """Unflushed sends are lost with the sink; a failing flush delivers a prefix and raises."""
    b = _broker()
    s = MemorySink(b)
    s.send("t", b"a", partition=0)
    assert b.high_watermark(("t", 0)) == 0
    s.fail_next_flush(delivered=1)
    s.send("t", b"b", partition=0)
    with pytest.raises(KafkaIOError):
        s.flush()
    assert [r.value for r in b.records("t", 0)] == [b"a"]
    s.send("t", b"c", partition=0)
    s.close()
    assert b.high_watermark(("t", 0)) == 1


def test_commits_are_per_group_and_refused_for_unowned_partitions() -> None:
    """A member commits only what it owns (a zombie is refused); a crash commits nothing."""
    b = _broker()
    a = MemorySource(b, group_id="g", topics=["t"])
    MemorySource(b, group_id="g", topics=["t"])
    with pytest.raises(KafkaIOError, match="not assigned"):
        a.commit({("t", 1): 1})
    a.commit({("t", 0): 1})
    assert b.committed("g", ("t", 0)) == 1 and b.committed("h", ("t", 0)) is None
    a.crash_on_next_commit()
    with pytest.raises(SimulatedCrash):
        a.commit({("t", 0): 5})
    assert b.committed("g", ("t", 0)) == 1


def test_read_to_end_stops_at_the_high_watermark() -> None:
    """read_to_end on a memory source returns the latest value per key, tombstones as None."""
    b = _broker()
    for key, value in ((b"k", b"1"), (b"j", b"2"), (b"k", b"3"), (b"j", None)):
        b.append("t", value, key=key, partition=1)
    snap = read_to_end(MemorySource(b, partitions=[("t", 1)]), "t", [1])
    assert snap.values == {b"k": b"3", b"j": None}
    assert b.latest("t") == {b"k": b"3"}


def test_read_to_end_of_one_partition_ignores_the_others_assigned() -> None:
    """A source assigned several partitions, read one partition at a time while another is
    written: each read holds only its own partition's records."""
    b = _broker()
    b.append("t", b"a", key=b"in-0", partition=0)
    b.append("t", b"b", key=b"in-1", partition=1)
    src = MemorySource(b, partitions=[("t", 0), ("t", 1)])
    first = read_to_end(src, "t", [1])
    b.append("t", b"c", key=b"late-0", partition=0)  # written between the two reads
    second = read_to_end(src, "t", [1])
    assert first.values == {b"in-1": b"b"}
    assert second.values == {b"in-1": b"b"}
    assert read_to_end(src, "t", [0]).values == {b"in-0": b"a", b"late-0": b"c"}
