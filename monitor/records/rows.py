"""The parsed rows of a batch as columns, and the checks that reject rows (for
:mod:`monitor.records.decode`): each field is pulled out once, from orjson dicts (the reference
path) or msgspec structs (the fast path), and a row is rejected for the first check it fails.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from itertools import repeat
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

from monitor.records.convert import FirstRows, joint_first_rows
from monitor.records.fast import StructFields
from monitor.records.fieldmap import resolve_path, show_value

__all__ = [
    "JOINT_RETRY",
    "REASON_BAD_COHORT",
    "REASON_BAD_LATENCY",
    "REASON_BAD_STATUS",
    "REASON_BAD_TIME",
    "REASON_BAD_TYPE",
    "REASON_INVALID_JSON",
    "REASON_MISSING_FIELD",
    "REASON_NOT_AN_OBJECT",
    "REJECTION_REASONS",
    "Checks",
    "Fields",
    "NotFast",
]

BoolArray = npt.NDArray[np.bool_]
JOINT_RETRY = 64  # batches encoded column by column after joint encoding did not pay

REASON_INVALID_JSON = "invalid_json"
REASON_NOT_AN_OBJECT = "not_an_object"
REASON_MISSING_FIELD = "missing_field"
REASON_BAD_TYPE = "bad_type"
REASON_BAD_TIME = "bad_time"
REASON_BAD_STATUS = "bad_status"
REASON_BAD_LATENCY = "bad_latency"
REASON_BAD_COHORT = "bad_cohort"
REJECTION_REASONS: tuple[str, ...] = (
    REASON_INVALID_JSON,
    REASON_NOT_AN_OBJECT,
    REASON_MISSING_FIELD,
    REASON_BAD_TYPE,
    REASON_BAD_TIME,
    REASON_BAD_STATUS,
    REASON_BAD_LATENCY,
    REASON_BAD_COHORT,
)


class NotFast(Exception):
    """The fast path met a value it cannot give exactly as the reference path: redo the batch."""


class Fields:
    """The parsed rows' fields, each pulled out once as a column, and the checks on them."""

    def __init__(
        self,
        rows: list[dict[str, Any]] | StructFields,
        m: int,
        messages: Sequence[bytes | str],
    ) -> None:
        self.rows = rows
        self.m = m
        self.messages = messages  # row i is message i on the fast path (all of them parsed)
        self.checks = Checks(self.m)
        self._cols: dict[str, list[Any]] = {}
        self.first: dict[str, FirstRows] = {}  # label path → its first_rows, when encoded jointly

    def encode_jointly(self, paths: list[str]) -> None:
        """On the fast path, :func:`~monitor.records.convert.first_rows` of the typed label
        columns at ``paths`` from one pass over their combinations, while that pays for this
        log (after a batch where it did not, the next :data:`JOINT_RETRY` go column by
        column)."""
        if not isinstance(self.rows, StructFields):
            return
        dec = self.rows.dec
        typed = [p for p in paths if self.kind(p) == "str" and self.rows.seen(p)]
        if len(typed) < 2 or self.m < 2:
            return
        if dec.joint_off > 0:
            dec.joint_off -= 1
            return
        results, paid = joint_first_rows([self.get(p) for p in typed])
        self.first = dict(zip(typed, results, strict=True))
        if not paid:
            dec.joint_off = JOINT_RETRY

    def get(self, path: str) -> list[Any]:
        if path not in self._cols:
            if isinstance(self.rows, StructFields):
                col = self.rows.get(path)
                if col is None:
                    raise NotFast
                self._cols[path] = col
            else:
                self._cols[path] = column(self.rows, path)
        return self._cols[path]

    def kind(self, path: str) -> str | None:
        """What msgspec checked the column at ``path`` holds (see ``StructFields.kind``)."""
        return self.rows.kind(path) if isinstance(self.rows, StructFields) else None

    def shown(self, path: str, col: list[Any], row: int) -> Any:
        """The value at ``path`` of ``row`` as the log wrote it, for a rejection's detail (a
        typed float column holds 12.0 where the log had 12)."""
        if isinstance(self.rows, StructFields) and self.kind(path) is not None:
            try:
                return resolve_path(orjson.loads(self.messages[row]), tuple(path.split(".")))
            except orjson.JSONDecodeError:  # msgspec took what orjson does not: show its value
                pass
        return col[row]


JOINT_RETRY = 64  # batches encoded column by column after joint encoding did not pay


def column(objs: list[dict[str, Any]], path: str) -> list[Any]:
    """The value at ``path`` of every object (None where absent)."""
    if "." not in path:
        return list(map(dict.get, objs, repeat(path)))
    parts = tuple(path.split("."))
    return [resolve_path(o, parts) for o in objs]


class Checks:
    """First failure per row, in the order checks are flagged."""

    def __init__(self, m: int) -> None:
        self.failed = np.full(m, -1, np.int16)
        self.checks: list[tuple[str, str, list[Any], str | None]] = []

    def flag(
        self,
        bad: BoolArray | None,
        reason: str,
        path: str,
        col: list[Any],
        why: str | None = None,
    ) -> None:
        """Flag the rows in ``bad``; ``why`` replaces the standard detail of ``reason``."""
        if bad is None or not bad.any():
            return
        new = bad & (self.failed < 0)
        self.failed[new] = len(self.checks)
        self.checks.append((reason, path, col, why))

    @property
    def ok(self) -> BoolArray:
        return self.failed < 0

    def failures(
        self, shown: Callable[[str, list[Any], int], Any]
    ) -> Iterable[tuple[int, str, str]]:
        """(row, reason, detail) of each failed row; ``shown`` gives the value to show."""
        for row in np.flatnonzero(self.failed >= 0).tolist():
            reason, path, col, why = self.checks[int(self.failed[row])]
            value = shown(path, col, row)
            if why is None:
                yield row, reason, detail(reason, path, value)
            else:
                yield row, reason, f'{why} ("{path}": {show_value(value)})'


def detail(reason: str, path: str, value: Any) -> str:
    if reason == REASON_MISSING_FIELD:
        return f'missing field "{path}"'
    what = {
        REASON_BAD_TIME: "a time (epoch number or ISO-8601)",
        REASON_BAD_STATUS: "an HTTP status (0-999)",
        REASON_BAD_LATENCY: "a finite non-negative number",
        REASON_BAD_COHORT: 'a cohort ("canary" or "baseline")',
        REASON_BAD_TYPE: "a string or number",
    }[reason]
    return f'field "{path}" is not {what}: {show_value(value)}'
