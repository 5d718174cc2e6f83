"""Anytime-valid test of the canary/baseline rate ratio of bad events (errors, slow requests).

Model (STATISTICS.md §1): each cohort's bad events arrive at a per-request rate, the canary's
being ``e^θ`` times the baseline's. Given the ``x_i`` bad events of increment ``i`` the canary's
share is ``Binomial(x_i, ρ_i(θ))`` with ``ρ_i(θ) = e^θ n_c,i / (e^θ n_c,i + n_b,i)``, so the
baseline's rate drops out and traffic shares may change between increments. The conditional
log-likelihood ``ℓ_t(θ)`` is kept on a fixed grid of θ.

Three mixtures of likelihood ratios are read off ``ℓ_t``:

* HALT gate: weights on ``θ > θ_h = log(1 + halt_margin)`` (half-normal), against ``θ_h``.
  Under any ``θ <= θ_h`` it is a non-negative supermartingale (monotone likelihood ratio), so
  ``P(ever >= 1/alpha) <= alpha``: a false HALT has probability at most ``alpha``.
* PROMOTE gate: weights on ``θ < θ_tol = log(1 + tol)`` (normal around 0, truncated), against
  ``θ_tol``: promoting a canary whose ratio is ``>= 1 + tol`` has probability at most
  ``alpha_promote``.
* A two-sided normal mixture, whose level sets give the confidence sequence reported as
  ``ratio_bounds``.

For rare events an absolute tolerance can also promote: the canary's excess rate, matched cell by
cell (an increment is a window and stratum), is shown below ``abs_tol`` (``excess_bound``).

The grid contains ``θ_h`` and ``θ_tol`` exactly, so the gates are evaluated without
interpolation. A HALT is sticky (stopping at the first crossing is what the guarantee covers);
a PROMOTE reflects the current evidence, so a regression that starts mid-bake can undo it.

>>> t = RateRatioTest(alpha=0.01)
>>> for _ in range(60):
...     t.update(x_c=4, n_c=100, x_b=1, n_b=100)
>>> t.assess().finding.value
'REGRESSION'
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from detectors.base import Finding
from detectors.errors import ParameterError, StateError
from detectors.excess_bound import MatchedExcessBound
from detectors.likelihood import grid, increment_loglik, logsumexp, logsumexp_plus
from detectors.rate_readout import LOG_E_CAP as _LOG_E_CAP
from detectors.rate_readout import RateRatioAssessment, Trace

__all__ = ["Gate", "RateRatioAssessment", "RateRatioTest", "Trace"]

FloatArray = npt.NDArray[np.float64]
Gate = Literal["halt", "promote"]

STATE_VERSION = 2  # v2 adds the abs path's matched-cell accumulators ("excess")
# Prior scales (standard deviations of the mixing normals on θ), tuned with
# benchmarks/detection/: HALT detects a 2x error rate near the fixed-horizon z-test's sample
# size; PROMOTE concludes an A/A bake at tolerance 1.2 well inside the 60k budget.
DEFAULT_HALT_PRIOR_SCALE = math.log(2.0)
DEFAULT_PROMOTE_PRIOR_SCALE = 0.1
DEFAULT_CS_PRIOR_SCALE = math.log(1.5)
_CHUNK_INCREMENTS = 2048
# With abs_tol, the absolute path gets twice this share of alpha_promote, the ratio path the rest
# (the split of v1, which had two rate bounds): the ratio path decides common events.
_ABS_PATH_SHARE = 0.125


class RateRatioTest:
    """Sequential test of the log rate ratio θ of bad events, canary vs baseline.

    Parameters
    ----------
    alpha
        Bound on the probability of a false REGRESSION (HALT) at any time.
    alpha_promote
        Bound on the probability of NON_INFERIOR while the true ratio is ``>= 1 + tol``
        (defaults to ``alpha``).
    tol
        Relative tolerance: NON_INFERIOR means the ratio is shown to be below ``1 + tol``.
    halt_margin
        REGRESSION means the ratio is shown to be above ``1 + halt_margin``.
    abs_tol
        Optional absolute tolerance on the canary's excess rate ``p_c - p_b`` (for rare events,
        where the ratio bound never gets tight): NON_INFERIOR also when the excess matched per
        increment is shown below it (:mod:`detectors.excess_bound`: valid under any changing
        rates and shares). ``alpha_promote`` is then split: 3/4 ratio path, 1/4 this path.
    halt_prior_scale, promote_prior_scale, cs_prior_scale
        Standard deviations of the mixing normals on θ.
    grid_limit, grid_step
        The θ grid spans ``[-grid_limit, grid_limit]`` in steps of ``grid_step``.
    """

    def __init__(
        self,
        alpha: float = 0.01,
        *,
        alpha_promote: float | None = None,
        tol: float = 0.2,
        halt_margin: float = 0.0,
        abs_tol: float | None = None,
        halt_prior_scale: float = DEFAULT_HALT_PRIOR_SCALE,
        promote_prior_scale: float = DEFAULT_PROMOTE_PRIOR_SCALE,
        cs_prior_scale: float = DEFAULT_CS_PRIOR_SCALE,
        grid_limit: float = 4.0,
        grid_step: float = 0.01,
    ) -> None:
        if not 0.0 < alpha < 1.0:
            msg = f"alpha must be in (0, 1), got {alpha}"
            raise ParameterError(msg, value=alpha)
        if alpha_promote is not None and not 0.0 < alpha_promote < 1.0:
            msg = f"alpha_promote must be in (0, 1), got {alpha_promote}"
            raise ParameterError(msg, value=alpha_promote)
        if not 0.0 <= tol < math.expm1(grid_limit):
            msg = f"tol must be in [0, {math.expm1(grid_limit):.1f}), got {tol}"
            raise ParameterError(msg, value=tol)
        if not 0.0 <= halt_margin < math.expm1(grid_limit):
            msg = f"halt_margin must be in [0, {math.expm1(grid_limit):.1f}), got {halt_margin}"
            raise ParameterError(msg, value=halt_margin)
        if abs_tol is not None and not 0.0 < abs_tol < 1.0:
            msg = f"abs_tol must be in (0, 1), got {abs_tol}"
            raise ParameterError(msg, value=abs_tol)
        for name, value in (
            ("halt_prior_scale", halt_prior_scale),
            ("promote_prior_scale", promote_prior_scale),
            ("cs_prior_scale", cs_prior_scale),
            ("grid_step", grid_step),
        ):
            if not value > 0.0:
                msg = f"{name} must be > 0, got {value}"
                raise ParameterError(msg, value=value)
        if not 1.0 <= grid_limit <= 10.0:
            msg = f"grid_limit must be in [1, 10], got {grid_limit}"
            raise ParameterError(msg, value=grid_limit)
        self.alpha = alpha
        self.alpha_promote = alpha if alpha_promote is None else alpha_promote
        self.tol = tol
        self.halt_margin = halt_margin
        self.abs_tol = abs_tol
        self.halt_prior_scale = halt_prior_scale
        self.promote_prior_scale = promote_prior_scale
        self.cs_prior_scale = cs_prior_scale
        self.grid_limit = grid_limit
        self.grid_step = grid_step
        self._build_grid()
        self._reset()

    # -- construction ----------------------------------------------------------------------
    def _build_grid(self) -> None:
        self._theta_halt = math.log1p(self.halt_margin)
        self._theta_tol = math.log1p(self.tol)
        g = grid(
            self.grid_limit,
            self.grid_step,
            self._theta_halt,
            self._theta_tol,
            (self.halt_prior_scale, self.promote_prior_scale, self.cs_prior_scale),
        )
        self._theta, self._exp_theta, self._i_halt, self._i_tol = g.theta, g.exp_theta, *g.nulls
        self._logw_cs = g.logw_cs
        self._span_halt, self._lw_halt = g.halt
        self._span_promote, self._lw_promote = g.promote
        if self.abs_tol is None:
            self._alpha_ratio_path = self.alpha_promote
        else:
            self._alpha_ratio_path = self.alpha_promote * (1.0 - 2.0 * _ABS_PATH_SHARE)

    def _reset(self) -> None:
        self._loglik: FloatArray = np.zeros_like(self._theta)
        self._assessed: tuple[int, RateRatioAssessment] | None = None
        self._version = 0  # counts updates: marks the state an assessment was made of
        # The gates' log e-values at the current likelihood (its identity marks it: every update
        # replaces the array), left by the update that computed them.
        self._log_e_now: tuple[FloatArray, float, float] | None = None
        self._x_c = 0
        self._n_c = 0
        self._x_b = 0
        self._n_b = 0
        self._halted = False
        self._log_crossed: float | None = None  # log e_halt when the HALT gate fired
        self._increments = 0
        self._informative = 0
        self._excess = None if self.abs_tol is None else MatchedExcessBound()

    @property
    def theta(self) -> FloatArray:
        """The θ grid (read-only view)."""
        v = self._theta.view()
        v.flags.writeable = False
        return v

    @property
    def halted(self) -> bool:
        """True once the HALT gate has fired (sticky)."""
        return self._halted

    # -- updates ---------------------------------------------------------------------------
    def _check_counts(self, x_c: int, n_c: int, x_b: int, n_b: int) -> None:
        if min(x_c, n_c, x_b, n_b) < 0 or x_c > n_c or x_b > n_b:
            msg = f"need 0 <= events <= requests, got x_c={x_c}, n_c={n_c}, x_b={x_b}, n_b={n_b}"
            raise ParameterError(msg, value=(x_c, n_c, x_b, n_b))

    def _log_e(self, loglik: FloatArray) -> tuple[FloatArray, FloatArray]:
        """The gates' log e-values for each row of ``loglik`` (mixtures over their weights'
        slices of the grid: the weights are zero elsewhere)."""
        ll = np.atleast_2d(loglik)
        log_e_halt = logsumexp_plus(ll[:, self._span_halt], self._lw_halt)
        log_e_halt -= ll[:, self._i_halt]
        log_e_promote = logsumexp_plus(ll[:, self._span_promote], self._lw_promote)
        log_e_promote -= ll[:, self._i_tol]
        return log_e_halt, log_e_promote

    def update(self, x_c: int, n_c: int, x_b: int, n_b: int) -> None:
        """Fold one increment: ``x`` bad events out of ``n`` requests per cohort."""
        self._check_counts(x_c, n_c, x_b, n_b)
        self._loglik = (
            self._loglik + increment_loglik(self._theta, x_c, n_c, x_b, n_b, self._exp_theta)[0]
        )
        self._x_c += int(x_c)
        self._n_c += int(n_c)
        self._x_b += int(x_b)
        self._n_b += int(n_b)
        self._increments += 1
        self._version += 1
        self._informative += int(n_c > 0 and n_b > 0 and x_c + x_b > 0)
        if self._excess is not None:
            self._excess.update(x_c, n_c, x_b, n_b)
        if not self._halted:
            log_e_halt, _ = self._log_e(self._loglik)
            self._note_halt(log_e_halt)

    def update_many(
        self,
        x_c: npt.ArrayLike,
        n_c: npt.ArrayLike,
        x_b: npt.ArrayLike,
        n_b: npt.ArrayLike,
    ) -> Trace:
        """Fold a sequence of increments at once (vectorised); the same as calling
        :meth:`update` for each, and returns the gates' log e-values after every increment.
        """
        try:
            counts = np.array([x_c, n_c, x_b, n_b], dtype=np.int64)
        except ValueError:  # ragged
            counts = np.zeros((0, 0), dtype=np.int64)
        if counts.ndim == 1:  # four scalars: one increment
            counts = counts[:, None]
        if counts.ndim != 2 or counts.shape[0] != 4:
            msg = "x_c, n_c, x_b and n_b must be 1-d arrays of one length"
            raise ParameterError(msg)
        xc, nc, xb, nb = counts
        if xc.size and ((counts < 0).any() or (xc > nc).any() or (xb > nb).any()):
            msg = "need 0 <= events <= requests in every increment"
            raise ParameterError(msg)
        if xc.size <= _CHUNK_INCREMENTS:
            log_e_halt, log_e_promote = self._fold(counts)
        else:
            parts = [
                self._fold(counts[:, start : start + _CHUNK_INCREMENTS])
                for start in range(0, xc.size, _CHUNK_INCREMENTS)
            ]
            log_e_halt = np.concatenate([p[0] for p in parts])
            log_e_promote = np.concatenate([p[1] for p in parts])
        sums = counts.sum(axis=1).tolist()
        self._x_c += sums[0]
        self._n_c += sums[1]
        self._x_b += sums[2]
        self._n_b += sums[3]
        self._increments += int(xc.size)
        self._version += 1
        self._informative += int(np.count_nonzero((nc > 0) & (nb > 0) & (xc + xb > 0)))
        if self._excess is not None:
            self._excess.update_many(xc, nc, xb, nb)
        if not self._halted and log_e_halt.size:
            self._note_halt(log_e_halt)
        return Trace(log_e_halt, log_e_promote)

    def _fold(self, counts: npt.NDArray[np.int64]) -> tuple[FloatArray, FloatArray]:
        """Add increments (columns of ``counts``: x_c, n_c, x_b, n_b) to the likelihood; the
        gates' log e-values after each (none for no increments). Increments without events (or
        without requests in a cohort) add zero rows, so only the others touch the grid: a
        quiet window of a small service costs no grid arithmetic at all."""
        m = counts.shape[1]
        if not m:
            return np.zeros(0), np.zeros(0)
        x_c, n_c, x_b, n_b = counts
        informative = (n_c > 0) & (n_b > 0) & (x_c + x_b > 0)
        if informative.all():
            return self._fold_rows(x_c, n_c, x_b, n_b)
        before = self.log_e_values()
        rows = np.flatnonzero(informative)
        if not rows.size:
            return np.full(m, before[0]), np.full(m, before[1])
        halt, promote = self._fold_rows(x_c[rows], n_c[rows], x_b[rows], n_b[rows])
        # Row i carries the values after the last informative row at or before it.
        last = np.cumsum(informative) - 1
        return (
            np.where(last >= 0, halt[np.maximum(last, 0)], before[0]),
            np.where(last >= 0, promote[np.maximum(last, 0)], before[1]),
        )

    def _fold_rows(
        self,
        x_c: npt.NDArray[np.int64],
        n_c: npt.NDArray[np.int64],
        x_b: npt.NDArray[np.int64],
        n_b: npt.NDArray[np.int64],
    ) -> tuple[FloatArray, FloatArray]:
        cum = increment_loglik(self._theta, x_c, n_c, x_b, n_b, self._exp_theta)
        np.cumsum(cum, axis=0, out=cum)
        cum += self._loglik
        log_e_halt, log_e_promote = self._log_e(cum)
        self._loglik = cum[-1].copy()
        self._log_e_now = (self._loglik, float(log_e_halt[-1]), float(log_e_promote[-1]))
        return log_e_halt, log_e_promote

    def _note_halt(self, log_e_halt: FloatArray) -> None:
        """Fire the HALT gate at the first of these (successive) e-values over 1/α."""
        over = np.flatnonzero(log_e_halt >= math.log(1.0 / self.alpha))
        if over.size:
            self._halted = True
            self._log_crossed = float(log_e_halt[over[0]])

    # -- read-outs -------------------------------------------------------------------------
    def log_e_values(self) -> tuple[float, float]:
        """Current log e-values of the HALT and PROMOTE (ratio path) gates."""
        now = self._log_e_now
        if now is not None and now[0] is self._loglik:
            return now[1], now[2]
        log_e_halt, log_e_promote = self._log_e(self._loglik)
        self._log_e_now = (self._loglik, float(log_e_halt[0]), float(log_e_promote[0]))
        return self._log_e_now[1], self._log_e_now[2]

    def _bounds(self, alpha: float) -> tuple[float, float]:
        """Confidence-sequence bounds on θ at level ``alpha`` (grid-conservative)."""
        ll = self._loglik
        m = float(logsumexp(ll + self._logw_cs))
        inside = np.flatnonzero(ll > m - math.log(1.0 / alpha))
        first, last = int(inside[0]), int(inside[-1])
        lower = float(self._theta[first - 1]) if first > 0 else -math.inf
        upper = float(self._theta[last + 1]) if last + 1 < self._theta.size else math.inf
        return lower, upper

    def _estimate(self) -> float | None:
        """Maximum-likelihood θ (grid argmax refined by a parabola), None without events."""
        if not self._informative:
            return None
        ll = self._loglik
        i = int(np.argmax(ll))
        if 0 < i < ll.size - 1:
            y0, y1, y2 = float(ll[i - 1]), float(ll[i]), float(ll[i + 1])
            h0, h2 = (
                float(self._theta[i] - self._theta[i - 1]),
                float(self._theta[i + 1] - self._theta[i]),
            )
            denom = y0 * h2 + y2 * h0 - y1 * (h0 + h2)
            if denom < 0 and math.isclose(h0, h2):
                return float(self._theta[i] + 0.5 * h0 * h0 * (y0 - y2) / denom)
        return float(self._theta[i])  # at an edge: the bounds' edge too (counts may mislead)

    def _absolute_path(self) -> bool:
        """The canary's matched excess rate shown below ``abs_tol``, time-uniformly at
        ``alpha_promote / 4`` (:class:`~detectors.excess_bound.MatchedExcessBound`)."""
        alpha = self.alpha_promote * 2.0 * _ABS_PATH_SHARE
        return self._excess is not None and self._excess.shows_below(self.abs_tol or 0.0, alpha)

    def _requests_to_decision(
        self, theta_hat: float | None, log_e_halt: float, log_e_promote: float, gates: str = "hp"
    ) -> int | None:
        """Project further canary requests until a gate fires if the estimate stays put."""
        if theta_hat is None or self._n_c == 0:
            return None
        ll_hat = float(np.max(self._loglik))
        needs: list[float] = []
        for gate in gates:  # "h": HALT, "p": PROMOTE
            if gate == "h":
                log_e, i_null, alpha = log_e_halt, self._i_halt, self.alpha
                on_side = theta_hat > self._theta_halt
            else:
                log_e, i_null, alpha = log_e_promote, self._i_tol, self._alpha_ratio_path
                on_side = theta_hat < self._theta_tol
            drift = ll_hat - float(self._loglik[i_null])  # grows ~ linearly in requests
            penalty = max(drift - log_e, 0.0)
            if on_side and drift > 1e-9:
                needs.append(self._n_c * max((math.log(1.0 / alpha) + penalty) / drift - 1.0, 0.0))
        if not needs:
            return None
        return math.ceil(min(needs))

    def requests_to_gate(self, gate: Gate) -> int | None:
        """Projected further canary requests until ``gate`` fires (None: not in sight)."""
        log_e_halt, log_e_promote = self.log_e_values()
        return self._requests_to_decision(self._estimate(), log_e_halt, log_e_promote, gate[0])

    def assess(self) -> RateRatioAssessment:
        """Current finding with estimate, confidence-sequence bounds and e-values. Read-outs
        between updates are answered from a cache (the likelihood array is replaced, never
        changed in place, by every update, so its identity marks the state)."""
        cached = self._assessed
        if cached is not None and cached[0] == self._version:
            return cached[1]
        result = self._assess()
        self._assessed = (self._version, result)
        return result

    def _assess(self) -> RateRatioAssessment:
        log_e_halt, log_e_promote = self.log_e_values()
        theta_hat = self._estimate()
        lo, hi = self._bounds(self._alpha_ratio_path)
        promote_path: str | None = None
        if log_e_promote >= math.log(1.0 / self._alpha_ratio_path):
            promote_path = "ratio"
        elif self._absolute_path():
            promote_path = "absolute"
        if self._halted:
            finding = Finding.REGRESSION
        elif promote_path is not None:
            finding = Finding.NON_INFERIOR
        else:
            finding = Finding.UNDECIDED
        return RateRatioAssessment(
            finding=finding,
            estimate=None if theta_hat is None else math.exp(theta_hat),
            lower=math.exp(lo),
            upper=math.exp(min(hi, _LOG_E_CAP)),
            log_e_halt=log_e_halt,
            log_e_promote=log_e_promote,
            canary_events=self._x_c,
            canary_requests=self._n_c,
            baseline_events=self._x_b,
            baseline_requests=self._n_b,
            promote_path=promote_path,
            log_e_crossed=self._log_crossed,
            requests_to_decision=(
                0
                if finding is not Finding.UNDECIDED
                else self._requests_to_decision(theta_hat, log_e_halt, log_e_promote)
            ),
        )

    # -- state -----------------------------------------------------------------------------
    def params(self) -> dict[str, Any]:
        """Constructor arguments (JSON-able)."""
        return {
            "alpha": self.alpha,
            "alpha_promote": self.alpha_promote,
            "tol": self.tol,
            "halt_margin": self.halt_margin,
            "abs_tol": self.abs_tol,
            "halt_prior_scale": self.halt_prior_scale,
            "promote_prior_scale": self.promote_prior_scale,
            "cs_prior_scale": self.cs_prior_scale,
            "grid_limit": self.grid_limit,
            "grid_step": self.grid_step,
        }

    def state_dict(self) -> dict[str, Any]:
        """JSON-able state; :meth:`from_state` rebuilds an identical test."""
        return {
            "v": STATE_VERSION,
            "params": self.params(),
            "loglik": self._loglik.tolist(),
            "counts": [self._x_c, self._n_c, self._x_b, self._n_b],
            "halted": self._halted,
            "crossed": self._log_crossed,
            "increments": self._increments,
            "informative": self._informative,
            "excess": None if self._excess is None else self._excess.state_dict(),
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> RateRatioTest:
        """Rebuild a test from :meth:`state_dict` output; StateError on a bad document. A v1 state
        loads with an empty absolute path (still valid); ``excess`` is read only with abs_tol."""
        version = state.get("v")
        if version not in (1, STATE_VERSION):
            msg = f"unsupported rate-ratio state version {version!r}"
            raise StateError(msg, value=version)
        test = cls(**dict(state["params"]))
        loglik = np.asarray(state["loglik"], dtype=np.float64)
        if loglik.shape != test._theta.shape:
            msg = f"rate-ratio state has {loglik.size} grid values, expected {test._theta.size}"
            raise StateError(msg, value=loglik.size)
        test._loglik = loglik
        test._x_c, test._n_c, test._x_b, test._n_b = (int(v) for v in state["counts"])
        test._halted = bool(state["halted"])
        crossed = state.get("crossed")
        test._log_crossed = None if crossed is None else float(crossed)
        test._increments = int(state["increments"])
        test._informative = int(state["informative"])
        if version == STATE_VERSION and test._excess is not None:
            test._excess = MatchedExcessBound.from_state(state.get("excess"))
        return test
