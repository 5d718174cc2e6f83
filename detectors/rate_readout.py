"""What :class:`~detectors.rate_ratio.RateRatioTest` reports: its assessment and the
per-increment trace of its gates."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from detectors.base import Finding

__all__ = ["LOG_E_CAP", "RateRatioAssessment", "Trace"]

FloatArray = npt.NDArray[np.float64]
LOG_E_CAP = 700.0  # exp() of more overflows a float; such e-values are reported as exp(700)
_LOG_E_CAP = LOG_E_CAP


@dataclass(frozen=True)
class Trace:
    """Per-increment gate statistics from :meth:`RateRatioTest.update_many` (ratio path only)."""

    log_e_halt: FloatArray
    log_e_promote: FloatArray


@dataclass(frozen=True)
class RateRatioAssessment:
    """What :meth:`RateRatioTest.assess` reports (ratios are canary / baseline)."""

    finding: Finding
    estimate: float | None
    lower: float
    upper: float
    log_e_halt: float
    log_e_promote: float
    canary_events: int
    canary_requests: int
    baseline_events: int
    baseline_requests: int
    promote_path: str | None
    requests_to_decision: int | None
    log_e_crossed: float | None = None  # log e_halt when the HALT gate fired

    @property
    def e_halt(self) -> float:
        return math.exp(min(self.log_e_halt, _LOG_E_CAP))

    @property
    def e_halt_crossed(self) -> float | None:
        return None if self.log_e_crossed is None else math.exp(min(self.log_e_crossed, _LOG_E_CAP))

    @property
    def e_promote(self) -> float:
        return math.exp(min(self.log_e_promote, _LOG_E_CAP))
