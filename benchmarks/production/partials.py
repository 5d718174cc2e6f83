"""Requests → the partials ingest publishes → what the judge feeds, through bakemon's own code.

Per source partition, ingest keeps an :class:`~monitor.records.clock.EventClock`, decodes what it
read since the last flush into a :class:`~monitor.records.columns.RecordBatch`, screens it with
that clock (records more than ``max_clock_skew_s`` ahead are rejected as ``bad_time`` and never
counted), tags it (:func:`monitor.bakes.tagging.tag`) and adds
:func:`monitor.bakes.tagging.increments` — the bake's totals and its (event-time window, stratum)
evidence cells — to the open block; every ``flush_interval_s`` it publishes a partial for every
active bake and every partition, with the partition's clock as ``progress`` even when the bake
got no new records there (a busy topic has other services' records in every flush). The judge
folds a partial into the increment it adds and hands it to
:func:`monitor.pipeline.judge.feed`.

:class:`IngestStream` does the same with the real classes, minus Kafka and JSON: each record
reaches ingest at its *arrival* (event time plus its cohort's shipper lag) in the partition its
key puts it in; within a flush the partitions' partials reach the judge in a random order. A
partition's batch is what arrived in it during one flush, in arrival order, so the
:class:`~monitor.pipeline.partials.Increment` it yields is exactly what
:class:`~monitor.pipeline.partials.BlockFold` makes of the cumulative block partial (the
exactly-once fold is tested elsewhere). A partition without records for
:data:`~monitor.pipeline.ingest.IDLE_AFTER_S` is idle (ingest's rule, here on arrival time).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from benchmarks.production.traffic import Records, TrafficGenerator
from detectors.summary import CohortSummary
from monitor.bakes.spec import BakeSpec, Registry
from monitor.bakes.tagging import increments, tag
from monitor.pipeline.ingest import IDLE_AFTER_S
from monitor.pipeline.partials import Increment, Partial
from monitor.records.clock import DEFAULT_MAX_CLOCK_SKEW_S, EventClock
from monitor.records.columns import Categorical, DecodeResult, RecordBatch
from monitor.records.decode import REASON_BAD_TIME

TOPIC = "requests"
EVENT_TIME_START_S = 1.7e9  # bake time 0 as epoch seconds
VERSIONS = ("v1", "v2")  # version of the BASELINE (0) and CANARY (1) cohorts
_EMPTY = CohortSummary()  # a heartbeat's totals (the judge's feed never reads a partial's)


@dataclass(frozen=True)
class Flushed:
    """One partial as the judge folds it, and where it came from."""

    partial: Partial
    increment: Increment | None  # None: no records of the bake (a heartbeat with the clock)
    tick: int  # the flush interval it was published at the end of
    true_clock_s: float  # largest true event time ingest has seen (skewed clocks excluded)


class IngestStream:
    """One bake's requests through ingest, flush by flush, partition by partition."""

    def __init__(
        self,
        generator: TrafficGenerator,
        spec: BakeSpec,
        rng: np.random.Generator,
        *,
        max_clock_skew_s: float = DEFAULT_MAX_CLOCK_SKEW_S,
    ) -> None:
        t = generator.traffic
        self._rng = rng
        self.partitions = t.partitions
        self._flush_s = t.flush_interval_s
        self.registry = Registry([spec])
        self._bake = spec.id
        self._clocks = [EventClock(max_clock_skew_s) for _ in range(t.partitions)]
        self._last_data_s = np.zeros(t.partitions)  # ingest starts counting at the bake's start
        self._tick = 0  # the next flush to publish
        self._pending = Records.empty()
        self._categories = {
            "zone": tuple(z.name for z in t.zones),
            "route": tuple(r.name for r in t.routes),
            "host": tuple(generator.host_names),
        }
        self.true_clock_s = -math.inf
        self.bad_time = 0  # records rejected by the clocks
        self.records = 0  # records that reached ingest (rejected ones included)

    @property
    def pending(self) -> int:
        """Records drawn that have not reached ingest yet (shipper lag)."""
        return self._pending.n

    def push(self, recs: Records, ready_s: float) -> Iterator[Flushed]:
        """Add ``recs``; yield the partials of every flush that ends by ``ready_s``.

        The caller guarantees that every record arriving before ``ready_s`` has been pushed
        (records never arrive before their event time). Stop iterating at any point (a decided
        bake): the flushes not yielded are not published.
        """
        every = Records.concat([self._pending, recs])
        end_tick = math.floor(ready_s / self._flush_s)
        ready = every.arrival_s < end_tick * self._flush_s
        self._pending = every.select(~ready)
        r = every.select(ready)
        tick = np.floor(r.arrival_s / self._flush_s).astype(np.int64)
        key = tick * self.partitions + r.partition
        order = np.lexsort((r.arrival_s, key))  # ingest reads a partition in arrival order
        r, key = r.select(order), key[order]
        for k in range(self._tick, end_tick):
            self._tick = k + 1
            lo = np.searchsorted(key, k * self.partitions)
            bounds = np.searchsorted(key, k * self.partitions + np.arange(1, self.partitions + 1))
            starts = np.concatenate([[lo], bounds[:-1]])
            for p in self._rng.permutation(self.partitions).tolist():
                yield self._flush(k, p, r.select(slice(int(starts[p]), int(bounds[p]))))

    def _flush(self, tick: int, p: int, r: Records) -> Flushed:
        """Partition ``p``'s partial at the end of flush ``tick``, holding records ``r``."""
        now_s = (tick + 1) * self._flush_s
        inc = None
        max_time = None
        if r.n:
            self.records += r.n
            self._last_data_s[p] = now_s
            decoded = self._clocks[p].screen(DecodeResult(self._batch(r), [], {}), [b""] * r.n)
            self.bad_time += decoded.rejected_by_reason.get(REASON_BAD_TIME, 0)
            ok = r.time_s[~r.skewed]
            if ok.size:
                self.true_clock_s = max(self.true_clock_s, float(ok.max()))
            batch = decoded.batch
            found = increments(batch, tag(batch, self.registry), self.registry).get(0)
            if found is not None:
                inc = Increment(found.canary, found.baseline, found.cells)
                max_time = found.max_time_s
        clock = self._clocks[p].progress_s
        partial = Partial(
            self._bake,
            TOPIC,
            p,
            0,
            0,
            False,
            inc.canary if inc else _EMPTY,
            inc.baseline if inc else _EMPTY,
            max_time,
            inc.cells if inc else {},
            clock,
            now_s - self._last_data_s[p] >= IDLE_AFTER_S,
            self.partitions,
        )
        return Flushed(partial, inc, tick, self.true_clock_s)

    def _batch(self, r: Records) -> RecordBatch:
        """The decoded batch ingest would have for these records (epoch event times)."""
        n = r.n
        return RecordBatch(
            index=np.arange(n, dtype=np.int64),
            time_s=EVENT_TIME_START_S + r.time_s,
            latency_s=r.latency_s,
            error=r.error,
            status=np.full(n, -1, dtype=np.int32),
            service=Categorical(np.zeros(n, dtype=np.int32), ("shop",)),
            version=Categorical(r.cohort.astype(np.int32), VERSIONS),
            cohort=None,
            bake=None,
            segments={
                "zone": Categorical(r.zone.astype(np.int32), self._categories["zone"]),
                "route": Categorical(r.route.astype(np.int32), self._categories["route"]),
                "host": Categorical(r.pod.astype(np.int32), self._categories["host"]),
            },
        )
