"""What the judge gives a verdict engine from each partials message, and the judge's counters."""

from __future__ import annotations

from dataclasses import dataclass

from detectors.summary import CohortSummary
from monitor.pipeline.partials import Clock, Increment, Partial
from monitor.verdict.engine import BakeVerdict, VerdictEvent

__all__ = ["JudgeStats", "feed", "feed_clock"]


@dataclass
class JudgeStats:
    """Counters for metrics and tests (monotonic within a process, except ``held``)."""

    partials: int = 0
    clocks: int = 0  # source clock messages heard (each applied to its partition's bakes)
    skipped: int = 0
    malformed: int = 0
    held: int = 0  # gauge: partials of not-yet-known bakes held now
    released: int = 0  # held partials folded once their bake appeared
    unknown_bake_dead_letters: int = 0
    documents: int = 0  # verdict documents published (only changed ones are)
    oversized_documents: int = 0  # documents over DOCUMENT_MAX_BYTES, not published
    snapshots: int = 0
    unreadable_snapshots: int = 0
    alerts: int = 0
    checkpoints: int = 0
    checkpoint_failures: int = 0
    commit_failures: int = 0
    last_poll_s: float = 0.0
    restored: int = 0
    retired: int = 0  # bakes retired from the live set (retention_s after their decision)
    retired_partials: int = 0  # partials of retired bakes, skipped


def feed(verdict: BakeVerdict, partial: Partial, inc: Increment | None) -> list[VerdictEvent]:
    """Give a verdict engine what one folded partial added (its totals, its evidence cells) and
    its source partition's clock (also from a partial that adds nothing new); a format-1
    partial, without cells or clock, is one cell at its max event time."""
    # Format 1 had neither cells nor a clock; an idle partition without any record yet has no
    # clock either, and must still be heard from (else the watermark waits for it forever).
    v1 = not partial.cells and partial.progress_s is None and not partial.idle
    if inc is None and v1:
        return []
    empty = CohortSummary()
    return verdict.update(
        empty if inc is None else inc.canary,
        empty if inc is None else inc.baseline,
        partial.max_event_time_s,
        cells=None if v1 else ({} if inc is None else inc.cells),
        progress_s=partial.progress_s,
        source=(partial.topic, partial.partition),
        idle=partial.idle,
        source_partitions=partial.source_partitions,
    )


def feed_clock(verdict: BakeVerdict, clock: Clock) -> list[VerdictEvent]:
    """A source partition's clock (no records): the watermark may move and close windows."""
    empty = CohortSummary()
    return verdict.update(
        empty,
        empty,
        None,
        cells={},
        progress_s=clock.progress_s,
        source=(clock.topic, clock.partition),
        idle=clock.idle,
        source_partitions=clock.source_partitions,
    )
