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

Per stratum (STATISTICS.md §7.2): a quantile's ``T`` may differ from cell to cell — each cell
is compared at its own stratum's frozen bucket (:class:`StratumThresholds`), both edges shifted
by the same ``shifts`` — while the two tests stay one per threshold (one θ for every stratum;
the likelihood is a sum over cells). A cell's bucket is fixed before the cell is seen, so each
cell's conditional binomial is exact at ratio 1 and the sum stays a supermartingale.

>>> edge_shift(0.1, "down"), edge_shift(0.1, "up"), edge_shift(GAMMA**5 - 1, "down")
(4, 5, 5)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from detectors.base import Finding
from detectors.errors import StateError
from detectors.rate_ratio import Gate, RateRatioAssessment, RateRatioTest
from detectors.summary import GAMMA, NUM_BUCKETS, CohortSummary, bucket_upper_edge_s

__all__ = ["MAX_STRATA", "POOLED", "ScaledThreshold", "StratumThresholds", "edge_shift"]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

# (1 + slowdown)·T within this many buckets of an edge is on it (float rounding of the log).
_ON_EDGE_BUCKETS = 1e-9
_LAST_FINITE = NUM_BUCKETS - 2  # highest bucket with a finite upper edge (the overflow is above)
# Labelled strata with thresholds of their own; cells of further labels use the pooled ones.
MAX_STRATA = 64
POOLED = ""  # the pooled stratum: its warm-up counts every cell, the fallback of other labels


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


def tail_counts(hist: IntArray) -> IntArray:
    """Per row of stacked histograms, ``out[i, k]`` = requests in buckets ``>= k`` (one zero
    column appended), so row ``i``'s requests slower than bucket ``b``'s upper edge are
    ``out[i, b + 1]`` for every ``b``: one reverse cumulative sum serves every threshold."""
    out = np.zeros((hist.shape[0], NUM_BUCKETS + 1), dtype=np.int64)
    np.cumsum(hist[:, ::-1], axis=1, out=out[:, NUM_BUCKETS - 1 :: -1])
    return out


def _above(tails: IntArray, rows: IntArray, buckets: IntArray) -> IntArray:
    """Requests of ``rows`` slower than their own ``buckets``' upper edges (fancy indexing)."""
    out: IntArray = tails[rows, buckets + 1]
    return out


def _carry(values: FloatArray, rows: IntArray, m: int, before: float) -> FloatArray:
    """``values`` (after each of ``rows``) spread over all ``m`` rows: an untested row repeats
    the value after the last tested row before it (``before`` ahead of the first)."""
    if rows.size == m:
        return values
    last = np.searchsorted(rows, np.arange(m), side="right") - 1
    out: FloatArray = np.where(last >= 0, values[np.maximum(last, 0)], before)
    return out


class ScaledThreshold:
    """The PROMOTE and HALT comparisons at one threshold (``bucket`` None until frozen).

    Parameters
    ----------
    label, quantile
        ``"p99"`` and 0.99, or ``"slo 300ms"`` and None for a fixed SLO threshold.
    bucket
        The reported threshold ``T``'s bucket (its upper edge): an SLO's fixed bucket, or the
        pooled stratum's frozen quantile bucket (None while warming up). :meth:`feed` compares
        each cell at the bucket it is given (its stratum's).
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

    def canary_buckets(self, bucket: int | None = None) -> tuple[int, int]:
        """Buckets whose upper edges are T⁻ (PROMOTE) and T⁺ (HALT) for T = ``bucket`` (default
        the reported one): T⁻ is capped at the last finite edge (lower, so still conservative),
        T⁺ at the overflow (never exceeded)."""
        b = self.bucket if bucket is None else bucket
        assert b is not None
        return min(b + self.promote_shift, _LAST_FINITE), min(b + self.halt_shift, NUM_BUCKETS - 1)

    def feed(
        self, tails_c: IntArray, nc: IntArray, tails_b: IntArray, nb: IntArray, buckets: IntArray
    ) -> tuple[FloatArray, FloatArray]:
        """Fold stacked increments (:func:`tail_counts` rows, request counts), row ``i`` compared
        at its own T = ``buckets[i]`` (-1: not tested, e.g. its stratum is warming up); the HALT
        and PROMOTE log e-values after each row (an untested row leaves them as they were)."""
        m = buckets.size
        rows = np.flatnonzero(buckets >= 0)
        before = (0.0, 0.0)
        if rows.size < m and (rows.size == 0 or rows[0] > 0):
            before = (self.halt.log_e_values()[0], self.promote.log_e_values()[1])
        if not rows.size:
            return np.full(m, before[0]), np.full(m, before[1])
        b = buckets[rows]
        x_b, n_c, n_b = _above(tails_b, rows, b), nc[rows], nb[rows]
        x_promote = _above(tails_c, rows, np.minimum(b + self.promote_shift, _LAST_FINITE))
        trace = self.promote.update_many(x_promote, n_c, x_b, n_b)
        log_e_halt = trace.log_e_halt
        if self.halt is not self.promote:
            x_halt = _above(tails_c, rows, np.minimum(b + self.halt_shift, NUM_BUCKETS - 1))
            log_e_halt = self.halt.update_many(x_halt, n_c, x_b, n_b).log_e_halt
        log_e_promote = trace.log_e_promote
        return _carry(log_e_halt, rows, m, before[0]), _carry(log_e_promote, rows, m, before[1])

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


class StratumThresholds:
    """Frozen quantile buckets per stratum label, and the baseline warm-ups that freeze them.

    Row 0 is the pooled stratum :data:`POOLED` (``""``): its warm-up counts every cell's
    baseline (the rule without strata), and its buckets serve cells labelled ``""`` and, once
    ``max_strata`` labels have rows, cells of any further label. Every other label gets a row
    whose warm-up counts only that label's baseline. Quantile ``j`` of a row freezes, at the
    baseline's ``quantiles[j]`` bucket, after the cell that brings the row's baseline requests to
    ``need[j]``; the row's cells are compared there from the next cell on. ``buckets[j, r]`` is
    -1 while warming; ``warm_hist`` is kept only until a row's every quantile froze.
    """

    def __init__(
        self, quantiles: Sequence[float], need: Sequence[int], max_strata: int = MAX_STRATA
    ) -> None:
        self.quantiles = tuple(quantiles)
        self.need = tuple(int(n) for n in need)
        self.max_strata = max_strata
        self.labels: list[str] = [POOLED]
        self._index: dict[str, int] = {POOLED: 0}
        self.buckets: IntArray = np.full((len(self.quantiles), 1), -1, dtype=np.int64)
        self.warm_n: IntArray = np.zeros(1, dtype=np.int64)
        self.warm_hist: IntArray = np.zeros((1, NUM_BUCKETS), dtype=np.int64)

    def _row(self, label: str) -> int:
        row = self._index.get(label)
        if row is not None:
            return row
        if len(self.labels) > self.max_strata:
            return 0
        row = self._index[label] = len(self.labels)
        self.labels.append(label)
        self.buckets = np.hstack([self.buckets, np.full((len(self.quantiles), 1), -1)])
        self.warm_n = np.append(self.warm_n, 0)
        self.warm_hist = np.vstack([self.warm_hist, np.zeros((1, NUM_BUCKETS), np.int64)])
        return row

    def rows(self, strata: Sequence[str]) -> IntArray:
        """Each cell's row (new labels get one while there is room)."""
        return np.array([self._row(s) for s in strata], dtype=np.int64)

    def pooled_bucket(self, j: int) -> int | None:
        b = int(self.buckets[j, 0])
        return None if b < 0 else b

    def advance(self, rows: IntArray, hb: IntArray, nb: IntArray) -> IntArray:
        """Each cell's bucket per quantile (shape ``(quantiles, cells)``, -1: not tested), frozen
        before the cell — its stratum's own, else the pooled one; then the cells' baselines join
        their rows' (and the pooled) warm-ups."""
        out: IntArray = self.buckets[:, rows]
        # A stratum still warming up is tested at the pooled threshold frozen before this batch
        # (fixed before the cells it tests, so valid), not left out: its early data still counts.
        out = np.where(out < 0, self.buckets[:, :1], out)
        n_before = self.warm_n.copy()
        self.warm_n += np.bincount(rows, weights=nb, minlength=n_before.size).astype(np.int64)
        self.warm_n[0] += nb.sum() - nb[rows == 0].sum()
        touched = np.zeros(n_before.size, dtype=bool)
        touched[rows] = touched[0] = True  # every cell joins the pooled warm-up
        touched &= (self.buckets < 0).any(axis=0)
        for r in np.flatnonzero(touched).tolist():
            self._freeze(r, rows, hb, nb, int(n_before[r]), out)
        return out

    def _freeze(
        self, r: int, rows: IntArray, hb: IntArray, nb: IntArray, n_before: int, out: IntArray
    ) -> None:
        """Row ``r``'s warm-up through this batch: freeze each quantile whose warm-up completes
        (setting ``out`` for the row's later cells), then fold the rest into ``warm_hist``."""
        sel = np.arange(rows.size) if r == 0 else np.flatnonzero(rows == r)
        cum = n_before + np.cumsum(nb[sel])
        for j in np.flatnonzero(self.buckets[:, r] < 0).tolist():
            pos = int(np.searchsorted(cum, self.need[j]))
            if pos >= sel.size:
                continue
            hist = self.warm_hist[r] + hb[sel[: pos + 1]].sum(axis=0)
            bucket = CohortSummary(hist=hist).quantile_bucket(self.quantiles[j])
            if bucket is None:
                continue
            self.buckets[j, r] = bucket
            later = np.arange(rows.size) > sel[pos]
            out[j, (rows == r) & later] = bucket
            if r == 0:  # the pooled threshold froze: later cells of warming strata use it
                out[j, (out[j] < 0) & later] = bucket
        frozen = bool((self.buckets[:, r] >= 0).all())
        self.warm_hist[r] = 0 if frozen else self.warm_hist[r] + hb[sel].sum(axis=0)

    def thresholds_s(self, j: int) -> dict[str, float | None]:
        """Quantile ``j``'s threshold per labelled stratum, in seconds (None: warming up)."""
        return {
            label: None if b < 0 else edge_s(int(b))
            for label, b in zip(self.labels[1:], self.buckets[j, 1:].tolist(), strict=True)
        }

    # -- state -----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """JSON-able state; warm-up histograms sparse, only for rows still warming."""
        warm = [
            [r, nz.tolist(), self.warm_hist[r, nz].tolist()]
            for r in range(len(self.labels))
            if (nz := np.flatnonzero(self.warm_hist[r])).size
        ]
        return {
            "labels": self.labels[1:],
            "buckets": self.buckets.tolist(),
            "warm_n": self.warm_n.tolist(),
            "warm_hist": warm,
        }

    def load(self, state: Mapping[str, Any]) -> None:
        """Restore from :meth:`state_dict` output."""
        labels = [POOLED, *(str(x) for x in state["labels"])]
        buckets = np.asarray(state["buckets"], dtype=np.int64)
        warm_n = np.asarray(state["warm_n"], dtype=np.int64)
        shape = (len(self.quantiles), len(labels))
        ok = buckets.size == math.prod(shape) and warm_n.size == len(labels) <= self.max_strata + 1
        if not ok:
            msg = f"latency strata state has {len(labels)} labels, {warm_n.size} warm-ups"
            raise StateError(msg, value=len(labels))
        buckets = buckets.reshape(shape)
        self.labels, self._index = labels, {x: i for i, x in enumerate(labels)}
        self.buckets, self.warm_n = buckets, warm_n
        self.warm_hist = np.zeros((len(labels), NUM_BUCKETS), dtype=np.int64)
        for r, idx, counts in state["warm_hist"]:
            self.warm_hist[int(r), np.asarray(idx, dtype=np.int64)] = counts

    def load_pooled(self, buckets: Sequence[int | None], baseline: CohortSummary) -> None:
        """Start from a state without strata (latency v1/v2): its thresholds become the pooled
        row's, its baseline the pooled warm-up; labelled strata start warming at the restore."""
        self.buckets[:, 0] = [-1 if b is None else b for b in buckets]
        self.warm_n[0] = baseline.requests
        frozen = bool((self.buckets[:, 0] >= 0).all())
        self.warm_hist[0] = 0 if frozen else baseline.hist
