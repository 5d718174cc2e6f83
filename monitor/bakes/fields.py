"""Validation helpers shared by the policy's parts: every bad field gets a message naming it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from monitor.errors import ConfigError

__all__ = ["check_keys", "fail", "num"]


def fail(path: str, problem: str, value: Any) -> ConfigError:
    """The error for a bad field: ``policy field "errors.tol": must be <= 50.0, got 80``."""
    msg = f'policy field "{path}": {problem}, got {value!r}'
    return ConfigError(msg, value=value)


def check_keys(data: Mapping[str, Any], allowed: set[str], path: str) -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        where = f'"{path}"' if path else "policy"
        names = ", ".join(f'"{k}"' for k in unknown)
        msg = f"unknown field(s) {names} in {where}; valid: {', '.join(sorted(allowed))}"
        raise ConfigError(msg, value=unknown)


def num(
    data: Mapping[str, Any],
    key: str,
    path: str,
    default: Any,
    lo: float | None = None,
    hi: float | None = None,
    *,
    integer: bool = False,
    lo_open: bool = False,
) -> Any:
    if key not in data or data[key] is None:
        return default
    v = data[key]
    full = f"{path}.{key}" if path else key
    if (
        isinstance(v, bool)
        or not isinstance(v, int | float)
        or (integer and not isinstance(v, int))
    ):
        raise fail(full, "must be an integer" if integer else "must be a number", v)
    if lo is not None and (v <= lo if lo_open else v < lo):
        raise fail(full, f"must be {'>' if lo_open else '>='} {lo}", v)
    if hi is not None and v > hi:
        raise fail(full, f"must be <= {hi}", v)
    return v
