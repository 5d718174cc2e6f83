"""The columnar result of decoding a batch of request logs.

:class:`RecordBatch` holds one numpy column per field for the accepted rows, string fields as
:class:`Categorical` columns (codes + categories), so no per-record Python objects survive a
batch; :class:`Rejection` describes one record that could not be decoded.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = ["Categorical", "DecodeResult", "RecordBatch", "Rejection"]

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
