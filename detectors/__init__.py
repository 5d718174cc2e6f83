"""bakemon's statistics: mergeable summaries and anytime-valid sequential tests (no I/O)."""

from __future__ import annotations

from detectors.base import Assessment, Detector, Finding
from detectors.dispersion import DispersionAssessment, DispersionCheck
from detectors.drift import DriftEvent, DriftMonitor
from detectors.error_rate import ErrorRateTest
from detectors.errors import DetectorError, ParameterError, StateError
from detectors.excess_bound import MatchedExcessBound
from detectors.latency import LatencyTest
from detectors.page_hinkley import PageHinkley
from detectors.rate_ratio import RateRatioTest
from detectors.summary import CohortSummary

__all__ = [
    "Assessment",
    "CohortSummary",
    "Detector",
    "DetectorError",
    "DispersionAssessment",
    "DispersionCheck",
    "DriftEvent",
    "DriftMonitor",
    "ErrorRateTest",
    "Finding",
    "LatencyTest",
    "MatchedExcessBound",
    "PageHinkley",
    "ParameterError",
    "RateRatioTest",
    "StateError",
]
