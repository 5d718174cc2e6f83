"""The one-sided Page-Hinkley test for an increase in the mean of a stream.

Page's cumulative-sum scheme (E. S. Page, "Continuous inspection schemes", Biometrika 41, 1954)
in the Page-Hinkley form with a fading factor of Gama, Sebastião & Rodrigues ("On evaluating
stream learning algorithms", Machine Learning 90, 2013, §4.2). With ``x̄_t`` the running mean of
the ``t`` values seen since the last reset, ``α`` the fading factor, ``δ`` the magnitude of
change that is tolerated and ``λ`` the threshold::

    x̄_t = x̄_{t-1} + (x_t - x̄_{t-1}) / t
    m_t = α · m_{t-1} + (x_t - x̄_t - δ)         m_0 = 0
    M_t = min(M_{t-1}, m_t)                      M_0 = +∞
    drift at t  ⇔  t ≥ min_instances  and  m_t - M_t > λ

After a detection the next value starts a fresh test (``t = 1``). These are the settings and the
semantics of river's ``drift.PageHinkley(mode="up")``, and the arithmetic is done in the same
order, so both fire at exactly the same values (tests/detectors/test_page_hinkley.py); the state
is ours, so it can be snapshotted without reaching into another library's private attributes.

>>> ph = PageHinkley(min_instances=5, delta=0.1, threshold=2.0)
>>> [t for t, x in enumerate([0.0] * 20 + [1.0] * 10) if ph.update(x)]
[22]
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from detectors.errors import ParameterError, StateError

__all__ = ["PageHinkley"]

STATE_VERSION = 1
DEFAULT_FORGETTING = 1.0 - 0.0001


class PageHinkley:
    """Detects an increase in the mean of a stream of numbers; see the module docstring.

    Parameters
    ----------
    min_instances
        Values seen since the last reset before a detection may be reported.
    delta
        Change in the mean that is tolerated (``δ``), in the stream's unit.
    threshold
        Detection threshold ``λ`` on ``m_t - M_t``, in the stream's unit.
    forgetting
        Fading factor ``α`` applied to the cumulative sum at every step, in (0, 1].
    """

    def __init__(
        self,
        min_instances: int = 30,
        delta: float = 0.005,
        threshold: float = 50.0,
        forgetting: float = DEFAULT_FORGETTING,
    ) -> None:
        if isinstance(min_instances, bool) or not isinstance(min_instances, int):
            msg = f"min_instances must be an integer, got {min_instances!r}"
            raise ParameterError(msg, value=min_instances)
        if min_instances < 1:
            msg = f"min_instances must be >= 1, got {min_instances}"
            raise ParameterError(msg, value=min_instances)
        if not (math.isfinite(delta) and delta >= 0.0):
            msg = f"delta must be >= 0, got {delta}"
            raise ParameterError(msg, value=delta)
        if not (math.isfinite(threshold) and threshold > 0.0):
            msg = f"threshold must be > 0, got {threshold}"
            raise ParameterError(msg, value=threshold)
        if not 0.0 < forgetting <= 1.0:
            msg = f"forgetting must be in (0, 1], got {forgetting}"
            raise ParameterError(msg, value=forgetting)
        self.min_instances = min_instances
        self.delta = delta
        self.threshold = threshold
        self.forgetting = forgetting
        self._reset()

    def _reset(self) -> None:
        self._n = 0
        self._mean = 0.0
        self._sum = 0.0
        self._min_sum = math.inf
        self._detected = False

    @property
    def drift_detected(self) -> bool:
        """Whether the last :meth:`update` detected an increase."""
        return self._detected

    def update(self, x: float) -> bool:
        """Fold one value; returns whether it completes a detection."""
        if not math.isfinite(x):
            msg = f"x must be finite, got {x}"
            raise ParameterError(msg, value=x)
        if self._detected:
            self._reset()
        self._n += 1
        # Evaluated in this order (not (x - mean) / n) so results equal river's bit for bit.
        self._mean += (1.0 / self._n) * (x - self._mean)
        self._sum = self.forgetting * self._sum + (x - self._mean) - self.delta
        if self._sum < self._min_sum:
            self._min_sum = self._sum
        if self._n >= self.min_instances:
            self._detected = self._sum - self._min_sum > self.threshold
        return self._detected

    def state_dict(self) -> dict[str, Any]:
        """JSON-able state; :meth:`from_state` rebuilds a detector that continues identically."""
        return {
            "v": STATE_VERSION,
            "params": {
                "min_instances": self.min_instances,
                "delta": self.delta,
                "threshold": self.threshold,
                "forgetting": self.forgetting,
            },
            "n": self._n,
            "mean": self._mean,
            "sum": self._sum,
            # JSON has no infinity: the minimum before the first value (+inf) is stored as None.
            "min_sum": self._min_sum if math.isfinite(self._min_sum) else None,
            "detected": self._detected,
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> PageHinkley:
        """Rebuild from :meth:`state_dict` output; StateError on a bad document."""
        if state.get("v") != STATE_VERSION:
            msg = f"unsupported Page-Hinkley state version {state.get('v')!r}"
            raise StateError(msg, value=state.get("v"))
        try:
            obj = cls(**dict(state["params"]))
            obj._restore(state["n"], state["mean"], state["sum"], state["min_sum"])
            obj._detected = bool(state["detected"])
        except (KeyError, TypeError) as exc:
            msg = f"malformed Page-Hinkley state: {exc!r}"
            raise StateError(msg, value=dict(state)) from exc
        return obj

    def _restore(self, n: int, mean: float, cum_sum: float, min_sum: float | None) -> None:
        self._n = int(n)
        self._mean = float(mean)
        self._sum = float(cum_sum)
        self._min_sum = math.inf if min_sum is None else float(min_sum)
