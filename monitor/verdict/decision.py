"""The decision, frozen (issue 11): what the verdict document's ``decision`` holds.

When a bake decides (or an operator overrides it) the engine keeps, once, the figures of that
moment: status, reason, requests, and per metric its finding, ratio estimate and bounds, its
evidence and the evidence HALT needed. The document's ``progress``, ``metrics`` and
``segments`` keep updating after the decision (records still arrive); ``decision`` never
changes again, so a reason that quotes a ratio always agrees with the figures beside it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from detectors.base import Assessment, Finding
from detectors.summary import CohortSummary
from monitor.bakes.policy import Policy
from monitor.verdict.bake_tests import BakeTests
from monitor.verdict.segments import SegmentFinding

__all__ = ["LIVE_NOTE", "freeze_decision", "pending_reasons", "promote_reason"]

LIVE_NOTE = (
    "progress, metrics and segments are live and keep updating after the decision; "
    "decision holds the figures at the moment it was taken"
)


def _metric(a: Assessment, halt_needs: float | None) -> dict[str, Any]:
    return {
        "finding": a.finding.value,
        "estimate": a.estimate,
        "lower": a.lower,
        "upper": a.upper,
        "e_value_halt": a.e_halt,
        "e_value_halt_crossed": a.e_halt_crossed,
        "halt_needs": halt_needs,
        "e_value_promote": a.e_promote,
        "canary_requests": a.canary_requests,
        "baseline_requests": a.baseline_requests,
    }


def freeze_decision(
    *,
    status: str,
    reason: str,
    at: str | None,
    requests: Mapping[str, int],
    found: Mapping[str, Assessment],
    halt_needs: Mapping[str, float],
    segment: SegmentFinding | None = None,
    segment_halt_needs: Mapping[str, float] | None = None,
    override: Mapping[str, Any] | None = None,
    evident: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """The ``decision`` object (JSON-able). ``halt_needs``: per metric, the HALT e-value
    threshold of the pooled test (1/α); ``segment``: the per-value test that HALTed, if one
    did, with its own threshold from ``segment_halt_needs``; ``evident``: for a pooled HALT,
    the most evident value of each segment, strongest first (what its reason names)."""
    seg = None
    if segment is not None:
        a = segment.assessment
        needs = (segment_halt_needs or {}).get(a.metric)
        seg = {"segment": segment.segment, "value": segment.value, "metric": a.metric}
        seg |= _metric(a, needs)
    return {
        "status": status,
        "reason": reason,
        "at": at,
        "requests": dict(requests),
        "metrics": {name: _metric(a, halt_needs.get(name)) for name, a in found.items()},
        "segment": seg,
        "evident": [dict(e) for e in evident],
        "override": None if override is None else dict(override),
    }


def promote_reason(policy: Policy, found: Mapping[str, Assessment]) -> str:
    """Which tolerance proved each metric, e.g. ``error rate < 1.2x baseline``."""
    claims = []
    err = found.get("error_rate")
    if err is not None:
        if err.detail.get("promote_path") == "absolute":
            claims.append(f"error rate excess < {policy.errors.abs_tol:g} (absolute)")
        else:
            claims.append(f"error rate < {1 + policy.errors.tol:g}x baseline")
    if "latency" in found:
        claims.append(f"latency at most {1 + policy.latency.tol:g}x slower at each threshold")
    return f"all metrics non-inferior ({'; '.join(claims)}) and minimums met"


def pending_reasons(
    policy: Policy,
    canary: CohortSummary,
    baseline: CohortSummary,
    tests: BakeTests,
    duration_s: float,
    found: Mapping[str, Assessment],
    now: float,
) -> list[str]:
    """Why a bake cannot promote now (empty: it can): traffic, minimums, coverage, warm-up,
    every metric non-inferior, promotion windows."""
    reasons: list[str] = []
    if canary.requests == 0:
        reasons.append("no canary traffic")
    if baseline.requests == 0:
        reasons.append("no baseline traffic")
    if tests.tested_canary < policy.min_canary_requests:
        reasons.append(
            f"canary requests {tests.tested_canary:,} of {policy.min_canary_requests:,} minimum"
        )
    if duration_s < policy.min_duration_s:
        reasons.append(f"duration {duration_s:.0f}s of {policy.min_duration_s:g}s minimum")
    cov = policy.coverage
    if cov is not None:
        served = tests.served_of(cov.segment) or (  # else the totals' counts
            canary.segments.get(cov.segment, {}),
            baseline.segments.get(cov.segment, {}),
        )
        missing = cov.missing(*served)
        if missing:
            reasons.append(missing)
    if tests.warmup.warming:
        reasons.append(tests.warmup.reason())
    for a in found.values():
        if a.finding is not Finding.NON_INFERIOR:
            reasons.append(a.reason)
    if (
        not reasons
        and policy.promotion_windows
        and not any(w.contains(now) for w in policy.promotion_windows)
    ):
        reasons.append("outside promotion windows")
    return reasons
