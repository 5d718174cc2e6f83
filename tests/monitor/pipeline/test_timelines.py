"""The judge publishes each bake's timeline and a replacement judge picks it up."""

from __future__ import annotations

import orjson
from _memory_pipeline import BOTH, CHECKOUT, LAYOUT, drain, ingested, judge, request_log

from monitor.bakes.spec import Registry
from monitor.kafka.memory import MemoryBroker, MemorySource
from monitor.records.fieldmap import PRESETS
from monitor.replay import replay
from monitor.surfaces.timelines import TimelineView

LINES = request_log(6000, seed=7)


def _published(broker: MemoryBroker) -> dict[str, dict[str, object]]:
    return {k.decode(): orjson.loads(v) for k, v in broker.latest(LAYOUT.timelines).items()}


def test_timelines_are_published_and_match_the_verdict() -> None:
    broker = ingested(LINES, block_offsets=400)
    j = judge(broker, timeline_interval_s=0.0)
    drain(j)
    assert j.checkpoint()
    got = _published(broker)
    assert set(got) == {b.id for b in BOTH.bakes}
    for bake_id, doc in got.items():
        pts = doc["points"]
        assert pts, bake_id
        v = j.bakes[bake_id].verdict
        assert pts[-1]["requests"] == {  # type: ignore[index]
            "canary": v.tests.tested_canary,
            "baseline": v.tests.tested_baseline,
        }
        assert pts[-1]["status"] == v.status.value  # type: ignore[index]


def test_a_replacement_judge_continues_the_published_timeline() -> None:
    """Killed after a checkpoint, the next judge restores the timeline (trimmed to its
    restored state) and ends with the same points as an uninterrupted judge."""
    clean = ingested(LINES, block_offsets=400)
    j0 = judge(clean, timeline_interval_s=0.0)
    drain(j0)
    assert j0.checkpoint()
    want = _published(clean)

    broker = ingested(LINES, block_offsets=400)
    j1 = judge(broker, fetch_records=10, timeline_interval_s=0.0)
    for _ in range(6):
        j1.step(0.0)
    assert j1.checkpoint()
    half = _published(broker)
    for _ in range(3):
        j1.step(0.0)
    j1.source.close()  # killed: nothing after the checkpoint was flushed
    j2 = judge(broker, timeline_interval_s=0.0)
    drain(j2)
    assert j2.checkpoint()
    assert j2.stats.restored == 2
    got = _published(broker)
    for bake_id, doc in half.items():
        n = len(doc["points"])  # type: ignore[arg-type]
        assert got[bake_id]["points"][:n] == doc["points"]  # type: ignore[index]
    assert got == want


def _sent(broker: MemoryBroker, bake_id: str) -> int:
    return sum(r.key == bake_id.encode() for r in broker.records(LAYOUT.timelines))


def test_publication_waits_for_its_interval_unless_the_status_changes() -> None:
    # 300 s: 27 windows close; a flush per block, so the judge folds them over many messages
    broker = ingested(request_log(30_000, seed=7), block_offsets=400, fetch_records=400)
    t = [0.0]
    j = judge(broker, fetch_records=4, timeline_interval_s=60.0, clock=lambda: t[0])
    for _ in range(200):  # the first points go out at once (a new status)
        j.step(0.0)
        assert j.checkpoint()
        if _sent(broker, CHECKOUT.id):
            break
    assert _sent(broker, CHECKOUT.id) == 1, "no timeline was ever published"
    tl = j.timelines.get(CHECKOUT.id)
    assert tl is not None
    before, status = tl.version, j.bakes[CHECKOUT.id].verdict.status
    for _ in range(400):
        j.step(0.0)
        assert j.checkpoint()
        if tl.version > before + 1:
            break
    assert tl.version > before + 1, "no new points to hold back"
    assert j.bakes[CHECKOUT.id].verdict.status is status
    assert _sent(broker, CHECKOUT.id) == 1  # more points, but within the interval
    t[0] = 61.0
    j.step(0.0)
    assert j.checkpoint()
    assert _sent(broker, CHECKOUT.id) == 2


def test_the_api_view_serves_what_the_judge_published() -> None:
    broker = ingested(LINES, block_offsets=400)
    j = judge(broker, timeline_interval_s=0.0)
    drain(j)
    assert j.checkpoint()
    view = TimelineView(
        "unused", LAYOUT, source_factory=lambda tps: MemorySource(broker, partitions=list(tps))
    )
    view.poll_timeout_s = 0.01
    view.start()
    try:
        assert view.timeline(CHECKOUT.id) == _published(broker)[CHECKOUT.id]
        assert view.timeline("no-such-bake") is None
    finally:
        view.stop()


def test_replay_takes_the_same_points_as_the_judge() -> None:
    """Event-time sampling: the file replayed gives the judge's timeline (same windows)."""
    broker = ingested(LINES, block_offsets=400)
    j = judge(broker, timeline_interval_s=0.0)
    drain(j)
    assert j.checkpoint()
    result = replay(iter([LINES]), Registry(BOTH.bakes), PRESETS["plain"])
    for bake_id, t in result.timelines.items():
        judged = _published(broker)[bake_id]["points"]
        assert t.points[-1]["requests"] == judged[-1]["requests"]  # type: ignore[index]
        assert t.points[-1]["status"] == judged[-1]["status"]  # type: ignore[index]


def test_a_decision_is_published_at_once_not_at_the_next_checkpoint() -> None:
    """Decision latency (issue 13): with a checkpoint interval that never comes due, the step
    whose partial decides a bake also publishes its document (and alert), exactly once."""
    from _memory_pipeline import documents

    broker = ingested(request_log(30_000, seed=7), block_offsets=400)
    j = judge(broker, fetch_records=20)  # checkpoint_interval_s: never
    for _ in range(2_000):
        j.step(0.0)
        if j.bakes.get(CHECKOUT.id) and j.bakes[CHECKOUT.id].verdict.decided:
            break
    v = j.bakes[CHECKOUT.id].verdict
    assert v.decided, "checkout never decided"
    assert documents(broker)[CHECKOUT.id]["status"] == v.status.value
    alerts = [r for r in broker.records(LAYOUT.alerts) if r.key == CHECKOUT.id.encode()]
    assert len(alerts) == 1
