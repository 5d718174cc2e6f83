"""Seeded generation of a scenario's requests as numpy columns, in event-time order.

Output is reproducible: the stream is cut into fixed event-time blocks whose random numbers come
from ``SeedSequence(seed, spawn_key=(block,))``, so the same scenario gives the same records
whatever the chunk size, a ``total_requests`` run is a prefix of a longer one, and every record
draws the same random numbers whatever the regression (common random numbers: baseline records
do not change when only the regression changes). No wall clock is read.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from bakesim.errors import SimulationError
from bakesim.model import SECONDS_PER_DAY, Regression, Scenario
from bakesim.validation import require

__all__ = ["ERROR_STATUSES", "OK_STATUSES", "Columns", "generate", "iter_chunks"]

FloatArray = npt.NDArray[np.float64]
CodeArray = npt.NDArray[np.int32]
BoolArray = npt.NDArray[np.bool_]

# Expected requests per generation block; the block length is a power of two seconds derived
# from mean_rps only, so it never depends on how the caller chunks the stream.
_BLOCK_TARGET_REQUESTS: Final = 16_384
_BLOCK_LOG2_S_MIN, _BLOCK_LOG2_S_MAX = -10, 12
ERROR_STATUSES: Final = (500, 502, 503, 504)
_ERROR_STATUS_WEIGHTS: Final = (0.4, 0.3, 0.2, 0.1)
OK_STATUSES: Final = (200, 201, 204, 301, 404)
_OK_STATUS_WEIGHTS: Final = (0.9, 0.03, 0.03, 0.01, 0.03)
_NO_REGRESSION: Final = Regression()

_ARRAY_FIELDS: Final = (
    "ts", "service", "version", "canary", "status", "latency_s", "route", "zone", "host"
)  # fmt: skip


@dataclass(frozen=True, slots=True, eq=False)
class Columns:
    """A batch of records as numpy columns, in non-decreasing event time.

    Code columns index the ``*_names`` tuples, which are the same for every batch of one
    scenario. ``ts`` and ``latency_s`` are rounded to microseconds, as serialized.
    """

    ts: FloatArray
    service: CodeArray
    version: CodeArray
    canary: BoolArray
    status: CodeArray
    latency_s: FloatArray
    route: CodeArray
    zone: CodeArray
    host: CodeArray
    service_names: tuple[str, ...]
    version_names: tuple[str, ...]
    route_names: tuple[str, ...]
    zone_names: tuple[str, ...]
    host_names: tuple[str, ...]

    def __len__(self) -> int:
        return int(self.ts.shape[0])

    def __getitem__(self, index: slice) -> Columns:
        return dataclasses.replace(self, **{k: getattr(self, k)[index] for k in _ARRAY_FIELDS})

    @property
    def is_error(self) -> BoolArray:
        """HTTP 5xx (the generator never emits 429)."""
        return self.status >= 500

    @staticmethod
    def concat(parts: list[Columns]) -> Columns:
        """The parts one after the other (they must come from the same scenario)."""
        if len(parts) == 1:
            return parts[0]
        arrays = {k: np.concatenate([getattr(p, k) for p in parts]) for k in _ARRAY_FIELDS}
        return dataclasses.replace(parts[0], **arrays)  # type: ignore[arg-type]


def _cum_weights(weights: Iterable[float]) -> FloatArray:
    w = np.asarray(list(weights), dtype=np.float64)
    cum = np.cumsum(w / w.sum())
    cum[-1] = 1.0
    return cum


_ERROR_CUM: Final = _cum_weights(_ERROR_STATUS_WEIGHTS)
_OK_CUM: Final = _cum_weights(_OK_STATUS_WEIGHTS)


class _Plan:
    """A scenario compiled into lookup tables, so a block is generated with vectorised gathers.

    Per service ``[svc]``, per (service, cohort) ``[svc, canary]``, per route row (routes of all
    services, one after the other) and per host (all hosts of all services and versions).
    """

    def __init__(self, sc: Scenario) -> None:
        self.sc = sc
        services = sc.services
        versions = sorted({v for s in services for v in (s.baseline_version, s.canary_version)})
        routes = sorted({r.path for s in services for r in s.routes})
        zones = sorted({z for s in services for z in s.zones})
        host_names = self._compile_hosts(versions, zones)
        self._compile_routes(routes)
        self._compile_regressions()
        self.service_cum = _cum_weights(s.traffic_weight for s in services)
        self.canary_share = np.array([s.canary_share for s in services])
        service_names = tuple(s.name for s in services)
        names = (service_names, tuple(versions), tuple(routes), tuple(zones), host_names)
        self.names: tuple[tuple[str, ...], ...] = names
        log2_s = round(math.log2(_BLOCK_TARGET_REQUESTS / sc.mean_rps))
        self.block_s = 2.0 ** min(max(log2_s, _BLOCK_LOG2_S_MIN), _BLOCK_LOG2_S_MAX)

    def _compile_hosts(self, versions: list[str], zones: list[str]) -> tuple[str, ...]:
        """Per (service, cohort): version code and host range; per host: zone, regression hit."""
        services = self.sc.services
        hosts: list[tuple[str, int, bool]] = []  # name, zone code, regression applies
        self.version_code = np.zeros((len(services), 2), dtype=np.int32)
        self.host_offset = np.zeros((len(services), 2), dtype=np.int64)
        self.host_count = np.zeros((len(services), 2), dtype=np.int64)
        for i, spec in enumerate(services):
            reg = spec.regression or _NO_REGRESSION
            cohorts = (
                (spec.baseline_version, spec.baseline_hosts),
                (spec.canary_version, spec.canary_hosts),
            )
            for cohort, (version, count) in enumerate(cohorts):
                self.version_code[i, cohort] = versions.index(version)
                self.host_offset[i, cohort], self.host_count[i, cohort] = len(hosts), count
                for h in range(count):
                    zone = spec.zones[h % len(spec.zones)]
                    hit = reg.zones is None or zone in reg.zones
                    hosts.append((f"{spec.name}-{version}-{h + 1}", zones.index(zone), hit))
        host_names, host_zone, host_hit = zip(*hosts, strict=True)
        self.host_zone = np.array(host_zone, dtype=np.int32)
        self.host_hit = np.array(host_hit, dtype=np.bool_)
        return tuple(host_names)

    def _compile_routes(self, routes: list[str]) -> None:
        """Per route row: code, lognormal median and sigma, error probability, regression hit."""
        services = self.sc.services
        route_rows: list[tuple[int, float, float, float, bool]] = []
        route_cum: list[FloatArray] = []
        for i, spec in enumerate(services):
            reg = spec.regression or _NO_REGRESSION
            weights = [r.weight for r in spec.routes]
            mean_factor = np.dot(weights, [r.error_factor for r in spec.routes]) / sum(weights)
            for r in spec.routes:
                p = spec.base_error_rate * r.error_factor / mean_factor if mean_factor > 0 else 0.0
                hit = reg.routes is None or r.path in reg.routes
                route_rows.append(
                    (routes.index(r.path), r.median_ms / 1e3, r.sigma, min(1, p), hit)
                )
            route_cum.append(i + _cum_weights(weights))
        self.route_end = np.cumsum([len(s.routes) for s in services])
        self.route_cum = np.concatenate(route_cum)
        code, median_s, sigma, error, route_hit = zip(*route_rows, strict=True)
        self.route_code = np.array(code, dtype=np.int32)
        self.route_median_s, self.route_sigma = np.array(median_s), np.array(sigma)
        self.route_error, self.route_hit = np.array(error), np.array(route_hit, dtype=np.bool_)

    def _compile_regressions(self) -> None:
        """Per service: when its regression starts (inf: never) and how strong it is."""
        sc, services = self.sc, self.sc.services
        regs = [s.regression or _NO_REGRESSION for s in services]
        starts = [
            sc.start_s + r.start_after_s if s.regression else np.inf
            for r, s in zip(regs, services, strict=True)
        ]
        self.reg_start_s = np.array(starts)
        self.reg_error = np.array([r.error_multiplier for r in regs])
        self.reg_latency = np.array([r.latency_multiplier for r in regs])
        self.reg_tail_fraction = np.array([r.slow_tail_fraction for r in regs])
        self.reg_tail_add_s = np.array([r.slow_tail_add_s for r in regs])

    def block(self, k: int) -> Columns:
        """Block ``k``: all requests in [start + k·block_s, start + (k+1)·block_s)."""
        sc, w = self.sc, self.block_s
        rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(sc.seed, spawn_key=(k,))))
        a = sc.start_s + k * w
        # Thinning (Lewis–Shedler) under a bound of the rate on this block: the rate is
        # Lipschitz with constant L, so the mean of its end values + L·w/2 bounds it.
        lipschitz = sc.mean_rps * sc.diurnal_amplitude * 2 * math.pi / SECONDS_PER_DAY
        ends = float(sc.rate_rps(np.array([a, a + w])).mean())
        bound = min(sc.mean_rps * (1 + sc.diurnal_amplitude), ends + lipschitz * w / 2)
        u = rng.random((2, int(rng.poisson(bound * w))))
        offsets = u[0] * w
        ts = np.round(a + np.sort(offsets[u[1] * bound < sc.rate_rps(a + offsets)]), 6)
        n = ts.size
        u = rng.random((7, n))  # service, canary, route, host, error, status, slow tail
        z = rng.standard_normal(n)
        svc = np.searchsorted(self.service_cum, u[0], side="right")
        svc = np.minimum(svc, len(sc.services) - 1)
        canary = u[1] < self.canary_share[svc]
        cohort = canary.astype(np.int64)
        route = np.searchsorted(self.route_cum, svc + u[2], side="right")
        route = np.minimum(route, self.route_end[svc] - 1)  # in case svc + u rounds up to svc + 1
        count = self.host_count[svc, cohort]
        host = self.host_offset[svc, cohort] + np.minimum(
            (u[3] * count).astype(np.int64), count - 1
        )
        active = (
            canary & (ts >= self.reg_start_s[svc]) & self.route_hit[route] & self.host_hit[host]
        )
        p_error = self.route_error[route]
        p_error = np.where(active, np.minimum(1.0, p_error * self.reg_error[svc]), p_error)
        status = np.where(
            u[4] < p_error,
            np.take(ERROR_STATUSES, np.searchsorted(_ERROR_CUM, u[5], side="right")),
            np.take(OK_STATUSES, np.searchsorted(_OK_CUM, u[5], side="right")),
        )
        latency = self.route_median_s[route] * np.exp(self.route_sigma[route] * z)
        latency = np.where(active, latency * self.reg_latency[svc], latency)
        tail = active & (u[6] < self.reg_tail_fraction[svc])
        latency = np.round(np.where(tail, latency + self.reg_tail_add_s[svc], latency), 6)
        return Columns(
            ts, svc.astype(np.int32), self.version_code[svc, cohort], canary,
            status.astype(np.int32), latency, self.route_code[route], self.host_zone[host],
            host.astype(np.int32), *self.names,
        )  # fmt: skip


def iter_chunks(
    scenario: Scenario,
    *,
    duration_s: float | None = None,
    total_requests: int | None = None,
    chunk_requests: int = 10_000,
) -> Iterator[Columns]:
    """Records of ``scenario`` in time order, ``chunk_requests`` per chunk (the last may be short).

    Stops after ``duration_s`` event-time seconds or ``total_requests`` records, whichever comes
    first; endless when both are ``None``. The records do not depend on ``chunk_requests``.
    """
    if duration_s is not None:
        require("duration_s", duration_s, 0, open_lo=True)
    if total_requests is not None:
        require("total_requests", total_requests, 1, integer=True)
    require("chunk_requests", chunk_requests, 1, integer=True)
    return _chunks(_Plan(scenario), duration_s, total_requests, chunk_requests)


def _chunks(
    plan: _Plan, duration_s: float | None, total_requests: int | None, chunk_requests: int
) -> Iterator[Columns]:
    start_s = plan.sc.start_s
    end_s = math.inf if duration_s is None else start_s + duration_s
    remaining = math.inf if total_requests is None else total_requests
    pending: list[Columns] = []
    pending_n = k = 0
    while remaining > 0 and start_s + k * plan.block_s < end_s:
        block = plan.block(k)
        k += 1
        block = block[: int(min(np.searchsorted(block.ts, end_s, side="left"), remaining))]
        remaining -= len(block)
        pending.append(block)
        pending_n += len(block)
        while pending_n >= chunk_requests:
            merged = Columns.concat(pending)
            yield merged[:chunk_requests]
            pending = [merged[chunk_requests:]]
            pending_n -= chunk_requests
    if pending_n:
        yield Columns.concat(pending)


def generate(
    scenario: Scenario, *, duration_s: float | None = None, total_requests: int | None = None
) -> Columns:
    """All records of ``scenario`` up to the limit in one batch (one limit is required)."""
    if duration_s is None and total_requests is None:
        msg = "generate needs duration_s or total_requests"
        raise SimulationError(msg, value=None)
    chunk = total_requests or 1 << 62
    chunks = list(
        iter_chunks(
            scenario, duration_s=duration_s, total_requests=total_requests, chunk_requests=chunk
        )
    )
    return Columns.concat(chunks) if chunks else _Plan(scenario).block(0)[:0]
