"""A partition an ingest worker keeps through a rebalance is recomputed, never half-counted."""

from __future__ import annotations

import time
from pathlib import Path

from _pipeline import LAYOUT, REQUESTS, create_topics, expected_counts, produce, two_service_log

from monitor.bakes.spec import BakeSpec, Registry
from monitor.kafka.broker import EmbeddedBroker
from monitor.kafka.io import KafkaSink, KafkaSource
from monitor.pipeline.ingest import Ingest
from monitor.pipeline.partials import BlockFold, decode_message, partials_in
from monitor.records.fieldmap import PRESETS

REGISTRY = Registry(
    [
        BakeSpec.from_dict(
            {"id": "checkout-v42", "service": "checkout", "canary": "v42", "baseline": "v41"}
        ),
        BakeSpec.from_dict(
            {"id": "search-v8", "service": "search", "canary": "v8", "baseline": "v7"}
        ),
    ]
)


def _worker(bs: str) -> Ingest:
    # A rebalance waits for every member to rejoin up to the rebalance timeout, which
    # kafka-python takes from max_poll_interval_ms (300 s): a member that left without its
    # LeaveGroup reaching the broker would hold every later join for five minutes. 30 s here
    # (the workers poll every 0.1 s) bounds such a wait within one join attempt.
    src = KafkaSource(
        bs, group_id="bakemon-ingest", topics=[REQUESTS], client={"max_poll_interval_ms": 30_000}
    )
    return Ingest(
        src,
        KafkaSink(bs),
        LAYOUT,
        lambda: REGISTRY,
        PRESETS["plain"],
        block_offsets=2000,
        flush_interval_s=0.2,
    )


def _folded_totals(bs: str) -> dict[str, tuple[int, int]]:
    src = KafkaSource(bs, partitions=[(LAYOUT.partials, p) for p in range(4)])
    folds: dict[str, BlockFold] = {}
    totals: dict[str, list[int]] = {}
    try:
        for p in range(4):
            src.seek_to_beginning((LAYOUT.partials, p))
        deadline = time.monotonic() + 60  # it stops as soon as it has read to the end
        while time.monotonic() < deadline:
            batch = src.poll(0.3, 50_000)
            for recs in batch.values():
                for r in recs:
                    for part in partials_in(decode_message(r.value or b"")):  # not clocks
                        inc = folds.setdefault(part.bake, BlockFold()).fold(part)
                        if inc is not None:
                            t = totals.setdefault(part.bake, [0, 0])
                            t[0] += inc[0].requests
                            t[1] += inc[1].requests
            if not batch and all(src.caught_up((LAYOUT.partials, p)) for p in range(4)):
                break
    finally:
        src.close()
    return {k: (v[0], v[1]) for k, v in totals.items()}


def test_kept_partition_mid_block_is_recomputed(broker: EmbeddedBroker, tmp_path: Path) -> None:
    """Worker A is mid-block on every partition when B joins; after the rebalance the totals
    folded from the partials topic equal the exact counts."""
    bs = broker.bootstrap_servers
    lines = two_service_log(40_000, seed=9)
    want = expected_counts(lines)
    create_topics(bs)
    produce(bs, lines[:20_000])  # 5,000 per partition: block 2 (4,000-5,999) is open
    workers: list[Ingest] = []
    try:
        _run(bs, lines, want, workers)
    finally:  # a leaked consumer keeps its threads (and the group) alive after the test
        for w in workers:
            w.source.close()
            w.sink.close()


def _join(bs: str, a: Ingest, workers: list[Ingest]) -> Ingest:
    """A second worker joins while A is mid-block. Against the test broker a join now and then
    stalls for minutes with the joiner holding nothing while A holds half (seen in CI, cause
    not pinned down); a fresh member is tried then, at most three. The property under test is
    the recount of the kept partition, not the join."""
    seen: list[str] = []
    for _attempt in range(3):
        b = _worker(bs)
        workers.append(b)
        deadline = time.monotonic() + 45  # a join can wait out a session timeout under load
        while time.monotonic() < deadline:
            a.step(0.1)
            b.step(0.1)
            if a.source.assignment() and b.source.assignment():
                return b
        seen.append(f"A {sorted(a.source.assignment())}, B {sorted(b.source.assignment())}")
        b.source.close()
        b.sink.close()
        workers.remove(b)
    raise AssertionError(f"the group did not split the partitions in three joins: {seen}")


def _run(
    bs: str, lines: list[bytes], want: dict[str, tuple[int, int]], workers: list[Ingest]
) -> None:
    a = _worker(bs)
    workers.append(a)
    deadline = time.monotonic() + 60
    while a.stats.records < 20_000 and time.monotonic() < deadline:
        a.step(0.2)
    a.checkpoint()
    assert a.stats.records == 20_000
    b = _join(bs, a, workers)
    produce(bs, lines[20_000:])
    # Step both until the partials fold to the exact counts (a count twice would overshoot
    # and never match); lag() alone is not a stop signal right after a rebalance, when a
    # newly assigned partition's position is not known yet.
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        for _ in range(10):
            a.step(0.1)
            b.step(0.1)
        for w in (a, b):
            w.checkpoint()
        if _folded_totals(bs) == want:
            break
    assert _folded_totals(bs) == want
