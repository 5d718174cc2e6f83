"""Bakes and the registry of bakes; the tagging rules (implemented in :mod:`monitor.bakes.tagging`).

A bake is service + canary selector + baseline selector + policy + start time. Tagging a record
is a pure function of (record, registry), so a replay tags exactly as the live stream did:

1. a record with an explicit bake label and cohort label (``bake``/``cohort`` fields) belongs
   to that bake and cohort, if the bake is registered;
2. a record with only a cohort label belongs to the latest-started bake of its service;
3. otherwise (service, version) is looked up: among the bakes whose canary or baseline
   selector names that version, the one with the latest start time not after the record's
   event time wins (so a later bake of the same version supersedes an earlier one).

Records before a bake's start or after its end are not tagged to it.
"""

from __future__ import annotations

import bisect
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from monitor.bakes.policy import Policy
from monitor.errors import BakeError, ConfigError

__all__ = [
    "BASELINE",
    "CANARY",
    "COHORT_NAMES",
    "BakeSpec",
    "Registry",
    "default_bake_id",
    "safe_bake_id",
]

BASELINE = 0
CANARY = 1
COHORT_NAMES = ("baseline", "canary")

RESERVED_IDS = frozenset({"stream"})  # /v1/bakes/stream is the console's live feed
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")  # whole string (fullmatch: no "\n")
_NOT_IN_ID = re.compile(r"[^A-Za-z0-9._-]+")


def safe_bake_id(text: str) -> str:
    """``text`` made a valid id: characters an id cannot hold (``:`` of an upstream address
    ``10.0.2.1:80``, ``/``, spaces) become ``-``, cut to 128."""
    return _NOT_IN_ID.sub("-", text).strip("-._")[:128] or "bake"


def default_bake_id(service: str, canary: str) -> str:
    """``<service>-<canary>`` as a valid id (:func:`safe_bake_id`)."""
    return safe_bake_id(f"{service}-{canary}")


def _str_tuple(value: Any, path: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) and v for v in value):
        msg = f'bake field "{path}" must be a version string or a list of them, got {value!r}'
        raise ConfigError(msg, value=value)
    return tuple(value)


_OVERRIDE_STATUSES = ("PROMOTE", "HALT", "INCONCLUSIVE")


def _override(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping) or set(value) - {"status", "by", "reason", "at"}:
        msg = 'bake field "override" must be {"status", "by", "reason", "at"}'
        raise ConfigError(msg, value=value)
    status, by, reason, at = (
        value.get("status"),
        value.get("by"),
        value.get("reason"),
        value.get("at"),
    )
    if status not in _OVERRIDE_STATUSES:
        msg = f'override "status" must be one of {", ".join(_OVERRIDE_STATUSES)}, got {status!r}'
        raise ConfigError(msg, value=status)
    for key, v in (("by", by), ("reason", reason)):
        if not isinstance(v, str) or not v.strip() or len(v) > 500:
            msg = f'override "{key}" must be a non-empty string (at most 500 characters)'
            raise ConfigError(msg, value=v)
    if isinstance(at, bool) or not isinstance(at, int | float):
        msg = f'override "at" must be epoch seconds, got {at!r}'
        raise ConfigError(msg, value=at)
    return {"status": status, "by": by, "reason": reason, "at": float(at)}


@dataclass(frozen=True)
class BakeSpec:
    """One bake: which requests are canary and baseline, and the policy that judges them."""

    id: str
    service: str
    canary_versions: tuple[str, ...]
    baseline_versions: tuple[str, ...]
    policy: Policy = field(default_factory=Policy)
    start_s: float = 0.0
    end_s: float | None = None
    created_at: str | None = None
    # An operator's decision, audited: {"status", "by", "reason", "at" (epoch s)}.
    override: Mapping[str, Any] | None = None
    # Where an on-call reads what to do about this bake's alerts (else the service default).
    runbook_url: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not _ID.fullmatch(self.id):
            msg = (
                "bake id must be 1-128 characters of letters, digits, '.', '_' and '-', "
                f"starting with a letter or digit, got {self.id!r}"
            )
            raise ConfigError(msg, value=self.id)
        if self.id in RESERVED_IDS:
            msg = f'bake id "{self.id}" is reserved (GET /v1/bakes/{self.id} is another route)'
            raise ConfigError(msg, value=self.id)
        if not self.service:
            msg = "bake service must not be empty"
            raise ConfigError(msg, value=self.service)
        overlap = set(self.canary_versions) & set(self.baseline_versions)
        if overlap:
            msg = f'bake "{self.id}": version(s) {sorted(overlap)} are in both canary and baseline'
            raise ConfigError(msg, value=sorted(overlap))
        if not math.isfinite(self.start_s):
            msg = f"bake start must be finite, got {self.start_s}"
            raise ConfigError(msg, value=self.start_s)
        if self.end_s is not None and self.end_s < self.start_s:
            msg = f"bake end {self.end_s} is before its start {self.start_s}"
            raise ConfigError(msg, value=self.end_s)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BakeSpec:
        """Build from a plain mapping (API body, TOML); unknown keys are an error."""
        if not isinstance(data, Mapping):
            msg = f"bake must be an object, got {type(data).__name__}"
            raise ConfigError(msg, value=data)
        allowed = {
            "id",
            "service",
            "canary",
            "baseline",
            "policy",
            "start",
            "end",
            "created_at",
            "override",
            "runbook_url",
        }
        unknown = sorted(set(data) - allowed)
        if unknown:
            msg = f"unknown bake field(s) {unknown}; valid: {sorted(allowed)}"
            raise ConfigError(msg, value=unknown)
        for key in ("id", "service", "canary", "baseline"):
            if key not in data:
                msg = f'bake field "{key}" is required'
                raise ConfigError(msg, value=None)
        if not isinstance(data["id"], str) or not isinstance(data["service"], str):
            msg = 'bake fields "id" and "service" must be strings'
            raise ConfigError(msg, value=data)
        start = data.get("start", 0.0)
        end = data.get("end")
        for key, v in (("start", start), ("end", end)):
            if v is not None and (isinstance(v, bool) or not isinstance(v, int | float)):
                msg = f'bake field "{key}" must be epoch seconds, got {v!r}'
                raise ConfigError(msg, value=v)
        return cls(
            id=data["id"],
            service=data["service"],
            canary_versions=_str_tuple(data["canary"], "canary"),
            baseline_versions=_str_tuple(data["baseline"], "baseline"),
            policy=Policy.from_dict(data.get("policy")),
            start_s=float(start),
            end_s=None if end is None else float(end),
            created_at=data.get("created_at"),
            override=_override(data.get("override")),
            runbook_url=_url(data.get("runbook_url"), "runbook_url"),
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form read back by :meth:`from_dict`."""
        return {
            "id": self.id,
            "service": self.service,
            "canary": list(self.canary_versions),
            "baseline": list(self.baseline_versions),
            "policy": self.policy.to_dict(),
            "start": self.start_s,
            "end": self.end_s,
            "created_at": self.created_at,
            "override": None if self.override is None else dict(self.override),
            "runbook_url": self.runbook_url,
        }


def _url(v: Any, key: str) -> str | None:
    """An absolute http(s) URL (or None)."""
    if v is None:
        return None
    if not isinstance(v, str) or not v.startswith(("http://", "https://")) or len(v) > 2048:
        msg = f'bake field "{key}" must be an absolute http(s) URL, got {v!r}'
        raise ConfigError(msg, value=v)
    return v


class Registry:
    """The known bakes, indexed for tagging. Bakes get a stable small index in add order."""

    def __init__(self, bakes: Iterable[BakeSpec] = ()) -> None:
        self._bakes: list[BakeSpec] = []
        self._index: dict[str, int] = {}
        # (service, version) → (start, id, bake index, cohort), sorted
        self._by_version: dict[tuple[str, str], list[tuple[float, str, int, int]]] = {}
        self._frozen: tuple[BakeSpec, ...] | None = ()
        self._derived: dict[str, Any] = {}  # per-registry lookups built once (reset by add)
        for b in bakes:
            self.add(b)

    def __len__(self) -> int:
        return len(self._bakes)

    def __contains__(self, bake_id: object) -> bool:
        return bake_id in self._index

    @property
    def bakes(self) -> Sequence[BakeSpec]:
        if self._frozen is None:  # cached: readers index it per batch
            self._frozen = tuple(self._bakes)
        return self._frozen

    def get(self, bake_id: str) -> BakeSpec:
        try:
            return self._bakes[self._index[bake_id]]
        except KeyError:
            msg = f'bake "{bake_id}" is not registered'
            raise BakeError(msg, value=bake_id) from None

    def add(self, spec: BakeSpec) -> int:
        """Register (or replace, same id) a bake; returns its index. O(log n) per version it
        selects for a new bake (the registry of 10,000 bakes builds in well under a second).
        Which bake a record belongs to never depends on the indexes: ties between bakes that
        select a version from the same start go to the greatest id, in any add order."""
        self._frozen = None
        self._derived = {}
        if spec.id in self._index:
            i = self._index[spec.id]
            self._unindex(i, self._bakes[i])
            self._bakes[i] = spec
        else:
            i = len(self._bakes)
            self._bakes.append(spec)
            self._index[spec.id] = i
        for cohort, versions in (
            (CANARY, spec.canary_versions),
            (BASELINE, spec.baseline_versions),
        ):
            for v in versions:
                key = (spec.service, v)
                entries = list(self._by_version.get(key, ()))  # copied: snapshots share lists
                bisect.insort(entries, (spec.start_s, spec.id, i, cohort))
                self._by_version[key] = entries
        return i

    def with_specs(self, specs: Iterable[BakeSpec]) -> Registry:
        """A new registry: this one plus ``specs`` (added, or replacing the same ids). This one
        is unchanged (readers keep their snapshot); the copy is of references only, so an
        update costs far less than a rebuild, and tagging is the same either way."""
        out = Registry.__new__(Registry)
        out._bakes = list(self._bakes)
        out._index = dict(self._index)
        out._by_version = dict(self._by_version)
        out._frozen = None
        out._derived = {}
        for spec in specs:
            out.add(spec)
        return out

    def _unindex(self, i: int, old: BakeSpec) -> None:
        for v in (*old.canary_versions, *old.baseline_versions):
            key = (old.service, v)
            entries = [e for e in self._by_version.get(key, []) if e[2] != i]
            if entries:
                self._by_version[key] = entries
            else:
                self._by_version.pop(key, None)

    def latest_for_service(self, service: str) -> int | None:
        """The index of the service's latest-started bake (then greatest id), or None; the
        table is built once per registry (tagging asks for every service of every batch)."""
        latest = self._derived.get("latest")
        if latest is None:
            best: dict[str, tuple[float, str, int]] = {}
            for i, b in enumerate(self._bakes):
                cand = (b.start_s, b.id, i)
                if b.service not in best or cand > best[b.service]:
                    best[b.service] = cand
            latest = self._derived["latest"] = {s: c[2] for s, c in best.items()}
        return latest.get(service)

    def time_bounds(self) -> tuple[Any, Any]:
        """Arrays of the bakes' event-time starts and ends (inf: open), by index, built once."""
        bounds = self._derived.get("bounds")
        if bounds is None:
            starts = np.array([b.start_s for b in self._bakes], dtype=np.float64)
            ends = np.array(
                [math.inf if b.end_s is None else b.end_s for b in self._bakes], dtype=np.float64
            )
            bounds = self._derived["bounds"] = (starts, ends)
        return bounds

    def ids(self) -> Sequence[str]:
        """The bakes' ids by index, built once."""
        ids = self._derived.get("ids")
        if ids is None:
            ids = self._derived["ids"] = tuple(b.id for b in self._bakes)
        return ids

    def version_table(self) -> dict[tuple[str, str], tuple[tuple[float, int, int], ...]]:
        """(service, version) → :meth:`candidates`, for every indexed version, built once."""
        table = self._derived.get("versions")
        if table is None:
            table = self._derived["versions"] = {
                key: tuple((t, i, c) for t, _, i, c in entries)
                for key, entries in self._by_version.items()
            }
        return table

    def candidates(self, service: str, version: str) -> list[tuple[float, int, int]]:
        """(start, bake index, cohort) of bakes selecting this version, by start time (then
        id)."""
        return [(t, i, c) for t, _, i, c in self._by_version.get((service, version), ())]
