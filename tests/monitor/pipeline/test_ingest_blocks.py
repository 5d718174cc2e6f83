"""Ingest's block arithmetic on the in-memory broker: crashes, eager rebalances, failed flushes."""

from __future__ import annotations

import pytest
from _memory_pipeline import (
    LAYOUT,
    REQUESTS,
    drain,
    expected_counts,
    folded_totals,
    ingest,
    judge,
    judge_totals,
    new_broker,
    partials_of,
    produce,
    request_log,
)

from monitor.kafka.memory import MemorySource, SimulatedCrash


def test_crash_between_publish_and_commit_recomputes_the_open_block() -> None:
    """Ingest dies after its partials are acknowledged but before the commit: the successor
    recomputes the open blocks from their start and the totals stay exact."""
    lines = request_log(3000, seed=2)
    broker = new_broker()
    produce(broker, lines[:1300])  # 650 per partition: block 1 (500-999) open on both
    a = ingest(broker)
    drain(a)
    assert a.checkpoint()
    assert broker.committed("bakemon-ingest", (REQUESTS, 0)) == 500
    produce(broker, lines[1300:1700])  # 850 per partition, block 1 still open
    drain(a)
    a.source.crash_on_next_commit()  # type: ignore[attr-defined]
    with pytest.raises(SimulatedCrash):
        a.checkpoint()
    assert any(p.block == 1 and p.upto == 850 for p in partials_of(broker)), "published"
    assert broker.committed("bakemon-ingest", (REQUESTS, 0)) == 500
    a.source.close()  # the dead process leaves the group
    produce(broker, lines[1700:])
    b = ingest(broker)
    drain(b)
    assert b.checkpoint()
    assert folded_totals(broker) == expected_counts(lines)
    j = judge(broker)
    drain(j)
    assert judge_totals(j) == expected_counts(lines)


def test_crash_before_flush_loses_the_unflushed_partials_only() -> None:
    """Partials sent but never flushed vanish with the process; the successor republishes
    them from the last commit and nothing is lost or counted twice."""
    lines = request_log(1900, seed=3)
    broker = new_broker()
    produce(broker, lines[:1200])
    a = ingest(broker)
    drain(a)
    assert a.checkpoint()
    produce(broker, lines[1200:])  # 950 per partition: block 1 open
    drain(a)
    a.send_outputs(a.sink)  # sent, never flushed: the process dies here
    assert a.sink.pending > 0  # type: ignore[attr-defined]
    a.source.close()
    b = ingest(broker)
    drain(b)
    assert b.checkpoint()
    assert folded_totals(broker) == expected_counts(lines)


def test_eager_rebalance_keeping_a_partition_mid_block() -> None:
    """A keeps partition 0 through an eager rebalance while mid-block on it: it recomputes the
    block from the commit instead of continuing (which would count its first half twice)."""
    lines = request_log(4000, seed=4)
    broker = new_broker()
    produce(broker, lines[:1400])  # 700 per partition: mid-block 1
    a = ingest(broker, fetch_records=50)
    drain(a)
    assert a.checkpoint()
    produce(broker, lines[1400:1800])
    for _ in range(3):  # part of the new records only: A holds un-checkpointed state
        a.step(0.0)
    b = ingest(broker)  # joins: eager rebalance, A keeps partition 0, B takes partition 1
    assert a.source.assignment() == {(REQUESTS, 0)}
    assert b.source.assignment() == {(REQUESTS, 1)}
    produce(broker, lines[1800:])
    drain(a, b)
    assert a.checkpoint() and b.checkpoint()
    assert folded_totals(broker) == expected_counts(lines)
    j = judge(broker)
    drain(j)
    assert judge_totals(j) == expected_counts(lines)


def test_failed_flush_commits_nothing_and_publishes_again() -> None:
    """A transient produce failure leaves the commit where it was; the next checkpoint sends
    the partials and the dead letters again, and then commits."""
    lines = request_log(1200, seed=5)
    garbage = [b"not json", b"[1]"]
    broker = new_broker(request_partitions=1)
    produce(broker, lines[:300] + garbage + lines[300:])
    a = ingest(broker)
    a.step(0.0)  # the assignment: seek to the commit, drop what this poll fetched
    a.sink.fail_next_flush(delivered=1)  # type: ignore[attr-defined]
    a.step(0.0)  # blocks 0 and 1 complete: the checkpoint runs, and fails
    assert a.stats.checkpoint_failures == 1
    assert broker.committed("bakemon-ingest", (REQUESTS, 0)) is None
    a.step(0.0)  # completed blocks are still pending: checkpoint again
    assert broker.committed("bakemon-ingest", (REQUESTS, 0)) == 1000
    assert folded_totals(broker) == expected_counts(lines)
    dead = broker.records(LAYOUT.dead_letter_topic)
    assert sorted({r.value for r in dead}) == sorted(garbage)  # at least once, none lost


def test_zombie_commit_of_a_revoked_partition_is_not_attempted() -> None:
    """After losing a partition, a worker's checkpoint commits only what it still owns."""
    broker = new_broker()
    produce(broker, request_log(1400, seed=6))
    a = ingest(broker)
    drain(a)
    other = MemorySource(broker, group_id="bakemon-ingest", topics=[REQUESTS])
    assert a.source.assignment() == {(REQUESTS, 0)}
    assert a.checkpoint()
    assert a.stats.commit_failures == 0  # a commit of partition 1 would have been refused
    other.close()


@pytest.mark.parametrize("fetch_records", [1, 7, 113])
def test_a_flush_publishes_the_same_partials_however_the_records_were_polled(
    fetch_records: int,
) -> None:
    """Ingest summarises a flush's polled batches together: the partials of a flush do not
    depend on how the records arrived (one poll, or batches of 1, 7, 113 records). Blocks
    larger than the log: a block that completes is flushed at once, which would cut the
    flushes differently."""
    lines = request_log(2600, seed=5)

    def published(fetch: int | None) -> list[bytes]:
        broker = new_broker()
        produce(broker, lines)
        w = ingest(broker, block_offsets=5_000, fetch_records=fetch)
        drain(w)
        assert w.checkpoint()
        return sorted(r.value or b"" for r in broker.records(LAYOUT.partials))

    one_poll = published(None)
    assert len(one_poll) >= 4  # two bakes x two partitions, and the clocks
    assert published(fetch_records) == one_poll


@pytest.mark.parametrize(
    "where", ["monitor.pipeline.ingest.tag", "monitor.pipeline.ingest.cell_counts"]
)
def test_an_unexpected_error_recomputes_from_the_commits_and_counts_exactly(
    where: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug that raises while records are folded (tagging, in a poll) or published (the
    flush's summaries) leaves nothing half counted: ingest recomputes every partition from its
    last commit, as after a crash, and the judge's totals are exact."""
    import importlib

    module, name = where.rsplit(".", 1)
    real = getattr(importlib.import_module(module), name)
    calls = {"n": 0}

    def flaky(*a: object, **k: object) -> object:
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("a bug")
        return real(*a, **k)

    monkeypatch.setattr(where, flaky)
    lines = request_log(2400, seed=8)
    broker = new_broker()
    w = ingest(broker, block_offsets=500, fetch_records=100)
    raised = 0
    for i in range(0, len(lines), 300):
        produce(broker, lines[i : i + 300])
        for _ in range(200):
            try:
                if not w.step(0.0) and not sum(w.source.lag().values()):
                    break
            except RuntimeError:
                raised += 1
        try:
            assert w.checkpoint()
        except RuntimeError:
            raised += 1
    for _ in range(50):
        w.step(0.0)
    assert w.checkpoint()
    assert raised == 1
    assert folded_totals(broker) == expected_counts(lines)
    j = judge(broker)
    drain(j)
    assert judge_totals(j) == expected_counts(lines)


def test_a_tombstone_is_dead_lettered_as_a_message_without_a_value() -> None:
    """A request message without a value (a Kafka tombstone) is rejected and dead-lettered
    with that reason; the records around it are counted exactly."""
    lines = request_log(900, seed=12)
    broker = new_broker(request_partitions=1)
    produce(broker, lines[:400])
    broker.append(REQUESTS, None, partition=0)
    produce(broker, lines[400:])
    a = ingest(broker)
    drain(a)
    assert a.checkpoint()
    assert a.stats.rejected == {"invalid_json": 1}
    assert folded_totals(broker) == expected_counts(lines)
    (dead,) = broker.records(LAYOUT.dead_letter_topic)
    headers = dict(dead.headers)
    assert dead.value is None
    assert headers["bakemon.detail"] == b"message has no value"
    assert headers["bakemon.source"] == f"{REQUESTS}/0/400".encode()
