"""Tests of the scenario model: every parameter is checked at construction, by name and bound."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bakesim.errors import SimulationError
from bakesim.model import Regression, Route, Scenario, ServiceSpec


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: ServiceSpec(canary_share=1.5), "canary_share must be in (0, 1), got 1.5"),
        (lambda: ServiceSpec(canary_share=0.0), "canary_share must be in (0, 1), got 0.0"),
        (lambda: ServiceSpec(base_error_rate=-0.1), "base_error_rate must be in [0, 1], got -0.1"),
        (lambda: ServiceSpec(canary_version="v41"), 'both are "v41"'),
        (lambda: ServiceSpec(canary_hosts=0), "canary_hosts must be an integer >= 1, got 0"),
        (lambda: ServiceSpec(routes=(Route("/a"), Route("/a"))), "route paths must be unique"),
        (lambda: ServiceSpec(zones=()), "zones must be unique non-empty strings"),
        (
            lambda: ServiceSpec(regression=Regression(routes=("/nope",))),
            'routes "/nope" is not a route',
        ),
        (
            lambda: ServiceSpec(regression=Regression(zones=("mars-1a",))),
            'zones "mars-1a" is not a zone',
        ),
        (lambda: Route("/a", median_ms=0.0), "median_ms must be > 0, got 0.0"),
        (lambda: Route("/a", weight=math.nan), "weight must be > 0, got nan"),
        (lambda: Regression(error_multiplier=-1.0), "error_multiplier must be >= 0, got -1.0"),
        (
            lambda: Regression(slow_tail_fraction=1.5),
            "slow_tail_fraction must be in [0, 1], got 1.5",
        ),
        (lambda: Scenario(mean_rps=0.0), "mean_rps must be in (0, 1e+08], got 0.0"),
        (lambda: Scenario(diurnal_amplitude=1.0), "diurnal_amplitude must be in [0, 1), got 1.0"),
        (lambda: Scenario(seed=-1), "seed must be an integer >= 0, got -1"),
        (lambda: Scenario(services=()), "service names must be unique non-empty strings"),
        (lambda: Scenario(services=(ServiceSpec(), ServiceSpec())), "service names must be unique"),
    ],
)
def test_invalid_configuration_fails_fast(build: object, message: str) -> None:
    """Invalid parameters raise SimulationError at construction, naming the parameter and bound."""
    with pytest.raises(SimulationError) as info:
        build()  # type: ignore[operator]
    assert message in str(info.value)


def test_lists_are_accepted_and_frozen_as_tuples() -> None:
    """Routes, zones and regression filters given as lists are stored as tuples."""
    spec = ServiceSpec(zones=["z1", "z2"], regression=Regression(zones=["z1"]))  # type: ignore[arg-type]
    assert spec.zones == ("z1", "z2")
    assert spec.regression is not None and spec.regression.zones == ("z1",)


def test_rate_follows_the_diurnal_cosine() -> None:
    """The rate peaks at peak_hour_utc at mean_rps (1 + amplitude) and bottoms 12 h later."""
    sc = Scenario(mean_rps=100.0, diurnal_amplitude=0.5, peak_hour_utc=15.0)
    day = 86_400.0 * 20_000
    rates = sc.rate_rps(np.array([day + 15 * 3600.0, day + 3 * 3600.0]))
    np.testing.assert_allclose(rates, [150.0, 50.0], rtol=1e-9)
