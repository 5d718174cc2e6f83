"""The one Checkpoint: send → flush → commit owned partitions, or mark to resend."""

from __future__ import annotations

from collections.abc import Mapping

from monitor.kafka.io import TP, KafkaIOError, Sink
from monitor.kafka.memory import MemoryBroker, MemorySink, MemorySource
from monitor.pipeline.checkpoint import Checkpoint


class _Role:
    """An Outputs with one cumulative output and fixed offsets."""

    def __init__(self) -> None:
        self.dirty = True
        self.failures = 0

    def send_outputs(self, sink: Sink) -> None:
        if self.dirty:
            sink.send("out", b"state", key=b"k", partition=0)
            self.dirty = False

    def outputs_failed(self) -> None:
        self.dirty = True
        self.failures += 1

    def outputs_acked(self) -> Mapping[TP, int]:
        return {("in", 0): 7, ("in", 1): 9}


def _setup() -> tuple[MemoryBroker, MemorySource, MemorySink]:
    broker = MemoryBroker()
    broker.create_topics([("in", 2), ("out", 1), ("side", 1)])
    src = MemorySource(broker, group_id="g", topics=["in"])
    MemorySource(broker, group_id="g", topics=["in"])  # takes partition 1
    return broker, src, MemorySink(broker)


def test_failed_flush_resends_outputs_and_side_outputs_then_commits_owned_only() -> None:
    """No commit after a failed flush; the next run resends both kinds of output and commits
    only the partitions this member owns."""
    broker, src, sink = _setup()
    cp = Checkpoint("t", src, sink, interval_s=1.0, clock=lambda: 0.0)
    role = _Role()
    cp.send("side", b"alert")
    sink.fail_next_flush()
    assert not cp.run(role)
    assert role.failures == 1 and broker.committed("g", ("in", 0)) is None
    assert cp.run(role)
    assert [r.value for r in broker.records("out")] == [b"state"]
    assert [r.value for r in broker.records("side")] == [b"alert"]
    assert broker.committed("g", ("in", 0)) == 7 and broker.committed("g", ("in", 1)) is None
    assert cp.commit_failures == 0 and (cp.completed, cp.failed) == (1, 1)


def test_due_follows_the_injected_clock() -> None:
    """A checkpoint comes due ``interval_s`` after the previous run, on the role's clock."""
    _, src, sink = _setup()
    now = [0.0]
    cp = Checkpoint("t", src, sink, interval_s=2.0, clock=lambda: now[0])
    assert not cp.due()
    now[0] = 2.0
    assert cp.due()
    cp.run(_Role())
    assert not cp.due()


class _FailingSends(MemorySink):
    """A sink whose next ``fail`` sends raise a transient error (no metadata in time)."""

    def __init__(self, broker: MemoryBroker, fail: int) -> None:
        super().__init__(broker)
        self.fail = fail

    def send(self, topic: str, value: bytes | None, **kw: object) -> None:  # type: ignore[override]
        if self.fail:
            self.fail -= 1
            raise KafkaIOError("simulated send timeout", value=topic)
        super().send(topic, value, **kw)  # type: ignore[arg-type]


def test_failed_sends_are_a_failed_checkpoint_not_a_crash() -> None:
    """A transient error from a send (side output or the role's own) commits nothing and loses
    nothing: the next checkpoint sends everything again, then commits."""
    broker, src, _ = _setup()
    sink = _FailingSends(broker, fail=2)
    cp = Checkpoint("t", src, sink, interval_s=1.0, clock=lambda: 0.0)
    role = _Role()
    cp.send("side", b"alert")  # fails: kept for the next checkpoint
    assert not cp.run(role)  # the role's send fails
    assert role.failures == 1 and broker.committed("g", ("in", 0)) is None
    assert cp.run(role)
    assert [r.value for r in broker.records("out")] == [b"state"]
    assert [r.value for r in broker.records("side")] == [b"alert"]
    assert broker.committed("g", ("in", 0)) == 7
