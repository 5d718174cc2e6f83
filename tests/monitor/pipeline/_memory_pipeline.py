"""Helpers for the in-memory pipeline tests: a broker, request logs, roles, offline folds."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import orjson

from monitor.bakes.spec import BakeSpec, Registry
from monitor.kafka.memory import MemoryBroker, MemorySink, MemorySource
from monitor.kafka.topics import TopicLayout
from monitor.pipeline.ingest import Ingest
from monitor.pipeline.judge import Judge
from monitor.pipeline.partials import BlockFold, Partial, decode_message, partials_in
from monitor.records.fieldmap import PRESETS

REQUESTS = "requests"
LAYOUT = TopicLayout("m.", partials_partitions=2)
NEVER_S = 1e12  # a checkpoint interval that never comes due: tests checkpoint explicitly
T0 = 1_795_824_000.0
POLICY = {"min_canary_requests": 500, "errors": {"tol": 0.5}, "latency": {"tol": 0.3}}
CHECKOUT = BakeSpec.from_dict(
    {
        "id": "checkout-v42",
        "service": "checkout",
        "canary": "v42",
        "baseline": "v41",
        "policy": POLICY,
    }
)
SEARCH = BakeSpec.from_dict(
    {"id": "search-v8", "service": "search", "canary": "v8", "baseline": "v7", "policy": POLICY}
)
BOTH = Registry([CHECKOUT, SEARCH])
_VERSIONS = {"checkout": ("v42", "v41"), "search": ("v8", "v7"), "cart": ("v3", "v2")}


class Clock:
    """A judge/ingest clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def request_log(n: int, seed: int = 1) -> list[bytes]:
    """Requests of checkout (2x errors on the canary), search and an unbaked cart service."""
    rng = np.random.default_rng(seed)
    services = rng.choice(list(_VERSIONS), size=n, p=[0.45, 0.45, 0.1])
    canary = rng.random(n) < 0.5
    latency = rng.lognormal(3.0, 0.5, n)
    out = []
    for i in range(n):
        svc = str(services[i])
        error_p = 0.04 if svc == "checkout" and canary[i] else 0.02
        rec = {
            "ts": T0 + i * 0.01,
            "service": svc,
            "version": _VERSIONS[svc][0 if canary[i] else 1],
            "status": 500 if rng.random() < error_p else 200,
            "latency_ms": round(float(latency[i]), 3),
            "zone": f"z{i % 3}",
        }
        out.append(orjson.dumps(rec))
    return out


def expected_counts(lines: Iterable[bytes]) -> dict[str, tuple[int, int]]:
    """Exact (canary, baseline) requests per bake of a :func:`request_log`."""
    out = {"checkout-v42": [0, 0], "search-v8": [0, 0]}
    for line in lines:
        d = orjson.loads(line)
        bake = {"checkout": "checkout-v42", "search": "search-v8"}.get(d["service"])
        if bake is not None:
            out[bake][0 if d["version"] in ("v42", "v8") else 1] += 1
    return {k: (v[0], v[1]) for k, v in out.items()}


def new_broker(request_partitions: int = 2) -> MemoryBroker:
    broker = MemoryBroker()
    broker.create_topics((name, parts) for name, parts, _ in LAYOUT.specs())
    broker.create_topic(REQUESTS, request_partitions)
    return broker


def produce(broker: MemoryBroker, lines: Sequence[bytes], topic: str = REQUESTS) -> None:
    """Round-robin over the topic's partitions, as the broker-backed tests do."""
    n = broker.partitions(topic)
    for i, line in enumerate(lines):
        broker.append(topic, line, partition=i % n)


def ingest(
    broker: MemoryBroker,
    registry: Registry = BOTH,
    *,
    block_offsets: int = 500,
    fetch_records: int | None = None,
    **kw: Any,
) -> Ingest:
    src = MemorySource(
        broker, group_id="bakemon-ingest", topics=[REQUESTS], fetch_records=fetch_records
    )
    kw.setdefault("flush_interval_s", NEVER_S)
    return Ingest(
        src,
        MemorySink(broker),
        LAYOUT,
        lambda: registry,
        PRESETS["plain"],
        block_offsets=block_offsets,
        **kw,
    )


def judge(
    broker: MemoryBroker,
    registry: Registry | Any = BOTH,
    *,
    fetch_records: int | None = None,
    **kw: Any,
) -> Judge:
    """A judge in group ``bakemon-judge``; ``registry`` is a Registry or a callable."""
    src = MemorySource(
        broker, group_id="bakemon-judge", topics=[LAYOUT.partials], fetch_records=fetch_records
    )
    kw.setdefault("checkpoint_interval_s", NEVER_S)
    current = registry if callable(registry) else (lambda: registry)
    return Judge(
        src,
        MemorySink(broker),
        LAYOUT,
        current,
        lambda tps: MemorySource(broker, partitions=list(tps)),
        **kw,
    )


def drain(*roles: Ingest | Judge, max_steps: int = 10_000) -> None:
    """Step the roles until none has anything left to read."""
    for _ in range(max_steps):
        moved = sum(r.step(0.0) for r in roles)
        if not moved and not any(sum(r.source.lag().values()) for r in roles):
            return
    raise AssertionError("the roles did not drain")


def folded_totals(broker: MemoryBroker) -> dict[str, tuple[int, int]]:
    """(canary, baseline) requests from folding the whole partials topic offline."""
    folds: dict[str, BlockFold] = {}
    totals: dict[str, list[int]] = {}
    for part in partials_of(broker):
        inc = folds.setdefault(part.bake, BlockFold()).fold(part)
        if inc is not None:
            t = totals.setdefault(part.bake, [0, 0])
            t[0] += inc[0].requests
            t[1] += inc[1].requests
    return {k: (v[0], v[1]) for k, v in totals.items()}


def judge_totals(j: Judge) -> dict[str, tuple[int, int]]:
    return {k: (s.verdict.canary.requests, s.verdict.baseline.requests) for k, s in j.bakes.items()}


def documents(broker: MemoryBroker) -> dict[str, dict[str, Any]]:
    """The read model: the latest verdict document per bake."""
    return {k.decode(): orjson.loads(v) for k, v in broker.latest(LAYOUT.verdicts).items()}


def partials_of(broker: MemoryBroker) -> list[Partial]:
    """The bakes' partials on the partials topic (without the source clocks)."""
    msgs = (decode_message(r.value or b"") for r in broker.records(LAYOUT.partials))
    return [p for m in msgs for p in partials_in(m)]


def ingested(lines: Sequence[bytes], **kw: Any) -> MemoryBroker:
    """A broker whose partials topic holds the complete, crash-free ingest of ``lines``."""
    broker = new_broker()
    produce(broker, lines)
    w = ingest(broker, **kw)
    drain(w)
    assert w.checkpoint()
    w.source.close()
    return broker
