"""The evidence over time: bounded, thinned so early and recent points survive, decisions kept."""

from __future__ import annotations

import math

import numpy as np
import orjson
import pytest

from detectors.summary import CohortSummary
from monitor.bakes.spec import BakeSpec
from monitor.verdict.engine import BakeVerdict
from monitor.verdict.timeline import Timeline

T0 = 1_795_824_000.0


def _spec() -> BakeSpec:
    # Never PROMOTE (a huge minimum), so a long bake keeps sampling until its HALT.
    return BakeSpec.from_dict(
        {
            "id": "b",
            "service": "s",
            "canary": "v2",
            "baseline": "v1",
            "policy": {"min_canary_requests": 10**9},
        }
    )


def _summary(rng: np.random.Generator, n: int, p: float) -> CohortSummary:
    s = CohortSummary()
    s.update(np.exp(rng.normal(math.log(0.05), 0.5, n)), rng.random(n) < p)
    return s


def _feed(v: BakeVerdict, rng: np.random.Generator, i: int, canary_p: float) -> None:
    t = T0 + 10 * i
    c, b = _summary(rng, 20, canary_p), _summary(rng, 200, 0.01)
    v.update(c, b, t + 9, progress_s=t + 9)


def test_a_long_bake_stays_bounded_keeps_its_start_recent_points_and_decision() -> None:
    """800 closed windows (A/A, then a 6× error regression): never more than max_points;
    the first point, the newest `recent` points at full resolution, the HALT point, and points
    from every part of the bake survive."""
    rng = np.random.default_rng(3)
    v, tl = BakeVerdict(_spec()), Timeline(max_points=60, recent=15)
    taken: list[dict[str, object]] = []
    sizes = []
    i = 0
    while not v.decided or i < 800:
        _feed(v, rng, i, 0.01 if i < 600 else 0.06)
        if tl.observe(v):
            taken.append(tl.points[-1])
        sizes.append(len(tl))
        i += 1
        assert i < 10_000, "the regression was never found"
    points = tl.points
    assert max(sizes) <= 60 and len(taken) > 600
    assert points[0] == taken[0]
    assert points[-15:] == taken[-15:]  # the recent ones at full resolution
    halts = [p for p in points if p["status"] == "HALT"]
    first_halt = next(p for p in taken if p["status"] == "HALT")
    assert halts[0] == first_halt  # the decision point is never thinned
    span = taken[-1]["event_time_s"] - taken[0]["event_time_s"]  # type: ignore[operator]
    times = [p["event_time_s"] - taken[0]["event_time_s"] for p in points]  # type: ignore[operator]
    for tenth in range(10):  # every tenth of the bake still has points
        assert any(tenth * span / 10 <= t <= (tenth + 1) * span / 10 for t in times), tenth
    counts = [p["requests"]["canary"] for p in points]  # type: ignore[index]
    assert counts == sorted(counts) and len(set(counts)) == len(counts)


def test_point_holds_estimates_bounds_evidence_and_the_halt_threshold() -> None:
    rng = np.random.default_rng(4)
    v, tl = BakeVerdict(_spec()), Timeline()
    for i in range(30):
        _feed(v, rng, i, 0.03)
        tl.observe(v)
    p = tl.points[-1]
    assert p["requests"] == {"canary": v.tests.tested_canary, "baseline": v.tests.tested_baseline}
    err = p["metrics"]["error_rate"]
    assert err["lower"] <= err["estimate"] <= err["upper"]
    assert err["halt_needs"] == pytest.approx(v.tests.halt_needs()[0]["error_rate"], rel=1e-3)
    assert p["event_time_s"] == v.watermark_s
    assert not tl.observe(v)  # nothing new: no point


def test_document_round_trip_and_trim_to_a_restored_verdict() -> None:
    """A timeline read back equals what was written; against an older (restored) verdict the
    points it has not seen yet are dropped, and sampling goes on from there."""
    rng = np.random.default_rng(5)
    v, tl = BakeVerdict(_spec()), Timeline()
    for i in range(20):
        _feed(v, rng, i, 0.01)
        tl.observe(v)
    older = BakeVerdict.from_state(orjson.loads(orjson.dumps(v.state_dict())))
    for i in range(20, 30):
        _feed(v, rng, i, 0.01)
        tl.observe(v)
    doc = orjson.loads(orjson.dumps(tl.document("b")))
    assert Timeline.from_document(doc).points == tl.points
    trimmed = Timeline.from_document(doc, within=older)
    assert trimmed.points == [
        p for p in tl.points if p["requests"]["canary"] <= older.tests.tested_canary
    ]
    assert len(trimmed) < len(tl)
    for i in range(20, 30):  # the restored engine is fed the same windows again
        _feed(older, np.random.default_rng(99), i, 0.01)
    assert trimmed.observe(older)


def test_status_flapping_never_grows_the_series_past_its_bound() -> None:
    """Every status change is kept, but not past the bound (an operator flipping overrides)."""
    tl = Timeline(max_points=8, recent=2)
    for i in range(50):
        tl._append({"n": i, "status": "HALT" if i % 2 else "PROMOTE"}, keep=True)
        tl._taken += 1
        assert len(tl) <= 8
    assert tl.points[0]["n"] == 0 and tl.points[-1]["n"] == 49
