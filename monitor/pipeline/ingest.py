"""The ingest role: request logs → decode + tag + summarise → partials (ARCHITECTURE.md §4).

Per source partition the role keeps the cumulative summaries of the open block of
``block_offsets`` offsets, per bake and cohort. Every ``flush_interval_s`` (and when a block
completes) it checkpoints through :class:`~monitor.pipeline.checkpoint.Checkpoint`:

1. publish a partial for every bake with data in a changed block (``complete`` once the block is
   done), with the dead letters of rejected records and any discovery proposals;
2. wait for the producer to acknowledge them (on a transient error: publish again next time);
3. commit each source partition at the start of its oldest open block.

After a crash or a rebalance the open block is recomputed from its start and yields the same
cumulative partial again, which the judge folds idempotently; so every offset counts once.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from detectors.summary import CohortSummary
from monitor.bakes.discovery import Discovery
from monitor.bakes.spec import Registry
from monitor.bakes.store import proposal_record
from monitor.bakes.tagging import summarise, tag
from monitor.errors import ConfigError
from monitor.kafka.io import TP, Record, Sink, Source
from monitor.kafka.topics import TopicLayout, partition_for
from monitor.pipeline.checkpoint import Checkpoint
from monitor.pipeline.partials import Partial
from monitor.records.columns import Rejection
from monitor.records.decode import decode_batch
from monitor.records.fieldmap import FieldMap

__all__ = ["Ingest", "IngestStats"]

log = logging.getLogger("bakemon.ingest")

DEFAULT_BLOCK_OFFSETS = 50_000
DEFAULT_FLUSH_INTERVAL_S = 1.0
MAX_POLL_RECORDS = 20_000


@dataclass
class _Block:
    block: int
    upto: int
    bakes: dict[str, list[CohortSummary]] = field(
        default_factory=dict
    )  # by cohort: BASELINE, CANARY
    max_time: dict[str, float] = field(default_factory=dict)
    dirty: bool = False
    complete: bool = False


@dataclass
class IngestStats:
    """Counters for metrics and tests (monotonic within a process)."""

    records: int = 0
    tagged: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    partials: int = 0
    dead_letters: int = 0
    discovered: int = 0  # bake proposals sent
    checkpoints: int = 0
    checkpoint_failures: int = 0
    commit_failures: int = 0
    last_poll_s: float = 0.0
    last_checkpoint_s: float = 0.0


def _tps(tps: set[TP]) -> str:
    return ",".join(f"{t}/{p}" for t, p in sorted(tps)) or "none"


class Ingest:
    """One ingest worker: a group consumer on the request topics and a producer."""

    def __init__(
        self,
        source: Source,
        sink: Sink,
        layout: TopicLayout,
        registry: Callable[[], Registry],
        field_map: FieldMap,
        *,
        block_offsets: int = DEFAULT_BLOCK_OFFSETS,
        flush_interval_s: float = DEFAULT_FLUSH_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
        discovery: Discovery | None = None,
        observe_flush_s: Callable[[float], None] | None = None,
    ) -> None:
        if block_offsets < 1:
            msg = f"block_offsets must be >= 1, got {block_offsets}"
            raise ConfigError(msg, value=block_offsets)
        if not flush_interval_s > 0:
            msg = f"flush_interval_s must be > 0, got {flush_interval_s}"
            raise ConfigError(msg, value=flush_interval_s)
        self.source = source
        self.sink = sink
        self.layout = layout
        self.registry = registry
        self.field_map = field_map
        self.block_offsets = block_offsets
        self.flush_interval_s = flush_interval_s
        self.clock = clock
        self.discovery = discovery
        self.stats = IngestStats()
        self._blocks: dict[TP, list[_Block]] = {}
        self._checkpoint = Checkpoint(
            "ingest",
            source,
            sink,
            interval_s=flush_interval_s,
            clock=clock,
            observe_s=observe_flush_s,
        )

    # -- the loop --------------------------------------------------------------------------
    def step(self, timeout_s: float = 0.2) -> int:
        """Poll once, fold what arrived, checkpoint when due; returns records processed."""
        batch = self.source.poll(timeout_s, MAX_POLL_RECORDS)
        self.stats.last_poll_s = self.clock()
        assigned, revoked = self.source.take_rebalance()
        for tp in revoked | assigned:
            # The owner, new or the same, recomputes the open block from the last commit (a
            # block start): a kept partition's mid-block position must not start a new block.
            self._blocks.pop(tp, None)
        for tp in assigned:
            committed = self.source.committed(tp)
            if committed is None:
                self.source.seek_to_beginning(tp)
            else:
                self.source.seek(tp, committed)
        if assigned or revoked:
            log.info("ingest partitions: +%s -%s", _tps(assigned), _tps(revoked))
        n = 0
        for tp, recs in batch.items():
            if recs and tp not in assigned:  # records fetched before the seek are re-read
                self._process(tp, recs)
                n += len(recs)
        if self._checkpoint.due() or any(
            b.complete for blocks in self._blocks.values() for b in blocks
        ):
            self.checkpoint()
        return n

    def _process(self, tp: TP, recs: Sequence[Record]) -> None:
        registry = self.registry()
        offsets = np.fromiter((r.offset for r in recs), dtype=np.int64, count=len(recs))
        blocks = offsets // self.block_offsets
        cuts = np.flatnonzero(np.diff(blocks)) + 1
        start = 0
        for end in [*cuts.tolist(), len(recs)]:
            self._process_segment(
                tp, recs[start:end], int(blocks[start]), int(offsets[end - 1]) + 1, registry
            )
            start = end

    def _process_segment(
        self, tp: TP, recs: Sequence[Record], block: int, upto: int, registry: Registry
    ) -> None:
        open_blocks = self._blocks.setdefault(tp, [])
        for b in open_blocks:
            if b.block < block:
                b.complete = True
        acc = next((b for b in open_blocks if b.block == block), None)
        if acc is None:
            acc = _Block(block, upto)
            open_blocks.append(acc)
        values = [r.value if r.value is not None else b"" for r in recs]
        ts = np.fromiter((r.timestamp for r in recs), dtype=np.float64, count=len(recs)) / 1000.0
        decoded = decode_batch(values, self.field_map, default_time_s=ts)
        self.stats.records += len(recs)
        if decoded.rejections:
            self.stats.rejected.update(decoded.rejected_by_reason)
            self._dead_letter(tp, recs, decoded.rejections)
        if self.discovery is not None:
            self.discovery.sight(decoded.batch)
        tags = tag(decoded.batch, registry)
        groups = summarise(decoded.batch, tags)
        self.stats.tagged += int((tags.bake >= 0).sum())
        for (bake_idx, cohort), (summary, max_t) in groups.items():
            bake_id = registry.bakes[bake_idx].id
            pair = acc.bakes.setdefault(bake_id, [CohortSummary(), CohortSummary()])
            pair[cohort].merge(summary)
            acc.max_time[bake_id] = max(acc.max_time.get(bake_id, -np.inf), max_t)
        acc.upto = max(acc.upto, upto)
        acc.dirty = True
        if acc.upto >= (block + 1) * self.block_offsets:
            acc.complete = True

    def _dead_letter(self, tp: TP, recs: Sequence[Record], rejections: Sequence[Rejection]) -> None:
        if not self.layout.dead_letter:
            return
        for rej in rejections:
            r = recs[rej.index]
            headers = [
                ("bakemon.reason", rej.reason.encode()),
                ("bakemon.detail", rej.detail.encode()[:512]),
                ("bakemon.source", f"{tp[0]}/{tp[1]}/{r.offset}".encode()),
            ]
            self._checkpoint.send(
                self.layout.dead_letter_topic, r.value, key=r.key, headers=headers
            )
            self.stats.dead_letters += 1

    # -- checkpoint ------------------------------------------------------------------------
    def checkpoint(self) -> bool:
        """Publish partials of changed blocks, wait for acks, then commit block starts."""
        ok = self._checkpoint.run(self)
        self.stats.checkpoints = self._checkpoint.completed
        self.stats.checkpoint_failures = self._checkpoint.failed
        self.stats.commit_failures = self._checkpoint.commit_failures
        self.stats.last_checkpoint_s = self._checkpoint.last_s
        return ok

    def send_outputs(self, sink: Sink) -> None:
        n_parts = self.layout.partials_partitions
        for (topic, partition), blocks in self._blocks.items():
            for b in blocks:
                if not b.dirty and not b.complete:
                    continue
                for bake_id, (base, can) in b.bakes.items():
                    p = Partial(
                        bake_id,
                        topic,
                        partition,
                        b.block,
                        b.upto,
                        b.complete,
                        can,
                        base,
                        b.max_time.get(bake_id),
                    )
                    sink.send(
                        self.layout.partials,
                        p.encode(),
                        key=bake_id.encode(),
                        partition=partition_for(bake_id, n_parts),
                    )
                    self.stats.partials += 1
                b.dirty = False
        if self.discovery is not None:
            for spec in self.discovery.proposals(self.registry()):
                key, value = proposal_record(spec)
                self._checkpoint.send(self.layout.bakes, value, key=key, partition=0)
                self.stats.discovered += 1

    def outputs_failed(self) -> None:
        for blocks in self._blocks.values():
            for b in blocks:
                b.dirty = True

    def outputs_acked(self) -> dict[TP, int]:
        """Commit at the start of each partition's oldest open block; drop completed blocks."""
        commits: dict[TP, int] = {}
        for tp, blocks in list(self._blocks.items()):
            remaining = [b for b in blocks if not b.complete]
            if remaining:
                commits[tp] = min(b.block for b in remaining) * self.block_offsets
            elif blocks:
                commits[tp] = (max(b.block for b in blocks) + 1) * self.block_offsets
            self._blocks[tp] = remaining
        return commits

    def open_blocks(self) -> int:
        """Open blocks held in memory (bounded by the assigned partitions)."""
        return sum(len(v) for v in self._blocks.values())
