"""Tests of the advisory drift monitor."""

from __future__ import annotations

import numpy as np
import orjson

from detectors.drift import DriftMonitor
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
