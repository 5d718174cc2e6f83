"""The conditional likelihood of the canary's share of bad events on a grid of the log rate
ratio θ, and the log-space mixtures the rate-ratio gates read off it (STATISTICS.md §1).

Kept apart from :mod:`detectors.rate_ratio` (the test and its gates) because these few array
operations are where every closed window spends its time: they are written for that.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from detectors.errors import ParameterError

__all__ = ["Grid", "grid", "increment_loglik", "log_weights", "logsumexp", "logsumexp_plus", "span"]

FloatArray = npt.NDArray[np.float64]


def logsumexp(a: FloatArray, axis: int = -1) -> FloatArray:
    # log(sum(exp(a - max))) + max, with ndarray methods and in-place arithmetic; the non-finite
    # guard only when needed.
    m = a.max(axis=axis, keepdims=True)
    if not np.isfinite(m).all():
        m = np.where(np.isfinite(m), m, 0.0)
    e = a - m
    np.exp(e, out=e)
    out: FloatArray = np.log(e.sum(axis=axis))
    out += m.squeeze(axis)
    return out


def logsumexp_plus(a: FloatArray, w: FloatArray) -> FloatArray:
    """Per row of the 2-d ``a``, ``log(sum(exp(a + w)))`` for finite ``a`` and ``w`` (the gates'
    mixtures over the slice of the grid their weights cover): the hot spot of every window
    closed, so one temporary and in-place arithmetic."""
    s = a + w
    m = s.max(axis=1)
    s -= m[:, None]
    np.exp(s, out=s)
    out: FloatArray = np.log(s.sum(axis=1))
    out += m
    return out


def span(mask: npt.NDArray[np.bool_]) -> slice:
    """The contiguous run of True in ``mask`` (a threshold on the sorted grid) as a slice."""
    idx = np.flatnonzero(mask)
    if idx.size == 0 or idx[-1] - idx[0] + 1 != idx.size:
        msg = "a gate's weights must cover one contiguous run of the grid"
        raise ParameterError(msg)
    return slice(int(idx[0]), int(idx[-1]) + 1)


def log_weights(
    theta: FloatArray, center: float, scale: float, mask: npt.NDArray[np.bool_]
) -> FloatArray:
    """Log prior weights: a normal density times trapezoid widths, normalised over ``mask``."""
    widths = np.empty_like(theta)
    widths[1:-1] = 0.5 * (theta[2:] - theta[:-2])
    widths[0] = 0.5 * (theta[1] - theta[0])
    widths[-1] = 0.5 * (theta[-1] - theta[-2])
    logw = -0.5 * ((theta - center) / scale) ** 2 + np.log(widths)
    logw = np.where(mask, logw, -np.inf)
    return logw - logsumexp(logw)


def increment_loglik(
    theta: FloatArray,
    x_c: npt.ArrayLike,
    n_c: npt.ArrayLike,
    x_b: npt.ArrayLike,
    n_b: npt.ArrayLike,
    exp_theta: FloatArray | None = None,
) -> FloatArray:
    """Conditional log-likelihood of each increment (rows) at each grid point (columns).

    With ``r = n_c / n_b`` the canary's share is ``ρ(θ) = e^θ r / (1 + e^θ r)``, so
    ``ℓ(θ) = x_c (θ + log r) - (x_c + x_b) log1p(e^θ r)``: one ``log1p`` per grid point and
    increment (``exp_theta``, ``e^θ`` on the grid, may be passed in precomputed).
    Increments where either cohort has no requests carry no information and give zero rows.
    """
    xc = np.atleast_1d(np.asarray(x_c, dtype=np.float64))
    xb = np.atleast_1d(np.asarray(x_b, dtype=np.float64))
    nc = np.atleast_1d(np.asarray(n_c, dtype=np.float64))
    nb = np.atleast_1d(np.asarray(n_b, dtype=np.float64))
    informative = (nc > 0) & (nb > 0) & (xc + xb > 0)
    if not informative.all():  # zero rows: no events counted, any finite r
        xc, xb = np.where(informative, xc, 0.0), np.where(informative, xb, 0.0)
        nc, nb = np.where(informative, nc, 1.0), np.where(informative, nb, 1.0)
    r = nc / nb
    if exp_theta is None:
        exp_theta = np.exp(theta)
    out: FloatArray = np.multiply.outer(r, exp_theta)
    np.log1p(out, out=out)
    out *= -(xc + xb)[:, None]
    out += np.multiply.outer(xc, theta)
    out += (xc * np.log(r))[:, None]
    return out


class Grid(NamedTuple):
    """A θ grid with the gates' weights (arrays shared by every test built alike: read-only)."""

    theta: FloatArray
    exp_theta: FloatArray
    nulls: tuple[int, int]  # indices of θ_h (HALT's null) and θ_tol (PROMOTE's)
    halt: tuple[slice, FloatArray]  # the HALT mixture's slice of the grid and its log weights
    promote: tuple[slice, FloatArray]
    logw_cs: FloatArray  # the two-sided mixture of the confidence sequence, whole grid


@functools.lru_cache(maxsize=256)
def grid(
    limit: float, step: float, theta_halt: float, theta_tol: float, scales: tuple[float, ...]
) -> Grid:
    """``[-limit, limit]`` in ``step`` s plus the gate points ``θ_h`` and ``θ_tol`` (points
    within 1e-9 of another are dropped), with log weights: half-normal above ``θ_h`` (scale
    ``scales[0]``), normal around 0 below ``θ_tol`` (``scales[1]``), and a two-sided normal
    (``scales[2]``). Cached: a bake builds dozens of tests on the same few grids."""
    n = round(limit / step)
    base = np.linspace(-limit, limit, 2 * n + 1)
    theta = np.unique(np.concatenate([base, [theta_halt, theta_tol]]))
    theta = theta[np.concatenate([[True], np.diff(theta) > 1e-9])]
    logw_halt = log_weights(theta, theta_halt, scales[0], theta > theta_halt)
    logw_promote = log_weights(theta, 0.0, scales[1], theta < theta_tol)
    logw_cs = log_weights(theta, 0.0, scales[2], np.ones_like(theta, dtype=bool))
    halt, promote = span(np.isfinite(logw_halt)), span(np.isfinite(logw_promote))
    out = Grid(
        theta,
        np.exp(theta),
        (int(np.argmin(np.abs(theta - theta_halt))), int(np.argmin(np.abs(theta - theta_tol)))),
        (halt, logw_halt[halt]),
        (promote, logw_promote[promote]),
        logw_cs,
    )
    for a in (out.theta, out.exp_theta, out.halt[1], out.promote[1], out.logw_cs):
        a.flags.writeable = False
    return out
