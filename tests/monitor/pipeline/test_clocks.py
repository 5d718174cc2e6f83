"""Source clocks and per-bake partials (issue 13, point 4): what a flush sends grows with the bakes
that had records in it, never with the active bakes, and bakes still hear every partition."""

from __future__ import annotations

import orjson
from _memory_pipeline import (
    BOTH,
    LAYOUT,
    T0,
    drain,
    expected_counts,
    ingest,
    judge,
    judge_totals,
    new_broker,
    partials_of,
    produce,
    request_log,
)

from monitor.bakes.spec import BakeSpec, Registry
from monitor.pipeline.partials import Clock, Partial, decode_message, partials_in

POLICY = {"window_s": 1.0, "allowed_lateness_s": 0.0}


def _messages(broker, since: list[int]) -> list[Partial | Clock]:
    """Partials-topic messages after the offsets in ``since`` (updated to the ends)."""
    out: list[Partial | Clock] = []
    for p in range(LAYOUT.partials_partitions):
        recs = broker.records(LAYOUT.partials, p)
        for r in recs[since[p] :]:
            msg = decode_message(r.value or b"")
            out += [msg] if isinstance(msg, Clock) else partials_in(msg)
        since[p] = len(recs)
    return out


def _checkout(n: int, t0: float) -> list[bytes]:
    return [
        orjson.dumps(
            {
                "ts": t0 + i * 0.01,
                "service": "checkout",
                "version": "v42" if i % 2 else "v41",
                "status": 200,
                "latency_ms": 20.0,
            }
        )
        for i in range(n)
    ]


def _many_bakes(n: int) -> Registry:
    specs = [
        BakeSpec.from_dict(
            {"id": f"idle{k}-v2", "service": f"idle{k}", "canary": "v2", "baseline": "v1"}
        )
        for k in range(n)
    ]
    return Registry([*BOTH.bakes, *specs])


def test_a_flush_sends_partials_for_bakes_with_records_and_one_clock_per_partition() -> None:
    registry = _many_bakes(50)  # 50 active bakes that never see a record
    broker = new_broker()
    w = ingest(broker, registry)
    since = [0, 0]
    produce(broker, _checkout(400, T0))
    drain(w)
    assert w.checkpoint()
    msgs = _messages(broker, since)
    partials = [m for m in msgs if isinstance(m, Partial)]
    clocks = [m for m in msgs if isinstance(m, Clock)]
    assert {p.bake for p in partials} == {"checkout-v42"}
    assert len(partials) == 2  # one per source partition (one open block each)
    # Each source partition's clock reaches every partials partition, once.
    assert sorted((c.partition, c.progress_s is not None) for c in clocks) == [
        (0, True),
        (0, True),
        (1, True),
        (1, True),
    ]
    # Nothing new: nothing sent, not even a clock.
    drain(w)
    assert w.checkpoint()
    assert _messages(broker, since) == []
    # New records of checkout only: only checkout's partials again, and the clocks that moved.
    produce(broker, _checkout(200, T0 + 10))
    drain(w)
    assert w.checkpoint()
    msgs = _messages(broker, since)
    assert {m.bake for m in msgs if isinstance(m, Partial)} == {"checkout-v42"}
    assert sum(isinstance(m, Clock) for m in msgs) == 4


def test_a_failed_flush_or_a_new_registry_sends_the_clocks_again() -> None:
    registry = [_many_bakes(3)]
    broker = new_broker()
    w = ingest(broker, registry[0])
    w.registry = lambda: registry[0]
    since = [0, 0]
    produce(broker, _checkout(100, T0))
    drain(w)
    assert w.checkpoint()
    _messages(broker, since)
    registry[0] = _many_bakes(4)  # a bake was created: it must hear every partition
    assert w.checkpoint()
    assert sum(isinstance(m, Clock) for m in _messages(broker, since)) == 4
    w.outputs_failed()  # as after a failed flush: partials and clocks again
    assert w.checkpoint()
    msgs = _messages(broker, since)
    assert sum(isinstance(m, Clock) for m in msgs) == 4
    assert {m.bake for m in msgs if isinstance(m, Partial)} == {"checkout-v42"}


def test_a_bake_whose_records_are_all_in_one_partition_closes_windows_from_the_clocks() -> None:
    """search's records all land in source partition 0; partition 1 carries only checkout's.
    search still hears partition 1 (its clock), so its windows close and it is tested."""
    specs = [
        BakeSpec.from_dict({"id": i, "service": s, "canary": c, "baseline": b, "policy": POLICY})
        for i, s, c, b in (
            ("checkout-v42", "checkout", "v42", "v41"),
            ("search-v8", "search", "v8", "v7"),
        )
    ]
    registry = Registry(specs)
    broker = new_broker()
    lines = []
    for i in range(3000):
        svc, ver = ("search", "v8" if i % 4 < 2 else "v7") if i % 2 == 0 else ("checkout", "v41")
        rec = {"ts": T0 + i * 0.01, "service": svc, "version": ver, "status": 200, "latency_ms": 9}
        lines.append(orjson.dumps(rec))
    w, j = ingest(broker, registry, block_offsets=10_000), judge(broker, registry)
    for start in range(0, 3000, 300):  # a flush as each 3 s of records arrive
        for i in range(start, start + 300):
            broker.append("requests", lines[i], partition=i % 2)  # search: partition 0 only
        drain(w)
        assert w.checkpoint()
        drain(j)
    # The setup: no partial of search comes from source partition 1.
    assert {p.partition for p in partials_of(broker) if p.bake == "search-v8"} == {0}
    search = j.bakes["search-v8"].verdict
    assert search.document()["progress"]["tested_canary_requests"] > 0
    assert search.watermark_s is not None and search.watermark_s > T0 + 20


def test_every_record_counts_once_with_many_idle_bakes_across_restarts() -> None:
    lines = request_log(4000, seed=5)
    registry = _many_bakes(40)
    broker = new_broker()
    a = ingest(broker, registry)
    produce(broker, lines[:2000])
    drain(a)
    assert a.checkpoint()
    j1 = judge(broker, registry)
    drain(j1)
    assert j1.checkpoint()
    a.source.close()
    j1.source.close()
    produce(broker, lines[2000:])
    b = ingest(broker, registry)
    drain(b)
    assert b.checkpoint()
    j2 = judge(broker, registry)  # restores j1's states, then folds the rest
    drain(j2)
    totals = judge_totals(j2)
    assert {k: totals[k] for k in expected_counts(lines)} == expected_counts(lines)
    # Every active bake heard the clocks (a state without a record), whatever its partition.
    idle = [s for k, s in j2.bakes.items() if k.startswith("idle")]
    assert len(idle) == 40
    assert {s.partition for s in idle} == set(range(LAYOUT.partials_partitions))
    assert all(s.verdict.canary.requests == 0 and s.verdict.watermark_s is None for s in idle)
