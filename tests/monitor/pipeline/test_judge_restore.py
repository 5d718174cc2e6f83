"""The judge on the in-memory broker: restore on assignment, crashes, the document read model."""

from __future__ import annotations

from collections.abc import Sequence

import orjson
import pytest
from _memory_pipeline import (
    BOTH,
    CHECKOUT,
    LAYOUT,
    NEVER_S,
    SEARCH,
    documents,
    drain,
    expected_counts,
    ingested,
    judge,
    judge_totals,
    request_log,
)

from monitor.bakes.spec import BakeSpec, Registry
from monitor.kafka.memory import MemoryBroker, MemorySink, MemorySource, SimulatedCrash
from monitor.kafka.topics import DOCUMENT_MAX_BYTES, partition_for
from monitor.pipeline.judge import Judge
from monitor.pipeline.snapshot import Snapshot
from monitor.surfaces.views import VerdictView

LINES = request_log(6000, seed=7)


def _uninterrupted() -> dict[str, dict[str, object]]:
    broker = ingested(LINES, block_offsets=400)
    j = judge(broker)
    drain(j)
    assert j.checkpoint()
    return documents(broker)


def _judged_halfway(broker: MemoryBroker) -> None:
    """A judge folds part of the partials, checkpoints, folds more, then dies unflushed."""
    j = judge(broker, fetch_records=10)
    for _ in range(4):
        j.step(0.0)
    assert j.checkpoint()
    for _ in range(3):
        j.step(0.0)
    assert j.stats.partials > 0
    j.source.close()  # killed: nothing after the checkpoint was flushed or committed


def test_killed_judge_is_replaced_and_ends_with_the_same_documents() -> None:
    """A judge killed mid-stream and replaced restores its bakes from the state topic on
    assignment and ends with the documents of an uninterrupted run."""
    want = _uninterrupted()
    broker = ingested(LINES, block_offsets=400)
    _judged_halfway(broker)
    j = judge(broker)
    drain(j)
    assert j.stats.restored == 2
    assert j.checkpoint()
    assert judge_totals(j) == expected_counts(LINES)
    assert documents(broker) == want


def test_judge_crash_between_publish_and_commit_counts_nothing_twice() -> None:
    """State and documents are acknowledged but the commit never happens: the successor
    re-reads from the old commit and skips, per bake, what the snapshot already holds."""
    want = _uninterrupted()
    broker = ingested(LINES, block_offsets=400)
    j = judge(broker, fetch_records=10)
    for _ in range(6):
        j.step(0.0)
    j.source.crash_on_next_commit()  # type: ignore[attr-defined]
    with pytest.raises(SimulatedCrash):
        j.checkpoint()
    assert broker.committed("bakemon-judge", (LAYOUT.partials, 0)) is None
    assert broker.latest(LAYOUT.state), "the snapshots were published"
    j.source.close()
    k = judge(broker)
    drain(k)
    assert k.stats.skipped > 0
    assert k.checkpoint()
    assert judge_totals(k) == expected_counts(LINES)
    assert documents(broker) == want


def test_judge_upgraded_from_v1_continues_bakes_from_their_legacy_snapshots() -> None:
    """A v1 judge kept {"document", "state"} in the verdicts topic; after an upgrade the new
    judge restores those bakes from it (no state topic yet) and ends with the same documents."""
    want = _uninterrupted()
    broker = ingested(LINES, block_offsets=400)
    _judged_halfway(broker)
    for key, value in broker.latest(LAYOUT.state).items():
        state = orjson.loads(value)
        doc = Snapshot.decode(value).verdict.document()
        legacy = {"document": doc, "state": {**state, "v": 1}}
        partition = next(r.partition for r in broker.records(LAYOUT.state) if r.key == key)
        broker.append(LAYOUT.verdicts, orjson.dumps(legacy), key=key, partition=partition)
        broker.append(LAYOUT.state, None, key=key, partition=partition)  # as if never written
    j = judge(broker)
    drain(j)
    assert j.stats.restored == 2 and j.stats.unreadable_snapshots == 0
    assert j.checkpoint()
    assert j.checkpoint()  # a v1 value is replaced by its document once the v2 state is acked
    assert judge_totals(j) == expected_counts(LINES)
    assert documents(broker) == want


def test_state_and_documents_are_separate_and_documents_only_sent_when_changed() -> None:
    """The state topic holds versioned snapshots, the verdicts topic bare documents; an
    unchanged document is not sent again."""
    broker = ingested(LINES, block_offsets=400)
    j = judge(broker)
    drain(j)
    assert j.checkpoint()
    state = broker.latest(LAYOUT.state)
    assert {Snapshot.decode(v).verdict.spec.id for v in state.values()} == {CHECKOUT.id, SEARCH.id}
    docs = documents(broker)
    assert set(docs) == {CHECKOUT.id, SEARCH.id} and "state" not in docs[CHECKOUT.id]
    sent = len(broker.records(LAYOUT.verdicts))
    j._bakes[CHECKOUT.id].dirty = True  # state to write, but the same document
    assert j.checkpoint()
    assert len(broker.records(LAYOUT.verdicts)) == sent
    assert len(broker.records(LAYOUT.state)) == len(state) + 1


def test_failed_judge_flush_sends_state_and_documents_again() -> None:
    """A transient produce failure commits nothing; the next checkpoint resends everything."""
    want = _uninterrupted()
    broker = ingested(LINES, block_offsets=400)
    j = judge(broker)
    drain(j)
    j.sink.fail_next_flush()  # type: ignore[attr-defined]
    assert not j.checkpoint()
    assert not broker.latest(LAYOUT.verdicts) and not broker.latest(LAYOUT.state)
    assert broker.committed("bakemon-judge", (LAYOUT.partials, 0)) is None
    assert j.checkpoint()
    assert documents(broker) == want
    assert broker.committed("bakemon-judge", (LAYOUT.partials, 0)) == broker.high_watermark(
        (LAYOUT.partials, 0)
    )


def test_verdict_view_reads_only_documents() -> None:
    """The API's read model follows the verdicts topic (documents only) to its end."""
    broker = ingested(LINES, block_offsets=400)
    j = judge(broker)
    drain(j)
    assert j.checkpoint()
    view = VerdictView(
        "unused",
        LAYOUT,
        source_factory=lambda tps: MemorySource(broker, partitions=list(tps)),
    )
    view.poll_timeout_s = 0.01
    view.start()
    try:
        docs, _ = view.documents()
        assert docs == documents(broker) and view.unreadable == 0
    finally:
        view.stop()


def _wide_spec(created_at: str | None = None) -> BakeSpec:
    return BakeSpec.from_dict(
        {
            "id": "checkout-v42",
            "service": "checkout",
            "canary": "v42",
            "baseline": "v41",
            "created_at": created_at,
            "policy": {
                "latency": {
                    "quantiles": [0.5, 0.75, 0.9, 0.95, 0.99, 0.999],
                    "slo_thresholds_ms": [float(t) for t in range(5, 2000, 25)],
                },
                "coverage": {"segment": "zone", "min_values": 3},
                "blast_radius": {"segment": "zone", "max_values": 2},
            },
        }
    )


def test_document_of_a_wide_bake_is_far_below_the_message_limit() -> None:
    """Many latency thresholds and segment values still give a document under 10 % of 1 MB."""
    lines = [
        orjson.dumps(
            {
                **orjson.loads(line),
                "zone": f"zone-{i % 40}",
                "route": f"/r/{i % 300}",
                "host": f"host-{i % 500}",
            }
        )
        for i, line in enumerate(LINES)
    ]
    broker = ingested(lines, registry=Registry([_wide_spec(), SEARCH]), block_offsets=400)
    j = judge(broker, Registry([_wide_spec(), SEARCH]))
    drain(j)
    assert j.checkpoint()
    raw = broker.latest(LAYOUT.verdicts)[b"checkout-v42"]
    assert len(raw) < DOCUMENT_MAX_BYTES / 10, len(raw)
    assert len(orjson.loads(raw)["metrics"]["latency"]["thresholds"]) > 50


def test_oversized_document_is_counted_not_sent_and_does_not_stall_the_judge() -> None:
    """A document over the 1 MB limit is logged and counted; state and commits go on."""
    huge = _wide_spec(created_at="x" * (DOCUMENT_MAX_BYTES + 1))
    broker = ingested(LINES, block_offsets=400)
    j = judge(broker, Registry([huge, SEARCH]))
    drain(j)
    assert j.checkpoint()
    assert j.stats.oversized_documents == 1
    assert set(documents(broker)) == {SEARCH.id}
    assert {Snapshot.decode(v).verdict.spec.id for v in broker.latest(LAYOUT.state).values()} == {
        CHECKOUT.id,
        SEARCH.id,
    }
    assert broker.committed("bakemon-judge", (LAYOUT.partials, 0)) is not None
    assert j.checkpoint() and j.stats.oversized_documents == 1  # once per change


def test_override_in_the_registry_reaches_the_verdict_once() -> None:
    """An operator override published in the registry is applied once, audited, alerted."""
    broker = ingested(LINES, block_offsets=400)
    current = [BOTH]
    j = judge(broker, lambda: current[0])
    drain(j)
    d = SEARCH.to_dict()
    d["override"] = {"status": "HALT", "by": "sre", "reason": "pager", "at": 1_795_824_100.0}
    current[0] = Registry([CHECKOUT, BakeSpec.from_dict(d)])
    j.step(0.0)
    j.step(0.0)
    assert j.checkpoint()
    doc = documents(broker)[SEARCH.id]
    assert doc["status"] == "HALT" and doc["override"]["by"] == "sre"
    alerts = [orjson.loads(r.value or b"") for r in broker.records(LAYOUT.alerts)]
    assert sum(a["kind"] == "override" and a["labels"]["bake"] == SEARCH.id for a in alerts) == 1


def test_verdict_view_reads_a_v1_value_as_its_document() -> None:
    """During an upgrade the read model shows a bake whose latest value a v1 judge wrote."""
    broker = MemoryBroker()
    broker.create_topics([(LAYOUT.verdicts, LAYOUT.partials_partitions)])
    doc = {"id": CHECKOUT.id, "status": "PENDING", "reasons": ["evaluating"]}
    legacy = {"document": doc, "state": {"v": 1}}
    broker.append(LAYOUT.verdicts, orjson.dumps(legacy), key=CHECKOUT.id.encode(), partition=0)
    view = VerdictView(
        "unused", LAYOUT, source_factory=lambda tps: MemorySource(broker, partitions=list(tps))
    )
    view.poll_timeout_s = 0.01
    view.start()
    try:
        assert view.documents()[0] == {CHECKOUT.id: doc}
    finally:
        view.stop()


def _as_v1(broker: MemoryBroker) -> None:
    """Rewrite the judge's v2 state as a v1 judge would have left it (in the verdicts topic)."""
    for key, value in broker.latest(LAYOUT.state).items():
        state = orjson.loads(value)
        doc = Snapshot.decode(value).verdict.document()
        legacy = {"document": doc, "state": {**state, "v": 1}}
        partition = next(r.partition for r in broker.records(LAYOUT.state) if r.key == key)
        broker.append(LAYOUT.verdicts, orjson.dumps(legacy), key=key, partition=partition)
        broker.append(LAYOUT.state, None, key=key, partition=partition)


def test_upgraded_judge_writes_v2_state_before_its_document_replaces_the_v1_value() -> None:
    """A bake restored from a v1 value gets a v2 snapshot before (or with) the document that
    replaces that value, so the next owner still finds its state, even with no new partials."""
    broker = ingested(LINES, block_offsets=400)
    v1 = judge(broker)
    drain(v1)
    assert v1.checkpoint()
    v1.source.close()
    _as_v1(broker)
    j = judge(broker)
    drain(j)  # nothing new to fold: the v1 judge committed everything
    assert j.stats.restored == 2
    for _ in range(2):
        assert j.checkpoint()
    j.source.close()
    k = judge(broker)
    drain(k)
    assert k.stats.restored == 2
    assert judge_totals(k) == expected_counts(LINES)


def test_checkpoint_after_losing_a_partition_writes_nothing_for_its_bakes() -> None:
    """A judge that lost a partition (its successor already moved on) and checkpoints before
    its next poll must not overwrite the successor's state or documents with its own."""
    broker = ingested(LINES, block_offsets=400)
    j1 = judge(broker, fetch_records=2)
    for _ in range(3):
        j1.step(0.0)
    j2 = judge(broker)  # joins: j1 keeps partition 0, j2 takes partition 1
    drain(j2)
    assert j2.checkpoint()
    assert j1.checkpoint()  # before j1 polls again and sees the rebalance
    lost = next(b.id for b in (CHECKOUT, SEARCH) if partition_for(b.id, 2) == 1)
    want = expected_counts(LINES)[lost]
    assert documents(broker)[lost]["progress"]["canary_requests"] == want[0]
    j2.source.close()
    j3 = judge(broker)
    j1.source.close()
    drain(j3)
    assert judge_totals(j3)[lost] == want


def test_an_assignment_is_restored_with_one_reader_per_topic() -> None:
    """A judge assigned every partials partition at once reads the state, verdicts and
    timelines topics once each for all of them (not once per partition), and still restores
    every bake: the successor of a judge that checkpointed holds what it held."""
    broker = ingested(LINES, block_offsets=400)
    _judged_halfway(broker)
    opened: list[list[tuple[str, int]]] = []

    def restore_source(tps: Sequence[tuple[str, int]]) -> MemorySource:
        opened.append(list(tps))
        return MemorySource(broker, partitions=list(tps))

    j = Judge(
        MemorySource(broker, group_id="bakemon-judge", topics=[LAYOUT.partials]),
        MemorySink(broker),
        LAYOUT,
        lambda: BOTH,
        restore_source,
        checkpoint_interval_s=NEVER_S,
    )
    j.step(0.0)
    every = list(range(LAYOUT.partials_partitions))
    assert sorted(t for t, _ in (tps[0] for tps in opened)) == sorted(
        [LAYOUT.state, LAYOUT.verdicts, LAYOUT.timelines]
    )
    assert all(sorted(p for _, p in tps) == every for tps in opened)
    assert j.stats.restored == 2
    assert {s.partition for s in j.bakes.values()} == {
        partition_for(b.id, LAYOUT.partials_partitions) for b in (CHECKOUT, SEARCH)
    }


@pytest.mark.parametrize("fail_at", [2, 7])
def test_an_unexpected_error_mid_message_restores_from_the_snapshots(
    fail_at: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug that raises while a message's partials are folded (the rest of the poll unread)
    loses nothing: the next step restores every partition from its snapshots and committed
    offsets, as after a crash, and the judge ends with the exact totals and the documents of
    an uninterrupted run."""
    import monitor.pipeline.judge as judge_mod

    want_docs = _uninterrupted()
    broker = ingested(LINES, block_offsets=400)
    real, calls = judge_mod.feed, {"n": 0}

    def flaky(*a: object, **k: object) -> object:
        calls["n"] += 1
        if calls["n"] == fail_at:
            raise RuntimeError("a bug")
        return real(*a, **k)  # type: ignore[arg-type]

    monkeypatch.setattr(judge_mod, "feed", flaky)
    j = judge(broker, fetch_records=50)
    raised = 0
    for _ in range(2_000):
        try:
            moved = j.step(0.0)
        except RuntimeError:
            raised += 1
            continue
        if calls["n"] == 1:  # a checkpoint before the error: the restore has snapshots to read
            assert j.checkpoint()
        if not moved and not sum(j.source.lag().values()):
            break
    assert raised == 1
    assert j.checkpoint()
    assert judge_totals(j) == expected_counts(LINES)
    docs = documents(broker)
    for bake_id, doc in want_docs.items():
        assert docs[bake_id]["status"] == doc["status"]
        assert docs[bake_id]["progress"] == doc["progress"]
