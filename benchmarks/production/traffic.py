"""An independent, production-shaped request generator (deliberately not :mod:`bakesim`).

Every request gets an event time, the time its record reaches ingest (event time plus its
cohort's shipper lag), a cohort, a pod (the ``host`` segment) and that pod's zone, a route, a
source partition (random key, or keyed by pod), a latency and an error flag. Requests arrive as
a Poisson process per second of event time; latency is lognormal (optionally spliced onto a
Pareto tail above a quantile) times the route's, the zone's, the user's and the cohort's
factors; the error probability is the route's rate times the zone's, the time's (diurnal load,
common-mode bursts), the user's and the cohort's factors. Draws are vectorised per chunk of
event time; what spans chunks (per-pod request counts for cold starts, the users of sticky
sessions, the burst schedule) lives on :class:`TrafficGenerator`.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from typing import Literal

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

BASELINE = 0
CANARY = 1
Keying = Literal["random", "cohort", "hash"]


@dataclass(frozen=True)
class Route:
    """A route: its share of the baseline's requests, latency factor and error rate."""

    name: str
    weight: float
    latency_factor: float
    error_p: float


@dataclass(frozen=True)
class Zone:
    """An availability zone; its factors apply to every version served there."""

    name: str
    latency_factor: float = 1.0
    error_factor: float = 1.0


# The service of every scenario: a cheap static route, two API routes and a slow, error-prone
# checkout. Pooled baseline error rate 0.715 %.
ROUTES: tuple[Route, ...] = (
    Route("/static", 0.40, 0.3, 0.001),
    Route("/api/search", 0.30, 1.0, 0.010),
    Route("/api/cart", 0.15, 1.5, 0.005),
    Route("/api/checkout", 0.15, 3.0, 0.020),
)
ZONES: tuple[Zone, ...] = (Zone("zone-a"), Zone("zone-b"), Zone("zone-c"))


def pooled_error_p(routes: Sequence[Route]) -> float:
    """The traffic-weighted error rate of a route table."""
    total = sum(r.weight for r in routes)
    return sum(r.weight * r.error_p for r in routes) / total


def scaled_routes(pooled_p: float, routes: Sequence[Route] = ROUTES) -> tuple[Route, ...]:
    """``routes`` with every error rate scaled so that the pooled rate is ``pooled_p``."""
    k = pooled_p / pooled_error_p(routes)
    return tuple(replace(r, error_p=r.error_p * k) for r in routes)


@dataclass(frozen=True)
class Bursts:
    """Common-mode error bursts (a failing dependency): both cohorts, the same event times."""

    mean_gap_s: float
    min_s: float
    max_s: float
    error_factor: float


@dataclass(frozen=True)
class Diurnal:
    """A day's load curve compressed into ``period_s``; load and error rate peak at t = 0."""

    period_s: float
    rate_amplitude: float
    error_peak: float
    error_trough: float


@dataclass(frozen=True)
class Users:
    """Sticky sessions: every request comes from a user pinned to one cohort."""

    count: int
    activity_shape: float  # Pareto shape of per-user activity: smaller means heavier users
    error_sigma: float  # lognormal spread of per-user error propensity (mean 1)
    latency_sigma: float  # lognormal spread of per-user latency factor (mean 1)


@dataclass(frozen=True)
class ColdStart:
    """Fresh canary pods: a pod's first ``requests`` are slower, linearly back to normal."""

    requests: int
    latency_factor: float
    error_factor: float = 1.0


@dataclass(frozen=True)
class CanaryBurst:
    """``errors`` extra failed requests on the first canary pod within ``duration_s``."""

    at_s: float
    errors: int
    duration_s: float = 2.0
    route: str = "/api/search"
    latency_s: float = 0.005


@dataclass(frozen=True)
class FarFuture:
    """One record (of ``cohort``'s first pod) whose clock is ``ahead_s`` ahead, sent at ``at_s``."""

    at_s: float
    ahead_s: float = 86_400.0
    cohort: int = BASELINE


@dataclass(frozen=True)
class Traffic:
    """Everything the generator needs; the defaults are the clean, balanced service."""

    rate_rps: float = 2_000.0
    share: tuple[tuple[float, float], ...] = ((0.0, 0.5),)  # (from event time s, canary share)
    routes: tuple[Route, ...] = ROUTES
    canary_route_weights: tuple[float, ...] | None = None
    zones: tuple[Zone, ...] = ZONES
    baseline_pods: tuple[int, ...] = (0, 0, 1, 1, 2, 2)  # zone index of each pod
    canary_pods: tuple[int, ...] = (0, 1, 2)
    partitions: int = 4
    keying: Keying = "random"
    flush_interval_s: float = 1.0
    lag_s: tuple[float, float] = (0.0, 0.0)  # shipper lag of (baseline, canary) records
    lag_jitter_s: float = 0.5
    median_s: float = 0.05
    sigma: float = 0.5
    tail_prob: float = 0.0  # above the (1 - tail_prob) quantile the latency is Pareto
    tail_shape: float = 1.5
    canary_latency_factor: float = 1.0
    canary_slow_prob: float = 0.0  # share of canary requests ...
    canary_slow_add_s: float = 0.0  # ... that take this much longer
    canary_error_factor: float = 1.0
    canary_route_error_factor: tuple[tuple[str, float], ...] = ()
    diurnal: Diurnal | None = None
    bursts: Bursts | None = None
    users: Users | None = None
    cold_start: ColdStart | None = None
    canary_burst: CanaryBurst | None = None
    far_future: FarFuture | None = None
    only_route: str | None = None  # the test sees this route's requests alone

    def __post_init__(self) -> None:
        if self.rate_rps <= 0 or self.partitions < 1 or self.flush_interval_s <= 0:
            msg = f"rate_rps, partitions and flush_interval_s must be > 0, got {self}"
            raise ValueError(msg)
        weights = self.canary_route_weights
        if weights is not None and len(weights) != len(self.routes):
            msg = f"canary_route_weights needs {len(self.routes)} weights, got {len(weights)}"
            raise ValueError(msg)
        names = {r.name for r in self.routes}
        for route in [n for n, _ in self.canary_route_error_factor] + [self.only_route]:
            if route is not None and route not in names:
                msg = f'route "{route}" is not one of {sorted(names)}'
                raise ValueError(msg)
        if self.keying == "cohort" and self.partitions < 2:
            msg = f'keying "cohort" needs >= 2 partitions, got {self.partitions}'
            raise ValueError(msg)

    def describe(self) -> dict[str, object]:
        """The settings that differ from the defaults (for the results' settings block)."""
        base = Traffic()
        return {
            f.name: getattr(self, f.name)
            for f in fields(self)
            if getattr(self, f.name) != getattr(base, f.name)
        }


@dataclass(frozen=True)
class Records:
    """A batch of requests (columns of one length); times are seconds from the bake's start."""

    time_s: FloatArray
    arrival_s: FloatArray
    cohort: IntArray
    pod: IntArray
    zone: IntArray
    route: IntArray
    partition: IntArray
    latency_s: FloatArray
    error: BoolArray
    skewed: BoolArray  # the record's clock is wrong (far-future)

    @property
    def n(self) -> int:
        return int(self.time_s.size)

    def select(self, mask: npt.NDArray[np.bool_] | IntArray | slice) -> Records:
        """The rows picked by a boolean mask, an index array or a slice."""
        return Records(*(getattr(self, f.name)[mask] for f in fields(self)))

    @staticmethod
    def concat(parts: Sequence[Records]) -> Records:
        """The rows of every part, in order."""
        return Records(
            *(np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(Records))
        )

    @staticmethod
    def empty() -> Records:
        f64, i64 = np.zeros(0), np.zeros(0, dtype=np.int64)
        b = np.zeros(0, dtype=bool)
        return Records(f64, f64, i64, i64, i64, i64, i64, f64, b, b)


class TrafficGenerator:
    """Draws the requests of one bake, chunk by chunk of event time, from one seeded ``rng``."""

    def __init__(self, traffic: Traffic, rng: np.random.Generator) -> None:
        self.traffic = traffic
        self._rng = rng
        t = traffic
        self.pod_zone: IntArray = np.array(t.baseline_pods + t.canary_pods, dtype=np.int64)
        self.pod_cohort: IntArray = np.array(
            [BASELINE] * len(t.baseline_pods) + [CANARY] * len(t.canary_pods), dtype=np.int64
        )
        self.first_pod = (0, len(t.baseline_pods))
        self.host_names = [f"baseline-{i}" for i in range(len(t.baseline_pods))] + [
            f"canary-{i}" for i in range(len(t.canary_pods))
        ]
        self.pod_partition = self._pod_partitions()
        base_w = np.array([r.weight for r in t.routes])
        can_w = base_w if t.canary_route_weights is None else np.array(t.canary_route_weights)
        self._route_cdf = np.stack([np.cumsum(w) / w.sum() for w in (base_w, can_w)])
        self._route_lat = np.array([r.latency_factor for r in t.routes])
        self._route_err = np.array([r.error_p for r in t.routes])
        self._canary_route_err = np.ones(len(t.routes))
        for name, factor in t.canary_route_error_factor:
            self._canary_route_err[self.route_index(name)] = factor
        self._zone_lat = np.array([z.latency_factor for z in t.zones])
        self._zone_err = np.array([z.error_factor for z in t.zones])
        self._pod_seen = np.zeros(self.pod_zone.size, dtype=np.int64)
        self._burst_start: list[float] = []
        self._burst_end: list[float] = []
        self._users = None if t.users is None else self._user_table(t.users)

    def route_index(self, name: str) -> int:
        return [r.name for r in self.traffic.routes].index(name)

    def _pod_partitions(self) -> IntArray:
        """Source partition of each pod when the request topic is keyed by pod."""
        t = self.traffic
        n_b, n_c = len(t.baseline_pods), len(t.canary_pods)
        if t.keying == "random":
            return np.zeros(n_b + n_c, dtype=np.int64)  # unused: each record draws its own
        if t.keying == "hash":
            return self._rng.integers(0, t.partitions, n_b + n_c)
        # "cohort": the canary's pods fill the first partitions, the baseline's the others.
        k_c = min(max(1, round(t.partitions * n_c / (n_b + n_c))), t.partitions - 1)
        canary = np.arange(n_c) % k_c
        baseline = k_c + np.arange(n_b) % (t.partitions - k_c)
        return np.concatenate([baseline, canary]).astype(np.int64)

    def _user_table(self, u: Users) -> tuple[FloatArray, IntArray, FloatArray, FloatArray]:
        """(activity CDF, cohort, error factor, latency factor) per user; pinned for the bake."""
        rng = self._rng
        activity = rng.pareto(u.activity_shape, u.count) + 1.0
        share0 = float(self.share(np.zeros(1))[0])
        cohort = (rng.random(u.count) < share0).astype(np.int64)
        err = rng.lognormal(-0.5 * u.error_sigma**2, u.error_sigma, u.count)
        lat = rng.lognormal(-0.5 * u.latency_sigma**2, u.latency_sigma, u.count)
        return np.cumsum(activity) / activity.sum(), cohort, err, lat

    # -- rates over event time -------------------------------------------------------------
    def rate(self, t: FloatArray) -> FloatArray:
        """Requests per second at event times ``t``."""
        d = self.traffic.diurnal
        if d is None:
            return np.full(t.shape, self.traffic.rate_rps)
        return self.traffic.rate_rps * (1.0 + d.rate_amplitude * np.cos(2 * np.pi * t / d.period_s))

    def share(self, t: FloatArray) -> FloatArray:
        """The canary's share of requests at event times ``t`` (a step function)."""
        starts = np.array([s for s, _ in self.traffic.share])
        values = np.array([v for _, v in self.traffic.share])
        return values[np.clip(np.searchsorted(starts, t, side="right") - 1, 0, None)]

    def error_time_factor(self, t: FloatArray) -> FloatArray:
        """The error-rate factor common to both cohorts at event times ``t``."""
        out = np.ones(t.shape)
        d = self.traffic.diurnal
        if d is not None:
            load = 0.5 * (1.0 + np.cos(2 * np.pi * t / d.period_s))
            out *= d.error_trough + (d.error_peak - d.error_trough) * load
        b = self.traffic.bursts
        if b is not None and t.size:
            self._schedule_bursts(float(t.max()), b)
            starts, ends = np.array(self._burst_start), np.array(self._burst_end)
            i = np.searchsorted(starts, t, side="right") - 1
            inside = (i >= 0) & (t < ends[np.clip(i, 0, None)])
            out[inside] *= b.error_factor
        return out

    def _schedule_bursts(self, until_s: float, b: Bursts) -> None:
        while not self._burst_start or self._burst_start[-1] <= until_s:
            last = self._burst_end[-1] if self._burst_end else 0.0
            start = last + float(self._rng.exponential(b.mean_gap_s))
            self._burst_start.append(start)
            self._burst_end.append(start + float(self._rng.uniform(b.min_s, b.max_s)))

    def bursts_until(self, t_s: float) -> list[tuple[float, float]]:
        """The (start, end) of every common-mode burst scheduled so far that starts before ``t_s``."""
        return [(s, e) for s, e in zip(self._burst_start, self._burst_end, strict=True) if s < t_s]

    # -- drawing ---------------------------------------------------------------------------
    def records(self, t0_s: float, t1_s: float) -> Records:
        """Every request with event time in ``[t0_s, t1_s)`` (plus injected records)."""
        rng = self._rng
        secs = np.arange(math.floor(t0_s), math.ceil(t1_s), dtype=np.float64)
        counts = rng.poisson(self.rate(secs + 0.5))
        time_s = np.repeat(secs, counts) + rng.random(int(counts.sum()))
        time_s = np.sort(time_s[(time_s >= t0_s) & (time_s < t1_s)])
        n = time_s.size
        cohort, user = self._cohorts(time_s)
        pod = self._pods(cohort)
        route = self._routes(cohort)
        latency, error = self._outcomes(time_s, cohort, pod, route, user)
        recs = self._finish(time_s, cohort, pod, route, latency, error, np.zeros(n, dtype=bool))
        extra = self._injected(t0_s, t1_s)
        if extra is not None:
            recs = Records.concat([recs, extra])
        if self.traffic.only_route is not None:
            recs = recs.select(recs.route == self.route_index(self.traffic.only_route))
        return recs

    def _cohorts(self, time_s: FloatArray) -> tuple[IntArray, IntArray | None]:
        if self._users is None:
            return (self._rng.random(time_s.size) < self.share(time_s)).astype(np.int64), None
        cdf, cohort, _, _ = self._users
        user = np.minimum(np.searchsorted(cdf, self._rng.random(time_s.size)), cdf.size - 1)
        return cohort[user], user

    def _pods(self, cohort: IntArray) -> IntArray:
        t = self.traffic
        n_b, n_c = len(t.baseline_pods), len(t.canary_pods)
        u = self._rng.random(cohort.size)
        pod = np.where(
            cohort == CANARY, n_b + (u * n_c).astype(np.int64), (u * n_b).astype(np.int64)
        )
        return pod.astype(np.int64)

    def _routes(self, cohort: IntArray) -> IntArray:
        u = self._rng.random(cohort.size)
        cdf = self._route_cdf[cohort]
        route: IntArray = np.minimum((u[:, None] > cdf).sum(axis=1), cdf.shape[1] - 1)
        return route.astype(np.int64)

    def _outcomes(
        self,
        time_s: FloatArray,
        cohort: IntArray,
        pod: IntArray,
        route: IntArray,
        user: IntArray | None,
    ) -> tuple[FloatArray, BoolArray]:
        """Latency and error flag of each request."""
        t, rng = self.traffic, self._rng
        canary = cohort == CANARY
        lat = self._base_latency(time_s.size)
        lat *= self._route_lat[route] * self._zone_lat[self.pod_zone[pod]]
        err_p = self._route_err[route] * self._zone_err[self.pod_zone[pod]]
        err_p *= self.error_time_factor(time_s)
        if user is not None and self._users is not None:
            err_p *= self._users[2][user]
            lat *= self._users[3][user]
        if t.cold_start is not None:
            warm = self._cold_start_weight(pod)
            lat *= 1.0 + (t.cold_start.latency_factor - 1.0) * warm
            err_p *= 1.0 + (t.cold_start.error_factor - 1.0) * warm
        lat[canary] *= t.canary_latency_factor
        if t.canary_slow_prob > 0.0:
            lat[canary] += t.canary_slow_add_s * (
                rng.random(int(canary.sum())) < t.canary_slow_prob
            )
        err_p[canary] *= t.canary_error_factor * self._canary_route_err[route[canary]]
        return lat, rng.random(time_s.size) < np.minimum(err_p, 1.0)

    def _base_latency(self, n: int) -> FloatArray:
        """Lognormal(log median, σ); above the (1 - tail_prob) quantile a Pareto tail instead."""
        t, rng = self.traffic, self._rng
        z = rng.standard_normal(n)
        lat = t.median_s * np.exp(t.sigma * z)
        if t.tail_prob > 0.0:
            z_q = statistics.NormalDist().inv_cdf(1.0 - t.tail_prob)
            tail = z >= z_q
            x_m = t.median_s * math.exp(t.sigma * z_q)
            lat[tail] = x_m * rng.random(int(tail.sum())) ** (-1.0 / t.tail_shape)
        return lat

    def _cold_start_weight(self, pod: IntArray) -> FloatArray:
        """1 for a fresh canary pod's first request, falling linearly to 0 at ``requests``."""
        cs = self.traffic.cold_start
        assert cs is not None
        # Requests arrive in event-time order, so a stable sort by pod ranks them within a pod.
        order = np.argsort(pod, kind="stable")
        sorted_pod = pod[order]
        first = np.searchsorted(sorted_pod, sorted_pod, side="left")
        rank = np.empty(pod.size, dtype=np.int64)
        rank[order] = np.arange(pod.size) - first + self._pod_seen[sorted_pod]
        self._pod_seen += np.bincount(pod, minlength=self._pod_seen.size)
        weight = np.clip(1.0 - rank / cs.requests, 0.0, 1.0)
        weight[self.pod_cohort[pod] == BASELINE] = 0.0
        return weight

    def _finish(
        self,
        time_s: FloatArray,
        cohort: IntArray,
        pod: IntArray,
        route: IntArray,
        latency: FloatArray,
        error: BoolArray,
        skewed: BoolArray,
    ) -> Records:
        """Add arrival times (shipper lag) and source partitions."""
        t, rng = self.traffic, self._rng
        lag = np.array(t.lag_s)[cohort] + rng.random(time_s.size) * t.lag_jitter_s
        if t.keying == "random":
            partition = rng.integers(0, t.partitions, time_s.size)
        else:
            partition = self.pod_partition[pod]
        zone = self.pod_zone[pod]
        return Records(
            time_s, time_s + lag, cohort, pod, zone, route, partition, latency, error, skewed
        )

    def _injected(self, t0_s: float, t1_s: float) -> Records | None:
        """The scenario's canary error burst and far-future record, in the chunk they start in."""
        parts: list[Records] = []
        cb, ff = self.traffic.canary_burst, self.traffic.far_future
        if cb is not None and t0_s <= cb.at_s < t1_s:
            time_s = np.sort(cb.at_s + self._rng.random(cb.errors) * cb.duration_s)
            n = time_s.size
            ones = np.ones(n, dtype=np.int64)
            pod, route = self.first_pod[CANARY] * ones, self.route_index(cb.route) * ones
            lat, err = np.full(n, cb.latency_s), np.ones(n, dtype=bool)
            parts.append(
                self._finish(time_s, CANARY * ones, pod, route, lat, err, np.zeros(n, dtype=bool))
            )
        if ff is not None and t0_s <= ff.at_s < t1_s:
            parts.append(self._far_future_record(ff))
        return Records.concat(parts) if parts else None

    def _far_future_record(self, ff: FarFuture) -> Records:
        """The skewed record: sent at ``ff.at_s`` to partition 0 with no shipper lag, stamped
        ``ahead_s`` later. It draws nothing from the generator's stream, so a variant with it
        sees exactly the traffic of the same variant without it (paired runs)."""
        one = np.ones(1, dtype=np.int64)
        pod = self.first_pod[ff.cohort] * one
        return Records(
            time_s=np.array([ff.at_s + ff.ahead_s]),
            arrival_s=np.array([ff.at_s]),
            cohort=ff.cohort * one,
            pod=pod,
            zone=self.pod_zone[pod],
            route=0 * one,
            partition=0 * one,
            latency_s=np.array([self.traffic.median_s]),
            error=np.zeros(1, dtype=bool),
            skewed=np.ones(1, dtype=bool),
        )
