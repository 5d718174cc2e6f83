"""Batch decoding of per-request JSON logs into numpy columns.

A :class:`FieldMap` says where each field lives in a log object (dotted paths for nesting);
:data:`PRESETS` holds maps for common shapes. :func:`decode_batch` turns a batch of raw messages
into a :class:`RecordBatch` of numpy columns for the accepted rows plus one :class:`Rejection` per
bad row, counted under a small fixed set of reasons (a bounded Prometheus label).

The design is column-at-a-time, because per-record Python work is what limits ingest: parse every
message with orjson, pull each field out as a list (one C-level ``map`` for flat keys), then
validate and convert each column with numpy (:mod:`monitor.records.convert`), with a per-value
fallback for odd values that is the reference for what is accepted. String fields become
:class:`Categorical` columns (codes + sorted categories), so no per-record Python objects survive
the batch. A bad record never raises and never affects its neighbours.

Conventions: ``null``, ``""`` and ``"-"`` (the access-log convention for "unset") all mean absent.
Times are epoch numbers in ``FieldMap.time_unit`` (numbers or numeric strings) or ISO-8601 strings
(always recognised; no offset means UTC); they must lie in [0, 1e11) s, which catches
milliseconds configured as seconds. Latencies must be finite and non-negative.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from typing import Any, Literal, get_args

import numpy as np
import numpy.typing as npt
import orjson

from monitor.records.columns import DecodeResult, RecordBatch, Rejection, concat_batches
from monitor.records.convert import (
    BAD_STATUS,
    Labels,
    encode_labels,
    error_flags,
    frozen,
    latency_unit_hint,
    number_one,
    numbers,
    statuses,
    time_one,
    time_strings,
)
from monitor.records.fast import StructFields, learn_keys, struct_fields, struct_fields_split
from monitor.records.fieldmap import UNIT_DIVISOR, FieldMap, LabelSource
from monitor.records.rows import (
    REASON_BAD_COHORT,
    REASON_BAD_LATENCY,
    REASON_BAD_STATUS,
    REASON_BAD_TIME,
    REASON_BAD_TYPE,
    REASON_INVALID_JSON,
    REASON_MISSING_FIELD,
    REASON_NOT_AN_OBJECT,
    REJECTION_REASONS,
    Fields,
    NotFast,
)

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
    "decode_batch_reference",
]

Cohort = Literal["canary", "baseline"]

COHORTS: tuple[str, ...] = get_args(Cohort)

# Epoch seconds at or beyond this (year ~5138) are almost surely ms/us/ns configured as "s".
MAX_EPOCH_S = 1e11

log = logging.getLogger("bakemon.records")
# (latency path, unit) pairs already warned about: a wrong unit is logged once per process,
# not once per batch (replay prints it on stderr through logging's last-resort handler).
_UNIT_WARNED: set[tuple[str, str]] = set()
# Batches looked at per (latency path, unit) for that hint: every one of the first
# UNIT_HINT_FIRST, then one in UNIT_HINT_EVERY (a wrong unit shows in the first batch; looking
# at each later one cost as much as decoding a field).
UNIT_HINT_FIRST, UNIT_HINT_EVERY = 16, 64
_UNIT_LOOKS: dict[tuple[str, str], int] = {}

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

    >>> from monitor.records.fieldmap import PRESETS
    >>> ok = b'{"ts": 1764323000.5, "service": "checkout", "version": "v42", "status": 503, '
    >>> r = decode_batch([ok + b'"latency_ms": 12.5}', b"oops"], PRESETS["plain"])
    >>> r.batch.index.tolist(), r.batch.latency_s.tolist(), r.batch.error.tolist()
    ([0], [0.0125], [True])
    >>> r.rejected_by_reason
    {'invalid_json': 1}
    """
    defaults: FloatArray | None = None
    if default_time_s is not None:
        defaults = np.asarray(default_time_s, dtype=np.float64)
        if defaults.shape != (len(messages),):
            # A caller bug, not bad input: deliberately not a MonitorError.
            msg = f"default_time_s has shape {defaults.shape}, expected ({len(messages)},)"
            raise ValueError(msg)
    fast = struct_fields(messages, field_map)
    if fast is not None:
        try:
            return _decode(
                messages, field_map, defaults, Fields(fast, len(messages), messages), None
            )
        except NotFast:
            pass
    else:
        split = struct_fields_split(messages, field_map)
        if split is not None:
            try:
                return _decode_split(messages, field_map, defaults, *split)
            except NotFast:
                pass
    return _reference(messages, field_map, defaults)


def decode_batch_reference(
    messages: Sequence[bytes | str],
    field_map: FieldMap,
    *,
    default_time_s: npt.ArrayLike | None = None,
) -> DecodeResult:
    """:func:`decode_batch` on the reference path only (orjson dicts), for tests and benchmarks."""
    defaults = None if default_time_s is None else np.asarray(default_time_s, dtype=np.float64)
    return _reference(messages, field_map, defaults)


def _decode_split(
    messages: Sequence[bytes | str],
    field_map: FieldMap,
    defaults: FloatArray | None,
    refused: list[int],
    fast: StructFields,
) -> DecodeResult:
    """A batch with a few messages the struct decoder refused: the others on the fast path,
    those on the reference path, merged in input order (what the reference path gives for the
    whole batch: every check is per row, and categories are the sorted labels of kept rows)."""
    keep = np.ones(len(messages), dtype=bool)
    keep[refused] = False
    pos_a, pos_b = np.flatnonzero(keep), np.asarray(refused, dtype=np.int64)
    sub = [messages[i] for i in pos_a.tolist()]
    a = _decode(
        sub,
        field_map,
        None if defaults is None else defaults[pos_a],
        Fields(fast, len(sub), sub),
        None,
    )
    b = _reference(
        [messages[i] for i in refused],
        field_map,
        None if defaults is None else defaults[pos_b],
        fitted=len(sub),
    )
    rejections = [
        dataclasses.replace(r, index=int(pos[r.index]))
        for part, pos in ((a, pos_a), (b, pos_b))
        for r in part.rejections
    ]
    rejections.sort(key=lambda r: r.index)
    parts = [(part.batch, pos) for part, pos in ((a, pos_a), (b, pos_b)) if part.batch.n]
    if len(parts) == 2:
        index = np.concatenate([pos[batch.index] for batch, pos in parts])
        merged = dataclasses.replace(concat_batches([p[0] for p in parts]), index=index)
        batch = merged.take(np.argsort(index, kind="stable"))
    else:
        only, pos = parts[0] if parts else (a.batch, pos_a)
        batch = dataclasses.replace(only, index=pos[only.index])
    return _result(batch, rejections)


def _result(batch: RecordBatch, rejections: list[Rejection]) -> DecodeResult:
    """The result, with its rejections counted by reason (in the order reasons first come)."""
    by_reason: dict[str, int] = {}
    for r in rejections:
        by_reason[r.reason] = by_reason.get(r.reason, 0) + 1
    return DecodeResult(batch, rejections, by_reason)


def _reference(
    messages: Sequence[bytes | str],
    field_map: FieldMap,
    defaults: FloatArray | None,
    *,
    fitted: int = 0,
) -> DecodeResult:
    objs, pos, rejections = _parse(messages)
    learn_keys(field_map, objs, fitted)  # so the next batch of this log takes the fast path
    return _decode(
        messages, field_map, defaults, Fields(objs, len(objs), messages), (pos, rejections)
    )


def _decode(
    messages: Sequence[bytes | str],
    field_map: FieldMap,
    defaults: FloatArray | None,
    cols: Fields,
    parsed: tuple[Int64Array, list[Rejection]] | None,
) -> DecodeResult:
    """Checks and columns over ``cols``; ``parsed`` = (positions, rejections) of the reference
    parse, None when every message parsed into a struct."""
    if parsed is None:
        pos, rejections = np.arange(cols.m, dtype=np.int64), list[Rejection]()
    else:
        pos, rejections = parsed
    cols.encode_jointly(_label_paths(field_map))
    # The checks are flagged in this order; a row is rejected for the first one it fails.
    time_s = _decode_time(cols, field_map, None if defaults is None else defaults[pos])
    labels = _decode_labels(cols, field_map)
    status, error = _decode_status(cols, field_map)
    latency_s = _decode_latency(cols, field_map)
    segments: dict[str, Labels] = {}
    for name, path in field_map.segments.items():  # absent is fine, only a container is bad
        segments[name] = encode_labels(
            cols.get(path), strings=cols.kind(path) == "str", pre=cols.first.get(path)
        )
        cols.checks.flag(segments[name].bad, REASON_BAD_TYPE, path, cols.get(path))
    for row, reason, detail in cols.checks.failures(cols.shown):
        rejections.append(_rejection(messages, int(pos[row]), reason, detail))
    rejections.sort(key=lambda r: r.index)
    keep = cols.checks.ok
    sel: slice | Int64Array = slice(None) if keep.all() else np.flatnonzero(keep)
    service, version, cohort, bake = labels
    batch = RecordBatch(
        index=frozen(pos[sel]),
        time_s=frozen(time_s[sel]),
        latency_s=frozen(latency_s[sel]),
        error=frozen(error[sel]),
        status=frozen(status[sel].astype(np.int32)),
        service=service.categorical(sel),
        version=version.categorical(sel),
        cohort=None if cohort is None else cohort.categorical(sel),
        bake=None if bake is None else bake.categorical(sel),
        segments={k: v.categorical(sel) for k, v in segments.items()},
    )
    return _result(batch, rejections)


def _label_paths(fm: FieldMap) -> list[str]:
    """The paths of the label columns read as they are (one source without a pattern)."""
    paths = dict.fromkeys(fm.segments.values())
    for name in ("service", "version", "cohort", "bake"):
        sources = fm.label_sources(name)
        if len(sources) == 1 and sources[0].pattern is None:
            paths[sources[0].path] = None
    return list(paths)


def _decode_time(cols: Fields, fm: FieldMap, defaults: FloatArray | None) -> FloatArray:
    """Event times in s; ``defaults`` (per parsed row) fill absent ones."""
    tcol = cols.get(fm.time)
    divisor = UNIT_DIVISOR[fm.time_unit]
    time_s, t_absent = numbers(
        tcol, divisor, time_strings, time_one, floats=cols.kind(fm.time) == "float"
    )
    if defaults is not None and t_absent.any():
        time_s[t_absent] = defaults[t_absent]
        t_absent &= ~(np.isfinite(time_s) & (time_s >= 0.0))
    cols.checks.flag(t_absent, REASON_MISSING_FIELD, fm.time, tcol)
    with np.errstate(invalid="ignore"):
        t_ok = (time_s >= 0.0) & (time_s < MAX_EPOCH_S)
    cols.checks.flag(~t_ok & ~t_absent, REASON_BAD_TIME, fm.time, tcol)
    return time_s


_LabelColumns = tuple[Labels, Labels, Labels | None, Labels | None]


def _decode_labels(cols: Fields, fm: FieldMap) -> _LabelColumns:
    """(service, version, cohort, bake) label columns; cohort and bake only when mapped."""
    m, checks = cols.m, cols.checks
    if fm.service is None:
        service = Labels(np.zeros(m, np.int32), [fm.service_default or ""], None)
    else:
        service, path, col, why = _label_field(cols, fm, "service", default=fm.service_default)
        checks.flag(service.bad, REASON_BAD_TYPE, path, col)
        checks.flag(service.is_("", m), REASON_MISSING_FIELD, path, col, why)
    cohort = None
    c_absent = np.ones(m, bool)
    if fm.cohort is not None:
        cohort, path, col, _ = _label_field(cols, fm, "cohort", lower=True)
        bad = cohort.not_in(("", *COHORTS), m)
        if cohort.bad is not None:
            bad |= cohort.bad
        checks.flag(bad, REASON_BAD_COHORT, path, col)
        c_absent = cohort.is_("", m)
    if fm.version is None:
        version = Labels(np.zeros(m, np.int32), [""], None)
    else:
        version, path, col, why = _label_field(cols, fm, "version")
        checks.flag(version.bad, REASON_BAD_TYPE, path, col)
        checks.flag(version.is_("", m) & c_absent, REASON_MISSING_FIELD, path, col, why)
    bake = None
    if fm.bake is not None:
        bake, path, col, _ = _label_field(cols, fm, "bake")
        checks.flag(bake.bad, REASON_BAD_TYPE, path, col)
    return service, version, cohort, bake


def _label_field(
    cols: Fields, fm: FieldMap, name: str, *, default: str | None = None, lower: bool = False
) -> tuple[Labels, str, list[Any], str | None]:
    """Label column ``name`` from its sources, with the first source's path and column (for
    rejection details) and, for several or patterned sources, what a missing value means."""
    sources = fm.label_sources(name)
    first = sources[0]
    col = cols.get(first.path)
    if len(sources) == 1 and first.pattern is None:
        labels = encode_labels(
            col,
            default=default or "",
            lower=lower,
            strings=cols.kind(first.path) == "str",
            pre=cols.first.get(first.path),
        )
        return labels, first.path, col, None
    labels = _from_sources(cols, sources, default or "", lower)
    tried = ", ".join(s.describe() for s in sources)
    return labels, first.path, col, f'no "{name}" found in {tried}'


def _from_sources(
    cols: Fields, sources: tuple[LabelSource, ...], default: str, lower: bool
) -> Labels:
    """The first non-empty label of each row over ``sources``; patterns run once per distinct
    value, not per row. Containers in the first source are flagged bad."""
    names: list[str] = [""]
    code_of = {"": 0}
    codes = np.zeros(cols.m, np.int32)
    bad: BoolArray | None = None
    for i, src in enumerate(sources):
        enc = encode_labels(cols.get(src.path), lower=lower, strings=cols.kind(src.path) == "str")
        if i == 0:
            bad = enc.bad
        lut = np.empty(len(enc.names), np.int32)
        for j, raw in enumerate(enc.names):
            label = src.extract(raw) if raw else ""
            code = code_of.get(label)
            if code is None:
                code = code_of[label] = len(names)
                names.append(label)
            lut[j] = code
        empty = codes == 0
        codes[empty] = lut[enc.codes[empty]]
    if default:
        if default in code_of:  # the default is also a real label: one category for both
            codes[codes == 0] = code_of[default]
        names[0] = default
    return Labels(codes, names, bad)


def _decode_status(cols: Fields, fm: FieldMap) -> tuple[Int64Array, BoolArray]:
    """(status, error): a bool error flag overrides the status rule."""
    m = cols.m
    has_flag = np.zeros(m, bool)
    flag = np.zeros(m, bool)
    if fm.error is not None:
        has_flag, flag = error_flags(cols.get(fm.error))
    status = np.full(m, -1, np.int64)
    if fm.status is not None:
        scol = cols.get(fm.status)
        status = statuses(scol, ints=cols.kind(fm.status) == "int")
        cols.checks.flag(status == BAD_STATUS, REASON_BAD_STATUS, fm.status, scol)
        cols.checks.flag((status == -1) & ~has_flag, REASON_MISSING_FIELD, fm.status, scol)
    err_status = status >= fm.error_status_min
    if fm.error_statuses:
        err_status |= np.isin(status, np.fromiter(fm.error_statuses, np.int64))
    error: BoolArray = np.where(has_flag, flag, err_status)
    return status, error


def _decode_latency(cols: Fields, fm: FieldMap) -> FloatArray:
    """Latencies in s; finite and non-negative."""
    lcol = cols.get(fm.latency)
    divisor = UNIT_DIVISOR[fm.latency_unit]
    latency_s, l_absent = numbers(
        lcol, divisor, None, number_one, floats=cols.kind(fm.latency) == "float"
    )
    cols.checks.flag(l_absent, REASON_MISSING_FIELD, fm.latency, lcol)
    with np.errstate(invalid="ignore"):
        l_ok = np.isfinite(latency_s) & (latency_s >= 0.0)
    cols.checks.flag(~l_ok & ~l_absent, REASON_BAD_LATENCY, fm.latency, lcol)
    key = (fm.latency, fm.latency_unit)
    looks = _UNIT_LOOKS[key] = _UNIT_LOOKS.get(key, 0) + 1
    if key not in _UNIT_WARNED and (looks <= UNIT_HINT_FIRST or looks % UNIT_HINT_EVERY == 0):
        hint = latency_unit_hint(latency_s, fm.latency_unit, divisor)
        if hint is not None:
            _UNIT_WARNED.add(key)
            log.warning('field "%s": %s', fm.latency, hint)
    return latency_s


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


def _rejection(messages: Sequence[bytes | str], i: int, reason: str, detail: str) -> Rejection:
    raw: Any = messages[i]
    if isinstance(raw, str):
        data = raw.encode("utf-8", "surrogatepass")
    elif isinstance(raw, bytes | bytearray | memoryview):
        data = bytes(raw)
    else:
        data = b""  # e.g. a Kafka tombstone (None)
    return Rejection(i, reason, data, detail)


# ---------------------------------------------------------------------------- helpers


def _json_kind(v: Any) -> str:
    if v is None:
        return "null"
    return {list: "array", str: "string", bool: "boolean"}.get(type(v), "number")
