"""Bounded state (issue 10): a bake decided or cancelled retires from the live set
``retention_s`` after the judge first saw it final. Its last document stays readable (marked
``retired_at``), the judge keeps only a marker (restored on assignment, so a new owner does not
rebuild it), later partials are skipped, and the per-bake metrics leave it out."""

from __future__ import annotations

import dataclasses

from _memory_pipeline import (
    BOTH,
    CHECKOUT,
    SEARCH,
    Clock,
    documents,
    drain,
    ingest,
    judge,
    new_broker,
    produce,
    request_log,
)
from prometheus_client import CollectorRegistry, generate_latest

from monitor.bakes.spec import Registry
from monitor.kafka.memory import MemoryBroker
from monitor.pipeline.snapshot import Retired, Snapshot
from monitor.surfaces.metrics import Metrics

LINES = request_log(6000, seed=7)


def _ingest(broker: MemoryBroker, lines: list[bytes]) -> None:
    produce(broker, lines)
    w = ingest(broker, block_offsets=400)
    drain(w)
    assert w.checkpoint()
    w.source.close()


def test_a_cancelled_bake_retires_after_retention_and_stays_readable() -> None:
    broker = new_broker()
    _ingest(broker, LINES[:3000])
    wall = Clock()
    wall.now = 1_000.0
    current = {"registry": BOTH}
    j = judge(broker, lambda: current["registry"], retention_s=100.0, wall=wall)
    drain(j)
    assert j.checkpoint()
    cancelled = dataclasses.replace(CHECKOUT, end_s=CHECKOUT.start_s + 1e12)
    current["registry"] = Registry([cancelled, SEARCH])
    j.step(0.0)  # adopts the cancel: its retention starts now
    assert j.checkpoint()
    wall.now = 1_099.0
    assert j.checkpoint()
    assert CHECKOUT.id in j.bakes  # not yet
    wall.now = 1_100.5
    assert j.checkpoint()
    assert CHECKOUT.id not in j.bakes and SEARCH.id in j.bakes
    assert j.stats.retired == 1
    docs = documents(broker)
    retired_doc = docs[CHECKOUT.id]
    assert retired_doc["retired_at"] is not None and "retired_at" not in docs[SEARCH.id]
    state = broker.latest(j.layout.state)
    assert isinstance(Snapshot.decode_any(state[CHECKOUT.id.encode()]), Retired)

    # More traffic: the retired bake's partials are skipped, its document stays as it was;
    # a replacement judge restores the marker (not an engine) and keeps doing so.
    _ingest(broker, LINES[3000:])
    j.source.close()
    j2 = judge(broker, lambda: current["registry"], retention_s=100.0, wall=wall)
    drain(j2)
    assert j2.checkpoint()
    assert CHECKOUT.id not in j2.bakes and SEARCH.id in j2.bakes
    assert j2.stats.retired_partials > 0
    after = documents(broker)
    assert after[CHECKOUT.id] == retired_doc
    assert (
        after[SEARCH.id]["progress"]["canary_requests"]
        > docs[SEARCH.id]["progress"]["canary_requests"]
    )


def test_snapshots_carry_the_retention_clock() -> None:
    broker = new_broker()
    _ingest(broker, LINES[:2000])
    j = judge(broker)
    drain(j)
    st = j.bakes[CHECKOUT.id]
    snap = Snapshot(st.verdict, st.fold, st.last_offset, 123.5)
    back = Snapshot.decode(snap.encode())
    assert back.final_since_s == 123.5 and back.partials_offset == st.last_offset
    assert Snapshot.decode(Snapshot(st.verdict, st.fold, 7).encode()).final_since_s is None
    marker = Retired("b", 41, 9.0)
    assert Snapshot.decode_any(marker.encode()) == marker


def test_per_bake_metrics_cover_the_live_set_only() -> None:
    broker = new_broker()
    _ingest(broker, LINES[:2000])
    j = judge(broker)
    drain(j)
    docs = [s.verdict.document() for s in j.bakes.values()]
    docs[0] = {**docs[0], "retired_at": "2026-12-01T00:00:00Z"}
    text = generate_latest(Metrics(CollectorRegistry(), documents=lambda: docs).registry).decode()
    live, gone = docs[1]["id"], docs[0]["id"]
    assert f'bakemon_bake_canary_requests{{bake="{live}"}}' in text
    assert f'bake="{gone}"' not in text
