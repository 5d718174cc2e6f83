"""Partials of a bake the judge's registry does not know yet: held, folded later, or dead-lettered."""

from __future__ import annotations

from _memory_pipeline import (
    BOTH,
    CHECKOUT,
    LAYOUT,
    SEARCH,
    Clock,
    documents,
    drain,
    expected_counts,
    ingest,
    ingested,
    judge,
    judge_totals,
    partials_of,
    produce,
    request_log,
)

from monitor.bakes.spec import Registry
from monitor.kafka.topics import partition_for

LINES = request_log(5000, seed=11)
ONLY_SEARCH = Registry([SEARCH])
P_CHECKOUT = partition_for(CHECKOUT.id, LAYOUT.partials_partitions)


def _first_checkout_offset(broker) -> int:  # type: ignore[no-untyped-def]
    return min(
        r.offset
        for r in broker.records(LAYOUT.partials, P_CHECKOUT)
        if r.key == CHECKOUT.id.encode()
    )


def test_partial_before_its_bake_is_held_then_folded_exactly() -> None:
    """Partials of a bake missing from the registry are held (the commit stays before the
    first of them) and folded in order once it appears: totals exact, none skipped."""
    broker = ingested(LINES, block_offsets=400)
    current = [ONLY_SEARCH]
    clock = Clock()
    j = judge(broker, lambda: current[0], clock=clock)
    drain(j)
    assert CHECKOUT.id not in j.bakes and j.stats.held > 0
    assert j.checkpoint()
    committed = broker.committed("bakemon-judge", (LAYOUT.partials, P_CHECKOUT))
    assert committed == _first_checkout_offset(broker)
    clock.now += 60.0
    current[0] = BOTH
    j.step(0.0)
    assert j.stats.held == 0 and j.stats.released > 0
    assert j.checkpoint()
    assert judge_totals(j) == expected_counts(LINES)
    assert j.stats.partials == len(partials_of(broker))  # a held one counted once, not twice
    assert broker.committed(
        "bakemon-judge", (LAYOUT.partials, P_CHECKOUT)
    ) == broker.high_watermark((LAYOUT.partials, P_CHECKOUT))
    assert j.stats.unknown_bake_dead_letters == 0


def test_held_partials_survive_a_judge_crash() -> None:
    """A judge holding partials dies; its successor re-reads them from the commit and, with
    the bake known, counts every record once."""
    broker = ingested(LINES, block_offsets=400)
    j = judge(broker, ONLY_SEARCH, clock=Clock())
    drain(j)
    assert j.checkpoint()
    j.source.close()  # killed while holding
    k = judge(broker, BOTH)
    drain(k)
    assert k.checkpoint()
    assert judge_totals(k) == expected_counts(LINES)
    uninterrupted = ingested(LINES, block_offsets=400)
    u = judge(uninterrupted, BOTH)
    drain(u)
    assert u.checkpoint()
    assert documents(broker) == documents(uninterrupted)


def test_unknown_bake_is_dead_lettered_after_the_deadline() -> None:
    """Still unknown after the hold deadline, the partials go to the dead-letter topic with
    reason "unknown_bake", are counted, and the commit moves past them."""
    broker = ingested(LINES, block_offsets=400)
    clock = Clock()
    j = judge(broker, ONLY_SEARCH, clock=clock, unknown_bake_hold_s=300.0)
    drain(j)
    held = j.stats.held
    assert held > 0
    clock.now += 299.0
    j.step(0.0)
    assert j.stats.held == held and j.stats.unknown_bake_dead_letters == 0
    clock.now += 2.0
    j.step(0.0)
    assert j.stats.held == 0 and j.stats.unknown_bake_dead_letters == held
    assert j.checkpoint()
    dead = broker.records(LAYOUT.dead_letter_topic)
    assert len(dead) == held
    headers = dict(dead[0].headers)
    assert headers["bakemon.reason"] == b"unknown_bake"
    assert headers["bakemon.source"].startswith(f"{LAYOUT.partials}/{P_CHECKOUT}/".encode())
    assert broker.committed(
        "bakemon-judge", (LAYOUT.partials, P_CHECKOUT)
    ) == broker.high_watermark((LAYOUT.partials, P_CHECKOUT))
    assert judge_totals(j) == {SEARCH.id: expected_counts(LINES)[SEARCH.id]}


def test_later_partials_of_an_expired_bake_are_dead_lettered_at_once() -> None:
    """After a bake's partials expired, its next partials are not held for another deadline."""
    lines = request_log(6000, seed=12)
    broker = ingested(lines[:3000], block_offsets=400)
    clock = Clock()
    j = judge(broker, ONLY_SEARCH, clock=clock, unknown_bake_hold_s=10.0)
    drain(j)
    clock.now += 11.0
    j.step(0.0)
    before = j.stats.unknown_bake_dead_letters
    assert before > 0
    produce(broker, lines[3000:])
    w = ingest(broker, block_offsets=400)
    drain(w)
    assert w.checkpoint()
    drain(j)
    assert j.stats.held == 0 and j.stats.unknown_bake_dead_letters > before
