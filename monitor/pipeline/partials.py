"""Partials: the exactly-once unit between ingest and judge (ARCHITECTURE.md §4).

Source offsets of each (topic, partition) are cut into fixed blocks of ``block_offsets``. A
partial is the *cumulative* summary, per bake and cohort, of the records of one block from its
first offset up to (excluding) ``upto``. Ingest republishes it as ``upto`` grows and marks it
``complete`` once the block is done; it commits a source partition only at the start of its
oldest open block, so after a crash the block is recomputed from its start.

The judge's :class:`BlockFold` keeps, per (topic, partition, block), the partial with the largest
``upto``; a complete partial seals its block. Feeding the detectors only the difference to the
previously kept partial makes every source offset count exactly once in the totals, whatever
crashes, rebalances or zombie producers did to the partials stream.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from itertools import chain, repeat
from typing import Any, NamedTuple, Protocol

import numpy as np
import orjson

from detectors.summary import NUM_BUCKETS, CohortSummary
from monitor.errors import MonitorError

__all__ = [
    "PARTIAL_FORMAT_VERSION",
    "BlockFold",
    "CellPairs",
    "Clock",
    "Increment",
    "Partial",
    "PartialError",
    "decode_message",
    "encode_partial",
]

# 2 adds the evidence cells (window, stratum) and the source's clock; 3 writes the cells as rows
# with sparse, delta-coded histograms (see :func:`_cell_rows`). 1 and 2 are still read.
PARTIAL_FORMAT_VERSION = 3
_READABLE_VERSIONS = (1, 2, 3)

CellKey = tuple[int, str]  # (window index, stratum label)
# (window index, stratum label) → (canary, baseline)
CellPairs = dict[CellKey, tuple[CohortSummary, CohortSummary]]
_Stamp = tuple[int, int, int, int]  # requests and errors of (canary, baseline)


class PartialError(MonitorError):
    """A partials message that cannot be decoded."""


@dataclass(frozen=True)
class Partial:
    """Cumulative summaries of one bake over source offsets ``[block * B, upto)``."""

    bake: str
    topic: str
    partition: int
    block: int
    upto: int
    complete: bool
    canary: CohortSummary
    baseline: CohortSummary
    max_event_time_s: float | None
    cells: CellPairs = field(default_factory=dict)
    progress_s: float | None = None  # the source partition's event-time clock at ``upto``
    idle: bool = False  # the source partition has no new records: its clock holds nothing back
    source_partitions: int | None = None  # partitions of ``topic``: the judge waits for each

    def encode(self) -> bytes:
        """The message value (format 3)."""
        return encode_partial(
            self, self.canary.to_dict(), self.baseline.to_dict(), _cell_rows(self.cells)
        )

    @classmethod
    def decode(cls, raw: bytes) -> Partial:
        msg = decode_message(raw)
        if isinstance(msg, Clock):
            err = "a clock message is not a partial"
            raise PartialError(err)
        return msg

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Partial:
        return cls(
            bake=str(d["bake"]),
            topic=str(d["topic"]),
            partition=int(d["partition"]),
            block=int(d["block"]),
            upto=int(d["upto"]),
            complete=bool(d["complete"]),
            canary=CohortSummary.from_dict(d["canary"]),
            baseline=CohortSummary.from_dict(d["baseline"]),
            max_event_time_s=None if d.get("t") is None else float(d["t"]),
            cells=_decode_cells(d.get("cells", []), rows=d["v"] >= 3),
            progress_s=None if d.get("progress") is None else float(d["progress"]),
            idle=bool(d.get("idle", False)),
            source_partitions=None if d.get("parts") is None else int(d["parts"]),
        )


class PartialHeader(Protocol):
    """The fields of a partial besides its summaries (a :class:`Partial` has them)."""

    @property
    def bake(self) -> str: ...
    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def block(self) -> int: ...
    @property
    def upto(self) -> int: ...
    @property
    def complete(self) -> bool: ...
    @property
    def max_event_time_s(self) -> float | None: ...
    @property
    def progress_s(self) -> float | None: ...
    @property
    def idle(self) -> bool: ...
    @property
    def source_partitions(self) -> int | None: ...


def encode_partial(
    h: PartialHeader, canary: dict[str, Any], baseline: dict[str, Any], cells_json: bytes
) -> bytes:
    """A format-3 partial from its header, its totals as summary documents
    (:meth:`CohortSummary.to_dict`) and its cells' rows already encoded (:func:`_cell_rows`,
    or ingest's :class:`~monitor.pipeline.cells.BlockCells`): the one writer of the layout."""
    return orjson.dumps(
        {
            "v": PARTIAL_FORMAT_VERSION,
            "bake": h.bake,
            "topic": h.topic,
            "partition": h.partition,
            "block": h.block,
            "upto": h.upto,
            "complete": h.complete,
            "canary": canary,
            "baseline": baseline,
            "t": h.max_event_time_s,
            "progress": h.progress_s,
            "idle": h.idle,
            "parts": h.source_partitions,
            "cells": orjson.Fragment(cells_json),
        }
    )


@dataclass(frozen=True)
class Clock:
    """A source partition's event-time clock, for every bake of one partials partition.

    Ingest sends one per assigned source partition to every partials partition at every flush,
    after that flush's partials: a bake hears the clocks of partitions that carry none of its
    records without a partial of its own, so the messages per flush do not grow with the
    number of bakes (STATISTICS.md §7.1, docs/exactly-once.md "Clocks"). Applying a clock
    twice changes nothing (a source's clock only moves forward)."""

    topic: str
    partition: int
    progress_s: float | None  # None: the partition has had no record yet
    idle: bool
    source_partitions: int | None

    KEY = b"~clock"  # not a bake id (ids are [A-Za-z0-9._-])

    def encode(self) -> bytes:
        return orjson.dumps(
            {
                "v": PARTIAL_FORMAT_VERSION,
                "clock": True,
                "topic": self.topic,
                "partition": self.partition,
                "progress": self.progress_s,
                "idle": self.idle,
                "parts": self.source_partitions,
            }
        )

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Clock:
        return cls(
            topic=str(d["topic"]),
            partition=int(d["partition"]),
            progress_s=None if d.get("progress") is None else float(d["progress"]),
            idle=bool(d.get("idle", False)),
            source_partitions=None if d.get("parts") is None else int(d["parts"]),
        )


def decode_message(raw: bytes) -> Partial | Clock:
    """A partials-topic message: a bake's :class:`Partial` or a source :class:`Clock`."""
    try:
        d = orjson.loads(raw)
        if not isinstance(d, dict):
            msg = "a partials message must be a JSON object"
            raise PartialError(msg)
        if d.get("v") not in _READABLE_VERSIONS:
            msg = f"unsupported partial format version {d.get('v')!r}"
            raise PartialError(msg)
        if d.get("clock") is True:
            return Clock.from_dict(d)
        return Partial.from_dict(d)
    except PartialError:
        raise
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
        msg = f"malformed partial: {exc}"
        raise PartialError(msg) from exc


def _encode_cells(cells: CellPairs) -> dict[str, list[Any]]:
    """The cells as columns: window ``k``, ``stratum``, per cell ``[n_c, n_b]`` requests and
    ``[e_c, e_b]`` errors, and the histograms as ``[row, bucket, count]`` triplets (row
    ``2·cell + cohort``, canary 0), read from each summary's nonzero buckets (a sparse one is
    never made dense: the judge writes these at every checkpoint of a bake)."""
    items = sorted(cells.items())
    summaries = [s for _, pair in items for s in pair]
    triplets: list[int] = []
    for row, s in enumerate(summaries):
        triplets += chain.from_iterable(zip(repeat(row), *s.buckets()))
    return {
        "k": [k for (k, _), _ in items],
        "s": [stratum for (_, stratum), _ in items],
        "n": [s.requests for s in summaries],
        "e": [s.errors for s in summaries],
        "h": triplets,
    }


def _decode_cells(raw: Any, *, rows: bool = False) -> CellPairs:
    """Cells of a format-3 partial (``rows``), or of format 2 / a judge snapshot (columns)."""
    if rows:
        return _decode_rows(raw)
    if isinstance(raw, list):  # written before the columnar form: [[k, stratum, c, b], ...]
        return {
            (int(k), str(st)): (CohortSummary.from_dict(c), CohortSummary.from_dict(b))
            for k, st, c, b in raw
        }
    ks, strata, ns, es = raw["k"], raw["s"], raw["n"], raw["e"]
    m = len(ks)
    if not (len(strata) == m and len(ns) == len(es) == 2 * m):
        msg = "cells: columns of different lengths"
        raise ValueError(msg)
    trip = np.asarray(raw["h"], dtype=np.int64).reshape(-1, 3)
    if trip.size and (
        trip[:, 0].min() < 0
        or trip[:, 0].max() >= 2 * m
        or trip[:, 1].min() < 0
        or trip[:, 1].max() >= NUM_BUCKETS
    ):
        msg = "cells: histogram triplet out of range"
        raise ValueError(msg)
    trip = trip[np.argsort(trip[:, 0], kind="stable")]
    bounds = np.searchsorted(trip[:, 0], np.arange(2 * m + 1)).tolist()
    buckets, counts = trip[:, 1].tolist(), trip[:, 2].tolist()

    def summary(j: int) -> CohortSummary:
        lo, hi = bounds[j], bounds[j + 1]
        return CohortSummary.from_buckets(int(ns[j]), int(es[j]), buckets[lo:hi], counts[lo:hi])

    return {(int(ks[i]), str(strata[i])): (summary(2 * i), summary(2 * i + 1)) for i in range(m)}


def _cell_rows(cells: CellPairs) -> bytes:
    """The cells of format 3 as a JSON array of rows ``[k, stratum, n_c, e_c, n_b, e_b, h_c,
    h_b]``, ordered by (k, stratum); ``h`` is a sparse histogram (:func:`_delta_row`). Ingest
    writes the same rows from its arrays (:class:`~monitor.pipeline.cells.BlockCells`)."""
    rows = [
        orjson.dumps([k, stratum, *_stamp(c, b), _delta_row(c), _delta_row(b)])
        for (k, stratum), (c, b) in sorted(cells.items())
    ]
    return b"[" + b",".join(rows) + b"]"


def _stamp(c: CohortSummary, b: CohortSummary) -> _Stamp:
    return (c.requests, c.errors, b.requests, b.errors)


def _delta_row(s: CohortSummary) -> list[int]:
    """A summary's histogram, sparse and delta-coded: ``[b_0, c_0, b_1 - b_0, c_1, ...]`` for
    its nonzero buckets ``b_0 < b_1 < ...`` (the first as an index, each next one as the step
    from the previous) with their counts ``c_j``; read from the summary's nonzero buckets, so a
    sparse summary (a small service's cell: a few buckets) is never made dense."""
    idx, cnt = s.buckets()
    out: list[int] = []
    prev = 0
    for b, c in zip(idx, cnt, strict=True):
        out += (b - prev, c)
        prev = b
    return out


def _sparse_of_rows(rows: list[Any]) -> tuple[list[int], list[int], list[int]]:
    """The inverse of :func:`_delta_row` for many rows at once, checked: all rows' nonzero
    buckets and counts, row ``i`` being ``[bounds[i], bounds[i + 1])`` of them."""
    pairs_per_row = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))
    if pairs_per_row.size == 0 or not pairs_per_row.any():
        return [], [], [0] * (len(rows) + 1)
    if (pairs_per_row % 2).any():
        msg = "cells: a sparse histogram of odd length"
        raise ValueError(msg)
    pairs_per_row //= 2
    flat = np.asarray(list(chain.from_iterable(rows)), dtype=np.int64).reshape(-1, 2)
    step, count = flat[:, 0], flat[:, 1]
    used = pairs_per_row > 0
    starts = (np.cumsum(pairs_per_row) - pairs_per_row)[used]  # first pair of each used row
    min_step = np.ones(step.size, dtype=np.int64)  # strictly increasing buckets within a row
    min_step[starts] = 0
    if (step < min_step).any() or step.max() >= NUM_BUCKETS or count.min() < 0:
        msg = "cells: sparse histogram out of range"
        raise ValueError(msg)
    total = np.cumsum(step)
    index = total - np.repeat((total - step)[starts], pairs_per_row[used])  # restart per row
    if index.max() >= NUM_BUCKETS:
        msg = "cells: sparse histogram out of range"
        raise ValueError(msg)
    bounds = [0, *np.cumsum(pairs_per_row).tolist()]
    return index.tolist(), count.tolist(), bounds


def _decode_rows(raw: Any) -> CellPairs:
    """Cells of a format-3 partial, written by :func:`_cell_rows`."""
    if not isinstance(raw, list) or any(not isinstance(r, list) or len(r) != 8 for r in raw):
        msg = "cells: rows must be [k, stratum, n_c, e_c, n_b, e_b, h_c, h_b]"
        raise ValueError(msg)
    idx, cnt, bounds = _sparse_of_rows([h for r in raw for h in (r[6], r[7])])

    def summary(j: int, n: Any, e: Any) -> CohortSummary:
        lo, hi = bounds[j], bounds[j + 1]
        return CohortSummary.from_buckets(int(n), int(e), idx[lo:hi], cnt[lo:hi])

    out: CellPairs = {}
    for i, (k, stratum, n_c, e_c, n_b, e_b, _, _) in enumerate(raw):
        out[(int(k), str(stratum))] = (summary(2 * i, n_c, e_c), summary(2 * i + 1, n_b, e_b))
    return out


class Increment(NamedTuple):
    """What one folded partial adds: per cohort, and per evidence cell."""

    canary: CohortSummary
    baseline: CohortSummary
    cells: CellPairs


def _cell_difference(new: CellPairs, old: CellPairs) -> CellPairs:
    out: CellPairs = {}
    for key, (c, b) in new.items():
        prev = old.get(key)
        if prev is None:
            out[key] = (c.copy(), b.copy())
            continue
        dc, db = _positive_difference(c, prev[0]), _positive_difference(b, prev[1])
        if dc.requests or db.requests:
            out[key] = (dc, db)
    return out


def _positive_difference(new: CohortSummary, old: CohortSummary) -> CohortSummary:
    """``new - old``; where ``old`` is not contained in ``new`` (a recomputed block tagged under a
    different registry), the negative parts are dropped rather than double-counted."""
    try:
        return new - old
    except ValueError:
        hist = (new.hist - old.hist).clip(min=0)
        requests = max(new.requests - old.requests, 0)
        errors = min(max(new.errors - old.errors, 0), requests)
        out = CohortSummary(requests, errors, hist if hist.shape == (NUM_BUCKETS,) else None)
        return out


@dataclass
class _Open:
    upto: int
    canary: CohortSummary
    baseline: CohortSummary
    cells: CellPairs


class BlockFold:
    """The judge's idempotent fold of one bake's partials."""

    def __init__(self) -> None:
        self._open: dict[tuple[str, int, int], _Open] = {}
        self._sealed: dict[tuple[str, int], int] = {}  # highest sealed block per source partition
        self.ignored = 0
        self.inconsistent = 0

    def fold(self, p: Partial) -> Increment | None:
        """Fold a partial; returns the increment it adds (per cohort and cell), or None."""
        tp = (p.topic, p.partition)
        if p.block <= self._sealed.get(tp, -1):
            self.ignored += 1
            return None
        key = (p.topic, p.partition, p.block)
        prev = self._open.get(key)
        if prev is not None and p.upto < prev.upto:
            self.ignored += 1
            return None
        if prev is not None and p.upto == prev.upto:
            inc = None
        elif prev is None:
            inc = Increment(p.canary.copy(), p.baseline.copy(), _cell_difference(p.cells, {}))
        else:
            c, b = (
                _positive_difference(p.canary, prev.canary),
                _positive_difference(p.baseline, prev.baseline),
            )
            if (
                c.requests + prev.canary.requests != p.canary.requests
                or b.requests + prev.baseline.requests != p.baseline.requests
            ):
                self.inconsistent += 1
            inc = Increment(c, b, _cell_difference(p.cells, prev.cells))
        if p.complete:
            self._sealed[tp] = p.block
            for k in [
                k for k in self._open if k[0] == p.topic and k[1] == p.partition and k[2] <= p.block
            ]:
                del self._open[k]
        else:
            self._open[key] = _Open(p.upto, p.canary, p.baseline, p.cells)
        if inc is None:
            self.ignored += 1
        return inc

    def state_dict(self) -> dict[str, Any]:
        return {
            "open": [
                [
                    t,
                    part,
                    blk,
                    o.upto,
                    o.canary.to_dict(),
                    o.baseline.to_dict(),
                    _encode_cells(o.cells),
                ]
                for (t, part, blk), o in sorted(self._open.items())
            ],
            "sealed": [[t, part, blk] for (t, part), blk in sorted(self._sealed.items())],
            "ignored": self.ignored,
            "inconsistent": self.inconsistent,
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> BlockFold:
        f = cls()
        for t, part, blk, upto, c, b, *cells in state["open"]:
            f._open[(str(t), int(part), int(blk))] = _Open(
                int(upto),
                CohortSummary.from_dict(c),
                CohortSummary.from_dict(b),
                _decode_cells(cells[0]) if cells else {},
            )
        for t, part, blk in state["sealed"]:
            f._sealed[(str(t), int(part))] = int(blk)
        f.ignored = int(state.get("ignored", 0))
        f.inconsistent = int(state.get("inconsistent", 0))
        return f
