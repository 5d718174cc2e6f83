"""Tests of auto-discovery of new versions."""

from __future__ import annotations

import orjson
import pytest

from monitor.bakes.discovery import Discovery, DiscoverySettings
from monitor.bakes.spec import BakeSpec, Registry
from monitor.bakes.store import BakeFollower, proposal_record
from monitor.errors import ConfigError
from monitor.kafka.memory import MemoryBroker, MemorySink, MemorySource
from monitor.kafka.topics import TopicLayout
from monitor.pipeline.ingest import Ingest
from monitor.records.decode import decode_batch
from monitor.records.fieldmap import PRESETS

LAYOUT = TopicLayout("d.", partials_partitions=2)


def _batch(rows: list[tuple[float, str, str]]):  # type: ignore[no-untyped-def]
    lines = [
        orjson.dumps({"ts": t, "service": s, "version": v, "status": 200, "latency_ms": 5})
        for t, s, v in rows
    ]
    return decode_batch(lines, PRESETS["plain"]).batch


def test_new_version_next_to_serving_one_becomes_a_bake() -> None:
    """A new version with enough traffic beside the serving one is proposed once, as canary."""
    d = Discovery(
        DiscoverySettings(enabled=True, min_requests=50, policy={"min_canary_requests": 100})
    )
    reg = Registry()
    assert d.observe(_batch([(1000.0 + i, "cart", "v1") for i in range(100)]), reg) == []
    mixed = [(1100.0 + i, "cart", "v2" if i % 2 else "v1") for i in range(120)]
    specs = d.observe(_batch(mixed), reg)
    assert [(s.id, s.canary_versions, s.baseline_versions) for s in specs] == [
        ("auto-cart-v2", ("v2",), ("v1",))
    ]
    assert specs[0].policy.min_canary_requests == 100 and specs[0].start_s == 1219.0
    assert d.observe(_batch(mixed), reg) == []  # proposed once


def test_versions_already_baked_and_the_cap_are_respected() -> None:
    """No proposal for versions in a bake; beyond max_active within the window, none either."""
    d = Discovery(DiscoverySettings(enabled=True, min_requests=10, max_active=1))
    reg = Registry(
        [
            BakeSpec.from_dict(
                {
                    "id": "auto-x-v9",
                    "service": "x",
                    "canary": "v9",
                    "baseline": "v8",
                    "start": 1000.0,
                }
            )
        ]
    )
    rows = [(1000.0 + i, "cart", "v1") for i in range(20)] + [
        (1020.0 + i, "cart", "v2" if i % 2 else "v1") for i in range(100)
    ]
    assert d.observe(_batch(rows), reg) == []
    assert d.skipped_cap == 1
    d2 = Discovery(DiscoverySettings(enabled=True, min_requests=10))
    reg2 = Registry(
        [BakeSpec.from_dict({"id": "b", "service": "cart", "canary": "v2", "baseline": "v1"})]
    )
    assert d2.observe(_batch(rows), reg2) == []


def test_disabled_or_bad_settings() -> None:
    """Disabled discovery proposes nothing; bad settings fail at start-up with the key."""
    d = Discovery(DiscoverySettings())
    assert d.observe(_batch([(1.0, "cart", "v2")] * 500), Registry()) == []
    with pytest.raises(ConfigError, match="unknown \\[discovery\\] key"):
        DiscoverySettings.from_dict({"enable": True})
    with pytest.raises(ConfigError, match='policy field "alpha"'):
        DiscoverySettings.from_dict({"enabled": True, "policy": {"alpha": 3}})


def _proposal(start: float, baseline: str = "v1") -> BakeSpec:
    return BakeSpec.from_dict(
        {
            "id": "auto-cart-v2",
            "service": "cart",
            "canary": "v2",
            "baseline": baseline,
            "start": start,
        }
    )


def _registry_after(records: list[tuple[bytes, bytes | None]]) -> Registry:
    f = BakeFollower("unused", LAYOUT)
    for offset, (key, value) in enumerate(records):
        f.apply(0, offset, key, value)
    f.publish()
    return f.registry()


def test_proposals_merge_to_the_earliest_start_in_any_order() -> None:
    """Proposals of one bake from several instances give the same registry whatever the read
    order: the earliest start wins (ties by canonical JSON), and a repeated proposal is one."""
    late, early, tie = _proposal(1200.0), _proposal(1100.0), _proposal(1100.0, baseline="v0")
    recs = [proposal_record(s) for s in (late, early, tie, late)]
    first = _registry_after(recs)
    assert first.get("auto-cart-v2").start_s == 1100.0
    assert _registry_after(recs[::-1]).get("auto-cart-v2") == first.get("auto-cart-v2")
    assert len({k for k, _ in recs}) == 3


def test_an_explicit_bake_is_never_overridden_by_a_proposal() -> None:
    """An explicit spec of the same id wins whatever the order; an explicit bake already
    selecting the canary version shadows the proposal."""
    explicit = _proposal(1500.0, baseline="v0")
    rec = (explicit.id.encode(), orjson.dumps(explicit.to_dict()))
    prop = proposal_record(_proposal(1000.0))
    for order in ([rec, prop], [prop, rec]):
        assert _registry_after(order).get("auto-cart-v2") == explicit
    other = BakeSpec.from_dict(
        {"id": "cart-v2", "service": "cart", "canary": "v2", "baseline": "v1"}
    )
    reg = _registry_after([(b"cart-v2", orjson.dumps(other.to_dict())), prop])
    assert "auto-cart-v2" not in reg and "cart-v2" in reg


def _rows(t0: float, n: int, mixed: bool) -> list[bytes]:
    return [
        orjson.dumps(
            {
                "ts": t0 + i * 0.01,
                "service": "cart",
                "version": "v2" if mixed and i % 2 else "v1",
                "status": 200,
                "latency_ms": 9,
            }
        )
        for i in range(n)
    ]


def test_two_ingest_instances_propose_and_the_registry_agrees_on_one_bake() -> None:
    """Ingest only sights traffic in its loop and sends proposals at its checkpoint; two
    instances on different partitions propose different starts, and every registry reading
    the bakes topic picks the same, earliest one."""
    broker = MemoryBroker()
    broker.create_topics((n, p) for n, p, _ in LAYOUT.specs())
    broker.create_topic("requests", 2)
    lines = _rows(1000.0, 400, False) + _rows(1010.0, 800, True)
    for i, line in enumerate(lines):
        broker.append("requests", line, partition=0 if i < 1000 else 1)
    settings = DiscoverySettings(enabled=True, min_requests=50)
    workers = []
    for _ in range(2):
        src = MemorySource(broker, group_id="bakemon-ingest", topics=["requests"])
        workers.append(
            Ingest(
                src,
                MemorySink(broker),
                LAYOUT,
                Registry,
                PRESETS["plain"],
                flush_interval_s=1e9,
                discovery=Discovery(settings),
            )
        )
    for _ in range(3):
        for w in workers:
            w.step(0.0)
    assert all(w.sink.pending == 0 for w in workers)  # type: ignore[attr-defined]
    assert broker.records(LAYOUT.bakes) == []  # nothing published from the hot loop
    for w in workers:
        assert w.checkpoint()
    proposals = broker.records(LAYOUT.bakes)
    assert len(proposals) == 2 and len({r.key for r in proposals}) == 2
    follower = BakeFollower(
        "unused", LAYOUT, source_factory=lambda tps: MemorySource(broker, partitions=list(tps))
    )
    follower.poll_timeout_s = 0.01
    follower.start()
    follower.stop()
    spec = follower.registry().get("auto-cart-v2")
    starts = sorted(
        BakeSpec.from_dict(orjson.loads(r.value or b"")["proposal"]).start_s for r in proposals
    )
    assert starts[0] < starts[1] and spec.start_s == starts[0]
    assert _registry_after([(r.key or b"", r.value) for r in proposals[::-1]]).get(spec.id) == spec
