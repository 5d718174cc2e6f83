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

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import orjson

from detectors.summary import NUM_BUCKETS, CohortSummary
from monitor.errors import MonitorError
from monitor.pipeline.cellcodec import (
    CellPairs,
    _cell_rows,
    _decode_cells,
    _decode_rows_many,
    _encode_cells,
)

__all__ = [
    "BUNDLE_FORMAT_VERSION",
    "PARTIAL_FORMAT_VERSION",
    "BlockFold",
    "Bundle",
    "CellPairs",
    "Clock",
    "Increment",
    "Partial",
    "PartialError",
    "decode_message",
    "encode_partial",
    "partials_in",
]

# 2 adds the evidence cells (window, stratum) and the source's clock; 3 writes the cells as rows
# with sparse, delta-coded histograms (see :func:`_cell_rows`). 1 and 2 are still read.
PARTIAL_FORMAT_VERSION = 3
# 4: a bundle, one message per bake and flush whose "partials" are format-3 partials of the
# bake's blocks (see :class:`Bundle`). Judges read it from this version on: upgrade them first.
BUNDLE_FORMAT_VERSION = 4
_READABLE_VERSIONS = (1, 2, 3, BUNDLE_FORMAT_VERSION)


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
            self.canary.to_dict(),
            self.baseline.to_dict(),
            _cell_rows(self.cells),
            bake=self.bake,
            topic=self.topic,
            partition=self.partition,
            block=self.block,
            upto=self.upto,
            complete=self.complete,
            max_event_time_s=self.max_event_time_s,
            progress_s=self.progress_s,
            idle=self.idle,
            source_partitions=self.source_partitions,
        )

    @classmethod
    def decode(cls, raw: bytes) -> Partial:
        msg = decode_message(raw)
        if not isinstance(msg, Partial):
            err = f"a {type(msg).__name__.lower()} message is not a partial"
            raise PartialError(err)
        return msg

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], cells: CellPairs | None = None) -> Partial:
        """The partial of a decoded message; ``cells``, when given, are its cells already
        decoded (a bundle decodes all its partials' cells at once)."""
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
            cells=cells
            if cells is not None
            else _decode_cells(d.get("cells", []), rows=d["v"] >= 3),
            progress_s=None if d.get("progress") is None else float(d["progress"]),
            idle=bool(d.get("idle", False)),
            source_partitions=None if d.get("parts") is None else int(d["parts"]),
        )


def encode_partial(
    canary: dict[str, Any],
    baseline: dict[str, Any],
    cells_json: bytes,
    *,
    bake: str,
    topic: str,
    partition: int,
    block: int,
    upto: int,
    complete: bool,
    max_event_time_s: float | None,
    progress_s: float | None,
    idle: bool,
    source_partitions: int | None,
) -> bytes:
    """A format-3 partial from its fields (those of :class:`Partial`), its totals as summary
    documents (:meth:`CohortSummary.to_dict`; histograms as lists or int64 arrays) and its
    cells' rows already encoded (:func:`_cell_rows`, or ingest's
    :class:`~monitor.pipeline.cells.BlockCells`): the one writer of the layout."""
    return orjson.dumps(
        {
            "v": PARTIAL_FORMAT_VERSION,
            "bake": bake,
            "topic": topic,
            "partition": partition,
            "block": block,
            "upto": upto,
            "complete": complete,
            "canary": canary,
            "baseline": baseline,
            "t": max_event_time_s,
            "progress": progress_s,
            "idle": idle,
            "parts": source_partitions,
            "cells": orjson.Fragment(cells_json),
        },
        option=orjson.OPT_SERIALIZE_NUMPY,  # ingest's totals come as arrays
    )


@dataclass(frozen=True)
class Bundle:
    """One bake's partials of one flush, one per block with new data, in one message: what a
    flush publishes per bake does not grow with the source partitions it reads (issue 13).
    The judge folds each as if it came alone, at the bundle's offset."""

    bake: str
    partials: tuple[Partial, ...]

    MAX_BYTES = 512 * 1024  # a bundle stays well inside Kafka's default 1 MB message limit

    @classmethod
    def chunks(cls, encoded: Sequence[bytes]) -> list[Sequence[bytes]]:
        """``encoded`` partials cut into runs of at most :attr:`MAX_BYTES` each (a larger
        partial goes alone, as without bundles), in order."""
        out: list[Sequence[bytes]] = []
        start, size = 0, 0
        for i, e in enumerate(encoded):
            if i > start and size + len(e) > cls.MAX_BYTES:
                out.append(encoded[start:i])
                start, size = i, 0
            size += len(e)
        if start < len(encoded):
            out.append(encoded[start:])
        return out

    @staticmethod
    def encode_parts(bake: str, encoded: Sequence[bytes]) -> bytes:
        """The message of ``bake``'s encoded partials: a bundle, or the partial itself when
        there is one."""
        if len(encoded) == 1:
            return encoded[0]
        return orjson.dumps(
            {
                "v": BUNDLE_FORMAT_VERSION,
                "bake": bake,
                "partials": [orjson.Fragment(e) for e in encoded],
            }
        )

    def encode(self) -> bytes:
        return self.encode_parts(self.bake, [p.encode() for p in self.partials])

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Bundle:
        bake = str(d["bake"])
        parts = d["partials"]
        if not isinstance(parts, list) or not parts:
            msg = "a bundle's partials must be a non-empty list"
            raise PartialError(msg)
        if any(not isinstance(e, dict) or e.get("v") != PARTIAL_FORMAT_VERSION for e in parts):
            msg = f"a bundle holds format-{PARTIAL_FORMAT_VERSION} partials"
            raise PartialError(msg)
        out = []
        for e, cells in zip(
            parts, _decode_rows_many([e.get("cells", []) for e in parts]), strict=True
        ):
            p = Partial.from_dict(e, cells)
            if p.bake != bake:
                msg = f'a bundle of bake "{bake}" holds a partial of "{p.bake}"'
                raise PartialError(msg)
            out.append(p)
        return cls(bake, tuple(out))


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


def partials_in(msg: Partial | Bundle | Clock) -> tuple[Partial, ...]:
    """The partials a decoded message carries: one, a bundle's, or none (a clock)."""
    if isinstance(msg, Partial):
        return (msg,)
    return msg.partials if isinstance(msg, Bundle) else ()


def decode_message(raw: bytes) -> Partial | Bundle | Clock:
    """A partials-topic message: a bake's :class:`Partial` or :class:`Bundle` of them, or a
    source :class:`Clock`."""
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
        if d["v"] == BUNDLE_FORMAT_VERSION:
            return Bundle.from_dict(d)
        return Partial.from_dict(d)
    except PartialError:
        raise
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
        msg = f"malformed partial: {exc}"
        raise PartialError(msg) from exc


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
