"""The evidence over time (issue 11): a bounded, thinned series of points per bake.

A point is taken whenever the tests have seen more requests (a window closed) or the status
changed: event time (the watermark), tested requests per cohort, status, and per metric the
estimate, bounds, evidence and the HALT threshold, and the segment values with a finding. The
series is sampled in event time, so the judge and ``replay`` of the same records take the same
points.

At most ``max_points`` (default 500) are kept: the newest ``recent`` at full resolution, and
older ones evenly over the whole bake — every ``stride``-th sample (point ``n`` counts the
samples taken), the stride doubling whenever the series is full. The first point and every
status change are never dropped, so both the start and the decision always show.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from monitor.verdict.document import iso

if TYPE_CHECKING:
    from monitor.verdict.engine import BakeVerdict

__all__ = ["MAX_POINTS", "Timeline"]

MAX_POINTS = 500
RECENT_POINTS = 100
MAX_SEGMENTS = 8  # segment values with a finding per point, strongest first


def _num(x: float | None) -> float | None:
    """Four significant digits (a chart needs no more; it keeps the series small)."""
    if x is None or not math.isfinite(x):
        return None
    return float(f"{x:.4g}")


def point_of(verdict: BakeVerdict) -> dict[str, Any]:
    """The point a verdict engine shows now."""
    tests = verdict.tests
    pooled_needs, _ = tests.halt_needs()
    metrics = {
        name: {
            "estimate": _num(a.estimate),
            "lower": _num(a.lower),
            "upper": _num(a.upper),
            "e_value_halt": _num(a.e_halt),
            "halt_needs": _num(pooled_needs.get(name)),
            "e_value_promote": _num(a.e_promote),
            "finding": a.finding.value,
        }
        for name, a in tests.assessments().items()
    }
    segments = [
        {
            "segment": f.segment,
            "value": f.value,
            "metric": f.assessment.metric,
            "finding": f.assessment.finding.value,
        }
        for f in tests.segments.regressions()[:MAX_SEGMENTS]
    ]
    wm = verdict.watermark_s
    return {
        "event_time": iso(wm),
        "event_time_s": wm,
        "status": verdict.status.value,
        "requests": {"canary": tests.tested_canary, "baseline": tests.tested_baseline},
        "metrics": metrics,
        "segments": segments,
    }


class Timeline:
    """The points of one bake, bounded and thinned (see the module docstring)."""

    def __init__(self, max_points: int = MAX_POINTS, recent: int = RECENT_POINTS) -> None:
        if max_points < 4 or not 0 < recent < max_points:
            msg = f"need max_points >= 4 and 0 < recent < max_points, got {max_points}, {recent}"
            raise ValueError(msg)
        self.max_points = max_points
        self.recent = recent
        self._points: list[dict[str, Any]] = []
        self._keep: list[bool] = []  # never thinned: the first point and status changes
        self._seen: tuple[int, int, str] | None = None
        self._taken = 0  # samples taken so far (a point's "n")
        self.stride = 1
        self.version = 0  # bumped at every change (what the judge publishes on)

    def __len__(self) -> int:
        return len(self._points)

    @property
    def points(self) -> list[dict[str, Any]]:
        return list(self._points)

    def observe(self, verdict: BakeVerdict) -> bool:
        """Take a point if the tests saw more requests or the status changed; True if taken."""
        tests = verdict.tests
        key = (tests.tested_canary, tests.tested_baseline, verdict.status.value)
        if key == self._seen or (key[0] == 0 and key[1] == 0 and not verdict.decided):
            return False
        status_changed = self._seen is None or self._seen[2] != key[2]
        self._seen = key
        self._append({"n": self._taken, **point_of(verdict)}, keep=status_changed)
        self._taken += 1
        return True

    def _append(self, point: dict[str, Any], *, keep: bool) -> None:
        self._points.append(point)
        self._keep.append(keep)
        self.version += 1
        if len(self._points) > self.max_points:
            self._thin()

    def _thin(self) -> None:
        """Keep the recent points, the kept ones, and older ones on the stride (doubled until
        the series fits)."""
        while len(self._points) > self.max_points:
            old = len(self._points) - self.recent
            pairs = [
                (p, k)
                for i, (p, k) in enumerate(zip(self._points, self._keep, strict=True))
                if i >= old or k or p["n"] % self.stride == 0
            ]
            if len(pairs) == len(self._points):
                if self.stride <= self._taken:
                    self.stride *= 2
                    continue
                # Only the first point, status changes and recent ones are left among the old
                # (hundreds of overrides): the oldest status change after the first point goes.
                drop = next(i for i, k in enumerate(self._keep) if i > 0 and k)
                del self._points[drop], self._keep[drop]
                continue
            self._points = [p for p, _ in pairs]
            self._keep = [k for _, k in pairs]

    def document(self, bake_id: str) -> dict[str, Any]:
        """What ``GET /v1/bakes/{id}/timeline`` answers (JSON-able)."""
        return {
            "id": bake_id,
            "max_points": self.max_points,
            "stride": self.stride,
            "points": self.points,
        }

    @classmethod
    def from_document(
        cls, doc: Mapping[str, Any], *, within: BakeVerdict | None = None
    ) -> Timeline:
        """The timeline :meth:`document` wrote; with ``within``, points beyond what that
        (restored) verdict's tests have seen are dropped — they will be taken again."""
        t = cls(int(doc.get("max_points", MAX_POINTS)))
        points = [dict(p) for p in doc["points"]][-t.max_points :]
        if within is not None:
            c, b = within.tests.tested_canary, within.tests.tested_baseline
            while points and (
                points[-1]["requests"]["canary"] > c or points[-1]["requests"]["baseline"] > b
            ):
                points.pop()
        # Status changes are never thinned, so they are exactly where the status differs
        # from the point before.
        t._points = points
        t._keep = [i == 0 or p["status"] != points[i - 1]["status"] for i, p in enumerate(points)]
        if points:
            last = points[-1]
            t._seen = (last["requests"]["canary"], last["requests"]["baseline"], last["status"])
        t.stride = max(1, int(doc.get("stride", 1)))
        t._taken = points[-1]["n"] + 1 if points else 0
        t.version = 1 if points else 0
        return t
