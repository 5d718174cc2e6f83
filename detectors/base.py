"""The small interface every gated detector shares, and what it reports."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from detectors.summary import CohortSummary

__all__ = ["Assessment", "Detector", "Finding"]


class Finding(enum.StrEnum):
    """What a detector concludes about canary vs baseline for its metric."""

    REGRESSION = "REGRESSION"
    NON_INFERIOR = "NON_INFERIOR"
    UNDECIDED = "UNDECIDED"


@dataclass(frozen=True)
class Assessment:
    """A detector's current finding with its evidence.

    ``estimate``, ``lower`` and ``upper`` are on the ratio scale (canary / baseline) of the
    metric's bad-event rate; ``e_halt`` and ``e_promote`` are the e-values of the two one-sided
    tests (a gate fires when its e-value reaches ``1 / alpha``). ``requests_to_decision`` is a
    rough projection of further canary requests needed, or None when no decision is in sight.
    """

    metric: str
    finding: Finding
    estimate: float | None
    lower: float | None
    upper: float | None
    e_halt: float
    e_promote: float
    canary_requests: int
    baseline_requests: int
    requests_to_decision: int | None
    reason: str
    detail: Mapping[str, Any] = field(default_factory=dict)
    # The HALT e-value when the gate fired (None before): it may fall afterwards, and a
    # window's strata are folded one by one, so the gate can fire before the window's last.
    e_halt_crossed: float | None = None


@runtime_checkable
class Detector(Protocol):
    """A sequential test fed with increments of the two cohorts' summaries."""

    metric: str

    def update(self, canary: CohortSummary, baseline: CohortSummary) -> None:
        """Fold one increment (what one partial adds) of each cohort."""
        ...

    def assess(self) -> Assessment:
        """The current finding and its evidence."""
        ...

    def state_dict(self) -> dict[str, Any]:
        """JSON-able state; ``from_state`` of the same class rebuilds an identical detector."""
        ...
