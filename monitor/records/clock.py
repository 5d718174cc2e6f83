"""A stream's event-time clock, robust to hosts whose clocks are wrong (STATISTICS.md §7.1).

The clock of one source (a Kafka partition, a replayed file) is the ``rank``-th largest event
time it has accepted (default the 64th): a few records from a host whose clock runs ahead move
it by nothing, and — unlike a per-batch statistic — it depends only on which records were seen,
not on how they were batched, so a replay and the stream reach the same clock at the end of the
same records. A record more than ``max_clock_skew_s`` ahead of the clock its batch would give (the
``rank``-th largest of everything seen, the batch included; the median before ``rank`` records)
is rejected as ``bad_time``: counted, dead-lettered, named in the
detail, and never part of any clock. Records behind the clock are fine (they may be late, which
the windows handle). The clock is what a partial reports as its ``progress``; a bake's
watermark is the slowest busy source partition's clock (:mod:`monitor.verdict.windows`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from monitor.errors import ConfigError
from monitor.records.columns import DecodeResult, Rejection
from monitor.records.decode import REASON_BAD_TIME

__all__ = ["DEFAULT_MAX_CLOCK_SKEW_S", "EventClock"]

DEFAULT_MAX_CLOCK_SKEW_S = 300.0
CLOCK_RANK = 64  # the clock ignores the 63 latest event times: a few bad clocks move nothing
BoolArray = npt.NDArray[np.bool_]


def _iso(epoch_s: float) -> str:
    return dt.datetime.fromtimestamp(epoch_s, tz=dt.UTC).isoformat(timespec="seconds")


class EventClock:
    """The event-time clock of one source; :meth:`screen` each decoded batch in order."""

    def __init__(
        self, max_clock_skew_s: float = DEFAULT_MAX_CLOCK_SKEW_S, rank: int = CLOCK_RANK
    ) -> None:
        if not max_clock_skew_s > 0:
            msg = f"max_clock_skew_s must be > 0, got {max_clock_skew_s}"
            raise ConfigError(msg, value=max_clock_skew_s)
        if rank < 1:
            msg = f"rank must be >= 1, got {rank}"
            raise ConfigError(msg, value=rank)
        self.max_clock_skew_s = max_clock_skew_s
        self.rank = rank
        self._top = np.empty(0)  # the ``rank`` largest accepted event times, unordered

    @property
    def progress_s(self) -> float | None:
        """The clock: the ``rank``-th largest accepted event time, or None before that many."""
        return float(self._top.min()) if self._top.size >= self.rank else None

    def screen(self, decoded: DecodeResult, messages: Sequence[bytes]) -> DecodeResult:
        """Reject the rows too far ahead of the clock this batch would give, then let the
        accepted ones advance it."""
        t = decoded.batch.time_s
        if t.size == 0:
            return decoded
        seen = np.concatenate([self._top, t])
        # The clock as if every record of the batch were accepted: a few far-ahead ones are
        # below its rank, so they cannot vouch for themselves.
        ref = (
            float(np.partition(seen, seen.size - self.rank)[seen.size - self.rank])
            if seen.size >= self.rank
            else float(np.median(seen))
        )
        ahead = t > ref + self.max_clock_skew_s
        top = np.concatenate([self._top, t[~ahead]])
        if top.size > self.rank:
            top = np.partition(top, top.size - self.rank)[top.size - self.rank :]
        self._top = top
        if not ahead.any():
            return decoded
        return self._reject(decoded, messages, ahead, ref)

    def _reject(
        self, decoded: DecodeResult, messages: Sequence[bytes], ahead: BoolArray, ref: float
    ) -> DecodeResult:
        t = decoded.batch.time_s
        rejections = list(decoded.rejections)
        for row in np.flatnonzero(ahead).tolist():
            i = int(decoded.batch.index[row])
            detail = (
                f"event time {_iso(float(t[row]))} is {float(t[row]) - ref:,.0f} s ahead of the "
                f"stream's clock {_iso(ref)} (max_clock_skew_s {self.max_clock_skew_s:g})"
            )
            rejections.append(Rejection(i, REASON_BAD_TIME, bytes(messages[i]), detail))
        rejections.sort(key=lambda r: r.index)
        by_reason = dict(decoded.rejected_by_reason)
        by_reason[REASON_BAD_TIME] = by_reason.get(REASON_BAD_TIME, 0) + int(ahead.sum())
        return DecodeResult(decoded.batch.take(~ahead), rejections, by_reason)
