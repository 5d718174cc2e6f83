"""The house plan (docs/architecture.md): import rules between packages, no cycles, sizes."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("monitor", "detectors", "bakesim")
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 60
# monitor/ may use the simulator only to drive traffic in these two commands.
BAKESIM_USERS = {"monitor.cli.simulate", "monitor.cli.demo", "monitor.cli.demo_traffic"}


def _modules() -> Iterator[tuple[str, Path]]:
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            rel = path.relative_to(ROOT).with_suffix("")
            parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
            yield ".".join(parts), path


def _imports(tree: ast.Module) -> set[str]:
    """Every first-party module named by an import anywhere in the file (lazy ones included)."""
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        out.update(n for n in names if n.split(".")[0] in PACKAGES)
    return out


MODULES = dict(_modules())
# Parsed once, at collection, before any test starts a thread: CPython 3.11.7's AST
# constructor keeps its recursion depth in shared state (gh-106905, fixed in 3.11.8), and a
# traceback printed by a client thread (3.11 parses source lines for its carets) racing an
# ast.parse here fails the parse with "AST constructor recursion depth mismatch".
TREES = {mod: ast.parse(path.read_text()) for mod, path in MODULES.items()}
GRAPH = {
    mod: {m for m in _imports(tree) if m in MODULES and m != mod} for mod, tree in TREES.items()
}


def _room(mod: str) -> str:
    """The room a module lives in: ``monitor.pipeline.judge`` → ``monitor.pipeline``; a module at
    monitor's top level (``monitor.config``, ``monitor.errors``) is a room of its own."""
    parts = mod.split(".")
    return parts[0] if parts[0] != "monitor" else ".".join(parts[:2])


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                return [*stack[stack.index(m) :], m]
            if m not in state and (found := visit(m)):
                return found
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state and (found := visit(n)):
            return found
    return None


def test_no_module_import_cycles() -> None:
    """No module imports itself through others (lazy imports inside functions included)."""
    # A package __init__ re-exporting its modules is not a cycle of the modules themselves.
    graph = {
        m: {d for d in deps if not (MODULES[d].name == "__init__" and m.startswith(d + "."))}
        for m, deps in GRAPH.items()
    }
    assert _find_cycle(graph) is None


def test_no_package_import_cycles() -> None:
    """The rooms (monitor's subpackages, detectors, bakesim) form a DAG: every arrow points down."""
    rooms: dict[str, set[str]] = {}
    for mod, deps in GRAPH.items():
        rooms.setdefault(_room(mod), set()).update(_room(d) for d in deps if _room(d) != _room(mod))
    assert _find_cycle(rooms) is None, rooms


def test_detectors_stand_alone() -> None:
    """detectors/ imports nothing from monitor/ or bakesim/ (it must work from a notebook)."""
    bad = {m: sorted(d for d in deps if not d.startswith("detectors")) for m, deps in GRAPH.items()}
    assert {m: d for m, d in bad.items() if m.startswith("detectors") and d} == {}


def test_monitor_uses_bakesim_only_in_simulate_and_demo() -> None:
    """The simulator is not part of the monitor: only `bakemon simulate` and `demo` drive it."""
    users = {m for m, deps in GRAPH.items() if m.startswith("monitor") and any(d.startswith("bakesim") for d in deps)}  # fmt: skip
    assert users <= BAKESIM_USERS


@pytest.mark.parametrize("mod", sorted(MODULES))
def test_sizes(mod: str) -> None:
    """Modules stay under ~500 lines and functions under ~60, so each reads in one sitting."""
    src = MODULES[mod].read_text()
    assert len(src.splitlines()) <= MAX_MODULE_LINES
    long = [
        f"{n.name} ({n.end_lineno - n.lineno + 1} lines)"  # type: ignore[operator]
        for n in ast.walk(TREES[mod])
        if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)
        and n.end_lineno - n.lineno + 1 > MAX_FUNCTION_LINES  # type: ignore[operator]
    ]
    assert long == []
