"""Partials of bakes the judge's registry does not know yet, held instead of skipped.

A partial can arrive before its bake's spec (the registry follower is a little behind, or the
spec was published after traffic started). The judge holds such partials per partials
partition, in offset order, and never commits past the earliest held one; it folds them in
order once the bake appears, or dead-letters them when the bake is still unknown after
``hold_s`` of the judge's clock. A bake whose partials expired is remembered, so its later
partials are dead-lettered at once instead of filling memory for another ``hold_s``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from monitor.errors import ConfigError

__all__ = ["Held", "HeldPartials"]


@dataclass(frozen=True, slots=True)
class Held:
    """One held partial, as read (it is decoded again when folded)."""

    partition: int
    offset: int
    bake: str
    raw: bytes
    deadline_s: float


class HeldPartials:
    """Held partials per partials partition, with their deadlines."""

    def __init__(self, hold_s: float) -> None:
        if not hold_s > 0:
            msg = f"hold_s must be > 0, got {hold_s}"
            raise ConfigError(msg, value=hold_s)
        self.hold_s = hold_s
        self._held: dict[int, list[Held]] = {}
        self._expired: dict[str, int] = {}  # bake id -> its partials partition
        self._next_deadline_s = math.inf

    def __len__(self) -> int:
        return sum(len(v) for v in self._held.values())

    def hold(self, partition: int, offset: int, bake: str, raw: bytes, now_s: float) -> None:
        deadline = now_s + self.hold_s
        self._held.setdefault(partition, []).append(Held(partition, offset, bake, raw, deadline))
        self._next_deadline_s = min(self._next_deadline_s, deadline)

    def expired(self, bake: str) -> bool:
        """The bake's held partials ran out of time: dead-letter its partials at once."""
        return bake in self._expired

    def earliest(self, partition: int) -> int | None:
        """Offset of the earliest held partial of ``partition`` (the commit may not pass it)."""
        items = self._held.get(partition)
        return items[0].offset if items else None

    def drop(self, partition: int) -> None:
        """Forget a partition (revoked or re-assigned: it is read again from its commit)."""
        self._held.pop(partition, None)
        self._expired = {b: p for b, p in self._expired.items() if p != partition}

    def take(
        self, known: Callable[[str], bool], now_s: float, *, registry_changed: bool
    ) -> tuple[list[Held], list[Held]]:
        """(partials to fold now, in offset order; partials to dead-letter), removed from the
        hold. Only looks when the registry changed or a deadline passed."""
        if not self._held or not (registry_changed or now_s >= self._next_deadline_s):
            return [], []
        release: list[Held] = []
        dead: list[Held] = []
        next_deadline = math.inf
        for partition, items in self._held.items():
            expired = {h.bake for h in items if now_s >= h.deadline_s and not known(h.bake)}
            keep: list[Held] = []
            for h in items:
                if known(h.bake):
                    release.append(h)
                elif h.bake in expired:
                    dead.append(h)
                    self._expired[h.bake] = partition
                else:
                    keep.append(h)
                    next_deadline = min(next_deadline, h.deadline_s)
            self._held[partition] = keep
        self._held = {p: v for p, v in self._held.items() if v}
        self._expired = {b: p for b, p in self._expired.items() if not known(b)}
        self._next_deadline_s = next_deadline
        return release, dead
