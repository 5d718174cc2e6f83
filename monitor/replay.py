"""Offline replay: a JSON-lines request log through tagging → summaries → detectors → verdict.

The file is read in batches of ``increment_records`` lines. Decisions are taken per closed
event-time window, as in the live judge, so a replay forms the same windows and reaches the same
decisions as the stream whatever the batching (as long as no record is later than the allowed
lateness in either).
"""

from __future__ import annotations

import gzip
import io
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, NamedTuple

from monitor.bakes.spec import Registry
from monitor.bakes.tagging import increments, tag
from monitor.errors import InputError
from monitor.records.clock import DEFAULT_MAX_CLOCK_SKEW_S, EventClock
from monitor.records.columns import DecodeResult
from monitor.records.decode import decode_batch
from monitor.records.fieldmap import FieldMap
from monitor.verdict.engine import BakeVerdict, VerdictEvent
from monitor.verdict.timeline import Timeline

__all__ = [
    "DecodedBatch",
    "ReplayResult",
    "TimelineRow",
    "decoded_batches",
    "iter_line_batches",
    "open_log",
    "replay",
    "replay_decoded",
]

DEFAULT_INCREMENT_RECORDS = 2000


class DecodedBatch(NamedTuple):
    """One increment of the log, decoded: its lines, the result, the clock after it."""

    lines: int
    result: DecodeResult
    clock_s: float | None


@dataclass(frozen=True)
class TimelineRow:
    """One line of the verdict timeline."""

    bake: str
    event_time_s: float | None
    canary_requests: int
    baseline_requests: int
    status: str
    reason: str
    document: dict[str, object]


@dataclass
class ReplayResult:
    """Final verdict engines, the timeline, the events and the rejected-record counts."""

    verdicts: dict[str, BakeVerdict]
    timeline: list[TimelineRow] = field(default_factory=list)
    events: list[VerdictEvent] = field(default_factory=list)
    records: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    rejection_examples: list[str] = field(default_factory=list)
    untagged: int = 0
    timelines: dict[str, Timeline] = field(default_factory=dict)  # the judge's, per bake


def open_log(path: str | Path) -> IO[bytes]:
    """Open a log file for binary reading, gunzipping ``.gz`` (or gzip magic); ``-`` = stdin."""
    if str(path) == "-":
        import sys

        return sys.stdin.buffer
    p = Path(path)
    if not p.is_file():
        msg = f'log file "{p}" does not exist or is not a file'
        raise InputError(msg, value=str(p))
    raw = p.open("rb")
    head = raw.peek(2)[:2] if isinstance(raw, io.BufferedReader) else b""
    if p.suffix == ".gz" or head == b"\x1f\x8b":
        return gzip.GzipFile(fileobj=raw)  # type: ignore[return-value]
    return raw


_READ_BYTES = 1 << 20


def iter_line_batches(stream: IO[bytes], size: int) -> Iterator[list[bytes]]:
    """Non-empty lines of ``stream`` (stripped) in lists of ``size``. Read in chunks of up to
    1 MB split at C speed (a gzip file's ``readline`` costs more than parsing the line); from
    a pipe, whatever has arrived (``read1``), so a slow producer's lines are not held back."""
    read = getattr(stream, "read1", stream.read)
    batch: list[bytes] = []
    rest = b""
    try:
        while True:
            chunk = read(_READ_BYTES)
            if not chunk:
                break
            lines = (rest + chunk).split(b"\n")
            rest = lines.pop()
            batch += [ln for ln in map(bytes.strip, lines) if ln]
            while len(batch) >= size:
                yield batch[:size]
                batch = batch[size:]
    except (OSError, EOFError) as exc:  # e.g. a truncated gzip file
        msg = f"cannot read log: {exc}"
        raise InputError(msg, value=None) from exc
    last = rest.strip()
    if last:
        batch.append(last)
    while batch:
        yield batch[:size]
        batch = batch[size:]


def replay(
    batches: Iterator[Sequence[bytes]],
    registry: Registry,
    field_map: FieldMap,
    *,
    on_row: Callable[[TimelineRow], None] | None = None,
    row_every: int = 10,
    max_examples: int = 5,
    max_clock_skew_s: float = DEFAULT_MAX_CLOCK_SKEW_S,
) -> ReplayResult:
    """Fold every batch as one increment into each registered bake's verdict engine.

    Like the live pipeline: the batch's requests are screened by the file's event-time clock
    (far-future records are rejected as ``bad_time``), tagged, summarised per cohort and per
    (window, stratum) cell, and the clock is the watermark that closes windows. A timeline row
    is recorded for every status change and every ``row_every`` increments.
    """
    return replay_decoded(
        decoded_batches(batches, field_map, max_clock_skew_s),
        registry,
        on_row=on_row,
        row_every=row_every,
        max_examples=max_examples,
    )


def decoded_batches(
    batches: Iterable[Sequence[bytes]],
    field_map: FieldMap,
    max_clock_skew_s: float = DEFAULT_MAX_CLOCK_SKEW_S,
) -> Iterator[DecodedBatch]:
    """Each batch decoded and screened by the stream's event-time clock."""
    clock = EventClock(max_clock_skew_s)
    for raw in batches:
        decoded = clock.screen(decode_batch(raw, field_map), raw)
        yield DecodedBatch(len(raw), decoded, clock.progress_s)


def replay_decoded(
    batches: Iterator[DecodedBatch],
    registry: Registry,
    *,
    on_row: Callable[[TimelineRow], None] | None = None,
    row_every: int = 10,
    max_examples: int = 5,
) -> ReplayResult:
    """:func:`replay` of batches decoded already (by :func:`decoded_batches`, perhaps in
    another process: :func:`monitor.replay_reader.read_decoded`)."""
    verdicts = {b.id: BakeVerdict(b) for b in registry.bakes}
    result = ReplayResult(verdicts, timelines={bid: Timeline() for bid in verdicts})
    last_status = {bid: v.status for bid, v in verdicts.items()}
    for n_inc, (n_raw, decoded, clock_s) in enumerate(batches, start=1):
        _count(result, n_raw, decoded, max_examples)
        tags = tag(decoded.batch, registry)
        result.untagged += int((tags.bake < 0).sum())
        for i, inc in increments(decoded.batch, tags, registry).items():
            v = verdicts[registry.bakes[i].id]
            events = v.update(
                inc.canary,
                inc.baseline,
                inc.max_time_s,
                cells=inc.cells,
                progress_s=clock_s,
            )
            result.events.extend(events)
            result.timelines[v.spec.id].observe(v)
            changed = v.status != last_status[v.spec.id]
            last_status[v.spec.id] = v.status
            if changed or (n_inc % row_every == 0 and not v.decided):
                _emit(result, v, on_row)
    for v in verdicts.values():
        if not result.timeline or result.timeline[-1].document is not None:
            _emit(result, v, on_row, final=True)
    return result


def _count(result: ReplayResult, n_raw: int, decoded: DecodeResult, max_examples: int) -> None:
    result.records += n_raw
    result.rejected.update(decoded.rejected_by_reason)
    for rej in decoded.rejections[: max(0, max_examples - len(result.rejection_examples))]:
        result.rejection_examples.append(
            f"record {result.records - n_raw + rej.index + 1}: {rej.reason}: {rej.detail}"
        )


def _emit(
    result: ReplayResult,
    v: BakeVerdict,
    on_row: Callable[[TimelineRow], None] | None,
    *,
    final: bool = False,
) -> None:
    doc = v.document()
    row = TimelineRow(
        bake=v.spec.id,
        event_time_s=v.last_event_time_s,
        canary_requests=v.canary.requests,
        baseline_requests=v.baseline.requests,
        status=v.status.value,
        reason="; ".join(str(r) for r in doc["reasons"]),
        document=doc,
    )
    if (
        final
        and result.timeline
        and result.timeline[-1].bake == row.bake
        and (
            result.timeline[-1].canary_requests == row.canary_requests
            and result.timeline[-1].status == row.status
        )
    ):
        return
    result.timeline.append(row)
    if on_row is not None:
        on_row(row)
