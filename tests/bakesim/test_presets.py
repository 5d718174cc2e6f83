"""Tests of the named scenarios."""

from __future__ import annotations

import pytest

from bakesim.errors import SimulationError
from bakesim.model import Regression
from bakesim.presets import SCENARIO_NAMES, scenario_preset


def test_presets_exist_and_are_valid() -> None:
    """Every advertised preset builds, and the regressions are what their names say."""
    assert set(SCENARIO_NAMES) >= {
        "aa",
        "errors-2x",
        "errors-1.5x",
        "latency-1.10",
        "slow-tail",
        "mid-bake",
        "low-traffic",
    }
    regs = {name: scenario_preset(name).services[0].regression for name in SCENARIO_NAMES}
    assert regs["aa"] is None and regs["low-traffic"] is None
    assert regs["errors-2x"] == Regression(error_multiplier=2.0)
    assert regs["slow-tail"] == Regression(slow_tail_fraction=0.05, slow_tail_add_s=0.2)
    assert regs["mid-bake"] is not None and regs["mid-bake"].start_after_s > 0
    assert scenario_preset("low-traffic").mean_rps <= 5


def test_unknown_preset_names_the_known_ones() -> None:
    """An unknown name raises SimulationError listing the presets, the name in double quotes."""
    with pytest.raises(SimulationError, match='scenario "nope" is not known; known: aa, ') as info:
        scenario_preset("nope")
    assert info.value.value == "nope"


def test_seed_is_passed_through() -> None:
    """The preset carries the requested seed and the default fleet otherwise."""
    assert scenario_preset("aa", seed=9).seed == 9
