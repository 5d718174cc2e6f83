"""The situations of issue 9, each as one or more variants of the production-shaped traffic.

A variant is a :class:`~benchmarks.production.traffic.Traffic`, the bake's policy (α = 0.01 and
bakemon's defaults unless the situation says otherwise), what the truth is, and how long to
watch. ``truth`` says which decisions are wrong: ``aa`` — no version is worse, so a HALT is
false; ``regression`` — the canary is worse, so a PROMOTE is false; ``boundary`` — the canary sits
exactly on the tolerance (and on the HALT margin), so both are; ``minor`` — worse, but within the
tolerance, so neither is.

Time is compressed where the situation needs many hours of real traffic (the diurnal curve is
one load cycle per ``period_s``, bursts come every ~20 s): the statistics see the same changing
rates and shares, at a cost the benchmark can afford.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from benchmarks.production.traffic import (
    CANARY,
    ROUTES,
    Bursts,
    CanaryBurst,
    ColdStart,
    Diurnal,
    FarFuture,
    Route,
    Traffic,
    Users,
    Zone,
    scaled_routes,
)

Truth = Literal["aa", "regression", "boundary", "minor"]
ALPHA = 0.01


@dataclass(frozen=True)
class Variant:
    """One measured setting: traffic, policy, truth, horizon (event time, s)."""

    name: str
    scenario: str
    label: str
    truth: Truth
    traffic: Traffic = field(default_factory=Traffic)
    policy: Mapping[str, Any] = field(default_factory=dict)
    runs_scale: float = 1.0  # runs = --runs × this (A/A variants get the full --runs)
    horizon_s: float = 1_800.0
    chunk_s: float = 10.0
    seed_key: str = ""  # variants with the same key see the same traffic (paired)
    watch_route: str | None = None  # report the canary's requests on this route at the end
    probe_at_s: float | None = None  # also read the error test's estimate at this event time

    @property
    def key(self) -> str:
        return self.seed_key or self.name


@dataclass(frozen=True)
class Scenario:
    """One situation of the issue's table, with what the issue measured."""

    number: int
    name: str
    title: str
    issue: str
    variants: tuple[Variant, ...]


def _v(name: str, scenario: str, label: str, truth: Truth, **kw: Any) -> Variant:
    return Variant(name, scenario, label, truth, **kw)


_SLOW_ZONE = (Zone("zone-a"), Zone("zone-b"), Zone("zone-c", latency_factor=1.3, error_factor=1.5))
_BURSTS = Bursts(mean_gap_s=20.0, min_s=2.0, max_s=6.0, error_factor=15.0)
_ONE_PCT = scaled_routes(0.01)
_TOL_POLICY = {"latency": {"halt_margin": 0.1}, "max_canary_requests": 200_000}


def _lag(lag_s: float, runs_scale: float, horizon_s: float = 1_800.0, note: str = "") -> Variant:
    traffic = Traffic(
        rate_rps=1_000.0, partitions=2, bursts=_BURSTS, lag_s=(1.0, 1.0 + lag_s), lag_jitter_s=1.0
    )
    label = f"canary records {lag_s:g} s later than the baseline's, common-mode error bursts{note}"
    return _v(
        f"lag-{lag_s:g}s", "lag", label, "aa", traffic=traffic, runs_scale=runs_scale,
        horizon_s=horizon_s,
    )  # fmt: skip


def _tolerance(
    name: str, label: str, truth: Truth = "boundary", runs_scale: float = 1.0, **kw: Any
) -> Variant:
    policy = kw.pop("policy", _TOL_POLICY)
    kw.setdefault("canary_latency_factor", 1.1)
    traffic = Traffic(rate_rps=4_000.0, **kw)
    return _v(
        name, "tolerance", label, truth, traffic=traffic, policy=policy, runs_scale=runs_scale
    )


def _diurnal(name: str, label: str, truth: Truth, **kw: Any) -> Variant:
    steps = ((0.0, 0.02), (180.0, 0.05), (360.0, 0.10), (540.0, 0.25), (720.0, 0.50))
    error_peak, error_trough = kw.pop("errors", (0.84, 0.28))  # × the routes' 0.715 %
    traffic = Traffic(
        rate_rps=600.0,
        partitions=1,
        share=steps,
        diurnal=Diurnal(
            1_800.0, rate_amplitude=0.6, error_peak=error_peak, error_trough=error_trough
        ),
        flush_interval_s=5.0,  # one partition: the flush only moves when the judge hears it
        canary_error_factor=kw.pop("error_factor", 1.0),
    )
    return _v(name, "diurnal", label, truth, traffic=traffic, horizon_s=900.0, **kw)


def _burst(
    name: str, label: str, keying: Literal["random", "hash"], routes: tuple[Route, ...] = ROUTES
) -> Variant:
    traffic = Traffic(
        routes=routes,
        share=((0.0, 0.25),),
        canary_pods=(0, 1),
        keying=keying,
        canary_burst=CanaryBurst(at_s=15.0, errors=300),
    )
    return _v(
        name,
        "canary-burst",
        label,
        "regression",
        traffic=traffic,
        runs_scale=0.3,
        horizon_s=300.0,
        probe_at_s=60.0,  # the burst's window [10 s, 20 s) is tested once the clock passes 50 s
    )


# Detection speed is measured in canary requests tested, which come in whole 10 s windows: the
# control and route variants run at rates where one window holds ~2-4 % of the median requests
# to HALT (``per_window`` canary requests per window), on one partition with 5 s flushes for the
# control ones (fewer judge calls, the same windows), each watched up to 60,000 canary requests.
_SLOW: dict[str, Any] = {"partitions": 1, "flush_interval_s": 5.0}
_CAP_CANARY = 60_000


def _control(
    name: str,
    label: str,
    share: float,
    per_window: float,
    truth: Truth = "regression",
    runs_scale: float = 0.1,
    **kw: Any,
) -> Variant:
    canary_rps = per_window / 10.0
    traffic = Traffic(
        routes=_ONE_PCT, share=((0.0, share),), rate_rps=canary_rps / share, **_SLOW, **kw
    )
    horizon = _CAP_CANARY / canary_rps
    return _v(
        name, "control", f"{label} ({per_window:g} canary requests per window)", truth,
        traffic=traffic, runs_scale=runs_scale, horizon_s=horizon, chunk_s=min(horizon, 100.0),
    )  # fmt: skip


def _route(name: str, label: str, **kw: Any) -> Variant:
    traffic = Traffic(
        rate_rps=50.0, flush_interval_s=5.0, canary_route_error_factor=(("/api/cart", 4.0),), **kw
    )
    return _v(
        name, "route-regression", label, "regression", traffic=traffic, runs_scale=0.3,
        horizon_s=3_600.0, chunk_s=50.0, seed_key="route-4x", watch_route="/api/cart",
    )  # fmt: skip


SCENARIOS: tuple[Scenario, ...] = (
    Scenario(1, "zone", "canary pods in one zone, 1.3× slower and 1.5× the errors for every version", "false HALT in 100 % of A/A bakes", (
        _v("zone-slow", "zone", "canary's 2 pods in zone-c; baseline's 6 in a, b, c", "aa",
           traffic=Traffic(zones=_SLOW_ZONE, canary_pods=(2, 2), share=((0.0, 0.25),))),
    )),
    Scenario(2, "route-mix", "a different route mix on the canary, no route worse", "false HALT", (
        _v("route-mix", "route-mix", "canary gets 35 % /api/checkout (baseline 15 %)", "aa",
           traffic=Traffic(canary_route_weights=(0.30, 0.25, 0.10, 0.35))),
    )),
    Scenario(3, "lag", "canary logs late (shipper/partition lag) while both cohorts see the same error bursts", "false HALT 12.5 % (10 s), worse at 20 s", (
        _lag(10.0, 0.5), _lag(20.0, 0.5), _lag(30.0, 1.0), _lag(0.0, 0.3),
        _lag(35.0, 0.3, note=" (beyond allowed_lateness_s)"),
        _lag(45.0, 0.1, horizon_s=600.0, note=" (every canary record late)"),
    )),
    Scenario(4, "tolerance", "canary exactly on the tolerance: 10 % slower at every quantile (latency), 1.2× the errors", "false PROMOTE 7.8 % (σ 0.5), 36.9 % (σ 1.0)", (
        _tolerance("tol-sigma-0.5", "lognormal σ 0.5; latency halt_margin 0.1, max 200k"),
        _tolerance("tol-sigma-1.0", "lognormal σ 1.0; latency halt_margin 0.1, max 200k", runs_scale=0.5, sigma=1.0),
        _tolerance("tol-pareto", "σ 0.5 body, Pareto tail (shape 1.5) above p98; halt_margin 0.1", tail_prob=0.02),
        _tolerance("tol-pareto-sigma-1.0", "σ 1.0 body, Pareto tail (shape 1.5) above p98; halt_margin 0.1", runs_scale=0.5, sigma=1.0, tail_prob=0.02),
        _tolerance("tol-errors", "errors 1.2× (= errors.tol), latency equal; errors halt_margin 0.2, max 200k",
                   canary_latency_factor=1.0, canary_error_factor=1.2,
                   policy={"errors": {"halt_margin": 0.2}, "max_canary_requests": 200_000}),
        _tolerance("tol-default-policy", "lognormal σ 0.5, default policy (halt_margin 0)", "regression", runs_scale=0.3, policy={}),
    )),
    Scenario(5, "pod-keyed", "request topic keyed by pod: each partition holds one cohort; canary 5× errors (20 requests/s, 5 canary)", "stays PENDING after 200k requests: \"error rate: no events yet\"", (
        _v("pod-keyed-5x", "pod-keyed", "1 canary partition, 3 baseline partitions; max 200k", "regression",
           traffic=Traffic(rate_rps=20.0, keying="cohort", canary_pods=(0, 1), share=((0.0, 0.25),), canary_error_factor=5.0),
           policy={"max_canary_requests": 200_000}, runs_scale=0.3, chunk_s=50.0),
        _v("random-keyed-5x", "pod-keyed", "the same traffic, random keys (control)", "regression",
           traffic=Traffic(rate_rps=20.0, canary_pods=(0, 1), share=((0.0, 0.25),), canary_error_factor=5.0),
           policy={"max_canary_requests": 200_000}, runs_scale=0.3, chunk_s=50.0),
    )),
    Scenario(6, "coverage", "canary serves only part of the route mix while its other routes are broken", "PROMOTE in 100 % (coverage is opt-in)", (
        _v("static-only", "coverage", "canary: 100 % /static (40 % of the baseline's); its /api routes fail 50×", "regression",
           traffic=Traffic(canary_route_weights=(1.0, 0.0, 0.0, 0.0), canary_route_error_factor=(
               ("/api/search", 50.0), ("/api/cart", 50.0), ("/api/checkout", 50.0))),
           runs_scale=0.1),
        _v("cart-only", "coverage", "canary: 100 % /api/cart (a minor route: 15 % of the baseline's); its other routes fail 50×", "regression",
           traffic=Traffic(canary_route_weights=(0.0, 0.0, 1.0, 0.0), canary_route_error_factor=(
               ("/static", 50.0), ("/api/search", 50.0), ("/api/checkout", 50.0))),
           runs_scale=0.1),
    )),
    Scenario(7, "sticky", "sticky sessions: users pinned to a cohort, heavy users", "false HALT 34 %", (
        _v("sticky", "sticky", "20k users, Pareto(1.2) activity, per-user error σ 1.0, latency σ 0.25", "aa",
           traffic=Traffic(users=Users(20_000, 1.2, 1.0, 0.25)), runs_scale=0.5),
    )),
    Scenario(8, "diurnal", "diurnal rates (compressed: peak → trough in 900 s), canary share 2 %→50 % in steps", "PROMOTE 9.3 % through the absolute-tolerance path", (
        _diurnal("diurnal-1.5x", "baseline errors 0.6 % (peak) → 0.2 % (trough), canary 1.5× at every moment: excess ≥ abs_tol", "regression", error_factor=1.5, runs_scale=0.5),
        _diurnal("diurnal-1.5x-rare", "baseline errors 0.15 % → 0.05 %, canary 1.5× at every moment", "regression", error_factor=1.5, errors=(0.21, 0.07), runs_scale=0.5),
        _diurnal("diurnal-aa", "A/A under the rates and shares of diurnal-1.5x", "aa"),
    )),
    Scenario(9, "rare-events", "5× errors at a 0.01 % base rate, default policy", "PROMOTE 28 %", (
        _v("rare-5x", "rare-events", "baseline 0.01 %, canary 0.05 % errors", "regression",
           traffic=Traffic(rate_rps=4_000.0, routes=scaled_routes(0.0001), canary_error_factor=5.0),
           runs_scale=0.3),
    )),
    Scenario(10, "far-future", "one record with a far-future timestamp (+1 day), min_duration_s = 300", "min_duration_s satisfied at once: PENDING → PROMOTE", (
        _v("far-future", "far-future", "one baseline record at t = 5 s stamped a day ahead", "aa",
           traffic=Traffic(partitions=2, far_future=FarFuture(at_s=5.0)),
           policy={"min_duration_s": 300.0}, runs_scale=0.2, seed_key="far-future"),
        _v("far-future-control", "far-future", "the same traffic without the skewed record (paired run by run)", "aa",
           traffic=Traffic(partitions=2), policy={"min_duration_s": 300.0}, runs_scale=0.2,
           seed_key="far-future"),
    )),
    Scenario(11, "route-regression", "4× errors on /api/cart (15 % of traffic, 0.5 % base errors), 50 requests/s", "HALT after ~16k canary requests, \"ratio 1.33\", no route named", (
        _route("route-4x", "all routes, pooled and per-segment tests"),
        _route("route-4x-alone", "the same traffic, /api/cart alone", only_route="/api/cart"),
    )),
    Scenario(12, "cold-start", "fresh canary pods (first 3,000 requests per pod up to 2.5× slower, 2× errors) vs a warm baseline", "HALT in 100 %", (
        _v("cold-start", "cold-start", "2 fresh canary pods, 6 warm baseline pods; A/A once warm", "aa",
           traffic=Traffic(canary_pods=(0, 1), share=((0.0, 0.25),), cold_start=ColdStart(3_000, 2.5, 2.0)),
           runs_scale=0.3, seed_key="cold-start"),
        _v("cold-start-warmup", "cold-start", "the same traffic; policy canary_warmup_requests = 6,000 (both pods' cold starts)", "aa",
           traffic=Traffic(canary_pods=(0, 1), share=((0.0, 0.25),), cold_start=ColdStart(3_000, 2.5, 2.0)),
           policy={"canary_warmup_requests": 6_000}, runs_scale=0.3, seed_key="cold-start"),
    )),
    Scenario(13, "canary-burst", "a burst of 300 canary errors (2 s, one pod) after a 15 s healthy warm-up (7.5k canary requests, before PROMOTE is possible)", "never decided: estimate 30, bounds [0, 1.82]", (
        _burst("burst-random-keys", "random keys", "random"),
        _burst("burst-pod-keys", "keyed by pod (hash of 8 pods onto 4 partitions)", "hash"),
        _burst("burst-pod-keys-rare", "keyed by pod, 0.05 % base errors", "hash", scaled_routes(0.0005)),
    )),
    Scenario(14, "control", "the same generator, balanced (1 % errors): A/A, and regressions at equal arms and at a 10 % canary share", "(targets: false HALT ≤ α; 2× ≤ 3,450, ×1.10 ≤ 2,500 median)", (
        _v("aa-control", "control", "A/A, equal arms, no lag, random keys (2,000 requests/s, 4 partitions)", "aa"),
        _v("aa-heavy-tail", "control", "A/A, lognormal σ 1.0 with a Pareto(1.5) tail above p98 (4,000/s)", "aa",
           traffic=Traffic(rate_rps=4_000.0, sigma=1.0, tail_prob=0.02)),
        _control("errors-2x-equal", "errors 2×, equal arms", 0.5, 100, canary_error_factor=2.0),
        _control("errors-2x-10pct", "errors 2×, canary share 10 %", 0.1, 50, canary_error_factor=2.0),
        _control("latency-1.10-equal", "latency ×1.10, equal arms", 0.5, 100, canary_latency_factor=1.1),
        _control("latency-1.10-10pct", "latency ×1.10, canary share 10 %", 0.1, 100, canary_latency_factor=1.1),
        _control("latency-1.05-equal", "latency ×1.05 (within the 10 % tolerance), equal arms", 0.5, 500, truth="minor", canary_latency_factor=1.05),
        _control("latency-1.05-10pct", "latency ×1.05 (within the 10 % tolerance), share 10 %", 0.1, 500, truth="minor", canary_latency_factor=1.05),
        _control("slow-tail-equal", "5 % of canary requests +200 ms, equal arms", 0.5, 50, canary_slow_prob=0.05, canary_slow_add_s=0.2),
        _control("slow-tail-10pct", "5 % of canary requests +200 ms, share 10 %", 0.1, 50, canary_slow_prob=0.05, canary_slow_add_s=0.2),
    )),
)  # fmt: skip

VARIANTS: dict[str, Variant] = {v.name: v for s in SCENARIOS for v in s.variants}
SCENARIO_OF: dict[str, Scenario] = {v.name: s for s in SCENARIOS for v in s.variants}


def select(only: str | None) -> list[Variant]:
    """Variants named by ``--only``: comma-separated scenario numbers, scenario or variant names."""
    if not only:
        return list(VARIANTS.values())
    out: list[Variant] = []
    for word in (w.strip() for w in only.split(",") if w.strip()):
        found = [v for s in SCENARIOS if word in (str(s.number), s.name) for v in s.variants] or (
            [VARIANTS[word]] if word in VARIANTS else []
        )
        if not found:
            names = ", ".join(s.name for s in SCENARIOS)
            msg = (
                f'unknown scenario "{word}"; valid: 1-{len(SCENARIOS)}, {names}, or a variant name'
            )
            raise ValueError(msg)
        out += [v for v in found if v not in out]
    return out


def with_horizon(v: Variant, max_event_s: float | None) -> Variant:
    """``v`` watched for at most ``max_event_s`` of event time (smoke runs)."""
    if max_event_s is None:
        return v
    return replace(v, horizon_s=min(v.horizon_s, max_event_s), chunk_s=min(v.chunk_s, max_event_s))


__all__ = ["ALPHA", "CANARY", "ROUTES", "SCENARIOS", "VARIANTS", "Scenario", "Variant", "select"]
