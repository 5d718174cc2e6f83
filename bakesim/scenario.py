"""The simulator's public names in one place (the import path used before the split).

Scenarios are described in :mod:`bakesim.model`, named in :mod:`bakesim.presets`, generated
by :mod:`bakesim.generation` and written by :mod:`bakesim.output`; new code may import from
``bakesim`` itself.

>>> import numpy as np
>>> from bakesim.scenario import generate, scenario_preset, to_json_lines
>>> cols = generate(scenario_preset("errors-2x", seed=7), total_requests=1000)
>>> len(cols), cols.version_names
(1000, ('v41', 'v42'))
>>> bool(np.all(np.diff(cols.ts) >= 0))
True
>>> print(to_json_lines(cols[:1])[0].decode())
{"ts":1795824000.000018,"service":"checkout","version":"v41","status":200,"latency_ms":207.864,"route":"/search","zone":"eu-west-1b","host":"checkout-v41-5"}
"""

from __future__ import annotations

from bakesim.errors import SimulationError
from bakesim.generation import ERROR_STATUSES, OK_STATUSES, Columns, generate, iter_chunks
from bakesim.model import DEFAULT_START_S, Regression, Route, Scenario, ServiceSpec
from bakesim.output import to_json_lines, write_jsonl, write_lines
from bakesim.presets import MID_BAKE_START_S, SCENARIO_NAMES, scenario_preset

__all__ = [
    "DEFAULT_START_S",
    "ERROR_STATUSES",
    "MID_BAKE_START_S",
    "OK_STATUSES",
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
