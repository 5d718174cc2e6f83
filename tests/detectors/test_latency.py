"""Tests of the latency gate: thresholds frozen from the baseline, comparisons at scaled thresholds."""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import orjson
import pytest

from detectors.base import Finding
from detectors.errors import StateError
from detectors.latency import LatencyTest
from detectors.rate_ratio import RateRatioTest
from detectors.scaled_threshold import edge_shift
from detectors.summary import GAMMA, CohortSummary, bucket_index, bucket_upper_edge_s

ALPHA = 0.01
ON_EDGE_TOL = GAMMA**5 - 1  # (1 + tol)·T is an edge: the PROMOTE null is exactly at ratio 1
Shape = Literal["sigma-0.5", "sigma-1.0", "pareto"]


def _latencies(rng: np.random.Generator, n: int, shape: Shape) -> np.ndarray:
    """Lognormal latencies (median 50 ms); "pareto" puts 5 % in a Pareto(1.5) tail above 200 ms."""
    if shape == "sigma-0.5":
        return rng.lognormal(math.log(0.05), 0.5, n)
    x = rng.lognormal(math.log(0.05), 1.0, n)
    if shape == "pareto":
        tail = rng.random(n) < 0.05
        x[tail] = 0.2 * (1.0 + rng.pareto(1.5, int(tail.sum())))
    return x


def _increments(
    rng: np.random.Generator,
    steps: int,
    per_arm: int,
    mult: float = 1.0,
    shape: Shape = "sigma-0.5",
) -> list[CohortSummary]:
    """``steps`` increments of ``per_arm`` requests, latencies times ``mult`` (one bincount)."""
    x = _latencies(rng, steps * per_arm, shape) * mult
    group = np.repeat(np.arange(steps), per_arm)
    return CohortSummary.from_groups(group, steps, x, np.zeros(x.size, dtype=bool))


def _inc(rng: np.random.Generator, n: int, mult: float = 1.0) -> CohortSummary:
    return _increments(rng, 1, n, mult)[0]


def _binomial_tail(count: int, runs: int, p: float) -> float:
    """P(Binomial(runs, p) >= count), exactly."""
    below = sum(
        math.exp(
            math.lgamma(runs + 1)
            - math.lgamma(k + 1)
            - math.lgamma(runs - k + 1)
            + k * math.log(p)
            + (runs - k) * math.log1p(-p)
        )
        for k in range(count)
    )
    return max(1.0 - below, 0.0)


def _assert_rate_at_most(count: int, runs: int, alpha: float) -> None:
    """One-sided exact binomial test at 0.1 %: the count is consistent with a rate <= alpha."""
    assert _binomial_tail(count, runs, alpha) >= 1e-3, f"{count}/{runs} exceeds alpha={alpha}"


def _first_crossing(log_e: np.ndarray, alpha: float) -> int | None:
    hits = np.flatnonzero(log_e >= math.log(1.0 / alpha))
    return int(hits[0]) if hits.size else None


# -- the construction --------------------------------------------------------------------------
@pytest.mark.parametrize("slowdown", [0.0, 0.005, 0.0202, 0.05, 0.1, 0.25, 1.0, ON_EDGE_TOL])
def test_edge_shift_snaps_to_the_nearest_edge_below_and_above(slowdown: float) -> None:
    """T⁻ is the largest bucket edge <= (1+tol)·T, T⁺ the smallest >= (1+h)·T, for every T."""
    down, up = edge_shift(slowdown, "down"), edge_shift(slowdown, "up")
    for t_s in (1.3e-4, 0.004, 0.05, 0.7, 42.0):
        k = int(bucket_index(np.array([t_s]))[0])
        t, target = bucket_upper_edge_s(k), (1.0 + slowdown) * bucket_upper_edge_s(k)
        assert bucket_upper_edge_s(k + down) <= target * (1 + 1e-12)
        assert bucket_upper_edge_s(k + down + 1) > target
        assert bucket_upper_edge_s(k + up) >= target * (1 - 1e-12)
        assert bucket_upper_edge_s(k + up - 1) < target or up == 0
        assert bucket_upper_edge_s(k + down) == pytest.approx(t * GAMMA**down, rel=1e-12)
    if slowdown == ON_EDGE_TOL:
        assert down == up == 5


def test_promote_counts_canary_above_scaled_threshold_against_baseline_above_t() -> None:
    """After the freeze, PROMOTE counts canary requests > T⁻ = γ⁴·T (tol 0.1) vs baseline > T."""
    t = LatencyTest(ALPHA, quantiles=(0.5,), min_warmup_requests=100)
    warm = CohortSummary()
    warm.update(np.full(100, 0.05), np.zeros(100, dtype=bool))
    t.update(warm, warm)
    th = t.assess().detail["thresholds"][0]
    k = int(bucket_index(np.array([0.05]))[0])
    assert th["threshold_s"] == bucket_upper_edge_s(k)
    assert th["promote"]["canary_threshold_s"] == bucket_upper_edge_s(k + 4)
    assert th["promote"]["baseline_threshold_s"] == th["halt"]["canary_threshold_s"]
    # canary: 10 at T·1.05 (> T, <= T⁻) and 5 at T·1.2 (> T⁻); baseline: 7 above T
    c, b = CohortSummary(), CohortSummary()
    t_s = bucket_upper_edge_s(k)
    c.update(
        np.r_[np.full(10, t_s * 1.05), np.full(5, t_s * 1.2), np.full(85, 0.01)], np.zeros(100)
    )
    b.update(np.r_[np.full(7, t_s * 1.5), np.full(93, 0.01)], np.zeros(100))
    t.update(c, b)
    th = t.assess().detail["thresholds"][0]
    assert th["promote"]["canary_exceedance"] == 0.05
    assert th["halt"]["canary_exceedance"] == 0.15
    assert th["promote"]["baseline_exceedance"] == th["halt"]["baseline_exceedance"] == 0.07
    assert th["promote"]["null_ratio"] == th["halt"]["null_ratio"] == 1.0


# -- guarantees, over many seeded bakes ------------------------------------------------------
@pytest.mark.parametrize(
    ("shape", "quantile", "seed"),
    [("sigma-0.5", 0.99, 41), ("sigma-1.0", 0.9, 42), ("pareto", 0.99, 43)],
)
def test_false_promote_at_most_alpha_for_a_canary_exactly_tol_slower(
    shape: Shape, quantile: float, seed: int
) -> None:
    """Canary exactly (1+tol) slower, (1+tol)·T on an edge (the null's boundary), one threshold
    (no help from intersection-union): over 600 bakes of 60k requests/arm looked at every 400,
    its PROMOTE gate ever passes in <= alpha of them."""
    rng = np.random.default_rng(seed)
    runs, steps, per_arm = 600, 150, 400
    promotes = 0
    for _ in range(runs):
        t = LatencyTest(ALPHA, quantiles=(quantile,), tol=ON_EDGE_TOL)
        canary = _increments(rng, steps, per_arm, 1.0 + ON_EDGE_TOL, shape)
        trace = t.update_many(canary, _increments(rng, steps, per_arm, 1.0, shape))
        promotes += _first_crossing(trace.log_e_promote, ALPHA) is not None
    _assert_rate_at_most(promotes, runs, ALPHA)


def test_aa_false_halt_at_most_alpha() -> None:
    """Over 500 seeded A/A bakes of 60k requests/arm (looks every 800), the family halts <= alpha."""
    rng = np.random.default_rng(31)
    runs, steps, per_arm = 500, 75, 800
    halts = 0
    for _ in range(runs):
        t = LatencyTest(ALPHA)
        canary = _increments(rng, steps, per_arm)
        trace = t.update_many(canary, _increments(rng, steps, per_arm))
        halts += _first_crossing(trace.log_e_halt, ALPHA) is not None
        assert (t.assess().finding is Finding.REGRESSION) == bool(np.any(trace.log_e_halt >= 4.6))
    _assert_rate_at_most(halts, runs, ALPHA)


def test_false_halt_at_most_alpha_for_a_canary_exactly_margin_slower() -> None:
    """halt_margin h > 0, canary exactly (1+h) slower with a Pareto tail, (1+h)·T on an edge:
    the family halts in <= alpha of 500 bakes of 60k requests/arm (looks every 800)."""
    rng = np.random.default_rng(44)
    runs, steps, per_arm = 500, 75, 800
    halts = 0
    for _ in range(runs):
        t = LatencyTest(ALPHA, halt_margin=ON_EDGE_TOL)
        canary = _increments(rng, steps, per_arm, 1.0 + ON_EDGE_TOL, "pareto")
        trace = t.update_many(canary, _increments(rng, steps, per_arm, 1.0, "pareto"))
        halts += _first_crossing(trace.log_e_halt, ALPHA) is not None
    _assert_rate_at_most(halts, runs, ALPHA)


def test_ten_percent_slower_detected_within_target() -> None:
    """Latency x1.10 (lognormal sigma 0.5, equal arms, looks every 100): median HALT <= 2,500."""
    rng = np.random.default_rng(32)
    needed = []
    for _ in range(200):
        t = LatencyTest(ALPHA)
        trace = t.update_many(_increments(rng, 100, 100, 1.10), _increments(rng, 100, 100))
        i = _first_crossing(trace.log_e_halt, ALPHA)
        needed.append(math.inf if i is None else (i + 1) * 100)
    assert np.median(needed) <= 2500, np.median(needed)


def test_aa_promotes_through_the_ratio_path() -> None:
    """Equal latency, no absolute tolerance: every threshold's PROMOTE gate passes by 100k/arm."""
    rng = np.random.default_rng(45)
    t = LatencyTest(ALPHA)
    trace = t.update_many(_increments(rng, 100, 1000), _increments(rng, 100, 1000))
    assert _first_crossing(trace.log_e_promote, ALPHA) is not None
    a = t.assess()
    assert a.finding is Finding.NON_INFERIOR, a.reason
    assert a.reason == (
        "latency non-inferior at every threshold: canary > 1.083·T as rare as baseline > T at "
        "p50, p90, p99"
    )
    assert {th["promote"]["promote_path"] for th in a.detail["thresholds"]} == {"ratio"}


# -- behaviour ---------------------------------------------------------------------------------
def test_update_many_matches_sequential_updates() -> None:
    """update_many gives the same e-values after every increment and the same state as update."""
    rng = np.random.default_rng(46)
    canary, baseline = _increments(rng, 40, 100, 1.05), _increments(rng, 40, 100)
    one, many = LatencyTest(ALPHA, halt_margin=0.05), LatencyTest(ALPHA, halt_margin=0.05)
    assert many.update_many([], []).log_e_halt.shape == (0,)
    trace = many.update_many(canary[:25], baseline[:25])
    for i, (c, b) in enumerate(zip(canary[:25], baseline[:25], strict=True)):
        one.update(c, b)
        a = one.assess()
        assert math.log(a.e_halt) == pytest.approx(trace.log_e_halt[i], abs=1e-9)
        assert math.log(a.e_promote) == pytest.approx(min(trace.log_e_promote[i], 700), abs=1e-9)
    many.update_many(canary[25:], baseline[25:])
    for c, b in zip(canary[25:], baseline[25:], strict=True):
        one.update(c, b)
    for x, y in zip(one.state_dict()["thresholds"], many.state_dict()["thresholds"], strict=True):
        for gate in ("promote", "halt"):
            if x[gate] is None:
                assert y[gate] is None
                continue
            assert x[gate]["counts"] == y[gate]["counts"]
            assert np.allclose(x[gate]["loglik"], y[gate]["loglik"], rtol=1e-12, atol=1e-9)
    assert one.assess().finding is many.assess().finding


def test_thresholds_freeze_from_baseline_quantiles_after_warmup() -> None:
    """Each quantile's threshold freezes at the baseline's quantile bucket once warm."""
    rng = np.random.default_rng(33)
    t = LatencyTest(ALPHA, quantiles=(0.5, 0.99), min_warmup_requests=200, warmup_exceedances=20)
    t.update(_inc(rng, 100), _inc(rng, 100))
    th = t.assess().detail["thresholds"]
    assert [x["threshold_s"] for x in th] == [None, None]
    assert "warming up" in t.assess().reason
    for _ in range(20):
        t.update(_inc(rng, 100), _inc(rng, 100))
    th = t.assess().detail["thresholds"]
    assert th[0]["threshold_s"] == pytest.approx(0.05, rel=0.05)  # p50 of lognormal(log .05)
    assert th[1]["threshold_s"] == pytest.approx(0.05 * math.exp(0.5 * 2.326), rel=0.1)


def test_slo_threshold_keeps_rate_ratio_semantics() -> None:
    """An SLO threshold is tested from the start at its own edge: PROMOTE below 1 + slo_tol."""
    t = LatencyTest(ALPHA, quantiles=(), slo_thresholds_s=(0.3,), slo_tol=0.25, halt_margin=0.1)
    detail = t.assess().detail["thresholds"][0]
    assert 0.3 <= detail["threshold_s"] <= 0.3 * 1.021
    assert detail["promote"]["canary_threshold_s"] == detail["threshold_s"]
    assert detail["halt"]["canary_threshold_s"] == detail["threshold_s"]
    assert (detail["promote"]["null_ratio"], detail["halt"]["null_ratio"]) == (1.25, 1.1)
    rng = np.random.default_rng(34)
    c = CohortSummary()
    c.update(np.full(500, 0.5), np.zeros(500, bool))
    for _ in range(10):
        t.update(c, _inc(rng, 500))
    assert t.assess().finding is Finding.REGRESSION
    assert "share slower than 301.2ms (slo 300ms)" in t.assess().reason


def test_undecided_reason_names_both_comparisons() -> None:
    """Before a decision the reason shows the HALT comparison and what PROMOTE compares."""
    rng = np.random.default_rng(47)
    t = LatencyTest(ALPHA, quantiles=(0.9,))
    t.update_many(_increments(rng, 5, 100), _increments(rng, 5, 100))
    a = t.assess()
    assert a.finding is Finding.UNDECIDED
    assert "(p90) canary/baseline" in a.reason
    assert "PROMOTE needs share slower than" in a.reason and "(canary) vs" in a.reason


def test_absolute_tolerance_promotes_rare_slo_violations_only() -> None:
    """abs_tol promotes an SLO nobody violates (the ratio never tightens); quantile thresholds
    ignore it and promote through the ratio path alone."""
    rng = np.random.default_rng(35)
    t = LatencyTest(ALPHA, quantiles=(0.5,), slo_thresholds_s=(2.0,), abs_tol=0.005)
    t.update_many(_increments(rng, 60, 2000), _increments(rng, 60, 2000))
    a = t.assess()
    assert a.finding is Finding.NON_INFERIOR, a.reason
    paths = [th["promote"]["promote_path"] for th in a.detail["thresholds"]]
    assert paths == ["ratio", "absolute"]
    assert "slo 2000ms ratio < 1.2" in a.reason


# -- state -------------------------------------------------------------------------------------
def test_snapshot_restore_gives_identical_decisions() -> None:
    """A restored latency test makes the same decisions on the same future increments."""
    rng = np.random.default_rng(36)
    t = LatencyTest(ALPHA, halt_margin=0.05)
    t.update_many(_increments(rng, 15, 100), _increments(rng, 15, 100))
    r = LatencyTest.from_state(orjson.loads(orjson.dumps(t.state_dict())))
    for _ in range(40):
        c, b = _inc(rng, 100, 1.08), _inc(rng, 100)
        t.update(c, b)
        r.update(c, b)
        assert t.assess() == r.assess()


def test_v1_state_loads_with_its_halt_evidence() -> None:
    """A v1 state (one T-vs-T test per threshold, plug-in tol) loads: the HALT evidence carries
    over unchanged, the PROMOTE comparisons start at the restore."""
    rng = np.random.default_rng(48)
    canary, baseline = _increments(rng, 30, 100, 1.04), _increments(rng, 30, 100)
    t = LatencyTest(ALPHA, quantiles=(0.5, 0.9))
    t.update_many(canary, baseline)
    v1 = {**t.state_dict(), "v": 1, "thresholds": []}
    # v1 tested each threshold from the increment after its freeze: p50 at 200 baseline
    # requests, p90 at ceil(20 / 0.1) = 201 (float rounding), so after increments 2 and 3
    for th, start in zip(t.state_dict()["thresholds"], (2, 3), strict=True):
        old = RateRatioTest(ALPHA / 2, alpha_promote=ALPHA, tol=0.37)  # v1's plug-in margin
        k = th["bucket"]
        old.update_many(
            [c.count_above(k) for c in canary[start:]],
            [c.requests for c in canary[start:]],
            [b.count_above(k) for b in baseline[start:]],
            [b.requests for b in baseline[start:]],
        )
        v1["thresholds"].append({"bucket": k, "test": old.state_dict()})
    r = LatencyTest.from_state(orjson.loads(orjson.dumps(v1)))
    for x, y in zip(r.state_dict()["thresholds"], t.state_dict()["thresholds"], strict=True):
        assert x["halt"]["counts"] == y["halt"]["counts"]  # v2 default: a separate HALT test
        assert np.allclose(x["halt"]["loglik"], y["halt"]["loglik"], rtol=1e-12, atol=1e-9)
    # v1's grid had one more point (its plug-in margin), so the mixture differs by quadrature
    assert r.assess().e_halt == pytest.approx(t.assess().e_halt, rel=0.05)
    assert [x["halt"] for x in r.assess().detail["thresholds"]] == [
        x["halt"] for x in t.assess().detail["thresholds"]
    ]
    assert all(x["promote"]["canary_exceedance"] is None for x in r.assess().detail["thresholds"])
    r.update_many(_increments(rng, 5, 100), _increments(rng, 5, 100))
    assert r.state_dict()["v"] == 3


def test_unknown_state_version_is_rejected() -> None:
    """A state from a newer release fails with a StateError naming the version."""
    state = {**LatencyTest(ALPHA).state_dict(), "v": 4}
    with pytest.raises(StateError, match="unsupported latency state version 4"):
        LatencyTest.from_state(state)


def test_quantile_report_matches_cohorts() -> None:
    """The reported p99s are the cohorts' histogram quantiles."""
    rng = np.random.default_rng(37)
    t = LatencyTest(ALPHA)
    c, b = _inc(rng, 5000, 2.0), _inc(rng, 5000)
    t.update(c, b)
    q = t.assess().detail["quantiles"]["p99"]
    assert q["canary"] == c.quantile(0.99) and q["baseline"] == b.quantile(0.99)
    assert q["canary"] / q["baseline"] == pytest.approx(2.0, rel=0.15)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"quantiles": (1.5,)}, "quantiles must be in"),
        ({"quantiles": (), "slo_thresholds_s": ()}, "must not both be empty"),
        ({"slo_thresholds_s": (-1.0,)}, "slo_thresholds_s must be in"),
        ({"warmup_exceedances": 0}, "warmup_exceedances must be >= 1"),
        ({"tol": 1.5}, r"tol must be in \[0, 1\]"),
        ({"halt_margin": -0.1}, r"halt_margin must be in \[0, 1\]"),
    ],
)
def test_bad_parameters_fail_fast(kwargs: dict[str, object], match: str) -> None:
    """Invalid arguments raise ValueError naming the parameter."""
    with pytest.raises(ValueError, match=match):
        LatencyTest(ALPHA, **kwargs)  # type: ignore[arg-type]
