"""Tests of the one-sided Page-Hinkley test: equal to river's, state round trips, validation."""

from __future__ import annotations

import doctest
import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import orjson
import pytest
from river import drift

from detectors import page_hinkley
from detectors.errors import ParameterError, StateError
from detectors.page_hinkley import PageHinkley

# DriftMonitor's two settings, river's defaults, and a stronger fading factor.
SETTINGS: dict[str, dict[str, Any]] = {
    "error_z": {"min_instances": 30, "delta": 0.25, "threshold": 15.0},
    "latency_p90": {"min_instances": 30, "delta": 0.02, "threshold": 1.0},
    "river_defaults": {"min_instances": 30, "delta": 0.005, "threshold": 50.0},
    "fading": {"min_instances": 5, "delta": 0.1, "threshold": 5.0, "forgetting": 0.99},
}


def _streams() -> Iterator[tuple[str, str, list[float]]]:
    """(name, settings, values): noise, mean steps, a drifting walk, heavy tails."""
    rng = np.random.default_rng(20240601)
    yield "aa-noise", "error_z", rng.standard_normal(20_000).tolist()
    steps = [rng.standard_normal(400) + shift for shift in (0.0, 1.5, 0.0, 3.0)]
    yield "mean-steps", "error_z", np.concatenate(steps).tolist()
    lat = [rng.normal(0.0, 0.05, 600), rng.normal(0.1, 0.05, 600)]
    yield "latency-step", "latency_p90", np.concatenate(lat).tolist()
    yield "walk", "river_defaults", (np.cumsum(rng.standard_t(2, 3000)) * 0.1).tolist()
    fading = [rng.standard_normal(1000), rng.standard_normal(1000) + 0.7]
    yield "fading", "fading", np.concatenate(fading).tolist()


STREAMS = list(_streams())


def _river(settings: dict[str, Any]) -> drift.PageHinkley:
    kw = dict(settings)
    alpha = kw.pop("forgetting", 1 - 0.0001)
    return drift.PageHinkley(mode="up", alpha=alpha, **kw)


def _fires(det: PageHinkley, values: list[float], offset: int = 0) -> list[int]:
    return [offset + i for i, x in enumerate(values) if det.update(x)]


@pytest.mark.parametrize(("name", "setting", "values"), STREAMS, ids=[s[0] for s in STREAMS])
def test_fires_at_exactly_the_same_values_as_river(
    name: str, setting: str, values: list[float]
) -> None:
    """On seeded streams, detections happen at exactly the indices river's PageHinkley gives."""
    ref = _river(SETTINGS[setting])
    expected = []
    for i, x in enumerate(values):
        ref.update(x)  # type: ignore[no-untyped-call]  # river is untyped
        if ref.drift_detected:
            expected.append(i)
    assert expected, "each stream must exercise at least one detection"
    assert _fires(PageHinkley(**SETTINGS[setting]), values) == expected


def test_streams_cover_repeated_detections() -> None:
    """The seeded streams include several detections in a row, so the reset path is pinned."""
    counts = [len(_fires(PageHinkley(**SETTINGS[s]), v)) for _, s, v in STREAMS]
    assert max(counts) >= 5


@pytest.mark.parametrize(("name", "setting", "values"), STREAMS, ids=[s[0] for s in STREAMS])
@pytest.mark.parametrize("cut", [1, 29, 411, 1999])
def test_restore_mid_stream_gives_identical_detections(
    name: str, setting: str, values: list[float], cut: int
) -> None:
    """A detector restored from JSON at any point fires exactly where the original does."""
    whole = _fires(PageHinkley(**SETTINGS[setting]), values)
    first = PageHinkley(**SETTINGS[setting])
    before = _fires(first, values[:cut])
    restored = PageHinkley.from_state(orjson.loads(orjson.dumps(first.state_dict())))
    assert restored.drift_detected == first.drift_detected
    assert before + _fires(restored, values[cut:], offset=cut) == whole


def test_state_of_a_fresh_detector_is_json() -> None:
    """Before any value the running minimum (+inf) is stored as null, and restores to +inf."""
    state = PageHinkley().state_dict()
    assert state["min_sum"] is None
    restored = PageHinkley.from_state(orjson.loads(orjson.dumps(state)))
    assert restored.state_dict() == state


def test_detection_needs_min_instances_since_the_last_reset() -> None:
    """No detection before min_instances values, however large the jump."""
    det = PageHinkley(min_instances=10, delta=0.0, threshold=1.0)
    assert _fires(det, [0.0, 100.0, 100.0, 100.0]) == []
    assert _fires(det, [100.0] * 5 + [1000.0], offset=4) == [9]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"min_instances": 0}, "min_instances must be >= 1, got 0"),
        ({"min_instances": 2.5}, "min_instances must be an integer, got 2.5"),
        ({"delta": -0.1}, "delta must be >= 0, got -0.1"),
        ({"threshold": 0.0}, "threshold must be > 0, got 0.0"),
        ({"threshold": math.inf}, "threshold must be > 0, got inf"),
        ({"forgetting": 1.5}, r"forgetting must be in \(0, 1\], got 1.5"),
    ],
)
def test_invalid_arguments_fail_fast(kwargs: dict[str, Any], match: str) -> None:
    """Bad constructor arguments raise ParameterError naming the parameter and its bound."""
    with pytest.raises(ParameterError, match=match) as info:
        PageHinkley(**kwargs)
    assert info.value.value == next(iter(kwargs.values()))


def test_non_finite_value_is_rejected() -> None:
    """A NaN fed to the test raises instead of silently disabling it."""
    with pytest.raises(ParameterError, match="x must be finite, got nan"):
        PageHinkley().update(math.nan)


@pytest.mark.parametrize(
    ("state", "match"),
    [
        ({"v": 99}, "unsupported Page-Hinkley state version 99"),
        ({"v": 1, "params": {}}, "malformed Page-Hinkley state"),
    ],
)
def test_bad_state_documents_raise_state_error(state: dict[str, Any], match: str) -> None:
    """A foreign or truncated state document raises StateError with a reason."""
    with pytest.raises(StateError, match=match):
        PageHinkley.from_state(state)


def test_module_docstring_example_runs() -> None:
    """The module docstring's example is a passing doctest."""
    result = doctest.testmod(page_hinkley)
    assert result.attempted > 0 and result.failed == 0
