"""The event-time clock: robust to a few wrong clocks, independent of batching, rejects the future."""

from __future__ import annotations

import numpy as np
import orjson

from monitor.records.clock import EventClock
from monitor.records.decode import decode_batch
from monitor.records.fieldmap import PRESETS

T0 = 1_795_824_000.0


def _lines(ts: np.ndarray) -> list[bytes]:
    return [
        orjson.dumps({"ts": float(t), "service": "s", "version": "v1", "status": 200, "latency_ms": 5})
        for t in ts
    ]  # fmt: skip


def _run(lines: list[bytes], batch: int) -> tuple[EventClock, int]:
    clock, rejected = EventClock(300.0), 0
    for i in range(0, len(lines), batch):
        part = lines[i : i + batch]
        out = clock.screen(decode_batch(part, PRESETS["plain"]), part)
        rejected += out.rejected_by_reason.get("bad_time", 0)
    return clock, rejected


def test_a_far_future_record_is_rejected_and_never_moves_the_clock() -> None:
    """One record a century ahead is rejected as bad_time, named in the detail, and the clock
    stays where the other records put it."""
    ts = T0 + np.arange(1000) * 0.1
    lines = _lines(ts)
    lines.insert(500, _lines(np.array([T0 + 100 * 365 * 86400.0]))[0])
    clock, rejected = _run(lines, 200)
    assert rejected == 1
    assert clock.progress_s is not None and clock.progress_s <= ts.max()
    out = EventClock(300.0)
    part = lines[400:600]
    res = out.screen(decode_batch(part, PRESETS["plain"]), part)
    (rej,) = res.rejections
    assert rej.reason == "bad_time" and "ahead of the stream's clock" in rej.detail


def test_the_clock_depends_on_the_records_not_the_batching() -> None:
    """The same records in batches of 7, 100 or 5000 end at the very same clock."""
    rng = np.random.default_rng(3)
    ts = np.sort(T0 + rng.uniform(0, 600, 5000)) + rng.normal(0, 2, 5000)
    lines = _lines(ts)
    ends = {_run(lines, b)[0].progress_s for b in (7, 100, 5000)}
    assert len(ends) == 1


def test_a_few_records_from_a_fast_clock_do_not_advance_it() -> None:
    """Up to rank - 1 records 200 s ahead (within the skew bound) leave the clock at the rest."""
    ts = T0 + np.arange(2000) * 0.1
    fast = T0 + 400.0 + np.arange(50)
    clock, rejected = _run(_lines(np.concatenate([ts, fast])), 500)
    assert rejected == 0
    assert clock.progress_s is not None and clock.progress_s <= ts.max()


def test_unset_until_rank_records_then_set() -> None:
    """A trickle sets the clock once rank records have been accepted, whatever the batches."""
    clock = EventClock(300.0, rank=5)
    lines = _lines(T0 + np.arange(5.0))
    for i in range(4):
        clock.screen(decode_batch(lines[i : i + 1], PRESETS["plain"]), lines[i : i + 1])
        assert clock.progress_s is None
    clock.screen(decode_batch(lines[4:5], PRESETS["plain"]), lines[4:5])
    assert clock.progress_s == T0
