"""Event-time windows: the unit of evidence the detectors see (STATISTICS.md §7.1, §7.2).

Every request of a bake belongs to the window ``k = floor(event_time / window_s)`` and to a
stratum (its values of the policy's ``stratify`` segments, e.g. ``zone=eu-1|route=/api``).
Increments of both cohorts for the same (window, stratum) cell are added up as they arrive, in
any order and from any source partition, and a window is **closed** — handed to the detectors
once — when the bake's watermark passes its end plus ``allowed_lateness_s``. A cell that arrives
for an already closed window is counted as late (it is in the totals, never in the tests).
The watermark is the slowest busy source's clock (each source partition reports its own, see
:mod:`monitor.records.clock`; an idle one, read to its end without new records, holds nothing
back), so a partition read later than the others — a lagging shipper, a catch-up after an
outage, a topic keyed by pod — makes windows wait instead of making its records late.

At close, the strata of a window are its cells ordered by traffic (both cohorts, then label),
the first ``max_strata - 1`` kept and the rest merged into ``"other"``: merging strata chosen by
exposure alone keeps the conditional test valid. Everything here is a function of event times
and record contents, so a replay of the same records forms the same windows as the stream.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from detectors.summary import CohortSummary

__all__ = [
    "MAX_CELL_LABELS",
    "OTHER_STRATUM",
    "OVERFLOW_VALUE",
    "Cells",
    "ClosedWindow",
    "Warmup",
    "WindowBuffer",
    "merge_cells",
    "overflow_label",
]

OTHER_STRATUM = "other"
STATE_VERSION = 1

# (window index, stratum label) → (canary, baseline)
Cells = Mapping[tuple[int, str], tuple[CohortSummary, CohortSummary]]


@dataclass(frozen=True)
class ClosedWindow:
    """One closed window: its strata (label, canary, baseline) and its event-time span."""

    index: int
    start_s: float
    end_s: float
    strata: tuple[tuple[str, CohortSummary, CohortSummary], ...]
    cells: tuple[tuple[str, CohortSummary, CohortSummary], ...] = ()  # before strata merge

    def pooled(self) -> tuple[CohortSummary, CohortSummary]:
        """The window's (canary, baseline) over all strata."""
        c, b = CohortSummary(), CohortSummary()
        for _, cs, bs in self.strata:
            c.merge(cs)
            b.merge(bs)
        return c, b


class WindowBuffer:
    """Open windows of one bake, a watermark, and the late counts."""

    def __init__(
        self,
        window_s: float,
        allowed_lateness_s: float,
        max_strata: int,
        stratify: tuple[str, ...] | None = None,
    ) -> None:
        self.window_s = window_s
        self.allowed_lateness_s = allowed_lateness_s
        self.max_strata = max_strata
        self.stratify = stratify  # None: cell labels are strata as they are
        self._open: dict[int, dict[str, list[CohortSummary]]] = {}
        self._closed_upto = -1  # every window index <= this one is closed
        self.watermark_s = -math.inf
        # The watermark as the bake's document shows it: as of the last records folded or
        # window closed (a clock that closes nothing changes no document, see the judge).
        self.shown_watermark_s = -math.inf
        self._sources: dict[tuple[str, int], tuple[float, bool]] = {}  # → (clock, idle)
        self._expected: dict[str, int] = {}  # partitions per source topic
        self.late_canary = 0
        self.late_baseline = 0

    def source_idle(self, source: tuple[str, int]) -> bool | None:
        """Whether ``source`` was last heard idle (None: never heard)."""
        heard = self._sources.get(source)
        return None if heard is None else heard[1]

    @property
    def closed_upto(self) -> int:
        return self._closed_upto

    def add(self, cells: Cells) -> None:
        """Add cell increments; cells of closed windows only count as late."""
        for (k, stratum), (c, b) in cells.items():
            if k <= self._closed_upto:
                self.late_canary += c.requests
                self.late_baseline += b.requests
                continue
            pair = self._open.setdefault(k, {}).setdefault(
                stratum, [CohortSummary(), CohortSummary()]
            )
            pair[0].merge(c)
            pair[1].merge(b)

    def advance(
        self,
        progress_s: float | None,
        source: tuple[str, int] = ("", 0),
        *,
        idle: bool = False,
        of: int | None = None,
    ) -> list[ClosedWindow]:
        """Record ``source``'s clock (and whether it is idle; ``of`` = partitions of its topic),
        move the watermark to the slowest busy source's clock once every partition of every
        topic has reported (never back), and close what it passed, in order."""
        prev = self._sources.get(source)
        clock = -math.inf if prev is None else prev[0]
        if progress_s is not None and math.isfinite(progress_s):
            clock = max(clock, progress_s)
        self._sources[source] = (clock, idle)
        if of is not None:
            self._expected[source[0]] = max(self._expected.get(source[0], 0), of)
        heard: dict[str, int] = {}
        for topic, _ in self._sources:
            heard[topic] = heard.get(topic, 0) + 1
        if any(heard.get(t, 0) < n for t, n in self._expected.items()):
            return []
        busy = [c for c, i in self._sources.values() if not i]
        if busy:
            self.watermark_s = max(self.watermark_s, min(busy))
        elif self._sources:
            self.watermark_s = max(self.watermark_s, max(c for c, _ in self._sources.values()))
        if not math.isfinite(self.watermark_s):
            return []
        last = math.floor((self.watermark_s - self.allowed_lateness_s) / self.window_s) - 1
        if last <= self._closed_upto:
            return []
        closed = [self._close(k) for k in sorted(k for k in self._open if k <= last)]
        self._closed_upto = last
        return closed

    def _strata_of(self, cells: dict[str, list[CohortSummary]]) -> dict[str, list[CohortSummary]]:
        """Cells merged over the segments that are not strata (labels keep the strata's)."""
        if self.stratify is None:
            return cells
        keep = set(self.stratify)
        out: dict[str, list[CohortSummary]] = {}
        for label, (c, b) in cells.items():
            parts = [p for p in label.split("|") if p.split("=", 1)[0] in keep] if label else []
            key = "|".join(parts)
            have = out.get(key)
            if have is None:
                out[key] = [c.copy(), b.copy()]
            else:
                have[0].merge(c)
                have[1].merge(b)
        return out

    def _close(self, k: int) -> ClosedWindow:
        raw = self._open.pop(k)
        cells = self._strata_of(raw)
        ranked = sorted(
            cells.items(), key=lambda kv: (-(kv[1][0].requests + kv[1][1].requests), kv[0])
        )
        keep, rest = ranked[: self.max_strata - 1], ranked[self.max_strata - 1 :]
        if len(rest) == 1:
            keep, rest = ranked, []
        strata = [(label, c, b) for label, (c, b) in keep]
        if rest:
            oc, ob = CohortSummary(), CohortSummary()
            for _, (c, b) in rest:
                oc.merge(c)
                ob.merge(b)
            strata.append((OTHER_STRATUM, oc, ob))
        cell_list = tuple((label, c, b) for label, (c, b) in sorted(raw.items()))
        return ClosedWindow(k, k * self.window_s, (k + 1) * self.window_s, tuple(strata), cell_list)

    def close_through(self, event_time_s: float | None) -> None:
        """Treat every window up to the one holding ``event_time_s`` as already tested (a bake
        restored from state written before windows existed)."""
        if event_time_s is not None and math.isfinite(event_time_s):
            self._closed_upto = max(self._closed_upto, math.floor(event_time_s / self.window_s))
            self._open = {k: w for k, w in self._open.items() if k > self._closed_upto}

    def open_requests(self) -> tuple[int, int]:
        """(canary, baseline) requests waiting in open windows."""
        c = sum(p[0].requests for w in self._open.values() for p in w.values())
        b = sum(p[1].requests for w in self._open.values() for p in w.values())
        return c, b

    # -- state -------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "v": STATE_VERSION,
            "open": [
                [k, label, c.to_dict(), b.to_dict()]
                for k, w in sorted(self._open.items())
                for label, (c, b) in sorted(w.items())
            ],
            "closed_upto": self._closed_upto,
            "watermark_s": None if math.isinf(self.watermark_s) else self.watermark_s,
            "shown_s": None if math.isinf(self.shown_watermark_s) else self.shown_watermark_s,
            "sources": [
                [t, p, None if math.isinf(c) else c, i]
                for (t, p), (c, i) in sorted(self._sources.items())
            ],
            "expected": sorted(self._expected.items()),
            "late": [self.late_canary, self.late_baseline],
        }

    def restore(self, state: Mapping[str, Any]) -> None:
        """Load :meth:`state_dict` output into this (freshly built) buffer."""
        self._open = {}
        for k, label, c, b in state["open"]:
            w = self._open.setdefault(int(k), {})
            w[str(label)] = [CohortSummary.from_dict(c), CohortSummary.from_dict(b)]
        self._closed_upto = int(state["closed_upto"])
        wm = state["watermark_s"]
        self.watermark_s = -math.inf if wm is None else float(wm)
        shown = state.get("shown_s", wm)  # states before it: the watermark
        self.shown_watermark_s = -math.inf if shown is None else float(shown)
        self._sources = {
            (str(t), int(p)): (-math.inf if c is None else float(c), bool(i))
            for t, p, c, i in state.get("sources", [])
        }
        self._expected = {str(t): int(n) for t, n in state.get("expected", [])}
        self.late_canary, self.late_baseline = (int(x) for x in state["late"])


def single_cell(
    canary: CohortSummary, baseline: CohortSummary, event_time_s: float | None, window_s: float
) -> dict[tuple[int, str], tuple[CohortSummary, CohortSummary]]:
    """An increment without cells, as one cell of the window of ``event_time_s`` (callers that
    fold whole summaries, e.g. a notebook, keep working)."""
    if event_time_s is None or not math.isfinite(event_time_s):
        return {}
    return {(math.floor(event_time_s / window_s), ""): (canary, baseline)}


# A window's cells per bake and block at ingest: a segment with unbounded values (ids in a
# route) must not grow a partial past the message limit; the excess shares one label.
MAX_CELL_LABELS = 256
OVERFLOW_VALUE = "(other)"


def overflow_label(label: str) -> str:
    """``zone=a|route=/x`` → ``zone=(other)|route=(other)``: where excess cells go."""
    return "|".join(f"{part.partition('=')[0]}={OVERFLOW_VALUE}" for part in label.split("|"))


def merge_cells(
    into: dict[tuple[int, str], tuple[CohortSummary, CohortSummary]],
    cells: Iterable[tuple[tuple[int, str], tuple[CohortSummary, CohortSummary]]],
    max_labels: int | None = None,
) -> None:
    """Add ``cells`` into ``into``; a key seen for the first time takes the given summaries
    (not copies: hand over summaries nobody else keeps). With ``max_labels``, a window that
    already has that many labels takes a new one's summaries under :func:`overflow_label`."""
    items = list(cells)
    per_window: dict[int, int] | None = None
    if max_labels is not None and len(into) + len(items) > max_labels:
        per_window = {}
        for w, _ in into:
            per_window[w] = per_window.get(w, 0) + 1
    for key, (c, b) in items:
        have = into.get(key)
        if have is None and per_window is not None:
            w = key[0]
            if per_window.get(w, 0) >= max_labels:  # type: ignore[operator]
                key = (w, overflow_label(key[1]))
                have = into.get(key)
            if have is None:
                per_window[w] = per_window.get(w, 0) + 1
        if have is None:
            into[key] = (c, b)
        else:
            have[0].merge(c)
            have[1].merge(b)


class Warmup:
    """The canary warm-up (STATISTICS.md §7.6): closed windows are left out of the tests, whole,
    until the canary has served ``requests`` requests in earlier closed windows and ``seconds``
    of event time have passed since the start of its first window. Which windows are left out
    depends only on request counts and times, never on outcomes, so the tests stay valid."""

    def __init__(self, requests: int, seconds: float) -> None:
        self.requests = requests
        self.seconds = seconds
        self.first_canary_s: float | None = None
        self.seen_canary = 0
        self.excluded_canary = 0
        self.excluded_baseline = 0

    @property
    def enabled(self) -> bool:
        return self.requests > 0 or self.seconds > 0

    def excludes(self, start_s: float, canary: int, baseline: int) -> bool:
        """Whether the closed window starting at ``start_s`` (with these request counts) is
        left out; counts it either way."""
        if canary and self.first_canary_s is None:
            self.first_canary_s = start_s
        warming = self.enabled and (
            self.seen_canary < self.requests
            or self.first_canary_s is None
            or start_s < self.first_canary_s + self.seconds
        )
        self.seen_canary += canary
        if warming:
            self.excluded_canary += canary
            self.excluded_baseline += baseline
        return warming

    @property
    def warming(self) -> bool:
        """Every canary request seen so far was left out (the warm-up is not over)."""
        return self.enabled and self.excluded_canary >= self.seen_canary

    def reason(self) -> str:
        parts = []
        if self.requests:
            parts.append(f"{self.seen_canary:,} of {self.requests:,} requests")
        if self.seconds:
            parts.append(f"{self.seconds:g}s from its first window")
        return f"canary warm-up: {' and '.join(parts)} left out of the tests"

    def state_dict(self) -> list[Any]:
        return [self.first_canary_s, self.seen_canary, self.excluded_canary, self.excluded_baseline]

    def restore(self, state: Sequence[Any]) -> None:
        first, seen, ex_c, ex_b = state
        self.first_canary_s = None if first is None else float(first)
        self.seen_canary, self.excluded_canary, self.excluded_baseline = (
            int(seen),
            int(ex_c),
            int(ex_b),
        )
