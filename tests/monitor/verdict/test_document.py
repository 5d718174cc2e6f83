"""The one interpretation of a verdict document: meaning, gate status codes, exit codes."""

from __future__ import annotations

import doctest
import itertools
from typing import Any

import pytest

import monitor.verdict.document as document_module
from monitor.verdict.document import ExitCode, Status, exit_code_of, interpret

STATUSES = ("PENDING", "PROMOTE", "HALT", "INCONCLUSIVE", "CANCELLED")
RESOLUTIONS = (None, "PROMOTE", "HALT")
POLICIES = (None, "halt", "promote")  # the document's policy.on_inconclusive (None: no policy)
OVERRIDES = ("none", "same", "contradicting")

# What each document must mean, written out rather than derived from the code.
GATES = {"go": (200, 409), "stop": (409, 200), "wait": (409, 409), "broken": (503, 503)}
EXITS = {"PROMOTE": 0, "HALT": 1, "INCONCLUSIVE": 2, "PENDING": 3, "CANCELLED": 8}


def _expected(status: str, resolution: str | None, on_inc: str | None, override: str) -> str:
    if override == "contradicting" or (override == "same" and status == "PENDING"):
        return "broken"
    if status == "INCONCLUSIVE":
        resolved = resolution or {"promote": "PROMOTE"}.get(on_inc or "", "HALT")
        return "go" if resolved == "PROMOTE" else "stop"
    return {"PENDING": "wait", "PROMOTE": "go", "HALT": "stop", "CANCELLED": "stop"}[status]


def _doc(status: str, resolution: str | None, on_inc: str | None, override: str) -> dict[str, Any]:
    doc: dict[str, Any] = {"id": "b", "status": status, "resolution": resolution}
    doc["reasons"] = ["the first reason", "another"]
    if on_inc is not None:
        doc["policy"] = {"on_inconclusive": on_inc}
    other = "HALT" if status != "HALT" else "PROMOTE"
    doc["override"] = {
        "none": None,
        "same": {"status": status, "by": "alice", "reason": "r"},
        "contradicting": {"status": other, "by": "alice", "reason": "r"},
    }[override]
    return doc


TABLE = list(itertools.product(STATUSES, RESOLUTIONS, POLICIES, OVERRIDES))


@pytest.mark.parametrize(("status", "resolution", "on_inc", "override"), TABLE)
def test_every_status_resolution_and_override(
    status: str, resolution: str | None, on_inc: str | None, override: str
) -> None:
    """Each status × resolution × policy × override has its meaning, gate codes and exit code."""
    reading = interpret(_doc(status, resolution, on_inc, override))
    meaning = _expected(status, resolution, on_inc, override)
    assert reading.meaning == meaning
    assert (reading.gate("promote")[0], reading.gate("rollback")[0]) == GATES[meaning]
    assert reading.exit_code == (6 if meaning == "broken" else EXITS[status])
    assert reading.final == (meaning in ("go", "stop"))
    if meaning != "broken":
        assert reading.overridden == (override == "same")
        assert reading.reason == f"{status}: the first reason"


BROKEN: list[Any] = [
    None,
    [],
    "PROMOTE",
    42,
    {},
    {"status": None},
    {"status": 1},
    {"status": "promote"},
    {"status": "DONE", "reasons": ["x"]},
    {"status": "INCONCLUSIVE", "resolution": "MAYBE"},
    {"status": "INCONCLUSIVE", "resolution": "PENDING"},
    {"status": "HALT", "override": "alice"},
]


@pytest.mark.parametrize("doc", BROKEN, ids=[repr(d)[:40] for d in BROKEN])
def test_missing_or_unreadable_documents_are_broken(doc: Any) -> None:
    """No document, a non-object, a missing or unknown status or resolution: broken, 503, exit 6."""
    reading = interpret(doc)
    assert reading.meaning == "broken" and reading.status is None and not reading.final
    assert reading.gate("promote")[0] == reading.gate("rollback")[0] == 503
    assert reading.exit_code is ExitCode.UNREACHABLE
    assert reading.reason.startswith("unreadable verdict document: ")


def test_gate_reasons_put_the_verdict_first() -> None:
    """A gate's short reason starts with the status (409) or the verdict it lets through (200)."""
    doc = {"status": "INCONCLUSIVE", "resolution": "PROMOTE", "reasons": ["max reached"]}
    assert interpret(doc).gate("promote") == (200, "PROMOTE: max reached")
    assert interpret(doc).gate("rollback") == (409, "INCONCLUSIVE: max reached")
    assert interpret({"status": "HALT", "reasons": []}).gate("rollback") == (200, "HALT")
    assert interpret({"status": "PENDING"}).gate("promote") == (409, "PENDING")


@pytest.mark.parametrize(
    ("statuses", "code"),
    [
        (["PROMOTE", "PROMOTE"], 0),
        (["PROMOTE", "PENDING"], 3),
        (["PENDING", "INCONCLUSIVE", "PROMOTE"], 2),
        (["INCONCLUSIVE", "HALT", "PENDING"], 1),
        (["HALT", None], 6),
        ([], 3),
    ],
)
def test_exit_code_of_several_bakes_is_the_worst(statuses: list[str | None], code: int) -> None:
    """0 only if every bake PROMOTEd; HALT beats INCONCLUSIVE beats PENDING; broken beats all."""
    readings = [interpret(None if s is None else {"status": s}) for s in statuses]
    assert exit_code_of(readings) == code


def test_exit_codes_are_the_documented_numbers() -> None:
    """The exit codes README and --help document."""
    assert {c.name: int(c) for c in ExitCode} == {
        "PROMOTE": 0,
        "HALT": 1,
        "INCONCLUSIVE": 2,
        "PENDING": 3,
        "USAGE": 4,
        "TIMEOUT": 5,
        "UNREACHABLE": 6,
        "CANCELLED": 8,  # 7 is `fields check`'s (monitor/cli/exits.py)
    }
    assert [s.value for s in Status] == list(STATUSES)


def test_module_examples_run() -> None:
    """The docstring examples of the document module are true."""
    result = doctest.testmod(document_module)
    assert result.attempted >= 2 and result.failed == 0
