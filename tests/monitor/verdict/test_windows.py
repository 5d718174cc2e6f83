"""Event-time windows: closing by the slowest source's clock, late cells, strata, state."""

from __future__ import annotations

import pytest

from detectors.summary import CohortSummary
from monitor.bakes.spec import BakeSpec
from monitor.verdict.engine import BakeVerdict
from monitor.verdict.windows import (
    OTHER_STRATUM,
    WindowBuffer,
    merge_cells,
    overflow_label,
)

T0 = 1_795_824_000.0  # a multiple of 10 s


def _cells(k: int, n: int = 10, stratum: str = "") -> dict[tuple[int, str], tuple[CohortSummary, CohortSummary]]:  # fmt: skip
    return {(k, stratum): (CohortSummary(n, 0), CohortSummary(n, 0))}


def test_window_closes_once_the_watermark_passes_end_plus_lateness() -> None:
    """Window k closes when the watermark reaches (k+1)·W + lateness, not before."""
    buf = WindowBuffer(10.0, 30.0, 16)
    k = int(T0 // 10)
    buf.add(_cells(k))
    assert buf.advance(T0 + 39.9, ("t", 0), of=1) == []
    closed = buf.advance(T0 + 40.0, ("t", 0), of=1)
    assert [w.index for w in closed] == [k]
    assert closed[0].pooled()[0].requests == 10


def test_cells_of_a_closed_window_are_late_not_tested() -> None:
    """A cell arriving after its window closed counts as late and is never handed out."""
    buf = WindowBuffer(10.0, 0.0, 16)
    k = int(T0 // 10)
    buf.add(_cells(k))
    assert len(buf.advance(T0 + 10, ("t", 0), of=1)) == 1
    buf.add(_cells(k, n=7))
    assert buf.advance(T0 + 100, ("t", 0), of=1) == []
    assert (buf.late_canary, buf.late_baseline) == (7, 7)


def test_watermark_waits_for_every_partition_and_the_slowest_busy_one() -> None:
    """With two partitions, nothing closes until both have reported; then the slower one's
    clock rules, unless it is idle."""
    buf = WindowBuffer(10.0, 0.0, 16)
    k = int(T0 // 10)
    buf.add(_cells(k))
    assert buf.advance(T0 + 100, ("t", 0), of=2) == []  # partition 1 not heard from yet
    assert buf.advance(T0 + 5, ("t", 1), of=2) == []  # the slow one holds the watermark
    assert [w.index for w in buf.advance(T0 + 10, ("t", 1), of=2)] == [k]
    buf.add(_cells(k + 5))
    assert buf.advance(None, ("t", 1), idle=True, of=2) != []  # idle: partition 0's clock rules


def test_strata_beyond_the_cap_merge_into_other_by_traffic() -> None:
    """At close, the max_strata - 1 busiest strata are kept and the rest pooled as "other"."""
    buf = WindowBuffer(10.0, 0.0, 3)
    k = int(T0 // 10)
    for i, n in enumerate((50, 40, 30, 20)):
        buf.add(_cells(k, n=n, stratum=f"zone=z{i}"))
    (w,) = buf.advance(T0 + 10, ("t", 0), of=1)
    assert [(label, c.requests) for label, c, _ in w.strata] == [
        ("zone=z0", 50),
        ("zone=z1", 40),
        (OTHER_STRATUM, 50),
    ]


def test_state_round_trip_continues_identically() -> None:
    """A buffer restored from its state closes the same windows with the same contents."""
    a = WindowBuffer(10.0, 30.0, 16)
    k = int(T0 // 10)
    for i in range(5):
        a.add(_cells(k + i, n=10 + i))
        a.advance(T0 + 10 * i, ("t", 0), of=1)
    b = WindowBuffer(10.0, 30.0, 16)
    b.restore(a.state_dict())
    wa = a.advance(T0 + 200, ("t", 0), of=1)
    wb = b.advance(T0 + 200, ("t", 0), of=1)
    assert [(w.index, w.pooled()[0].requests) for w in wa] == [
        (w.index, w.pooled()[0].requests) for w in wb
    ]


def _spec(**policy: object) -> BakeSpec:
    return BakeSpec.from_dict(
        {"id": "b", "service": "s", "canary": "v2", "baseline": "v1", "policy": policy}
    )


def test_one_cohort_increments_are_paired_within_their_window() -> None:
    """A canary-only and a baseline-only increment of the same window (a topic keyed by pod)
    are tested together once the window closes."""
    v = BakeVerdict(_spec(allowed_lateness_s=0.0, latency={"enabled": False}))
    k = int(T0 // 10)
    c_only = {(k, ""): (CohortSummary(100, 50), CohortSummary())}
    b_only = {(k, ""): (CohortSummary(), CohortSummary(100, 1))}
    v.update(CohortSummary(100, 50), CohortSummary(), T0, cells=c_only, progress_s=T0, source=("t", 0), source_partitions=2)  # fmt: skip
    v.update(CohortSummary(), CohortSummary(100, 1), T0, cells=b_only, progress_s=T0, source=("t", 1), source_partitions=2)  # fmt: skip
    assert v.document()["progress"]["tested_canary_requests"] == 0
    for p in (0, 1):
        v.update(CohortSummary(), CohortSummary(), None, cells={}, progress_s=T0 + 10, source=("t", p), source_partitions=2)  # fmt: skip
    doc = v.document()
    assert doc["progress"]["tested_canary_requests"] == 100
    assert doc["metrics"]["error_rate"]["canary_errors"] == 50


@pytest.mark.parametrize("late_s", [0.0, 15.0, 29.0])
def test_a_lagging_canary_within_the_allowed_lateness_is_fully_tested(late_s: float) -> None:
    """Canary cells reaching the judge up to allowed_lateness_s after the baseline's (one
    partition, so one clock) are all tested; nothing is late."""
    v = BakeVerdict(_spec(latency={"enabled": False}))
    k0 = int(T0 // 10)
    for i in range(30):
        t = T0 + 10 * i
        b = {(k0 + i, ""): (CohortSummary(), CohortSummary(100, 1))}
        v.update(CohortSummary(), CohortSummary(100, 1), t, cells=b, progress_s=t + 9, source=("t", 0), source_partitions=1)  # fmt: skip
        j = i - int(late_s // 10)
        if j >= 0:
            c = {(k0 + j, ""): (CohortSummary(100, 1), CohortSummary())}
            v.update(CohortSummary(100, 1), CohortSummary(), t, cells=c, progress_s=t + 9, source=("t", 0), source_partitions=1)  # fmt: skip
    doc = v.document()
    assert doc["progress"]["late_requests"] == {"canary": 0, "baseline": 0}


def _one(n: int) -> CohortSummary:
    s = CohortSummary()
    s.update([0.05] * n, [False] * n)
    return s


def test_cells_beyond_the_label_cap_share_the_overflow_label() -> None:
    """A segment with unbounded values cannot grow a window's cells without bound: past
    ``max_labels`` labels per window, new labels merge into one overflow label per window, and
    no request is lost."""
    into: dict[tuple[int, str], tuple[CohortSummary, CohortSummary]] = {}
    cells = [((w, f"zone=a|route=/u/{i}"), (_one(1), _one(2))) for w in (7, 8) for i in range(50)]
    merge_cells(into, cells, max_labels=10)
    assert overflow_label("zone=a|route=/u/1") == "zone=(other)|route=(other)"
    for w in (7, 8):
        labels = [label for ww, label in into if ww == w]
        assert len(labels) == 11 and (w, "zone=(other)|route=(other)") in into
        assert sum(into[(w, x)][0].requests for x in labels) == 50
        assert sum(into[(w, x)][1].requests for x in labels) == 100
    # a label already present keeps merging into itself
    merge_cells(into, [((7, "zone=a|route=/u/0"), (_one(3), _one(0)))], max_labels=10)
    assert into[(7, "zone=a|route=/u/0")][0].requests == 4
    # without a cap nothing is folded
    free: dict[tuple[int, str], tuple[CohortSummary, CohortSummary]] = {}
    merge_cells(free, cells)
    assert len(free) == 100
