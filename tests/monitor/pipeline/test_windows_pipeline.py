"""Event-time windows through ingest and judge: the stream decides like the replay, however
the partitions are read and however the topic is keyed."""

from __future__ import annotations

from collections.abc import Sequence

import orjson
from _memory_pipeline import BOTH, REQUESTS, drain, ingest, judge, new_broker, request_log

from monitor.kafka.memory import MemoryBroker
from monitor.records.fieldmap import PRESETS
from monitor.replay import replay

LINES = request_log(12_000, seed=5)  # 120 s of event time


def _replayed() -> dict[str, tuple[str, int, object]]:
    r = replay(iter([LINES[i : i + 1000] for i in range(0, len(LINES), 1000)]), BOTH, PRESETS["plain"])  # fmt: skip
    return {k: _key(v.document()) for k, v in r.verdicts.items()}


def _key(doc: dict[str, object]) -> tuple[str, int, object]:
    progress = doc["progress"]
    assert isinstance(progress, dict)
    return str(doc["status"]), int(progress["tested_canary_requests"]), doc["decided_at"]


def _streamed(broker: MemoryBroker, *, fetch_records: int | None) -> dict[str, tuple[str, int, object]]:  # fmt: skip
    ing = ingest(broker, block_offsets=700, fetch_records=fetch_records)
    drain(ing)
    assert ing.checkpoint()
    j = judge(broker)
    drain(j)
    docs = {k: st.verdict.document() for k, st in j.bakes.items()}
    for doc in docs.values():
        progress = doc["progress"]
        assert progress["late_requests"] == {"canary": 0, "baseline": 0}
    return {k: _key(d) for k, d in docs.items()}


def _produce(broker: MemoryBroker, lines: Sequence[bytes], by_cohort: bool) -> None:
    n = broker.partitions(REQUESTS)
    for i, line in enumerate(lines):
        version = orjson.loads(line)["version"]
        p = (0 if version in ("v42", "v8", "v3") else 1) if by_cohort else i % n
        broker.append(REQUESTS, line, partition=p)


def test_partitions_read_one_after_another_decide_like_the_replay() -> None:
    """Ingest reads each partition to its end before the next (a catch-up): the watermark
    waits for the slowest partition, so no record is late and the decisions, their windows
    and the tested counts equal the replay's."""
    broker = new_broker(4)
    _produce(broker, LINES, by_cohort=False)
    assert _streamed(broker, fetch_records=100_000) == _replayed()


def test_a_topic_keyed_by_cohort_decides_like_a_randomly_keyed_one() -> None:
    """One cohort per partition (a topic keyed by pod): every window still pairs canary and
    baseline, so the 2x-error canary HALTs at the same window as with random keys."""
    keyed = new_broker(2)
    _produce(keyed, LINES, by_cohort=True)
    mixed = new_broker(2)
    _produce(mixed, LINES, by_cohort=False)
    by_pod = _streamed(keyed, fetch_records=300)
    assert by_pod == _streamed(mixed, fetch_records=300) == _replayed()
    assert by_pod["checkout-v42"][0] == "HALT"
