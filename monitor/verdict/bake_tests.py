"""What the tests of one bake have seen: the pooled detectors, the per-segment tests, the canary
warm-up, the coverage counts and the dispersion check, fed one closed window at a time.

:class:`BakeTests` is the evidence side of a :class:`~monitor.verdict.engine.BakeVerdict`: the
engine decides, this module keeps what the decision is based on (docs/statistics.md).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from detectors.base import Assessment, Finding
from detectors.dispersion import DispersionAssessment, DispersionCheck
from detectors.summary import CohortSummary
from monitor.bakes.policy import Policy
from monitor.verdict.build import Detector, halt_budgets, load_detector, make_detector
from monitor.verdict.eta import DecisionEta
from monitor.verdict.segments import SegmentFinding, SegmentTests, ServedCounts, parse_label
from monitor.verdict.windows import Warmup

__all__ = ["BakeTests"]

Stratum = tuple[str, CohortSummary, CohortSummary]


class BakeTests:
    """The tests of one bake under its policy."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        ev = policy.evidence
        # The segments whose values get tests (and a share of the HALT budget): fixed at the
        # first tested window, before any test has seen data (see _fix_budget).
        self.budget_dims: tuple[str, ...] | None = None
        self._build(ev.segment_tests)
        self.warmup = Warmup(ev.canary_warmup_requests, ev.canary_warmup_s)
        self.served = ServedCounts()
        self.dispersion = DispersionCheck()
        self.tested_canary = 0
        self.tested_baseline = 0
        self.eta = DecisionEta()

    def _build(self, dims: Sequence[str]) -> None:
        """Fresh pooled and segment tests, the HALT budget split over ``dims``' values."""
        policy = self.policy
        pooled, per_value = halt_budgets(policy, dims)
        self.detectors: dict[str, Detector] = {
            m: make_detector(policy, m, a) for m, a in pooled.items()
        }
        self.segments = SegmentTests(
            dims,
            policy.evidence.max_segment_values,
            per_value,
            lambda metric, alpha: make_detector(policy, metric, alpha),
        )

    def _fix_budget(self, cells: Sequence[Stratum]) -> None:
        """At the first tested window: a segment whose values the records do not carry (no such
        field, or one value only) gets no tests and no budget, so the pooled test keeps it.

        Valid because the choice depends on the cells' labels only (which fields the records
        have), never on their errors or latencies, and is made before any test has seen data.
        """
        seen: dict[str, set[str]] = {}
        for label, _, _ in cells:
            for dim, value in parse_label(label).items():
                if value:
                    seen.setdefault(dim, set()).add(value)
        dims = tuple(d for d in self.policy.evidence.segment_tests if len(seen.get(d, ())) >= 2)
        if dims != self.segments.dims:
            self._build(dims)
        self.budget_dims = dims

    def feed(
        self, strata: Sequence[Stratum], cells: Sequence[Stratum], start_s: float
    ) -> tuple[CohortSummary, CohortSummary] | None:
        """Test one closed window (its strata, and its cells for the segment tests) unless it
        is in the canary's warm-up; returns its pooled (canary, baseline) when tested."""
        pooled_c, pooled_b = CohortSummary(), CohortSummary()
        for _, c, b in strata:
            pooled_c.merge(c)
            pooled_b.merge(b)
        self.served.add(cells)
        if self.warmup.excludes(start_s, pooled_c.requests, pooled_b.requests):
            return None
        if self.budget_dims is None:
            self._fix_budget(cells)
        self._check_dispersion(strata)
        labels = [label for label, _, _ in strata]
        cs, bs = [c for _, c, _ in strata], [b for _, _, b in strata]
        for det in self.detectors.values():
            det.update_many(cs, bs, labels)  # latency: thresholds per stratum
        self.segments.update(cells)
        self.tested_canary += pooled_c.requests
        self.tested_baseline += pooled_b.requests
        return pooled_c, pooled_b

    def _check_dispersion(self, strata: Sequence[Stratum]) -> None:
        """Error events of each stratum against the error test's estimate so far."""
        det = self.detectors.get("error_rate")
        if det is None:
            return
        est = det.assess().estimate if self.dispersion.cells else None
        theta = math.log(est) if est is not None and est > 0 else 0.0
        for _, c, b in strata:
            self.dispersion.update(c.errors, c.requests, b.errors, b.requests, theta)

    def projection(self, found: Mapping[str, Assessment]) -> int | None:
        """The detectors' raw projection of the canary requests a decision still needs: the
        minimum still to test, and each undecided gate's own projection (None: not in sight)."""
        needs = [max(self.policy.min_canary_requests - self.tested_canary, 0)]
        for a in found.values():
            if a.finding is not Finding.NON_INFERIOR:
                if a.requests_to_decision is None:
                    return None
                needs.append(a.requests_to_decision)
        return max(needs)

    # -- read-outs ---------------------------------------------------------------------------
    def assessments(self) -> dict[str, Assessment]:
        return {name: det.assess() for name, det in self.detectors.items()}

    def segment_regression(self) -> SegmentFinding | None:
        """The strongest per-segment regression, if any test found one."""
        if not self.segments.halted:
            return None
        found = self.segments.regressions()
        return found[0] if found else None

    def served_of(self, dim: str) -> tuple[dict[str, int], dict[str, int]] | None:
        """(canary, baseline) requests per value of a cell segment; None for other segments."""
        return self.served.of(dim) if dim in self.served else None

    def halt_needs(self) -> tuple[dict[str, float], dict[str, float]]:
        """The HALT e-value thresholds (1/α): per metric of the pooled test, and of one
        segment value's test."""
        dims = self.policy.evidence.segment_tests if self.budget_dims is None else self.budget_dims
        pooled, per_value = halt_budgets(self.policy, dims)
        return {m: 1.0 / a for m, a in pooled.items()}, {m: 1.0 / a for m, a in per_value.items()}

    def dispersion_reading(self) -> DispersionAssessment:
        return self.dispersion.assess()

    # -- state -------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "detectors": {k: d.state_dict() for k, d in self.detectors.items()},
            "tested": [self.tested_canary, self.tested_baseline],
            "budget_dims": None if self.budget_dims is None else list(self.budget_dims),
            "segments": self.segments.state_dict(),
            "warmup": self.warmup.state_dict(),
            "served": self.served.state_dict(),
            "dispersion": self.dispersion.state_dict(),
            "eta": self.eta.state_dict(),
        }

    def restore(self, state: Mapping[str, Any], tested: Sequence[int] | None) -> None:
        """Load an engine state's evidence (``tested`` None: a state from before windows, whose
        folded requests were all tested). A state from before the segment tests keeps its
        pooled tests' whole budget and runs no segment tests; one from before the budget was
        fixed per bake (no ``budget_dims``) keeps the policy's segments."""
        if "segments" in state:
            dims = state.get("budget_dims", list(self.policy.evidence.segment_tests))
            if dims is not None:
                self.budget_dims = tuple(str(d) for d in dims)
                if self.budget_dims != self.segments.dims:
                    self._build(self.budget_dims)
        for k, d in state["detectors"].items():
            self.detectors[k] = load_detector(k, d)
        if tested is not None:
            self.tested_canary, self.tested_baseline = (int(x) for x in tested)
        self.eta.restore(state.get("eta"))
        if "segments" in state:
            self.segments.restore(state["segments"], load_detector)
            self.warmup.restore(state["warmup"])
            self.served.restore(state["served"])
            self.dispersion = DispersionCheck.from_state(state["dispersion"])
        else:
            self.budget_dims = ()
            self.segments = SegmentTests((), 1, {}, self.segments.factory)
