"""Column conversions for batch decoding: numbers, times, statuses, error flags and labels.

Each function takes one column of JSON values (a list, one per parsed message) and converts it
with numpy when all its values have the expected type (one ``set(map(type, col))`` decides); odd
values (numeric strings, ``"-"``, offsets other than UTC, garbage) fall back to a per-value path
that is the reference for what is accepted. :func:`monitor.records.decode.decode_batch` turns
the results into checks and columns.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import count
from typing import Any

import numpy as np
import numpy.typing as npt

from monitor.records.columns import Categorical

__all__ = [
    "ABSENT",
    "BAD_STATUS",
    "MAX_LABEL_CHARS",
    "Labels",
    "encode_labels",
    "error_flags",
    "first_rows",
    "frozen",
    "is_absent",
    "joint_first_rows",
    "latency_unit_hint",
    "number_one",
    "numbers",
    "statuses",
    "time_one",
    "time_strings",
]

ABSENT = frozenset({"", "-"})
# A batch of ISO times in this exact UTC shape is parsed by numpy in one call; anything else
# goes through datetime.fromisoformat one value at a time.
_ISO_UTC_LINES = re.compile(
    r"(?:[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,9})?\n)*"
)

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
Int32Array = npt.NDArray[np.int32]
Int64Array = npt.NDArray[np.int64]


# Latency-unit plausibility (a hint, never a rejection): medians outside these bounds are
# almost surely a unit mix-up, e.g. 0.042 (seconds) read as 0.042 ms.
UNIT_HINT_SAMPLE = 256  # values looked at per batch
UNIT_HINT_MIN_VALUES = 10
UNIT_HINT_TOO_SMALL_S = 1e-3  # with mostly fractional raw values: a larger unit read as ms
UNIT_HINT_TOO_LARGE_S = 60.0


# ---------------------------------------------------------------------------- numeric columns

NumberOne = Callable[[Any, float], float]
StringsFast = Callable[[list[Any], float], "FloatArray | None"]


def numbers(
    col: list[Any],
    divisor: float,
    strings_fast: StringsFast | None,
    one: NumberOne,
    *,
    floats: bool = False,
) -> tuple[FloatArray, BoolArray]:
    """Column of floats divided by ``divisor`` (NaN where invalid), and the absent mask.
    ``floats``: the caller knows the column holds only floats and None (no type scan)."""
    m = len(col)
    if floats:  # numpy reads None as NaN, and JSON has no NaN: NaN here is exactly None
        values = np.array(col, dtype=np.float64)
        return values / divisor, np.isnan(values)
    types = set(map(type, col))
    if types <= {int, float}:
        return np.array(col, dtype=np.float64) / divisor, np.zeros(m, bool)
    if types == {str}:
        fast = strings_fast(col, divisor) if strings_fast is not None else None
        if fast is not None:
            return fast, np.zeros(m, bool)
        try:  # numeric strings, e.g. Envoy json_format renders "duration": "12"
            return np.array(col, dtype=np.float64) / divisor, np.zeros(m, bool)
        except ValueError:
            pass
    absent = np.fromiter(map(is_absent, col), bool, m)
    values = np.fromiter((one(v, divisor) for v in col), np.float64, m)
    return values, absent


def _median(a: FloatArray) -> float:
    """The median of a non-empty array of finite values (``np.median`` imports ``numpy.ma`` on
    its first call: 40 ms of a short replay)."""
    s = np.sort(a)
    h = s.size // 2
    return float(s[h]) if s.size % 2 else float((s[h - 1] + s[h]) / 2)


def latency_unit_hint(
    latency_s: FloatArray, unit: str, divisor: float, *, min_values: int = UNIT_HINT_MIN_VALUES
) -> str | None:
    """Why these latencies (in s, read in ``unit``) look like the wrong unit, or None.

    Seconds read as milliseconds give medians below a millisecond with fractional raw values
    (an access log in ms writes integers or values above 1); milliseconds read as seconds give
    medians of minutes.
    """
    sample = latency_s[:UNIT_HINT_SAMPLE]
    sample = sample[np.isfinite(sample) & (sample >= 0.0)]
    if len(sample) < min_values:
        return None
    median_s = _median(sample)
    raw = sample * divisor
    fractional = float(np.mean(raw != np.floor(raw)))
    shown = f"{median_s * divisor:g}"
    if unit != "s" and median_s < UNIT_HINT_TOO_SMALL_S and fractional >= 0.5:
        return (
            f"latencies look like seconds, not {unit}: median {shown} read as {shown} {unit}; "
            'set latency_unit = "s" if the log is in seconds'
        )
    if median_s >= UNIT_HINT_TOO_LARGE_S:
        return (
            f"latencies look like milliseconds, not {unit}: median {shown} read as "
            f'{median_s:g} s; set latency_unit = "ms" if the log is in milliseconds'
        )
    return None


def is_absent(v: Any) -> bool:
    return v is None or (type(v) is str and v.strip() in ABSENT)


def number_one(v: Any, divisor: float) -> float:
    t = type(v)
    if t is float or t is int:
        return float(v / divisor)
    if t is str:
        try:
            return float(v) / divisor
        except ValueError:
            return math.nan
    return math.nan


def time_one(v: Any, divisor: float) -> float:
    number = number_one(v, divisor)
    if number == number or type(v) is not str:
        return number
    try:
        dt = datetime.fromisoformat(v.strip())
    except ValueError:
        return math.nan
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def time_strings(col: list[Any], divisor: float) -> FloatArray | None:
    """Vectorised parse of UTC ISO-8601 strings; None when some string has another shape."""
    joined = ("\n".join(col) + "\n").replace("Z\n", "\n").replace("+00:00\n", "\n")
    if joined.count("\n") != len(col) or _ISO_UTC_LINES.fullmatch(joined) is None:
        return None
    try:
        # [us], not [ns]: numpy silently wraps ns timestamps outside 1678-2262.
        us = np.array(joined.split("\n")[:-1], dtype="datetime64[us]").astype(np.int64)
    except ValueError:  # e.g. day 30 of February
        return None
    # Whole seconds and the fraction separately, so the float keeps microsecond precision.
    return (us // 1_000_000).astype(np.float64) + (us % 1_000_000) / 1e6


BAD_STATUS = -2


def statuses(col: list[Any], *, ints: bool = False) -> Int64Array:
    """Status codes; -1 where absent, ``BAD_STATUS`` where invalid. ``ints``: the caller knows
    the column holds only ints and None (no type scan)."""
    types = {int} if ints else set(map(type, col))  # with None, np.array raises TypeError
    if types == {int} or types == {str}:
        try:
            st = np.array(col, dtype=np.int64)
        except (ValueError, OverflowError, TypeError):
            pass
        else:
            st[(st < 0) | (st > 999)] = BAD_STATUS
            return st
    return np.fromiter(map(status_one, col), np.int64, len(col))


def status_one(v: Any) -> int:
    t = type(v)
    if v is None or (t is str and v.strip() in ABSENT):
        return -1
    if t is int:
        s = v
    elif t is float and v.is_integer():
        s = int(v)
    elif t is str:
        try:
            s = int(v)
        except ValueError:
            return BAD_STATUS
    else:
        return BAD_STATUS
    return int(s) if 0 <= s <= 999 else BAD_STATUS


def error_flags(col: list[Any]) -> tuple[BoolArray, BoolArray]:
    """(has a boolean error flag, its value) per row."""
    m = len(col)
    types = set(map(type, col))
    if types == {bool}:
        return np.ones(m, bool), np.array(col, dtype=bool)
    if bool not in types:
        return np.zeros(m, bool), np.zeros(m, bool)
    has = np.fromiter((type(v) is bool for v in col), bool, m)
    return has, np.fromiter((v is True for v in col), bool, m)


# ---------------------------------------------------------------------------- label columns

_BAD = object()


@dataclass(frozen=True, eq=False)
class Labels:
    """A label column over all parsed rows: codes into ``names`` (unsorted, may be unused)."""

    codes: Int32Array
    names: list[str]
    bad: BoolArray | None
    every_name_used: bool = False  # every name has a row (so a full selection keeps them all)

    def is_(self, name: str, m: int) -> BoolArray:
        return codes_in(self, {name}, m)

    def not_in(self, names: Iterable[str], m: int) -> BoolArray:
        allowed = set(names)
        return codes_in(self, {n for n in self.names if n not in allowed}, m)

    def categorical(self, sel: slice | Int64Array) -> Categorical:
        """The selected rows, with unused categories dropped and the rest sorted."""
        codes = self.codes[sel]
        k = len(self.names)
        if self.every_name_used and isinstance(sel, slice) and sel == slice(None):
            order = sorted(range(k), key=self.names.__getitem__)
        else:
            used = np.bincount(codes, minlength=k) > 0
            order = sorted(np.flatnonzero(used).tolist(), key=self.names.__getitem__)
        if order == list(range(k)):
            return Categorical(frozen(codes), tuple(self.names))
        remap = np.full(k, -1, np.int32)
        remap[order] = np.arange(len(order), dtype=np.int32)
        return Categorical(frozen(remap[codes]), tuple(self.names[i] for i in order))


def codes_in(column: Labels, names: set[str], m: int) -> BoolArray:
    """Mask of the rows of ``column`` whose label is one of ``names``."""
    codes = [i for i, n in enumerate(column.names) if n in names]
    if not codes:
        return np.zeros(m, bool)
    if len(codes) == 1:
        eq: BoolArray = column.codes == codes[0]
        return eq
    return np.isin(column.codes, np.asarray(codes, dtype=np.int32))


# A label (service, version, cohort, segment value) longer than this is cut, marked "…".
MAX_LABEL_CHARS = 256


FirstRows = tuple[dict[Any, int], Int64Array]


def first_rows(col: list[Any]) -> FirstRows:
    """Each distinct value's first row (in the order they come), and each row's value's first
    row: one C-level pass."""
    m = len(col)
    first: dict[Any, int] = {}
    if m and col[0] == col[-1] == col[m // 2] and col.count(col[0]) == m:  # one value, C speed
        first[col[0]] = 0
        return first, np.zeros(m, np.int64)
    return first, np.fromiter(map(first.setdefault, col, count()), np.int64, m)


# Joint encoding pays while a batch holds few distinct label combinations: beyond one per
# JOINT_MAX_SHARE rows it costs more than a pass per column.
JOINT_MAX_SHARE = 8


def joint_first_rows(cols: list[list[Any]]) -> tuple[list[FirstRows], bool]:
    """:func:`first_rows` of each column, from one pass over the rows' combinations of values
    (one dict lookup per row instead of one per row and column; a row's combination is a tuple
    of values whose hashes are cached when they are shared objects), and whether that paid
    (few distinct combinations). The results equal :func:`first_rows` of each column: the
    combinations come in the order of their first rows, so a value's first combination holds
    its first row."""
    m = len(cols[0]) if cols else 0
    joint: dict[tuple[Any, ...], int] = {}
    rows = np.fromiter(map(joint.setdefault, zip(*cols, strict=True), count()), np.int64, m)
    combos, at = list(joint), list(joint.values())
    where = np.asarray(at, dtype=np.int64)
    out: list[FirstRows] = []
    for c in range(len(cols)):
        first: dict[Any, int] = {}
        lut = np.zeros(m, np.int64)
        lut[where] = list(map(first.setdefault, [t[c] for t in combos], at))
        out.append((first, lut[rows]))
    return out, len(combos) * JOINT_MAX_SHARE <= max(m, 1)


def encode_labels(
    col: list[Any],
    *,
    default: str = "",
    lower: bool = False,
    strings: bool = False,
    pre: FirstRows | None = None,
) -> Labels:
    """Encode a string column; absent values become ``default``, containers are bad.
    ``strings``: the caller knows the column holds only str and None (no type scan); ``pre``:
    its :func:`first_rows`, computed already (with ``strings`` only)."""
    m = len(col)
    bad: BoolArray | None = None
    if not strings and not set(map(type, col)) <= {str, type(None)}:
        conv = [label_one(v) for v in col]
        bad = np.fromiter((c is _BAD for c in conv), bool, m)
        col = [None if c is _BAD else c for c in conv]
        pre = None
    # One pass: each row gets the row number of its value's first occurrence, then the
    # distinct values (a few per batch) are named and the first rows mapped to codes.
    first, rows = first_rows(col) if pre is None else pre
    keys = list(first)
    if not lower and _plain_labels(first, keys):
        # The usual batch: every distinct value already a clean label (one code each).
        names, value_codes = keys, list(range(len(keys)))
    else:
        names, value_codes = _named(keys, default, lower)
    lut = np.zeros(m, np.int32)
    lut[np.fromiter(first.values(), np.int64, len(first))] = value_codes
    codes: Int32Array = lut[rows]
    return Labels(codes, names or [default], bad, every_name_used=m > 0)


def _plain_labels(first: dict[Any, int], keys: list[Any]) -> bool:
    """Every distinct value is a label that normalises to itself (a str, not absent, not
    padded, not too long): checked at C speed, no Python loop per value."""
    if None in first or "" in first or "-" in first:
        return False
    try:
        if max(map(len, keys), default=0) > MAX_LABEL_CHARS:
            return False
        return all(map(str.__eq__, keys, map(str.strip, keys)))
    except TypeError:  # not all str
        return False


def _named(keys: list[Any], default: str, lower: bool) -> tuple[list[str], list[int]]:
    """The distinct labels of ``keys`` (values as read, None = absent) and each key's code:
    stripped, cut to ``MAX_LABEL_CHARS``, absent ones ``default``, lower-cased if asked."""
    names: list[str] = []
    code_of: dict[str, int] = {}
    codes: list[int] = []
    for key in keys:
        name = default if key is None else key.strip()
        if len(name) > MAX_LABEL_CHARS:  # bounded memory and partials whatever the input
            name = name[: MAX_LABEL_CHARS - 1] + "…"
        if name in ABSENT:
            name = default
        elif lower:
            name = name.lower()
        code = code_of.get(name)
        if code is None:
            code = code_of[name] = len(names)
            names.append(name)
        codes.append(code)
    return names, codes


def label_one(v: Any) -> Any:
    """A label value as a string (None stays None); a container is bad."""
    t = type(v)
    if v is None or t is str:
        return v
    if t is bool:
        return "true" if v else "false"
    if t is int or t is float:
        return str(v)
    return _BAD


def frozen(a: npt.NDArray[Any]) -> npt.NDArray[Any]:
    """``a``, made read-only (batches are immutable once decoded)."""
    a.flags.writeable = False
    return a
