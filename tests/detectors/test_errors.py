"""Tests of the detectors exception hierarchy: one root, a subclass per meaning, value kept."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from detectors import (
    CohortSummary,
    DetectorError,
    DriftMonitor,
    ErrorRateTest,
    LatencyTest,
    PageHinkley,
    ParameterError,
    RateRatioTest,
    StateError,
)
from detectors.binomial_bound import beta_binomial_upper


def test_root_is_a_value_error() -> None:
    """DetectorError derives from ValueError, and both meanings derive from DetectorError."""
    assert issubclass(DetectorError, ValueError)
    assert issubclass(ParameterError, DetectorError) and issubclass(StateError, DetectorError)


@pytest.mark.parametrize(
    ("build", "message", "value"),
    [
        (lambda: RateRatioTest(alpha=1.5), "alpha must be in (0, 1), got 1.5", 1.5),
        (lambda: LatencyTest(alpha=0.01, tol=2.0), "tol must be in [0, 1], got 2.0", 2.0),
        (lambda: DriftMonitor(min_requests=0), "min_requests must be >= 1, got 0", 0),
        (lambda: PageHinkley(threshold=-1.0), "threshold must be > 0, got -1.0", -1.0),
        (lambda: CohortSummary(3, 5), "errors must be <= requests", (5, 3)),
        (lambda: CohortSummary().quantile(1.5), "q must be in [0, 1], got 1.5", 1.5),
        (lambda: beta_binomial_upper(1, 10, 0.0), "alpha must be in (0, 1), got 0.0", 0.0),
    ],
)
def test_bad_arguments_raise_parameter_error(
    build: Callable[[], object], message: str, value: object
) -> None:
    """Argument validation raises ParameterError naming the parameter, keeping the value."""
    with pytest.raises(ParameterError) as info:
        build()
    assert message in str(info.value)
    assert info.value.value == value


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: CohortSummary.from_dict({"v": 9}), "unsupported summary format version 9"),
        (lambda: ErrorRateTest.from_state({"v": 9}), "unsupported error-rate state version 9"),
        (lambda: LatencyTest.from_state({"v": 9}), "unsupported latency state version 9"),
        (lambda: RateRatioTest.from_state({"v": 9}), "unsupported rate-ratio state version 9"),
        (lambda: DriftMonitor.from_state({"v": 9}), "unsupported drift state version 9"),
    ],
)
def test_foreign_state_raises_state_error(build: Callable[[], object], message: str) -> None:
    """A state document of an unknown version raises StateError keeping the version."""
    with pytest.raises(StateError, match=message) as info:
        build()
    assert info.value.value == 9
