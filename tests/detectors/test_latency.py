"""Tests of the latency gate (thresholds frozen from the baseline, exceedance rate ratios)."""

from __future__ import annotations

import math

import numpy as np
import orjson
import pytest

from detectors.base import Finding
from detectors.latency import LatencyTest
from detectors.summary import CohortSummary, bucket_upper_edge_s

ALPHA = 0.01


def _inc(rng: np.random.Generator, n: int, mult: float = 1.0) -> CohortSummary:
    s = CohortSummary()
    s.update(rng.lognormal(math.log(0.05), 0.5, n) * mult, np.zeros(n, dtype=bool))
    return s


def _run(rng: np.random.Generator, mult: float, steps: int, per_arm: int = 100) -> int | None:
    t = LatencyTest(ALPHA)
    for i in range(steps):
        t.update(_inc(rng, per_arm, mult), _inc(rng, per_arm))
        if t.assess().finding is Finding.REGRESSION:
            return (i + 1) * per_arm
    return None


def test_aa_false_halt_rate_at_most_alpha() -> None:
    """Over 300 seeded A/A bakes of 30k requests/arm, the latency family halts <= alpha."""
    rng = np.random.default_rng(31)
    runs = 300
    halts = sum(_run(rng, 1.0, 100, 300) is not None for _ in range(runs))
    assert halts / runs <= ALPHA + 3 * math.sqrt(ALPHA * (1 - ALPHA) / runs), halts / runs


def test_ten_percent_slower_detected_within_target() -> None:
    """Latency x1.10 (lognormal sigma 0.5): median canary requests to HALT <= 3,000."""
    rng = np.random.default_rng(32)
    needed = [_run(rng, 1.10, 80) for _ in range(100)]
    n = [math.inf if x is None else x for x in needed]
    assert np.median(n) <= 3000, np.median(n)


def test_thresholds_freeze_from_baseline_quantiles_after_warmup() -> None:
    """Each quantile's threshold freezes at the baseline's quantile bucket once warm."""
    rng = np.random.default_rng(33)
    t = LatencyTest(ALPHA, quantiles=(0.5, 0.99), min_warmup_requests=200, warmup_exceedances=20)
    t.update(_inc(rng, 100), _inc(rng, 100))
    th = t.assess().detail["thresholds"]
    assert [x["threshold_s"] for x in th] == [None, None]
    for _ in range(20):
        t.update(_inc(rng, 100), _inc(rng, 100))
    th = t.assess().detail["thresholds"]
    assert th[0]["threshold_s"] == pytest.approx(0.05, rel=0.05)  # p50 of lognormal(log .05)
    assert th[1]["threshold_s"] == pytest.approx(0.05 * math.exp(0.5 * 2.326), rel=0.1)


def test_slo_threshold_is_tested_from_the_start() -> None:
    """An SLO threshold needs no warm-up and snaps to a bucket edge at or above it."""
    t = LatencyTest(ALPHA, quantiles=(), slo_thresholds_s=(0.3,))
    detail = t.assess().detail["thresholds"][0]
    assert 0.3 <= detail["threshold_s"] <= 0.3 * 1.021
    rng = np.random.default_rng(34)
    c = CohortSummary()
    c.update(np.full(500, 0.5), np.zeros(500, bool))
    for _ in range(10):
        t.update(c, _inc(rng, 500))
    assert t.assess().finding is Finding.REGRESSION


def test_promotes_when_every_threshold_is_non_inferior() -> None:
    """An A/A bake with plenty of data ends NON_INFERIOR at every threshold."""
    rng = np.random.default_rng(35)
    t = LatencyTest(ALPHA, abs_tol=0.005)
    for _ in range(60):
        t.update(_inc(rng, 2000), _inc(rng, 2000))
    a = t.assess()
    assert a.finding is Finding.NON_INFERIOR, a.reason
    assert all(th["finding"] == "NON_INFERIOR" for th in a.detail["thresholds"])


def test_snapshot_restore_gives_identical_decisions() -> None:
    """A restored latency test makes the same decisions on the same future increments."""
    rng = np.random.default_rng(36)
    t = LatencyTest(ALPHA)
    for _ in range(15):
        t.update(_inc(rng, 100), _inc(rng, 100))
    r = LatencyTest.from_state(orjson.loads(orjson.dumps(t.state_dict())))
    for _ in range(40):
        c, b = _inc(rng, 100, 1.08), _inc(rng, 100)
        t.update(c, b)
        r.update(c, b)
        assert t.assess() == r.assess()


def test_quantile_report_matches_cohorts() -> None:
    """The reported p99s are the cohorts' histogram quantiles."""
    rng = np.random.default_rng(37)
    t = LatencyTest(ALPHA)
    c, b = _inc(rng, 5000, 2.0), _inc(rng, 5000)
    t.update(c, b)
    q = t.assess().detail["quantiles"]["p99"]
    assert q["canary"] == c.quantile(0.99) and q["baseline"] == b.quantile(0.99)
    assert q["canary"] / q["baseline"] == pytest.approx(2.0, rel=0.15)
    assert bucket_upper_edge_s(0) > 0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"quantiles": (1.5,)}, "quantiles must be in"),
        ({"quantiles": (), "slo_thresholds_s": ()}, "must not both be empty"),
        ({"slo_thresholds_s": (-1.0,)}, "slo_thresholds_s must be in"),
        ({"warmup_exceedances": 0}, "warmup_exceedances must be >= 1"),
    ],
)
def test_bad_parameters_fail_fast(kwargs: dict[str, object], match: str) -> None:
    """Invalid arguments raise ValueError naming the parameter."""
    with pytest.raises(ValueError, match=match):
        LatencyTest(ALPHA, **kwargs)  # type: ignore[arg-type]
