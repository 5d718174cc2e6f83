"""How far a bake is from its decision, in canary requests and in seconds — stable.

The detectors project the requests a gate still needs if their estimate stays put; that
projection moves with the estimate (early on, a few errors more or less turn 9,878 into 383).
What a release manager needs is a figure that moves with the evidence, not with its noise:

* requests: the geometric mean of the last ``keep`` windows' projections, each aged to now
  (minus the canary requests tested since it was made), the lowest and highest left out — one
  wild window is ignored, and a projection that flips between two gates' figures window by
  window averages out instead of jumping; None (no decision in sight) when most see none.
* no figure until ``min_windows`` windows were tested: the first projections rest on a few
  hundred requests and a forecast that halves between two polls is worse than none.
* the figure shown moves at most ``max_step``× per tested window (after ageing): the mean above
  is its target, and a real change (a regression shortening the bake) still arrives within a
  few windows — a 10× change in six at 1.5× — while the noise of the first minutes, which
  swings the mean 2–4× early on, does not reach the figure.
* seconds: those requests at the canary's recent tested rate — requests per second of event
  time over the last ``rate_windows`` tested windows (about five minutes at 10 s windows).

It is a forecast, not a guarantee: a regression starting later, or traffic stopping, changes
it. Everything here is a function of closed windows, so replay and the stream agree.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from typing import Any

__all__ = ["DecisionEta"]


class DecisionEta:
    """Smoothed requests-to-decision and the seconds they take at the recent rate."""

    def __init__(
        self, keep: int = 6, rate_windows: int = 30, min_windows: int = 3, max_step: float = 1.5
    ) -> None:
        self.keep = keep
        self.min_windows = min(min_windows, keep)
        self.max_step = max_step
        self._shown: tuple[int, int] | None = None  # (tested at, figure) after the last window
        self.rate_windows = rate_windows
        self._projections: deque[tuple[int, int | None]] = deque(maxlen=keep)
        self._rate: deque[tuple[int, float]] = deque(maxlen=rate_windows + 1)

    @property
    def ready(self) -> bool:
        """Whether enough windows were tested for a figure (``min_windows``)."""
        return len(self._projections) >= self.min_windows

    def observe(self, tested: int, end_s: float, projection: int | None) -> None:
        """After a tested window: canary requests tested so far, the window's end (event
        time) and the detectors' raw projection of the requests still needed."""
        self._projections.append((tested, projection))
        target = self._target(tested)
        if target is None or self._shown is None:
            self._shown = None if target is None else (tested, target)
        else:
            prev = _aged(self._shown, tested)
            lo, hi = prev / self.max_step, prev * self.max_step
            self._shown = (tested, target if prev == 0 else round(min(max(target, lo), hi)))
        if not self._rate or end_s > self._rate[-1][1]:
            self._rate.append((tested, end_s))

    def requests(self, tested: int) -> int | None:
        """Canary requests still needed, aged to ``tested`` (None when most recent windows see
        no decision, or before :attr:`ready`)."""
        return None if self._shown is None else _aged(self._shown, tested)

    def _target(self, tested: int) -> int | None:
        """The geometric mean of the recent projections, aged to now, without the lowest and
        highest (None when most of them see no decision, or before :attr:`ready`)."""
        if not self.ready:
            return None
        aged = [None if p is None else max(p - (tested - at), 0) for at, p in self._projections]
        known = [a for a in aged if a is not None]
        if not known or len(known) * 2 < len(aged):
            return None
        known.sort()
        if len(known) >= 3:  # one wild window either way is dropped
            known = known[1:-1]
        if known[0] == 0:
            return 0
        return round(math.exp(sum(math.log(a) for a in known) / len(known)))

    def rate(self) -> float | None:
        """Canary requests tested per second of event time over the recent windows."""
        if len(self._rate) < 2:
            return None
        (n0, t0), (n1, t1) = self._rate[0], self._rate[-1]
        return (n1 - n0) / (t1 - t0) if t1 > t0 and n1 > n0 else None

    def seconds(self, requests: int | None) -> float | None:
        """Event-time seconds until ``requests`` more canary requests are tested."""
        r = self.rate() if self.ready else None
        if requests is None or r is None:
            return None
        return round(requests / r, 1)

    # -- state -------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "projections": [list(p) for p in self._projections],
            "rate": list(self._rate),
            "shown": None if self._shown is None else list(self._shown),
        }

    def restore(self, state: Mapping[str, Any] | None) -> None:
        """Load :meth:`state_dict` output (None: a state from before it existed: start empty)."""
        if not state:
            return
        for at, p in state.get("projections", []):
            self._projections.append((int(at), None if p is None else int(p)))
        for n, t in state.get("rate", []):
            self._rate.append((int(n), float(t)))
        shown = state.get("shown")
        if shown is not None:
            self._shown = (int(shown[0]), int(shown[1]))
        elif "shown" not in state and self._projections:  # a state from before the limit
            at = self._projections[-1][0]
            target = self._target(at)
            self._shown = None if target is None else (at, target)


def _aged(shown: tuple[int, int], tested: int) -> int:
    """A figure made when ``shown[0]`` canary requests were tested, aged to ``tested``."""
    return max(shown[1] - (tested - shown[0]), 0)
