"""The verdict state machine of one bake: PENDING → PROMOTE | HALT | INCONCLUSIVE.

:class:`BakeVerdict` is fed increments (what one folded partial adds to each cohort) with the
latest event time they contain, steps its detectors, and decides:

* HALT as soon as any gated detector finds a REGRESSION (or the blast-radius gate with
  ``action = "halt"`` is violated) — at any time, and sticky;
* PROMOTE once the canary has ``min_canary_requests`` (and ``min_duration_s`` of event time, and
  the coverage the policy asks for), every gated detector is NON_INFERIOR, and the event time is
  inside a promotion window (if the policy has any);
* INCONCLUSIVE past ``max_canary_requests`` or ``max_duration_s`` undecided, with the policy's
  ``on_inconclusive`` resolution; a bake without canary or baseline traffic never promotes.

Decisions are final; the evidence keeps updating. All times are event times from the records,
so replaying the same increments yields the same verdict timeline.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from detectors.base import Assessment, Finding
from detectors.drift import DriftEvent, DriftMonitor
from detectors.summary import CohortSummary
from monitor.bakes.spec import BakeSpec
from monitor.errors import BakeError
from monitor.verdict.bake_tests import BakeTests
from monitor.verdict.decision import freeze_decision, pending_reasons, promote_reason
from monitor.verdict.document import Evidence, Readout, Status, build_document, iso
from monitor.verdict.windows import Cells, ClosedWindow, WindowBuffer, single_cell

__all__ = ["BakeVerdict", "Status", "VerdictEvent", "document_without_data", "iso"]

STATE_VERSION = 2  # 2: event-time windows (1, before them, is still read)


@dataclass(frozen=True)
class VerdictEvent:
    """Something worth an alert: a decision, a drift detection, a blast-radius violation."""

    kind: str  # "verdict" | "drift" | "blast_radius" | "override" | "cancel"
    bake: str
    status: Status
    summary: str
    event_time_s: float
    metric: str = ""  # the metric that decided (a HALT), or the drifting one
    segment: str = ""  # the segment value whose test HALTed, e.g. 'route="/api/cart"'


class BakeVerdict:
    """Folds increments of one bake into detectors and a verdict document."""

    def __init__(self, spec: BakeSpec) -> None:
        self.spec = spec
        policy = spec.policy
        self._tests = BakeTests(policy)
        ev = policy.evidence
        self._drift = DriftMonitor()
        self._canary = CohortSummary()
        self._baseline = CohortSummary()
        self._first_time_s: float | None = None
        self._last_time_s: float | None = None
        self._status = Status.PENDING
        self._resolution: str | None = None
        self._decided_at_s: float | None = None
        self._decision_reason: str | None = None
        self._decision: dict[str, Any] | None = None  # frozen at the decision (issue 11)
        self._blast_alerted = False
        self._override: dict[str, Any] | None = None
        self._override_source: dict[str, Any] | None = None
        self._increments = 0
        self._windows = WindowBuffer(
            ev.window_s,
            ev.allowed_lateness_s,
            ev.max_strata,
            None if ev.cell_dims == ev.stratify else ev.stratify,
        )

    # -- properties ------------------------------------------------------------------------
    @property
    def status(self) -> Status:
        return self._status

    @property
    def decided(self) -> bool:
        return self._status is not Status.PENDING

    @property
    def last_event_time_s(self) -> float | None:
        """Latest event time folded so far."""
        return self._last_time_s

    @property
    def tests(self) -> BakeTests:
        """The bake's tests, to read (the timeline samples them); only update() feeds them."""
        return self._tests

    @property
    def watermark_s(self) -> float | None:
        """The watermark as of the last records folded or window closed (None before any)."""
        wm = self._windows.shown_watermark_s
        return wm if math.isfinite(wm) else None

    def source_idle(self, source: tuple[str, int]) -> bool | None:
        return self._windows.source_idle(source)

    @property
    def canary(self) -> CohortSummary:
        return self._canary

    @property
    def baseline(self) -> CohortSummary:
        return self._baseline

    # -- folding ---------------------------------------------------------------------------
    def update(
        self,
        canary: CohortSummary,
        baseline: CohortSummary,
        event_time_s: float | None,
        *,
        cells: Cells | None = None,
        progress_s: float | None = None,
        source: tuple[str, int] = ("", 0),
        idle: bool = False,
        source_partitions: int | None = None,
    ) -> list[VerdictEvent]:
        """Fold one increment; returns the events (decision, drift, blast radius) it caused.
        ``canary``/``baseline`` go into the totals (every record, exactly once). ``cells`` are
        the same requests by (event-time window, stratum); they wait in their window until the
        watermark (the slowest busy source's clock; ``progress_s`` is ``source``'s) passes the
        window's end plus the allowed lateness; each closed window is tested once. Without cells
        the increment is one cell of the window of ``event_time_s`` (the source clock then that
        time); without cells and without a time it is tested at once (e.g. in a notebook)."""
        events: list[VerdictEvent] = []
        if canary.requests or baseline.requests:
            self._increments += 1
            self._canary.merge(canary)
            self._baseline.merge(baseline)
        if cells is None and event_time_s is None:
            if canary.requests or baseline.requests:
                self._test_cells([("", canary, baseline)], None, events)
            return events
        if cells is None:
            cells = single_cell(canary, baseline, event_time_s, self._windows.window_s)
            progress_s = event_time_s if progress_s is None else progress_s
        self._windows.add(cells)
        events.extend(self._check_blast_radius(self._last_time_s or 0.0))
        closed = self._windows.advance(progress_s, source, idle=idle, of=source_partitions)
        for w in closed:
            self._test_cells(w.strata, w, events)
        if closed or events or cells or canary.requests or baseline.requests:
            self._windows.shown_watermark_s = self._windows.watermark_s
        return events

    def _test_cells(
        self,
        strata: Sequence[tuple[str, CohortSummary, CohortSummary]],
        window: ClosedWindow | None,
        events: list[VerdictEvent],
    ) -> None:
        """Feed one closed window (or an untimed increment) to the detectors, stratum by
        stratum (one effect for all: their likelihoods multiply), then step the verdict."""
        if window is not None:
            if self._first_time_s is None:
                self._first_time_s = max(window.start_s, self.spec.start_s or window.start_s)
            self._last_time_s = window.end_s
        now = self._last_time_s or 0.0
        tested = self._tests.feed(strata, window.cells if window is not None else strata, now)
        if tested is None:  # the canary's warm-up
            if not self.decided:
                self._step(now, events)
            return
        pooled_c, pooled_b = tested
        if self.spec.policy.drift_alerts:
            for d in self._drift.update(pooled_c, pooled_b):
                events.append(self._drift_event(d, now))
        if not self.decided:
            self._step(now, events)

    def _drift_event(self, d: DriftEvent, now: float) -> VerdictEvent:
        what = "error rate" if d.signal == "error_z" else "p90 latency"
        return VerdictEvent(
            "drift",
            self.spec.id,
            self._status,
            f"canary {what} drifted up during the bake (advisory, signal {d.signal}={d.value:.3g})",
            now,
            metric=d.signal,
        )

    def _blast_values(self) -> int:
        br = self.spec.policy.blast_radius
        if br is None:
            return 0
        return sum(1 for c in self._canary.segments.get(br.segment, {}).values() if c > 0)

    def _check_blast_radius(self, now: float) -> list[VerdictEvent]:
        br = self.spec.policy.blast_radius
        if br is None or self._blast_alerted:
            return []
        seen = self._blast_values()
        if seen <= br.max_values:
            return []
        self._blast_alerted = True
        summary = f"canary seen in {seen} {br.segment} values, policy allows {br.max_values}"
        return [
            VerdictEvent(
                "blast_radius", self.spec.id, self._status, summary, now, metric=br.segment
            )
        ]

    def _assessments(self) -> dict[str, Assessment]:
        return self._tests.assessments()

    def _decide(
        self,
        status: Status,
        reason: str,
        now: float,
        events: list[VerdictEvent],
        *,
        metric: str = "",
        segment: str = "",
    ) -> None:
        self._status = status
        self._decided_at_s = now
        self._decision_reason = reason
        self._resolution = self._resolution_of(status)
        self._freeze(status, reason, now, "" if segment else metric)
        events.append(VerdictEvent("verdict", self.spec.id, status, reason, now, metric, segment))

    def _freeze(self, status: Status, reason: str, at_s: float, pooled_halt: str = "") -> None:
        pooled, per_value = self._tests.halt_needs()
        self._decision = freeze_decision(
            status=status.value,
            reason=reason,
            at=iso(at_s),
            requests={
                "canary": self._canary.requests,
                "baseline": self._baseline.requests,
                "tested_canary": self._tests.tested_canary,
                "tested_baseline": self._tests.tested_baseline,
            },
            found=self._assessments(),
            halt_needs=pooled,
            segment=self._tests.segment_regression(),
            segment_halt_needs=per_value,
            evident=self._tests.segments.evident(pooled_halt) if pooled_halt else (),
            override=self._override,
        )

    def _resolution_of(self, status: Status) -> str | None:
        """What an INCONCLUSIVE status resolves to under the policy (``on_inconclusive``)."""
        halt = self.spec.policy.on_inconclusive == "halt"
        return None if status is not Status.INCONCLUSIVE else ("HALT" if halt else "PROMOTE")

    def _duration_s(self) -> float:
        if self._first_time_s is None or self._last_time_s is None:
            return 0.0
        return max(self._last_time_s - self._first_time_s, 0.0)

    def _step(self, now: float, events: list[VerdictEvent]) -> None:
        policy = self.spec.policy
        found = self._assessments()
        self._tests.eta.observe(self._tests.tested_canary, now, self._tests.projection(found))
        for name, a in found.items():
            if a.finding is Finding.REGRESSION:
                where = self._tests.segments.most_evident(name)
                reason = a.reason + (f"; {where}" if where else "")
                self._decide(Status.HALT, reason, now, events, metric=name)
                return
        segment = self._tests.segment_regression()
        if segment is not None:
            where = f'{segment.segment}="{segment.value}"'
            metric = segment.assessment.metric
            self._decide(Status.HALT, segment.reason, now, events, metric=metric, segment=where)
            return
        br = policy.blast_radius
        if br is not None and br.action == "halt" and self._blast_values() > br.max_values:
            self._decide(
                Status.HALT,
                f"blast radius: canary in {self._blast_values()} {br.segment} values > {br.max_values}",
                now,
                events,
            )
            return
        if (
            not self._pending_reasons(found, now)
            and self._tests.tested_canary
            and self._tests.tested_baseline
        ):
            self._decide(Status.PROMOTE, promote_reason(self.spec.policy, found), now, events)
            return
        over_requests = self._tests.tested_canary >= policy.max_canary_requests
        over_time = (
            policy.max_duration_s is not None and self._duration_s() >= policy.max_duration_s
        )
        if over_requests or over_time:
            limit = (
                f"canary requests {self._tests.tested_canary:,} reached maximum {policy.max_canary_requests:,}"
                if over_requests
                else f"bake duration reached maximum {policy.max_duration_s:g}s"
            )
            self._decide(Status.INCONCLUSIVE, f"{limit} without a decision", now, events)

    def _pending_reasons(self, found: Mapping[str, Assessment], now: float) -> list[str]:
        """Why the bake cannot promote now (empty = it can)."""
        return pending_reasons(
            self.spec.policy,
            self._canary,
            self._baseline,
            self._tests,
            self._duration_s(),
            found,
            now,
        )

    # -- operator actions ------------------------------------------------------------------
    @property
    def applied_override(self) -> dict[str, Any] | None:
        """The override request (as given) this engine has applied, if any."""
        return self._override_source

    def override(
        self,
        status: Status,
        who: str,
        why: str,
        at_s: float,
        *,
        source: dict[str, Any] | None = None,
    ) -> VerdictEvent:
        """Force a decision (audited). HALT cannot be overridden to PROMOTE by accident:
        the caller must pass ``status`` explicitly and the override shows in the document."""
        if status is Status.PENDING:
            msg = "an override must set PROMOTE, HALT or INCONCLUSIVE"
            raise BakeError(msg, value=status)
        self._override = {
            "status": status.value,
            "by": who,
            "reason": why,
            "at": iso(at_s),
            "previous": self._status.value,
        }
        self._status = status
        self._decided_at_s = at_s
        self._decision_reason = f"operator override by {who}: {why}"
        self._resolution = self._resolution_of(status)
        self._freeze(status, self._decision_reason, at_s)
        self._override_source = source
        return VerdictEvent("override", self.spec.id, status, self._decision_reason, at_s)

    def apply_spec(self, spec: BakeSpec) -> list[VerdictEvent]:
        """Adopt an updated spec of this bake (cancellation, override) and apply its operator
        override unless already applied; returns the events to alert.

        The detectors keep judging under the policy the bake started with, so the same
        increments give the same verdicts whenever an update arrives; an applied override
        stays (decisions are final) even if a later spec has none.
        """
        if spec.id != self.spec.id:
            msg = f'spec of bake "{spec.id}" given to the verdict of bake "{self.spec.id}"'
            raise BakeError(msg, value=spec.id)
        events = []
        if spec.end_s is not None and self.spec.end_s is None:
            why = f"cancelled at {iso(spec.end_s)} while {self._status.value}"
            events.append(VerdictEvent("cancel", spec.id, self._status, why, spec.end_s))
            if not self.decided:  # nothing was proven, and nothing more will be counted
                self._status, self._decided_at_s = Status.CANCELLED, spec.end_s
                self._decision_reason = f"cancelled at {iso(spec.end_s)} before a decision"
                self._freeze(Status.CANCELLED, self._decision_reason, spec.end_s)
        self.spec = replace(spec, policy=self.spec.policy)
        ov = spec.override
        if ov is None or ov == self._override_source:
            return events
        status = Status(ov["status"])
        events.append(self.override(status, ov["by"], ov["reason"], ov["at"], source=dict(ov)))
        return events

    # -- read-out --------------------------------------------------------------------------
    def estimated_requests_to_decision(self) -> int | None:
        """Stable (:mod:`~monitor.verdict.eta`): None before a few windows were tested."""
        if self.decided:
            return 0
        return self._tests.eta.requests(self._tests.tested_canary)

    def readout(self) -> Readout:
        """What the document shows, now."""
        found = self._assessments()
        if self.decided:
            reasons = [self._decision_reason or self._status.value]
        else:
            reasons = self._pending_reasons(found, self._last_time_s or 0.0) or ["evaluating"]
        return Readout(
            spec=self.spec,
            status=self._status,
            resolution=self._resolution,
            reasons=reasons,
            assessments=found,
            canary=self._canary,
            baseline=self._baseline,
            estimated_requests_to_decision=(est := self.estimated_requests_to_decision()),
            estimating=not self.decided and not self._tests.eta.ready,
            estimated_seconds_to_decision=0.0 if self.decided else self._tests.eta.seconds(est),
            duration_s=self._duration_s(),
            override=self._override,
            decided_at_s=self._decided_at_s,
            last_event_time_s=self._last_time_s,
            evidence=self._evidence(),
            segments=self._tests.segments.breakdown(),
            dispersion=self._tests.dispersion_reading(),
            decision=self._decision,
        )

    def _evidence(self) -> Evidence:
        waiting_c, waiting_b = self._windows.open_requests()
        return Evidence(
            self._tests.tested_canary,
            self._tests.tested_baseline,
            waiting_c,
            waiting_b,
            self._windows.late_canary,
            self._windows.late_baseline,
            self.watermark_s,
            self._tests.warmup.excluded_canary,
            self._tests.warmup.excluded_baseline,
        )

    def document(self, *, stale: bool = False, evaluated_at: str | None = None) -> dict[str, Any]:
        """The verdict document of INTEGRATIONS.md (JSON-able)."""
        return build_document(self.readout(), stale=stale, evaluated_at=evaluated_at)

    # -- state -----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """JSON-able snapshot; :meth:`from_state` restores an identical verdict engine."""
        return {
            "v": STATE_VERSION,
            "spec": self.spec.to_dict(),
            **self._tests.state_dict(),
            "drift": self._drift.state_dict(),
            "canary": self._canary.to_dict(),
            "baseline": self._baseline.to_dict(),
            "first_time_s": self._first_time_s,
            "last_time_s": self._last_time_s,
            "status": self._status.value,
            "resolution": self._resolution,
            "decided_at_s": self._decided_at_s,
            "decision_reason": self._decision_reason,
            "decision": self._decision,
            "blast_alerted": self._blast_alerted,
            "override": self._override,
            "override_source": self._override_source,
            "increments": self._increments,
            "windows": self._windows.state_dict(),
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> BakeVerdict:
        if state.get("v") not in (1, STATE_VERSION):
            msg = f"unsupported verdict state version {state.get('v')!r}"
            raise BakeError(msg, value=state.get("v"))
        obj = cls(BakeSpec.from_dict(state["spec"]))
        obj._tests.restore(state, state.get("tested"))
        obj._drift = DriftMonitor.from_state(state["drift"])
        obj._canary = CohortSummary.from_dict(state["canary"])
        obj._baseline = CohortSummary.from_dict(state["baseline"])
        obj._first_time_s = state["first_time_s"]
        obj._last_time_s = state["last_time_s"]
        obj._status = Status(state["status"])
        obj._resolution = state["resolution"]
        obj._decided_at_s = state["decided_at_s"]
        obj._decision_reason = state["decision_reason"]
        obj._decision = state.get("decision")  # None in states from before it existed
        obj._blast_alerted = bool(state["blast_alerted"])
        obj._override = state["override"]
        obj._override_source = state.get("override_source")
        obj._increments = int(state["increments"])
        if "windows" in state:
            obj._windows.restore(state["windows"])
        else:  # v1 (before windows): everything folded so far was tested
            obj._tests.tested_canary = obj._canary.requests
            obj._tests.tested_baseline = obj._baseline.requests
            obj._windows.close_through(obj._last_time_s)
        return obj


def document_without_data(spec: BakeSpec) -> dict[str, Any]:
    """The document of a bake no partial has reached yet: PENDING (never good news), or the
    operator's override, applied by the engine like any other."""
    engine = BakeVerdict(replace(spec, end_s=None))  # a cancel applies as the update it is
    engine.apply_spec(spec)
    doc = engine.document()
    if not engine.decided:
        doc["reasons"] = ["no traffic observed for this bake yet", *doc["reasons"][:1]]
    return doc
