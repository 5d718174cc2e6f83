"""The latency gate: rate-ratio tests on "slower than T" events (STATISTICS.md §2).

Thresholds ``T`` are frozen from the baseline's quantiles once the baseline has enough requests
for that quantile (``warmup_exceedances`` expected exceedances, at least
``min_warmup_requests``), snapped to histogram bucket edges so exceedance counts are exact; SLO
thresholds from the policy are fixed from the start. Only increments *after* a threshold is
frozen feed its test, so the data that chose the threshold is not reused to test it.

The family's HALT gate averages the thresholds' e-values (an average of e-values is an e-value,
and it is never weaker than Bonferroni); PROMOTE needs every threshold NON_INFERIOR
(intersection-union: each at ``alpha_promote``). The cohorts' quantiles are reported as the
human-readable effect.

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
from typing import Any

import numpy as np

from detectors.base import Assessment, Finding
from detectors.errors import ParameterError, StateError
from detectors.rate_ratio import RateRatioAssessment, RateRatioTest
from detectors.summary import GAMMA, CohortSummary, bucket_index, bucket_upper_edge_s

__all__ = ["LatencyTest"]

STATE_VERSION = 1
_LOG_E_CAP = 700.0
_MAX_EXCEEDANCE_TOL = 19.0  # ratio 20: beyond it the test's grid (|θ| <= 4) gets thin


class _Threshold:
    """One "slower than T" test; ``bucket`` is None until frozen."""

    __slots__ = ("bucket", "label", "quantile", "test")

    def __init__(
        self, label: str, quantile: float | None, bucket: int | None, test: RateRatioTest
    ) -> None:
        self.label = label
        self.quantile = quantile
        self.bucket = bucket
        self.test = test


class LatencyTest:
    """Compares canary and baseline latency through threshold-exceedance rate ratios.

    Parameters
    ----------
    alpha
        Bound on the probability of a false latency REGRESSION (whole family of thresholds).
    alpha_promote
        Bound, per threshold, on promoting a canary whose exceedance ratio is ``>= 1 + tol``.
    quantiles
        Baseline quantiles whose values become thresholds after the warm-up.
    slo_thresholds_s
        Fixed latency thresholds (seconds) from the policy, tested from the first increment.
    tol, halt_margin
        Relative *latency* tolerance and halt margin (0.1 = 10 % slower). At each quantile
        threshold they become exceedance-rate margins, fixed at freeze time from the baseline's
        warm-up histogram: the exceedance ratio a canary ``tol`` times slower would show there
        (at least ``tol``). So NON_INFERIOR means "shown less than ``1 + tol`` times slower at
        every quantile" for a canary that is a rescaled baseline.
    slo_tol
        Exceedance-rate ratio tolerance of the fixed SLO thresholds.
    abs_tol
        Absolute tolerance on exceedance rates (see :class:`~detectors.rate_ratio.RateRatioTest`).
    warmup_exceedances, min_warmup_requests
        A quantile ``q`` freezes once the baseline has
        ``max(min_warmup_requests, warmup_exceedances / (1 - q))`` requests.
    **test_kwargs
        Prior scales and grid settings passed to each :class:`RateRatioTest`.
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
        if warmup_exceedances < 1:
            msg = f"warmup_exceedances must be >= 1, got {warmup_exceedances}"
            raise ParameterError(msg, value=warmup_exceedances)
        if min_warmup_requests < 1:
            msg = f"min_warmup_requests must be >= 1, got {min_warmup_requests}"
            raise ParameterError(msg, value=min_warmup_requests)
        self.alpha = alpha
        self.alpha_promote = alpha if alpha_promote is None else alpha_promote
        self.quantiles = tuple(float(q) for q in quantiles)
        self.slo_thresholds_s = tuple(float(s) for s in slo_thresholds_s)
        if not 0.0 <= tol <= 1.0:
            msg = f"tol must be in [0, 1], got {tol}"
            raise ParameterError(msg, value=tol)
        if not 0.0 <= halt_margin <= 1.0:
            msg = f"halt_margin must be in [0, 1], got {halt_margin}"
            raise ParameterError(msg, value=halt_margin)
        self.tol = tol
        self.halt_margin = halt_margin
        self.slo_tol = slo_tol
        self.abs_tol = abs_tol
        self.warmup_exceedances = warmup_exceedances
        self.min_warmup_requests = min_warmup_requests
        self.test_kwargs = dict(test_kwargs)
        self._reset()

    def _new_test(
        self, tol: float | None = None, halt_margin: float | None = None
    ) -> RateRatioTest:
        k = len(self.quantiles) + len(self.slo_thresholds_s)
        # Each test's own sticky flag uses the Bonferroni level; the family gate uses the mean.
        return RateRatioTest(
            self.alpha / k,
            alpha_promote=self.alpha_promote,
            tol=self.slo_tol if tol is None else tol,
            halt_margin=self.halt_margin if halt_margin is None else halt_margin,
            abs_tol=self.abs_tol,
            **self.test_kwargs,
        )

    def _exceedance_margin(self, bucket: int, slowdown: float) -> float:
        """The exceedance-rate ratio excess that a canary ``slowdown`` times slower than the
        baseline would show at ``bucket``'s edge, read off the baseline's warm-up histogram."""
        if slowdown <= 0.0:
            return 0.0
        shift = round(math.log1p(slowdown) / math.log(GAMMA))
        above = self._baseline.count_above(bucket)
        shifted = self._baseline.count_above(max(bucket - shift, 0))
        if above == 0:
            return _MAX_EXCEEDANCE_TOL
        return min(max(shifted / above - 1.0, slowdown), _MAX_EXCEEDANCE_TOL)

    def _freeze(self, th: _Threshold) -> None:
        assert th.quantile is not None
        th.bucket = self._baseline.quantile_bucket(th.quantile)
        assert th.bucket is not None
        th.test = self._new_test(
            tol=self._exceedance_margin(th.bucket, self.tol),
            halt_margin=self._exceedance_margin(th.bucket, self.halt_margin),
        )

    def _reset(self) -> None:
        self._canary = CohortSummary()
        self._baseline = CohortSummary()
        self._halted = False
        self._thresholds: list[_Threshold] = [
            _Threshold(f"p{q * 100:g}", q, None, self._new_test()) for q in self.quantiles
        ]
        for s in self.slo_thresholds_s:
            bucket = int(bucket_index(np.array([s]))[0])
            self._thresholds.append(
                _Threshold(f"slo {s * 1000:g}ms", None, bucket, self._new_test())
            )

    def _warmup_requests(self, q: float) -> int:
        return max(self.min_warmup_requests, math.ceil(self.warmup_exceedances / (1.0 - q)))

    # -- updates ---------------------------------------------------------------------------
    def update(self, canary: CohortSummary, baseline: CohortSummary) -> None:
        """Fold one increment of each cohort."""
        for th in self._thresholds:
            if th.bucket is not None:
                th.test.update(
                    canary.count_above(th.bucket),
                    canary.requests,
                    baseline.count_above(th.bucket),
                    baseline.requests,
                )
        self._canary.merge(canary)
        self._baseline.merge(baseline)
        for th in self._thresholds:
            if (
                th.bucket is None
                and th.quantile is not None
                and self._baseline.requests >= self._warmup_requests(th.quantile)
            ):
                self._freeze(th)
        if not self._halted:
            self._halted = self._family_log_e_halt() >= math.log(1.0 / self.alpha)

    def _family_log_e_halt(self) -> float:
        logs = np.array([th.test.log_e_values()[0] for th in self._thresholds])
        return float(np.log(np.mean(np.exp(np.minimum(logs, _LOG_E_CAP)))))

    # -- read-outs -------------------------------------------------------------------------
    def assess(self) -> Assessment:
        """Current finding with per-threshold evidence and the cohorts' quantiles."""
        per: list[tuple[_Threshold, RateRatioAssessment]] = [
            (th, th.test.assess()) for th in self._thresholds
        ]
        log_e_halt = self._family_log_e_halt()
        frozen = [(th, a) for th, a in per if th.bucket is not None]
        all_ni = len(frozen) == len(per) and all(a.promote_path is not None for _, a in frozen)
        if self._halted:
            finding = Finding.REGRESSION
            th_key, a_key = max(per, key=lambda p: p[1].log_e_halt)
        elif all_ni:
            finding = Finding.NON_INFERIOR
            th_key, a_key = min(per, key=lambda p: p[1].log_e_promote)
        else:
            finding = Finding.UNDECIDED
            undecided = [p for p in frozen if p[1].promote_path is None] or per
            th_key, a_key = max(undecided, key=lambda p: p[1].log_e_halt)
        log_e_promote = min((a.log_e_promote for _, a in per), default=0.0)
        if any(th.bucket is None for th in self._thresholds):
            log_e_promote = min(log_e_promote, 0.0)
        needs = [a.requests_to_decision for _, a in frozen]
        to_decision: int | None
        if finding is not Finding.UNDECIDED:
            to_decision = 0
        elif any(th.bucket is None for th, _ in per):
            to_decision = None
        else:
            known = [n for n in needs if n is not None]
            to_decision = max(known) if known and len(known) == len(needs) else None
        reason = self._reason(finding, th_key, a_key)
        return Assessment(
            metric=self.metric,
            finding=finding,
            estimate=a_key.estimate,
            lower=a_key.lower,
            upper=a_key.upper,
            e_halt=math.exp(min(log_e_halt, _LOG_E_CAP)),
            e_promote=math.exp(min(log_e_promote, _LOG_E_CAP)),
            canary_requests=self._canary.requests,
            baseline_requests=self._baseline.requests,
            requests_to_decision=to_decision,
            reason=reason,
            detail={
                "quantiles": {
                    f"p{q * 100:g}": {
                        "canary": self._canary.quantile(q),
                        "baseline": self._baseline.quantile(q),
                    }
                    for q in (0.5, 0.9, 0.99)
                },
                "thresholds": [self._threshold_detail(th, a) for th, a in per],
            },
        )

    def _reason(self, finding: Finding, th: _Threshold, a: RateRatioAssessment) -> str:
        if th.bucket is None:
            return f"latency: thresholds warming up ({self._baseline.requests} baseline requests)"
        t_ms = bucket_upper_edge_s(th.bucket) * 1000.0
        est = "n/a" if a.estimate is None else f"{a.estimate:.2f}"
        what = f"share slower than {t_ms:.4g}ms ({th.label}) canary/baseline {est}"
        if finding is Finding.REGRESSION:
            e = math.exp(min(self._family_log_e_halt(), _LOG_E_CAP))
            return f"latency regression: {what}, evidence e={e:.3g}"
        if finding is Finding.NON_INFERIOR:
            return "latency non-inferior at every threshold"
        return f"latency undecided: {what} [{a.lower:.2f}, {a.upper:.2f}]"

    @staticmethod
    def _threshold_detail(th: _Threshold, a: RateRatioAssessment) -> dict[str, Any]:
        return {
            "label": th.label,
            "quantile": th.quantile,
            "threshold_s": None if th.bucket is None else bucket_upper_edge_s(th.bucket),
            "canary_exceedance": a.canary_events / a.canary_requests if a.canary_requests else None,
            "baseline_exceedance": (
                a.baseline_events / a.baseline_requests if a.baseline_requests else None
            ),
            "ratio": a.estimate,
            "ratio_bounds": [a.lower, a.upper],
            "e_halt": a.e_halt,
            "e_promote": a.e_promote,
            "finding": (
                Finding.NON_INFERIOR.value
                if a.promote_path is not None and a.finding is not Finding.REGRESSION
                else a.finding.value
            ),
        }

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
            "thresholds": [
                {"bucket": th.bucket, "test": th.test.state_dict()} for th in self._thresholds
            ],
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> LatencyTest:
        """Rebuild from :meth:`state_dict` output."""
        if state.get("v") != STATE_VERSION:
            msg = f"unsupported latency state version {state.get('v')!r}"
            raise StateError(msg, value=state.get("v"))
        obj = cls(**dict(state["params"]))
        obj._canary = CohortSummary.from_dict(state["canary"])
        obj._baseline = CohortSummary.from_dict(state["baseline"])
        obj._halted = bool(state["halted"])
        saved = state["thresholds"]
        if len(saved) != len(obj._thresholds):
            msg = f"latency state has {len(saved)} thresholds, expected {len(obj._thresholds)}"
            raise StateError(msg, value=len(saved))
        for th, s in zip(obj._thresholds, saved, strict=True):
            th.bucket = None if s["bucket"] is None else int(s["bucket"])
            th.test = RateRatioTest.from_state(s["test"])
        return obj
