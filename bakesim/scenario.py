"""A seeded generator of realistic per-request logs for a canary bake.

A :class:`Scenario` is a fleet of services, each serving a baseline and a canary version at the
same time, with weighted routes (lognormal latency per route), a base error rate, zones and hosts,
and diurnal traffic: requests arrive as a non-homogeneous Poisson process in event time with rate
``mean_rps * (1 + diurnal_amplitude * cos(2π (t - peak) / 86400))``, peaking daily at
``peak_hour_utc`` (the sine form with ``t0 = 0`` and ``phase = π/2 - 2π peak_hour_utc / 24``).
A :class:`Regression` makes the canary worse, optionally from a point in the bake on, and
optionally only on some routes or zones.

Output is reproducible: the stream is cut into fixed event-time blocks whose random numbers come
from ``SeedSequence(seed, spawn_key=(block,))``, so the same scenario gives the same records
whatever the chunk size, a ``total_requests`` run is a prefix of a longer one, and every record
draws the same random numbers whatever the regression (common random numbers: baseline records
do not change when only the regression changes). No wall clock is read.

>>> from bakesim.scenario import generate, scenario_preset, to_json_lines
>>> cols = generate(scenario_preset("errors-2x", seed=7), total_requests=1000)
>>> len(cols), cols.version_names
(1000, ('v41', 'v42'))
>>> bool(np.all(np.diff(cols.ts) >= 0))
True
>>> print(to_json_lines(cols[:1])[0].decode())
{"ts":1795824000.000018,"service":"checkout","version":"v41","status":200,"latency_ms":207.864,"route":"/search","zone":"eu-west-1b","host":"checkout-v41-5"}
"""

from __future__ import annotations

import dataclasses
import gzip
import math
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Final, Protocol

import numpy as np
import numpy.typing as npt
import orjson

from monitor.errors import ConfigError

__all__ = [
    "DEFAULT_START_S",
    "SCENARIO_NAMES",
    "Columns",
    "Regression",
    "Route",
    "Scenario",
    "ServiceSpec",
    "generate",
    "iter_chunks",
    "scenario_preset",
    "to_json_lines",
    "write_jsonl",
]

FloatArray = npt.NDArray[np.float64]
CodeArray = npt.NDArray[np.int32]
BoolArray = npt.NDArray[np.bool_]

DEFAULT_START_S: Final = 1_795_824_000.0  # 2026-11-28T00:00:00Z
SECONDS_PER_DAY: Final = 86_400.0
# Expected requests per generation block; the block length is a power of two seconds derived
# from mean_rps only, so it never depends on how the caller chunks the stream.
_BLOCK_TARGET_REQUESTS: Final = 16_384
_BLOCK_LOG2_S_MIN, _BLOCK_LOG2_S_MAX = -10, 12
ERROR_STATUSES: Final = (500, 502, 503, 504)
_ERROR_STATUS_WEIGHTS: Final = (0.4, 0.3, 0.2, 0.1)
OK_STATUSES: Final = (200, 201, 204, 301, 404)
_OK_STATUS_WEIGHTS: Final = (0.9, 0.03, 0.03, 0.01, 0.03)
GZIP_LEVEL: Final = 6
MID_BAKE_START_S: Final = 600.0  # halfway through the CLI's default 20-minute bake


def _require(
    name: str,
    value: object,
    lo: float,
    hi: float = math.inf,
    *,
    open_lo: bool = False,
    open_hi: bool = False,
    integer: bool = False,
) -> None:
    """Raise ConfigError("name must be in (lo, hi], got value") unless value is in bounds."""
    kinds = (int,) if integer else (int, float)
    ok = isinstance(value, kinds) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        assert isinstance(value, int | float)
        ok = (value > lo if open_lo else value >= lo) and (value < hi if open_hi else value <= hi)
    if not ok:
        if hi == math.inf:
            bound = f"{'>' if open_lo else '>='} {lo:g}"
        else:
            bound = f"in {'(' if open_lo else '['}{lo:g}, {hi:g}{')' if open_hi else ']'}"
        word = "an integer " if integer else ""
        raise ConfigError(f"{name} must be {word}{bound}, got {value!r}", value=value)


def _require_names(name: str, values: object) -> None:
    ok = isinstance(values, tuple) and len(values) > 0 and len(set(values)) == len(values)
    if not (ok and isinstance(values, tuple) and all(isinstance(v, str) and v for v in values)):
        raise ConfigError(f"{name} must be unique non-empty strings, got {values!r}", value=values)


def _as_tuple(obj: object, name: str) -> None:
    value = getattr(obj, name)
    if isinstance(value, list):
        object.__setattr__(obj, name, tuple(value))


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
        _require_names("path", (self.path,))
        _require("weight", self.weight, 0, open_lo=True)
        _require("median_ms", self.median_ms, 0, open_lo=True)
        _require("sigma", self.sigma, 0, 5)
        _require("error_factor", self.error_factor, 0)


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
        _require("error_multiplier", self.error_multiplier, 0)
        _require("latency_multiplier", self.latency_multiplier, 0, open_lo=True)
        _require("slow_tail_fraction", self.slow_tail_fraction, 0, 1)
        _require("slow_tail_add_s", self.slow_tail_add_s, 0)
        _require("start_after_s", self.start_after_s, 0)
        for name in ("routes", "zones"):
            _as_tuple(self, name)
            if getattr(self, name) is not None:
                _require_names(name, getattr(self, name))


_NO_REGRESSION: Final = Regression()
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
            _require_names(name, (getattr(self, name),))
        if self.baseline_version == self.canary_version:
            v = self.canary_version
            msg = f'canary_version must differ from baseline_version, both are "{v}"'
            raise ConfigError(msg, value=v)
        _require("canary_share", self.canary_share, 0, 1, open_lo=True, open_hi=True)
        _require("base_error_rate", self.base_error_rate, 0, 1)
        _as_tuple(self, "routes")
        _as_tuple(self, "zones")
        _require_names("route paths", tuple(r.path for r in self.routes))
        _require_names("zones", self.zones)
        _require("baseline_hosts", self.baseline_hosts, 1, integer=True)
        _require("canary_hosts", self.canary_hosts, 1, integer=True)
        _require("traffic_weight", self.traffic_weight, 0, open_lo=True)
        known = {"routes": {r.path for r in self.routes}, "zones": set(self.zones)}
        for name, values in known.items():
            unknown = sorted(set(getattr(self.regression, name, None) or ()) - values)
            if unknown:
                msg = f'regression {name} "{unknown[0]}" is not a {name[:-1]} of "{self.name}"'
                raise ConfigError(msg, value=unknown[0])


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
        _as_tuple(self, "services")
        _require_names("service names", tuple(s.name for s in self.services))
        _require("mean_rps", self.mean_rps, 0, 1e8, open_lo=True)
        _require("diurnal_amplitude", self.diurnal_amplitude, 0, 1, open_hi=True)
        _require("peak_hour_utc", self.peak_hour_utc, 0, 24, open_hi=True)
        _require("start_s", self.start_s, 0)
        _require("seed", self.seed, 0, integer=True)

    def rate_rps(self, ts: FloatArray) -> FloatArray:
        """The expected request rate (all services) at event times ``ts``."""
        cycle = (
            2 * np.pi / SECONDS_PER_DAY * (np.mod(ts, SECONDS_PER_DAY) - self.peak_hour_utc * 3600)
        )
        return self.mean_rps * (1.0 + self.diurnal_amplitude * np.cos(cycle))


_PRESETS: Final[dict[str, tuple[str, Regression | None, float | None]]] = {
    "aa": ("no regression: canary identical to baseline", None, None),
    "errors-2x": ("canary error rate x2", Regression(error_multiplier=2.0), None),
    "errors-1.5x": ("canary error rate x1.5", Regression(error_multiplier=1.5), None),
    "latency-1.10": ("canary latency x1.10", Regression(latency_multiplier=1.10), None),
    "slow-tail": (
        "5% of canary requests +200 ms",
        Regression(slow_tail_fraction=0.05, slow_tail_add_s=0.2),
        None,
    ),
    "mid-bake": (
        f"canary errors x3 from {MID_BAKE_START_S:.0f} s into the bake on",
        Regression(error_multiplier=3.0, start_after_s=MID_BAKE_START_S),
        None,
    ),
    "low-traffic": ("2 requests/s over the fleet, no regression", None, 2.0),
}
SCENARIO_NAMES: Final = tuple(_PRESETS)


def scenario_preset(name: str, *, seed: int = 0) -> Scenario:
    """The named preset (one of :data:`SCENARIO_NAMES`): service "checkout", v41 → v42."""
    if name not in _PRESETS:
        msg = f'scenario "{name}" is not known; known: {", ".join(SCENARIO_NAMES)}'
        raise ConfigError(msg, value=name)
    _, regression, rps = _PRESETS[name]
    scenario = Scenario(services=(ServiceSpec(regression=regression),), seed=seed)
    return scenario if rps is None else dataclasses.replace(scenario, mean_rps=rps)


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
        hosts: list[tuple[str, int, bool]] = []  # name, zone code, regression applies
        route_rows: list[tuple[int, float, float, float, bool]] = []
        route_cum: list[FloatArray] = []
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
            weights = [r.weight for r in spec.routes]
            mean_factor = np.dot(weights, [r.error_factor for r in spec.routes]) / sum(weights)
            for r in spec.routes:
                p = spec.base_error_rate * r.error_factor / mean_factor if mean_factor > 0 else 0.0
                hit = reg.routes is None or r.path in reg.routes
                route_rows.append(
                    (routes.index(r.path), r.median_ms / 1e3, r.sigma, min(1, p), hit)
                )
            route_cum.append(i + _cum_weights(weights))
        self.service_cum = _cum_weights(s.traffic_weight for s in services)
        self.canary_share = np.array([s.canary_share for s in services])
        self.route_end = np.cumsum([len(s.routes) for s in services])
        self.route_cum = np.concatenate(route_cum)
        code, median_s, sigma, error, route_hit = zip(*route_rows, strict=True)
        self.route_code = np.array(code, dtype=np.int32)
        self.route_median_s, self.route_sigma = np.array(median_s), np.array(sigma)
        self.route_error, self.route_hit = np.array(error), np.array(route_hit, dtype=np.bool_)
        host_names, host_zone, host_hit = zip(*hosts, strict=True)
        self.host_zone = np.array(host_zone, dtype=np.int32)
        self.host_hit = np.array(host_hit, dtype=np.bool_)
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
        service_names = tuple(s.name for s in services)
        names = (service_names, tuple(versions), tuple(routes), tuple(zones), host_names)
        self.names: tuple[tuple[str, ...], ...] = names
        log2_s = round(math.log2(_BLOCK_TARGET_REQUESTS / sc.mean_rps))
        self.block_s = 2.0 ** min(max(log2_s, _BLOCK_LOG2_S_MIN), _BLOCK_LOG2_S_MAX)

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
        _require("duration_s", duration_s, 0, open_lo=True)
    if total_requests is not None:
        _require("total_requests", total_requests, 1, integer=True)
    _require("chunk_requests", chunk_requests, 1, integer=True)
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
        raise ConfigError("generate needs duration_s or total_requests", value=None)
    chunk = total_requests or 1 << 62
    chunks = list(
        iter_chunks(
            scenario, duration_s=duration_s, total_requests=total_requests, chunk_requests=chunk
        )
    )
    return Columns.concat(chunks) if chunks else _Plan(scenario).block(0)[:0]


def to_json_lines(columns: Columns) -> list[bytes]:
    """One orjson object per record (no newline), keys in the "plain" preset's order."""

    def names(codes: CodeArray, table: tuple[str, ...]) -> list[str]:
        return np.array(table, dtype=object)[codes].tolist()  # type: ignore[no-any-return]

    dumps = orjson.dumps
    c = columns
    return [
        dumps({"ts": t, "service": s, "version": v, "status": st, "latency_ms": ms,
               "route": r, "zone": z, "host": h})
        for t, s, v, st, ms, r, z, h in zip(
            c.ts.tolist(), names(c.service, c.service_names), names(c.version, c.version_names),
            c.status.tolist(), np.round(c.latency_s * 1e3, 3).tolist(),
            names(c.route, c.route_names), names(c.zone, c.zone_names), names(c.host, c.host_names),
            strict=True,
        )
    ]  # fmt: skip


class _BinaryWriter(Protocol):
    def write(self, data: bytes, /) -> object: ...


def _write_chunks(
    out: _BinaryWriter, chunks: Iterable[Columns], on_chunk: Callable[[Columns], None] | None
) -> int:
    written = 0
    for cols in chunks:
        lines = to_json_lines(cols)
        out.write(b"\n".join(lines) + b"\n")
        written += len(lines)
        if on_chunk is not None:
            on_chunk(cols)
    return written


def write_jsonl(
    path: str | os.PathLike[str],
    scenario: Scenario,
    *,
    duration_s: float | None = None,
    total_requests: int | None = None,
    chunk_requests: int = 10_000,
    on_chunk: Callable[[Columns], None] | None = None,
) -> int:
    """Write the records as JSON lines to ``path`` (gzip if it ends in ".gz"); return the count.

    One limit is required. The gzip header carries no name or time, so output is byte-identical
    for the same scenario. ``on_chunk`` is called after each chunk is written.
    """
    if duration_s is None and total_requests is None:
        raise ConfigError("write_jsonl needs duration_s or total_requests", value=None)
    chunks = iter_chunks(
        scenario,
        duration_s=duration_s,
        total_requests=total_requests,
        chunk_requests=chunk_requests,
    )
    with open(path, "wb") as raw:
        if not os.fspath(path).endswith(".gz"):
            return _write_chunks(raw, chunks, on_chunk)
        with gzip.GzipFile(
            filename="", mode="wb", fileobj=raw, compresslevel=GZIP_LEVEL, mtime=0
        ) as gz:
            return _write_chunks(gz, chunks, on_chunk)
