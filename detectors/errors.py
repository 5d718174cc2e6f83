"""The exception hierarchy of the ``detectors`` package.

Every error ``detectors`` raises on purpose derives from :class:`DetectorError`, itself a
``ValueError`` (a bad argument or a bad state document is a bad value), so a caller can tell the
package's deliberate errors from bugs. The offending value is kept on the exception.
"""

from __future__ import annotations

from typing import Any

__all__ = ["DetectorError", "ParameterError", "StateError"]


class DetectorError(ValueError):
    """Root of all deliberate ``detectors`` errors."""

    def __init__(self, msg: str, *, value: Any = None) -> None:
        super().__init__(msg)
        self.value = value


class ParameterError(DetectorError):
    """An argument is out of its bounds (a constructor parameter, counts, a quantile)."""


class StateError(DetectorError):
    """A state or summary document is malformed, or of a version this code does not read."""
