"""The demo's traffic child on a real broker: it produces only while the pipeline keeps up,
stops when told (its records flushed), and a child that fails reports why."""

from __future__ import annotations

import time

from monitor.cli.demo import SCENARIOS
from monitor.cli.demo_traffic import CHUNK, PARTITIONS, REQUEST_TOPIC, DemoTraffic
from monitor.kafka.broker import EmbeddedBroker
from monitor.kafka.io import KafkaSource, consume_to_end
from monitor.kafka.topics import TopicLayout, ensure_topics


def _records(bootstrap: str) -> int:
    """Records in the request topic, read to its end (the broker's ListOffsets "latest" is
    not exact, see ARCHITECTURE.md)."""
    src = KafkaSource(bootstrap, partitions=[(REQUEST_TOPIC, p) for p in range(PARTITIONS)])
    offsets: list[int] = []
    try:
        consume_to_end(src, REQUEST_TOPIC, range(PARTITIONS), lambda _, r: offsets.append(r.offset))
    finally:
        src.close()
    return len(offsets)


def _wait(cond: object, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_traffic_waits_while_the_pipeline_is_behind_and_stops_when_told(
    broker: EmbeddedBroker,
) -> None:
    bootstrap = broker.bootstrap_servers
    ensure_topics(bootstrap, TopicLayout(), extra=[(REQUEST_TOPIC, PARTITIONS)])
    asked: list[int] = []

    def keeps_up(sent: int) -> bool:
        asked.append(sent)
        return sent < 3 * CHUNK  # "behind" from the third chunk on

    t = DemoTraffic(bootstrap, SCENARIOS["errors"].regression, 5, 0.0, keeps_up=keeps_up)
    t.start()
    _wait(lambda: t.sent >= 3 * CHUNK, 60, "three chunks")
    time.sleep(1.5)  # a producer that ignored the answer would be far ahead by now
    assert t.sent == 3 * CHUNK
    assert asked[:2] == [CHUNK, 2 * CHUNK] and set(asked[2:]) == {3 * CHUNK}
    t.stop_event.set()
    t.join(20)
    assert not t.is_alive()
    assert t.error is None
    assert _records(bootstrap) == 3 * CHUNK  # flushed before the child exited


def test_a_failing_child_reports_its_error() -> None:
    t = DemoTraffic(
        "127.0.0.1:1", SCENARIOS["errors"].regression, 5, 0.0, kafka={"no_such_setting": "1"}
    )
    t.start()
    t.join(30)
    assert not t.is_alive()
    assert t.error is not None
    assert "no_such_setting" in str(t.error)
