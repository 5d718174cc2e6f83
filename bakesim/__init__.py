"""bakesim: a seeded traffic simulator for bakemon (scenarios and record generation); not part of the monitor.

:mod:`bakesim.model` describes a fleet and its canary's regression, :mod:`bakesim.presets`
names the usual scenarios, :mod:`bakesim.generation` draws their requests as numpy columns and
:mod:`bakesim.output` writes them as JSON lines. Errors derive from
:class:`~bakesim.errors.SimulationError`.
"""

from __future__ import annotations

from bakesim.errors import SimulationError
from bakesim.generation import Columns, generate, iter_chunks
from bakesim.model import Regression, Route, Scenario, ServiceSpec
from bakesim.output import to_json_lines, write_jsonl, write_lines
from bakesim.presets import SCENARIO_NAMES, scenario_preset

__all__ = [
    "SCENARIO_NAMES",
    "Columns",
    "Regression",
    "Route",
    "Scenario",
    "ServiceSpec",
    "SimulationError",
    "generate",
    "iter_chunks",
    "scenario_preset",
    "to_json_lines",
    "write_jsonl",
    "write_lines",
]
