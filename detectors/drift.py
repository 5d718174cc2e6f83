"""Advisory drift alerts within a bake, on one-sided Page-Hinkley tests (STATISTICS.md §4).

Per increment with enough requests in both cohorts, two signals are fed to one-sided
:class:`~detectors.page_hinkley.PageHinkley` tests (an increase is what matters):

* ``error_z``: the canary-minus-baseline error-rate difference of the increment, standardised
  by its binomial standard error (mean 0, variance about 1 in an A/A bake);
* ``latency_p90_log_ratio``: ``log(p90 canary / p90 baseline)`` of the increment.

Page-Hinkley uses a per-step threshold, not a time-uniform guarantee, so over a long A/A bake it
fires now and then: these are alerts for a human ("the canary got worse *during* the bake"),
never a gate.

>>> import numpy as np
>>> from detectors.summary import CohortSummary
>>> m = DriftMonitor()
>>> events = []
>>> for i in range(200):
...     c, b = CohortSummary(1000, 10 if i < 100 else 40), CohortSummary(1000, 10)
...     events += m.update(c, b)
>>> [(e.signal, e.increment) for e in events][:1]
[('error_z', 104)]
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from detectors.errors import ParameterError, StateError
from detectors.page_hinkley import PageHinkley
from detectors.summary import CohortSummary

__all__ = ["DriftEvent", "DriftMonitor"]

# v1 stored river's private PageHinkley attributes; it is still read, v2 is written.
STATE_VERSION = 2
_SIGNALS = ("error_z", "latency_p90_log_ratio")
# (delta, threshold) per signal: error_z is unit-variance; the log ratio's noise is ~0.05.
_PH_SETTINGS = {"error_z": (0.25, 15.0), "latency_p90_log_ratio": (0.02, 1.0)}


@dataclass(frozen=True)
class DriftEvent:
    """A Page-Hinkley detection: which signal, at which increment, with the last value."""

    signal: str
    increment: int
    value: float


def _make_detector(signal: str, min_instances: int) -> PageHinkley:
    delta, threshold = _PH_SETTINGS[signal]
    return PageHinkley(min_instances=min_instances, delta=delta, threshold=threshold)


class DriftMonitor:
    """Runs the advisory drift signals; :meth:`update` returns the detections it caused.

    Parameters
    ----------
    min_requests
        An increment feeds the signals only if both cohorts have at least this many requests.
    min_instances
        Page-Hinkley's warm-up, in fed increments.
    """

    def __init__(self, min_requests: int = 200, min_instances: int = 30) -> None:
        if min_requests < 1:
            msg = f"min_requests must be >= 1, got {min_requests}"
            raise ParameterError(msg, value=min_requests)
        if min_instances < 1:
            msg = f"min_instances must be >= 1, got {min_instances}"
            raise ParameterError(msg, value=min_instances)
        self.min_requests = min_requests
        self.min_instances = min_instances
        self._reset()

    def _reset(self) -> None:
        self._detectors = {s: _make_detector(s, self.min_instances) for s in _SIGNALS}
        self._increments = 0

    @staticmethod
    def _signals(canary: CohortSummary, baseline: CohortSummary) -> dict[str, float]:
        out: dict[str, float] = {}
        n_c, n_b = canary.requests, baseline.requests
        pooled = (canary.errors + baseline.errors) / (n_c + n_b)
        se = math.sqrt(pooled * (1.0 - pooled) * (1.0 / n_c + 1.0 / n_b))
        if se > 0.0:
            out["error_z"] = (canary.errors / n_c - baseline.errors / n_b) / se
        q_c, q_b = canary.quantile(0.9), baseline.quantile(0.9)
        if q_c is not None and q_b is not None:
            out["latency_p90_log_ratio"] = math.log(q_c / q_b)
        return out

    def update(self, canary: CohortSummary, baseline: CohortSummary) -> list[DriftEvent]:
        """Fold one increment; returns the drift detections it triggered (usually none)."""
        self._increments += 1
        if canary.requests < self.min_requests or baseline.requests < self.min_requests:
            return []
        events: list[DriftEvent] = []
        for signal, value in self._signals(canary, baseline).items():
            if self._detectors[signal].update(value):
                events.append(DriftEvent(signal, self._increments, value))
        return events

    def state_dict(self) -> dict[str, Any]:
        """JSON-able state: the increment count and each signal's Page-Hinkley state."""
        return {
            "v": STATE_VERSION,
            "params": {"min_requests": self.min_requests, "min_instances": self.min_instances},
            "increments": self._increments,
            "detectors": {s: d.state_dict() for s, d in self._detectors.items()},
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> DriftMonitor:
        """Rebuild from :meth:`state_dict` output (or the v1 form); StateError on a bad one."""
        version = state.get("v")
        if version not in (1, STATE_VERSION):
            msg = f"unsupported drift state version {version!r}"
            raise StateError(msg, value=version)
        try:
            obj = cls(**dict(state["params"]))
            obj._increments = int(state["increments"])
            for signal, d in state["detectors"].items():
                if version == 1:
                    obj._detectors[signal] = _from_v1(obj._detectors[signal], d)
                else:
                    obj._detectors[signal] = PageHinkley.from_state(d)
        except (KeyError, TypeError) as exc:
            msg = f"malformed drift state: {exc!r}"
            raise StateError(msg, value=dict(state)) from exc
        return obj


def _from_v1(fresh: PageHinkley, d: Mapping[str, Any]) -> PageHinkley:
    """A v1 signal state (river's running mean and increase sums) as a PageHinkley state."""
    state = fresh.state_dict()
    state.update(
        n=int(d["mean_n"]),
        mean=float(d["mean"]),
        sum=float(d["_sum_increase"]),
        min_sum=d["_min_increase"],
        detected=bool(d["detected"]),
    )
    return PageHinkley.from_state(state)
