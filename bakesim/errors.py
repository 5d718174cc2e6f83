"""The exception hierarchy of the ``bakesim`` package.

Every error ``bakesim`` raises on purpose derives from :class:`SimulationError` (a
``ValueError``: it is always a bad parameter), so the simulator stands on its own and a front
end such as ``bakemon simulate`` can turn it into a message. The offending value is kept.
"""

from __future__ import annotations

from typing import Any

__all__ = ["SimulationError"]


class SimulationError(ValueError):
    """A scenario, service, route, regression or generation parameter is invalid."""

    def __init__(self, msg: str, *, value: Any = None) -> None:
        super().__init__(msg)
        self.value = value
