"""Tests of the anytime-valid rate-ratio test: its guarantees, not just that it runs."""

from __future__ import annotations

import math

import numpy as np
import pytest

from detectors.base import Finding
from detectors.rate_ratio import RateRatioTest

ALPHA = 0.01


def _binomial_slack(p: float, n: int) -> float:
    """Three standard errors of a rate estimated from n runs."""
    return 3.0 * math.sqrt(p * (1 - p) / n)


def _first(mask: np.ndarray) -> int | None:
    hits = np.flatnonzero(mask)
    return int(hits[0]) if hits.size else None


def _stream(
    rng: np.random.Generator, steps: int, n_c: np.ndarray, n_b: np.ndarray, p_c: float, p_b: float
) -> tuple[np.ndarray, ...]:
    return rng.binomial(n_c, p_c), n_c, rng.binomial(n_b, p_b), n_b


def test_aa_false_halt_rate_at_most_alpha_with_continuous_monitoring() -> None:
    """Over 1,000 seeded A/A bakes checked after every increment, false HALT <= alpha."""
    rng = np.random.default_rng(20261128)
    runs, steps, per_arm = 1000, 400, 250
    halts = 0
    n = np.full(steps, per_arm)
    for _ in range(runs):
        t = RateRatioTest(ALPHA)
        trace = t.update_many(*_stream(rng, steps, n, n, 0.01, 0.01))
        halts += bool(np.any(trace.log_e_halt >= math.log(1 / ALPHA)))
        assert t.halted == bool(np.any(trace.log_e_halt >= math.log(1 / ALPHA)))
    rate = halts / runs
    assert rate <= ALPHA + _binomial_slack(ALPHA, runs), rate


def test_false_halt_bounded_with_changing_traffic_shares() -> None:
    """With a canary share that moves between 2 % and 50 %, A/A false HALT stays <= alpha."""
    rng = np.random.default_rng(99)
    runs, steps = 1000, 300
    halts = 0
    for _ in range(runs):
        total = rng.integers(200, 2000, steps)
        share = rng.uniform(0.02, 0.5, steps)
        n_c = rng.binomial(total, share)
        n_b = total - n_c
        t = RateRatioTest(ALPHA)
        trace = t.update_many(*_stream(rng, steps, n_c, n_b, 0.02, 0.02))
        halts += bool(np.any(trace.log_e_halt >= math.log(1 / ALPHA)))
    assert halts / runs <= ALPHA + _binomial_slack(ALPHA, runs), halts / runs


def test_false_halt_bounded_at_the_halt_margin() -> None:
    """A canary exactly at ratio 1 + halt_margin is halted with probability <= alpha."""
    rng = np.random.default_rng(5)
    runs, steps = 1000, 300
    n = np.full(steps, 300)
    halts = 0
    for _ in range(runs):
        t = RateRatioTest(ALPHA, halt_margin=0.25)
        trace = t.update_many(*_stream(rng, steps, n, n, 0.0125, 0.01))
        halts += bool(np.any(trace.log_e_halt >= math.log(1 / ALPHA)))
    assert halts / runs <= ALPHA + _binomial_slack(ALPHA, runs), halts / runs


def test_false_promote_bounded_at_the_tolerance() -> None:
    """A canary exactly at ratio 1 + tol is found NON_INFERIOR with probability <= alpha."""
    rng = np.random.default_rng(17)
    runs, steps = 1000, 400
    n = np.full(steps, 500)
    promotes = 0
    for _ in range(runs):
        t = RateRatioTest(ALPHA, tol=0.2)
        trace = t.update_many(*_stream(rng, steps, n, n, 0.012, 0.01))
        promotes += bool(np.any(trace.log_e_promote >= math.log(1 / ALPHA)))
    assert promotes / runs <= ALPHA + _binomial_slack(ALPHA, runs), promotes / runs


def test_confidence_sequence_covers_true_ratio_uniformly() -> None:
    """The true ratio stays inside the reported bounds at every look in >= 1 - alpha of runs."""
    rng = np.random.default_rng(8)
    runs, steps = 300, 60
    misses = 0
    for _ in range(runs):
        t = RateRatioTest(ALPHA)
        missed = False
        for _ in range(steps):
            xc, xb = rng.binomial(500, 0.015), rng.binomial(500, 0.01)
            t.update(int(xc), 500, int(xb), 500)
            a = t.assess()
            if not a.lower <= 1.5 <= a.upper:
                missed = True
        misses += missed
    assert misses / runs <= ALPHA + _binomial_slack(ALPHA, runs), misses / runs


def test_double_error_rate_detected_within_fixed_horizon_sample_size() -> None:
    """2x errors at 1 % base: median canary requests to HALT <= 3,450 (z-test 80 % power)."""
    rng = np.random.default_rng(123)
    runs, steps, per_arm = 400, 150, 100
    n = np.full(steps, per_arm)
    needed = []
    for _ in range(runs):
        t = RateRatioTest(ALPHA)
        trace = t.update_many(*_stream(rng, steps, n, n, 0.02, 0.01))
        i = _first(trace.log_e_halt >= math.log(1 / ALPHA))
        needed.append(math.inf if i is None else (i + 1) * per_arm)
    assert np.median(needed) <= 3450, np.median(needed)
    assert np.mean(np.isfinite(needed)) >= 0.95


def test_exact_detection_point_on_a_seeded_stream() -> None:
    """Pins the increment at which a seeded 3x regression first halts (catches silent changes)."""
    rng = np.random.default_rng(42)
    t = RateRatioTest(ALPHA)
    halted_at = None
    for i in range(200):
        t.update(int(rng.binomial(100, 0.03)), 100, int(rng.binomial(100, 0.01)), 100)
        if t.halted:
            halted_at = i
            break
    assert halted_at == 11


def test_update_many_matches_sequential_updates() -> None:
    """The vectorised fold equals one update per increment, state and gate values alike."""
    rng = np.random.default_rng(1)
    xc, xb = rng.binomial(300, 0.02, 50), rng.binomial(700, 0.02, 50)
    a, b = RateRatioTest(ALPHA), RateRatioTest(ALPHA)
    trace = a.update_many(xc, np.full(50, 300), xb, np.full(50, 700))
    for i in range(50):
        b.update(int(xc[i]), 300, int(xb[i]), 700)
        assert np.isclose(trace.log_e_halt[i], b.log_e_values()[0], atol=1e-9)
        assert np.isclose(trace.log_e_promote[i], b.log_e_values()[1], atol=1e-9)
    np.testing.assert_allclose(a.state_dict()["loglik"], b.state_dict()["loglik"], atol=1e-9)


def test_snapshot_restore_gives_identical_decisions() -> None:
    """A test restored from its state makes the same decisions on the same future data."""
    import orjson

    rng = np.random.default_rng(6)
    t = RateRatioTest(ALPHA, abs_tol=0.002)
    for _ in range(20):
        t.update(int(rng.binomial(200, 0.012)), 200, int(rng.binomial(200, 0.01)), 200)
    restored = RateRatioTest.from_state(orjson.loads(orjson.dumps(t.state_dict())))
    for _ in range(200):
        xc, xb = int(rng.binomial(200, 0.018)), int(rng.binomial(200, 0.01))
        t.update(xc, 200, xb, 200)
        restored.update(xc, 200, xb, 200)
        assert t.assess() == restored.assess()


def test_rare_events_promote_through_absolute_tolerance() -> None:
    """With no errors in either cohort the ratio never tightens, but abs_tol promotes."""
    ratio_only = RateRatioTest(ALPHA)
    with_abs = RateRatioTest(ALPHA, abs_tol=0.001)
    for _ in range(100):
        ratio_only.update(0, 1000, 0, 1000)
        with_abs.update(0, 1000, 0, 1000)
    assert ratio_only.assess().finding is Finding.UNDECIDED
    a = with_abs.assess()
    assert a.finding is Finding.NON_INFERIOR
    assert a.promote_path == "absolute"


def test_uninformative_increments_change_nothing() -> None:
    """Increments with no requests in one cohort or no events add no evidence."""
    t = RateRatioTest(ALPHA)
    before = t.state_dict()["loglik"]
    t.update(0, 0, 5, 100)
    t.update(0, 100, 0, 100)
    assert t.state_dict()["loglik"] == before
    assert t.assess().estimate is None


def test_estimate_and_bounds_bracket_the_observed_ratio() -> None:
    """With constant shares the estimate is the observed rate ratio and inside the bounds."""
    t = RateRatioTest(ALPHA)
    for _ in range(100):
        t.update(30, 1000, 20, 1000)
    a = t.assess()
    assert a.estimate == pytest.approx(1.5, rel=1e-3)
    assert a.lower < 1.5 < a.upper


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"alpha": 1.5}, "alpha must be in \\(0, 1\\), got 1.5"),
        ({"alpha": 0.01, "alpha_promote": 0.0}, "alpha_promote must be in"),
        ({"alpha": 0.01, "tol": -0.1}, "tol must be in"),
        ({"alpha": 0.01, "abs_tol": 2.0}, "abs_tol must be in"),
        ({"alpha": 0.01, "halt_prior_scale": 0.0}, "halt_prior_scale must be > 0"),
    ],
)
def test_bad_parameters_fail_fast_with_name_and_bound(kwargs: dict[str, float], match: str) -> None:
    """Invalid constructor arguments raise ValueError naming the parameter and its bound."""
    with pytest.raises(ValueError, match=match):
        RateRatioTest(**kwargs)


def test_negative_or_inconsistent_counts_are_rejected() -> None:
    """Events above requests or negative counts are a ValueError, not silent garbage."""
    t = RateRatioTest(ALPHA)
    with pytest.raises(ValueError, match="events <= requests"):
        t.update(5, 3, 0, 10)


def _diurnal_regression(rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """Cells of a bake from the daily peak to the trough: load and the baseline's error rate
    (3 % → 0.2 %) fall while the canary's share steps 2 % → 50 %; the canary is 1.5x worse in
    every cell, so its excess is >= 0.1 pp everywhere, yet its cumulative rate is the lower."""
    w = np.arange(96)
    total = np.round(4000 * (1.0 + 0.6 * np.cos(np.pi * w / 96))).astype(np.int64)
    p_b = 0.002 + 0.028 * (0.5 + 0.5 * np.cos(np.pi * w / 96))
    n_c = np.round(total * np.array([0.02, 0.05, 0.1, 0.25, 0.5])[w * 5 // 96]).astype(np.int64)
    n_b = total - n_c
    return rng.binomial(n_c, 1.5 * p_b), n_c, rng.binomial(n_b, p_b), n_b


def test_absolute_path_is_matched_per_cell_under_drifting_shares() -> None:
    """The diurnal 1.5x regression is never promoted through abs_tol (v1's cumulative bounds
    promoted it), checked after every cell; update and update_many agree on the evidence."""
    rng = np.random.default_rng(31)
    for _ in range(5):
        xc, nc, xb, nb = _diurnal_regression(rng)
        t, many = RateRatioTest(ALPHA, abs_tol=0.001), RateRatioTest(ALPHA, abs_tol=0.001)
        many.update_many(xc, nc, xb, nb)
        for i in range(xc.size):
            t.update(int(xc[i]), int(nc[i]), int(xb[i]), int(nb[i]))
            assert t.assess().promote_path != "absolute"
        assert t.state_dict()["excess"] == many.state_dict()["excess"]
        assert xc.sum() / nc.sum() < xb.sum() / nb.sum()  # cumulatively the canary looks better


def test_v1_state_loads_with_an_empty_absolute_path() -> None:
    """A v1 state (before the matched path) loads: ratio evidence and counts carry over, the
    absolute path starts empty at the restore; a v2 state saves it."""
    t = RateRatioTest(ALPHA, abs_tol=0.001)
    for _ in range(100):
        t.update(0, 1000, 0, 1000)
    state = t.state_dict()
    assert state["v"] == 2 and state["excess"]["n"] == 100_000
    v1 = {k: v for k, v in state.items() if k != "excess"} | {"v": 1}
    r = RateRatioTest.from_state(v1)
    assert r.state_dict()["loglik"] == state["loglik"]
    assert r.state_dict()["counts"] == state["counts"]
    assert r.state_dict()["excess"] == RateRatioTest(ALPHA, abs_tol=0.001).state_dict()["excess"]
    assert t.assess().promote_path == "absolute" and r.assess().promote_path is None
    assert RateRatioTest.from_state(state).state_dict() == state


def test_bad_absolute_path_states_raise_state_error() -> None:
    """A v2 state with abs_tol must carry the matched-excess state; unknown versions fail. The
    entry is ignored without abs_tol (as when a restore swaps in other parameters)."""
    from detectors.errors import StateError

    state = RateRatioTest(ALPHA, abs_tol=0.001).state_dict()
    with pytest.raises(StateError, match="matched-excess state: expected an object"):
        RateRatioTest.from_state({**state, "excess": None})
    with pytest.raises(StateError, match="counts must be integers"):
        RateRatioTest.from_state({**state, "excess": {**state["excess"], "n": -1}})
    with pytest.raises(StateError, match="unsupported rate-ratio state version 3"):
        RateRatioTest.from_state({**state, "v": 3})
    plain = {**state, "params": RateRatioTest(ALPHA).params()}
    assert RateRatioTest.from_state(plain).state_dict()["excess"] is None


def test_halt_reports_the_e_value_it_crossed_even_when_the_batch_ends_lower() -> None:
    """Folded as one sequence (a window's strata), the gate fires at the first increment over
    1/α; the e-value at the sequence's end can be lower again, and the assessment keeps the one
    that crossed (a decision must never read "evidence 136, HALT needs 208")."""
    t = RateRatioTest(alpha=0.01)
    bad = [(6, 100, 1, 100)] * 12
    good = [(0, 100, 3, 100)] * 12
    xc, nc, xb, nb = zip(*(bad + good), strict=True)
    trace = t.update_many(xc, nc, xb, nb)
    a = t.assess()
    first = next(i for i, v in enumerate(trace.log_e_halt) if v >= math.log(100))
    assert a.finding is Finding.REGRESSION
    assert a.e_halt < 100 <= a.e_halt_crossed  # type: ignore[operator]
    assert a.e_halt_crossed == pytest.approx(math.exp(trace.log_e_halt[first]))
    again = RateRatioTest.from_state(t.state_dict()).assess()
    assert again.e_halt_crossed == pytest.approx(a.e_halt_crossed)
    assert RateRatioTest(alpha=0.01).assess().e_halt_crossed is None
