"""Deterministic cohort tagging of record batches, and the per-(bake, cohort) summaries.

Tagging a record is a pure function of (record, registry), so a replay tags exactly as the live
stream did; the rules are in :mod:`monitor.bakes.spec`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from detectors.summary import NUM_BUCKETS, CohortSummary, bucket_index
from monitor.bakes.spec import BASELINE, CANARY, COHORT_NAMES, Registry
from monitor.records.columns import RecordBatch

__all__ = ["BASELINE", "CANARY", "COHORT_NAMES", "Tags", "summarise", "tag"]


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
