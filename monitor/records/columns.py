"""The columnar result of decoding a batch of request logs.

:class:`RecordBatch` holds one numpy column per field for the accepted rows, string fields as
:class:`Categorical` columns (codes + categories), so no per-record Python objects survive a
batch; :class:`Rejection` describes one record that could not be decoded.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = ["Categorical", "DecodeResult", "RecordBatch", "Rejection", "concat_batches"]

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
Int32Array = npt.NDArray[np.int32]
Int64Array = npt.NDArray[np.int64]


@dataclass(frozen=True, eq=False)
class Categorical:
    """A string column: ``categories[codes[i]]`` is row ``i``'s value ("" = absent)."""

    codes: Int32Array
    categories: tuple[str, ...]

    @classmethod
    def from_values(cls, values: Iterable[str]) -> Categorical:
        """Encode strings, with sorted categories."""
        vals = list(values)
        cats = sorted(set(vals))
        lookup = {c: i for i, c in enumerate(cats)}
        codes = np.fromiter(map(lookup.__getitem__, vals), np.int32, len(vals))
        return cls(codes, tuple(cats))

    def code(self, value: str) -> int:
        """The code of ``value``, or -1 when no row can hold it."""
        try:
            return self.categories.index(value)
        except ValueError:
            return -1

    def isin(self, values: Iterable[str]) -> BoolArray:
        """Mask of the rows whose value is one of ``values``."""
        targets = set(values)
        wanted = [i for i, c in enumerate(self.categories) if c in targets]
        return np.isin(self.codes, np.asarray(wanted, dtype=np.int32))

    def values(self) -> npt.NDArray[np.object_]:
        """The column as an object array of str (for tests and debugging, not the hot path)."""
        return np.asarray(self.categories, dtype=object)[self.codes]

    def take(self, sel: npt.ArrayLike) -> Categorical:
        """Rows selected by a boolean mask or an index array (categories unchanged)."""
        return Categorical(self.codes[np.asarray(sel)], self.categories)


@dataclass(frozen=True, eq=False)
class RecordBatch:
    """The accepted rows of a decoded batch, one numpy column per field.

    ``index`` gives each row's position in the input sequence (to map rows back to offsets).
    ``status`` is -1 where the record had none (an explicit error flag decided). ``cohort`` and
    ``bake`` are None when the field map has no such field.
    """

    index: Int64Array
    time_s: FloatArray
    latency_s: FloatArray
    error: BoolArray
    status: Int32Array
    service: Categorical
    version: Categorical
    cohort: Categorical | None
    bake: Categorical | None
    segments: dict[str, Categorical]

    @property
    def n(self) -> int:
        """Number of rows."""
        return len(self.index)

    def take(self, sel: npt.ArrayLike) -> RecordBatch:
        """Sub-batch of the rows selected by a boolean mask or an index array."""
        s = np.asarray(sel)
        return RecordBatch(
            index=self.index[s],
            time_s=self.time_s[s],
            latency_s=self.latency_s[s],
            error=self.error[s],
            status=self.status[s],
            service=self.service.take(s),
            version=self.version.take(s),
            cohort=None if self.cohort is None else self.cohort.take(s),
            bake=None if self.bake is None else self.bake.take(s),
            segments={k: v.take(s) for k, v in self.segments.items()},
        )


def _concat_categorical(cols: list[Categorical | None], sizes: list[int]) -> Categorical:
    """One categorical of the given columns' rows (a missing column: absent values), with
    sorted categories: each column's codes remapped through a small lookup array."""
    cats = sorted({c for col in cols if col is not None for c in col.categories})
    if any(col is None or not col.categories for col in cols) and "" not in cats:
        cats.insert(0, "")  # sorts first
    lookup = {c: i for i, c in enumerate(cats)}
    parts = []
    for col, n in zip(cols, sizes, strict=True):
        if col is None or not col.categories:
            parts.append(np.full(n, lookup[""], dtype=np.int32))
        else:
            remap = np.fromiter(map(lookup.__getitem__, col.categories), np.int32)
            parts.append(remap[col.codes])
    return Categorical(np.concatenate(parts) if parts else np.zeros(0, np.int32), tuple(cats))


def concat_batches(batches: Sequence[RecordBatch]) -> RecordBatch:
    """The rows of ``batches`` in order as one batch: ``index`` runs over the result, string
    columns get the union of the categories. Summaries of the result equal the sum of the
    batches' (ingest groups a flush's batches once instead of each batch per bake)."""
    if len(batches) == 1:
        return batches[0]
    sizes = [b.n for b in batches]
    dims = sorted({d for b in batches for d in b.segments})

    def optional(name: str) -> Categorical | None:
        cols = [getattr(b, name) for b in batches]
        return None if all(c is None for c in cols) else _concat_categorical(cols, sizes)

    return RecordBatch(
        index=np.arange(sum(sizes), dtype=np.int64),
        time_s=np.concatenate([b.time_s for b in batches]),
        latency_s=np.concatenate([b.latency_s for b in batches]),
        error=np.concatenate([b.error for b in batches]),
        status=np.concatenate([b.status for b in batches]),
        service=_concat_categorical([b.service for b in batches], sizes),
        version=_concat_categorical([b.version for b in batches], sizes),
        cohort=optional("cohort"),
        bake=optional("bake"),
        segments={
            d: _concat_categorical([b.segments.get(d) for b in batches], sizes) for d in dims
        },
    )


@dataclass(frozen=True)
class Rejection:
    """One input message that could not be decoded.

    ``reason`` is one of :data:`monitor.records.REJECTION_REASONS`; ``detail`` says what was wrong for humans.
    """

    index: int
    reason: str
    raw: bytes
    detail: str = ""


@dataclass(frozen=True, eq=False)
class DecodeResult:
    """Accepted rows, rejections in input order, and rejection counts by reason (non-zero only)."""

    batch: RecordBatch
    rejections: list[Rejection]
    rejected_by_reason: dict[str, int]
