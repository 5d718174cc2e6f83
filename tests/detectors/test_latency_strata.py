"""Per-stratum latency thresholds: each route's own T, one effect per quantile across routes."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import orjson
import pytest

from detectors.base import Finding
from detectors.errors import ParameterError, StateError
from detectors.latency import MAX_STRATA, LatencyTest
from detectors.summary import GAMMA, CohortSummary, bucket_index, bucket_upper_edge_s

ON_EDGE_TOL = GAMMA**5 - 1  # (1 + tol)·T is an edge: the PROMOTE null is exactly at ratio 1
# Four routes at very different latency levels (lognormal sigma 0.5 around 50 ms x level).
LEVELS = np.array([0.3, 1.0, 1.5, 3.0])
SHARES = np.array([0.40, 0.30, 0.15, 0.15])
ROUTES = ["r0", "r1", "r2", "r3"]
Cells = tuple[list[CohortSummary], np.ndarray]


def _cells(rng: np.random.Generator, windows: int, per_arm: int, mult: float = 1.0) -> Cells:
    """One cohort's cells, window-major, one per route: ``per_arm`` requests a window split
    multinomially over the routes. Returns the summaries and their request counts."""
    n = rng.multinomial(per_arm, SHARES, size=windows).ravel()
    route = np.tile(np.arange(LEVELS.size), windows)
    group = np.repeat(np.arange(n.size), n)
    x = rng.lognormal(math.log(0.05), 0.5, group.size) * LEVELS[route[group]] * mult
    return CohortSummary.from_groups(group, n.size, x, np.zeros(x.size, dtype=bool)), n


def _binomial_tail(count: int, runs: int, p: float) -> float:
    """P(Binomial(runs, p) >= count), exactly."""
    below = sum(math.comb(runs, k) * p**k * (1.0 - p) ** (runs - k) for k in range(count))
    return max(1.0 - below, 0.0)


def _assert_rate_at_most(count: int, runs: int, alpha: float) -> None:
    """One-sided exact binomial test at 0.1 %: the count is consistent with a rate <= alpha."""
    assert _binomial_tail(count, runs, alpha) >= 1e-3, f"{count}/{runs} exceeds alpha={alpha}"


def _crosses(log_e: np.ndarray, alpha: float) -> bool:
    return bool(np.any(log_e >= math.log(1.0 / alpha)))


def _summary(latency_s: Sequence[float] | np.ndarray) -> CohortSummary:
    s = CohortSummary()
    x = np.asarray(latency_s, dtype=np.float64)
    s.update(x, np.zeros(x.size, dtype=bool))
    return s


# -- power and validity with a route mix -----------------------------------------------------
def test_ten_percent_slower_route_mix_halts_within_target() -> None:
    """Routes at x0.3 .. x3 the median, latency x1.10 on every route, equal arms, one cell per
    route and window of 100 requests/arm, alpha 0.004 (the default policy's latency HALT share):
    median canary requests to the HALT gate (at the end of the crossing window, where the engine
    decides) <= 3,200 over 200 bakes. Measured 3,000-3,100 over seeds; one pooled T per quantile
    on the same cells needs 8,400-8,700 (equal-latency routes, pooled: 2,500)."""
    rng = np.random.default_rng(61)
    alpha, windows, needed = 0.004, 50, []
    for _ in range(200):
        c, nc = _cells(rng, windows, 100, 1.10)
        b, _ = _cells(rng, windows, 100)
        trace = LatencyTest(alpha).update_many(c, b, ROUTES * windows)
        hits = np.flatnonzero(trace.log_e_halt >= math.log(1.0 / alpha))
        window_end = np.cumsum(nc)[4 * (hits[0] // 4) + 3] if hits.size else math.inf
        needed.append(window_end)
    assert np.median(needed) <= 3200, np.median(needed)


def test_aa_route_mix_false_halt_at_most_alpha() -> None:
    """A/A with the route mix: over 500 bakes of 10k requests/arm (25 windows of 400, one cell
    per route), the family's HALT gate ever passes in <= alpha of them."""
    rng = np.random.default_rng(62)
    alpha, runs, windows, halts = 0.01, 500, 25, 0
    for _ in range(runs):
        t = LatencyTest(alpha)
        trace = t.update_many(_cells(rng, windows, 400)[0], _cells(rng, windows, 400)[0], ROUTES * windows)  # fmt: skip
        halts += _crosses(trace.log_e_halt, alpha)
        assert t.halted == _crosses(trace.log_e_halt, alpha)
    _assert_rate_at_most(halts, runs, alpha)


def test_route_mix_false_promote_at_most_alpha_for_a_canary_exactly_tol_slower() -> None:
    """Canary exactly (1+tol) slower on every route, (1+tol)·T on an edge (the null's boundary):
    over 500 bakes of 30k requests/arm the PROMOTE gate passes in <= alpha of them, while the
    same bakes at equal latency promote in most runs (the test has power to be wrong)."""
    rng = np.random.default_rng(63)
    alpha, windows = 0.01, 15

    def promotes(mult: float, runs: int) -> int:
        count = 0
        for _ in range(runs):
            t = LatencyTest(alpha, tol=ON_EDGE_TOL)
            c, b = _cells(rng, windows, 2000, mult)[0], _cells(rng, windows, 2000)[0]
            count += _crosses(t.update_many(c, b, ROUTES * windows).log_e_promote, alpha)
        return count

    _assert_rate_at_most(promotes(1.0 + ON_EDGE_TOL, 500), 500, alpha)
    assert promotes(1.0, 30) >= 24


# -- the construction ------------------------------------------------------------------------
def test_each_stratum_freezes_its_own_threshold_and_tests_only_later_cells() -> None:
    """Two routes at 10 ms and 100 ms: each gets its own p50 (the pooled T sits between), from
    its own 200 baseline requests, and its cells are tested at it from the one after the
    freeze; until then at the pooled threshold, once that has frozen."""
    t = LatencyTest(0.01, quantiles=(0.5,), min_warmup_requests=200)
    fast, slow = _summary(np.full(100, 0.01)), _summary(np.full(100, 0.1))
    t.update_many([fast, slow, fast], [fast, slow, fast], ["fast", "slow", "fast"])
    detail = t.assess().detail["thresholds"][0]
    k_fast, k_slow = (int(bucket_index(np.array([x]))[0]) for x in (0.01, 0.1))
    assert detail["strata_threshold_s"] == {"fast": bucket_upper_edge_s(k_fast), "slow": None}
    assert detail["threshold_s"] == bucket_upper_edge_s(k_fast)  # pooled p50 of 200 fast, 100 slow
    # the first two cells froze the pooled T: the third is tested at it, fast's own comes next
    assert t.state_dict()["thresholds"][0]["halt"]["counts"][1] == 100
    # slow freezes with this cell (tested at the pooled T, frozen before it); fast at its own
    t.update_many([slow, fast], [slow, fast], ["slow", "fast"])
    detail = t.assess().detail["thresholds"][0]
    assert detail["strata_threshold_s"]["slow"] == bucket_upper_edge_s(k_slow)
    assert t.state_dict()["thresholds"][0]["halt"]["counts"][1] == 300
    t.update(slow, slow, "slow")
    assert t.state_dict()["thresholds"][0]["halt"]["counts"][1] == 400


def test_one_cohort_and_warming_strata_add_no_evidence() -> None:
    """Cells where only one cohort served leave every gate's e-value where the other strata put
    it (a 3x slower canary there included); a stratum without enough baseline of its own yet is
    tested at the pooled threshold."""
    rng = np.random.default_rng(64)
    windows = 20
    c, _ = _cells(rng, windows, 400, 1.05)
    b, _ = _cells(rng, windows, 400)
    only_canary, few = _summary(rng.lognormal(-1.0, 0.5, 300)), _summary(np.full(5, 0.05))
    plain, extra = LatencyTest(0.01), LatencyTest(0.01)
    plain.update_many(c, b, ROUTES * windows)
    for i in range(windows):
        cells = slice(4 * i, 4 * i + 4)
        extra.update_many(c[cells], b[cells], ROUTES)
        extra.update(only_canary, CohortSummary(), "canary-only")
    a, x = plain.assess(), extra.assess()
    assert x.finding is a.finding
    assert (x.e_halt, x.e_promote) == pytest.approx((a.e_halt, a.e_promote), rel=1e-9)
    for tp, tx in zip(
        plain.state_dict()["thresholds"], extra.state_dict()["thresholds"], strict=True
    ):
        assert np.allclose(tp["halt"]["loglik"], tx["halt"]["loglik"], rtol=1e-12, atol=1e-9)
    for th in x.detail["thresholds"]:
        assert th["strata_threshold_s"]["canary-only"] is None
    before = [th["halt"]["counts"][1] for th in extra.state_dict()["thresholds"]]
    extra.update(_summary(rng.lognormal(-1.0, 0.5, 50)), few, "thin")  # 5 baseline: warming
    after = [th["halt"]["counts"][1] for th in extra.state_dict()["thresholds"]]
    assert [n - m for n, m in zip(after, before, strict=True)] == [50, 50, 50]
    assert all(
        th["strata_threshold_s"]["thin"] is None for th in extra.assess().detail["thresholds"]
    )


def test_update_many_with_strata_matches_cell_by_cell_updates() -> None:
    """One update_many of many windows' cells gives the trace and state of one update per cell,
    freezes inside the batch included."""
    rng = np.random.default_rng(65)
    windows = 40
    c, b = _cells(rng, windows, 100, 1.08)[0], _cells(rng, windows, 100)[0]
    one, many = LatencyTest(0.01, halt_margin=0.05), LatencyTest(0.01, halt_margin=0.05)
    trace = many.update_many(c, b, ROUTES * windows)
    for i, (ci, bi) in enumerate(zip(c, b, strict=True)):
        one.update(ci, bi, ROUTES[i % 4])
        if i % 7 == 0:
            a = one.assess()
            assert math.log(a.e_halt) == pytest.approx(trace.log_e_halt[i], abs=1e-9)
            assert math.log(a.e_promote) == pytest.approx(trace.log_e_promote[i], abs=1e-9)
    x, y = one.state_dict(), many.state_dict()
    assert x["strata"] == y["strata"]
    for tx, ty in zip(x["thresholds"], y["thresholds"], strict=True):
        assert tx["bucket"] == ty["bucket"] and tx["halt"]["counts"] == ty["halt"]["counts"]
        assert np.allclose(tx["halt"]["loglik"], ty["halt"]["loglik"], rtol=1e-12, atol=1e-9)
    with pytest.raises(ParameterError, match="one length"):
        many.update_many(c[:2], b[:2], ["r0"])


def test_labels_beyond_the_cap_share_the_pooled_thresholds() -> None:
    """The first MAX_STRATA labels get thresholds of their own; a further label's cells are
    tested at the pooled stratum's, exactly like cells labelled ""."""
    rng = np.random.default_rng(66)
    warm = [_summary(rng.lognormal(-3.0, 0.5, 200)) for _ in range(MAX_STRATA)]
    labels = [f"s{i}" for i in range(MAX_STRATA)]
    tests = [LatencyTest(0.01, quantiles=(0.5,)) for _ in range(2)]
    for t in tests:
        t.update_many(warm, warm, labels)
    c, b = _summary(rng.lognormal(-3.0, 0.5, 300) * 1.2), _summary(rng.lognormal(-3.0, 0.5, 300))
    tests[0].update(c, b, "one-too-many")
    tests[1].update(c, b)
    x, y = (t.state_dict() for t in tests)
    assert x["strata"] == y["strata"] and len(x["strata"]["labels"]) == MAX_STRATA
    assert x["thresholds"] == y["thresholds"]
    # every cell after the first (which froze the pooled T) is tested: at the pooled T while
    # its own stratum warms, then at its own
    assert x["thresholds"][0]["halt"]["counts"][1] == (MAX_STRATA - 1) * 200 + 300


# -- state -----------------------------------------------------------------------------------
def test_state_round_trip_is_exact_mid_warmup() -> None:
    """A test restored while some strata are frozen and others warming continues exactly."""
    rng = np.random.default_rng(67)
    t = LatencyTest(0.01, halt_margin=0.05)
    t.update_many(_cells(rng, 12, 100)[0], _cells(rng, 12, 100)[0], ROUTES * 12)
    state = t.state_dict()
    assert state["v"] == 3 and any(-1 in row for row in state["strata"]["buckets"])
    assert state["strata"]["warm_hist"]  # the warming strata's baselines are kept
    r = LatencyTest.from_state(orjson.loads(orjson.dumps(state)))
    assert r.state_dict() == state
    for _ in range(15):
        c, b = _cells(rng, 1, 100, 1.08)[0], _cells(rng, 1, 100)[0]
        t.update_many(c, b, ROUTES)
        r.update_many(c, b, ROUTES)
        assert t.assess() == r.assess()
    assert r.state_dict() == t.state_dict()


def test_v2_state_loads_with_its_thresholds_as_the_pooled_stratum() -> None:
    """A v2 state (no strata) loads: its thresholds serve the pooled stratum, so unlabelled
    cells continue exactly as before, and labelled strata start warming at the restore."""
    rng = np.random.default_rng(68)
    t = LatencyTest(0.01)
    t.update_many(_cells(rng, 10, 100)[0], _cells(rng, 10, 100)[0])
    v2 = {k: v for k, v in t.state_dict().items() if k != "strata"} | {"v": 2}
    r = LatencyTest.from_state(orjson.loads(orjson.dumps(v2)))
    assert r.state_dict()["strata"] == t.state_dict()["strata"]
    c, b = _cells(rng, 30, 100, 1.1)[0], _cells(rng, 30, 100)[0]
    t.update_many(c, b)
    r.update_many(c, b)
    assert r.assess() == t.assess()
    r.update(c[0], b[0], "r0")
    assert all(th["strata_threshold_s"] == {"r0": None} for th in r.assess().detail["thresholds"])


def test_strata_detail_and_reason_name_per_stratum_thresholds() -> None:
    """With labelled strata the NON_INFERIOR reason says T is per stratum; without, the detail
    and reason keep their earlier shape."""
    rng = np.random.default_rng(69)
    t = LatencyTest(0.01)
    t.update_many(_cells(rng, 25, 4000)[0], _cells(rng, 25, 4000)[0], ROUTES * 25)
    a = t.assess()
    assert a.finding is Finding.NON_INFERIOR, a.reason
    assert a.reason.endswith("at p50, p90, p99 (T per stratum)")
    assert all(set(th["strata_threshold_s"]) == set(ROUTES) for th in a.detail["thresholds"])
    assert "strata_threshold_s" not in LatencyTest(0.01).assess().detail["thresholds"][0]


def test_slo_only_state_round_trips_and_bad_strata_state_fails() -> None:
    """SLO thresholds stay global (no quantile, no stratum rows); a strata state whose shapes
    disagree is rejected with a StateError."""
    rng = np.random.default_rng(70)
    t = LatencyTest(0.01, quantiles=(), slo_thresholds_s=(0.3,))
    t.update_many(_cells(rng, 3, 100)[0], _cells(rng, 3, 100)[0], ROUTES * 3)
    state = orjson.loads(orjson.dumps(t.state_dict()))
    assert LatencyTest.from_state(state).state_dict() == t.state_dict()
    assert t.state_dict()["thresholds"][0]["promote"]["counts"][1] == 300  # every cell tested
    bad = LatencyTest(0.01).state_dict()
    bad["strata"]["labels"] = ["r0"]
    with pytest.raises(StateError, match="strata state has 2 labels"):
        LatencyTest.from_state(bad)
