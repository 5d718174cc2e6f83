"""Requests → the increments the judge folds, shaped like bakemon's ingest makes them today.

Ingest keeps, per source partition, what it read since the last flush and publishes it every
``flush_interval_s``; the judge folds each partial into :meth:`BakeVerdict.update` as one
increment, with the partial's largest event time. So an increment is "what one partition's
records that reached ingest within one flush interval held": both cohorts as they happen to fall
into that partition, each record where its *arrival* (event time plus shipper lag) puts it. In a
flush the partitions' partials reach the judge in no fixed order, here a random one.

The real partial carries the block's cumulative largest event time, not the increment's; the
verdict keeps the running maximum, so the two give the same bake clock.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from benchmarks.production.traffic import CANARY, Records, TrafficGenerator
from detectors.summary import CohortSummary


@dataclass(frozen=True)
class Increment:
    """One folded partial: the cohorts' summaries, the event time it carries, where it came from."""

    canary: CohortSummary
    baseline: CohortSummary
    event_time_s: float  # the partial's largest event time (a skewed clock included)
    clock_s: float  # the true event time reached so far (skewed records excluded)
    tick: int  # flush interval it was published in
    partition: int


class PartialStream:
    """Cuts a bake's records into the judge's increments, flush by flush."""

    def __init__(self, generator: TrafficGenerator, rng: np.random.Generator) -> None:
        self._gen = generator
        self._rng = rng
        t = generator.traffic
        self._partitions = t.partitions
        self._flush_s = t.flush_interval_s
        self._pending = Records.empty()
        self._clock_s = -math.inf
        self._segment_names = {
            "zone": [z.name for z in t.zones],
            "route": [r.name for r in t.routes],
            "host": generator.host_names,
        }

    @property
    def pending(self) -> int:
        """Records drawn that have not reached ingest yet (shipper lag)."""
        return self._pending.n

    def push(self, recs: Records, ready_s: float) -> list[Increment]:
        """Add ``recs``; return the increments of every flush that ends by ``ready_s``.

        The caller guarantees that every record arriving before ``ready_s`` has been pushed
        (records never arrive before their event time).
        """
        every = Records.concat([self._pending, recs])
        cut = math.floor(ready_s / self._flush_s) * self._flush_s
        ready = every.arrival_s < cut
        self._pending = every.select(~ready)
        return self._increments(every.select(ready))

    def _increments(self, r: Records) -> list[Increment]:
        if r.n == 0:
            return []
        tick = np.floor(r.arrival_s / self._flush_s).astype(np.int64)
        keys, inverse = np.unique(tick * self._partitions + r.partition, return_inverse=True)
        # The judge's order: flush by flush; within a flush the partitions in a random order.
        order = np.lexsort((self._rng.random(keys.size), keys // self._partitions))
        rank = np.empty(keys.size, dtype=np.int64)
        rank[order] = np.arange(keys.size)
        group = rank[inverse.ravel()]
        n = keys.size
        segments = {
            "zone": (r.zone, self._segment_names["zone"]),
            "route": (r.route, self._segment_names["route"]),
            "host": (r.pod, self._segment_names["host"]),
        }
        summaries = CohortSummary.from_groups(
            group * 2 + (r.cohort == CANARY), 2 * n, r.latency_s, r.error, segments
        )
        event_max = np.full(n, -np.inf)
        np.maximum.at(event_max, group, r.time_s)
        clock = np.full(n, -np.inf)
        np.maximum.at(clock, group[~r.skewed], r.time_s[~r.skewed])
        clock = np.maximum.accumulate(np.maximum(clock, self._clock_s))
        self._clock_s = float(clock[-1])
        keys_in_order = keys[order]
        return [
            Increment(
                summaries[2 * j + 1],
                summaries[2 * j],
                float(event_max[j]),
                float(clock[j]),
                int(keys_in_order[j] // self._partitions),
                int(keys_in_order[j] % self._partitions),
            )
            for j in range(n)
        ]
