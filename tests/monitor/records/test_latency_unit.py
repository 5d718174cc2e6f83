"""A latency unit that looks wrong is warned about, never silently taken (issue 12)."""

from __future__ import annotations

import dataclasses
import logging
import time

import numpy as np
import orjson
import pytest

from monitor.records.convert import latency_unit_hint
from monitor.records.decode import decode_batch
from monitor.records.fieldmap import PRESETS


@pytest.mark.parametrize(
    ("raw", "unit", "warns"),
    [
        (np.linspace(0.010, 0.300, 50), "ms", "look like seconds, not ms"),  # seconds as ms
        (np.linspace(5, 300, 50), "ms", None),  # plausible ms
        (np.arange(0, 50, dtype=float), "ms", None),  # integer ms, some 0: Envoy's %DURATION%
        (np.full(50, 0.4), "ms", "look like seconds, not ms"),
        (np.linspace(0.010, 0.300, 50), "s", None),  # plausible seconds
        (np.linspace(80, 900, 50), "s", "look like milliseconds, not s"),  # ms as s
        (np.linspace(0.010, 0.300, 5), "ms", None),  # too few values to say
    ],
)
def test_latency_unit_hint(raw: np.ndarray, unit: str, warns: str | None) -> None:
    """Medians below a millisecond with fractional values, or of minutes, draw a hint."""
    divisor = {"s": 1.0, "ms": 1e3}[unit]
    hint = latency_unit_hint(raw / divisor, unit, divisor)
    assert (hint is None) if warns is None else (hint is not None and warns in hint)


def test_decode_logs_a_unit_warning_once(caplog: pytest.LogCaptureFixture) -> None:
    """Seconds read as ms: the records are kept, one warning names the field and the fix."""
    fm = dataclasses.replace(PRESETS["plain"], latency="unit_test_latency")
    now = time.time()
    lines = [
        orjson.dumps(
            {
                "ts": now,
                "service": "a",
                "version": "v1",
                "status": 200,
                "unit_test_latency": 0.02 + i / 1000,
            }
        )
        for i in range(30)
    ]
    with caplog.at_level(logging.WARNING, logger="bakemon.records"):
        first = decode_batch(lines, fm)
        decode_batch(lines, fm)
    assert first.batch.n == 30 and first.rejections == []
    warned = [r.getMessage() for r in caplog.records if r.name == "bakemon.records"]
    assert len(warned) == 1
    assert 'field "unit_test_latency"' in warned[0] and 'latency_unit = "s"' in warned[0]
