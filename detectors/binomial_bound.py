"""A time-uniform upper confidence bound for a Bernoulli rate (beta-binomial mixture).

For a prior Beta(a, b) the mixture likelihood ratio against a fixed rate p,

    M_n(p) = B(a + S, b + F) / B(a, b) / (p^S (1 - p)^F),

is a test martingale under p (Robbins' method of mixtures), so by Ville's inequality
``{p : M_n(p) < 1/alpha}`` covers the true rate at every n simultaneously with probability at
least ``1 - alpha``. It bounds one cohort's *cumulative* rate, which is why
:class:`detectors.rate_ratio.RateRatioTest` no longer uses it: under changing rates and traffic
shares the two cohorts' cumulative rates are differently weighted averages (Simpson's paradox),
see :mod:`detectors.excess_bound`. It stays for the tests that document that failure.

>>> round(beta_binomial_upper(10, 1000, 0.05), 4)
0.0262
"""

from __future__ import annotations

import math

from detectors.errors import ParameterError

__all__ = ["beta_binomial_upper"]

_BISECTION_STEPS = 60


def _log_beta(a: float, b: float) -> float:
    return math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)


def beta_binomial_upper(
    successes: int, trials: int, alpha: float, *, a: float = 0.5, b: float = 0.5
) -> float:
    """Largest rate p not rejected by the beta-binomial mixture test at level ``alpha``."""
    if not 0.0 < alpha < 1.0:
        msg = f"alpha must be in (0, 1), got {alpha}"
        raise ParameterError(msg, value=alpha)
    if trials < 0 or not 0 <= successes <= trials:
        msg = f"need 0 <= successes <= trials, got successes={successes}, trials={trials}"
        raise ParameterError(msg, value=(successes, trials))
    if trials == 0:
        return 1.0
    failures = trials - successes
    log_mix = _log_beta(a + successes, b + failures) - _log_beta(a, b)
    threshold = math.log(1.0 / alpha)

    def log_m(p: float) -> float:
        ll = 0.0
        if successes:
            ll += successes * math.log(p)
        if failures:
            ll += failures * math.log1p(-p)
        return log_mix - ll

    lo = successes / trials
    hi = 1.0
    if failures == 0 or log_m(1.0 - 1e-15) < threshold:
        return 1.0
    # log_m is convex with its minimum at the MLE, so the bound is the unique crossing above it.
    for _ in range(_BISECTION_STEPS):
        mid = 0.5 * (lo + hi)
        if log_m(mid) < threshold:
            lo = mid
        else:
            hi = mid
    return hi
