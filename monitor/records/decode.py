"""Batch decoding of per-request JSON logs into numpy columns.

A :class:`FieldMap` says where each field lives in a log object (dotted paths for nesting);
:data:`PRESETS` holds maps for common shapes. :func:`decode_batch` turns a batch of raw messages
into a :class:`RecordBatch` of numpy columns for the accepted rows plus one :class:`Rejection` per
bad row, counted under a small fixed set of reasons (a bounded Prometheus label).

The design is column-at-a-time, because per-record Python work is what limits ingest: parse every
message with orjson, pull each field out as a list (one C-level ``map`` for flat keys), then
validate and convert each column with numpy when all its values have the expected type (one
``set(map(type, col))`` decides). Columns holding odd values (numeric strings, ``"-"``, offsets
other than UTC, garbage) fall back to a per-value path that is the reference for what is accepted.
String fields become :class:`Categorical` columns (codes + sorted categories), so no per-record
Python objects survive the batch. A bad record never raises and never affects its neighbours.

Conventions: ``null``, ``""`` and ``"-"`` (the access-log convention for "unset") all mean absent.
Times are epoch numbers in ``FieldMap.time_unit`` (numbers or numeric strings) or ISO-8601 strings
(always recognised; no offset means UTC); they must lie in [0, 1e11) s, which catches
milliseconds configured as seconds. Latencies must be finite and non-negative.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import repeat
from typing import Any, Literal, get_args

import numpy as np
import numpy.typing as npt
import orjson

from monitor.records.columns import Categorical, DecodeResult, RecordBatch, Rejection
from monitor.records.fieldmap import UNIT_DIVISOR, FieldMap, show_value

__all__ = [
    "COHORTS",
    "MAX_EPOCH_S",
    "REASON_BAD_COHORT",
    "REASON_BAD_LATENCY",
    "REASON_BAD_STATUS",
    "REASON_BAD_TIME",
    "REASON_BAD_TYPE",
    "REASON_INVALID_JSON",
    "REASON_MISSING_FIELD",
    "REASON_NOT_AN_OBJECT",
    "REJECTION_REASONS",
    "decode_batch",
]

Cohort = Literal["canary", "baseline"]

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
COHORTS: tuple[str, ...] = get_args(Cohort)

# Epoch seconds at or beyond this (year ~5138) are almost surely ms/us/ns configured as "s".
MAX_EPOCH_S = 1e11
_ABSENT = frozenset({"", "-"})
_DETAIL_VALUE_CHARS = 80
# A batch of ISO times in this exact UTC shape is parsed by numpy in one call; anything else
# goes through datetime.fromisoformat one value at a time.
_ISO_UTC_LINES = re.compile(
    r"(?:[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,9})?\n)*"
)

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
Int32Array = npt.NDArray[np.int32]
Int64Array = npt.NDArray[np.int64]


# ---------------------------------------------------------------------------- decoding


def decode_batch(
    messages: Sequence[bytes | str],
    field_map: FieldMap,
    *,
    default_time_s: npt.ArrayLike | None = None,
) -> DecodeResult:
    """Decode JSON messages into columns, rejecting bad records one by one.

    ``default_time_s`` (one per message, e.g. Kafka timestamps) is used where the time field is
    absent; a non-finite or negative default counts as absent. Without it, an absent time is a
    rejection.

    >>> ok = b'{"ts": 1764323000.5, "service": "checkout", "version": "v42", "status": 503, '
    >>> r = decode_batch([ok + b'"latency_ms": 12.5}', b"oops"], PRESETS["plain"])
    >>> r.batch.index.tolist(), r.batch.latency_s.tolist(), r.batch.error.tolist()
    ([0], [0.0125], [True])
    >>> r.rejected_by_reason
    {'invalid_json': 1}
    """
    fm = field_map
    defaults: FloatArray | None = None
    if default_time_s is not None:
        defaults = np.asarray(default_time_s, dtype=np.float64)
        if defaults.shape != (len(messages),):
            # A caller bug, not bad input: deliberately not a MonitorError.
            msg = f"default_time_s has shape {defaults.shape}, expected ({len(messages)},)"
            raise ValueError(msg)
    objs, pos, rejections = _parse(messages)
    m = len(objs)
    cols: dict[str, list[Any]] = {}

    def col(path: str) -> list[Any]:
        if path not in cols:
            cols[path] = _column(objs, path)
        return cols[path]

    checks = _Checks(m)

    # Time.
    tcol = col(fm.time)
    time_s, t_absent = _numbers(tcol, UNIT_DIVISOR[fm.time_unit], _time_strings, _time_one)
    if defaults is not None and t_absent.any():
        time_s[t_absent] = defaults[pos[t_absent]]
        t_absent &= ~(np.isfinite(time_s) & (time_s >= 0.0))
    checks.flag(t_absent, REASON_MISSING_FIELD, fm.time, tcol)
    with np.errstate(invalid="ignore"):
        t_ok = (time_s >= 0.0) & (time_s < MAX_EPOCH_S)
    checks.flag(~t_ok & ~t_absent, REASON_BAD_TIME, fm.time, tcol)

    # Labels: service, cohort, version, bake.
    if fm.service is None:
        service = _Labels(np.zeros(m, np.int32), [fm.service_default or ""], None)
    else:
        service = _labels(col(fm.service), default=fm.service_default or "")
        checks.flag(service.bad, REASON_BAD_TYPE, fm.service, col(fm.service))
        checks.flag(service.is_("", m), REASON_MISSING_FIELD, fm.service, col(fm.service))
    cohort = None
    c_absent = np.ones(m, bool)
    if fm.cohort is not None:
        cohort = _labels(col(fm.cohort), lower=True)
        bad = cohort.not_in(("", *COHORTS), m)
        if cohort.bad is not None:
            bad |= cohort.bad
        checks.flag(bad, REASON_BAD_COHORT, fm.cohort, col(fm.cohort))
        c_absent = cohort.is_("", m)
    if fm.version is None:
        version = _Labels(np.zeros(m, np.int32), [""], None)
    else:
        version = _labels(col(fm.version))
        checks.flag(version.bad, REASON_BAD_TYPE, fm.version, col(fm.version))
        v_absent = version.is_("", m) & c_absent
        checks.flag(v_absent, REASON_MISSING_FIELD, fm.version, col(fm.version))
    bake = None
    if fm.bake is not None:
        bake = _labels(col(fm.bake))
        checks.flag(bake.bad, REASON_BAD_TYPE, fm.bake, col(fm.bake))

    # Status and error.
    has_flag = np.zeros(m, bool)
    flag = np.zeros(m, bool)
    if fm.error is not None:
        has_flag, flag = _error_flags(col(fm.error))
    status = np.full(m, -1, np.int64)
    if fm.status is not None:
        scol = col(fm.status)
        status = _statuses(scol)
        checks.flag(status == _BAD_STATUS, REASON_BAD_STATUS, fm.status, scol)
        checks.flag((status == -1) & ~has_flag, REASON_MISSING_FIELD, fm.status, scol)
    err_status = status >= fm.error_status_min
    if fm.error_statuses:
        err_status |= np.isin(status, np.fromiter(fm.error_statuses, np.int64))
    error = np.where(has_flag, flag, err_status)

    # Latency.
    lcol = col(fm.latency)
    latency_s, l_absent = _numbers(lcol, UNIT_DIVISOR[fm.latency_unit], None, _number_one)
    checks.flag(l_absent, REASON_MISSING_FIELD, fm.latency, lcol)
    with np.errstate(invalid="ignore"):
        l_ok = np.isfinite(latency_s) & (latency_s >= 0.0)
    checks.flag(~l_ok & ~l_absent, REASON_BAD_LATENCY, fm.latency, lcol)

    # Segments: absent is fine, only a container is rejected.
    segments: dict[str, _Labels] = {}
    for name, path in fm.segments.items():
        segments[name] = _labels(col(path))
        checks.flag(segments[name].bad, REASON_BAD_TYPE, path, col(path))

    # Assemble the accepted rows.
    for row, reason, detail in checks.failures():
        rejections.append(_rejection(messages, int(pos[row]), reason, detail))
    rejections.sort(key=lambda r: r.index)
    keep = checks.ok
    sel: slice | Int64Array = slice(None) if keep.all() else np.flatnonzero(keep)
    batch = RecordBatch(
        index=_frozen(pos[sel]),
        time_s=_frozen(time_s[sel]),
        latency_s=_frozen(latency_s[sel]),
        error=_frozen(error[sel]),
        status=_frozen(status[sel].astype(np.int32)),
        service=service.categorical(sel),
        version=version.categorical(sel),
        cohort=None if cohort is None else cohort.categorical(sel),
        bake=None if bake is None else bake.categorical(sel),
        segments={k: v.categorical(sel) for k, v in segments.items()},
    )
    by_reason: dict[str, int] = {}
    for r in rejections:
        by_reason[r.reason] = by_reason.get(r.reason, 0) + 1
    return DecodeResult(batch, rejections, by_reason)


def _parse(
    messages: Sequence[bytes | str],
) -> tuple[list[dict[str, Any]], Int64Array, list[Rejection]]:
    """orjson every message; keep the objects and their input positions."""
    loads = orjson.loads
    try:
        values = list(map(loads, messages))  # the common all-good batch, at C speed
    except orjson.JSONDecodeError:
        values = None
    rejections: list[Rejection] = []
    if values is not None and set(map(type, values)) <= {dict}:
        return values, np.arange(len(values), dtype=np.int64), rejections
    objs: list[dict[str, Any]] = []
    pos: list[int] = []
    for i, raw in enumerate(messages):
        try:
            obj = loads(raw) if values is None else values[i]
        except orjson.JSONDecodeError as e:
            detail = "message has no value" if raw is None else f"invalid JSON: {e}"
            rejections.append(_rejection(messages, i, REASON_INVALID_JSON, detail))
            continue
        if type(obj) is dict:
            objs.append(obj)
            pos.append(i)
        else:
            detail = f"JSON {_json_kind(obj)} is not an object"
            rejections.append(_rejection(messages, i, REASON_NOT_AN_OBJECT, detail))
    return objs, np.asarray(pos, dtype=np.int64), rejections


def _column(objs: list[dict[str, Any]], path: str) -> list[Any]:
    """The value at ``path`` of every object (None where absent)."""
    if "." not in path:
        return list(map(dict.get, objs, repeat(path)))
    parts = tuple(path.split("."))
    return [_resolve(o, parts) for o in objs]


def _resolve(obj: dict[str, Any], parts: tuple[str, ...]) -> Any:
    cur: Any = obj
    for p in parts:
        if type(cur) is not dict:
            break
        cur = cur.get(p)
    else:
        if cur is not None:
            return cur
    return _resolve_dotted(obj, parts, 0)


def _resolve_dotted(obj: dict[str, Any], parts: tuple[str, ...], start: int) -> Any:
    # Slow path for keys that contain dots themselves: try the longest key first.
    for end in range(len(parts), start, -1):
        key = ".".join(parts[start:end])
        if key in obj:
            v = obj[key]
            if end == len(parts):
                return v
            if type(v) is dict:
                found = _resolve_dotted(v, parts, end)
                if found is not None:
                    return found
    return None


class _Checks:
    """First failure per row, in the order checks are flagged."""

    def __init__(self, m: int) -> None:
        self.failed = np.full(m, -1, np.int16)
        self.checks: list[tuple[str, str, list[Any]]] = []

    def flag(self, bad: BoolArray | None, reason: str, path: str, col: list[Any]) -> None:
        if bad is None or not bad.any():
            return
        new = bad & (self.failed < 0)
        self.failed[new] = len(self.checks)
        self.checks.append((reason, path, col))

    @property
    def ok(self) -> BoolArray:
        return self.failed < 0

    def failures(self) -> Iterable[tuple[int, str, str]]:
        for row in np.flatnonzero(self.failed >= 0).tolist():
            reason, path, col = self.checks[int(self.failed[row])]
            yield row, reason, _detail(reason, path, col[row])


def _detail(reason: str, path: str, value: Any) -> str:
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


def _rejection(messages: Sequence[bytes | str], i: int, reason: str, detail: str) -> Rejection:
    raw: Any = messages[i]
    if isinstance(raw, str):
        data = raw.encode("utf-8", "surrogatepass")
    elif isinstance(raw, bytes | bytearray | memoryview):
        data = bytes(raw)
    else:
        data = b""  # e.g. a Kafka tombstone (None)
    return Rejection(i, reason, data, detail)


# ---------------------------------------------------------------------------- numeric columns

_NumberOne = Callable[[Any, float], float]
_StringsFast = Callable[[list[Any], float], "FloatArray | None"]


def _numbers(
    col: list[Any], divisor: float, strings_fast: _StringsFast | None, one: _NumberOne
) -> tuple[FloatArray, BoolArray]:
    """Column of floats divided by ``divisor`` (NaN where invalid), and the absent mask."""
    m = len(col)
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
    absent = np.fromiter(map(_is_absent, col), bool, m)
    values = np.fromiter((one(v, divisor) for v in col), np.float64, m)
    return values, absent


def _is_absent(v: Any) -> bool:
    return v is None or (type(v) is str and v.strip() in _ABSENT)


def _number_one(v: Any, divisor: float) -> float:
    t = type(v)
    if t is float or t is int:
        return float(v / divisor)
    if t is str:
        try:
            return float(v) / divisor
        except ValueError:
            return math.nan
    return math.nan


def _time_one(v: Any, divisor: float) -> float:
    number = _number_one(v, divisor)
    if number == number or type(v) is not str:
        return number
    try:
        dt = datetime.fromisoformat(v.strip())
    except ValueError:
        return math.nan
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def _time_strings(col: list[Any], divisor: float) -> FloatArray | None:
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


_BAD_STATUS = -2


def _statuses(col: list[Any]) -> Int64Array:
    """Status codes; -1 where absent, ``_BAD_STATUS`` where invalid."""
    types = set(map(type, col))
    if types == {int} or types == {str}:
        try:
            st = np.array(col, dtype=np.int64)
        except (ValueError, OverflowError):
            pass
        else:
            st[(st < 0) | (st > 999)] = _BAD_STATUS
            return st
    return np.fromiter(map(_status_one, col), np.int64, len(col))


def _status_one(v: Any) -> int:
    t = type(v)
    if v is None or (t is str and v.strip() in _ABSENT):
        return -1
    if t is int:
        s = v
    elif t is float and v.is_integer():
        s = int(v)
    elif t is str:
        try:
            s = int(v)
        except ValueError:
            return _BAD_STATUS
    else:
        return _BAD_STATUS
    return int(s) if 0 <= s <= 999 else _BAD_STATUS


def _error_flags(col: list[Any]) -> tuple[BoolArray, BoolArray]:
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
class _Labels:
    """A label column over all parsed rows: codes into ``names`` (unsorted, may be unused)."""

    codes: Int32Array
    names: list[str]
    bad: BoolArray | None

    def is_(self, name: str, m: int) -> BoolArray:
        return _codes_in(self, {name}, m)

    def not_in(self, names: Iterable[str], m: int) -> BoolArray:
        allowed = set(names)
        return _codes_in(self, {n for n in self.names if n not in allowed}, m)

    def categorical(self, sel: slice | Int64Array) -> Categorical:
        """The selected rows, with unused categories dropped and the rest sorted."""
        codes = self.codes[sel]
        k = len(self.names)
        used = np.bincount(codes, minlength=k) > 0
        order = sorted(np.flatnonzero(used).tolist(), key=self.names.__getitem__)
        if order == list(range(k)):
            return Categorical(_frozen(codes), tuple(self.names))
        remap = np.full(k, -1, np.int32)
        remap[order] = np.arange(len(order), dtype=np.int32)
        return Categorical(_frozen(remap[codes]), tuple(self.names[i] for i in order))


def _codes_in(labels: _Labels, names: set[str], m: int) -> BoolArray:
    codes = [i for i, n in enumerate(labels.names) if n in names]
    if not codes:
        return np.zeros(m, bool)
    if len(codes) == 1:
        eq: BoolArray = labels.codes == codes[0]
        return eq
    return np.isin(labels.codes, np.asarray(codes, dtype=np.int32))


def _labels(col: list[Any], *, default: str = "", lower: bool = False) -> _Labels:
    """Encode a string column; absent values become ``default``, containers are bad."""
    m = len(col)
    bad: BoolArray | None = None
    if not set(map(type, col)) <= {str, type(None)}:
        conv = [_label_one(v) for v in col]
        bad = np.fromiter((c is _BAD for c in conv), bool, m)
        col = [None if c is _BAD else c for c in conv]
    keys = dict.fromkeys(col)
    names: list[str] = []
    code_of: dict[str, int] = {}
    for key in keys:
        name = default if key is None else key.strip()
        if name in _ABSENT:
            name = default
        elif lower:
            name = name.lower()
        code = code_of.get(name)
        if code is None:
            code = code_of[name] = len(names)
            names.append(name)
        keys[key] = code
    codes = np.fromiter(map(keys.__getitem__, col), np.int32, m)
    return _Labels(codes, names or [default], bad)


def _label_one(v: Any) -> Any:
    t = type(v)
    if v is None or t is str:
        return v
    if t is bool:
        return "true" if v else "false"
    if t is int or t is float:
        return str(v)
    return _BAD


# ---------------------------------------------------------------------------- helpers


def _frozen(a: npt.NDArray[Any]) -> npt.NDArray[Any]:
    a.flags.writeable = False
    return a


def _json_kind(v: Any) -> str:
    if v is None:
        return "null"
    return {list: "array", str: "string", bool: "boolean"}.get(type(v), "number")
