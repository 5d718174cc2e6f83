"""The named scenarios of ``bakemon simulate --scenario``: one service, v41 → v42, and what is wrong."""

from __future__ import annotations

import dataclasses
from typing import Final

from bakesim.errors import SimulationError
from bakesim.model import Regression, Scenario, ServiceSpec

__all__ = ["MID_BAKE_START_S", "SCENARIO_NAMES", "scenario_preset"]

MID_BAKE_START_S: Final = 600.0  # halfway through the CLI's default 20-minute bake

_PRESETS: Final[dict[str, tuple[str, Regression | None, float | None]]] = {
    "aa": ("no regression: canary identical to baseline", None, None),
    "errors-2x": ("canary error rate x2", Regression(error_multiplier=2.0), None),
    "errors-1.5x": ("canary error rate x1.5", Regression(error_multiplier=1.5), None),
    "latency-1.10": ("canary latency x1.10", Regression(latency_multiplier=1.10), None),
    "slow-tail": (
        "5% of canary requests +200 ms",
        Regression(slow_tail_fraction=0.05, slow_tail_add_s=0.2),
        None,
    ),
    "mid-bake": (
        f"canary errors x3 from {MID_BAKE_START_S:.0f} s into the bake on",
        Regression(error_multiplier=3.0, start_after_s=MID_BAKE_START_S),
        None,
    ),
    "low-traffic": ("2 requests/s over the fleet, no regression", None, 2.0),
}
SCENARIO_NAMES: Final = tuple(_PRESETS)


def scenario_preset(name: str, *, seed: int = 0) -> Scenario:
    """The named preset (one of :data:`SCENARIO_NAMES`): service "checkout", v41 → v42."""
    if name not in _PRESETS:
        msg = f'scenario "{name}" is not known; known: {", ".join(SCENARIO_NAMES)}'
        raise SimulationError(msg, value=name)
    _, regression, rps = _PRESETS[name]
    scenario = Scenario(services=(ServiceSpec(regression=regression),), seed=seed)
    return scenario if rps is None else dataclasses.replace(scenario, mean_rps=rps)
