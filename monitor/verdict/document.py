"""The verdict document (INTEGRATIONS.md "Verdict document") and its one interpretation.

:func:`build_document` turns what a verdict engine knows (a :class:`Readout`) into the JSON-able
document the API serves, the judge publishes and ``bakemon replay --json`` prints.
:func:`interpret` is the only place that decides what a document *means* — "go", "stop",
"wait" or "broken" — and from that the gate status codes and the exit codes:

========================  =======  ============  =============  =========
document                  meaning  promote gate  rollback gate  exit code
========================  =======  ============  =============  =========
PROMOTE                   go       200           409            0
HALT                      stop     409           200            1
INCONCLUSIVE → PROMOTE    go       200           409            2
INCONCLUSIVE → HALT       stop     409           200            2
PENDING                   wait     409           409            3
CANCELLED                 stop     409           200            8
missing / unreadable      broken   503           503            6
========================  =======  ============  =============  =========

INCONCLUSIVE is resolved by the document's ``resolution`` (the policy's ``on_inconclusive``),
falling back to the policy in the document and then to HALT: no data is never good news. An
operator override is already the document's status; an override that contradicts the status
makes the document unreadable. CANCELLED (a bake cancelled while PENDING: no verdict was
reached and none will be) never promotes; its rollback gate opens, so a pipeline waiting on it
stops. 409 holds a Flagger canary without being retried; 503 is the
monitor failing to answer (Flagger and Spinnaker retry it).

>>> interpret({"status": "INCONCLUSIVE", "resolution": "PROMOTE", "reasons": ["max"]}).meaning
'go'
>>> interpret({"status": "PENDING", "reasons": ["canary requests 10 of 20 minimum"]}).gate("promote")
(409, 'PENDING: canary requests 10 of 20 minimum')
"""

from __future__ import annotations

import datetime as dt
import enum
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from detectors.base import Assessment
from detectors.dispersion import DispersionAssessment
from detectors.summary import CohortSummary
from monitor.bakes.spec import BakeSpec
from monitor.verdict.decision import LIVE_NOTE

__all__ = [
    "GATE_BROKEN",
    "GATE_HOLD",
    "GATE_OPEN",
    "Evidence",
    "ExitCode",
    "Gate",
    "Meaning",
    "Reading",
    "Readout",
    "Status",
    "build_document",
    "exit_code_of",
    "interpret",
    "iso",
]

Meaning = Literal["go", "stop", "wait", "broken"]
Gate = Literal["promote", "rollback"]

GATE_OPEN = 200
GATE_HOLD = 409  # a non-retried 4xx: Flagger holds the canary, Spinnaker stops polling
GATE_BROKEN = 503  # the monitor cannot answer for this bake: retried by Flagger and Spinnaker


class Status(enum.StrEnum):
    PENDING = "PENDING"
    PROMOTE = "PROMOTE"
    HALT = "HALT"
    INCONCLUSIVE = "INCONCLUSIVE"
    CANCELLED = "CANCELLED"  # cancelled while PENDING (terminal; a decided bake keeps its status)


class ExitCode(enum.IntEnum):
    """Exit codes of ``bakemon replay`` and ``bakemon bake wait`` (README "Exit codes")."""

    PROMOTE = 0
    HALT = 1
    INCONCLUSIVE = 2  # whatever its resolution: the pipeline sees that nothing was proven
    PENDING = 3  # replay: still undecided at the end of the log
    USAGE = 4  # bad flags or input, unknown bake, rejected token
    TIMEOUT = 5  # bake wait: still PENDING when --timeout ran out
    UNREACHABLE = 6  # bake wait: no usable answer from the API after --retries polls
    CANCELLED = 8  # the bake was cancelled before it decided (7 is `fields check`'s)


_STATUS_EXIT = {
    Status.PROMOTE: ExitCode.PROMOTE,
    Status.HALT: ExitCode.HALT,
    Status.INCONCLUSIVE: ExitCode.INCONCLUSIVE,
    Status.PENDING: ExitCode.PENDING,
    Status.CANCELLED: ExitCode.CANCELLED,
}


def iso(epoch_s: float | None) -> str | None:
    """RFC 3339 UTC timestamp with milliseconds, or None."""
    if epoch_s is None or not math.isfinite(epoch_s):
        return None
    try:
        when = dt.datetime.fromtimestamp(epoch_s, tz=dt.UTC)
    except (ValueError, OverflowError, OSError):  # beyond year 9999 (or before 1): as given
        return f"{epoch_s:.3f}"
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _fmt(n: int) -> str:
    return f"{n:,}"


# -- building ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Evidence:
    """Which requests the tests have seen: those of closed event-time windows."""

    tested_canary: int = 0
    tested_baseline: int = 0
    waiting_canary: int = 0  # in windows the watermark has not closed yet
    waiting_baseline: int = 0
    late_canary: int = 0  # arrived after their window closed: counted, never tested
    late_baseline: int = 0
    watermark_s: float | None = None
    warmup_canary: int = 0  # in windows left out as the canary's warm-up
    warmup_baseline: int = 0


@dataclass(frozen=True)
class Readout:
    """What a verdict engine knows at one moment, in the terms the document shows."""

    spec: BakeSpec
    status: Status
    resolution: str | None
    reasons: Sequence[str]
    assessments: Mapping[str, Assessment]
    canary: CohortSummary
    baseline: CohortSummary
    estimated_requests_to_decision: int | None
    duration_s: float
    override: Mapping[str, Any] | None
    decided_at_s: float | None
    last_event_time_s: float | None
    evidence: Evidence = field(default_factory=lambda: Evidence())
    segments: Mapping[str, Sequence[Mapping[str, Any]]] = field(default_factory=dict)
    dispersion: DispersionAssessment | None = None
    decision: Mapping[str, Any] | None = None
    estimated_seconds_to_decision: float | None = None  # at the canary's recent tested rate
    estimating: bool = False  # too few windows tested for a forecast yet

    @property
    def decided(self) -> bool:
        return self.status is not Status.PENDING


def _metrics(r: Readout) -> dict[str, Any]:
    metrics: dict[str, Any] = {}
    if "error_rate" in r.assessments:
        a = r.assessments["error_rate"]
        metrics["error_rate"] = {
            "canary": a.detail.get("canary"),
            "baseline": a.detail.get("baseline"),
            "ratio": a.estimate,
            "ratio_bounds": [a.lower, a.upper],
            "finding": a.finding.value,
            "e_value_halt": a.e_halt,
            "e_value_promote": a.e_promote,
            "canary_errors": a.detail.get("canary_errors"),
            "baseline_errors": a.detail.get("baseline_errors"),
        }
    if "latency" in r.assessments:
        a = r.assessments["latency"]
        for qname, q in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99)):
            c, b = r.canary.quantile(q), r.baseline.quantile(q)
            metrics[f"latency_{qname}_seconds"] = {
                "canary": c,
                "baseline": b,
                "ratio": (c / b) if c and b else None,
            }
        metrics["latency"] = {
            "finding": a.finding.value,
            "ratio": a.estimate,
            "ratio_bounds": [a.lower, a.upper],
            "e_value_halt": a.e_halt,
            "e_value_promote": a.e_promote,
            "thresholds": a.detail.get("thresholds", []),
        }
    return metrics


def _span(seconds: float) -> str:
    """A forecast's duration in the unit a person plans in: 45 s, 12 min, 3.5 h."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _progress(r: Readout) -> dict[str, Any]:
    policy = r.spec.policy
    ev = r.evidence
    n_c = ev.tested_canary
    fraction = min(n_c / policy.min_canary_requests, 1.0) if policy.min_canary_requests else 1.0
    return {
        "canary_requests": r.canary.requests,
        "baseline_requests": r.baseline.requests,
        "tested_canary_requests": ev.tested_canary,
        "tested_baseline_requests": ev.tested_baseline,
        "waiting_requests": {"canary": ev.waiting_canary, "baseline": ev.waiting_baseline},
        "late_requests": {"canary": ev.late_canary, "baseline": ev.late_baseline},
        "warmup_requests": {"canary": ev.warmup_canary, "baseline": ev.warmup_baseline},
        "watermark": iso(ev.watermark_s),
        "min_canary_requests": policy.min_canary_requests,
        "max_canary_requests": policy.max_canary_requests,
        "fraction": round(fraction, 4),
        "estimated_requests_to_decision": r.estimated_requests_to_decision,
        "estimated_seconds_to_decision": r.estimated_seconds_to_decision,
        "duration_s": round(r.duration_s, 3),
    }


def _assumptions(r: Readout) -> dict[str, Any]:
    """Checks of what the guarantees assume (STATISTICS.md §7.6): request-level assignment."""
    d = r.dispersion
    if d is None:
        return {"dispersion": None}
    return {
        "dispersion": {
            "ratio": d.ratio,
            "z": d.z,
            "groups": d.df,
            "suspect": d.suspect,
            "message": d.message,
        }
    }


LATE_WARN_SHARE = 0.01


def _warnings(r: Readout) -> list[str]:
    """What makes this verdict less trustworthy than its guarantees say (docs/statistics.md)."""
    out: list[str] = []
    if r.dispersion is not None and r.dispersion.suspect:
        out.append(r.dispersion.message)
    ev = r.evidence
    for cohort, late, total in (
        ("canary", ev.late_canary, r.canary.requests),
        ("baseline", ev.late_baseline, r.baseline.requests),
    ):
        if total and late / total > LATE_WARN_SHARE:
            out.append(
                f"{late:,} {cohort} requests ({late / total:.1%}) arrived after their window "
                "closed: counted, not tested; a cohort whose logs lag by more than "
                f"allowed_lateness_s ({r.spec.policy.evidence.allowed_lateness_s:g}s) is tested "
                "on a time-biased part of each window: raise allowed_lateness_s"
            )
    return out


def build_document(
    r: Readout, *, stale: bool = False, evaluated_at: str | None = None
) -> dict[str, Any]:
    """The verdict document of INTEGRATIONS.md (JSON-able); the key order is part of the format."""
    policy = r.spec.policy
    est, secs = r.estimated_requests_to_decision, r.estimated_seconds_to_decision
    progress_text = (
        f"{r.status.value}: canary {_fmt(r.evidence.tested_canary)}/{_fmt(policy.min_canary_requests)} requests tested"
        + (f", ~{_fmt(est)} more to decide" if est else "")
        + (f" (~{_span(secs)} at the current rate)" if est and secs else "")
        + (", estimating the time to decide" if r.estimating else "")
    )
    return {
        "id": r.spec.id,
        "service": r.spec.service,
        "status": r.status.value,
        "decided": r.decided,
        "resolution": r.resolution,
        "reasons": list(r.reasons),
        "decision": None if r.decision is None else dict(r.decision),
        "live": LIVE_NOTE if r.decided else None,
        "progress": _progress(r),
        "progress_text": progress_text,
        "metrics": _metrics(r),
        "segments": {dim: [dict(row) for row in rows] for dim, rows in r.segments.items()},
        "assumptions": _assumptions(r),
        "warnings": _warnings(r),
        "canary": {"versions": list(r.spec.canary_versions)},
        "baseline": {"versions": list(r.spec.baseline_versions)},
        "policy": policy.to_dict(),
        "override": None if r.override is None else dict(r.override),
        "created_at": r.spec.created_at,
        "decided_at": iso(r.decided_at_s) if r.decided else None,
        "evaluated_at": evaluated_at or iso(r.last_event_time_s),
        "stale": stale,
    }


# -- interpreting --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Reading:
    """What a verdict document means to a pipeline."""

    meaning: Meaning
    status: Status | None  # None when broken
    resolution: Status | None  # PROMOTE or HALT for an INCONCLUSIVE document, else None
    overridden: bool
    detail: str  # the document's first reason, or why the document is broken

    @property
    def reason(self) -> str:
        """Short, status first: ``HALT: error rate regression …``."""
        if self.status is None:
            return f"unreadable verdict document: {self.detail}"
        return f"{self.status.value}: {self.detail}" if self.detail else self.status.value

    @property
    def exit_code(self) -> ExitCode:
        """The status decides the exit code (INCONCLUSIVE is 2 whatever its resolution)."""
        return ExitCode.UNREACHABLE if self.status is None else _STATUS_EXIT[self.status]

    @property
    def final(self) -> bool:
        """A decision was made (decisions are final): stop polling."""
        return self.meaning in ("go", "stop")

    def gate(self, which: Gate) -> tuple[int, str]:
        """HTTP status and short reason of the promote or rollback gate for this document."""
        if self.meaning == "broken":
            return GATE_BROKEN, self.reason
        wanted: Meaning = "go" if which == "promote" else "stop"
        if self.meaning != wanted:
            return GATE_HOLD, self.reason
        verdict = Status.PROMOTE if wanted == "go" else Status.HALT
        return GATE_OPEN, f"{verdict.value}: {self.detail}" if self.detail else verdict.value


def _broken(why: str) -> Reading:
    return Reading("broken", None, None, False, why)


def _resolve(doc: Mapping[str, Any]) -> Status | str:
    """PROMOTE or HALT for an INCONCLUSIVE document, or why it cannot be resolved."""
    resolution = doc.get("resolution")
    if resolution in (Status.PROMOTE.value, Status.HALT.value):
        return Status(resolution)
    if resolution is not None:
        return f'unknown resolution "{resolution}"'
    policy = doc.get("policy")
    on_inconclusive = policy.get("on_inconclusive") if isinstance(policy, Mapping) else None
    return Status.PROMOTE if on_inconclusive == "promote" else Status.HALT


def _first_reason(doc: Mapping[str, Any]) -> str:
    reasons = doc.get("reasons")
    return str(reasons[0]) if isinstance(reasons, list | tuple) and reasons else ""


def interpret(doc: Any) -> Reading:
    """The one reading of a verdict document (or of ``None``: no document at all)."""
    if doc is None:
        return _broken("no document")
    if not isinstance(doc, Mapping):
        return _broken(f"expected a JSON object, got {type(doc).__name__}")
    raw = doc.get("status")
    if not isinstance(raw, str):
        return _broken(f'"status" must be a string, got {raw!r}')
    if raw not in {s.value for s in Status}:
        return _broken(f'unknown status "{raw}"')
    status = Status(raw)
    override = doc.get("override")
    if override is not None and not isinstance(override, Mapping):
        return _broken(f'"override" must be an object, got {override!r}')
    if override is not None and override.get("status") != status.value:
        return _broken(f'override "{override.get("status")}" contradicts status "{status.value}"')
    if override is not None and status is Status.PENDING:
        return _broken("an override must decide, not leave the bake PENDING")
    reason = _first_reason(doc)
    overridden = override is not None
    if status is Status.PENDING:
        return Reading("wait", status, None, overridden, reason)
    if status is Status.PROMOTE:
        return Reading("go", status, None, overridden, reason)
    if status in (Status.HALT, Status.CANCELLED):
        return Reading("stop", status, None, overridden, reason)
    resolved = _resolve(doc)
    if not isinstance(resolved, Status):
        return _broken(resolved)
    meaning: Meaning = "go" if resolved is Status.PROMOTE else "stop"
    return Reading(meaning, status, resolved, overridden, reason)


_EXIT_PRECEDENCE = (
    ExitCode.UNREACHABLE,
    ExitCode.HALT,
    ExitCode.CANCELLED,
    ExitCode.INCONCLUSIVE,
    ExitCode.PENDING,
    ExitCode.PROMOTE,
)


def exit_code_of(readings: Iterable[Reading]) -> ExitCode:
    """The exit code of several bakes: the worst one (0 only if every bake PROMOTEd)."""
    codes = {r.exit_code for r in readings}
    return next((c for c in _EXIT_PRECEDENCE if c in codes), ExitCode.PENDING)
