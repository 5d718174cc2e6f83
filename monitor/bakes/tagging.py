"""Deterministic cohort tagging of record batches, and the per-(bake, cohort) summaries.

Tagging a record is a pure function of (record, registry), so a replay tags exactly as the live
stream did; the rules are in :mod:`monitor.bakes.spec`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from detectors.summary import NUM_BUCKETS, CohortSummary, bucket_index
from monitor.bakes.spec import BASELINE, CANARY, COHORT_NAMES, Registry
from monitor.records.columns import Categorical, RecordBatch

__all__ = [
    "BASELINE",
    "CANARY",
    "COHORT_NAMES",
    "CellSummaries",
    "Tags",
    "summarise",
    "summarise_cells",
    "tag",
]

BoolArray = npt.NDArray[np.bool_]
Int8Array = npt.NDArray[np.int8]
Int32Array = npt.NDArray[np.int32]
Int64Array = npt.NDArray[np.int64]


SEGMENT_DIMS = ("zone", "route", "host")  # the totals' segment counts (coverage, blast radius)


@dataclass(frozen=True)
class Tags:
    """Per-row bake index (-1 = not in any bake) and cohort (BASELINE/CANARY)."""

    bake: Int32Array
    cohort: Int8Array


def tag(batch: RecordBatch, registry: Registry) -> Tags:
    """Assign every row of ``batch`` to a (bake, cohort), vectorised over distinct keys."""
    n = batch.n
    bake = np.full(n, -1, dtype=np.int32)
    cohort = np.zeros(n, dtype=np.int8)
    if n == 0 or len(registry) == 0:
        return Tags(bake, cohort)
    labelled = np.zeros(n, dtype=bool)
    if batch.cohort is not None:
        labelled = _tag_labelled(batch, batch.cohort, registry, bake, cohort)
    if not labelled.all():
        _tag_by_version(batch, registry, ~labelled, bake, cohort)
    _untag_outside_windows(batch, registry, bake)
    return Tags(bake, cohort)


def _tag_labelled(
    batch: RecordBatch,
    labels: Categorical,
    registry: Registry,
    bake: Int32Array,
    cohort: Int8Array,
) -> BoolArray:
    """Rules 1 and 2 (rows with a cohort label), in place; returns the mask of those rows."""
    cohort_of_cat = np.array(
        [COHORT_NAMES.index(c) if c in COHORT_NAMES else -1 for c in labels.categories] or [-1],
        dtype=np.int8,
    )
    row_cohort = cohort_of_cat[labels.codes]
    labelled: BoolArray = row_cohort >= 0
    if not labelled.any():
        return labelled
    if batch.bake is not None:
        bake_of_cat = np.array(
            [registry._index.get(c, -1) for c in batch.bake.categories] or [-1], dtype=np.int32
        )
        row_bake = bake_of_cat[batch.bake.codes]
        explicit = labelled & (row_bake >= 0)
        bake[explicit] = row_bake[explicit]
        cohort[explicit] = row_cohort[explicit]
        no_bake_label = np.array([c == "" for c in batch.bake.categories] or [True])
        labelled_no_bake = labelled & ~explicit & no_bake_label[batch.bake.codes]
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
    return labelled


def _tag_by_version(
    batch: RecordBatch, registry: Registry, rest: BoolArray, bake: Int32Array, cohort: Int8Array
) -> None:
    """Rule 3 (rows without a cohort label), in place: one registry lookup per distinct
    (service, version) of the batch and one vectorised pass over the rows, so a batch with
    thousands of services costs no more per row than one with a single service."""
    rows = np.flatnonzero(rest)
    if rows.size == 0:
        return
    n_ver = max(len(batch.version.categories), 1)
    key = batch.service.codes[rows].astype(np.int64) * n_ver + batch.version.codes[rows]
    keys, inv = np.unique(key, return_inverse=True)
    inv = inv.ravel()
    services, versions = batch.service.categories, batch.version.categories or ("",)
    start = np.full(keys.size, np.inf)
    chosen_bake = np.full(keys.size, -1, dtype=np.int32)
    chosen_cohort = np.zeros(keys.size, dtype=np.int8)
    several: list[tuple[int, tuple[tuple[float, int, int], ...]]] = []
    single: list[int] = []
    firsts: list[tuple[float, int, int]] = []
    table, none = registry.version_table(), ()
    for j, k in enumerate(keys.tolist()):
        cands = table.get((services[k // n_ver], versions[k % n_ver]), none)
        if len(cands) == 1:
            single.append(j)
            firsts.append(cands[0])
        elif cands:
            several.append((j, cands))
    if single:
        s_start, s_bake, s_cohort = zip(*firsts, strict=True)
        start[single], chosen_bake[single], chosen_cohort[single] = s_start, s_bake, s_cohort
    t = batch.time_s[rows]
    ok = t >= start[inv]  # one candidate: the rows from its start on
    bake[rows[ok]] = chosen_bake[inv[ok]]
    cohort[rows[ok]] = chosen_cohort[inv[ok]]
    for j, cands in several:  # a version selected by several bakes: the latest started
        mine = np.flatnonzero(inv == j)
        starts = np.array([c[0] for c in cands])
        pos = np.searchsorted(starts, t[mine], side="right") - 1
        hit = pos >= 0
        idx = rows[mine[hit]]
        bake[idx] = np.array([c[1] for c in cands], dtype=np.int32)[pos[hit]]
        cohort[idx] = np.array([c[2] for c in cands], dtype=np.int8)[pos[hit]]


def _untag_outside_windows(batch: RecordBatch, registry: Registry, bake: Int32Array) -> None:
    """Rows outside their bake's event-time window [start, end) belong to no bake, in place."""
    tagged = bake >= 0
    if not tagged.any():
        return
    starts, ends = registry.time_bounds()
    t = batch.time_s[tagged]
    b = bake[tagged]
    outside = (t < starts[b]) | (t >= ends[b])
    bake[np.flatnonzero(tagged)[outside]] = -1


def summarise(
    batch: RecordBatch, tags: Tags, segment_dims: Sequence[str] = SEGMENT_DIMS
) -> dict[tuple[int, int], tuple[CohortSummary, float]]:
    """Summaries per (bake index, cohort) of the tagged rows, with each group's max event time.

    The summaries come from :meth:`CohortSummary.from_groups` over group-major keys: no
    per-record Python work.
    """
    sel = np.flatnonzero(tags.bake >= 0)
    if sel.size == 0:
        return {}
    group = tags.bake[sel].astype(np.int64) * 2 + tags.cohort[sel]
    groups, ginv = np.unique(group, return_inverse=True)
    max_time = np.full(groups.size, -np.inf)
    np.maximum.at(max_time, ginv, batch.time_s[sel])
    segments = {
        dim: (col.codes[sel], col.categories)
        for dim in segment_dims
        if (col := batch.segments.get(dim)) is not None and col.categories
    }
    summaries = CohortSummary.from_groups(
        ginv, groups.size, batch.latency_s[sel], batch.error[sel], segments
    )
    return {
        (grp // 2, grp % 2): (s, float(max_time[j]))
        for j, (grp, s) in enumerate(zip(groups.tolist(), summaries, strict=True))
    }


# (window index, stratum label) → summary, per (bake index, cohort)
CellSummaries = dict[tuple[int, int], dict[tuple[int, str], CohortSummary]]


def _stratum_codes(
    batch: RecordBatch, rows: Int64Array, dims: Sequence[str]
) -> tuple[Int64Array, Callable[[int], str]]:
    """Each row's stratum as one integer (mixed radix over the dims' codes), and the label of a
    code, ``dim=value|dim=value`` (an absent value is empty)."""
    cols = [(d, batch.segments[d]) for d in dims if d in batch.segments]
    code = np.zeros(rows.size, dtype=np.int64)
    radices = [max(len(col.categories), 1) for _, col in cols]
    for (_, col), radix in zip(cols, radices, strict=True):
        code = code * radix + (col.codes[rows].astype(np.int64) if col.categories else 0)

    def label(c: int) -> str:
        parts: list[str] = []
        for (d, col), radix in zip(reversed(cols), reversed(radices), strict=True):
            c, v = divmod(c, radix)
            parts.append(f"{d}={col.categories[v] if col.categories else ''}")
        return "|".join(reversed(parts))

    return code, label


def _cell_groups(
    batch: RecordBatch, tags: Tags, registry: Registry
) -> Iterator[
    tuple[Int64Array, Int64Array, Int64Array, Int64Array, Int64Array, Callable[[int], str]]
]:
    """Per shape of evidence cells (``window_s``, strata) the bakes' tagged rows use: the rows,
    each row's group (``np.unique`` inverse) and the groups' (bake * 2 + cohort, window index,
    stratum code), with the label of a stratum code. Bakes that form cells alike (usually all
    of them) share one key per row and one ``np.unique``."""
    tagged = tags.bake >= 0
    by_shape: dict[tuple[float, tuple[str, ...]], list[int]] = {}
    present = np.bincount(tags.bake[tagged], minlength=len(registry.bakes))  # no sort of rows
    for bake_idx in np.flatnonzero(present).tolist():
        evidence = registry.bakes[bake_idx].policy.evidence
        by_shape.setdefault((evidence.window_s, evidence.cell_dims), []).append(bake_idx)
    for (window_s, dims), bakes in by_shape.items():
        rows = np.flatnonzero(tagged if len(by_shape) == 1 else np.isin(tags.bake, bakes))
        windows, w_inv = _windows(np.floor(batch.time_s[rows] / window_s).astype(np.int64))
        stratum, label = _stratum_codes(batch, rows, dims)
        n_w, n_s = windows.size, int(stratum.max()) + 1
        group = tags.bake[rows].astype(np.int64) * 2 + tags.cohort[rows]
        key = (group * n_w + w_inv.ravel()) * n_s + stratum
        groups, ginv = np.unique(key, return_inverse=True)
        rest, st = np.divmod(groups, n_s)
        bc, w = np.divmod(rest, n_w)
        yield rows, ginv.ravel(), bc, windows[w], st, label


_DENSE_WINDOWS = 4096  # a flush spanning at most this many windows numbers them without a sort


def _windows(k: Int64Array) -> tuple[Int64Array, Int64Array]:
    """The window indexes ``k`` as (windows, each row's position in them): every window of
    their span when it is short (positions by subtraction, no sort of the rows; a window
    without rows is never referenced), else the distinct ones."""
    if k.size == 0:
        return k, k
    lo, hi = int(k.min()), int(k.max())
    if hi - lo < _DENSE_WINDOWS:
        return np.arange(lo, hi + 1, dtype=np.int64), k - lo
    windows, inv = np.unique(k, return_inverse=True)
    return windows, inv.ravel()


def summarise_cells(batch: RecordBatch, tags: Tags, registry: Registry) -> CellSummaries:
    """Summaries per (bake index, cohort) and (event-time window, stratum) of the tagged rows,
    by each bake's policy (``window_s``, ``stratify``): the evidence cells of STATISTICS.md §7.
    Vectorised like :func:`summarise` (:func:`_cell_groups`), so the cost of a batch does not
    grow with the number of bakes in it."""
    out: CellSummaries = {}
    for rows, ginv, bc, ks, st, label in _cell_groups(batch, tags, registry):
        summaries = CohortSummary.from_groups(
            ginv, bc.size, batch.latency_s[rows], batch.error[rows]
        )
        labels: dict[int, str] = {}
        for b, k, code, summary in zip(
            bc.tolist(), ks.tolist(), st.tolist(), summaries, strict=True
        ):
            name = labels.get(code)
            if name is None:
                name = labels[code] = label(code)
            out.setdefault(divmod(b, 2), {})[(k, name)] = summary
    return out


@dataclass
class CellCounts:
    """The evidence cells of a batch as columns, no summary objects: per group (bake, cohort,
    window, stratum) its bake index, cohort, window index, stratum (an index into ``labels``,
    distinct labels), requests and errors, and the histogram as (group, bucket, count)
    triplets sorted by group then bucket. What :func:`summarise_cells` gives, for a consumer
    that keeps cells in arrays (ingest)."""

    bake: Int64Array
    cohort: Int64Array
    k: Int64Array
    stratum: Int64Array
    labels: list[str]
    n: Int64Array
    e: Int64Array
    h_group: Int64Array
    h_bucket: Int64Array
    h_count: Int64Array

    def label(self, g: int) -> str:
        """Group ``g``'s stratum label."""
        return self.labels[int(self.stratum[g])]


def as_totals(cc: CellCounts) -> CellCounts:
    """The same counts with every group in window 0, stratum "": summed per (bake, cohort) by
    whoever adds them, they are the bakes' totals (every tagged row is in one cell)."""
    zeros = np.zeros(cc.n.size, dtype=np.int64)
    return CellCounts(
        cc.bake, cc.cohort, zeros, zeros, [""], cc.n, cc.e, cc.h_group, cc.h_bucket, cc.h_count
    )


def cell_counts(batch: RecordBatch, tags: Tags, registry: Registry) -> CellCounts:
    """:class:`CellCounts` of the tagged rows (the groups of :func:`summarise_cells`)."""
    parts: list[tuple[Any, ...]] = []
    labels: dict[str, int] = {}
    offset = 0
    for rows, ginv, bc, ks, st, label in _cell_groups(batch, tags, registry):
        g = bc.size
        codes, st_inv = np.unique(st, return_inverse=True)
        lut = np.array(
            [labels.setdefault(label(c), len(labels)) for c in codes.tolist()], dtype=np.int64
        )
        keys, counts = np.unique(
            ginv * NUM_BUCKETS + bucket_index(batch.latency_s[rows]), return_counts=True
        )
        h_group, h_bucket = np.divmod(keys, NUM_BUCKETS)
        n = np.bincount(ginv, minlength=g)
        e = np.bincount(ginv, weights=batch.error[rows].astype(np.float64), minlength=g)
        e = np.rint(e).astype(np.int64)
        parts.append(
            (bc // 2, bc % 2, ks, lut[st_inv.ravel()], n, e, h_group + offset, h_bucket, counts)
        )
        offset += g
    if not parts:
        empty = np.zeros(0, dtype=np.int64)
        return CellCounts(empty, empty, empty, empty, [], empty, empty, empty, empty, empty)
    cols = zip(*parts, strict=True)
    b, c, k, st, n, e, hg, hb, hc = (np.concatenate(x).astype(np.int64) for x in cols)
    return CellCounts(b, c, k, st, list(labels), n, e, hg, hb, hc)


def segment_counts(
    batch: RecordBatch, tags: Tags, segment_dims: Sequence[str] = SEGMENT_DIMS
) -> tuple[list[str], dict[int, dict[str, dict[str, int]]]]:
    """The dims of ``segment_dims`` the batch has, and per group ``bake * 2 + cohort`` its
    nonzero per-value request counts (absent values not counted), values in category order:
    what :func:`summarise` puts in each summary's ``segments``, without summary objects."""
    sel = np.flatnonzero(tags.bake >= 0)
    dims = [
        d for d in segment_dims if (col := batch.segments.get(d)) is not None and col.categories
    ]
    out: dict[int, dict[str, dict[str, int]]] = {}
    if sel.size == 0:
        return dims, out
    groups, ginv = np.unique(
        tags.bake[sel].astype(np.int64) * 2 + tags.cohort[sel], return_inverse=True
    )
    glist = groups.tolist()
    for dim in dims:
        col = batch.segments[dim]
        cats = col.categories
        codes = col.codes[sel].astype(np.int64)
        empty = col.code("")
        keep = codes != empty if empty >= 0 else np.ones(sel.size, dtype=bool)
        if not keep.any():
            continue
        keys, counts = np.unique(ginv.ravel()[keep] * len(cats) + codes[keep], return_counts=True)
        for key, c in zip(keys.tolist(), counts.tolist(), strict=True):
            gi, code = divmod(key, len(cats))
            out.setdefault(glist[gi], {}).setdefault(dim, {})[cats[code]] = c
    return dims, out


@dataclass
class BakeIncrement:
    """What one batch adds to one bake: totals per cohort, the latest event time, and the
    evidence cells (window, stratum) → (canary, baseline)."""

    canary: CohortSummary
    baseline: CohortSummary
    max_time_s: float
    cells: dict[tuple[int, str], tuple[CohortSummary, CohortSummary]]


def increments(batch: RecordBatch, tags: Tags, registry: Registry) -> dict[int, BakeIncrement]:
    """Per bake index with tagged rows: its :class:`BakeIncrement` (totals from
    :func:`summarise`, cells from :func:`summarise_cells`)."""
    groups = summarise(batch, tags)
    cells = summarise_cells(batch, tags, registry)
    out: dict[int, BakeIncrement] = {}
    for bake_idx in sorted({b for b, _ in groups}):
        c, tc = groups.get((bake_idx, CANARY), (CohortSummary(), -math.inf))
        b, tb = groups.get((bake_idx, BASELINE), (CohortSummary(), -math.inf))
        can = cells.get((bake_idx, CANARY), {})
        base = cells.get((bake_idx, BASELINE), {})
        pairs = {
            key: (can.get(key) or CohortSummary(), base.get(key) or CohortSummary())
            for key in sorted({*can, *base})
        }
        out[bake_idx] = BakeIncrement(c, b, max(tc, tb), pairs)
    return out
