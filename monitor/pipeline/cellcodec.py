"""The wire encoding of a partial's evidence cells (formats 2 and 3), and of the judge's
snapshot of open blocks; see :mod:`monitor.pipeline.partials` for the messages around them."""

from __future__ import annotations

from itertools import chain, repeat
from typing import Any

import numpy as np
import orjson

from detectors.summary import NUM_BUCKETS, CohortSummary

__all__ = ["CellKey", "CellPairs"]

CellKey = tuple[int, str]  # (window index, stratum label)
# (window index, stratum label) → (canary, baseline)
CellPairs = dict[CellKey, tuple[CohortSummary, CohortSummary]]
_Stamp = tuple[int, int, int, int]  # requests and errors of (canary, baseline)


def _encode_cells(cells: CellPairs) -> dict[str, list[Any]]:
    """The cells as columns: window ``k``, ``stratum``, per cell ``[n_c, n_b]`` requests and
    ``[e_c, e_b]`` errors, and the histograms as ``[row, bucket, count]`` triplets (row
    ``2·cell + cohort``, canary 0), read from each summary's nonzero buckets (a sparse one is
    never made dense: the judge writes these at every checkpoint of a bake)."""
    items = sorted(cells.items())
    summaries = [s for _, pair in items for s in pair]
    triplets: list[int] = []
    for row, s in enumerate(summaries):
        triplets += chain.from_iterable(zip(repeat(row), *s.buckets()))
    return {
        "k": [k for (k, _), _ in items],
        "s": [stratum for (_, stratum), _ in items],
        "n": [s.requests for s in summaries],
        "e": [s.errors for s in summaries],
        "h": triplets,
    }


def _decode_cells(raw: Any, *, rows: bool = False) -> CellPairs:
    """Cells of a format-3 partial (``rows``), or of format 2 / a judge snapshot (columns)."""
    if rows:
        return _decode_rows(raw)
    if isinstance(raw, list):  # written before the columnar form: [[k, stratum, c, b], ...]
        return {
            (int(k), str(st)): (CohortSummary.from_dict(c), CohortSummary.from_dict(b))
            for k, st, c, b in raw
        }
    ks, strata, ns, es = raw["k"], raw["s"], raw["n"], raw["e"]
    m = len(ks)
    if not (len(strata) == m and len(ns) == len(es) == 2 * m):
        msg = "cells: columns of different lengths"
        raise ValueError(msg)
    trip = np.asarray(raw["h"], dtype=np.int64).reshape(-1, 3)
    if trip.size and (
        trip[:, 0].min() < 0
        or trip[:, 0].max() >= 2 * m
        or trip[:, 1].min() < 0
        or trip[:, 1].max() >= NUM_BUCKETS
    ):
        msg = "cells: histogram triplet out of range"
        raise ValueError(msg)
    trip = trip[np.argsort(trip[:, 0], kind="stable")]
    bounds = np.searchsorted(trip[:, 0], np.arange(2 * m + 1)).tolist()
    buckets, counts = trip[:, 1].tolist(), trip[:, 2].tolist()

    def summary(j: int) -> CohortSummary:
        lo, hi = bounds[j], bounds[j + 1]
        return CohortSummary.from_buckets(int(ns[j]), int(es[j]), buckets[lo:hi], counts[lo:hi])

    return {(int(ks[i]), str(strata[i])): (summary(2 * i), summary(2 * i + 1)) for i in range(m)}


def _cell_rows(cells: CellPairs) -> bytes:
    """The cells of format 3 as a JSON array of rows ``[k, stratum, n_c, e_c, n_b, e_b, h_c,
    h_b]``, ordered by (k, stratum); ``h`` is a sparse histogram (:func:`_delta_row`). Ingest
    writes the same rows from its arrays (:class:`~monitor.pipeline.cells.BlockCells`)."""
    rows = [
        orjson.dumps([k, stratum, *_stamp(c, b), _delta_row(c), _delta_row(b)])
        for (k, stratum), (c, b) in sorted(cells.items())
    ]
    return b"[" + b",".join(rows) + b"]"


def _stamp(c: CohortSummary, b: CohortSummary) -> _Stamp:
    return (c.requests, c.errors, b.requests, b.errors)


def _delta_row(s: CohortSummary) -> list[int]:
    """A summary's histogram, sparse and delta-coded: ``[b_0, c_0, b_1 - b_0, c_1, ...]`` for
    its nonzero buckets ``b_0 < b_1 < ...`` (the first as an index, each next one as the step
    from the previous) with their counts ``c_j``; read from the summary's nonzero buckets, so a
    sparse summary (a small service's cell: a few buckets) is never made dense."""
    idx, cnt = s.buckets()
    out: list[int] = []
    prev = 0
    for b, c in zip(idx, cnt, strict=True):
        out += (b - prev, c)
        prev = b
    return out


def _sparse_of_rows(rows: list[Any]) -> tuple[list[int], list[int], list[int]]:
    """The inverse of :func:`_delta_row` for many rows at once, checked: all rows' nonzero
    buckets and counts, row ``i`` being ``[bounds[i], bounds[i + 1])`` of them."""
    pairs_per_row = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))
    if pairs_per_row.size == 0 or not pairs_per_row.any():
        return [], [], [0] * (len(rows) + 1)
    if (pairs_per_row % 2).any():
        msg = "cells: a sparse histogram of odd length"
        raise ValueError(msg)
    pairs_per_row //= 2
    flat = np.asarray(list(chain.from_iterable(rows)), dtype=np.int64).reshape(-1, 2)
    step, count = flat[:, 0], flat[:, 1]
    used = pairs_per_row > 0
    starts = (np.cumsum(pairs_per_row) - pairs_per_row)[used]  # first pair of each used row
    min_step = np.ones(step.size, dtype=np.int64)  # strictly increasing buckets within a row
    min_step[starts] = 0
    if (step < min_step).any() or step.max() >= NUM_BUCKETS or count.min() < 0:
        msg = "cells: sparse histogram out of range"
        raise ValueError(msg)
    total = np.cumsum(step)
    index = total - np.repeat((total - step)[starts], pairs_per_row[used])  # restart per row
    if index.max() >= NUM_BUCKETS:
        msg = "cells: sparse histogram out of range"
        raise ValueError(msg)
    bounds = [0, *np.cumsum(pairs_per_row).tolist()]
    return index.tolist(), count.tolist(), bounds


def _decode_rows(raw: Any) -> CellPairs:
    """Cells of a format-3 partial, written by :func:`_cell_rows`."""
    return _decode_rows_many([raw])[0]


def _decode_rows_many(raws: list[Any]) -> list[CellPairs]:
    """The cells of several format-3 partials (a bundle's), their histograms checked and
    rebuilt in one vectorised pass for all of them."""
    for raw in raws:
        if not isinstance(raw, list) or any(not isinstance(r, list) or len(r) != 8 for r in raw):
            msg = "cells: rows must be [k, stratum, n_c, e_c, n_b, e_b, h_c, h_b]"
            raise ValueError(msg)
    idx, cnt, bounds = _sparse_of_rows([h for raw in raws for r in raw for h in (r[6], r[7])])
    from_buckets = CohortSummary.from_buckets
    out: list[CellPairs] = []
    j = 0
    for raw in raws:
        cells: CellPairs = {}
        for k, stratum, n_c, e_c, n_b, e_b, _, _ in raw:
            a, b, c = bounds[j], bounds[j + 1], bounds[j + 2]
            cells[(int(k), str(stratum))] = (
                from_buckets(int(n_c), int(e_c), idx[a:b], cnt[a:b]),
                from_buckets(int(n_b), int(e_b), idx[b:c], cnt[b:c]),
            )
            j += 2
        out.append(cells)
    return out
