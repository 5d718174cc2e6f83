"""Tests of the advisory drift monitor."""

from __future__ import annotations

import doctest

import numpy as np
import orjson
import pytest
from river import drift

from detectors import drift as drift_module
from detectors.drift import DriftEvent, DriftMonitor
from detectors.errors import ParameterError, StateError
from detectors.summary import CohortSummary


def _inc(rng: np.random.Generator, p: float, lat_mult: float = 1.0, n: int = 1000) -> CohortSummary:
    s = CohortSummary()
    s.update(rng.lognormal(-3, 0.5, n) * lat_mult, rng.random(n) < p)
    return s


def test_mid_bake_error_increase_is_flagged_soon_after_it_starts() -> None:
    """Errors tripling at increment 100 raise an error_z drift event within 20 increments."""
    rng = np.random.default_rng(1)
    m = DriftMonitor()
    events = []
    for i in range(200):
        events += m.update(_inc(rng, 0.01 if i < 100 else 0.03), _inc(rng, 0.01))
    first = [e.increment for e in events if e.signal == "error_z"]
    assert first and 100 < first[0] <= 120, first


def test_latency_drift_is_flagged() -> None:
    """A canary whose p90 grows 30 % mid-bake raises a latency drift event."""
    rng = np.random.default_rng(2)
    m = DriftMonitor()
    events = []
    for i in range(200):
        events += m.update(_inc(rng, 0.01, 1.0 if i < 100 else 1.3), _inc(rng, 0.01))
    assert any(e.signal == "latency_p90_log_ratio" and e.increment > 100 for e in events)


def test_small_increments_are_ignored() -> None:
    """Increments below min_requests feed no signal."""
    rng = np.random.default_rng(3)
    m = DriftMonitor(min_requests=500)
    for _ in range(300):
        assert m.update(_inc(rng, 0.5, n=100), _inc(rng, 0.0, n=100)) == []


def test_snapshot_restore_gives_identical_detections() -> None:
    """A restored monitor raises exactly the same events on the same data."""
    rng = np.random.default_rng(4)
    m = DriftMonitor()
    for _ in range(60):
        m.update(_inc(rng, 0.01), _inc(rng, 0.01))
    r = DriftMonitor.from_state(orjson.loads(orjson.dumps(m.state_dict())))
    for i in range(150):
        c, b = _inc(rng, 0.01 if i < 50 else 0.03), _inc(rng, 0.01)
        assert m.update(c, b) == r.update(c, b)


class _RiverDriftMonitor:
    """The pre-v2 DriftMonitor, on river's PageHinkley: the reference the new one must equal."""

    def __init__(self) -> None:
        self.dets = {
            s: drift.PageHinkley(min_instances=30, delta=d, threshold=t, mode="up")
            for s, (d, t) in {"error_z": (0.25, 15.0), "latency_p90_log_ratio": (0.02, 1.0)}.items()
        }
        self.increments = 0

    def update(self, c: CohortSummary, b: CohortSummary) -> list[DriftEvent]:
        self.increments += 1
        if c.requests < 200 or b.requests < 200:
            return []
        events = []
        for signal, value in DriftMonitor._signals(c, b).items():
            self.dets[signal].update(value)  # type: ignore[no-untyped-call]  # river is untyped
            if self.dets[signal].drift_detected:
                events.append(DriftEvent(signal, self.increments, value))
        return events


@pytest.mark.parametrize(
    ("seed", "error_after", "latency_after"), [(5, 0.01, 1.0), (6, 0.03, 1.0), (7, 0.01, 1.3)]
)
def test_events_equal_the_river_based_monitor(
    seed: int, error_after: float, latency_after: float
) -> None:
    """On seeded bakes (A/A, error step, latency step) the events equal river's, one for one."""
    rng = np.random.default_rng(seed)
    mine, ref = DriftMonitor(), _RiverDriftMonitor()
    mine_events, ref_events = [], []
    for i in range(600):
        late = i >= 300
        c = _inc(rng, error_after if late else 0.01, latency_after if late else 1.0)
        b = _inc(rng, 0.01)
        mine_events += mine.update(c, b)
        ref_events += ref.update(c, b)
    assert mine_events == ref_events
    if (error_after, latency_after) != (0.01, 1.0):
        assert mine_events


def test_version_1_state_restores_to_identical_detections() -> None:
    """A v1 snapshot (river's field names) written before the switch restores and continues."""
    rng = np.random.default_rng(8)
    m = DriftMonitor()
    for _ in range(60):
        m.update(_inc(rng, 0.01), _inc(rng, 0.01))
    v2 = m.state_dict()
    v1_detectors = {
        signal: {
            "_sum_increase": d["sum"],
            "_sum_decrease": 0.0,
            "_min_increase": d["min_sum"],
            "_max_decrease": -1.0,
            "mean_n": float(d["n"]),
            "mean": d["mean"],
            "detected": d["detected"],
        }
        for signal, d in v2["detectors"].items()
    }
    v1 = {**v2, "v": 1, "detectors": v1_detectors}
    r = DriftMonitor.from_state(orjson.loads(orjson.dumps(v1)))
    assert r.state_dict() == v2
    for i in range(150):
        c, b = _inc(rng, 0.01 if i < 50 else 0.03), _inc(rng, 0.01)
        assert m.update(c, b) == r.update(c, b)


@pytest.mark.parametrize(
    ("state", "match"),
    [
        ({"v": 3}, "unsupported drift state version 3"),
        ({"v": 2, "params": {}}, "malformed drift state"),
    ],
)
def test_bad_state_raises_state_error(state: dict[str, object], match: str) -> None:
    """A foreign or truncated drift state raises StateError (a ValueError) with a reason."""
    with pytest.raises(StateError, match=match):
        DriftMonitor.from_state(state)


def test_invalid_arguments_fail_fast() -> None:
    """min_requests and min_instances below 1 raise ParameterError naming the parameter."""
    with pytest.raises(ParameterError, match="min_requests must be >= 1, got 0"):
        DriftMonitor(min_requests=0)
    with pytest.raises(ParameterError, match="min_instances must be >= 1, got 0"):
        DriftMonitor(min_instances=0)


def test_module_docstring_example_runs() -> None:
    """The module docstring's example is a passing doctest."""
    result = doctest.testmod(drift_module)
    assert result.attempted > 0 and result.failed == 0
