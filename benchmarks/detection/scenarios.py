"""The benchmark's settings and scenarios: simulated runs and their fixed-horizon designs."""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from scipy import integrate, stats

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

ALPHA = 0.01
POWER = 0.8
Z_ALPHA = float(stats.norm.isf(ALPHA))
Z_BETA = float(stats.norm.isf(1.0 - POWER))
BASE_ERROR_P = 0.01
LATENCY_MEDIAN_S = 0.05
LOG_LATENCY_SIGMA = 0.5
EVENT_TIME_START_S = 1.7e9
DEFAULT_RUNS = 300
QUICK_RUNS = 60
# The A/A false-HALT rate is a small proportion: by default it gets this many times the runs.
AA_RUNS_FACTOR = 2
AA_MW_CAP_CANARY = 100_000
# STATISTICS.md's introduction: Mann–Whitney repeated at a nominal 5 % as 10,000 requests per
# arm accrue (read as two-sided); here looked at every 10 requests per arm.
STATS_MW_ALPHA = 0.05
STATS_MW_CAP_CANARY = 10_000
STATS_MW_LOOK_REQUESTS = 10
RESULTS_DIR = Path(__file__).resolve().parents[1] / "results"

Kind = Literal["aa", "errors", "latency"]


# bakemon gets the requests of one second of event time per update; its default 10 s windows
# are the comparators' looks, so a look is this many seconds (see run.run_bakemon).
STEPS_PER_LOOK = 10


@dataclass(frozen=True)
class Scenario:
    """One simulated bake setting; ``cap_canary`` bounds every sequential method's horizon.

    A *look* is ``canary_per_look`` + ``baseline_per_look`` requests: the comparators look at the
    cumulative data once per look, and bakemon, fed one second (``1 / STEPS_PER_LOOK`` of a look)
    at a time, tests once per 10 s window, which holds one look's requests.
    """

    name: str
    kind: Kind
    label: str
    canary_error_p: float = BASE_ERROR_P
    latency_factor: float = 1.0
    tail_prob: float = 0.0
    tail_add_s: float = 0.0
    canary_per_look: int = 100
    baseline_per_look: int = 100
    cap_canary: int = 60_000
    policy: Mapping[str, Any] = field(default_factory=lambda: {"min_canary_requests": 0})

    def __post_init__(self) -> None:
        for n in (self.canary_per_look, self.baseline_per_look):
            if n % STEPS_PER_LOOK:
                msg = f"requests per look must be multiples of {STEPS_PER_LOOK}, got {n}"
                raise ValueError(msg)

    @property
    def looks(self) -> int:
        return self.cap_canary // self.canary_per_look

    @property
    def baseline_ratio(self) -> float:
        """Baseline requests per canary request."""
        return self.baseline_per_look / self.canary_per_look


def _share_10pct(name: str, kind: Kind, label: str, **kw: Any) -> Scenario:
    """A scenario at a 10 % canary share: 10 canary + 90 baseline requests per look."""
    return Scenario(
        name,
        kind,
        f"{label}, canary share 10%",
        canary_per_look=10,
        baseline_per_look=90,
        cap_canary=40_000 if name.startswith("latency-1.05") else 20_000,
        **kw,
    )


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario("aa", "aa", "A/A, no difference", cap_canary=300_000, policy={}),
        Scenario("errors-1.5x", "errors", "canary errors 1.5%", canary_error_p=0.015),
        Scenario("errors-2x", "errors", "canary errors 2%", canary_error_p=0.02),
        Scenario("latency-1.05", "latency", "canary latency ×1.05", latency_factor=1.05),
        Scenario("latency-1.10", "latency", "canary latency ×1.10", latency_factor=1.10),
        Scenario(
            "slow-tail", "latency", "5% of canary requests +200 ms", tail_prob=0.05, tail_add_s=0.2
        ),
        _share_10pct("errors-2x-10pct", "errors", "canary errors 2%", canary_error_p=0.02),
        _share_10pct("latency-1.10-10pct", "latency", "canary latency ×1.10", latency_factor=1.10),
        _share_10pct("latency-1.05-10pct", "latency", "canary latency ×1.05", latency_factor=1.05),
        _share_10pct(
            "slow-tail-10pct",
            "latency",
            "5% of canary requests +200 ms",
            tail_prob=0.05,
            tail_add_s=0.2,
        ),
    )
}


@dataclass(frozen=True)
class Stream:
    """One run's simulated requests, in arrival order, up to the scenario's cap."""

    canary_lat: FloatArray
    canary_err: BoolArray
    baseline_lat: FloatArray
    baseline_err: BoolArray


@dataclass(frozen=True)
class Outcome:
    """A method's result on one run: its decision (None = none within the cap) and when."""

    decision: str | None
    n: int | None
    detail: str = ""


def simulate(sc: Scenario, rng: np.random.Generator) -> Stream:
    """Draw a run's requests for both cohorts up to the cap."""
    n_c, n_b = sc.cap_canary, sc.looks * sc.baseline_per_look
    mu = math.log(LATENCY_MEDIAN_S)
    baseline_lat = rng.lognormal(mu, LOG_LATENCY_SIGMA, n_b)
    baseline_err = rng.random(n_b) < BASE_ERROR_P
    canary_lat = rng.lognormal(mu, LOG_LATENCY_SIGMA, n_c) * sc.latency_factor
    if sc.tail_prob > 0.0:
        canary_lat = canary_lat + sc.tail_add_s * (rng.random(n_c) < sc.tail_prob)
    canary_err = rng.random(n_c) < sc.canary_error_p
    return Stream(canary_lat, canary_err, baseline_lat, baseline_err)


# -- fixed-horizon designs ---------------------------------------------------------------------
def fixed_n_errors(p_b: float, p_c: float, ratio: float) -> int:
    """Canary requests for a one-sided pooled two-proportion z-test (``ratio`` = n_b / n_c)."""
    p_bar = (p_c + ratio * p_b) / (1.0 + ratio)
    null_sd = math.sqrt(p_bar * (1.0 - p_bar) * (1.0 + 1.0 / ratio))
    alt_sd = math.sqrt(p_c * (1.0 - p_c) + p_b * (1.0 - p_b) / ratio)
    return math.ceil(((Z_ALPHA * null_sd + Z_BETA * alt_sd) / (p_c - p_b)) ** 2)


def log_latency_moments(sc: Scenario) -> tuple[float, float]:
    """Mean shift and variance of the canary's log-latency (the baseline's variance is σ²)."""
    mu = math.log(LATENCY_MEDIAN_S) + math.log(sc.latency_factor)
    var = LOG_LATENCY_SIGMA**2
    if sc.tail_prob == 0.0:
        return math.log(sc.latency_factor), var

    def moment(power: int) -> float:
        def f(z: float) -> float:
            x = math.exp(mu + LOG_LATENCY_SIGMA * z)
            return float(math.log(x + sc.tail_add_s) ** power * stats.norm.pdf(z))

        return float(integrate.quad(f, -12.0, 12.0, limit=200)[0])

    q = sc.tail_prob
    mean = (1.0 - q) * mu + q * moment(1)
    second = (1.0 - q) * (mu * mu + var) + q * moment(2)
    return mean - math.log(LATENCY_MEDIAN_S), second - mean * mean


def fixed_n_latency(sc: Scenario) -> int:
    """Canary requests for a one-sided two-sample z/t test on mean log-latency."""
    delta, var_c = log_latency_moments(sc)
    var = var_c + LOG_LATENCY_SIGMA**2 / sc.baseline_ratio
    return math.ceil((Z_ALPHA + Z_BETA) ** 2 * var / delta**2)


@functools.cache
def design_n(name: str) -> int:
    """The fixed-horizon sample size (canary requests) of a regression scenario."""
    sc = SCENARIOS[name]
    if sc.kind == "errors":
        return fixed_n_errors(BASE_ERROR_P, sc.canary_error_p, sc.baseline_ratio)
    if sc.kind == "latency":
        return fixed_n_latency(sc)
    msg = f'scenario "{name}" has no true effect to design a sample size for'
    raise ValueError(msg)
