"""Tests of the over-dispersion check: calibrated under the binomial model, finds clumped events."""

from __future__ import annotations

import doctest
import json
import math
import time
from typing import Any

import numpy as np
import orjson
import pytest

from detectors import dispersion
from detectors.dispersion import DispersionCheck
from detectors.errors import ParameterError, StateError

Cells = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def _model_cells(rng: np.random.Generator, cells: int, theta: float, sparse: bool) -> Cells:
    """Cells under the model: Poisson bad events per cohort (so the canary's share given the
    total is exactly Binomial(x, ρ(θ))), per-cell traffic, canary share and baseline rate."""
    if sparse:  # small canaries, rare events: most cells must be pooled
        n_c = np.exp(rng.uniform(math.log(20), math.log(2000), cells)).astype(np.int64)
        n_b = np.exp(rng.uniform(math.log(200), math.log(5000), cells)).astype(np.int64)
        p_b = np.exp(rng.uniform(math.log(0.001), math.log(0.03), cells))
    else:
        total = rng.integers(200, 5000, cells)
        n_c = rng.binomial(total, rng.uniform(0.02, 0.5, cells))
        n_b = total - n_c
        p_b = np.exp(rng.uniform(math.log(0.005), math.log(0.05), cells))
    return rng.poisson(n_c * p_b * math.exp(theta)), n_c, rng.poisson(n_b * p_b), n_b


def _prequential_theta(
    x_c: np.ndarray, n_c: np.ndarray, x_b: np.ndarray, n_b: np.ndarray
) -> np.ndarray:
    """What a caller passes: the Mantel–Haenszel log rate ratio of the cells *before* each cell,
    0.0 while it is undefined."""
    tot = np.maximum(n_c + n_b, 1)
    num, den = np.cumsum(x_c * n_b / tot), np.cumsum(x_b * n_c / tot)
    est = np.log(
        np.where((num > 0) & (den > 0), num, 1.0) / np.where((num > 0) & (den > 0), den, 1.0)
    )
    return np.concatenate([[0.0], est[:-1]])


def _sticky_cells(rng: np.random.Generator, cells: int) -> Cells:
    """A/A traffic with user-level (sticky) assignment: 2,000 users of gamma(0.5) activity, each
    wholly in one cohort (25 % canary), active in a 10 s window w.p. 0.1 (a session), ~500 rps in
    all, each with their own error propensity (Beta(0.5, 50), mean 1 %)."""
    users, session, requests = 2000, 0.1, 5000
    activity = rng.gamma(0.5, 1.0, users)
    activity *= requests / activity.sum() / session
    canary = rng.random(users) < 0.25
    propensity = rng.beta(0.5, 50.0, users)
    active = rng.random((cells, users)) < session
    reqs = rng.poisson(np.where(active, activity, 0.0))
    errs = rng.binomial(reqs, propensity)
    return (
        errs[:, canary].sum(1),
        reqs[:, canary].sum(1),
        errs[:, ~canary].sum(1),
        reqs[:, ~canary].sum(1),
    )


def _beta_binomial_cells(rng: np.random.Generator, cells: int, factor: float, x: int = 20) -> Cells:
    """Cells with ``x`` events each whose canary share is beta-binomial around ρ(0) with variance
    ``factor`` times the binomial's (intra-class correlation ``(factor - 1) / (x - 1)``)."""
    n_c = rng.integers(100, 1000, cells)
    n_b = rng.integers(100, 1000, cells)
    rho = n_c / (n_c + n_b)
    s = (x - 1) / (factor - 1) - 1  # beta's a + b
    x_c = rng.binomial(x, rng.beta(rho * s, (1 - rho) * s))
    return x_c, n_c, x - x_c, n_b


def _feed_and_watch(check: DispersionCheck, cells: Cells, theta: np.ndarray) -> bool:
    """Feed cells one at a time as a monitor does; True if ``violated`` was ever read True."""
    seen = False
    for xc, nc, xb, nb, th in zip(*(v.tolist() for v in (*cells, theta)), strict=True):
        check.update(xc, nc, xb, nb, th)
        seen = seen or check.violated
    return seen


# -- calibration under the model -----------------------------------------------------------------
@pytest.mark.parametrize("theta", [0.0, math.log(2.0)])
def test_false_alarms_rare_under_the_model_read_after_every_cell(theta: float) -> None:
    """500 runs of 300 cells (half sparse, pooled), true θ passed, checked after every cell:
    ever suspect <= 1 %, and the ratio at the end averages 1 within 0.1."""
    rng = np.random.default_rng(20260311 + int(theta * 100))
    runs, alarms, ratios = 500, 0, []
    for run in range(runs):
        cells = _model_cells(rng, 300, theta, sparse=bool(run % 2))
        check = DispersionCheck()
        alarms += _feed_and_watch(check, cells, np.full(300, theta))
        assert check.dispersion is not None
        ratios.append(check.dispersion)
    assert alarms / runs <= 0.01, alarms
    assert abs(float(np.mean(ratios)) - 1.0) < 0.1, np.mean(ratios)


def test_false_alarms_rare_with_the_prequential_estimate() -> None:
    """As the monitor uses it: θ = log 2 unknown, the estimate from earlier cells plugged in."""
    rng = np.random.default_rng(7)
    runs, alarms, ratios = 500, 0, []
    for run in range(runs):
        cells = _model_cells(rng, 300, math.log(2.0), sparse=bool(run % 2))
        check = DispersionCheck()
        alarms += _feed_and_watch(check, cells, _prequential_theta(*cells))
        assert check.dispersion is not None
        ratios.append(check.dispersion)
    assert alarms / runs <= 0.01, alarms
    assert abs(float(np.mean(ratios)) - 1.0) < 0.1, np.mean(ratios)


def test_z_is_standard_normal_under_the_model() -> None:
    """The Satterthwaite + Wilson–Hilferty z has mean ~0 and sd ~1, sparse cells included."""
    rng = np.random.default_rng(11)
    zs = []
    for run in range(400):
        check = DispersionCheck()
        check.update(*_model_cells(rng, 300, 0.3, sparse=bool(run % 2)), 0.3)
        zs.append(check.assess().z)
    assert abs(float(np.mean(zs))) < 0.2 and 0.85 < float(np.std(zs)) < 1.15, (
        np.mean(zs),
        np.std(zs),
    )


# -- power ---------------------------------------------------------------------------------------
def test_sticky_users_are_detected() -> None:
    """User-level assignment with heavy users: suspect in >= 90 % of runs by 300 cells."""
    rng = np.random.default_rng(424242)
    runs, hits = 100, 0
    for _ in range(runs):
        cells = _sticky_cells(rng, 300)
        check = DispersionCheck()
        check.update(*cells, _prequential_theta(*cells))
        a = check.assess()
        hits += a.suspect
    assert hits / runs >= 0.9, hits
    assert a.suspect is (a.z is not None and a.z > 4 and a.ratio is not None and a.ratio > 1.25)


@pytest.mark.parametrize("factor", [2.0, 3.0])
def test_beta_binomial_ratio_estimates_the_inflation_factor(factor: float) -> None:
    """A known variance inflation (pooled cells included) is read back within 20 %."""
    rng = np.random.default_rng(int(factor * 1000))
    ratios = []
    for _ in range(100):
        check = DispersionCheck()
        check.update(*_beta_binomial_cells(rng, 300, factor), 0.0)
        assert check.df < check.cells  # some cells were pooled
        assert check.violated
        ratios.append(check.dispersion)
    r = np.asarray(ratios, dtype=float)
    assert abs(float(np.median(r)) / factor - 1.0) < 0.05, np.median(r)
    assert np.mean(np.abs(r / factor - 1.0) < 0.2) >= 0.95, r


def test_a_single_huge_cell_moves_the_ratio_by_at_most_the_cap() -> None:
    """One window of a million events, all in the canary, adds at most term_cap / df."""
    rng = np.random.default_rng(5)
    cells = _model_cells(rng, 300, 0.0, sparse=False)
    check = DispersionCheck()
    check.update(*cells, 0.0)
    before, df = check.dispersion, check.df
    assert before is not None
    check.update(1_000_000, 10_000_000, 0, 10_000_000, 0.0)
    after = check.dispersion
    assert after is not None and after - before <= check.term_cap / (df + 1) + 1e-12
    assert not check.assess().suspect


# -- small data, skipped cells, messages ---------------------------------------------------------
def test_few_cells_give_no_reading() -> None:
    rng = np.random.default_rng(1)
    check = DispersionCheck()
    check.update(*_model_cells(rng, 20, 0.0, sparse=False), 0.0)
    a = check.assess()
    assert check.dispersion is None and a.ratio is None and a.z is None and a.p_value is None
    assert not a.suspect and not check.violated
    assert "too little data" in a.message
    # Plenty of cells but too few events is no reading either.
    sparse = DispersionCheck(warmup_events=0, min_expected=0.1)
    for _ in range(45):
        sparse.update(1, 100, 1, 100, 0.0)
    assert sparse.df >= 30 and sparse.events < 100 and sparse.dispersion is None


def test_cells_without_events_or_a_cohort_contribute_nothing() -> None:
    check = DispersionCheck(warmup_events=0)
    check.update(0, 1000, 0, 1000, 0.0)
    check.update(5, 5, 0, 0, 0.0)
    check.update(0, 0, 7, 100, 0.0)
    x_c, n_c, x_b, n_b = [0, 0, 3], [10, 0, 10], [0, 4, 0], [10, 9, 0]
    check.update(np.array(x_c), np.array(n_c), np.array(x_b), np.array(n_b), 0.0)
    assert (check.cells, check.events, check.df) == (0, 0, 0)
    assert check.state_dict() == DispersionCheck(warmup_events=0).state_dict()


def test_warmup_events_are_not_scored() -> None:
    check = DispersionCheck(warmup_events=25)
    for _ in range(3):
        check.update(5, 100, 5, 100, 0.0)  # 10 events each: three cells reach 30 >= 25
    assert check.cells == 0
    check.update(5, 100, 5, 100, 0.0)
    assert (check.cells, check.events) == (1, 10)


def test_suspect_message_names_the_ratio_and_the_consequence() -> None:
    check = DispersionCheck()
    for w in range(420):
        check.update(4 if w % 2 else 16, 1000, 10, 1000, 0.0)
    a = check.assess()
    assert a.suspect and a.p_value is not None and a.p_value < 1e-10
    assert a.message.startswith(f"events look over-dispersed (ratio {a.ratio:.1f} over {a.cells}")
    assert "anti-conservative" in a.message
    calm = DispersionCheck()
    calm.update(*_model_cells(np.random.default_rng(3), 300, 0.0, sparse=False), 0.0)
    assert not calm.assess().suspect and "consistent" in calm.assess().message


# -- paths, state, validation --------------------------------------------------------------------
def _assert_states_close(a: dict[str, Any], b: dict[str, Any]) -> None:
    assert a["counts"] == b["counts"] and a["params"] == b["params"]
    assert a["pool"][:2] == b["pool"][:2]
    np.testing.assert_allclose(
        [a["x2"], a["var"], *a["pool"][2:]],
        [b["x2"], b["var"], *b["pool"][2:]],
        rtol=1e-9,
        atol=1e-9,
    )


def test_scalar_and_array_updates_agree() -> None:
    rng = np.random.default_rng(8)
    cells = _model_cells(rng, 400, 0.5, sparse=True)
    theta = _prequential_theta(*cells)
    one = DispersionCheck()
    for row in zip(*(v.tolist() for v in (*cells, theta)), strict=True):
        one.update(*row)
    whole, chunked = DispersionCheck(), DispersionCheck()
    whole.update(*cells, theta)
    for start in range(0, 400, 37):
        sl = slice(start, start + 37)
        chunked.update(*(v[sl] for v in cells), theta[sl])
    _assert_states_close(one.state_dict(), whole.state_dict())
    _assert_states_close(one.state_dict(), chunked.state_dict())
    dense = _model_cells(rng, 50, 0.0, sparse=False)  # the no-pooling fast path
    fast, slow = DispersionCheck(warmup_events=0), DispersionCheck(warmup_events=0)
    fast.update(*dense, 0.0)
    for row in zip(*(v.tolist() for v in dense), strict=True):
        slow.update(*row, 0.0)
    _assert_states_close(fast.state_dict(), slow.state_dict())


def test_state_round_trips_exactly_mid_pool() -> None:
    rng = np.random.default_rng(9)
    check = DispersionCheck(min_groups=10, ratio_threshold=1.4)
    check.update(*_model_cells(rng, 200, 0.2, sparse=True), 0.2)
    check.update(1, 50, 0, 3000, 0.2)  # leaves a partly filled pool
    state = check.state_dict()
    assert state["pool"][1] > 0 and state["v"] == dispersion.STATE_VERSION
    for doc in (json.loads(json.dumps(state)), orjson.loads(orjson.dumps(state))):
        back = DispersionCheck.from_state(doc)
        assert back.state_dict() == state
        assert back.assess() == check.assess()
    back = DispersionCheck.from_state(json.loads(json.dumps(state)))
    more = _model_cells(rng, 50, 0.2, sparse=True)
    back.update(*more, 0.2)
    check.update(*more, 0.2)
    assert back.state_dict() == check.state_dict()


@pytest.mark.parametrize(
    "mutate",
    [
        lambda s: s.update(v=99),
        lambda s: s.pop("x2"),
        lambda s: s.update(counts=[1, 2, 3]),
        lambda s: s.update(counts=[1, 2, 3, 0, -1]),
        lambda s: s.update(counts=[1, 2, 5, 0, 0]),  # more groups than cells
        lambda s: s.update(x2="1.0"),
        lambda s: s.update(var=float("nan")),
        lambda s: s.update(pool=[0, 0, 0.0]),
        lambda s: s.update(pool=[3, 2, 0.0, 0.0, 0.0, 0.0]),
        lambda s: s["params"].update(min_groups=1),
        lambda s: s["params"].update(unknown=1),
        lambda s: s.update(params=None),
    ],
)
def test_bad_state_raises_state_error(mutate: Any) -> None:
    check = DispersionCheck(warmup_events=0)
    check.update(
        np.array([3, 4]), np.array([100, 100]), np.array([5, 5]), np.array([100, 100]), 0.0
    )
    state = json.loads(json.dumps(check.state_dict()))
    mutate(state)
    with pytest.raises(StateError):
        DispersionCheck.from_state(state)


def test_bad_arguments_raise_parameter_error() -> None:
    check = DispersionCheck()
    for args in [(5, 4, 0, 10), (-1, 4, 0, 10), (0, 4, 11, 10)]:
        with pytest.raises(ParameterError):
            check.update(*args, 0.0)
    with pytest.raises(ParameterError):
        check.update(1, 4, 0, 10, math.inf)
    with pytest.raises(ParameterError):
        check.update(np.array([1, 2]), np.array([4, 4]), np.array([0]), np.array([4]), 0.0)
    with pytest.raises(ParameterError):
        check.update([1, 2], [4, 4], [0, 0], [4, 4], [0.0, 0.0, 0.0])
    with pytest.raises(ParameterError):
        check.update([1, 2], [4, 4], [0, 5], [4, 4], 0.0)
    for bad in [
        {"min_groups": 1},
        {"min_events": -1},
        {"term_cap": math.inf},
        {"z_threshold": math.nan},
    ]:
        with pytest.raises(ParameterError):
            DispersionCheck(**bad)
    assert check.cells == 0


def test_extreme_theta_is_clamped_not_an_overflow() -> None:
    check = DispersionCheck(warmup_events=0)
    check.update(3, 100, 4, 100, 1e6)
    check.update([3], [100], [4], [100], -1e6)
    assert check.cells == 2 and math.isfinite(check.state_dict()["var"])


def test_scalar_update_costs_microseconds() -> None:
    check = DispersionCheck()
    n = 20_000
    start = time.perf_counter()
    for i in range(n):
        check.update(i % 7, 1000, 5, 1200, 0.1)
    per_update = (time.perf_counter() - start) / n
    assert per_update < 20e-6, per_update  # ~1 µs measured; generous for loaded machines


def test_module_doctest() -> None:
    assert doctest.testmod(dispersion).failed == 0
