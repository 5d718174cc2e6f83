"""Tests of the verdict state machine: gates, stickiness, snapshots, the document shape."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import orjson
import pytest

from detectors.summary import CohortSummary
from monitor.bakes.spec import BakeSpec
from monitor.errors import BakeError
from monitor.verdict.document import interpret
from monitor.verdict.engine import BakeVerdict, Status, document_without_data

T0 = 1795428000.0  # Monday 2026-11-23 10:00 UTC


def _spec(**policy: Any) -> BakeSpec:
    # One-second windows closed at once: each increment is tested when the next one arrives
    # (window formation itself is pinned in test_windows.py).
    policy = {"window_s": 1.0, "allowed_lateness_s": 0.0, **policy}
    return BakeSpec.from_dict(
        {
            "id": "checkout-v42",
            "service": "checkout",
            "canary": "v42",
            "baseline": "v41",
            "policy": policy,
        }
    )


def _inc(
    rng: np.random.Generator, n: int, p_err: float, lat_mult: float = 1.0, zone: str | None = None
) -> CohortSummary:
    s = CohortSummary()
    seg = {"zone": np.full(n, zone)} if zone else None
    s.update(rng.lognormal(math.log(0.05), 0.5, n) * lat_mult, rng.random(n) < p_err, seg)
    return s


def _feed(
    v: BakeVerdict,
    rng: np.random.Generator,
    steps: int,
    n: int,
    p_c: float,
    p_b: float = 0.01,
    lat: float = 1.0,
    t0: float = T0,
    dt: float = 1.0,
) -> list[Status]:
    out = []
    for i in range(steps):
        v.update(_inc(rng, n, p_c, lat), _inc(rng, n, p_b), t0 + i * dt)
        out.append(v.status)
    v.update(CohortSummary(), CohortSummary(), t0 + steps * dt)  # closes the last window
    return out


def test_aa_bakes_rarely_halt_with_both_gates() -> None:
    """200 A/A bakes to 50k requests/arm, errors + latency gated: false HALT <= alpha (+noise)."""
    rng = np.random.default_rng(2026)
    runs = 200
    halts = 0
    for _ in range(runs):
        v = BakeVerdict(_spec(min_canary_requests=10**9, max_canary_requests=10**9))
        _feed(v, rng, 100, 500, 0.01)
        halts += v.status is Status.HALT
    assert halts / runs <= 0.01 + 3 * math.sqrt(0.01 * 0.99 / runs), halts / runs


def test_halt_never_turns_into_promote() -> None:
    """After a HALT, any amount of healthy data leaves the verdict at HALT."""
    rng = np.random.default_rng(1)
    v = BakeVerdict(_spec(min_canary_requests=0))
    statuses = _feed(v, rng, 100, 200, 0.05)
    assert Status.HALT in statuses
    first = statuses.index(Status.HALT)
    statuses += _feed(v, rng, 300, 2000, 0.01, t0=T0 + 1000)
    assert all(s is Status.HALT for s in statuses[first:])
    doc = v.document()
    assert doc["status"] == "HALT" and doc["decided"] is True and "error rate" in doc["reasons"][0]


def test_aa_promotes_only_after_the_minimum() -> None:
    """A healthy canary PROMOTEs, never before min_canary_requests."""
    rng = np.random.default_rng(2)
    v = BakeVerdict(_spec(min_canary_requests=150_000))
    for i in range(400):
        v.update(_inc(rng, 1000, 0.01), _inc(rng, 1000, 0.01), T0 + i)
        if v.decided:
            break
    assert v.status is Status.PROMOTE
    assert v.canary.requests >= 150_000
    assert v.document()["progress"]["estimated_requests_to_decision"] == 0


def test_no_canary_traffic_never_promotes() -> None:
    """A bake without canary traffic stays PENDING with that reason, then INCONCLUSIVE→HALT."""
    rng = np.random.default_rng(3)
    v = BakeVerdict(_spec(min_canary_requests=0, max_duration_s=600))
    for i in range(50):
        v.update(CohortSummary(), _inc(rng, 1000, 0.01), T0 + i * 10)
    doc = v.document()
    assert doc["status"] == "PENDING" and "no canary traffic" in doc["reasons"]
    for i in range(50, 70):
        v.update(CohortSummary(), _inc(rng, 1000, 0.01), T0 + i * 10)
    doc = v.document()
    assert doc["status"] == "INCONCLUSIVE" and doc["resolution"] == "HALT"


def test_max_requests_gives_inconclusive_with_policy_resolution() -> None:
    """Undecided at max_canary_requests → INCONCLUSIVE, resolved by on_inconclusive."""
    rng = np.random.default_rng(4)
    v = BakeVerdict(
        _spec(min_canary_requests=0, max_canary_requests=5000, on_inconclusive="promote")
    )
    _feed(v, rng, 60, 100, 0.012)
    assert v.status is Status.INCONCLUSIVE
    assert v.document()["resolution"] == "PROMOTE"


def test_promotion_window_withholds_promote() -> None:
    """Outside the promotion windows a ready bake waits, and promotes once inside."""
    rng = np.random.default_rng(5)
    v = BakeVerdict(
        _spec(
            min_canary_requests=0,
            promotion_windows=[{"days": "mon-thu", "start": "09:00", "end": "16:00"}],
        )
    )
    friday = T0 + 4 * 86400
    _feed(v, rng, 150, 2000, 0.01, t0=friday)
    doc = v.document()
    assert doc["status"] == "PENDING" and "outside promotion windows" in doc["reasons"]
    _feed(v, rng, 1, 2000, 0.01, t0=T0 + 7 * 86400)  # next Monday 10:00
    assert v.status is Status.PROMOTE


def test_blast_radius_alerts_or_halts() -> None:
    """A canary in more zones than allowed raises an alert; with action=halt it HALTs."""
    rng = np.random.default_rng(6)
    for action, want in (("alert", Status.PENDING), ("halt", Status.HALT)):
        v = BakeVerdict(_spec(blast_radius={"segment": "zone", "max_values": 1, "action": action}))
        ev1 = v.update(_inc(rng, 100, 0.01, zone="a"), _inc(rng, 100, 0.01), T0)
        ev2 = v.update(_inc(rng, 100, 0.01, zone="b"), _inc(rng, 100, 0.01), T0 + 1)
        assert not [e for e in ev1 if e.kind == "blast_radius"]
        assert [e.kind for e in ev2 if e.kind == "blast_radius"] == ["blast_radius"]
        assert v.status is want


def test_coverage_gate_holds_promote() -> None:
    """PROMOTE waits until the canary has served the required number of segment values."""
    rng = np.random.default_rng(7)
    v = BakeVerdict(_spec(min_canary_requests=0, coverage={"segment": "zone", "min_values": 2}))
    for i in range(150):
        v.update(_inc(rng, 2000, 0.01, zone="a"), _inc(rng, 2000, 0.01), T0 + i)
    assert v.status is Status.PENDING
    assert any("coverage" in r for r in v.document()["reasons"])
    v.update(_inc(rng, 2000, 0.01, zone="b"), _inc(rng, 2000, 0.01), T0 + 200)
    assert v.status is Status.PROMOTE


def test_snapshot_restore_gives_identical_timeline() -> None:
    """A verdict engine restored from its JSON snapshot continues exactly like the original."""
    rng = np.random.default_rng(8)
    v = BakeVerdict(_spec(min_canary_requests=2000))
    _feed(v, rng, 20, 100, 0.015, lat=1.05)
    restored = BakeVerdict.from_state(orjson.loads(orjson.dumps(v.state_dict())))
    for i in range(200):
        c, b = _inc(rng, 100, 0.015, 1.05), _inc(rng, 100, 0.01)
        assert v.update(c, b, T0 + 100 + i) == restored.update(c, b, T0 + 100 + i)
        assert v.document() == restored.document()


def test_document_shape_for_pipelines() -> None:
    """The document has the INTEGRATIONS.md fields; status is a capitalised string."""
    rng = np.random.default_rng(9)
    v = BakeVerdict(_spec())
    _feed(v, rng, 10, 100, 0.01)
    doc = orjson.loads(orjson.dumps(v.document()))
    assert isinstance(doc["status"], str) and doc["status"] == doc["status"].upper()
    for key in (
        "id",
        "service",
        "status",
        "decided",
        "reasons",
        "progress",
        "metrics",
        "policy",
        "created_at",
        "decided_at",
        "evaluated_at",
        "stale",
        "progress_text",
        "resolution",
    ):
        assert key in doc, key
    assert doc["reasons"][0] == "canary requests 1,000 of 10,000 minimum"
    assert set(doc["progress"]) >= {
        "canary_requests",
        "baseline_requests",
        "min_canary_requests",
        "fraction",
        "estimated_requests_to_decision",
    }
    err = doc["metrics"]["error_rate"]
    assert set(err) >= {"canary", "baseline", "ratio", "ratio_bounds", "finding"}
    assert "canary" in doc["metrics"]["latency_p99_seconds"]
    assert isinstance(doc["progress_text"], str)


def test_override_is_audited() -> None:
    """An operator override sets the status and records who, why and when."""
    rng = np.random.default_rng(10)
    v = BakeVerdict(_spec())
    _feed(v, rng, 5, 100, 0.01)
    ev = v.override(Status.HALT, "alice", "customer reports", T0 + 50)
    doc = v.document()
    assert doc["status"] == "HALT" and doc["override"]["by"] == "alice"
    assert doc["override"]["previous"] == "PENDING" and ev.kind == "override"
    with pytest.raises(Exception, match="override must set"):
        v.override(Status.PENDING, "bob", "undo", T0 + 60)


def _with(spec: BakeSpec, **fields: Any) -> BakeSpec:
    return BakeSpec.from_dict({**spec.to_dict(), **fields})


OVERRIDE = {"status": "HALT", "by": "alice", "reason": "customer reports", "at": T0 + 50}


def test_apply_spec_applies_an_override_once() -> None:
    """apply_spec applies a new override with one alert, and the same spec again changes nothing."""
    rng = np.random.default_rng(11)
    v = BakeVerdict(_spec())
    _feed(v, rng, 5, 100, 0.01)
    assert v.apply_spec(_spec()) == []
    events = v.apply_spec(_with(_spec(), override=OVERRIDE))
    assert [(e.kind, e.status) for e in events] == [("override", Status.HALT)]
    assert v.status is Status.HALT and v.document()["override"]["previous"] == "PENDING"
    assert v.apply_spec(_with(_spec(), override=OVERRIDE)) == []
    restored = BakeVerdict.from_state(orjson.loads(orjson.dumps(v.state_dict())))
    assert restored.apply_spec(_with(_spec(), override=OVERRIDE)) == []
    later = {**OVERRIDE, "status": "PROMOTE", "by": "bob", "at": T0 + 90}
    assert [e.status for e in v.apply_spec(_with(_spec(), override=later))] == [Status.PROMOTE]
    assert v.document()["override"]["previous"] == "HALT"


def test_apply_spec_adopts_the_update_but_keeps_the_policy_in_force() -> None:
    """A cancellation is adopted; a changed policy is not (the same increments, the same verdict)."""
    v = BakeVerdict(_spec(min_canary_requests=500))
    update = BakeSpec.from_dict(
        {**_spec().to_dict(), "end": T0, "policy": {"min_canary_requests": 7}}
    )
    events = v.apply_spec(update)
    assert [(e.kind, e.status) for e in events] == [("cancel", Status.PENDING)]  # alerted once
    assert v.status is Status.CANCELLED and v.decided  # terminal: cancelled before a decision
    doc = v.document()
    assert doc["decision"]["status"] == "CANCELLED" and doc["reasons"][0].startswith("cancelled")
    assert interpret(doc).gate("promote")[0] == 409 and interpret(doc).gate("rollback")[0] == 200
    assert interpret(doc).exit_code == 8
    assert v.apply_spec(update) == []
    assert v.spec.end_s == T0
    assert v.spec.policy.min_canary_requests == 500
    assert v.document()["policy"]["min_canary_requests"] == 500
    other = BakeSpec.from_dict({**_spec().to_dict(), "id": "search-v8"})
    with pytest.raises(BakeError, match='spec of bake "search-v8"'):
        v.apply_spec(other)


def test_inconclusive_override_is_resolved_by_the_policy() -> None:
    """An operator's INCONCLUSIVE carries the policy's resolution, like a decided one."""
    for on_inconclusive, want in (("halt", "HALT"), ("promote", "PROMOTE")):
        spec = _with(
            _spec(on_inconclusive=on_inconclusive),
            override={**OVERRIDE, "status": "INCONCLUSIVE"},
        )
        v = BakeVerdict(spec)
        v.apply_spec(spec)
        assert v.document()["resolution"] == want


def test_document_without_data_is_pending_or_the_override() -> None:
    """Before any traffic: PENDING saying so, or the operator's decision — built by the engine."""
    doc = document_without_data(_spec())
    assert doc["status"] == "PENDING" and doc["decided"] is False and doc["stale"] is False
    assert doc["reasons"] == [
        "no traffic observed for this bake yet",
        "no canary traffic",
    ]
    doc = document_without_data(_with(_spec(), override=OVERRIDE))
    assert doc["status"] == "HALT" and doc["override"]["by"] == "alice"
    assert doc["reasons"] == ["operator override by alice: customer reports"]


def test_cancel_keeps_a_decision_and_cancels_a_bake_without_traffic() -> None:
    """Decisions are final: a decided bake keeps its status when cancelled. A bake no
    partial has reached yet reads CANCELLED once cancelled (not PENDING forever)."""
    v = BakeVerdict(_spec())
    v.override(Status.HALT, "alice", "bad deploy", T0)
    v.apply_spec(BakeSpec.from_dict({**_spec().to_dict(), "end": T0 + 5}))
    assert v.status is Status.HALT
    quiet = BakeSpec.from_dict({**_spec().to_dict(), "end": T0 + 5})
    doc = document_without_data(quiet)
    assert doc["status"] == "CANCELLED" and doc["decided"] is True
    assert document_without_data(_spec())["status"] == "PENDING"
