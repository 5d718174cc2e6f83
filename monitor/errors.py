"""The exception hierarchy of the ``monitor`` package.

Every error raised on purpose by ``monitor`` derives from :class:`MonitorError`, so callers
(the CLI, the HTTP layer) can turn it into a clear message without catching bugs by accident.
The offending value is kept on the exception for programmatic use.
"""

from __future__ import annotations

from typing import Any


class MonitorError(Exception):
    """Root of all deliberate ``monitor`` errors."""

    def __init__(self, msg: str, *, value: Any = None) -> None:
        super().__init__(msg)
        self.value = value


class ConfigError(MonitorError):
    """A configuration value, field map, policy or bake spec is invalid."""


class InputError(MonitorError):
    """An input file or stream cannot be read at all (not: a single bad record)."""


class BakeError(MonitorError):
    """A bake is unknown, conflicts with another bake, or is used in a wrong state."""
