"""Ingest's evidence cells of one open block, held in arrays (issue 13, point 4).

A block's partials carry, per bake, the cumulative cells (window, stratum) × (canary, baseline)
of the block. With a thousand active bakes a flush touches thousands of cells; holding each as
two :class:`~detectors.summary.CohortSummary` objects (built per flush, merged, read back to
encode) made ingest's cost per record grow with the number of bakes. :class:`BlockCells`
keeps them as columns instead: requests and errors in ``(cells, 2)`` arrays, the histograms
as one sorted array of ``(2 * cell + cohort) * NUM_BUCKETS + bucket`` keys with their counts.
A flush adds the grouped counts of its records with a few vectorised operations and encodes
only the cells that changed, all at once; the encoded row of an unchanged cell is reused.

The rows are byte for byte those of :func:`monitor.pipeline.partials._cell_rows` (format 3),
so the judge reads them as before; ``tests/monitor/pipeline/test_block_cells.py`` checks that
against the summary-object path on random traffic.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

from detectors.summary import NUM_BUCKETS, SUMMARY_FORMAT_VERSION
from monitor.bakes.spec import BASELINE, CANARY
from monitor.bakes.tagging import CellCounts
from monitor.verdict.windows import overflow_label

__all__ = ["BlockCells"]

Int64Array = npt.NDArray[np.int64]
_CellKey = tuple[int, str]  # (window index, stratum label)


_SLOT_BITS, _K_BITS, _SID_BITS = 21, 21, 21  # a cell's packed key: slot | window | stratum
_K_HALF = 1 << (_K_BITS - 1)


class BlockCells:
    """The evidence cells of every bake of one open block, and their encoded rows.

    A cell is (bake, window ``k``, stratum); bakes and strata get small numbers (slot, sid) in
    the order they come, and a cell's packed key ``slot | k - k0 | sid`` finds it in a sorted
    array, so a flush looks all its groups up at once. Only cells new to the block go through
    Python (with the per-window label cap of :func:`monitor.verdict.windows.merge_cells` when
    the block has more distinct strata than it allows)."""

    __slots__ = (
        "_cb",
        "_ck",
        "_cs",
        "_dirty",
        "_e",
        "_hc",
        "_hk",
        "_k0",
        "_n",
        "_order",
        "_pc",
        "_per_window",
        "_pk",
        "_rows",
        "_sids",
        "_slot_labels",
        "_slots",
        "_where",
        "encoded",
        "reused",
    )

    def __init__(self) -> None:
        self._slots: dict[str, int] = {}  # bake id → slot, in the order they came
        self._sids: dict[str, int] = {}  # stratum label → sid, in the order they came
        self._k0 = np.zeros(0, dtype=np.int64)  # per slot, its first window: keys are relative
        self._pk: Int64Array = np.zeros(0, dtype=np.int64)  # sorted packed keys
        self._pc: Int64Array = np.zeros(0, dtype=np.int64)  # the cell of each
        self._cb = np.zeros(0, dtype=np.int64)  # per cell: slot, window, sid
        self._ck = np.zeros(0, dtype=np.int64)
        self._cs = np.zeros(0, dtype=np.int64)
        self._n: Int64Array = np.zeros((0, 2), dtype=np.int64)  # [cell, cohort] requests
        self._e: Int64Array = np.zeros((0, 2), dtype=np.int64)  # [cell, cohort] errors
        self._hk: Int64Array = np.zeros(0, dtype=np.int64)  # sorted histogram keys
        self._hc: Int64Array = np.zeros(0, dtype=np.int64)  # their counts
        self._rows: list[bytes] = []  # encoded row per cell
        self._dirty = np.zeros(0, dtype=bool)  # changed since their row was encoded
        self._order: tuple[Int64Array, list[int]] | None = None  # cells by (slot, k, label)
        self._slot_labels = np.zeros(0, dtype=np.int64)  # distinct slot << 21 | sid, sorted
        # Built the first time a cell is made one by one, then kept: (slot, k, sid) → cell and
        # the labels per (slot, k).
        self._where: dict[tuple[int, int, int], int] | None = None
        self._per_window: dict[tuple[int, int], int] = {}
        self.encoded = 0  # rows encoded
        self.reused = 0  # rows taken as they were

    def __len__(self) -> int:
        return len(self._rows)

    def bakes(self) -> list[str]:
        return list(self._slots)

    # -- adding -------------------------------------------------------------------------
    def add(self, ids: Sequence[str], cc: CellCounts, max_labels: int | None) -> None:
        """Add a flush's grouped counts; ``ids[i]`` is the id of bake index ``i`` of ``cc``.
        A window that already holds ``max_labels`` strata takes a new one's counts under its
        overflow label, as :func:`monitor.verdict.windows.merge_cells` does (new keys are
        admitted in sorted order)."""
        g = cc.n.size
        if g == 0:
            return
        bakes, b_inv = np.unique(cc.bake, return_inverse=True)
        slots = self._slots
        slot = np.array([slots.setdefault(ids[i], len(slots)) for i in bakes.tolist()])
        slot = slot[b_inv.ravel()]
        sids = self._sids
        sid = np.array([sids.setdefault(x, len(sids)) for x in cc.labels], dtype=np.int64)
        sid = sid[cc.stratum] if cc.labels else np.zeros(g, dtype=np.int64)
        if len(slots) > self._k0.size:  # new bakes: windows relative to their first one here
            k0 = np.full(len(slots), np.iinfo(np.int64).max, dtype=np.int64)
            np.minimum.at(k0, slot, cc.k)
            k0[: self._k0.size] = self._k0
            self._k0 = k0
        key, fits = self._pack(slot, cc.k, sid)
        cell = np.full(g, -1, dtype=np.int64)
        if self._pk.size and fits.any():
            at = np.flatnonzero(fits)
            pos = np.minimum(np.searchsorted(self._pk, key[at]), self._pk.size - 1)
            hit = self._pk[pos] == key[at]
            cell[at[hit]] = self._pc[pos[hit]]
        new = np.flatnonzero(cell < 0)
        if new.size:
            self._admit(new, cell, slot, cc, sid, key, fits, max_labels)
        np.add.at(self._n, (cell, cc.cohort), cc.n)
        np.add.at(self._e, (cell, cc.cohort), cc.e)
        self._add_hist(
            (2 * cell[cc.h_group] + cc.cohort[cc.h_group]) * NUM_BUCKETS + cc.h_bucket, cc.h_count
        )
        self._dirty[cell] = True

    def _pack(
        self, slot: Int64Array, k: Int64Array, sid: Int64Array
    ) -> tuple[Int64Array, npt.NDArray[np.bool_]]:
        """Each group's packed key, and whether it fits (a window more than a million windows
        from its bake's first one here, a record a year late, does not: its cell is found by
        Python)."""
        rel = k - self._k0[slot] + _K_HALF
        fits = (rel >= 0) & (rel < 1 << _K_BITS) & (slot < 1 << _SLOT_BITS) & (sid < 1 << _SID_BITS)
        packed: Int64Array = (
            (slot << (_K_BITS + _SID_BITS)) | (np.where(fits, rel, 0) << _SID_BITS) | sid
        )
        return np.where(fits, packed, -1), fits

    def _admit(
        self,
        new: Int64Array,
        cell: Int64Array,
        slot: Int64Array,
        cc: CellCounts,
        sid: Int64Array,
        key: Int64Array,
        fits: npt.NDArray[np.bool_],
        max_labels: int | None,
    ) -> None:
        """Cells for the groups ``new`` that no cell has yet (written into ``cell``). Made at
        once for bakes whose distinct strata in the block cannot fill a window to the label
        cap and keys that pack; else one by one in (bake, k, label) order, as the summary
        objects were, counting the labels each window holds."""
        risky = np.zeros(new.size, dtype=bool)
        if max_labels is not None:
            pairs = np.unique((slot[new] << _SID_BITS) | np.minimum(sid[new], (1 << _SID_BITS) - 1))
            fresh = pairs[~np.isin(pairs, self._slot_labels, assume_unique=True)]
            if fresh.size:
                self._slot_labels = np.union1d(self._slot_labels, fresh)
            per_slot = np.bincount(self._slot_labels >> _SID_BITS, minlength=len(self._slots))
            risky = per_slot[slot[new]] > max_labels
        quick = new[fits[new] & ~risky]
        if quick.size:
            uk, first, inv = np.unique(key[quick], return_index=True, return_inverse=True)
            made = len(self._rows) + np.arange(uk.size)
            self._extend(slot[quick[first]], cc.k[quick[first]], sid[quick[first]])
            cell[quick] = made[inv.ravel()]
            self._index(uk, made)
        slow = new[~(fits[new] & ~risky)]
        if slow.size:
            self._admit_one_by_one(slow, cell, slot, cc, sid, max_labels)
            packable = slow[fits[slow]]
            if packable.size:  # later flushes find these groups' keys at once
                uk, first = np.unique(key[packable], return_index=True)
                self._index(uk, cell[packable[first]])

    def _admit_one_by_one(
        self,
        groups: Int64Array,
        cell: Int64Array,
        slot: Int64Array,
        cc: CellCounts,
        sid: Int64Array,
        max_labels: int | None,
    ) -> None:
        if self._where is None:
            self._where = {}
            for c, (b, k, s) in enumerate(
                zip(self._cb.tolist(), self._ck.tolist(), self._cs.tolist(), strict=True)
            ):
                self._where[(b, k, s)] = c
                self._per_window[(b, k)] = self._per_window.get((b, k), 0) + 1
        where, per_window = self._where, self._per_window
        labels, names = list(self._sids), self.bakes()
        order = sorted(
            groups.tolist(), key=lambda i: (names[slot[i]], int(cc.k[i]), labels[sid[i]])
        )
        for i in order:
            b, k, s = int(slot[i]), int(cc.k[i]), int(sid[i])
            got = where.get((b, k, s))
            if got is None and max_labels is not None and per_window.get((b, k), 0) >= max_labels:
                s = self._sids.setdefault(overflow_label(labels[s]), len(self._sids))
                labels = list(self._sids)
                got = where.get((b, k, s))
            if got is None:
                got = len(self._rows)
                self._extend(np.array([b]), np.array([k]), np.array([s]))
            cell[i] = got

    def _extend(self, slot: Int64Array, k: Int64Array, sid: Int64Array) -> None:
        m = slot.size
        if self._where is not None:  # kept once built: new cells go in it too
            start = len(self._rows)
            for j, (b, kk, ss) in enumerate(
                zip(slot.tolist(), k.tolist(), sid.tolist(), strict=True)
            ):
                self._where[(b, kk, ss)] = start + j
                self._per_window[(b, kk)] = self._per_window.get((b, kk), 0) + 1
        self._cb = np.concatenate([self._cb, slot])
        self._ck = np.concatenate([self._ck, k])
        self._cs = np.concatenate([self._cs, sid])
        self._rows.extend([b""] * m)
        self._dirty = np.concatenate([self._dirty, np.zeros(m, dtype=bool)])
        have, cells = self._n.shape[0], len(self._rows)
        if cells > have:
            size = max(cells, 2 * have, 64)
            for name in ("_n", "_e"):
                arr = np.zeros((size, 2), dtype=np.int64)
                arr[:have] = getattr(self, name)
                setattr(self, name, arr)
        self._order = None

    def _index(self, keys: Int64Array, cells: Int64Array) -> None:
        """Add sorted, distinct packed ``keys`` (not yet indexed) of ``cells``."""
        pos = np.searchsorted(self._pk, keys)
        self._pk = np.insert(self._pk, pos, keys)
        self._pc = np.insert(self._pc, pos, cells)

    def _add_hist(self, keys: Int64Array, counts: Int64Array) -> None:
        uk, inv = np.unique(keys, return_inverse=True)  # two strata may overflow into one cell
        uc = np.bincount(inv.ravel(), weights=counts, minlength=uk.size).astype(np.int64)
        pos = np.searchsorted(self._hk, uk)
        found = pos < self._hk.size
        found[found] = self._hk[pos[found]] == uk[found]
        np.add.at(self._hc, pos[found], uc[found])
        if not found.all():
            self._hk = np.insert(self._hk, pos[~found], uk[~found])
            self._hc = np.insert(self._hc, pos[~found], uc[~found])

    # -- encoding ------------------------------------------------------------------------
    def rows_json(self, bake: str) -> bytes:
        """The bake's cells as format 3's JSON array of rows, ordered by (k, stratum)."""
        return self.rows_json_of([bake])[0]

    def rows_json_of(self, bakes: Sequence[str]) -> list[bytes]:
        """:meth:`rows_json` of each of ``bakes``, the changed rows encoded once for all."""
        if self._dirty.any():
            self._encode_dirty()
        order_a, bounds = self._ordered()
        order = order_a.tolist()
        rows, slots, out = self._rows, self._slots, []
        for bake in bakes:
            slot = slots.get(bake)
            if slot is None:
                out.append(b"[]")
                continue
            mine = order[bounds[slot] : bounds[slot + 1]]
            self.reused += len(mine)
            out.append(b"[" + b",".join([rows[c] for c in mine]) + b"]")
        return out

    def _ordered(self) -> tuple[Int64Array, list[int]]:
        """The cells by (slot, k, label), and where each slot's run starts."""
        if self._order is None:
            n_sid = len(self._sids)
            rank = np.empty(n_sid, dtype=np.int64)
            by_label = sorted(range(n_sid), key=list(self._sids).__getitem__)
            rank[by_label] = np.arange(n_sid)
            order = np.lexsort((rank[self._cs], self._ck, self._cb)) if n_sid else self._cb
            bounds = np.searchsorted(self._cb[order], np.arange(len(self._slots) + 1)).tolist()
            self._order = (order, bounds)
        return self._order

    def _gather(self, cells: Int64Array) -> tuple[Int64Array, Int64Array, Int64Array]:
        """The nonzero buckets and counts of ``cells``' histograms, canary then baseline per
        cell, with the bounds of each: histogram ``i`` is ``[bounds[i], bounds[i + 1])``."""
        hist_rows = np.stack([2 * cells + CANARY, 2 * cells + BASELINE], axis=1).ravel()
        lo = np.searchsorted(self._hk, hist_rows * NUM_BUCKETS)
        hi = np.searchsorted(self._hk, (hist_rows + 1) * NUM_BUCKETS)
        lengths = hi - lo
        ends = np.cumsum(lengths)
        total = int(ends[-1]) if ends.size else 0
        idx = np.repeat(lo - (ends - lengths), lengths) + np.arange(total)
        bounds = np.concatenate([[0], ends]).astype(np.int64)
        return self._hk[idx] % NUM_BUCKETS, self._hc[idx], bounds

    def summaries(self, bakes: Sequence[str]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        """Per bake, its one cell's (canary, baseline) counts as summary documents without
        segments (:meth:`CohortSummary.to_dict`, the histograms as int64 arrays: encode them
        with ``orjson.OPT_SERIALIZE_NUMPY``): how ingest holds a block's totals (each bake's
        counts in one cell, window 0, stratum "")."""
        order, bounds = self._ordered()
        cells = order[[bounds[self._slots[b]] for b in bakes]]
        bucket, count, hb = self._gather(cells)
        # Views, not lists: serialised by orjson at C speed (the totals are the long histograms)
        bl, cl, bd = bucket, count, hb.tolist()
        n, e = self._n[cells].tolist(), self._e[cells].tolist()
        out = []
        for j in range(cells.size):
            docs = []
            for r, cohort in ((2 * j, CANARY), (2 * j + 1, BASELINE)):
                lo, hi = bd[r], bd[r + 1]
                docs.append(
                    {
                        "v": SUMMARY_FORMAT_VERSION,
                        "n": n[j][cohort],
                        "e": e[j][cohort],
                        "hi": bl[lo:hi],
                        "hc": cl[lo:hi],
                    }
                )
            out.append((docs[0], docs[1]))
        return out

    def _encode_dirty(self) -> None:
        """Encode every changed cell's row at once: the sparse, delta-coded histograms of all
        of them in one vectorised pass, one ``orjson.dumps`` per row."""
        cells = np.flatnonzero(self._dirty)
        self._dirty[:] = False
        bucket, count, bounds_a = self._gather(cells)
        starts = bounds_a[:-1]
        prev = np.empty_like(bucket)
        prev[1:] = bucket[:-1]
        prev[starts[bounds_a[1:] > starts]] = 0  # each histogram's first bucket as itself
        flat = np.empty(2 * bucket.size, dtype=np.int64)
        flat[0::2] = bucket - prev
        flat[1::2] = count
        values = flat.tolist()
        bounds = (2 * bounds_a).tolist()
        n, e = self._n[cells].tolist(), self._e[cells].tolist()
        ks, ss, labels = self._ck[cells].tolist(), self._cs[cells].tolist(), list(self._sids)
        for j, c in enumerate(cells.tolist()):
            nj, ej = n[j], e[j]
            row = [
                ks[j],
                labels[ss[j]],
                nj[CANARY],
                ej[CANARY],
                nj[BASELINE],
                ej[BASELINE],
                values[bounds[2 * j] : bounds[2 * j + 1]],
                values[bounds[2 * j + 1] : bounds[2 * j + 2]],
            ]
            # orjson's output keeps its ~4 KB initial buffer: a row kept from flush to flush
            # (thousands at 1,000 bakes) is copied to its own size.
            self._rows[c] = memoryview(orjson.dumps(row)).tobytes()
        self.encoded += cells.size
        self.reused -= cells.size  # counted again as reused when joined
