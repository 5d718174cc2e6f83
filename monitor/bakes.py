"""Bakes, the registry of bakes, and deterministic cohort tagging of record batches.

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

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from detectors.summary import NUM_BUCKETS, CohortSummary, bucket_index
from monitor.batch import RecordBatch
from monitor.errors import BakeError, ConfigError
from monitor.policy import Policy

__all__ = ["BASELINE", "CANARY", "BakeSpec", "Registry", "Tags", "summarise", "tag"]

BASELINE = 0
CANARY = 1
COHORT_NAMES = ("baseline", "canary")
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


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

    def __post_init__(self) -> None:
        if not _ID.match(self.id):
            msg = f'bake id must match {_ID.pattern}, got "{self.id}"'
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
        }


class Registry:
    """The known bakes, indexed for tagging. Bakes get a stable small index in add order."""

    def __init__(self, bakes: Iterable[BakeSpec] = ()) -> None:
        self._bakes: list[BakeSpec] = []
        self._index: dict[str, int] = {}
        self._by_version: dict[tuple[str, str], list[tuple[float, int, int]]] = {}
        for b in bakes:
            self.add(b)

    def __len__(self) -> int:
        return len(self._bakes)

    def __contains__(self, bake_id: object) -> bool:
        return bake_id in self._index

    @property
    def bakes(self) -> Sequence[BakeSpec]:
        return tuple(self._bakes)

    def get(self, bake_id: str) -> BakeSpec:
        try:
            return self._bakes[self._index[bake_id]]
        except KeyError:
            msg = f'bake "{bake_id}" is not registered'
            raise BakeError(msg, value=bake_id) from None

    def add(self, spec: BakeSpec) -> int:
        """Register (or replace, same id) a bake; returns its index."""
        if spec.id in self._index:
            i = self._index[spec.id]
            self._bakes[i] = spec
        else:
            i = len(self._bakes)
            self._bakes.append(spec)
            self._index[spec.id] = i
        self._rebuild()
        return i

    def _rebuild(self) -> None:
        by_version: dict[tuple[str, str], list[tuple[float, int, int]]] = {}
        for i, b in enumerate(self._bakes):
            for cohort, versions in ((CANARY, b.canary_versions), (BASELINE, b.baseline_versions)):
                for v in versions:
                    by_version.setdefault((b.service, v), []).append((b.start_s, i, cohort))
        for entries in by_version.values():
            entries.sort()
        self._by_version = by_version

    def latest_for_service(self, service: str) -> int | None:
        cands = [(b.start_s, i) for i, b in enumerate(self._bakes) if b.service == service]
        return max(cands)[1] if cands else None

    def candidates(self, service: str, version: str) -> list[tuple[float, int, int]]:
        """(start, bake index, cohort) of bakes selecting this version, by start time."""
        return self._by_version.get((service, version), [])


@dataclass(frozen=True)
class Tags:
    """Per-row bake index (-1 = not in any bake) and cohort (BASELINE/CANARY)."""

    bake: npt.NDArray[np.int32]
    cohort: npt.NDArray[np.int8]


def tag(batch: RecordBatch, registry: Registry) -> Tags:
    """Assign every row of ``batch`` to a (bake, cohort), vectorised over distinct keys."""
    n = batch.n
    bake = np.full(n, -1, dtype=np.int32)
    cohort = np.zeros(n, dtype=np.int8)
    if n == 0 or len(registry) == 0:
        return Tags(bake, cohort)
    labelled = np.zeros(n, dtype=bool)
    if batch.cohort is not None:
        cats = batch.cohort.categories
        cohort_of_cat = np.array(
            [COHORT_NAMES.index(c) if c in COHORT_NAMES else -1 for c in cats] or [-1],
            dtype=np.int8,
        )
        row_cohort = cohort_of_cat[batch.cohort.codes]
        labelled = row_cohort >= 0
        if labelled.any():
            if batch.bake is not None:
                bake_of_cat = np.array(
                    [registry._index.get(c, -1) for c in batch.bake.categories] or [-1],
                    dtype=np.int32,
                )
                row_bake = bake_of_cat[batch.bake.codes]
                explicit = labelled & (row_bake >= 0)
                bake[explicit] = row_bake[explicit]
                cohort[explicit] = row_cohort[explicit]
                labelled_no_bake = (
                    labelled
                    & ~explicit
                    & (
                        np.array([c == "" for c in batch.bake.categories] or [True])[
                            batch.bake.codes
                        ]
                    )
                )
            else:
                labelled_no_bake = labelled
            if labelled_no_bake.any():
                svc_bake = np.array(
                    [
                        -1 if (j := registry.latest_for_service(s)) is None else j
                        for s in batch.service.categories
                    ],
                    dtype=np.int32,
                )
                rb = svc_bake[batch.service.codes]
                m = labelled_no_bake & (rb >= 0)
                bake[m] = rb[m]
                cohort[m] = row_cohort[m]
    # Version lookup for rows without a cohort label.
    rest = ~labelled
    if rest.any():
        n_ver = max(len(batch.version.categories), 1)
        key = batch.service.codes.astype(np.int64) * n_ver + batch.version.codes
        uniq = np.unique(key[rest])
        for k in uniq.tolist():
            service = batch.service.categories[k // n_ver]
            version = batch.version.categories[k % n_ver] if batch.version.categories else ""
            cands = registry.candidates(service, version)
            if not cands:
                continue
            rows = rest & (key == k)
            starts = np.array([c[0] for c in cands])
            pos = np.searchsorted(starts, batch.time_s[rows], side="right") - 1
            ok = pos >= 0
            idx = np.flatnonzero(rows)[ok]
            chosen = pos[ok]
            bake[idx] = np.array([cands[p][1] for p in range(len(cands))], dtype=np.int32)[chosen]
            cohort[idx] = np.array([cands[p][2] for p in range(len(cands))], dtype=np.int8)[chosen]
    # Event-time window of each bake.
    tagged = bake >= 0
    if tagged.any():
        starts = np.array([b.start_s for b in registry.bakes])
        ends = np.array([math.inf if b.end_s is None else b.end_s for b in registry.bakes])
        t = batch.time_s[tagged]
        b = bake[tagged]
        outside = (t < starts[b]) | (t >= ends[b])
        bake[np.flatnonzero(tagged)[outside]] = -1
    return Tags(bake, cohort)


def summarise(
    batch: RecordBatch, tags: Tags, segment_dims: Sequence[str] = ("zone", "route", "host")
) -> dict[tuple[int, int], tuple[CohortSummary, float]]:
    """Summaries per (bake index, cohort) of the tagged rows, with each group's max event time.

    One ``np.bincount`` per column over group-major keys: no per-record Python work.
    """
    sel = np.flatnonzero(tags.bake >= 0)
    if sel.size == 0:
        return {}
    group = tags.bake[sel].astype(np.int64) * 2 + tags.cohort[sel]
    groups, ginv = np.unique(group, return_inverse=True)
    g = groups.size
    buckets = bucket_index(batch.latency_s[sel])
    hist = np.bincount(ginv * NUM_BUCKETS + buckets, minlength=g * NUM_BUCKETS).reshape(
        g, NUM_BUCKETS
    )
    requests = np.bincount(ginv, minlength=g)
    errors = np.bincount(ginv, weights=batch.error[sel].astype(np.float64), minlength=g)
    max_time = np.full(g, -np.inf)
    np.maximum.at(max_time, ginv, batch.time_s[sel])
    seg_counts: dict[str, tuple[npt.NDArray[np.int64], tuple[str, ...]]] = {}
    for dim in segment_dims:
        col = batch.segments.get(dim)
        if col is None or not col.categories:
            continue
        k = len(col.categories)
        counts = np.bincount(ginv * k + col.codes[sel], minlength=g * k).reshape(g, k)
        seg_counts[dim] = (counts, col.categories)
    out: dict[tuple[int, int], tuple[CohortSummary, float]] = {}
    for j, grp in enumerate(groups.tolist()):
        s = CohortSummary(int(requests[j]), round(errors[j]), hist[j])
        for dim, (counts, cats) in seg_counts.items():
            nz = np.flatnonzero(counts[j])
            s.add_segment_counts(
                dim, {cats[c]: int(counts[j, c]) for c in nz.tolist() if cats[c] != ""}
            )
        out[(grp // 2, grp % 2)] = (s, float(max_time[j]))
    return out
