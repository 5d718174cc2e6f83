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
from dataclasses import dataclass
from typing import Any

import orjson

from detectors.summary import NUM_BUCKETS, CohortSummary
from monitor.errors import MonitorError

__all__ = ["PARTIAL_FORMAT_VERSION", "BlockFold", "Partial", "PartialError"]

PARTIAL_FORMAT_VERSION = 1


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

    def encode(self) -> bytes:
        return orjson.dumps(
            {
                "v": PARTIAL_FORMAT_VERSION,
                "bake": self.bake,
                "topic": self.topic,
                "partition": self.partition,
                "block": self.block,
                "upto": self.upto,
                "complete": self.complete,
                "canary": self.canary.to_dict(),
                "baseline": self.baseline.to_dict(),
                "t": self.max_event_time_s,
            }
        )

    @classmethod
    def decode(cls, raw: bytes) -> Partial:
        try:
            d = orjson.loads(raw)
            if d.get("v") != PARTIAL_FORMAT_VERSION:
                msg = f"unsupported partial format version {d.get('v')!r}"
                raise PartialError(msg)
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
            )
        except PartialError:
            raise
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
            msg = f"malformed partial: {exc}"
            raise PartialError(msg) from exc


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


class BlockFold:
    """The judge's idempotent fold of one bake's partials."""

    def __init__(self) -> None:
        self._open: dict[tuple[str, int, int], _Open] = {}
        self._sealed: dict[tuple[str, int], int] = {}  # highest sealed block per source partition
        self.ignored = 0
        self.inconsistent = 0

    def fold(self, p: Partial) -> tuple[CohortSummary, CohortSummary] | None:
        """Fold a partial; returns the (canary, baseline) increment it adds, or None."""
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
            inc = (p.canary.copy(), p.baseline.copy())
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
            inc = (c, b)
        if p.complete:
            self._sealed[tp] = p.block
            for k in [
                k for k in self._open if k[0] == p.topic and k[1] == p.partition and k[2] <= p.block
            ]:
                del self._open[k]
        else:
            self._open[key] = _Open(p.upto, p.canary, p.baseline)
        if inc is None:
            self.ignored += 1
        return inc

    def state_dict(self) -> dict[str, Any]:
        return {
            "open": [
                [t, part, blk, o.upto, o.canary.to_dict(), o.baseline.to_dict()]
                for (t, part, blk), o in sorted(self._open.items())
            ],
            "sealed": [[t, part, blk] for (t, part), blk in sorted(self._sealed.items())],
            "ignored": self.ignored,
            "inconsistent": self.inconsistent,
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> BlockFold:
        f = cls()
        for t, part, blk, upto, c, b in state["open"]:
            f._open[(str(t), int(part), int(blk))] = _Open(
                int(upto), CohortSummary.from_dict(c), CohortSummary.from_dict(b)
            )
        for t, part, blk in state["sealed"]:
            f._sealed[(str(t), int(part))] = int(blk)
        f.ignored = int(state.get("ignored", 0))
        f.inconsistent = int(state.get("inconsistent", 0))
        return f
