"""Durations on the command line: "90", "90s", "20m", "1.5h", "500ms", "1d"."""

from __future__ import annotations

import re
from typing import Final

from monitor.errors import ConfigError

__all__ = ["parse_duration_s"]

_DURATION_RE: Final = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m|h|d)?\s*$")
_UNIT_S: Final = {"ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration_s(text: str, *, name: str = "duration") -> float:
    """Seconds in ``text`` such as "90", "90s", "20m", "1.5h", "500ms", "1d"."""
    match = _DURATION_RE.match(text)
    if match is None:
        msg = f'{name} must look like 90s, 20m or 2h, got "{text}"'
        raise ConfigError(msg, value=text)
    return float(match.group(1)) * _UNIT_S[match.group(2) or "s"]
