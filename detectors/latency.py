"""The latency gate: rate-ratio tests at scaled thresholds (STATISTICS.md §2, §7.3).

Thresholds ``T`` are frozen from the baseline's quantiles once the baseline has enough requests
for that quantile (``warmup_exceedances`` expected exceedances, at least
``min_warmup_requests``), snapped to histogram bucket edges so exceedance counts are exact; SLO
thresholds from the policy are fixed from the start. Only increments *after* a threshold is
frozen feed its tests, so the data that chose the threshold is not reused to test it.

"The canary is at most ``1 + tol`` times slower at this quantile" is exactly
``P_c(X > (1 + tol)·T) <= P_b(X > T)``, whatever the shape of either distribution. So at each
quantile threshold the PROMOTE test is the rate ratio of *canary requests slower than T⁻* to
*baseline requests slower than T*, with ``T⁻`` = ``(1 + tol)·T`` snapped down to a bucket edge
(which can only count more canary requests), null ``θ >= 0``; the HALT test compares canary
requests slower than ``T⁺`` = ``(1 + halt_margin)·T`` snapped up with baseline requests slower
than ``T``, null ``θ <= 0`` (``halt_margin = 0``: T against T). Nothing is estimated from data
but the thresholds themselves.
SLO thresholds keep their meaning: the ratio of the cohorts' rates of requests slower than the
SLO, NON_INFERIOR below ``1 + slo_tol`` (or within ``abs_tol``) and REGRESSION above
``1 + halt_margin``.

The family's HALT gate averages the thresholds' HALT e-values (an average of e-values is an
e-value even though the thresholds see the same requests, and it is never weaker than
Bonferroni); PROMOTE needs every threshold NON_INFERIOR (intersection-union: each at
``alpha_promote``). The cohorts' quantiles are reported as the human-readable effect.

Strata (STATISTICS.md §7.2). Cells (``update(..., stratum)``: an event-time window of one
route/zone stratum) can sit at very different latencies; at one pooled ``T`` a stratum wholly
above or below it exceeds in both cohorts alike and says nothing about a slowdown. So each
stratum label freezes its own ``T_s`` per quantile from *its own* baseline (the same warm-up
rule, counting that stratum's baseline requests), and its cells are tested from the cell after
that freeze, canary at ``T_s`` shifted by the same edge shifts, baseline at ``T_s``. The strata
share each threshold's PROMOTE and HALT tests (one θ per quantile; the log-likelihood is a sum
over cells). This stays valid: a cell's thresholds are fixed before the cell is seen and at the
ratio-1 nulls its conditional binomial is exact, so the sum is a supermartingale under the null
whatever the strata do. HALT: shown more than ``1 + halt_margin`` slower at some quantile
*within some stratum* (its null is "ratio <= 1 in every cell"). PROMOTE: at most ``1 + tol``
slower at each quantile *within each tested stratum* — exact under the one-θ model; what it
rejects in any case is "at least ``1 + tol`` slower in every tested stratum", and across unlike
strata θ̂ is a Mantel–Haenszel-style average (the monitor's per-segment HALT tests name a single
bad route). Cells with one cohort add nothing; a stratum with too little baseline is untested at
that quantile and outside its claim. A quantile is warm (PROMOTE possible) once its pooled ``T``
froze, as without strata, its evidence coming from the strata frozen by then.

The pooled stratum ``""`` freezes from every cell's baseline (the rule without strata, so a
caller that names no strata gets exactly the earlier numbers) and serves cells labelled ``""``
and, once ``MAX_STRATA`` = 64 labels have thresholds, cells of any further label. SLO thresholds
are global. A threshold's ``threshold_s`` (and its comparisons' edges, in the detail and the
reason) is the pooled ``T``; once labelled strata were seen a quantile threshold's detail adds
``strata_threshold_s``, ``{label: seconds or None while warming}`` (JSON-able).

>>> import numpy as np
>>> from detectors.summary import CohortSummary
>>> rng = np.random.default_rng(1)
>>> t = LatencyTest(alpha=0.01)
>>> for _ in range(40):
...     c, b = CohortSummary(), CohortSummary()
...     c.update(rng.lognormal(-3.0, 0.5, 200) * 1.5, np.zeros(200, bool))
...     b.update(rng.lognormal(-3.0, 0.5, 200), np.zeros(200, bool))
...     t.update(c, b)
>>> t.assess().finding.value
'REGRESSION'
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from detectors.base import Assessment, Finding
from detectors.errors import ParameterError, StateError
from detectors.rate_ratio import Gate, RateRatioAssessment, RateRatioTest
from detectors.scaled_threshold import (
    MAX_STRATA,
    POOLED,
    ScaledThreshold,
    StratumThresholds,
    edge_shift,
    tail_counts,
)
from detectors.summary import GAMMA, NUM_BUCKETS, CohortSummary, bucket_index

__all__ = ["MAX_STRATA", "LatencyTest", "LatencyTrace"]

FloatArray = npt.NDArray[np.float64]

# v3: per-stratum quantile thresholds ("strata"); v2: scaled thresholds (a PROMOTE and a HALT
# comparison per threshold); v1 and v2 states still load (:meth:`LatencyTest.from_state`).
STATE_VERSION = 3
_LOG_E_CAP = 700.0
# Prior scales (θ) of the quantile thresholds' tests. Latency changes worth deciding on move
# exceedance ratios by 1.1-1.6 (x1.05-x1.10 slower), and a healthy canary sits at ratio
# 0.6-0.95 of the PROMOTE comparison (its canary threshold is higher), so both mixtures are
# narrower than the rate-ratio defaults (tuned for 2x errors) and PROMOTE's is not centred at 1.
# Measured (alpha 0.004, equal arms): x1.10 median HALT 2,600 -> 2,500, x1.05 9,450 -> 8,500;
# A/A PROMOTE (sigma 0.5, tol 0.1) median 24,900 -> 15,400 requests/arm.
DEFAULT_HALT_PRIOR_SCALE = 0.3
DEFAULT_PROMOTE_PRIOR_SCALE = 0.3


@dataclass(frozen=True)
class LatencyTrace:
    """Per-increment family statistics from :meth:`LatencyTest.update_many`: the HALT gate's
    log e-value, and the smallest PROMOTE (ratio path) log e-value over thresholds (at most 0
    while a threshold is warming up)."""

    log_e_halt: FloatArray
    log_e_promote: FloatArray


class LatencyTest:
    """Compares canary and baseline latency through threshold-exceedance rate ratios.

    Parameters
    ----------
    alpha
        Bound on the probability of a false latency REGRESSION (whole family of thresholds).
    alpha_promote
        Bound, per threshold, on promoting a canary more than ``1 + tol`` times slower there.
    quantiles
        Baseline quantiles whose values become thresholds after the warm-up.
    slo_thresholds_s
        Fixed latency thresholds (seconds) from the policy, tested from the first increment.
    tol, halt_margin
        Relative *latency* tolerance and halt margin (0.1 = 10 % slower), applied by scaling the
        canary's threshold (module doc; :func:`edge_shift` gives the snapping): NON_INFERIOR
        means "shown at most ``1 + tol`` times slower at every quantile", REGRESSION "shown more
        than ``1 + halt_margin`` times slower at some quantile", for any distribution shape.
    slo_tol
        Exceedance-rate ratio tolerance of the fixed SLO thresholds.
    abs_tol
        Absolute tolerance on the SLO thresholds' violation rates (rare events, where the ratio
        never gets tight; see :class:`~detectors.rate_ratio.RateRatioTest`). Quantile thresholds
        ignore it: their exceedance probabilities are about ``1 - q`` by construction, so the
        ratio path always tightens, and an absolute slack there would loosen the latency claim
        (0.005 at p99 is another 9-19 % of slowdown for lognormal σ 0.5-1).
    warmup_exceedances, min_warmup_requests
        A quantile ``q`` freezes once the baseline has
        ``max(min_warmup_requests, warmup_exceedances / (1 - q))`` requests.
    **test_kwargs
        Prior scales and grid settings passed to each :class:`RateRatioTest` (at quantile
        thresholds the prior scales default to ``DEFAULT_*_PRIOR_SCALE`` here).
    """

    metric = "latency"

    def __init__(
        self,
        alpha: float = 0.01,
        *,
        alpha_promote: float | None = None,
        quantiles: Sequence[float] = (0.5, 0.9, 0.99),
        slo_thresholds_s: Sequence[float] = (),
        tol: float = 0.1,
        halt_margin: float = 0.0,
        slo_tol: float = 0.2,
        abs_tol: float | None = None,
        warmup_exceedances: int = 20,
        min_warmup_requests: int = 200,
        **test_kwargs: Any,
    ) -> None:
        if not 0.0 < alpha < 1.0:
            msg = f"alpha must be in (0, 1), got {alpha}"
            raise ParameterError(msg, value=alpha)
        for q in quantiles:
            if not 0.0 < q < 1.0:
                msg = f"quantiles must be in (0, 1), got {q}"
                raise ParameterError(msg, value=q)
        for s in slo_thresholds_s:
            if not 0.0 < s < 3600.0:
                msg = f"slo_thresholds_s must be in (0, 3600), got {s}"
                raise ParameterError(msg, value=s)
        if not quantiles and not slo_thresholds_s:
            msg = "quantiles and slo_thresholds_s must not both be empty"
            raise ParameterError(msg)
        for name, value, lo in (
            ("warmup_exceedances", warmup_exceedances, 1),
            ("min_warmup_requests", min_warmup_requests, 1),
        ):
            if value < lo:
                msg = f"{name} must be >= {lo}, got {value}"
                raise ParameterError(msg, value=value)
        for name, slowdown in (("tol", tol), ("halt_margin", halt_margin)):
            if not 0.0 <= slowdown <= 1.0:
                msg = f"{name} must be in [0, 1], got {slowdown}"
                raise ParameterError(msg, value=slowdown)
        self.alpha = alpha
        self.alpha_promote = alpha if alpha_promote is None else alpha_promote
        self.quantiles = tuple(float(q) for q in quantiles)
        self.slo_thresholds_s = tuple(float(s) for s in slo_thresholds_s)
        self.tol = tol
        self.halt_margin = halt_margin
        self.slo_tol = slo_tol
        self.abs_tol = abs_tol
        self.warmup_exceedances = warmup_exceedances
        self.min_warmup_requests = min_warmup_requests
        self.test_kwargs = dict(test_kwargs)
        self._reset()

    def _new_test(self, **kwargs: Any) -> RateRatioTest:
        k = len(self.quantiles) + len(self.slo_thresholds_s)
        # Each test's own sticky flag uses the Bonferroni level; the family gate uses the mean.
        return RateRatioTest(self.alpha / k, alpha_promote=self.alpha_promote, **kwargs)

    def _threshold(self, quantile: float | None, slo_s: float = 0.0) -> ScaledThreshold:
        """A quantile threshold (null ratio 1 at the scaled edges, latency prior scales) or a
        fixed SLO threshold (the rate ratio at the SLO against ``1 + slo_tol`` and
        ``1 + halt_margin``, the rate-ratio test's defaults)."""
        if quantile is None:
            bucket = int(bucket_index(np.array([slo_s]))[0])
            test = self._new_test(
                tol=self.slo_tol,
                halt_margin=self.halt_margin,
                abs_tol=self.abs_tol,
                **self.test_kwargs,
            )
            return ScaledThreshold(f"slo {slo_s * 1000:g}ms", None, bucket, (0, 0), test, test)
        kwargs = {
            "halt_prior_scale": DEFAULT_HALT_PRIOR_SCALE,
            "promote_prior_scale": DEFAULT_PROMOTE_PRIOR_SCALE,
            **self.test_kwargs,
        }
        shifts = (edge_shift(self.tol, "down"), edge_shift(self.halt_margin, "up"))
        promote = self._new_test(tol=0.0, halt_margin=0.0, **kwargs)
        halt = (
            promote
            if shifts[0] == shifts[1]
            else self._new_test(tol=0.0, halt_margin=0.0, **kwargs)
        )
        return ScaledThreshold(f"p{quantile * 100:g}", quantile, None, shifts, promote, halt)

    def _null_ratios(self, th: ScaledThreshold) -> tuple[float, float]:
        if th.quantile is None:
            return 1.0 + self.slo_tol, 1.0 + self.halt_margin
        return 1.0, 1.0

    def _reset(self) -> None:
        self._canary = CohortSummary()
        self._baseline = CohortSummary()
        self._halted = False
        self._log_crossed: float | None = None  # log family e-value when HALT fired
        self._thresholds = [self._threshold(q) for q in self.quantiles]
        self._thresholds += [self._threshold(None, s) for s in self.slo_thresholds_s]
        need = [self._warmup_requests(q) for q in self.quantiles]
        self._strata = StratumThresholds(self.quantiles, need)

    @property
    def halted(self) -> bool:
        """True once the HALT gate has fired (sticky)."""
        return self._halted

    def _warmup_requests(self, q: float) -> int:
        return max(self.min_warmup_requests, math.ceil(self.warmup_exceedances / (1.0 - q)))

    # -- updates ---------------------------------------------------------------------------
    def update(self, canary: CohortSummary, baseline: CohortSummary, stratum: str = "") -> None:
        """Fold one cell (an increment of each cohort) of ``stratum`` (module doc)."""
        self.update_many([canary], [baseline], [stratum])

    def update_many(
        self,
        canary: Sequence[CohortSummary],
        baseline: Sequence[CohortSummary],
        strata: Sequence[str] | None = None,
    ) -> LatencyTrace:
        """Fold a sequence of cells (pairs ``canary[i]``, ``baseline[i]`` of stratum
        ``strata[i]``, all ``""`` when None) at once: the same as :meth:`update` on each,
        vectorised, returning the family's log e-values after every cell. A stratum's quantile
        threshold freezes after the cell that completes its warm-up and is tested from the
        stratum's next cell on."""
        m = len(canary)
        if len(baseline) != m or (strata is not None and len(strata) != m):
            lengths = (m, len(baseline), None if strata is None else len(strata))
            msg = f"canary, baseline and strata must have one length, got {lengths}"
            raise ParameterError(msg, value=lengths)
        hc, hb = (
            np.array([x.hist for x in xs], np.int64).reshape(m, NUM_BUCKETS)
            for xs in (canary, baseline)
        )
        nc, nb = (np.array([x.requests for x in xs], np.int64) for xs in (canary, baseline))
        rows = self._strata.rows([POOLED] * m if strata is None else strata)
        cell_buckets = self._strata.advance(rows, hb, nb)
        tails_c, tails_b = tail_counts(hc), tail_counts(hb)
        halt, promote = np.zeros((2, len(self._thresholds), m))
        for j, th in enumerate(self._thresholds):
            if th.quantile is None:
                buckets = np.full(m, th.bucket, dtype=np.int64)
            else:
                buckets, th.bucket = cell_buckets[j], self._strata.pooled_bucket(j)
            halt[j], promote[j] = th.feed(tails_c, nc, tails_b, nb, buckets)
        for c, b in zip(canary, baseline, strict=True):
            self._canary.merge(c)
            self._baseline.merge(b)
        family = np.log(np.mean(np.exp(np.minimum(halt, _LOG_E_CAP)), axis=0))
        if not self._halted and m:
            over = np.flatnonzero(family >= math.log(1.0 / self.alpha))
            if over.size:  # the gate fires at the first stratum that crosses
                self._halted, self._log_crossed = True, float(family[over[0]])
        return LatencyTrace(family, promote.min(axis=0) if m else np.zeros(0))

    def _e_crossed(self) -> float | None:
        return None if self._log_crossed is None else math.exp(min(self._log_crossed, _LOG_E_CAP))

    def _family_log_e_halt(self) -> float:
        logs = np.array([th.halt.log_e_values()[0] for th in self._thresholds])
        return float(np.log(np.mean(np.exp(np.minimum(logs, _LOG_E_CAP)))))

    # -- read-outs -------------------------------------------------------------------------
    def assess(self) -> Assessment:
        """Current finding with per-threshold evidence and the cohorts' quantiles."""
        per = [(th, *th.assess()) for th in self._thresholds]
        unfrozen = any(th.bucket is None for th in self._thresholds)
        blocking = [p for p in per if p[0].bucket is not None and p[1].promote_path is None]
        gate: Gate = "halt"
        if self._halted:
            finding = Finding.REGRESSION
            th_key, _, a_key = max(per, key=lambda p: p[2].log_e_halt)
        elif not unfrozen and not blocking:
            finding, gate = Finding.NON_INFERIOR, "promote"
            th_key, a_key, _ = min(per, key=lambda p: p[1].log_e_promote)
        else:
            finding = Finding.UNDECIDED
            th_key, _, a_key = max(blocking or per, key=lambda p: p[2].log_e_halt)
        log_e_promote = min(p[1].log_e_promote for p in per)
        if unfrozen:
            log_e_promote = min(log_e_promote, 0.0)
        return Assessment(
            metric=self.metric,
            finding=finding,
            estimate=a_key.estimate,
            lower=a_key.lower,
            upper=a_key.upper,
            e_halt=math.exp(min(self._family_log_e_halt(), _LOG_E_CAP)),
            e_halt_crossed=self._e_crossed(),
            e_promote=math.exp(min(log_e_promote, _LOG_E_CAP)),
            canary_requests=self._canary.requests,
            baseline_requests=self._baseline.requests,
            requests_to_decision=0 if finding is not Finding.UNDECIDED else self._to_decision(),
            reason=self._reason(finding, th_key, gate, a_key),
            detail={
                "quantiles": {
                    f"p{q * 100:g}": {
                        "canary": self._canary.quantile(q),
                        "baseline": self._baseline.quantile(q),
                    }
                    for q in (0.5, 0.9, 0.99)
                },
                "thresholds": [self._threshold_detail(j, *p) for j, p in enumerate(per)],
            },
        )

    def _threshold_detail(
        self, j: int, th: ScaledThreshold, a_p: RateRatioAssessment, a_h: RateRatioAssessment
    ) -> dict[str, Any]:
        """A threshold's view (``threshold_s``: the pooled stratum's T), plus, once labelled
        strata were seen, ``strata_threshold_s``: each labelled stratum's T (None: warming up)."""
        out = th.detail(a_p, a_h, self._null_ratios(th))
        if th.quantile is not None and len(self._strata.labels) > 1:
            out["strata_threshold_s"] = self._strata.thresholds_s(j)
        return out

    def _to_decision(self) -> int | None:
        """Projected canary requests to the first threshold's HALT or to every PROMOTE."""
        if any(th.bucket is None for th in self._thresholds):
            return None
        halts = [th.halt.requests_to_gate("halt") for th in self._thresholds]
        needs = [n for n in halts if n is not None]
        promotes = [th.promote.requests_to_gate("promote") for th in self._thresholds]
        if all(n is not None for n in promotes):
            needs.append(max(n for n in promotes if n is not None))
        return min(needs, default=None)

    def _reason(
        self, finding: Finding, th: ScaledThreshold, gate: Gate, a: RateRatioAssessment
    ) -> str:
        if th.bucket is None:
            return f"latency: thresholds warming up ({self._baseline.requests} baseline requests)"
        est = "n/a" if a.estimate is None else f"{a.estimate:.2f}"
        what = f"{th.comparison(gate)} canary/baseline {est}"
        if finding is Finding.REGRESSION:
            e = self._e_crossed() or math.exp(min(self._family_log_e_halt(), _LOG_E_CAP))
            return f"latency regression: {what}, evidence e={e:.3g}"
        if finding is Finding.NON_INFERIOR:
            claims = [f"{t.label} ratio < {1.0 + self.slo_tol:g}" for t in self._thresholds]
            claims = claims[len(self.quantiles) :]
            if self.quantiles:
                labels = ", ".join(t.label for t in self._thresholds[: len(self.quantiles)])
                factor = GAMMA ** edge_shift(self.tol, "down")
                labels += " (T per stratum)" if len(self._strata.labels) > 1 else ""
                claims.insert(0, f"canary > {factor:.4g}·T as rare as baseline > T at {labels}")
            return f"latency non-inferior at every threshold: {'; '.join(claims)}"
        text = f"latency undecided: {what} [{a.lower:.2f}, {a.upper:.2f}]"
        if th.promote is not th.halt:
            p = th.promote.assess().estimate
            now = "n/a" if p is None else f"{p:.2f}"
            text += f"; PROMOTE needs {th.comparison('promote')} < 1, now {now}"
        return text

    # -- state -----------------------------------------------------------------------------
    def params(self) -> dict[str, Any]:
        """Constructor arguments (JSON-able)."""
        return {
            "alpha": self.alpha,
            "alpha_promote": self.alpha_promote,
            "quantiles": list(self.quantiles),
            "slo_thresholds_s": list(self.slo_thresholds_s),
            "tol": self.tol,
            "halt_margin": self.halt_margin,
            "slo_tol": self.slo_tol,
            "abs_tol": self.abs_tol,
            "warmup_exceedances": self.warmup_exceedances,
            "min_warmup_requests": self.min_warmup_requests,
            **self.test_kwargs,
        }

    def state_dict(self) -> dict[str, Any]:
        """JSON-able state."""
        return {
            "v": STATE_VERSION,
            "params": self.params(),
            "canary": self._canary.to_dict(),
            "baseline": self._baseline.to_dict(),
            "halted": self._halted,
            "crossed": self._log_crossed,
            "thresholds": [th.state_dict() for th in self._thresholds],
            "strata": self._strata.state_dict(),
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> LatencyTest:
        """Rebuild from :meth:`state_dict` output. A v2 state (no strata) loads with its
        thresholds as the pooled stratum's (the fallback of cells labelled ``""`` or beyond
        ``MAX_STRATA``), its baseline as the pooled warm-up; labelled strata start warming at
        the restore. A v1 state (plug-in margins) also loads so: its T-vs-T evidence carries over
        where v2 tests the same counts, the other comparisons start at the restore
        (:meth:`ScaledThreshold.load_v1`), the sticky HALT is kept."""
        version = state.get("v")
        if version not in (1, 2, STATE_VERSION):
            msg = f"unsupported latency state version {version!r}"
            raise StateError(msg, value=version)
        obj = cls(**dict(state["params"]))
        obj._canary = CohortSummary.from_dict(state["canary"])
        obj._baseline = CohortSummary.from_dict(state["baseline"])
        obj._halted = bool(state["halted"])
        crossed = state.get("crossed")
        obj._log_crossed = None if crossed is None else float(crossed)
        saved = state["thresholds"]
        if len(saved) != len(obj._thresholds):
            msg = f"latency state has {len(saved)} thresholds, expected {len(obj._thresholds)}"
            raise StateError(msg, value=len(saved))
        for th, s in zip(obj._thresholds, saved, strict=True):
            if version == 1:
                th.load_v1(s)
                continue
            th.load(s)
        if version == STATE_VERSION:
            obj._strata.load(state["strata"])
        else:
            buckets = [th.bucket for th in obj._thresholds[: len(obj.quantiles)]]
            obj._strata.load_pooled(buckets, obj._baseline)
        return obj
