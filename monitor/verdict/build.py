"""The detectors a policy asks for, built at a given HALT budget, and rebuilt from their state."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from detectors.error_rate import ErrorRateTest
from detectors.latency import LatencyTest
from monitor.bakes.policy import Policy

__all__ = ["Detector", "halt_budgets", "load_detector", "make_detector"]

Detector = ErrorRateTest | LatencyTest


def make_detector(policy: Policy, metric: str, alpha: float) -> Detector:
    """The ``metric`` test ("error_rate" or "latency") of ``policy``, HALTing at ``alpha``
    (PROMOTE always at the policy's alpha)."""
    if metric == "error_rate":
        return ErrorRateTest(
            alpha,
            alpha_promote=policy.alpha,
            tol=policy.errors.tol,
            abs_tol=policy.errors.abs_tol,
            halt_margin=policy.errors.halt_margin,
        )
    lat = policy.latency
    return LatencyTest(
        alpha,
        alpha_promote=policy.alpha,
        quantiles=lat.quantiles,
        slo_thresholds_s=[ms / 1000.0 for ms in lat.slo_thresholds_ms],
        tol=lat.tol,
        slo_tol=lat.slo_tol,
        abs_tol=lat.abs_tol,
        halt_margin=lat.halt_margin,
    )


def load_detector(metric: str, state: Mapping[str, Any]) -> Detector:
    """A detector from its ``state_dict``."""
    return (ErrorRateTest if metric == "error_rate" else LatencyTest).from_state(state)


def halt_budgets(
    policy: Policy, dims: Sequence[str] | None = None
) -> tuple[dict[str, float], dict[str, float]]:
    """Each enabled metric's HALT α for the pooled test and for one segment value's test: the
    per-segment tests of ``dims`` (default: the policy's ``segment_tests``) take
    ``segment_share`` of the metric's budget, split over every value that could be tested
    (``monitor.verdict.segments``); without any segment the pooled test keeps it all."""
    ev = policy.evidence
    dims = ev.segment_tests if dims is None else tuple(dims)
    share = ev.segment_share if dims else 0.0
    slots = max(len(dims) * ev.max_segment_values, 1)
    alphas = policy.halt_alphas()
    pooled = {m: a * (1.0 - share) for m, a in alphas.items()}
    per_value = {m: a * share / slots for m, a in alphas.items()} if share > 0 else {}
    return pooled, per_value
