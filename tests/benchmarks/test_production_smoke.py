"""The production benchmark's generator makes the structure each scenario claims; every
variant runs through the benchmark's own code path at a tiny size."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from benchmarks.production.partials import EVENT_TIME_START_S, Flushed, IngestStream
from benchmarks.production.run import bake_spec, main, run_bake
from benchmarks.production.scenarios import VARIANTS, select, with_horizon
from benchmarks.production.traffic import (
    BASELINE,
    CANARY,
    ROUTES,
    Records,
    TrafficGenerator,
    pooled_error_p,
)


def _gen(name: str, seed: int = 7) -> TrafficGenerator:
    return TrafficGenerator(VARIANTS[name].traffic, np.random.default_rng(seed))


def _records(name: str, t1_s: float, seed: int = 7) -> Records:
    return _gen(name, seed).records(0.0, t1_s)


def _stream(name: str, seed: int = 7) -> tuple[TrafficGenerator, IngestStream]:
    gen = _gen(name, seed)
    return gen, IngestStream(gen, bake_spec(VARIANTS[name]), np.random.default_rng(seed + 1))


def _flushes(name: str, t1_s: float, seed: int = 7) -> list[Flushed]:
    gen, stream = _stream(name, seed)
    out: list[Flushed] = []
    for t0 in np.arange(0.0, t1_s, 10.0):
        out += stream.push(gen.records(float(t0), float(t0) + 10.0), float(t0) + 10.0)
    return out


def _increments(name: str, t1_s: float, seed: int = 7) -> list[Flushed]:
    """The flushes that carry records of the bake."""
    return [f for f in _flushes(name, t1_s, seed) if f.increment is not None]


def _rate(mask: np.ndarray) -> float:
    return float(np.mean(mask))


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_every_variant_runs_a_tiny_bake(name: str) -> None:
    """Each variant's bake runs through run_bake and reports a well-formed outcome."""
    out = run_bake(with_horizon(VARIANTS[name], 12.0), run=0, seed=1)
    assert out.status in (None, "HALT", "PROMOTE", "INCONCLUSIVE")
    assert out.canary_n + out.baseline_n > 0
    assert 0.0 <= out.elapsed_s <= 12.0
    assert out.tested_canary == 0  # no window closes before 10 s + 30 s of lateness
    assert out.reason


def test_cli_writes_the_three_files(tmp_path: Path) -> None:
    """The command writes production.md, .json and .png; --update merges a re-run scenario."""
    argv = ["--runs", "2", "--jobs", "1", "--max-event-s", "3", "--out", str(tmp_path)]
    assert main([*argv, "--only", "2"]) == 0
    assert main([*argv, "--only", "zone", "--update"]) == 0
    doc = json.loads((tmp_path / "production.json").read_text())
    assert list(doc["results"]) == ["zone-slow", "route-mix"]
    assert doc["settings"]["updated"] == ["zone-slow"]
    assert all(len(runs) == 2 for runs in doc["runs"].values())
    assert "| zone-slow |" in (tmp_path / "production.md").read_text()
    assert (tmp_path / "production.png").stat().st_size > 10_000


def test_only_accepts_numbers_names_and_variants() -> None:
    """--only takes scenario numbers, scenario names and variant names; unknown ones fail."""
    assert [v.name for v in select("3")] == [
        "lag-10s",
        "lag-20s",
        "lag-30s",
        "lag-0s",
        "lag-35s",
        "lag-45s",
    ]
    assert [v.name for v in select("coverage,rare-5x")] == ["static-only", "cart-only", "rare-5x"]
    with pytest.raises(ValueError, match="unknown scenario"):
        select("nope")


def test_partials_count_every_record_once_with_segments() -> None:
    """Every record that has arrived is in exactly one increment, in its totals (with zone, route
    and host counts) and in its cells; every partition publishes at every flush, in tick order."""
    gen, stream = _stream("aa-control")
    recs = gen.records(0.0, 20.0)
    flushes = list(stream.push(recs, 20.0))
    incs = [f.increment for f in flushes if f.increment is not None]
    total = sum(i.canary.requests + i.baseline.requests for i in incs)
    assert total + stream.pending == recs.n == stream.records + stream.pending
    for inc in incs:
        for s in (inc.canary, inc.baseline):
            for dim in ("zone", "route", "host"):
                assert sum(s.segments.get(dim, {}).values()) == s.requests
        assert sum(c.requests for c, _ in inc.cells.values()) == inc.canary.requests
        assert sum(b.requests for _, b in inc.cells.values()) == inc.baseline.requests
    ticks = [f.tick for f in flushes]
    assert ticks == sorted(ticks) and set(ticks) == set(range(20))
    assert len({(f.tick, f.partial.partition) for f in flushes}) == len(flushes) == 20 * 4
    assert all(f.partial.source_partitions == 4 and not f.partial.idle for f in flushes)
    clocks = [f.partial.progress_s for f in flushes if f.tick == 19]
    assert all(
        c is not None and EVENT_TIME_START_S + 17.0 < c < EVENT_TIME_START_S + 20.0 for c in clocks
    )


def test_a_partition_without_records_goes_idle() -> None:
    """burst-pod-keys, a seed whose pods leave a partition empty: that partition's partials are
    heartbeats without a clock, idle after ingest's IDLE_AFTER_S."""
    for seed in range(20):
        gen, stream = _stream("burst-pod-keys", seed)
        empty = set(range(4)) - set(gen.pod_partition.tolist())
        if empty:
            break
    flushes = [f for t0 in (0.0, 10.0) for f in stream.push(gen.records(t0, t0 + 10.0), t0 + 10.0)]
    for f in flushes:
        if f.partial.partition in empty:
            assert f.increment is None and f.partial.progress_s is None
            assert f.partial.idle == (f.tick + 1 >= 10)
        else:
            assert not f.partial.idle


def test_zone_canary_is_confined_to_the_slow_zone() -> None:
    """zone-slow: every canary request is served in zone-c, the baseline's in all three zones."""
    r = _records("zone-slow", 20.0)
    assert set(r.zone[r.cohort == CANARY].tolist()) == {2}
    assert set(r.zone[r.cohort == BASELINE].tolist()) == {0, 1, 2}
    incs = [f.increment for f in _increments("zone-slow", 20.0) if f.increment is not None]
    assert {z for i in incs for z in i.canary.segments.get("zone", {})} == {"zone-c"}
    assert all(
        "zone=zone-c" in label for i in incs for (_, label), (c, _) in i.cells.items() if c.requests
    )
    base = r.cohort == BASELINE
    slow = np.median(r.latency_s[base & (r.zone == 2)]) / np.median(
        r.latency_s[base & (r.zone == 0)]
    )
    assert slow == pytest.approx(1.3, rel=0.05)


def test_route_mix_matches_the_configured_weights() -> None:
    """route-mix: each cohort's route shares are its configured weights; no route worse."""
    r = _records("route-mix", 100.0)
    weights = {BASELINE: [x.weight for x in ROUTES], CANARY: [0.30, 0.25, 0.10, 0.35]}
    for cohort, w in weights.items():
        got = np.bincount(r.route[r.cohort == cohort], minlength=4) / np.sum(r.cohort == cohort)
        np.testing.assert_allclose(got, w, atol=0.006)
    for k, route in enumerate(ROUTES):
        c = r.error[(r.cohort == CANARY) & (r.route == k)]
        assert _rate(c) == pytest.approx(route.error_p, abs=4 * math.sqrt(route.error_p / c.size))


def test_lagged_canary_records_reach_ingest_late() -> None:
    """lag-10s/20s: canary records arrive 10/20 s after the baseline's of the same moment."""
    for name, lag in (("lag-10s", 10.0), ("lag-20s", 20.0)):
        r = _records(name, 40.0)
        delay = r.arrival_s - r.time_s
        can, base = delay[r.cohort == CANARY], delay[r.cohort == BASELINE]
        assert can.min() >= 1.0 + lag and can.max() <= 2.0 + lag
        assert base.min() >= 1.0 and base.max() <= 2.0
        incs = _increments(name, 60.0)
        first_canary = min(f.tick for f in incs if f.increment and f.increment.canary.requests)
        assert first_canary >= 1 + lag
        assert min(f.tick for f in incs if f.increment and f.increment.baseline.requests) <= 2


def test_bursts_are_common_mode() -> None:
    """Error bursts raise both cohorts' error rates at the same event times, ~15×."""
    gen = _gen("lag-10s")
    r = gen.records(0.0, 600.0)
    bursts = gen.bursts_until(600.0)
    assert len(bursts) > 10
    inside = np.zeros(r.n, dtype=bool)
    for s, e in bursts:
        inside |= (r.time_s >= s) & (r.time_s < e)
    for cohort in (BASELINE, CANARY):
        m = r.cohort == cohort
        ratio = _rate(r.error[m & inside]) / _rate(r.error[m & ~inside])
        assert ratio == pytest.approx(15.0, rel=0.2)


@pytest.mark.parametrize("name", ["tol-sigma-0.5", "tol-sigma-1.0", "tol-pareto"])
def test_tolerance_canary_is_exactly_ten_percent_slower(name: str) -> None:
    """tol-*: the canary's latency quantiles are 1.10× the baseline's (p50, p90, p99)."""
    r = _records(name, 60.0)
    qs = (0.5, 0.9, 0.99)
    can = np.quantile(r.latency_s[r.cohort == CANARY], qs)
    base = np.quantile(r.latency_s[r.cohort == BASELINE], qs)
    np.testing.assert_allclose(can / base, 1.1, rtol=0.03)


def test_pareto_tail_is_heavier_than_lognormal() -> None:
    """tol-pareto: above p98 latencies follow a Pareto(1.5) tail (p99.9/p99 ≫ the lognormal's)."""

    def one_route(name: str) -> np.ndarray:
        r = _records(name, 60.0)  # the baseline on /api/search: no route or zone factor
        lat: np.ndarray = r.latency_s[(r.cohort == BASELINE) & (r.route == 1)]
        return lat

    lat, ref = one_route("tol-pareto"), one_route("tol-sigma-0.5")
    p98, p99, p999 = np.quantile(lat, (0.98, 0.99, 0.999))
    assert p99 / p98 == pytest.approx(2 ** (1 / 1.5), rel=0.1)
    assert p999 / p99 > 1.5 * float(np.quantile(ref, 0.999) / np.quantile(ref, 0.99))


def test_pod_keyed_partials_hold_one_cohort() -> None:
    """pod-keyed-5x: every partial holds only canary or only baseline; random keys mix them."""
    incs = [f.increment for f in _increments("pod-keyed-5x", 60.0) if f.increment is not None]
    assert all(i.canary.requests == 0 or i.baseline.requests == 0 for i in incs)
    assert any(i.canary.requests for i in incs) and any(i.baseline.requests for i in incs)
    mixed = [f.increment for f in _increments("random-keyed-5x", 60.0) if f.increment is not None]
    assert any(i.canary.requests and i.baseline.requests for i in mixed)
    r = _records("pod-keyed-5x", 20_000.0)
    ratio = _rate(r.error[r.cohort == CANARY]) / _rate(r.error[r.cohort == BASELINE])
    assert ratio == pytest.approx(5.0, rel=0.1)


def test_static_only_canary_serves_no_api() -> None:
    """static-only: the canary serves /static alone (its broken /api never shows)."""
    r = _records("static-only", 30.0)
    assert set(r.route[r.cohort == CANARY].tolist()) == {0}
    assert _rate(r.error[r.cohort == CANARY]) < 0.003


def test_sticky_sessions_are_over_dispersed() -> None:
    """sticky: with users pinned, the A/A error ratio varies across bakes far beyond binomial."""
    logs, binomial = [], []
    for seed in range(12):
        r = _records("sticky", 60.0, seed)
        x_c, x_b = int(r.error[r.cohort == CANARY].sum()), int(r.error[r.cohort == BASELINE].sum())
        n_c, n_b = int(np.sum(r.cohort == CANARY)), int(np.sum(r.cohort == BASELINE))
        logs.append(math.log((x_c / n_c) / (x_b / n_b)))
        binomial.append(math.sqrt(1 / x_c + 1 / x_b))
    assert np.std(logs) > 2.0 * np.mean(binomial)
    unpinned = [_records("aa-control", 60.0, s) for s in range(3)]
    assert all(0.48 < _rate(r.cohort == CANARY) < 0.52 for r in unpinned)


def test_diurnal_rates_shares_and_error_rates() -> None:
    """diurnal-*: load 1.6× → 0.4× the mean, canary share 2 % → 50 %, errors peak → trough."""
    gen = _gen("diurnal-1.5x")
    r = gen.records(0.0, 900.0)
    expected_rate = 600 * (1 + 0.6 * np.cos(2 * np.pi * np.array([30.0, 840.0]) / 1800))
    for (lo, hi), rate in zip(((0.0, 60.0), (810.0, 870.0)), expected_rate, strict=True):
        assert np.sum((r.time_s >= lo) & (r.time_s < hi)) / 60.0 == pytest.approx(rate, rel=0.06)
    assert _rate(r.cohort[r.time_s < 180.0] == CANARY) == pytest.approx(0.02, abs=0.003)
    assert _rate(r.cohort[r.time_s >= 720.0] == CANARY) == pytest.approx(0.5, abs=0.01)
    for window in (r.time_s < 120.0, r.time_s >= 720.0):
        for cohort, factor in ((BASELINE, 1.0), (CANARY, 1.5)):
            m = window & (r.cohort == cohort)
            p = factor * pooled_error_p(ROUTES) * gen.error_time_factor(r.time_s[m])
            expected = float(p.mean())
            assert abs(_rate(r.error[m]) - expected) < 4 * math.sqrt(expected / m.sum())
    assert gen.error_time_factor(np.array([0.0, 900.0])) == pytest.approx([0.84, 0.28])


def test_rare_event_rates() -> None:
    """rare-5x: the baseline errs at 0.01 %, the canary at 0.05 %."""
    r = _records("rare-5x", 600.0)
    assert _rate(r.error[r.cohort == BASELINE]) == pytest.approx(0.0001, rel=0.3)
    assert _rate(r.error[r.cohort == CANARY]) == pytest.approx(0.0005, rel=0.15)


def test_far_future_record_is_rejected_by_the_clock() -> None:
    """far-future: exactly one record, a day ahead, sent at 5 s; ingest's clock rejects it as
    bad_time, so no partial carries it, its window or a clock beyond the true event time; the
    rest of the traffic is the control variant's, record for record."""
    r = _records("far-future", 20.0)
    assert int(r.skewed.sum()) == 1
    assert float(r.time_s[r.skewed][0]) == pytest.approx(5.0 + 86_400.0)
    control = _records("far-future-control", 20.0)
    assert np.array_equal(r.select(~r.skewed).time_s, control.time_s)
    gen, stream = _stream("far-future")
    flushes = [f for t0 in (0.0, 10.0) for f in stream.push(gen.records(t0, t0 + 10.0), t0 + 10.0)]
    assert stream.bad_time == 1
    end = EVENT_TIME_START_S + 20.0
    for f in flushes:
        assert f.partial.progress_s is None or f.partial.progress_s < end
        if f.increment is not None:
            assert f.partial.max_event_time_s is not None and f.partial.max_event_time_s < end
            assert all(k * 10.0 < end for k, _ in f.increment.cells)


def test_route_regression_and_route_alone_are_paired() -> None:
    """route-4x: /api/cart errs 4× on the canary only; the -alone variant sees those same records."""
    pooled = _records("route-4x", 200.0)
    alone = _records("route-4x-alone", 200.0)
    cart = pooled.route == 2
    assert np.array_equal(pooled.select(cart).time_s, alone.time_s)
    assert set(alone.route.tolist()) == {2}
    rate = {c: _rate(pooled.error[cart & (pooled.cohort == c)]) for c in (BASELINE, CANARY)}
    assert rate[CANARY] / rate[BASELINE] == pytest.approx(4.0, rel=0.3)
    other = ~cart & (pooled.cohort == CANARY)
    assert _rate(pooled.error[other]) == pytest.approx(
        pooled_error_p(ROUTES[:2] + ROUTES[3:]), rel=0.1
    )


def test_cold_start_slows_a_fresh_canary_pods_first_requests() -> None:
    """cold-start: a canary pod's first requests are ~2.5× slower, later ones and the baseline not."""
    r = _records("cold-start", 120.0)
    pod = r.pod == 6  # the first canary pod (6 baseline pods come first)
    lat = r.latency_s[pod]
    warm_base = r.latency_s[(r.cohort == BASELINE) & (r.time_s > 60.0)]
    assert np.median(lat[:200]) / np.median(lat[4_000:]) == pytest.approx(2.5, rel=0.15)
    assert np.median(lat[4_000:]) == pytest.approx(np.median(warm_base), rel=0.1)


@pytest.mark.parametrize("name", ["burst-random-keys", "burst-pod-keys"])
def test_canary_burst_is_300_errors_on_one_pod(name: str) -> None:
    """burst-*: 300 extra failed requests on the first canary pod within [15 s, 17 s)."""
    gen = _gen(name)
    r = gen.records(0.0, 40.0)
    burst = (r.latency_s == 0.005) & r.error
    assert int(burst.sum()) == 300
    assert set(r.pod[burst].tolist()) == {gen.first_pod[CANARY]}
    assert r.time_s[burst].min() >= 15.0 and r.time_s[burst].max() < 17.0
    if name == "burst-pod-keys":
        assert np.array_equal(r.partition, gen.pod_partition[r.pod])


def test_control_shares_and_error_rates() -> None:
    """control: 10 % canary share where asked; 1 % baseline errors; 2× on the canary."""
    r = _records("errors-2x-10pct", 2_000.0)
    assert _rate(r.cohort == CANARY) == pytest.approx(0.1, abs=0.005)
    assert _rate(r.error[r.cohort == BASELINE]) == pytest.approx(0.01, rel=0.08)
    assert _rate(r.error[r.cohort == CANARY]) == pytest.approx(0.02, rel=0.2)
