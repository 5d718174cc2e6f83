"""The fast path of batch decoding: msgspec structs generated from the field map.

:func:`struct_fields` parses a batch with a ``msgspec.json.Decoder`` of a Struct whose fields are
the top-level keys the field map reads, plus every other key seen in the log so far. Unknown keys
are forbidden rather than skipped, so every byte of a message is validated by a full parse (a
skipped value is not checked for UTF-8 or number range the way orjson checks it). A batch the
fast path cannot take exactly — a parse or validation error, an unknown key, a non-bytes message,
an integer orjson would read as a float — returns None and the caller decodes it on the
reference path (orjson dicts); the keys of that batch are learnt for the next one. Both paths
hand the same per-path value columns to the same checks, so they accept and reject alike.

Flat keys with one role are typed (:data:`KINDS`): labels (service, version, cohort, bake,
segments) ``str | None``, time and latency ``float | None``, status ``int | None``. msgspec
checks the type while parsing, so those columns need no type scan afterwards; a typed float
column holds ``12.0`` where the log wrote ``12`` (the same float64), so rejection details are
rendered from the message itself. A log whose values do not fit (``"version": 42``, ISO times,
``"status": "200"``) fails that check and is decoded on the reference path; the key is then
typed ``Any`` like the rest once more than :data:`RELAX_SHARE` of the rows of reference batches
held such a value (ISO times: at the first batch; a fuzzed line now and then: never).

A label key is typed ``Literal[...] | None`` over the values seen so far (its vocabulary, up to
:data:`VOCABULARY_MAX` values): msgspec then returns the same string object for every row with
that value instead of allocating one per row, and label encoding hashes each value once. A
batch with a new value fails that check; it is parsed again with the key typed ``str | None``,
its values are learnt, and the next batch takes the literal decoder again. A key with more
distinct values than that (request ids as a segment) stays ``str | None``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from itertools import repeat
from typing import Any, Literal

import msgspec

from monitor.records.fieldmap import FieldMap, resolve_path

__all__ = [
    "MAX_KEYS",
    "RELAX_SHARE",
    "SPLIT_MAX_SHARE",
    "VOCABULARY_MAX",
    "StructFields",
    "learn_keys",
    "struct_fields",
    "struct_fields_split",
]

MAX_KEYS = 256  # beyond this many distinct top-level keys a log has no fast path
VOCABULARY_MAX = 1024  # distinct values of a label key typed as a Literal
# A batch with at most this share of messages the struct decoder refuses is split: the rest
# on the fast path, those on the reference path (more: the whole batch on the reference path).
SPLIT_MAX_SHARE = 0.05
_SPLIT_PROBE = 16  # refused lines in a row at the start: the log changed shape, stop trying
RELAX_SHARE = 0.01  # share of reference-batch rows whose value does not fit a typed key
_MAX_DECODERS = 32
_INT_MIN, _INT_MAX = -(2**63), 2**64  # orjson reads integers outside this range as floats
_SCALARS = frozenset({str, float, bool, type(None)})
_UNSET = msgspec.UNSET


def _label_paths(fm: FieldMap) -> list[str]:
    paths = list(fm.segments.values())
    for name in ("service", "version", "cohort", "bake"):
        paths += [s.path for s in fm.label_sources(name)]
    return paths


def _wanted_keys(fm: FieldMap) -> dict[str, tuple[str, ...] | None]:
    """Top-level keys the map reads: flat path → None, dotted path → its parts (each prefix
    join, ``a``, ``a.b``, ``a.b.c``, may be a top-level key)."""
    paths = [fm.time, fm.latency, fm.status, fm.error, *_label_paths(fm)]
    out: dict[str, tuple[str, ...] | None] = {}
    for path in paths:
        if path is None:
            continue
        parts = tuple(path.split("."))
        if len(parts) == 1:
            out.setdefault(path, None)
        else:
            out[path] = parts
    return out


# Kinds of typed keys: msgspec type, and the Python types of an orjson value that fit it.
_NONE = type(None)
KINDS: dict[str, tuple[Any, frozenset[type]]] = {
    "str": (str | None, frozenset({str, _NONE})),  # labels
    "float": (float | None, frozenset({float, int, _NONE})),  # time, latency (ints read as floats)
    "int": (int | None, frozenset({int, _NONE})),  # status
}


def _typed_keys(fm: FieldMap, keys: set[str]) -> dict[str, str]:
    """Flat keys with one role each (label, time or latency, status) → their kind; a key that
    is also another field or a dotted path's prefix stays ``Any``."""
    roles: dict[str, set[str]] = {}
    for path in _label_paths(fm):
        roles.setdefault(path, set()).add("str")
    fields = ((fm.time, "float"), (fm.latency, "float"), (fm.status, "int"), (fm.error, "any"))
    for field, kind in fields:
        if field is not None:
            roles.setdefault(field, set()).add(kind)
    return {
        k: kind
        for k, (kind, *more) in ((k, sorted(v)) for k, v in roles.items())
        if not more
        and kind != "any"
        and "." not in k
        and not any(p.startswith(k + ".") for p in keys)  # a dotted path's prefix: Any
    }


class _Decoder:
    """One field map's Struct decoder, rebuilt when new top-level keys are learnt."""

    def __init__(self, fm: FieldMap) -> None:
        self.paths = _wanted_keys(fm)
        wanted: set[str] = set()
        for path, parts in self.paths.items():
            if parts is None:
                wanted.add(path)
            else:
                wanted.update(".".join(parts[:end]) for end in range(1, len(parts) + 1))
        self.kinds = _typed_keys(fm, wanted)  # typed keys, while their values fit the kind
        # The keys seen in the log (learnt from reference batches): a wanted key the log never
        # holds (no cohort field, say) is no field of the struct, so its column is known to be
        # all absent without reading it; a message that has it is refused and teaches it.
        self.keys: set[str] = set()
        self._odd: dict[str, list[int]] = {}  # typed key → [rows not fitting, rows seen]
        # Label key → the values seen (typed Literal while at most VOCABULARY_MAX); None: too
        # many, typed str.
        self.vocabulary: dict[str, set[str] | None] = {}
        self.disabled = False
        self.joint_off = 0  # batches left without joint label encoding (see joint_labels)
        self._build()

    def _build(self) -> None:
        keys = sorted(self.keys)
        self.attr = {k: f"f{i}" for i, k in enumerate(keys)}
        self.literal = {
            k: tuple(sorted(v))
            for k, v in self.vocabulary.items()
            if v and self.kinds.get(k) == "str"
        }
        self.decode_plain = self._decoder(keys, {})
        self.decode = self._decoder(keys, self.literal) if self.literal else self.decode_plain
        # Attribute names are our own identifiers (f0, f1, …), never log content.
        self.getters = {
            k: eval(f"lambda rows: [r.{a} for r in rows]", {}) for k, a in self.attr.items()
        }

    def _decoder(self, keys: list[str], literal: dict[str, tuple[str, ...]]) -> Any:
        dotted = {k for k in keys if k not in self.paths or self.paths[k] is not None}

        def kind(k: str) -> Any:
            if k in literal:
                return Literal[literal[k]] | None
            return KINDS[self.kinds[k]][0] if k in self.kinds else Any

        fields = [
            (self.attr[k], kind(k), _UNSET if k in dotted else None) for k in keys
        ]  # None = absent or null for flat keys (as dict.get); UNSET = absent for prefixes
        struct = msgspec.defstruct(
            "LogLine",
            fields,
            rename={self.attr[k]: k for k in keys},
            forbid_unknown_fields=True,
            gc=False,
        )
        return msgspec.json.Decoder(struct).decode

    def learn(self, objs: list[dict[str, Any]], fitted: int = 0) -> None:
        """Learn the keys, odd values and label values of ``objs`` (reference-path rows); the
        batch had ``fitted`` more rows, parsed into structs (their values fit every kind)."""
        new = set().union(*objs) - self.keys
        relaxed = set()
        for k, kind in self.kinds.items():
            fit = KINDS[kind][1]
            odd = self._odd.setdefault(k, [0, 0])
            odd[0] += sum(type(v) not in fit for v in map(dict.get, objs, repeat(k)))
            odd[1] += len(objs) + fitted
            if odd[0] > RELAX_SHARE * odd[1]:
                relaxed.add(k)
        grew = self._learn_values(
            {k: [v for v in map(dict.get, objs, repeat(k)) if type(v) is str] for k in self.kinds}
        )
        if not new and not relaxed and not grew:
            return
        self.keys |= new
        for k in relaxed:
            del self.kinds[k]
        if len(self.keys) > MAX_KEYS:
            self.disabled = True
            return
        self._build()

    def _learn_values(self, columns: dict[str, list[Any]]) -> bool:
        """Add the label values of ``columns`` (key → values) to the vocabularies; whether one
        changed (a literal decoder to rebuild)."""
        grew = False
        for k, col in columns.items():
            if self.kinds.get(k) != "str":
                continue
            vocab = self.vocabulary.setdefault(k, set())
            if vocab is None:
                continue
            fresh = set(col) - vocab
            fresh.discard(None)
            if not fresh:
                continue
            grew = True
            vocab |= fresh
            if len(vocab) > VOCABULARY_MAX:
                self.vocabulary[k] = None
        return grew

    def learn_literals(self, fields: StructFields) -> None:
        """Learn the label values of a batch the literal decoder refused (a new value)."""
        if self._learn_values({k: fields.get(k) or [] for k in self.literal}):
            self._build()


_DECODERS: OrderedDict[FieldMap, _Decoder] = OrderedDict()


def _decoder(fm: FieldMap) -> _Decoder:
    dec = _DECODERS.get(fm)
    if dec is None:
        dec = _DECODERS[fm] = _Decoder(fm)
        if len(_DECODERS) > _MAX_DECODERS:
            _DECODERS.popitem(last=False)
    else:
        _DECODERS.move_to_end(fm)
    return dec


def learn_keys(fm: FieldMap, objs: list[dict[str, Any]], fitted: int = 0) -> None:
    """Remember the top-level keys of a batch decoded on the reference path (``fitted``: the
    batch's other rows, parsed into structs)."""
    dec = _decoder(fm)
    if not dec.disabled and objs:
        dec.learn(objs, fitted)


class StructFields:
    """Per-path value columns of a batch parsed into structs (None where absent)."""

    def __init__(self, dec: _Decoder, rows: list[Any]) -> None:
        self.dec = dec
        self.rows = rows
        self._cols: dict[str, list[Any]] = {}

    def get(self, path: str) -> list[Any] | None:
        """The column at ``path``, or None when it holds a value orjson would read otherwise."""
        col = self._cols.get(path)
        if col is None:
            parts = self.dec.paths[path]
            col = self._flat(path) if parts is None else self._dotted(parts)
            absent = parts is None and not self.seen(path)  # all None: as orjson reads it
            if path not in self.dec.kinds and not absent and not _orjson_alike(col):
                return None
            self._cols[path] = col
        return col

    def kind(self, path: str) -> str | None:
        """The kind msgspec checked the column at ``path`` against ("str": str or None; "float":
        float or None; "int": int or None), None for an untyped column."""
        return self.dec.kinds.get(path)

    def _flat(self, key: str) -> list[Any]:
        getter: Any = self.dec.getters.get(key)
        if getter is None:  # a key the log never had: absent in every row
            return [None if self.dec.paths.get(key, ()) is None else _UNSET] * len(self.rows)
        col: list[Any] = getter(self.rows)
        return col

    def seen(self, key: str) -> bool:
        """Whether ``key`` is a field of the struct (the log has had it)."""
        return key in self.dec.attr

    def _dotted(self, parts: tuple[str, ...]) -> list[Any]:
        keys = [".".join(parts[:end]) for end in range(1, len(parts) + 1)]
        prefixes = [self._flat(k) for k in keys]
        out: list[Any] = [None] * len(self.rows)
        for i, vals in enumerate(zip(*prefixes, strict=True)):
            if any(v is not _UNSET for v in vals):
                obj = {k: v for k, v in zip(keys, vals, strict=True) if v is not _UNSET}
                out[i] = resolve_path(obj, parts)
        return out


def _orjson_alike(col: list[Any]) -> bool:
    """Whether msgspec's values equal orjson's: orjson reads integers beyond 64 bits as floats."""
    types = set(map(type, col))
    if types <= _SCALARS:
        return True
    if types <= _SCALARS | {int}:
        ints = [v for v in col if type(v) is int] if types - {int} else col
        return min(ints) >= _INT_MIN and max(ints) < _INT_MAX
    return all(_value_alike(v) for v in col)


def _value_alike(v: Any) -> bool:
    t = type(v)
    if t is int:
        return bool(_INT_MIN <= v < _INT_MAX)
    if t is dict:
        return all(_value_alike(x) for x in v.values())
    if t is list:
        return all(_value_alike(x) for x in v)
    return True


def struct_fields(messages: Sequence[bytes | str], fm: FieldMap) -> StructFields | None:
    """The batch parsed into structs, or None when it needs the reference path."""
    dec = _decoder(fm)
    if dec.disabled or not messages:
        return None
    try:
        rows = list(map(dec.decode, messages))
    except msgspec.ValidationError:
        if dec.decode is dec.decode_plain:
            return None
        try:  # perhaps a label value new to its key's vocabulary
            rows = list(map(dec.decode_plain, messages))
        except (msgspec.DecodeError, RecursionError, TypeError):
            return None
        fields = StructFields(dec, rows)
        dec.learn_literals(fields)
        return fields
    except (msgspec.DecodeError, RecursionError, TypeError):  # ValidationError is a DecodeError
        return None
    return StructFields(dec, rows)


def struct_fields_split(
    messages: Sequence[bytes | str], fm: FieldMap
) -> tuple[list[int], StructFields] | None:
    """For a batch :func:`struct_fields` refused: the positions of the messages the struct
    decoder refuses (invalid JSON, a new key, a value of another type), and the others parsed
    into structs; None when more than :data:`SPLIT_MAX_SHARE` of them are refused (a log whose
    shape changed: the reference path learns its keys) or none is left."""
    dec = _decoder(fm)
    if dec.disabled or not messages:
        return None
    limit = max(1, int(len(messages) * SPLIT_MAX_SHARE))
    rows: list[Any] = []
    refused: list[int] = []
    decode = dec.decode_plain  # a label value new to its vocabulary is no reason to refuse
    remaining = iter(messages)  # shared by the maps: each resumes after the refused message
    while True:
        try:  # extend keeps the rows parsed before a refusal
            rows.extend(map(decode, remaining))
            break
        except (msgspec.DecodeError, RecursionError, TypeError):
            refused.append(len(rows) + len(refused))
            if len(refused) > limit or (not rows and len(refused) >= _SPLIT_PROBE):
                return None
    if not rows:
        return None
    fields = StructFields(dec, rows)
    dec.learn_literals(fields)
    return refused, fields
