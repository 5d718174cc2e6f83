"""What a simulated bake is: a fleet of services, their routes, the canary's regression.

A :class:`Scenario` is a fleet of services, each serving a baseline and a canary version at the
same time, with weighted routes (lognormal latency per route), a base error rate, zones and hosts,
and diurnal traffic: requests arrive as a non-homogeneous Poisson process in event time with rate
``mean_rps * (1 + diurnal_amplitude * cos(2π (t - peak) / 86400))``, peaking daily at
``peak_hour_utc`` (the sine form with ``t0 = 0`` and ``phase = π/2 - 2π peak_hour_utc / 24``).
A :class:`Regression` makes the canary worse, optionally from a point in the bake on, and
optionally only on some routes or zones. Every parameter is checked at construction
(:class:`~bakesim.errors.SimulationError` naming it and its bound).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from bakesim.errors import SimulationError
from bakesim.validation import as_tuple, require, require_names

__all__ = [
    "DEFAULT_START_S",
    "SECONDS_PER_DAY",
    "Regression",
    "Route",
    "Scenario",
    "ServiceSpec",
]

FloatArray = npt.NDArray[np.float64]

DEFAULT_START_S: Final = 1_795_824_000.0  # 2026-11-28T00:00:00Z
SECONDS_PER_DAY: Final = 86_400.0


@dataclass(frozen=True, slots=True)
class Route:
    """One route of a service: traffic weight, lognormal latency, relative error propensity.

    ``error_factor`` is relative: a service's routes are scaled so that the traffic-weighted
    error rate equals the service's ``base_error_rate``.
    """

    path: str
    weight: float = 1.0
    median_ms: float = 50.0
    sigma: float = 0.5
    error_factor: float = 1.0

    def __post_init__(self) -> None:
        require_names("path", (self.path,))
        require("weight", self.weight, 0, open_lo=True)
        require("median_ms", self.median_ms, 0, open_lo=True)
        require("sigma", self.sigma, 0, 5)
        require("error_factor", self.error_factor, 0)


@dataclass(frozen=True, slots=True)
class Regression:
    """What is wrong with the canary, from ``start_after_s`` event-time seconds into the bake on.

    The canary's error probability is ``min(1, base × error_multiplier)``, its latency is
    multiplied by ``latency_multiplier``, and ``slow_tail_fraction`` of its requests get
    ``slow_tail_add_s`` more. ``routes``/``zones`` limit it to those (``None``: everywhere).
    """

    error_multiplier: float = 1.0
    latency_multiplier: float = 1.0
    slow_tail_fraction: float = 0.0
    slow_tail_add_s: float = 0.0
    start_after_s: float = 0.0
    routes: tuple[str, ...] | None = None
    zones: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        require("error_multiplier", self.error_multiplier, 0)
        require("latency_multiplier", self.latency_multiplier, 0, open_lo=True)
        require("slow_tail_fraction", self.slow_tail_fraction, 0, 1)
        require("slow_tail_add_s", self.slow_tail_add_s, 0)
        require("start_after_s", self.start_after_s, 0)
        for name in ("routes", "zones"):
            as_tuple(self, name)
            if getattr(self, name) is not None:
                require_names(name, getattr(self, name))


_DEFAULT_ROUTES: Final = (
    Route("/health", weight=0.05, median_ms=1.5, sigma=0.3, error_factor=0.1),
    Route("/product", weight=0.30, median_ms=35.0, sigma=0.5, error_factor=0.8),
    Route("/cart", weight=0.25, median_ms=20.0, sigma=0.45, error_factor=1.0),
    Route("/search", weight=0.25, median_ms=110.0, sigma=0.6, error_factor=1.0),
    Route("/checkout", weight=0.15, median_ms=180.0, sigma=0.5, error_factor=2.0),
)
_DEFAULT_ZONES: Final = ("eu-west-1a", "eu-west-1b", "eu-west-1c")


@dataclass(frozen=True, slots=True)
class ServiceSpec:
    """One service with a baseline and a canary version serving side by side.

    Hosts are named ``{name}-{version}-{i}`` (``i`` from 1) and host ``i`` lives in
    ``zones[(i - 1) % len(zones)]``; ``traffic_weight`` is the service's share of the fleet's
    requests relative to the other services.
    """

    name: str = "checkout"
    baseline_version: str = "v41"
    canary_version: str = "v42"
    canary_share: float = 0.1
    base_error_rate: float = 0.01
    routes: tuple[Route, ...] = _DEFAULT_ROUTES
    zones: tuple[str, ...] = _DEFAULT_ZONES
    baseline_hosts: int = 9
    canary_hosts: int = 3
    traffic_weight: float = 1.0
    regression: Regression | None = None

    def __post_init__(self) -> None:
        for name in ("name", "baseline_version", "canary_version"):
            require_names(name, (getattr(self, name),))
        if self.baseline_version == self.canary_version:
            v = self.canary_version
            msg = f'canary_version must differ from baseline_version, both are "{v}"'
            raise SimulationError(msg, value=v)
        require("canary_share", self.canary_share, 0, 1, open_lo=True, open_hi=True)
        require("base_error_rate", self.base_error_rate, 0, 1)
        as_tuple(self, "routes")
        as_tuple(self, "zones")
        require_names("route paths", tuple(r.path for r in self.routes))
        require_names("zones", self.zones)
        require("baseline_hosts", self.baseline_hosts, 1, integer=True)
        require("canary_hosts", self.canary_hosts, 1, integer=True)
        require("traffic_weight", self.traffic_weight, 0, open_lo=True)
        known = {"routes": {r.path for r in self.routes}, "zones": set(self.zones)}
        for name, values in known.items():
            unknown = sorted(set(getattr(self.regression, name, None) or ()) - values)
            if unknown:
                msg = f'regression {name} "{unknown[0]}" is not a {name[:-1]} of "{self.name}"'
                raise SimulationError(msg, value=unknown[0])


@dataclass(frozen=True, slots=True)
class Scenario:
    """A fleet of services, its diurnal traffic, the event-time start and the seed."""

    services: tuple[ServiceSpec, ...] = (ServiceSpec(),)
    mean_rps: float = 250.0
    diurnal_amplitude: float = 0.3
    peak_hour_utc: float = 15.0
    start_s: float = DEFAULT_START_S
    seed: int = 0

    def __post_init__(self) -> None:
        as_tuple(self, "services")
        require_names("service names", tuple(s.name for s in self.services))
        require("mean_rps", self.mean_rps, 0, 1e8, open_lo=True)
        require("diurnal_amplitude", self.diurnal_amplitude, 0, 1, open_hi=True)
        require("peak_hour_utc", self.peak_hour_utc, 0, 24, open_hi=True)
        require("start_s", self.start_s, 0)
        require("seed", self.seed, 0, integer=True)

    def rate_rps(self, ts: FloatArray) -> FloatArray:
        """The expected request rate (all services) at event times ``ts``."""
        cycle = (
            2 * np.pi / SECONDS_PER_DAY * (np.mod(ts, SECONDS_PER_DAY) - self.peak_hour_utc * 3600)
        )
        return self.mean_rps * (1.0 + self.diurnal_amplitude * np.cos(cycle))
