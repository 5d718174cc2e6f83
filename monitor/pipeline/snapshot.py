"""The judge's per-bake snapshot: its private changelog in the compacted state topic.

A snapshot holds everything the judge needs to continue a bake after a restart or a rebalance:
the verdict engine's state (detectors, totals, status), the :class:`BlockFold` of the partials,
and the offset of the last partial it folded (later ones are folded again, earlier ones
skipped). It is versioned like :class:`~monitor.pipeline.partials.Partial`; the verdict
document, the public read model, is a separate message in the verdicts topic.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from monitor.errors import MonitorError
from monitor.pipeline.partials import BlockFold
from monitor.verdict.engine import BakeVerdict

__all__ = [
    "LEGACY_FORMAT_VERSION",
    "SNAPSHOT_FORMAT_VERSION",
    "Retired",
    "Snapshot",
    "SnapshotError",
]

# 2: its own topic. 1 was {"document", "state"} in the verdicts topic; it is still read, so an
# upgrade in the middle of a bake continues the bake instead of restarting its totals.
SNAPSHOT_FORMAT_VERSION = 2
LEGACY_FORMAT_VERSION = 1


class SnapshotError(MonitorError):
    """A state message that cannot be decoded."""


@dataclass(frozen=True)
class Retired:
    """A bake retired from the live set ``retention_s`` after it was decided or cancelled: its
    last document stays readable, the judge keeps only this marker (later partials are
    skipped)."""

    bake: str
    partials_offset: int
    retired_at_s: float

    def encode(self) -> bytes:
        return orjson.dumps(
            {
                "v": SNAPSHOT_FORMAT_VERSION,
                "retired": self.bake,
                "partials_offset": self.partials_offset,
                "retired_at": self.retired_at_s,
            }
        )


@dataclass(frozen=True)
class Snapshot:
    """One bake's judge state; ``final_since_s``: wall-clock time the judge first saw it
    decided or cancelled (the start of its ``retention_s``)."""

    verdict: BakeVerdict
    fold: BlockFold
    partials_offset: int
    final_since_s: float | None = None

    def encode(self) -> bytes:
        d = {
            "v": SNAPSHOT_FORMAT_VERSION,
            "verdict": self.verdict.state_dict(),
            "fold": self.fold.state_dict(),
            "partials_offset": self.partials_offset,
        }
        if self.final_since_s is not None:
            d["final_since"] = self.final_since_s
        return orjson.dumps(d)

    @classmethod
    def decode_legacy(cls, raw: bytes) -> Snapshot | None:
        """A v1 snapshot from a verdicts-topic value ``{"document", "state"}``; None when the
        value is a plain (v2) document. Raises :class:`SnapshotError` if it is unreadable."""
        try:
            d = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            msg = f"malformed verdicts value: {exc}"
            raise SnapshotError(msg) from exc
        if not isinstance(d, dict) or "state" not in d:
            return None
        state = d["state"]
        if not isinstance(state, dict) or state.get("v") != LEGACY_FORMAT_VERSION:
            version = state.get("v") if isinstance(state, dict) else None
            msg = f"unsupported legacy snapshot version {version!r}"
            raise SnapshotError(msg, value=version)
        return cls.decode(orjson.dumps({**state, "v": SNAPSHOT_FORMAT_VERSION}))

    @classmethod
    def decode(cls, raw: bytes) -> Snapshot:
        """A bake's snapshot; :class:`SnapshotError` for anything else (a retirement too)."""
        s = cls.decode_any(raw)
        if isinstance(s, Retired):
            msg = f'bake "{s.bake}" is retired: its state holds no snapshot'
            raise SnapshotError(msg)
        return s

    @classmethod
    def decode_any(cls, raw: bytes) -> Snapshot | Retired:
        """A state-topic value: a snapshot, or a retired bake's marker."""
        try:
            d = orjson.loads(raw)
            if not isinstance(d, dict) or d.get("v") != SNAPSHOT_FORMAT_VERSION:
                version = d.get("v") if isinstance(d, dict) else None
                msg = f"unsupported snapshot format version {version!r}"
                raise SnapshotError(msg, value=version)
            if "retired" in d:
                return Retired(str(d["retired"]), int(d["partials_offset"]), float(d["retired_at"]))
            since = d.get("final_since")
            return cls(
                BakeVerdict.from_state(d["verdict"]),
                BlockFold.from_state(d["fold"]),
                int(d["partials_offset"]),
                None if since is None else float(since),
            )
        except SnapshotError:
            raise
        except (
            orjson.JSONDecodeError,
            KeyError,
            TypeError,
            ValueError,
            AttributeError,
            MonitorError,
        ) as exc:
            msg = f"malformed snapshot: {exc}"
            raise SnapshotError(msg) from exc
