"""Per-segment HALT tests, the segments breakdown, default coverage and the canary warm-up."""

from __future__ import annotations

import math

import numpy as np
import pytest

from detectors.summary import CohortSummary
from monitor.bakes.spec import BakeSpec
from monitor.verdict.build import halt_budgets
from monitor.verdict.engine import BakeVerdict, Status
from monitor.verdict.segments import parse_label

T0 = 1_795_824_000.0  # a multiple of 10 s
ROUTES = {"/static": 0.40, "/api/search": 0.30, "/api/cart": 0.15, "/api/checkout": 0.15}
ZONES = ("a", "b", "c")


def _spec(**policy: object) -> BakeSpec:
    return BakeSpec.from_dict(
        {"id": "b", "service": "s", "canary": "v2", "baseline": "v1", "policy": policy}
    )


def _summary(rng: np.random.Generator, n: int, p: float, slow: float = 1.0) -> CohortSummary:
    s = CohortSummary()
    lat = np.exp(rng.normal(math.log(0.05 * slow), 0.5, n))
    s.update(lat, rng.random(n) < p)
    return s


def _window(
    rng: np.random.Generator,
    per_window: int,
    *,
    error_p: float = 0.01,
    canary_p: dict[str, float] | None = None,
    canary_routes: dict[str, float] | None = None,
) -> dict[tuple[int, str], tuple[CohortSummary, CohortSummary]]:
    """One window's cells: zone × route, equal arms; the canary's error rate per route."""
    cells = {}
    mix = canary_routes or ROUTES
    for zone in ZONES:
        for route, share in ROUTES.items():
            n_b = rng.poisson(per_window * share / len(ZONES))
            n_c = rng.poisson(per_window * mix.get(route, 0.0) / len(ZONES))
            p_c = (canary_p or {}).get(route, error_p)
            label = f"zone={zone}|route={route}"
            cells[label] = (_summary(rng, n_c, p_c), _summary(rng, n_b, error_p))
    return cells


def _run(v: BakeVerdict, rng: np.random.Generator, windows: int, **kw: object) -> int:
    """Feed windows (one source partition) until a decision; returns windows fed."""
    for i in range(windows):
        t = T0 + 10 * i
        cells = {(int(t // 10), label): pair for label, pair in _window(rng, **kw).items()}  # type: ignore[arg-type]
        c, b = CohortSummary(), CohortSummary()
        for cs, bs in cells.values():
            c.merge(cs)
            b.merge(bs)
        v.update(c, b, t + 9, cells=cells, progress_s=t + 9, source=("r", 0), source_partitions=1)
        if v.decided:
            return i + 1
    return windows


def test_labels_parse_to_segment_values() -> None:
    assert parse_label("zone=a|route=/api/x=1") == {"zone": "a", "route": "/api/x=1"}
    assert parse_label("") == {}


def test_budget_split_between_pooled_and_per_value_tests() -> None:
    """The per-value tests take segment_share of each metric's HALT budget, split over every
    possible value; without segment tests the pooled test keeps it all."""
    pooled, per_value = halt_budgets(_spec().policy)
    assert pooled["error_rate"] == pytest.approx(0.006 * 0.8)
    assert per_value["error_rate"] == pytest.approx(0.006 * 0.2 / (2 * 6))
    pooled0, per_value0 = halt_budgets(_spec(segment_tests=[]).policy)
    assert pooled0["error_rate"] == pytest.approx(0.006)
    assert per_value0 == {}


def test_route_regression_halts_naming_the_route() -> None:
    """A 4x error rate on a route with 15 % of the traffic HALTs on that route's test, and the
    reason and the breakdown name it."""
    halts = 0
    for seed in range(5):
        rng = np.random.default_rng(seed)
        v = BakeVerdict(_spec(min_canary_requests=0, latency={"enabled": False}))
        _run(v, rng, 200, per_window=400, canary_p={"/api/checkout": 0.04})
        assert v.status is Status.HALT
        reason = v.readout().reasons[0]
        halts += 'route "/api/checkout"' in reason
        doc = v.document()
        rows = {r["value"]: r for r in doc["segments"]["route"]}
        assert rows["/api/checkout"]["error_ratio"] > 2.0
        assert {r["finding"] for v_, r in rows.items() if v_ != "/api/checkout"} == {"NONE"}
    assert halts >= 4  # the pooled test may win the race now and then


def test_aa_segment_tests_rarely_halt() -> None:
    """A/A with 4 routes x 3 zones: per-value tests at their share of the budget; the whole
    bake's false-HALT rate stays below alpha's error share (0.6 %) plus binomial noise."""
    false_halts = 0
    runs = 100
    for seed in range(runs):
        rng = np.random.default_rng(1000 + seed)
        v = BakeVerdict(
            _spec(min_canary_requests=10**9, max_canary_requests=10**9, latency={"enabled": False})
        )
        _run(v, rng, 40, per_window=600)
        false_halts += v.status is Status.HALT
    assert false_halts <= 3  # P(Binomial(100, 0.006) > 3) < 0.3 %


def test_breakdown_and_state_round_trip() -> None:
    """The document lists tested values per segment; a restored engine continues identically."""
    rng = np.random.default_rng(3)
    a = BakeVerdict(_spec(min_canary_requests=10**9, max_canary_requests=10**9))
    _run(a, rng, 20, per_window=300)
    b = BakeVerdict.from_state(a.state_dict())
    assert b.document() == a.document()
    doc = a.document()
    assert {r["value"] for r in doc["segments"]["zone"]} == set(ZONES)
    assert doc["segments"]["route"][0]["value"] == "/static"
    row = doc["segments"]["route"][0]
    assert row["canary"]["requests"] > 0 and row["baseline"]["error_rate"] is not None
    rng_a, rng_b = np.random.default_rng(9), np.random.default_rng(9)
    _run(a, rng_a, 10, per_window=300)
    _run(b, rng_b, 10, per_window=300)
    assert b.document() == a.document()


def test_canary_serving_only_a_minor_route_never_promotes_by_default() -> None:
    """Default coverage: the routes carrying 90 % of the baseline's requests must each have
    100 canary requests; a canary on /static only waits, with the reason saying so."""
    rng = np.random.default_rng(4)
    v = BakeVerdict(_spec(min_canary_requests=1000, max_canary_requests=10**9))
    _run(v, rng, 150, per_window=400, canary_routes={"/static": 1.0})
    assert v.status is Status.PENDING
    assert any(r.startswith("coverage:") and "/api/search" in r for r in v.readout().reasons)
    off = BakeVerdict(_spec(min_canary_requests=1000, coverage=False))
    _run(off, np.random.default_rng(4), 400, per_window=1500, canary_routes={"/static": 1.0})
    assert off.status is Status.PROMOTE


def test_coverage_by_mass_names_the_required_values() -> None:
    from monitor.bakes.evidence import Coverage

    cov = Coverage()
    base = {"/static": 400, "/api/search": 300, "/api/cart": 150, "/api/checkout": 150}
    assert [v for v, _ in cov.required(base)] == list(base)
    assert cov.missing({k: 100 for k in base}, base) is None
    assert "/api/cart" in (cov.missing({"/static": 500, "/api/search": 500}, base) or "")
    assert cov.missing({}, {}) is None  # no such field: trivially covered
    legacy = Coverage.from_dict({"segment": "zone", "min_values": 2}, "coverage")
    assert (legacy.mass, legacy.min_requests_each) == (0.0, 1)


def _cold_then_warm(rng: np.random.Generator, v: BakeVerdict, cold_windows: int) -> None:
    for i in range(300):
        t = T0 + 10 * i
        k = int(t // 10)
        slow = 3.0 if i < cold_windows else 1.0
        p = 0.05 if i < cold_windows else 0.01
        c, b = _summary(rng, 200, p, slow), _summary(rng, 200, 0.01)
        v.update(c, b, t + 9, cells={(k, ""): (c, b)}, progress_s=t + 9, source=("r", 0), source_partitions=1)  # fmt: skip
        if v.decided:
            return


def test_canary_warmup_leaves_cold_start_out_of_the_tests() -> None:
    """A cold canary (3x slower, 5x errors for its first 2,000 requests) HALTs without a
    warm-up and PROMOTEs with canary_warmup_requests = 2,000, which the document shows."""
    cold = BakeVerdict(_spec(min_canary_requests=5000))
    _cold_then_warm(np.random.default_rng(5), cold, 10)
    assert cold.status is Status.HALT
    warm = BakeVerdict(_spec(min_canary_requests=5000, canary_warmup_requests=2000))
    _cold_then_warm(np.random.default_rng(5), warm, 10)
    assert warm.status is Status.PROMOTE
    progress = warm.document()["progress"]
    assert progress["warmup_requests"]["canary"] == 2000
    assert progress["tested_canary_requests"] >= 5000


def test_warmup_by_time_and_its_pending_reason() -> None:
    v = BakeVerdict(_spec(canary_warmup_s=60))
    rng = np.random.default_rng(6)
    t = T0
    c, b = _summary(rng, 50, 0.01), _summary(rng, 50, 0.01)
    v.update(c, b, t + 9, cells={(int(t // 10), ""): (c, b)}, progress_s=t + 9, source=("r", 0), source_partitions=1)  # fmt: skip
    v.update(CohortSummary(), CohortSummary(), None, cells={}, progress_s=t + 60, source=("r", 0), source_partitions=1)  # fmt: skip
    assert any(r.startswith("canary warm-up") for r in v.readout().reasons)
    assert v.document()["progress"]["warmup_requests"]["canary"] == 50


def _feed_plain(v: BakeVerdict, rng: np.random.Generator, windows: int, label: str) -> int:
    """Windows whose cells all carry ``label`` (``""``: records without zone or route)."""
    for i in range(windows):
        t = T0 + 10 * i
        c, b = _summary(rng, 200, 0.02), _summary(rng, 200, 0.01)
        cells = {(int(t // 10), label): (c, b)}
        v.update(c, b, t + 9, cells=cells, progress_s=t + 9, source=("r", 0), source_partitions=1)
        if v.decided:
            return i + 1
    return windows


@pytest.mark.parametrize("label", ["", "route=/only", "zone=a|route=/only"])
def test_segments_the_records_do_not_carry_keep_their_budget_in_the_pooled_test(
    label: str,
) -> None:
    """Records without a segment field (or with one value of it) cannot be tested per value,
    so the pooled test keeps the whole HALT budget: the bake decides exactly as one whose
    policy has no segment tests."""
    policy = {"min_canary_requests": 0, "latency": {"enabled": False}}
    for seed in range(3):
        a = BakeVerdict(_spec(**policy))
        b = BakeVerdict(_spec(**policy, segment_tests=[]))
        n_a = _feed_plain(a, np.random.default_rng(seed), 400, label)
        n_b = _feed_plain(b, np.random.default_rng(seed), 400, label)
        assert a.status is Status.HALT and n_a == n_b
        assert a.readout().reasons == b.readout().reasons
        assert a.document()["segments"] == {}
        restored = BakeVerdict.from_state(a.state_dict())
        assert restored.document() == a.document()


def test_segments_the_records_carry_take_their_share() -> None:
    """With zone and route values the per-value tests are built (and take their share of the
    budget), and the choice survives a restore."""
    policy = {"min_canary_requests": 0, "latency": {"enabled": False}}
    for seed in range(3):
        a = BakeVerdict(_spec(**policy))
        _run(a, np.random.default_rng(seed), 300, per_window=600, error_p=0.01,
             canary_p={r: 0.02 for r in ROUTES})  # fmt: skip
        assert a.status is Status.HALT
        assert set(a.document()["segments"]) == {"zone", "route"}
        assert BakeVerdict.from_state(a.state_dict()).document() == a.document()


def test_pooled_halt_note_names_the_top_value_of_every_segment() -> None:
    """The note on a pooled HALT lists, per segment, its most evident value, strongest first:
    a route regression also raises the zones its traffic crosses, so the route must be named
    even when a zone's e-value is the larger one."""
    rng = np.random.default_rng(5)
    v = BakeVerdict(_spec(min_canary_requests=10**9))
    _run(v, rng, 40, per_window=600, canary_p={"/api/cart": 0.2})
    note = v._tests.segments.most_evident("error_rate", at_least=1.0)
    assert note is not None and note.startswith("most evident on ")
    entries = note.removeprefix("most evident on ").split("), ")
    named = [e.split(" ", 1)[0] for e in entries]
    assert set(named) == {"route", "zone"} and max(map(named.count, named)) <= 2
    assert named == sorted(named, key=named.index)  # a segment's entries together
    assert 'route "/api/cart"' in note
    excess = [float(p.rsplit(", ", 1)[1].split()[0]) for p in entries]
    firsts = [x for i, x in enumerate(excess) if i == 0 or named[i] != named[i - 1]]
    assert firsts == sorted(firsts, reverse=True) and excess[0] > 0  # strongest segment first
    for i in range(1, len(excess)):  # within a segment: descending, at least half the top
        if named[i] == named[i - 1]:
            assert excess[i - 1] >= excess[i] >= excess[i - 1] / 2


def test_pooled_error_halt_names_the_route_the_excess_errors_come_from() -> None:
    """A 4× error regression on /api/cart (15 % of traffic): whenever the pooled test HALTs
    first, the note names /api/cart, on every seed — also when a small route's chance errors
    give it the larger e-value (ranked by excess errors, not by e), and in early HALTs where
    another route holds about as much excess (both named); it names at most two routes."""
    named, pooled = 0, 0
    for seed in range(48):
        v = BakeVerdict(_spec(min_canary_requests=0, latency={"enabled": False}))
        _run(v, np.random.default_rng(1000 + seed), 300, per_window=300, error_p=0.005,
             canary_p={"/api/cart": 0.02})  # fmt: skip
        d = v.document()["decision"]
        assert d is not None and d["status"] == "HALT", seed
        if d["segment"] is None:
            pooled += 1
            routes = [e for e in d["evident"] if e["segment"] == "route"]
            named += any(e["value"] == "/api/cart" for e in routes)
            assert 1 <= len(routes) <= 2 and routes[-1]["excess_errors"] > 0, d["evident"]
    assert pooled >= 5 and named == pooled, (named, pooled)


def test_pooled_halt_decision_names_what_its_reason_names_and_the_evidence_it_crossed() -> None:
    """A pooled HALT's frozen decision lists the most evident value of each segment (what the
    reason says, as data for the console), and its evidence is the e-value that crossed the
    threshold: never below `halt_needs`."""
    v = BakeVerdict(_spec())
    canary_p = {"/api/cart": 0.04, "/api/search": 0.02, "/static": 0.02, "/api/checkout": 0.02}
    _run(v, np.random.default_rng(0), 200, per_window=600, canary_p=canary_p)
    d = v.document()["decision"]
    assert d["status"] == "HALT" and d["segment"] is None  # the pooled test decided
    assert {e["segment"] for e in d["evident"]} == {"zone", "route"}
    for e in d["evident"]:
        assert f'{e["segment"]} "{e["value"]}" (ratio {e["estimate"]:.2f}' in d["reason"]
    err = d["metrics"]["error_rate"]
    assert err["e_value_halt_crossed"] >= err["halt_needs"] > err["e_value_halt"]
    assert f"evidence e={err['e_value_halt_crossed']:.3g}" in d["reason"]
