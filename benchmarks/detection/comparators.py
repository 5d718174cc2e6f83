"""The classical canary judges bakemon is compared with, on the same simulated data.

Fixed-horizon tests (one look at the 80 %-power sample size), the same tests re-run at every
look ("peeked"), and the oracle SPRT that knows the true effect.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import stats

from benchmarks.detection.scenarios import (
    AA_MW_CAP_CANARY,
    ALPHA,
    BASE_ERROR_P,
    LATENCY_MEDIAN_S,
    LOG_LATENCY_SIGMA,
    STATS_MW_CAP_CANARY,
    Z_ALPHA,
    FloatArray,
    Outcome,
    Scenario,
    Stream,
)

BAKEMON = "bakemon"
FIXED_Z = "fixed-horizon z (errors)"
FIXED_T = "fixed-horizon t (log-latency)"
PEEKED_Z = "peeked z (errors)"
PEEKED_MW = "peeked Mann–Whitney (latency)"
PEEKED_MW_STATS = "peeked MW, 5% two-sided, ≤10k"
ORACLE = "oracle SPRT"


def _z_errors(x_c: FloatArray, n_c: FloatArray, x_b: FloatArray, n_b: FloatArray) -> FloatArray:
    """Pooled two-proportion z statistics (canary minus baseline), 0 where undefined."""
    p_bar = (x_c + x_b) / (n_c + n_b)
    se = np.sqrt(p_bar * (1.0 - p_bar) * (1.0 / n_c + 1.0 / n_b))
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(se > 0.0, (x_c / n_c - x_b / n_b) / se, 0.0)
    return np.asarray(z, dtype=np.float64)


def fixed_z(sc: Scenario, st: Stream, n: int) -> Outcome:
    n_b = math.ceil(n * sc.baseline_ratio)
    x_c, x_b = np.count_nonzero(st.canary_err[:n]), np.count_nonzero(st.baseline_err[:n_b])
    z = _z_errors(*(np.array([float(v)]) for v in (x_c, n, x_b, n_b)))[0]
    return Outcome("HALT" if z > Z_ALPHA else None, n)


def fixed_t(sc: Scenario, st: Stream, n: int) -> Outcome:
    n_b = math.ceil(n * sc.baseline_ratio)
    res = stats.ttest_ind(
        np.log(st.canary_lat[:n]),
        np.log(st.baseline_lat[:n_b]),
        equal_var=False,
        alternative="greater",
    )
    return Outcome("HALT" if float(res.pvalue) < ALPHA else None, n)


def _step_sums(x: npt.NDArray[Any], per_look: int, looks: int) -> FloatArray:
    """Per look, the sum of its ``per_look`` values."""
    return np.asarray(x[: looks * per_look].reshape(looks, per_look).sum(axis=1), dtype=np.float64)


def _first_crossing(stat: FloatArray, threshold: float, per_look: int) -> Outcome:
    hit = np.flatnonzero(stat > threshold)
    return Outcome("HALT", int(hit[0] + 1) * per_look) if hit.size else Outcome(None, None)


def peeked_z(sc: Scenario, st: Stream) -> Outcome:
    """The z-test on cumulative errors, re-run after every look."""
    lc, lb, steps = sc.canary_per_look, sc.baseline_per_look, sc.looks
    looks = np.arange(1, steps + 1, dtype=np.float64)
    z = _z_errors(
        np.cumsum(_step_sums(st.canary_err, lc, steps)),
        lc * looks,
        np.cumsum(_step_sums(st.baseline_err, lb, steps)),
        lb * looks,
    )
    return _first_crossing(z, Z_ALPHA, lc)


def _count_below(sorted_x: FloatArray, y: FloatArray) -> float:
    """Σ over y of #(x < y) + ½ #(x = y), the Mann–Whitney pair count."""
    left = np.searchsorted(sorted_x, y, side="left")
    right = np.searchsorted(sorted_x, y, side="right")
    return float(left.sum() + right.sum()) / 2.0


def _mw_p(u: float, n1: int, n2: int, two_sided: bool) -> float:
    """scipy's asymptotic Mann–Whitney p-value (continuity-corrected, no ties) for U1 = ``u``."""
    stat = max(u, n1 * n2 - u) if two_sided else u
    z = (stat - n1 * n2 / 2.0 - 0.5) / math.sqrt(n1 * n2 * (n1 + n2 + 1) / 12.0)
    p = 0.5 * math.erfc(z / math.sqrt(2.0))
    return min(2.0 * p if two_sided else p, 1.0)


def _scipy_mw_p(c: FloatArray, b: FloatArray, two_sided: bool) -> float:
    alternative = "two-sided" if two_sided else "greater"
    return float(stats.mannwhitneyu(c, b, alternative=alternative, method="asymptotic").pvalue)


def peeked_mw(
    st: Stream, look_c: int, look_b: int, cap_c: int, alpha: float, two_sided: bool
) -> Outcome:
    """Mann–Whitney U (canary slower) re-run every ``look_c`` canary requests up to ``cap_c``.

    U is updated incrementally (new pairs only), which equals scipy's statistic; the p-values
    at the deciding look and the look before are checked against ``scipy.stats.mannwhitneyu``.
    """
    looks = cap_c // look_c
    sorted_c, sorted_b = np.empty(0), np.empty(0)
    u, first, p = 0.0, None, 1.0
    for t in range(looks):
        new_c = np.sort(st.canary_lat[t * look_c : (t + 1) * look_c])
        new_b = np.sort(st.baseline_lat[t * look_b : (t + 1) * look_b])
        u += _count_below(sorted_b, new_c) + _count_below(new_b, new_c)
        u += sorted_c.size * new_b.size - _count_below(sorted_c, new_b)
        sorted_c = np.insert(sorted_c, np.searchsorted(sorted_c, new_c), new_c)
        sorted_b = np.insert(sorted_b, np.searchsorted(sorted_b, new_b), new_b)
        p = _mw_p(u, sorted_c.size, sorted_b.size, two_sided)
        if p < alpha:
            first = t
            break
    last = looks - 1 if first is None else first
    checks = [(last, p)] + ([(first - 1, None)] if first else [])
    for t, mine in checks:
        ref = _scipy_mw_p(
            st.canary_lat[: (t + 1) * look_c], st.baseline_lat[: (t + 1) * look_b], two_sided
        )
        if (mine is not None and not math.isclose(ref, mine, rel_tol=1e-6, abs_tol=1e-12)) or (
            mine is None and ref < alpha
        ):
            msg = f"incremental Mann–Whitney disagrees with scipy at look {t}: {mine} vs {ref}"
            raise RuntimeError(msg)
    return Outcome(None, None) if first is None else Outcome("HALT", (first + 1) * look_c)


def oracle_sprt(sc: Scenario, st: Stream) -> Outcome:
    """One-sided SPRT at the true effect against no effect, threshold log(1/α)."""
    lc, lb, steps = sc.canary_per_look, sc.baseline_per_look, sc.looks
    threshold = math.log(1.0 / ALPHA)
    if sc.kind == "errors":
        # The canary's share of a look's errors is binomial (STATISTICS.md §1).
        r = sc.canary_error_p / BASE_ERROR_P
        rho0, rho1 = lc / (lc + lb), r * lc / (r * lc + lb)
        x_c, x_b = _step_sums(st.canary_err, lc, steps), _step_sums(st.baseline_err, lb, steps)
        llr = x_c * math.log(rho1 / rho0) + x_b * math.log((1.0 - rho1) / (1.0 - rho0))
        return _first_crossing(np.cumsum(llr), threshold, lc)
    if sc.tail_prob == 0.0:
        # Difference of a look's mean log-latencies ~ N(δ, σ²(1/n_c + 1/n_b)).
        delta = math.log(sc.latency_factor)
        var = LOG_LATENCY_SIGMA**2 * (1.0 / lc + 1.0 / lb)
        d = (
            _step_sums(np.log(st.canary_lat), lc, steps) / lc
            - _step_sums(np.log(st.baseline_lat), lb, steps) / lb
        )
        return _first_crossing(np.cumsum((delta * d - delta * delta / 2.0) / var), threshold, lc)
    # Slow tail: the exact per-request mixture likelihood ratio, baseline distribution known.
    x = st.canary_lat[: steps * lc]
    mu, s, a, q = math.log(LATENCY_MEDIAN_S), LOG_LATENCY_SIGMA, sc.tail_add_s, sc.tail_prob
    shifted = np.maximum(x - a, 1e-300)
    log_ratio = np.log(x / shifted) - ((np.log(shifted) - mu) ** 2 - (np.log(x) - mu) ** 2) / (
        2.0 * s * s
    )
    lr = np.where(x > a, (1.0 - q) + q * np.exp(np.minimum(log_ratio, 700.0)), 1.0 - q)
    return _first_crossing(np.cumsum(_step_sums(np.log(lr), lc, steps)), threshold, lc)


def method_cap(sc: Scenario, method: str) -> int:
    """Horizon (canary requests) of a sequential method on a scenario."""
    if sc.kind == "aa" and method == PEEKED_MW:
        return AA_MW_CAP_CANARY
    if method == PEEKED_MW_STATS:
        return STATS_MW_CAP_CANARY
    return sc.cap_canary
