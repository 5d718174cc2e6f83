"""The error-rate gate: :class:`~detectors.rate_ratio.RateRatioTest` on error events.

>>> from detectors.summary import CohortSummary
>>> t = ErrorRateTest(alpha=0.01)
>>> t.update(CohortSummary(1000, 30), CohortSummary(1000, 10))
>>> t.assess().metric
'error_rate'
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from detectors.base import Assessment, Finding
from detectors.errors import StateError
from detectors.rate_ratio import RateRatioTest
from detectors.summary import CohortSummary

__all__ = ["ErrorRateTest"]

STATE_VERSION = 1


def _ratio_reason(
    metric: str, finding: Finding, est: float | None, lo: float, hi: float, e_halt: float
) -> str:
    if est is None:
        return f"{metric}: no events yet"
    ratio = f"ratio {est:.2f} [{lo:.2f}, {hi:.2f}]"
    if finding is Finding.REGRESSION:
        return f"{metric} regression: canary/baseline ratio {est:.2f}, evidence e={e_halt:.3g}"
    if finding is Finding.NON_INFERIOR:
        return f"{metric} non-inferior: canary/baseline {ratio}"
    return f"{metric} undecided: canary/baseline {ratio}"


class ErrorRateTest:
    """Compares the canary's error rate with the baseline's (STATISTICS.md §1).

    Parameters are those of :class:`~detectors.rate_ratio.RateRatioTest`.
    """

    metric = "error_rate"

    def __init__(self, alpha: float = 0.01, **kwargs: Any) -> None:
        self._test = RateRatioTest(alpha, **kwargs)

    @property
    def test(self) -> RateRatioTest:
        """The underlying rate-ratio test."""
        return self._test

    @property
    def halted(self) -> bool:
        """True once the HALT gate has fired (sticky)."""
        return self._test.halted

    def update(self, canary: CohortSummary, baseline: CohortSummary) -> None:
        """Fold one increment of each cohort."""
        self._test.update(canary.errors, canary.requests, baseline.errors, baseline.requests)

    def update_many(
        self,
        canary: Sequence[CohortSummary],
        baseline: Sequence[CohortSummary],
        strata: Sequence[str] | None = None,
    ) -> None:
        """Fold increments (pairs ``canary[i]``, ``baseline[i]``; e.g. the strata of a window)
        at once: the same as :meth:`update` on each pair, vectorised. ``strata`` (labels) are
        accepted for symmetry with the latency test and not needed: the conditional binomial has
        no per-stratum parameter."""
        self._test.update_many(
            [c.errors for c in canary],
            [c.requests for c in canary],
            [b.errors for b in baseline],
            [b.requests for b in baseline],
        )

    def assess(self) -> Assessment:
        """Current finding with the error-rate evidence."""
        a = self._test.assess()
        canary_rate = a.canary_events / a.canary_requests if a.canary_requests else None
        baseline_rate = a.baseline_events / a.baseline_requests if a.baseline_requests else None
        return Assessment(
            metric=self.metric,
            finding=a.finding,
            estimate=a.estimate,
            lower=a.lower,
            upper=a.upper,
            e_halt=a.e_halt,
            e_promote=a.e_promote,
            canary_requests=a.canary_requests,
            baseline_requests=a.baseline_requests,
            requests_to_decision=a.requests_to_decision,
            reason=_ratio_reason(
                "error rate", a.finding, a.estimate, a.lower, a.upper, a.e_halt_crossed or a.e_halt
            ),
            e_halt_crossed=a.e_halt_crossed,
            detail={
                "canary": canary_rate,
                "baseline": baseline_rate,
                "canary_errors": a.canary_events,
                "baseline_errors": a.baseline_events,
                "promote_path": a.promote_path,
            },
        )

    def state_dict(self) -> dict[str, Any]:
        """JSON-able state."""
        return {"v": STATE_VERSION, "test": self._test.state_dict()}

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> ErrorRateTest:
        """Rebuild from :meth:`state_dict` output."""
        if state.get("v") != STATE_VERSION:
            msg = f"unsupported error-rate state version {state.get('v')!r}"
            raise StateError(msg, value=state.get("v"))
        obj = cls.__new__(cls)
        obj._test = RateRatioTest.from_state(state["test"])
        return obj
