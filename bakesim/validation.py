"""Argument checks shared by the simulator's dataclasses and front ends (fail fast, by name)."""

from __future__ import annotations

import math

from bakesim.errors import SimulationError

__all__ = ["as_tuple", "require", "require_names"]


def require(
    name: str,
    value: object,
    lo: float,
    hi: float = math.inf,
    *,
    open_lo: bool = False,
    open_hi: bool = False,
    integer: bool = False,
) -> None:
    """Raise SimulationError("name must be in (lo, hi], got value") unless value is in bounds."""
    kinds = (int,) if integer else (int, float)
    ok = isinstance(value, kinds) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        assert isinstance(value, int | float)
        ok = (value > lo if open_lo else value >= lo) and (value < hi if open_hi else value <= hi)
    if not ok:
        if hi == math.inf:
            bound = f"{'>' if open_lo else '>='} {lo:g}"
        else:
            bound = f"in {'(' if open_lo else '['}{lo:g}, {hi:g}{')' if open_hi else ']'}"
        word = "an integer " if integer else ""
        msg = f"{name} must be {word}{bound}, got {value!r}"
        raise SimulationError(msg, value=value)


def require_names(name: str, values: object) -> None:
    """Raise SimulationError unless ``values`` is a non-empty tuple of unique non-empty strings."""
    ok = isinstance(values, tuple) and len(values) > 0 and len(set(values)) == len(values)
    if not (ok and isinstance(values, tuple) and all(isinstance(v, str) and v for v in values)):
        msg = f"{name} must be unique non-empty strings, got {values!r}"
        raise SimulationError(msg, value=values)


def as_tuple(obj: object, name: str) -> None:
    """Turn a list attribute of a frozen dataclass into a tuple, in place (lists are accepted)."""
    value = getattr(obj, name)
    if isinstance(value, list):
        object.__setattr__(obj, name, tuple(value))
