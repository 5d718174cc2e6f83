"""A time-uniform test that the canary's matched excess rate of bad events is below ``δ``.

The absolute-tolerance path of :class:`detectors.rate_ratio.RateRatioTest` promotes a canary
whose excess rate over the baseline is shown to be below ``δ``. Comparing the two cohorts'
*cumulative* rates is wrong when rates and traffic shares change together: a canary that gets
most of its traffic at a low-rate hour looks better than a baseline that got most of its traffic
at a high-rate hour (Simpson's paradox). This test compares the cohorts cell by cell, a cell
being an (event-time window, stratum) with both cohorts' counts.

Setting. Cell ``w`` has ``n_c,w`` canary and ``n_b,w`` baseline requests, each bad independently
with probability ``p_c,w`` resp. ``p_b,w`` (they may even differ per request: only the sums
below matter). The cell sizes are conditioned on, so leaving cells out by their sizes is valid:
only cells with ``n_c,w > 0``, ``n_b,w > 0`` and ``a_w = n_c,w / n_b,w <= A_CAP`` take part.
Over the participating cells so far, ``N = Σ n_c,w`` and

* ``S = Σ x_c,w`` (canary bad events), mean ``μ_c = Σ n_c,w p_c,w``;
* ``Y = Σ a_w x_b,w`` (baseline bad events reweighted to the canary's cells), mean
  ``μ_b = Σ n_c,w p_b,w``.

Null. ``μ_c - μ_b >= δ N``: the canary-traffic-weighted mean of the per-cell excesses
``p_c,w - p_b,w`` is at least ``δ``; in particular whenever every cell's excess is ``>= δ``,
whatever the rates and shares do.

Supermartingales. For ``X ~ Bernoulli(p)`` and real ``u``,
``E e^{u(X-p)} = e^{-up}(1 - p + p e^u) <= exp(p φ(u))``, ``φ(u) = e^u - 1 - u`` (``1 + z <= e^z``).
A baseline request of cell ``w`` enters ``Y`` with weight ``a_w``, so it adds
``(n_c,w p_b,w) φ(±λ a_w) / a_w`` to the compensator. ``φ(u)/u`` and ``φ(-u)/u`` increase on
``u > 0`` (Bennett's argument: ``u²(φ(u)/u)' = u e^u - e^u + 1 >= 0``, and likewise), so with
the running maximum ``A_t = max_{w<=t} a_w`` (a function of the sizes only)
``φ(±λ a_w)/a_w <= φ(±λ A_t)/A_t`` for every ``w <= t``. The process with ``φ(±λ A_t)/A_t`` on
all of ``μ_b`` therefore lies pointwise below the supermartingale with each cell's own
``φ(±λ a_w)/a_w``: it can only cross a level if that one does, so Ville's inequality covers it.
With ``λ > 0``, a fixed grid ``λ_k`` and weights ``w_k`` summing to 1, this gives three
(dominated) non-negative supermartingales with initial value 1, canary and baseline being
independent given the sizes:

1. ``M_1(μ_c) = Σ w_k exp(-λ_k S + (1 - e^{-λ_k}) μ_c)``  (canary, upper side);
2. ``M_2(μ_b) = Σ w_k exp(-λ_k Y + (1 - e^{-λ_k A}) μ_b / A)``  (baseline, upper side);
3. ``M_3(μ_c, μ_b) = Σ w_k exp(-λ_k (S - Y) + (1 - e^{-λ_k}) μ_c - (e^{λ_k A} - 1) μ_b / A)``
   (the matched difference ``S - Y``, lower side).

Test. ``U_c`` and ``U_b`` are the roots of ``M_1(U_c) = 1/α_1`` and ``M_2(U_b) = 1/α_2``
(``M_1``, ``M_2`` increase in ``μ``): time-uniform upper bounds on ``μ_c`` and ``μ_b``. The
matched excess is shown below ``δ`` when ``M_3 >= 1/α_3`` at every null point with
``μ_c <= U_c`` and ``μ_b <= U_b``, or there is no such point (``U_c < δ N``). ``M_3`` increases in
``μ_c`` and decreases in ``μ_b``, so its minimum there is at the corner
``μ_b* = min(U_b, U_c - δN)``, ``μ_c* = μ_b* + δN``. Under the null, if both bounds hold the
truth is such a point, so a false "below" needs ``U_c`` or ``U_b`` to fail or ``M_3`` at the
truth to reach ``1/α_3``: probability at most ``α_1 + α_2 + α_3 = α``, at all times at once
(any stopping rule). The corner statistic increases in ``δ``, so the smallest ``δ`` shown is a
time-uniform upper bound on the excess rate (:meth:`MatchedExcessBound.upper_excess`).

Why not two rate bounds. The construction in the brief, ``U_c - L_b < δ N`` with a lower bound
``L_b`` on ``μ_b``, adds two margins of ``≈ sqrt(2 μ log(2/α))`` each. The matched difference
adds their *variances*, a margin of ``≈ sqrt(2 (μ_c + A μ_b) log(1/α_3))``: about 0.7 times as
wide, half the requests. ``U_c`` and ``U_b`` only bound the variance, so a small share of ``α``
serves them: ``α_3 = 0.8 α``, ``α_1 = α_2 = 0.1 α``. Measured (A/A, equal shares, α = 0.0025):
at 1 % with ``δ = 0.001`` median 723k → 321k canary requests; at 0.01 % with ``δ = 2e-4``
181k → 134k.

Choices. The grid is ``λ_k = 2^{k/2}``, ``k = -20..6`` (0.001 to 8, uniform weights), which
covers the best ``λ ≈ sqrt(2 log(1/α) / μ)`` from a handful of events to ~10^7; the mixture
costs about 20 % more margin than the best single λ chosen in hindsight (which would not be
valid). The bounds are Poisson-type (``φ``) rather than binomial, because the per-request means
differ; for rare events the two coincide. ``A_CAP = 10`` keeps one odd cell (a canary with ten
times the baseline's traffic) from inflating ``φ(λA)/A`` for the rest of the bake; the running
maximum rather than ``A_CAP`` itself keeps the bounds tight when the canary's share is small.

Solving. ``log M_1`` and ``log M_2`` are log-sum-exps of affine functions of ``μ``, hence
convex; Newton's method started above the root (at the best single-λ bound at ``α w_k``, which
a single term reaches) moves down monotonically and never crosses it (a convex function lies
above its tangents), so every iterate is a valid, conservative bound. The decision first tries
the bracket ``[best single-λ bound at α, start]`` of each root (larger bounds only lower the
corner's ``M_3``): the roots are solved only when the two ends decide differently.

>>> b = MatchedExcessBound()
>>> for _ in range(100):
...     b.update(x_c=0, n_c=1000, x_b=0, n_b=1000)
>>> b.shows_below(delta=0.001, alpha=0.0025)
True
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from detectors.errors import ParameterError, StateError

__all__ = ["A_CAP", "MatchedExcessBound", "matched_excess_shown_below"]

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

STATE_VERSION = 1
A_CAP = 10.0  # cells where the canary has more than A_CAP times the baseline's requests sit out
_JOINT_SHARE = 0.8  # α_3 / α; the two variance bounds get half the rest each
_LAMBDA: FloatArray = 2.0 ** (np.arange(-20, 7) / 2.0)
_LOG_W = -math.log(_LAMBDA.size)
_CANARY_SLOPE: FloatArray = -np.expm1(-_LAMBDA)  # 1 - e^{-λ}: M_1's slope, M_3's on μ_c
_NEWTON_STEPS = 60
_NEWTON_RTOL = 1e-12
_BISECTION_STEPS = 60


def _check_alpha(alpha: float) -> None:
    if not 0.0 < alpha < 1.0:
        msg = f"alpha must be in (0, 1), got {alpha}"
        raise ParameterError(msg, value=alpha)


def _levels(alpha: float) -> tuple[float, float]:
    """``log(1/α_3)`` of the matched test and ``log(1/α_1) = log(1/α_2)`` of the rate bounds."""
    _check_alpha(alpha)
    return -math.log(alpha * _JOINT_SHARE), -math.log(alpha * (1.0 - _JOINT_SHARE) / 2.0)


def _logsumexp_rows(e: FloatArray) -> FloatArray:
    m = np.max(e, axis=1)
    m = np.where(np.isfinite(m), m, 0.0)
    out: FloatArray = np.log(np.sum(np.exp(e - m[:, None]), axis=1)) + m
    return out


def _log_mix(intercept: FloatArray, slope: FloatArray, mu: FloatArray) -> tuple[FloatArray, ...]:
    """``log Σ_k exp(intercept_k + slope_k μ)`` and its derivative in ``μ`` (rows: bounds)."""
    e = intercept + slope * mu[:, None]
    m = np.max(e, axis=1, keepdims=True)
    p = np.exp(e - m)
    total = np.sum(p, axis=1)
    g: FloatArray = np.log(total) + m[:, 0]
    dg: FloatArray = np.sum(p * slope, axis=1) / total
    return g, dg


def _slopes(a: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Per row and λ: ``(1 - e^{-λA})/A`` (``M_2``'s slope) and ``(e^{λA} - 1)/A`` (``M_3``'s
    rate on ``μ_b``); both are ``λ`` at ``A = 0`` (no cells yet)."""
    lam_a = _LAMBDA[None, :] * a[:, None]
    safe_a = np.where(a > 0.0, a, 1.0)[:, None]
    lam = np.broadcast_to(_LAMBDA[None, :], lam_a.shape)
    slope_b = np.where(lam_a > 0.0, -np.expm1(-lam_a) / safe_a, lam)
    rate_b = np.where(lam_a > 0.0, np.expm1(lam_a) / safe_a, lam)
    return slope_b, rate_b


def _root_bracket(events: FloatArray, slope: FloatArray, level: float) -> tuple[FloatArray, ...]:
    """Bracket of the root of ``log Σ w_k exp(-λ_k events + slope_k μ) = level``: the best
    single-λ bounds at ``α`` (below the root: the mixture is at most the largest term) and at
    ``α w_k`` (above it: one term alone reaches the level, and the bound is valid itself)."""
    single = (level + _LAMBDA[None, :] * events[:, None]) / slope
    lo: FloatArray = np.min(single, axis=1)
    hi: FloatArray = np.min(single - _LOG_W / slope, axis=1)
    return lo, hi


def _upper_root(events: FloatArray, slope: FloatArray, level: float, mu: FloatArray) -> FloatArray:
    """That root (``slope > 0``: the mixture increases in ``μ``) by Newton from ``mu`` above it;
    every iterate is ``>=`` the root (module doc), so stopping anywhere is conservative."""
    intercept = _LOG_W - _LAMBDA[None, :] * events[:, None]
    mu = mu.copy()
    active = np.ones(mu.shape, dtype=bool)
    for _ in range(_NEWTON_STEPS):
        idx = np.flatnonzero(active)
        if not idx.size:
            break
        g, dg = _log_mix(intercept[idx], slope[idx], mu[idx])
        step = np.maximum((g - level) / dg, 0.0)  # >= 0 up to rounding: never step past
        mu[idx] -= step
        active[idx] = step > _NEWTON_RTOL * np.maximum(np.abs(mu[idx]), 1.0)
    return mu


def _rate_bounds(
    s: FloatArray, y: FloatArray, slope_b: FloatArray, level: float
) -> tuple[FloatArray, FloatArray]:
    """``(U_c, U_b)``: the roots of ``M_1 = M_2 = e^level`` (module doc), solved together."""
    events = np.concatenate([s, y])
    slope = np.concatenate([np.broadcast_to(_CANARY_SLOPE, slope_b.shape), slope_b])
    _, hi = _root_bracket(events, slope, level)
    u = _upper_root(events, slope, level, hi)
    return u[: s.size], u[s.size :]


def _corner_shown(
    d: FloatArray,
    excess_n: FloatArray,
    u_c: FloatArray,
    u_b: FloatArray,
    rate_b: FloatArray,
    level_3: float,
) -> BoolArray:
    """The decision of the module doc: no null point with ``μ_c <= U_c`` (``U_c < δN``), or
    ``log M_3 >= level_3`` at the corner ``(μ_c*, μ_b*)``; ``excess_n = δ N``, ``d = S - Y``.
    Larger ``U_c``, ``U_b`` move the corner to a smaller ``M_3``: bounds above the roots give a
    conservative decision, bounds below them a liberal one."""
    mu_b = np.maximum(np.minimum(u_b, u_c - excess_n), 0.0)
    mu_c = mu_b + excess_n
    e = (
        _LOG_W
        - _LAMBDA[None, :] * d[:, None]
        + _CANARY_SLOPE[None, :] * mu_c[:, None]
        - rate_b * mu_b[:, None]
    )
    out: BoolArray = (u_c < excess_n) | (_logsumexp_rows(e) >= level_3)
    return out


def _as_rows(*values: npt.ArrayLike) -> list[FloatArray]:
    arrays = np.broadcast_arrays(*(np.atleast_1d(np.asarray(v, dtype=np.float64)) for v in values))
    return [np.ravel(v).astype(np.float64) for v in arrays]


def matched_excess_shown_below(
    canary_events: npt.ArrayLike,
    weighted_baseline_events: npt.ArrayLike,
    max_ratio: npt.ArrayLike,
    canary_requests: npt.ArrayLike,
    delta: npt.ArrayLike,
    alpha: float,
) -> BoolArray:
    """Vectorised test of the module doc from the accumulators ``S``, ``Y``, ``A`` and ``N``:
    True where the matched excess rate is shown below ``delta``. Under the null that it is
    ``>= delta`` this happens at any time with probability at most ``alpha``."""
    level_3, level_cs = _levels(alpha)
    s, y, a, n, dl = _as_rows(
        canary_events, weighted_baseline_events, max_ratio, canary_requests, delta
    )
    out = np.zeros(s.shape, dtype=bool)
    # U_c > S, and log M_3 <= 0 at the corner when S - Y >= δN: nothing to solve there.
    idx = np.flatnonzero((n > 0) & (s - y < dl * n))
    if not idx.size:
        return out
    s, y, excess_n = s[idx], y[idx], dl[idx] * n[idx]
    slope_b, rate_b = _slopes(a[idx])
    c_lo, c_hi = _root_bracket(s, np.broadcast_to(_CANARY_SLOPE, slope_b.shape), level_cs)
    b_lo, b_hi = _root_bracket(y, slope_b, level_cs)
    sure = _corner_shown(s - y, excess_n, c_hi, b_hi, rate_b, level_3)
    open_ = np.flatnonzero(~sure & _corner_shown(s - y, excess_n, c_lo, b_lo, rate_b, level_3))
    if open_.size:  # the brackets disagree: solve the roots
        u_c, u_b = _rate_bounds(s[open_], y[open_], slope_b[open_], level_cs)
        sure[open_] = _corner_shown(
            s[open_] - y[open_], excess_n[open_], u_c, u_b, rate_b[open_], level_3
        )
    out[idx] = sure
    return out


class MatchedExcessBound:
    """Accumulates matched cells and tests the canary's excess rate (module doc).

    ``update`` is a handful of scalar operations (it runs once per cell on the hot path); the
    bounds are solved only when read.
    """

    __slots__ = ("_a_max", "_cells", "_n", "_s", "_skipped", "_y")

    def __init__(self) -> None:
        self._s = 0  # S: canary events in participating cells
        self._n = 0  # N: canary requests in participating cells
        self._y = 0.0  # Y = Σ a_w x_b,w
        self._a_max = 0.0  # A: running max of a_w
        self._cells = 0  # participating cells
        self._skipped = 0  # canary requests in cells with a_w > A_CAP

    # -- updates ---------------------------------------------------------------------------
    def update(self, x_c: int, n_c: int, x_b: int, n_b: int) -> None:
        """Fold one cell: both cohorts' bad events and requests of one window and stratum."""
        if x_c < 0 or x_b < 0 or x_c > n_c or x_b > n_b:
            msg = f"need 0 <= events <= requests, got x_c={x_c}, n_c={n_c}, x_b={x_b}, n_b={n_b}"
            raise ParameterError(msg, value=(x_c, n_c, x_b, n_b))
        if n_c == 0 or n_b == 0:
            return
        a = n_c / n_b
        if a > A_CAP:
            self._skipped += int(n_c)
            return
        self._s += int(x_c)
        self._n += int(n_c)
        self._y += (n_c * x_b) / n_b
        if a > self._a_max:
            self._a_max = a
        self._cells += 1

    def update_many(
        self, x_c: npt.ArrayLike, n_c: npt.ArrayLike, x_b: npt.ArrayLike, n_b: npt.ArrayLike
    ) -> None:
        """Fold a sequence of cells: the same state, bit for bit, as :meth:`update` on each."""
        xc, nc, xb, nb = (
            np.atleast_1d(np.asarray(v, dtype=np.int64)) for v in (x_c, n_c, x_b, n_b)
        )
        if not xc.shape == nc.shape == xb.shape == nb.shape or xc.ndim != 1:
            msg = "x_c, n_c, x_b and n_b must be 1-d arrays of one length"
            raise ParameterError(msg)
        if np.any(xc < 0) or np.any(xb < 0) or np.any(xc > nc) or np.any(xb > nb):
            msg = "need 0 <= events <= requests in every cell"
            raise ParameterError(msg)
        both = (nc > 0) & (nb > 0)
        xc, nc, xb, nb = xc[both], nc[both], xb[both], nb[both]
        ratio = nc / nb
        keep = ratio <= A_CAP
        self._skipped += int(nc[~keep].sum())
        if not np.any(keep):
            return
        xc, nc, xb, nb = xc[keep], nc[keep], xb[keep], nb[keep]
        self._s += int(xc.sum())
        self._n += int(nc.sum())
        # cumsum adds left to right like the scalar loop (np.sum would add pairwise).
        self._y = float(np.cumsum(np.concatenate([[self._y], (nc * xb) / nb]))[-1])
        self._a_max = max(self._a_max, float(ratio[keep].max()))
        self._cells += int(nc.size)

    # -- read-outs -------------------------------------------------------------------------
    @property
    def canary_requests(self) -> int:
        """``N``: canary requests in the participating cells."""
        return self._n

    @property
    def skipped_requests(self) -> int:
        """Canary requests in cells left out for ``a_w > A_CAP``."""
        return self._skipped

    def _roots(self, level_cs: float) -> tuple[FloatArray, ...]:
        s, y, a = _as_rows(self._s, self._y, self._a_max)
        slope_b, rate_b = _slopes(a)
        u_c, u_b = _rate_bounds(s, y, slope_b, level_cs)
        return s - y, u_c, u_b, rate_b

    def rate_bounds(self, alpha: float) -> tuple[float, float]:
        """``(U_c / N, U_b / N)``: upper bounds on the canary's rate and on the baseline's rate
        reweighted to the canary's cells, each the ``α_1 = α_2 = 0.1 alpha`` bound of the test."""
        _, level_cs = _levels(alpha)
        if self._n == 0:
            return math.inf, math.inf
        _, u_c, u_b, _ = self._roots(level_cs)
        return float(u_c[0]) / self._n, float(u_b[0]) / self._n

    def shows_below(self, delta: float, alpha: float) -> bool:
        """True when the matched excess rate is shown ``< delta`` (falsely: at most ``alpha``)."""
        _check_alpha(alpha)
        if self._n == 0 or self._s - self._y >= delta * self._n:
            return False  # the shortcut of matched_excess_shown_below, without numpy
        shown = matched_excess_shown_below(self._s, self._y, self._a_max, self._n, delta, alpha)
        return bool(shown[0])

    def upper_excess(self, alpha: float) -> float:
        """Smallest ``δ >= 0`` that :meth:`shows_below` at ``alpha`` (bisection, from above to a
        relative 1e-12): a time-uniform upper bound on the matched excess rate; inf without
        cells, 0 when the canary is shown no worse than the baseline."""
        level_3, level_cs = _levels(alpha)
        if self._n == 0:
            return math.inf
        d, u_c, u_b, rate_b = self._roots(level_cs)

        def shown(delta: float) -> bool:
            excess_n = np.array([delta * self._n])
            return bool(_corner_shown(d, excess_n, u_c, u_b, rate_b, level_3)[0])

        lo, hi = 0.0, float(u_c[0]) / self._n * (1.0 + 1e-9)  # shown: U_c < δN
        if shown(lo):
            return 0.0
        for _ in range(_BISECTION_STEPS):  # shown(δ) is monotone in δ (module doc)
            mid = 0.5 * (lo + hi)
            if shown(mid):
                hi = mid
            else:
                lo = mid
            if hi - lo <= 1e-12 * hi:
                break
        return hi

    # -- state -----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """JSON-able state; :meth:`from_state` rebuilds it exactly (floats round-trip)."""
        return {
            "v": STATE_VERSION,
            "s": int(self._s),
            "n": int(self._n),
            "y": float(self._y),  # plain floats even if numpy scalars were fed
            "a_max": float(self._a_max),
            "cells": self._cells,
            "skipped": int(self._skipped),
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any] | None) -> MatchedExcessBound:
        """Rebuild from :meth:`state_dict` output; StateError on a bad (or missing) document."""
        if not isinstance(state, Mapping):
            msg = f"malformed matched-excess state: expected an object, got {state!r}"
            raise StateError(msg, value=state)
        if state.get("v") != STATE_VERSION:
            msg = f"unsupported matched-excess state version {state.get('v')!r}"
            raise StateError(msg, value=state.get("v"))
        try:
            ints = [state[k] for k in ("s", "n", "cells", "skipped")]
            floats = [state[k] for k in ("y", "a_max")]
        except KeyError as exc:
            msg = f"malformed matched-excess state: missing {exc.args[0]!r}"
            raise StateError(msg, value=exc.args[0]) from None
        if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in ints):
            msg = f"malformed matched-excess state: counts must be integers >= 0, got {ints}"
            raise StateError(msg, value=ints)
        if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in floats) or not (
            math.isfinite(floats[0]) and floats[0] >= 0.0 and 0.0 <= floats[1] <= A_CAP
        ):
            msg = f"malformed matched-excess state: y, a_max out of range, got {floats}"
            raise StateError(msg, value=floats)
        s, n, cells, skipped = ints
        if s > n or (cells == 0) != (n == 0):
            msg = f"malformed matched-excess state: s={s}, n={n}, cells={cells}"
            raise StateError(msg, value=(s, n, cells))
        b = cls()
        b._s, b._n, b._cells, b._skipped = s, n, cells, skipped
        b._y, b._a_max = float(floats[0]), float(floats[1])
        return b
