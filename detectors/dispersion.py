"""Over-dispersion diagnostic for the conditional binomial model of the rate-ratio tests.

The error-rate and latency tests (:mod:`detectors.rate_ratio`, STATISTICS.md §7.2) model each
closed cell (event-time window ``w``, stratum ``s``) with ``x = x_c + x_b`` bad events as
``x_c | x ~ Binomial(x, ρ(θ))``, ``ρ(θ) = e^θ n_c / (e^θ n_c + n_b)``, one θ for all cells.
That needs request-level assignment: with sticky sessions or a few heavy users, a cohort's bad
events come in clumps from the same users, ``x_c`` varies more than the binomial allows, and
every test built on it is anti-conservative (STATISTICS.md §7.6). The assumption cannot be
repaired inside the tests, but it can be checked: :class:`DispersionCheck` is a Pearson
statistic over closed cells,

    X² = Σ_g (X_c,g − E_g)² / V_g,   E_g = Σ x ρ,   V_g = Σ x ρ (1 − ρ),

whose terms each have mean 1 under the model, so ``X² / df`` (the *dispersion ratio*) is ≈ 1
and ≈ the variance inflation factor when events are clumped.

Construction choices:

* **Pooling.** A cell with few events says little (with ``x = 1`` the share is a Bernoulli and
  carries no information about dispersion at all) and its Pearson term is very skewed. Cells
  are pooled in arrival order into groups ``g`` until the group expects at least
  ``min_expected`` events in each cohort (the classic rule of 5); a cell that does so alone is
  its own group. A pooled term still has mean exactly 1 (sums of independent binomials have
  the summed mean and variance), and pooling consecutive windows also exposes clumping *across*
  windows, which a heavy user active for minutes causes. ``df`` counts closed groups; a
  partly filled group waits in a pool until more cells arrive.
* **Calibration.** The terms are not χ²(1) for small groups, so the null variance of ``X²`` is
  kept exactly: a term has variance ``2 + κ₄ / V²`` with ``κ₄ = Σ x ρ (1−ρ)(1 − 6ρ(1−ρ))`` (the
  binomial's fourth cumulant). ``X²`` is matched to ``c·χ²(k)`` with the same mean and variance
  (Satterthwaite) and ``X²/c`` referred to ``χ²(k)`` with the Wilson–Hilferty normal
  approximation, giving ``z`` and a one-sided p-value. With large groups ``k ≈ df``.
* **Robustness.** One group's term is capped at ``term_cap`` (25: a 5-σ residual), so a single
  huge window (a burst, a cold start, a moment the ratio differed) moves the ratio by at most
  ``25 / df``. Under the model a group expecting >= 5 events per cohort exceeds the cap with
  probability ~1e-5, so the cap costs nothing there.
* **Plug-in θ.** ``update`` takes the θ to evaluate ``ρ`` at: the caller passes the test's
  current estimate *before* folding the cell (or 0.0 when it has none). That estimate is
  predictable (prequential): it depends only on earlier cells, so each term compares a cell with
  a forecast made without it and the statistic can be kept as a running sum, never revisited.
  Using the estimate instead of the unknown θ inflates a term by about the cell's information
  times the estimate's variance, ~ 1/(cells so far); summed over the bake that is O(log df),
  against the ``df`` the ratio divides by (simulated: ratio 1.02-1.04 instead of 1.00 over 300
  cells). The very first cells are the exception, scored against 0.0 or a one-cell estimate, so
  the first ``warmup_events`` events only warm the caller's estimate up and are not scored. A
  ratio that drifts during the bake (the canary degrading mid-bake) also shows as dispersion.

A reading needs ``min_groups`` closed groups and ``min_events`` scored events; before that
:attr:`DispersionCheck.dispersion` is None and nothing is suspect. ``suspect`` needs both
``z > z_threshold`` (default 4) and ``ratio > ratio_threshold`` (default 1.25). The first keeps
false alarms rare under the model even when read after every cell (simulated, 16,000 runs of 300
cells, sparse and dense, θ = 0 and log 2, true and prequential θ: 0.12 % ever suspect, at most
0.3 % in one setting). The second ignores dispersion too mild to matter at large df: a variance
inflation of 1.25 already about doubles the rate-ratio test's false-HALT rate, so milder is
reported (in ``ratio``) but not flagged.

>>> check = DispersionCheck()
>>> for w in range(300):  # canary shares alternate 4/14 and 16/26: far more spread than binomial
...     check.update(x_c=4 if w % 2 else 16, n_c=1000, x_b=10, n_b=1000, theta=0.0)
>>> a = check.assess()
>>> a.suspect, round(a.ratio, 1), a.df
(True, 2.0, 295)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from detectors.errors import ParameterError, StateError

__all__ = ["DispersionAssessment", "DispersionCheck"]

STATE_VERSION = 1
_THETA_CLAMP = 50.0  # |θ| beyond this (a ratio of e^50) is clamped: exp() stays finite
_INTS = (int, np.integer)
IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
_REALS = (int, float, np.integer, np.floating)
_POOL_FIELDS = 6  # x_c, x, E_c, E_b, V, κ₄


@dataclass(frozen=True)
class DispersionAssessment:
    """The dispersion check's current reading.

    ``ratio`` is ``X² / df`` (≈ 1 under the binomial model, ≈ the variance inflation factor
    otherwise), ``z`` and ``p_value`` the one-sided evidence of ``X²`` above its null
    distribution; all three are None until there is enough data. ``cells`` counts contributing
    cells, ``df`` the closed groups they were pooled into, ``events`` the bad events in them.
    """

    ratio: float | None
    df: int
    cells: int
    events: int
    z: float | None
    p_value: float | None
    suspect: bool
    message: str


class DispersionCheck:
    """Pearson over-dispersion diagnostic of the conditional binomial, over closed cells.

    ``min_groups`` and ``min_events``: closed groups and scored events needed for a reading.
    ``min_expected``: events a group must expect in each cohort before it closes.
    ``z_threshold`` and ``ratio_threshold``: ``suspect`` needs ``z`` and the ratio above both.
    ``term_cap``: the most one group adds to ``X²``. ``warmup_events``: events at the start
    that are not scored, while the caller's θ estimate settles. Feed each closed cell once.
    """

    def __init__(
        self,
        *,
        min_groups: int = 30,
        min_events: int = 100,
        min_expected: float = 5.0,
        z_threshold: float = 4.0,
        ratio_threshold: float = 1.25,
        term_cap: float = 25.0,
        warmup_events: int = 100,
    ) -> None:
        if not isinstance(min_groups, int) or min_groups < 2:
            raise ParameterError(
                f"min_groups must be an int >= 2, got {min_groups!r}", value=min_groups
            )
        for name, count in (("min_events", min_events), ("warmup_events", warmup_events)):
            if not isinstance(count, int) or count < 0:
                raise ParameterError(f"{name} must be an int >= 0, got {count!r}", value=count)
        checks = (
            ("min_expected", min_expected, 0.0),
            ("z_threshold", z_threshold, -math.inf),
            ("ratio_threshold", ratio_threshold, 0.0),
            ("term_cap", term_cap, 1.0),
        )
        for name, val, low in checks:
            if not isinstance(val, _REALS) or not math.isfinite(val) or val <= low:
                raise ParameterError(
                    f"{name} must be a finite number > {low}, got {val!r}", value=val
                )
        self.min_groups = min_groups
        self.min_events = min_events
        self.min_expected = float(min_expected)
        self.z_threshold = float(z_threshold)
        self.ratio_threshold = float(ratio_threshold)
        self.term_cap = float(term_cap)
        self.warmup_events = warmup_events
        self._warm = 0  # events of the warm-up cells, not scored
        self._cells = 0
        self._events = 0
        self._df = 0
        self._x2 = 0.0
        self._var = 0.0  # null variance of X² (sum over closed groups)
        self._capped = 0
        self._clear_pool()

    def _clear_pool(self) -> None:
        self._p_xc = 0
        self._p_x = 0
        self._p_ec = 0.0
        self._p_eb = 0.0
        self._p_v = 0.0
        self._p_k4 = 0.0

    def params(self) -> dict[str, Any]:
        """Constructor arguments (``DispersionCheck(**params())`` builds an equal empty check)."""
        return {
            "min_groups": self.min_groups,
            "min_events": self.min_events,
            "min_expected": self.min_expected,
            "z_threshold": self.z_threshold,
            "ratio_threshold": self.ratio_threshold,
            "term_cap": self.term_cap,
            "warmup_events": self.warmup_events,
        }

    # -- updates ---------------------------------------------------------------------------
    def update(
        self,
        x_c: int | npt.ArrayLike,
        n_c: int | npt.ArrayLike,
        x_b: int | npt.ArrayLike,
        n_b: int | npt.ArrayLike,
        theta: float | npt.ArrayLike = 0.0,
    ) -> None:
        """Fold closed cells: bad events ``x`` out of requests ``n`` per cohort, and the log rate
        ratio ``theta`` to evaluate the model at (the test's estimate before these cells, or 0.0
        when it has none). Scalars fold one cell; 1-d arrays fold cells in order, with ``theta``
        a scalar or one value per cell. Cells without events or without one cohort are skipped.
        """
        if (
            isinstance(x_c, _INTS)
            and isinstance(n_c, _INTS)
            and isinstance(x_b, _INTS)
            and isinstance(n_b, _INTS)
            and isinstance(theta, _REALS)
        ):
            self._update_one(int(x_c), int(n_c), int(x_b), int(n_b), float(theta))
        else:
            self._update_many(x_c, n_c, x_b, n_b, theta)

    def _update_one(self, x_c: int, n_c: int, x_b: int, n_b: int, theta: float) -> None:
        if x_c < 0 or x_b < 0 or x_c > n_c or x_b > n_b:
            msg = f"need 0 <= events <= requests, got x_c={x_c}, n_c={n_c}, x_b={x_b}, n_b={n_b}"
            raise ParameterError(msg, value=(x_c, n_c, x_b, n_b))
        if not math.isfinite(theta):
            raise ParameterError(f"theta must be finite, got {theta!r}", value=theta)
        x = x_c + x_b
        if x == 0 or n_c == 0 or n_b == 0:
            return
        if self._warm < self.warmup_events:
            self._warm += x
            return
        a = math.exp(max(-_THETA_CLAMP, min(_THETA_CLAMP, theta))) * n_c
        rho = a / (a + n_b)
        rho_b = n_b / (a + n_b)
        v = x * rho * rho_b
        self._cells += 1
        self._events += x
        self._add(x_c, x, x * rho, x * rho_b, v, v * (1.0 - 6.0 * rho * rho_b))

    def _add(self, x_c: int, x: int, e_c: float, e_b: float, v: float, k4: float) -> None:
        """Put one cell into the pool; close the pool as a group once it expects enough."""
        self._p_xc += x_c
        self._p_x += x
        self._p_ec += e_c
        self._p_eb += e_b
        self._p_v += v
        self._p_k4 += k4
        if self._p_ec >= self.min_expected and self._p_eb >= self.min_expected:
            term = (self._p_xc - self._p_ec) ** 2 / self._p_v
            if term > self.term_cap:
                term = self.term_cap
                self._capped += 1
            self._x2 += term
            self._var += 2.0 + self._p_k4 / (self._p_v * self._p_v)
            self._df += 1
            self._clear_pool()

    def _update_many(
        self,
        x_c: npt.ArrayLike,
        n_c: npt.ArrayLike,
        x_b: npt.ArrayLike,
        n_b: npt.ArrayLike,
        theta: npt.ArrayLike,
    ) -> None:
        xc, nc, xb, nb = (
            np.atleast_1d(np.asarray(v, dtype=np.int64)) for v in (x_c, n_c, x_b, n_b)
        )
        if not xc.shape == nc.shape == xb.shape == nb.shape or xc.ndim != 1:
            raise ParameterError("x_c, n_c, x_b and n_b must be 1-d arrays of one length")
        th = np.asarray(theta, dtype=np.float64)
        if th.ndim > 1 or (th.ndim == 1 and th.shape != xc.shape):
            raise ParameterError("theta must be a scalar or one value per cell")
        if xc.size and (min(xc.min(), xb.min()) < 0 or np.any(xc > nc) or np.any(xb > nb)):
            raise ParameterError("need 0 <= events <= requests in every cell")
        if not np.all(np.isfinite(th)):
            raise ParameterError("theta must be finite")
        x = xc + xb
        keep = (x > 0) & (nc > 0) & (nb > 0)
        if self._warm < self.warmup_events:
            events_before = self._warm + np.cumsum(np.where(keep, x, 0)) - x
            warm = keep & (events_before < self.warmup_events)
            self._warm += int(x[warm].sum())
            keep &= ~warm
        th = np.broadcast_to(th, xc.shape)[keep]
        xc, x, nc, nb = xc[keep], x[keep], nc[keep], nb[keep]
        a: FloatArray = np.exp(np.clip(th, -_THETA_CLAMP, _THETA_CLAMP)) * nc
        rho: FloatArray = a / (a + nb)
        rho_b: FloatArray = nb / (a + nb)
        xf = x.astype(np.float64)
        e_c, e_b, v = xf * rho, xf * rho_b, xf * rho * rho_b
        k4 = v * (1.0 - 6.0 * rho * rho_b)
        self._cells += int(x.size)
        self._events += int(x.sum())
        alone = (e_c >= self.min_expected) & (e_b >= self.min_expected)
        if self._p_x == 0 and bool(np.all(alone)):  # every cell its own group: no pooling loop
            self._close_alone(xc, e_c, v, k4)
            return
        for row in zip(
            xc.tolist(),
            x.tolist(),
            e_c.tolist(),
            e_b.tolist(),
            v.tolist(),
            k4.tolist(),
            strict=True,
        ):
            self._add(*row)

    def _close_alone(self, xc: IntArray, e_c: FloatArray, v: FloatArray, k4: FloatArray) -> None:
        """Close each cell as its own group (the pool is empty and every cell expects enough)."""
        terms = (xc - e_c) ** 2 / v
        over = terms > self.term_cap
        self._capped += int(np.count_nonzero(over))
        self._x2 += float(np.sum(np.where(over, self.term_cap, terms)))
        self._var += float(np.sum(2.0 + k4 / (v * v)))
        self._df += int(xc.size)

    # -- read-outs -------------------------------------------------------------------------
    @property
    def cells(self) -> int:
        """Contributing cells folded so far (with events and both cohorts)."""
        return self._cells

    @property
    def df(self) -> int:
        """Closed groups: the degrees of freedom of ``X²``."""
        return self._df

    @property
    def events(self) -> int:
        """Bad events in the contributing cells."""
        return self._events

    def _enough(self) -> bool:
        return self._df >= self.min_groups and self._events >= self.min_events

    @property
    def dispersion(self) -> float | None:
        """``X² / df``, ≈ 1 under the binomial model; None until there is enough data."""
        return self._x2 / self._df if self._enough() else None

    def _z(self, ratio: float) -> float:
        """Wilson–Hilferty z of ``X²`` against ``c·χ²(k)`` matched to its null mean and variance."""
        s = self._var / (9.0 * self._df * self._df)  # 2/(9k) with k = 2 df² / var
        return (math.cbrt(ratio) - 1.0 + s) / math.sqrt(s)

    @property
    def violated(self) -> bool:
        """True when the binomial assumption looks violated (see :meth:`assess`)."""
        ratio = self.dispersion
        if ratio is None or ratio <= self.ratio_threshold:
            return False
        return self._z(ratio) > self.z_threshold

    def assess(self) -> DispersionAssessment:
        """The current reading: ratio, df, z and p-value, whether it is suspect, and a message."""
        ratio = self.dispersion
        if ratio is None:
            msg = (
                f"too little data to check dispersion yet ({self._df} groups and {self._events} "
                f"events, {self.min_groups} and {self.min_events} needed)"
            )
            return DispersionAssessment(
                None, self._df, self._cells, self._events, None, None, False, msg
            )
        z = self._z(ratio)
        p_value = 0.5 * math.erfc(z / math.sqrt(2.0))
        suspect = z > self.z_threshold and ratio > self.ratio_threshold
        if suspect:
            msg = (
                f"events look over-dispersed (ratio {ratio:.1f} over {self._cells} cells): sticky "
                "sessions or heavy users make every test here anti-conservative"
            )
        else:
            msg = f"dispersion consistent with the binomial model (ratio {ratio:.2f} over {self._cells} cells)"
        return DispersionAssessment(
            ratio, self._df, self._cells, self._events, z, p_value, suspect, msg
        )

    # -- state -----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """JSON-able state; :meth:`from_state` rebuilds an identical check."""
        return {
            "v": STATE_VERSION,
            "params": self.params(),
            "counts": [self._cells, self._events, self._df, self._capped, self._warm],
            "x2": self._x2,
            "var": self._var,
            "pool": [self._p_xc, self._p_x, self._p_ec, self._p_eb, self._p_v, self._p_k4],
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> DispersionCheck:
        """Rebuild a check from :meth:`state_dict` output; StateError on a bad document."""
        if not isinstance(state, Mapping) or state.get("v") != STATE_VERSION:
            version = state.get("v") if isinstance(state, Mapping) else None
            raise StateError(f"unsupported dispersion state version {version!r}", value=version)
        try:
            check = cls(**dict(state["params"]))
            counts, pool = list(state["counts"]), list(state["pool"])
            x2, var = state["x2"], state["var"]
        except (KeyError, TypeError, ValueError) as exc:
            raise StateError(f"malformed dispersion state: {exc}", value=state) from exc
        ints = [*counts, pool[0] if pool else None, pool[1] if len(pool) > 1 else None]
        floats = [x2, var, *pool[2:]]
        if (
            len(counts) != 5
            or len(pool) != _POOL_FIELDS
            or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in ints)
            or not all(
                isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
                for v in floats
            )
            or min(x2, var, *pool[2:5]) < 0
            or counts[2] > counts[0]
            or pool[0] > pool[1]
        ):
            raise StateError("malformed dispersion state: bad counts, sums or pool", value=state)
        check._cells, check._events, check._df, check._capped, check._warm = counts
        check._x2, check._var = float(x2), float(var)
        check._p_xc, check._p_x = pool[0], pool[1]
        check._p_ec, check._p_eb, check._p_v, check._p_k4 = (float(v) for v in pool[2:])
        return check
