"""One latency threshold's two comparisons at scaled thresholds (STATISTICS.md §7.3).

At a threshold ``T`` (a histogram bucket edge, the baseline's exceedance probability
``p_b(T) = P_b(X > T)``), "the canary is at most ``1 + tol`` times slower here" is exactly
``P_c(X > (1 + tol)·T) <= p_b(T)``, for any shape of either distribution. So:

* PROMOTE compares canary requests slower than ``T⁻`` with baseline requests slower than ``T``,
  ``T⁻`` being ``(1 + tol)·T`` snapped *down* to a bucket edge (:func:`edge_shift`): a lower
  threshold only counts more canary requests, so the null "ratio >= 1" contains every canary
  more than ``1 + tol`` times slower;
* HALT compares canary requests slower than ``T⁺`` = ``(1 + halt_margin)·T`` snapped *up* with
  baseline requests slower than ``T``, null "ratio <= 1" (``halt_margin = 0``: T against T).

Both are :class:`~detectors.rate_ratio.RateRatioTest` s on those counts (one test when both
compare the same edges). At the null ratio 1 the conditional-binomial e-processes are valid for
Bernoulli requests too (Hoeffding: the hypergeometric share is less dispersed than the
binomial), so the guarantees hold exactly, not approximately.

>>> edge_shift(0.1, "down"), edge_shift(0.1, "up"), edge_shift(GAMMA**5 - 1, "down")
(4, 5, 5)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from detectors.base import Finding
from detectors.errors import StateError
from detectors.rate_ratio import Gate, RateRatioAssessment, RateRatioTest
from detectors.summary import GAMMA, NUM_BUCKETS, bucket_upper_edge_s

__all__ = ["ScaledThreshold", "edge_shift"]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

# (1 + slowdown)·T within this many buckets of an edge is on it (float rounding of the log).
_ON_EDGE_BUCKETS = 1e-9
_LAST_FINITE = NUM_BUCKETS - 2  # highest bucket with a finite upper edge (the overflow is above)


def edge_shift(slowdown: float, snap: Literal["down", "up"]) -> int:
    """Buckets between an edge ``T`` and ``(1 + slowdown)·T`` snapped to a bucket edge.

    Bucket ``k`` holds ``(γ^(j-1), γ^j]`` with ``j = k + KEY_MIN - 1``, so the edge ``s`` buckets
    up is exactly ``γ^s·T`` for every ``T``, and ``(1 + slowdown)·T`` snaps to ``γ^s·T`` with
    ``s = floor(log(1 + slowdown) / log γ)`` for ``"down"`` (the largest edge
    ``<= (1 + slowdown)·T``) or ``ceil(...)`` for ``"up"`` (the smallest edge ``>=`` it). When
    ``(1 + slowdown)·T`` is itself an edge (within 1e-9 of a bucket: float rounding) both give
    that edge, so the test is exactly at the tolerance. With γ = 1.0202: 10 % snaps down to 4
    buckets (``T⁻ = 1.0833·T``) and up to 5 (``T⁺ = 1.1052·T``); 0 gives 0.
    """
    x = math.log1p(slowdown) / math.log(GAMMA)
    if abs(x - round(x)) < _ON_EDGE_BUCKETS:
        return round(x)
    return math.floor(x) if snap == "down" else math.ceil(x)


def edge_s(bucket: int) -> float | None:
    """Upper edge of ``bucket`` in seconds, None for the overflow bucket (no finite edge)."""
    edge = bucket_upper_edge_s(bucket)
    return edge if math.isfinite(edge) else None


def _above(hist: IntArray, bucket: int) -> IntArray:
    """Per row of stacked histograms: requests slower than ``bucket``'s upper edge."""
    out: IntArray = hist[:, bucket + 1 :].sum(axis=1)
    return out


class ScaledThreshold:
    """The PROMOTE and HALT comparisons at one threshold (``bucket`` None until frozen).

    Parameters
    ----------
    label, quantile
        ``"p99"`` and 0.99, or ``"slo 300ms"`` and None for a fixed SLO threshold.
    bucket
        Baseline threshold ``T``'s bucket (its upper edge), None while warming up.
    shifts
        Buckets from ``T`` up to ``T⁻`` (PROMOTE) and to ``T⁺`` (HALT), from :func:`edge_shift`.
    promote, halt
        The two rate-ratio tests (the same object when ``shifts`` are equal).
    """

    __slots__ = ("bucket", "halt", "halt_shift", "label", "promote", "promote_shift", "quantile")

    def __init__(
        self,
        label: str,
        quantile: float | None,
        bucket: int | None,
        shifts: tuple[int, int],
        promote: RateRatioTest,
        halt: RateRatioTest,
    ) -> None:
        self.label = label
        self.quantile = quantile
        self.bucket = bucket
        self.promote_shift, self.halt_shift = shifts
        self.promote = promote
        self.halt = halt

    def canary_buckets(self) -> tuple[int, int]:
        """Buckets whose upper edges are T⁻ (PROMOTE) and T⁺ (HALT): T⁻ is capped at the last
        finite edge (lower, so still conservative), T⁺ at the overflow (never exceeded)."""
        assert self.bucket is not None
        return (
            min(self.bucket + self.promote_shift, _LAST_FINITE),
            min(self.bucket + self.halt_shift, NUM_BUCKETS - 1),
        )

    def feed(
        self, hc: IntArray, nc: IntArray, hb: IntArray, nb: IntArray
    ) -> tuple[FloatArray, FloatArray]:
        """Fold stacked increments (histogram rows, request counts); the HALT and PROMOTE log
        e-values after each."""
        assert self.bucket is not None
        k_promote, k_halt = self.canary_buckets()
        x_b = _above(hb, self.bucket)
        trace = self.promote.update_many(_above(hc, k_promote), nc, x_b, nb)
        if self.halt is self.promote:
            return trace.log_e_halt, trace.log_e_promote
        halt = self.halt.update_many(_above(hc, k_halt), nc, x_b, nb)
        return halt.log_e_halt, trace.log_e_promote

    def assess(self) -> tuple[RateRatioAssessment, RateRatioAssessment]:
        """The PROMOTE and HALT comparisons' assessments."""
        a_promote = self.promote.assess()
        return a_promote, a_promote if self.halt is self.promote else self.halt.assess()

    def comparison(self, gate: Gate) -> str:
        """What ``gate`` compares, for a reason line."""
        assert self.bucket is not None
        k_canary = self.canary_buckets()[0 if gate == "promote" else 1]
        t_b, t_c = (bucket_upper_edge_s(k) * 1000.0 for k in (self.bucket, k_canary))
        if k_canary == self.bucket:
            return f"share slower than {t_b:.4g}ms ({self.label})"
        return f"share slower than {t_c:.4g}ms (canary) vs {t_b:.4g}ms (baseline) at {self.label}"

    def detail(
        self,
        a_promote: RateRatioAssessment,
        a_halt: RateRatioAssessment,
        null_ratios: tuple[float, float],
    ) -> dict[str, Any]:
        """The document's view: the threshold, its finding and both comparisons."""
        if a_halt.finding is Finding.REGRESSION:
            finding = Finding.REGRESSION
        elif a_promote.promote_path is not None:
            finding = Finding.NON_INFERIOR
        else:
            finding = Finding.UNDECIDED
        return {
            "label": self.label,
            "quantile": self.quantile,
            "threshold_s": None if self.bucket is None else edge_s(self.bucket),
            "finding": finding.value,
            "e_halt": a_halt.e_halt,
            "e_promote": a_promote.e_promote,
            "promote": self._gate_detail(0, a_promote, null_ratios[0]),
            "halt": self._gate_detail(1, a_halt, null_ratios[1]),
        }

    def _gate_detail(self, which: int, a: RateRatioAssessment, null_ratio: float) -> dict[str, Any]:
        """One comparison: canary requests slower than one edge vs baseline slower than T;
        PROMOTE needs the ratio shown below ``null_ratio``, HALT above it."""
        b = self.bucket
        return {
            "canary_threshold_s": None if b is None else edge_s(self.canary_buckets()[which]),
            "baseline_threshold_s": None if b is None else edge_s(b),
            "canary_exceedance": a.canary_events / a.canary_requests if a.canary_requests else None,
            "baseline_exceedance": (
                a.baseline_events / a.baseline_requests if a.baseline_requests else None
            ),
            "ratio": a.estimate,
            "ratio_bounds": [a.lower, a.upper],
            "null_ratio": null_ratio,
            **({"promote_path": a.promote_path} if which == 0 else {}),
        }

    # -- state -----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """JSON-able state (``halt`` None when one test serves both gates)."""
        return {
            "bucket": self.bucket,
            "promote": self.promote.state_dict(),
            "halt": None if self.halt is self.promote else self.halt.state_dict(),
        }

    def load(self, state: Mapping[str, Any]) -> None:
        """Restore from :meth:`state_dict` output."""
        self.bucket = None if state["bucket"] is None else int(state["bucket"])
        self.promote = RateRatioTest.from_state(state["promote"])
        halt = state["halt"]
        self.halt = self.promote if halt is None else RateRatioTest.from_state(halt)

    def load_v1(self, state: Mapping[str, Any]) -> None:
        """Restore from a v1 latency state's threshold (plug-in margins, one T-vs-T test).

        An SLO test means the same in v1 and v2. At a quantile the v1 test counted canary
        requests slower than T, which is the v2 HALT comparison when ``halt_margin = 0`` (and the
        PROMOTE one too when ``tol = 0``): that evidence carries over, re-gridded. The other
        comparisons were never counted and start empty at the restore, which keeps their
        guarantees (a test may start at any stopping time).
        """
        self.bucket = None if state["bucket"] is None else int(state["bucket"])
        if self.quantile is None:
            self.promote = self.halt = RateRatioTest.from_state(state["test"])
            return
        if self.bucket is None or self.halt_shift != 0:
            return
        v1 = RateRatioTest.from_state(state["test"])
        idx = np.clip(np.searchsorted(v1.theta, self.halt.theta), 0, v1.theta.size - 1)
        if not np.allclose(v1.theta[idx], self.halt.theta, rtol=0.0, atol=1e-9):
            msg = "latency v1 state has a θ grid that does not contain the v2 grid"
            raise StateError(msg, value=v1.theta.size)
        loglik = np.asarray(state["test"]["loglik"], dtype=np.float64)[idx].tolist()
        carried = RateRatioTest.from_state(
            {**v1.state_dict(), "params": self.halt.params(), "loglik": loglik}
        )
        shared = self.halt is self.promote
        self.halt = carried
        if shared:
            self.promote = carried
