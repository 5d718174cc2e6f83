"""Tests of the simulator's public surface: the facade module, the package root, errors."""

from __future__ import annotations

import ast
import doctest
from pathlib import Path

import bakesim
from bakesim import scenario as simulate
from bakesim.errors import SimulationError


def test_module_docstring_example_runs() -> None:
    """The facade module's docstring example is a passing doctest."""
    result = doctest.testmod(simulate)
    assert result.attempted > 0 and result.failed == 0


def test_facade_and_package_export_the_same_objects() -> None:
    """bakesim.scenario (the old import path) and bakesim name the same public objects."""
    for name in bakesim.__all__:
        assert getattr(simulate, name) is getattr(bakesim, name)


def test_simulation_error_is_a_value_error_keeping_the_value() -> None:
    """SimulationError is a ValueError (a bad parameter) and keeps the offending value."""
    try:
        bakesim.ServiceSpec(canary_share=1.5)
    except SimulationError as exc:
        assert isinstance(exc, ValueError) and exc.value == 1.5
    else:
        raise AssertionError("no SimulationError")


def test_bakesim_imports_nothing_from_monitor() -> None:
    """The simulator stands alone: no bakesim module imports monitor (or detectors)."""
    root = Path(bakesim.__file__).parent
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            assert not [n for n in names if n.split(".")[0] in ("monitor", "detectors")], path
