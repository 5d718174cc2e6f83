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

__all__ = ["SNAPSHOT_FORMAT_VERSION", "Snapshot", "SnapshotError"]

# 2: its own topic (1 was {"document", "state"} in the verdicts topic).
SNAPSHOT_FORMAT_VERSION = 2


class SnapshotError(MonitorError):
    """A state message that cannot be decoded."""


@dataclass(frozen=True)
class Snapshot:
    """One bake's judge state."""

    verdict: BakeVerdict
    fold: BlockFold
    partials_offset: int

    def encode(self) -> bytes:
        return orjson.dumps(
            {
                "v": SNAPSHOT_FORMAT_VERSION,
                "verdict": self.verdict.state_dict(),
                "fold": self.fold.state_dict(),
                "partials_offset": self.partials_offset,
            }
        )

    @classmethod
    def decode(cls, raw: bytes) -> Snapshot:
        try:
            d = orjson.loads(raw)
            if not isinstance(d, dict) or d.get("v") != SNAPSHOT_FORMAT_VERSION:
                version = d.get("v") if isinstance(d, dict) else None
                msg = f"unsupported snapshot format version {version!r}"
                raise SnapshotError(msg, value=version)
            return cls(
                BakeVerdict.from_state(d["verdict"]),
                BlockFold.from_state(d["fold"]),
                int(d["partials_offset"]),
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
