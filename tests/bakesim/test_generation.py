"""Tests of seeded generation: reproducibility, prefixes, common random numbers, statistics."""

from __future__ import annotations

import dataclasses
import itertools
import math
import re

import numpy as np
import pytest

from bakesim.errors import SimulationError
from bakesim.generation import ERROR_STATUSES, OK_STATUSES, Columns, generate, iter_chunks
from bakesim.model import DEFAULT_START_S, Regression, Route, Scenario, ServiceSpec
from bakesim.output import to_json_lines
from bakesim.presets import scenario_preset

N_STAT = 200_000  # records per statistical test
SIGMAS = 4.0


def _scenario(
    regression: Regression | None = None, *, seed: int = 11, share: float = 0.5, **service: object
) -> Scenario:
    spec = dataclasses.replace(ServiceSpec(), canary_share=share, regression=regression, **service)  # type: ignore[arg-type]
    return Scenario(services=(spec,), seed=seed)


def _assert_same(a: Columns, b: Columns) -> None:
    assert len(a) == len(b)
    for name in ("ts", "service", "version", "canary", "status", "latency_s", "route", "zone"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    np.testing.assert_array_equal(a.host, b.host)
    assert (a.service_names, a.version_names, a.route_names, a.zone_names, a.host_names) == (
        b.service_names,
        b.version_names,
        b.route_names,
        b.zone_names,
        b.host_names,
    )


def _within(observed: float, expected: float, n: int) -> None:
    """A binomial proportion within SIGMAS standard errors of its expectation."""
    sd = math.sqrt(expected * (1 - expected) / n)
    assert abs(observed - expected) <= SIGMAS * sd, (observed, expected, n)


def test_different_seed_gives_different_records() -> None:
    """A different seed gives different records."""
    a = to_json_lines(generate(scenario_preset("aa", seed=1), total_requests=1000))
    b = to_json_lines(generate(scenario_preset("aa", seed=2), total_requests=1000))
    assert a != b
    assert len(set(a) & set(b)) == 0


@pytest.mark.parametrize("chunk", [7, 999, 10_000, 123_457])
def test_chunked_generation_equals_one_shot(chunk: int) -> None:
    """Chunks of any size concatenate to the one-shot records; all but the last are full."""
    sc = scenario_preset("slow-tail", seed=5)
    total = 5_000 if chunk == 7 else 150_000
    chunks = list(iter_chunks(sc, total_requests=total, chunk_requests=chunk))
    assert all(len(c) == chunk for c in chunks[:-1])
    assert 1 <= len(chunks[-1]) <= chunk
    _assert_same(Columns.concat(chunks), generate(sc, total_requests=total))


def test_shorter_runs_are_prefixes_of_longer_ones() -> None:
    """A request-limited or shorter duration-limited run is a prefix of a longer run."""
    sc = scenario_preset("aa", seed=9)
    long = generate(sc, duration_s=600.0)
    short = generate(sc, duration_s=250.5)
    assert short.ts[-1] < DEFAULT_START_S + 250.5 <= long.ts[len(short)]
    _assert_same(short, long[: len(short)])
    _assert_same(generate(sc, total_requests=12_345), long[:12_345])


def test_regression_changes_only_canary_outcomes() -> None:
    """Common random numbers: a regression leaves arrivals, routing and baseline records alone."""
    aa = generate(_scenario(None), total_requests=N_STAT)
    bad = generate(_scenario(Regression(error_multiplier=2.0)), total_requests=N_STAT)
    for name in ("ts", "canary", "route", "host", "zone", "latency_s"):
        np.testing.assert_array_equal(getattr(aa, name), getattr(bad, name))
    base = ~aa.canary
    np.testing.assert_array_equal(aa.status[base], bad.status[base])
    assert np.all(bad.is_error[aa.is_error])  # canary errors of A/A stay errors
    assert bad.is_error[aa.canary].sum() > 1.8 * aa.is_error[aa.canary].sum()


def test_without_limits_the_stream_is_endless() -> None:
    """With neither duration nor request limit, chunks keep coming (the Kafka demo's mode)."""
    sc = scenario_preset("low-traffic", seed=1)  # ~8k records per block: many blocks needed
    chunks = list(itertools.islice(iter_chunks(sc, chunk_requests=10_000), 5))
    assert [len(c) for c in chunks] == [10_000] * 5
    _assert_same(Columns.concat(chunks), generate(sc, total_requests=50_000))


def test_time_order_and_bounds() -> None:
    """Event times are non-decreasing, within [start, start + duration), across many blocks."""
    sc = dataclasses.replace(scenario_preset("aa", seed=3), mean_rps=2_000.0)
    cols = generate(sc, duration_s=300.0)
    assert np.all(np.diff(cols.ts) >= 0)
    assert cols.ts[0] >= DEFAULT_START_S
    assert cols.ts[-1] < DEFAULT_START_S + 300.0
    np.testing.assert_array_equal(cols.ts, np.round(cols.ts, 6))


def test_canary_share_matches_parameter() -> None:
    """The canary's share of requests is within binomial tolerance of canary_share."""
    cols = generate(_scenario(None, share=0.1), total_requests=N_STAT)
    _within(float(cols.canary.mean()), 0.1, N_STAT)


@pytest.mark.parametrize(
    ("preset", "multiplier"), [("aa", 1.0), ("errors-2x", 2.0), ("errors-1.5x", 1.5)]
)
def test_error_rate_per_cohort(preset: str, multiplier: float) -> None:
    """Baseline errors at base_error_rate over all routes, canary at base × multiplier."""
    sc = scenario_preset(preset, seed=21)
    sc = dataclasses.replace(sc, services=(dataclasses.replace(sc.services[0], canary_share=0.5),))
    cols = generate(sc, total_requests=N_STAT)
    for canary, expected in ((False, 0.01), (True, 0.01 * multiplier)):
        m = cols.canary == canary
        _within(float(cols.is_error[m].mean()), expected, int(m.sum()))


def test_error_multiplier_is_capped_at_one() -> None:
    """A huge multiplier makes every canary request an error, never more."""
    cols = generate(_scenario(Regression(error_multiplier=1e6)), total_requests=20_000)
    assert np.all(cols.is_error[cols.canary])
    _within(float(cols.is_error[~cols.canary].mean()), 0.01, int((~cols.canary).sum()))


def test_latency_multiplier_scales_median() -> None:
    """latency-1.10: canary median / baseline median within 2 % of 1.10."""
    sc = scenario_preset("latency-1.10", seed=8)
    sc = dataclasses.replace(sc, services=(dataclasses.replace(sc.services[0], canary_share=0.5),))
    cols = generate(sc, total_requests=2 * N_STAT)  # sd of the ratio ≈ 0.5 %
    ratio = np.median(cols.latency_s[cols.canary]) / np.median(cols.latency_s[~cols.canary])
    assert abs(ratio / 1.10 - 1) < 0.02


def test_route_latency_is_lognormal_with_route_median() -> None:
    """Per route, the baseline median matches median_ms and log-latency sd matches sigma."""
    cols = generate(_scenario(None), total_requests=N_STAT)
    for route in ServiceSpec().routes:
        m = (np.array(cols.route_names)[cols.route] == route.path) & ~cols.canary
        logs = np.log(cols.latency_s[m])
        assert abs(np.exp(np.median(logs)) * 1e3 / route.median_ms - 1) < 0.03
        assert abs(logs.std() / route.sigma - 1) < 0.03


def test_slow_tail_fraction_above_baseline_p999() -> None:
    """slow tail: canary requests above the baseline's p99.9 ≈ fraction + (1 - fraction) · 0.1 %."""
    fast = (Route("/fast", median_ms=10.0, sigma=0.3),)
    reg = Regression(slow_tail_fraction=0.05, slow_tail_add_s=0.2)
    cols = generate(_scenario(reg, routes=fast), total_requests=N_STAT)
    p999 = np.quantile(cols.latency_s[~cols.canary], 0.999)
    assert p999 < 0.2
    canary = cols.latency_s[cols.canary]
    expected = 0.05 + 0.95 * 0.001
    n = canary.size
    assert abs((canary > p999).mean() - expected) <= SIGMAS * math.sqrt(expected / n) + 3e-4


def test_mid_bake_regression_starts_at_start_after_s() -> None:
    """mid-bake: canary errors at base before start_after_s, ×3 after; nothing changes before."""
    sc = scenario_preset("mid-bake", seed=4)
    sc = dataclasses.replace(sc, services=(dataclasses.replace(sc.services[0], canary_share=0.5),))
    aa = dataclasses.replace(sc, services=(dataclasses.replace(sc.services[0], regression=None),))
    cols, ref = generate(sc, duration_s=1200.0), generate(aa, duration_s=1200.0)
    after = cols.ts >= DEFAULT_START_S + 600.0
    np.testing.assert_array_equal(cols.status[~after], ref.status[~after])
    for mask, canary_rate in ((~after, 0.01), (after, 0.03)):
        for canary, expected in ((False, 0.01), (True, canary_rate)):
            m = mask & (cols.canary == canary)
            _within(float(cols.is_error[m].mean()), expected, int(m.sum()))


def test_regression_limited_to_route_and_zone() -> None:
    """A regression limited to a route and a zone leaves every other canary request unchanged."""
    reg = Regression(
        error_multiplier=5.0, latency_multiplier=2.0, routes=("/cart",), zones=("eu-west-1b",)
    )
    cols = generate(_scenario(reg), total_requests=N_STAT)
    ref = generate(_scenario(None), total_requests=N_STAT)
    hit = (np.array(cols.route_names)[cols.route] == "/cart") & (
        np.array(cols.zone_names)[cols.zone] == "eu-west-1b"
    )
    hit &= cols.canary
    np.testing.assert_array_equal(cols.latency_s[~hit], ref.latency_s[~hit])
    np.testing.assert_array_equal(cols.status[~hit], ref.status[~hit])
    np.testing.assert_allclose(cols.latency_s[hit], 2 * ref.latency_s[hit], rtol=0, atol=2e-6)
    assert cols.is_error[hit].mean() > 3 * ref.is_error[hit].mean()


def test_diurnal_peak_to_trough_ratio() -> None:
    """Over a day, the peak hour and trough hour counts are in ratio (1 + A s)/(1 - A s)."""
    sc = Scenario(mean_rps=10.0, diurnal_amplitude=0.5, peak_hour_utc=14.5, seed=6)
    cols = generate(sc, duration_s=86_400.0)
    _within_poisson(len(cols), 10.0 * 86_400)
    hourly = np.bincount(((cols.ts - DEFAULT_START_S) // 3600).astype(int), minlength=24)
    sinc = math.sin(math.pi / 24) / (math.pi / 24)  # mean of cos over a one-hour bin
    expected = math.log((1 + 0.5 * sinc) / (1 - 0.5 * sinc))
    observed = math.log(hourly[14] / hourly[2])
    assert abs(observed - expected) <= SIGMAS * math.sqrt(1 / hourly[14] + 1 / hourly[2])


def _within_poisson(count: int, mean: float) -> None:
    assert abs(count - mean) <= SIGMAS * math.sqrt(mean), (count, mean)


def test_low_traffic_count_matches_rate_integral() -> None:
    """low-traffic: the request count over 20 min is Poisson with mean ∫ rate dt."""
    sc = scenario_preset("low-traffic", seed=1)
    t = DEFAULT_START_S + np.linspace(0, 1200, 12_001)
    expected = float(np.mean(sc.rate_rps(t)) * 1200)
    _within_poisson(len(generate(sc, duration_s=1200.0)), expected)
    assert expected < 2.0 * 1200


def test_multi_service_traffic_weights_and_versions() -> None:
    """Services get traffic by weight, each with its own versions, hosts and routes."""
    search = ServiceSpec(
        name="search",
        baseline_version="2024.1",
        canary_version="2024.2",
        routes=(Route("/q", median_ms=80.0),),
        zones=("us-east-1a",),
        baseline_hosts=2,
        canary_hosts=1,
    )
    sc = Scenario(services=(ServiceSpec(traffic_weight=3.0), search), seed=2)
    cols = generate(sc, total_requests=N_STAT)
    is_search = np.array(cols.service_names)[cols.service] == "search"
    _within(float(is_search.mean()), 0.25, N_STAT)
    versions = np.array(cols.version_names)[cols.version]
    assert set(versions[is_search]) == {"2024.1", "2024.2"}
    assert set(versions[~is_search]) == {"v41", "v42"}
    assert set(np.array(cols.route_names)[cols.route[is_search]]) == {"/q"}
    assert set(np.array(cols.host_names)[cols.host[is_search]]) == {
        "search-2024.1-1",
        "search-2024.1-2",
        "search-2024.2-1",
    }


def test_statuses_errors_are_5xx_only() -> None:
    """Errors are 500/502/503/504; other statuses are 200/201/204/301/404, never 429."""
    cols = generate(scenario_preset("aa", seed=2), total_requests=N_STAT)
    assert set(np.unique(cols.status[cols.is_error])) == set(ERROR_STATUSES)
    assert set(np.unique(cols.status[~cols.is_error])) == set(OK_STATUSES)
    assert np.mean(cols.status[~cols.is_error] == 200) > 0.85


def test_hosts_names_and_zones() -> None:
    """Hosts are named service-version-i, differ by cohort, and sit in zone (i - 1) % len(zones)."""
    cols = generate(scenario_preset("aa", seed=2), total_requests=50_000)
    hosts = np.array(cols.host_names)[cols.host]
    versions = np.array(cols.version_names)[cols.version]
    zones = np.array(cols.zone_names)[cols.zone]
    assert set(hosts[cols.canary]).isdisjoint(set(hosts[~cols.canary]))
    assert set(hosts[cols.canary]) == {f"checkout-v42-{i}" for i in (1, 2, 3)}
    assert len(set(hosts[~cols.canary])) == 9
    for host, version, zone in set(
        zip(hosts.tolist(), versions.tolist(), zones.tolist(), strict=True)
    ):
        match = re.fullmatch(r"checkout-(v4[12])-(\d+)", host)
        assert match is not None and match.group(1) == version
        assert zone == ServiceSpec().zones[(int(match.group(2)) - 1) % 3]


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (
            lambda: iter_chunks(Scenario(), total_requests=10, chunk_requests=0),
            "chunk_requests must be an integer >= 1, got 0",
        ),
        (lambda: iter_chunks(Scenario(), duration_s=-1.0), "duration_s must be > 0, got -1.0"),
        (lambda: generate(Scenario()), "generate needs duration_s or total_requests"),
    ],
)
def test_invalid_limits_fail_fast(build: object, message: str) -> None:
    """Bad limits raise SimulationError before any record is drawn, naming the parameter."""
    with pytest.raises(SimulationError) as info:
        build()  # type: ignore[operator]
    assert message in str(info.value)
