"""Mergeable per-cohort summaries: request and error counts plus a log-bucket latency histogram.

The histogram uses the DDSketch mapping (Masson, Rim & Lee, VLDB 2019) with relative accuracy
``RELATIVE_ACCURACY`` = 1 %: bucket ``k`` holds latencies in ``(γ^(k-1), γ^k]`` with
``γ = (1 + ε) / (1 - ε)``, and reporting ``2γ^k / (γ + 1)`` for a bucket is within ε of every
value in it. The bucket array is dense and fixed (10 µs … 1 h plus an under- and an overflow
bucket), so merging two summaries is element-wise addition and is exact, subtraction gives the
increment between two cumulative summaries, and "requests slower than a bucket edge" is an exact
count.

>>> import numpy as np
>>> s = CohortSummary()
>>> s.update(np.array([0.010, 0.020, 0.030, 1.5]), np.array([False, False, True, False]))
>>> s.requests, s.errors
(4, 1)
>>> round(s.quantile(0.5), 4)
0.02
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from detectors.errors import ParameterError, StateError

__all__ = [
    "GAMMA",
    "MAX_LATENCY_S",
    "MIN_LATENCY_S",
    "NUM_BUCKETS",
    "RELATIVE_ACCURACY",
    "SUMMARY_FORMAT_VERSION",
    "CohortSummary",
    "add_segment_counts",
    "bucket_index",
    "bucket_upper_edge_s",
    "bucket_value_s",
]

RELATIVE_ACCURACY = 0.01
GAMMA = (1.0 + RELATIVE_ACCURACY) / (1.0 - RELATIVE_ACCURACY)
_LOG_GAMMA = math.log(GAMMA)
MIN_LATENCY_S = 1e-5
MAX_LATENCY_S = 3600.0
_KEY_MIN = math.ceil(math.log(MIN_LATENCY_S) / _LOG_GAMMA)
_KEY_MAX = math.ceil(math.log(MAX_LATENCY_S) / _LOG_GAMMA)
# index 0 = underflow (<= γ^(KEY_MIN-1)), 1..K = keys KEY_MIN..KEY_MAX, K+1 = overflow.
NUM_BUCKETS = _KEY_MAX - _KEY_MIN + 3
SUMMARY_FORMAT_VERSION = 1
# Segment dimensions (zone, route, host) keep at most this many distinct values; the rest are
# folded into OTHER_SEGMENT so a summary stays O(buckets) whatever the traffic.
MAX_SEGMENT_VALUES = 256
# A histogram with at most this many nonzero buckets is held as a dict (see CohortSummary).
SPARSE_MAX_BUCKETS = 48
OTHER_SEGMENT = "__other__"

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]


def bucket_index(latency_s: npt.ArrayLike) -> IntArray:
    """Map latencies in seconds to histogram bucket indices (vectorised)."""
    x = np.asarray(latency_s, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        keys = np.ceil(np.log(x) / _LOG_GAMMA)
    keys = np.nan_to_num(keys, nan=_KEY_MIN - 1, neginf=_KEY_MIN - 1, posinf=_KEY_MAX + 1)
    idx: IntArray = np.clip(keys - (_KEY_MIN - 1), 0, NUM_BUCKETS - 1).astype(np.int64)
    return idx


def bucket_upper_edge_s(index: int) -> float:
    """Upper edge of bucket ``index``: every latency in it is ``<=`` this value."""
    if index >= NUM_BUCKETS - 1:
        return math.inf
    return float(GAMMA ** (index + _KEY_MIN - 1))


def bucket_value_s(index: int) -> float:
    """Representative latency of bucket ``index`` (within ``RELATIVE_ACCURACY`` of its contents)."""
    if index <= 0:
        return MIN_LATENCY_S
    if index >= NUM_BUCKETS - 1:
        return MAX_LATENCY_S
    return float(2.0 * GAMMA ** (index + _KEY_MIN - 1) / (GAMMA + 1.0))


class CohortSummary:
    """Request count, error count and latency histogram of one cohort; merge is addition.

    Parameters
    ----------
    requests, errors
        Initial counts (normally 0).
    hist
        Initial bucket counts, length ``NUM_BUCKETS`` (copied).
    segments
        Optional per-dimension value counts, e.g. ``{"zone": {"eu-west-1a": 12}}``.
    """

    __slots__ = ("_dense", "_sparse", "errors", "requests", "segments")

    def __init__(
        self,
        requests: int = 0,
        errors: int = 0,
        hist: npt.ArrayLike | None = None,
        segments: Mapping[str, Mapping[str, int]] | None = None,
    ) -> None:
        _check_counts(requests, errors)
        self.requests = int(requests)
        self.errors = int(errors)
        # The histogram is held one of two ways: a dict bucket → count while it has at most
        # SPARSE_MAX_BUCKETS buckets (a window cell of a small service: a few requests), else
        # the dense array; ``hist`` turns it dense for good, ``buckets`` reads either.
        self._sparse: dict[int, int] | None = None
        self._dense: IntArray | None = None
        if hist is None:
            self._sparse = {}
        else:
            h = np.array(hist, dtype=np.int64)
            if h.shape != (NUM_BUCKETS,):
                msg = f"hist must have shape ({NUM_BUCKETS},), got {h.shape}"
                raise ParameterError(msg, value=h.shape)
            self._dense = h
        self.segments: dict[str, dict[str, int]] = {
            dim: dict(vals) for dim, vals in (segments or {}).items()
        }

    @classmethod
    def _of(
        cls, requests: int, errors: int, hist: IntArray | None, sparse: dict[int, int] | None
    ) -> CohortSummary:
        """A summary that takes ``hist`` or ``sparse`` (owned, valid) without checks or a copy:
        the hot path of :meth:`from_groups`, thousands per batch when many bakes are active."""
        s = cls.__new__(cls)
        s.requests, s.errors, s._dense, s._sparse, s.segments = requests, errors, hist, sparse, {}
        return s

    @classmethod
    def from_buckets(
        cls, requests: int, errors: int, buckets: Sequence[int], counts: Sequence[int]
    ) -> CohortSummary:
        """A summary from its nonzero ``buckets`` (distinct, in range) and their ``counts``,
        sparse while they are few: how partials and states are read back."""
        _check_counts(requests, errors)
        if len(buckets) <= SPARSE_MAX_BUCKETS:
            return cls._of(requests, errors, None, dict(zip(buckets, counts, strict=True)))
        hist = np.zeros(NUM_BUCKETS, dtype=np.int64)
        hist[np.asarray(buckets, dtype=np.int64)] = counts
        return cls._of(requests, errors, hist, None)

    @property
    def hist(self) -> IntArray:
        """Bucket counts, length ``NUM_BUCKETS`` (dense from now on)."""
        d = self._dense
        if d is None:
            d = np.zeros(NUM_BUCKETS, dtype=np.int64)
            sp = self._sparse
            if sp:
                d[list(sp)] = list(sp.values())
            self._dense, self._sparse = d, None
        return d

    @hist.setter
    def hist(self, value: IntArray) -> None:
        self._dense, self._sparse = value, None

    def buckets(self) -> tuple[list[int], list[int]]:
        """The nonzero buckets in increasing order and their counts (without densifying)."""
        sp = self._sparse
        if sp is not None:
            keys = sorted(k for k, c in sp.items() if c)
            return keys, [sp[k] for k in keys]
        d = self.hist
        nz = np.flatnonzero(d)
        return nz.tolist(), d[nz].tolist()

    # -- building from a batch -------------------------------------------------------------
    @classmethod
    def from_groups(
        cls,
        group: npt.ArrayLike,
        n_groups: int,
        latency_s: npt.ArrayLike,
        error: npt.ArrayLike,
        segments: Mapping[str, tuple[npt.ArrayLike, Sequence[str]]] | None = None,
    ) -> list[CohortSummary]:
        """One summary per group of a batch of requests, for groups ``0 .. n_groups - 1``.

        ``group[i]`` is request ``i``'s group; ``segments`` maps a dimension to
        ``(codes, categories)`` with ``categories[codes[i]]`` request ``i``'s value, where ``""``
        means absent and is not counted. Each column is one ``np.bincount`` over group-major
        keys, so there is no per-request Python work. This is the one place summaries are built
        from requests; :meth:`update` and the monitor's tagging both use it.
        """
        g = np.asarray(group, dtype=np.int64)
        lat = np.asarray(latency_s, dtype=np.float64)
        err = np.asarray(error, dtype=bool)
        if not (g.shape == lat.shape == err.shape and g.ndim == 1):
            shapes = f"{g.shape}, {lat.shape}, {err.shape}"
            msg = f"group, latency_s and error must be 1-d of one length, got {shapes}"
            raise ParameterError(msg, value=(g.shape, lat.shape, err.shape))
        if n_groups < 0:
            msg = f"n_groups must be >= 0, got {n_groups}"
            raise ParameterError(msg, value=n_groups)
        if g.size and (int(g.min()) < 0 or int(g.max()) >= n_groups):
            msg = f"group codes must be in [0, {n_groups}), got {g.min()}..{g.max()}"
            raise ParameterError(msg, value=(int(g.min()), int(g.max())))
        # One sorted pass over (group, bucket) keys: each group's buckets are a slice, held
        # sparse when few (no dense row per group: at a thousand bakes most have a few requests).
        keys, counts = np.unique(g * NUM_BUCKETS + bucket_index(lat), return_counts=True)
        key_group, key_bucket = np.divmod(keys, NUM_BUCKETS)
        bounds = np.searchsorted(key_group, np.arange(n_groups + 1)).tolist()
        buckets_l, counts_l = key_bucket.tolist(), counts.tolist()
        requests = np.bincount(g, minlength=n_groups)
        errors = np.bincount(g, weights=err.astype(np.float64), minlength=n_groups)
        seg_counts = {
            dim: (_group_counts(g, n_groups, codes, len(cats)), cats)
            for dim, (codes, cats) in (segments or {}).items()
        }
        out: list[CohortSummary] = []
        totals = zip(requests.tolist(), np.rint(errors).astype(np.int64).tolist(), strict=True)
        for j, (n, e) in enumerate(totals):
            lo, hi = bounds[j], bounds[j + 1]
            if hi - lo <= SPARSE_MAX_BUCKETS:
                s = cls._of(n, e, None, dict(zip(buckets_l[lo:hi], counts_l[lo:hi], strict=True)))
            else:
                h = np.zeros(NUM_BUCKETS, dtype=np.int64)
                h[key_bucket[lo:hi]] = counts[lo:hi]
                s = cls._of(n, e, h, None)
            for dim, (seg, cats) in seg_counts.items():
                nz = np.flatnonzero(seg[j]).tolist()
                s.add_segment_counts(dim, {cats[c]: int(seg[j, c]) for c in nz if cats[c] != ""})
            out.append(s)
        return out

    # -- updates ---------------------------------------------------------------------------
    def update(
        self,
        latency_s: npt.ArrayLike,
        error: npt.ArrayLike,
        segments: Mapping[str, npt.ArrayLike] | None = None,
    ) -> None:
        """Add a batch of requests given as arrays of latencies (seconds) and error flags.

        ``segments`` maps a dimension to the requests' values (``""`` = absent, not counted).
        """
        lat = np.asarray(latency_s, dtype=np.float64)
        err = np.asarray(error, dtype=bool)
        if lat.shape != err.shape:
            msg = f"latency_s and error must have the same shape, got {lat.shape} and {err.shape}"
            raise ParameterError(msg, value=(lat.shape, err.shape))
        coded: dict[str, tuple[npt.ArrayLike, Sequence[str]]] = {}
        for dim, values in (segments or {}).items():
            cats, codes = np.unique(np.asarray(values).astype(str), return_inverse=True)
            coded[dim] = (codes.ravel(), cats.tolist())
        group = np.zeros(lat.size, dtype=np.int64)
        (batch,) = CohortSummary.from_groups(group, 1, lat.ravel(), err.ravel(), coded)
        self.merge(batch)

    def add_segment_counts(self, dim: str, counts: Mapping[str, int]) -> None:
        """Add per-value request counts for one segment dimension (bounded, see module doc)."""
        add_segment_counts(self.segments.setdefault(dim, {}), counts)

    # -- algebra ---------------------------------------------------------------------------
    def copy(self) -> CohortSummary:
        """An independent copy."""
        out = CohortSummary._of(
            self.requests,
            self.errors,
            None if self._dense is None else self._dense.copy(),
            None if self._sparse is None else dict(self._sparse),
        )
        out.segments = {dim: dict(vals) for dim, vals in self.segments.items()}
        return out

    def merge(self, other: CohortSummary) -> None:
        """Add ``other`` into this summary in place (exact)."""
        self.requests += other.requests
        self.errors += other.errors
        theirs = other._sparse
        if theirs is None:
            self.hist += other.hist
        elif theirs:
            mine = self._sparse
            if mine is None:
                d = self.hist
                d[list(theirs)] += list(theirs.values())  # distinct keys: fancy += is exact
            else:
                for k, c in theirs.items():
                    mine[k] = mine.get(k, 0) + c
                if len(mine) > SPARSE_MAX_BUCKETS:
                    self.hist  # noqa: B018  (turns dense)
        for dim, counts in other.segments.items():
            self.add_segment_counts(dim, counts)

    def __add__(self, other: CohortSummary) -> CohortSummary:
        out = self.copy()
        out.merge(other)
        return out

    def __sub__(self, other: CohortSummary) -> CohortSummary:
        """The increment ``self - other`` where ``other`` is an earlier state of ``self``."""
        msg = "cannot subtract a summary that is not contained in this one"
        if other.requests > self.requests or other.errors > self.errors:
            raise ParameterError(msg)
        mine, theirs = self._sparse, other._sparse
        if mine is not None and theirs is not None:  # both few buckets: no dense arrays
            sparse = dict(mine)
            for k, c in theirs.items():
                left = sparse.get(k, 0) - c
                if left < 0:
                    raise ParameterError(msg)
                sparse[k] = left
            out = CohortSummary._of(
                self.requests - other.requests,
                self.errors - other.errors,
                None,
                {k: c for k, c in sparse.items() if c},
            )
            out.segments = _segment_difference(self.segments, other.segments)
            return out
        hist = self.hist - other.hist
        if np.any(hist < 0):
            raise ParameterError(msg)
        return CohortSummary(
            self.requests - other.requests,
            self.errors - other.errors,
            hist,
            _segment_difference(self.segments, other.segments),
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CohortSummary):
            return NotImplemented
        return (
            self.requests == other.requests
            and self.errors == other.errors
            and self.buckets() == other.buckets()
            and self.segments == other.segments
        )

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"CohortSummary(requests={self.requests}, errors={self.errors})"

    # -- read-outs -------------------------------------------------------------------------
    @property
    def error_rate(self) -> float | None:
        """Errors per request, or None without requests."""
        return self.errors / self.requests if self.requests else None

    def quantile(self, q: float) -> float | None:
        """The ``q``-quantile of latency in seconds (rank ``q (n-1)``), or None when empty."""
        if not 0.0 <= q <= 1.0:
            msg = f"q must be in [0, 1], got {q}"
            raise ParameterError(msg, value=q)
        n = int(self.hist.sum())
        if n == 0:
            return None
        rank = math.floor(q * (n - 1))
        idx = int(np.searchsorted(np.cumsum(self.hist), rank, side="right"))
        return bucket_value_s(idx)

    def quantile_bucket(self, q: float) -> int | None:
        """Index of the bucket holding the ``q``-quantile, or None when empty."""
        n = int(self.hist.sum())
        if n == 0:
            return None
        rank = math.floor(q * (n - 1))
        return int(np.searchsorted(np.cumsum(self.hist), rank, side="right"))

    def count_above(self, index: int) -> int:
        """Exact number of requests slower than the upper edge of bucket ``index``."""
        return int(self.hist[index + 1 :].sum())

    # -- serialization ---------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """A compact, versioned, JSON-able form (sparse histogram)."""
        idx, cnt = self.buckets()
        return {
            "v": SUMMARY_FORMAT_VERSION,
            "n": self.requests,
            "e": self.errors,
            "hi": idx,
            "hc": cnt,
            "s": self.segments,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CohortSummary:
        """Rebuild a summary written by :meth:`to_dict`; raises StateError on a bad document."""
        version = data.get("v")
        if version != SUMMARY_FORMAT_VERSION:
            msg = f"unsupported summary format version {version!r}"
            raise StateError(msg, value=version)
        try:
            hi, hc = data["hi"], data["hc"]
            requests, errors = int(data["n"]), int(data["e"])
            segments = data.get("s") or {}
        except (KeyError, TypeError, ValueError) as exc:
            msg = f"malformed summary document: {exc}"
            raise StateError(msg, value=data) from exc
        if not (isinstance(hi, list) and isinstance(hc, list) and len(hi) == len(hc)):
            msg = "malformed summary document: histogram indices and counts must be lists of one length"
            raise StateError(msg, value=data)
        if not set(map(type, hi)) | set(map(type, hc)) <= {int}:
            msg = "malformed summary document: histogram indices and counts must be integers"
            raise StateError(msg, value=data)
        if hi and (min(hi) < 0 or max(hi) >= NUM_BUCKETS):
            msg = "malformed summary document: histogram indices out of range"
            raise StateError(msg, value=hi)
        if hc and min(hc) < 0:
            msg = "malformed summary document: negative histogram count"
            raise StateError(msg, value=hc)
        if len(set(hi)) != len(hi):
            msg = "malformed summary document: a histogram index repeats"
            raise StateError(msg, value=hi)
        try:
            out = cls.from_buckets(requests, errors, hi, hc)
        except ParameterError as exc:
            msg = f"malformed summary document: {exc}"
            raise StateError(msg, value=(requests, errors)) from exc
        out.segments = {str(dim): dict(vals) for dim, vals in dict(segments).items()}
        return out


def add_segment_counts(table: dict[str, int], counts: Mapping[str, int]) -> None:
    """Add per-value request counts into one dimension's ``table``, in place: a value new to a
    table that already holds ``MAX_SEGMENT_VALUES`` goes to ``OTHER_SEGMENT``."""
    for value, c in counts.items():
        key = value
        if key not in table and len(table) >= MAX_SEGMENT_VALUES:
            key = OTHER_SEGMENT
        table[key] = table.get(key, 0) + int(c)


def _check_counts(requests: int, errors: int) -> None:
    if requests < 0 or errors < 0:
        msg = f"counts must be >= 0, got requests={requests}, errors={errors}"
        raise ParameterError(msg, value=(requests, errors))
    if errors > requests:
        msg = f"errors must be <= requests, got errors={errors} > requests={requests}"
        raise ParameterError(msg, value=(errors, requests))


def _segment_difference(
    new: Mapping[str, Mapping[str, int]], old: Mapping[str, Mapping[str, int]]
) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for dim, counts in new.items():
        prev = old.get(dim, {})
        diff = {v: c - prev.get(v, 0) for v, c in counts.items() if c - prev.get(v, 0)}
        if diff:
            out[dim] = diff
    return out


def _group_counts(group: IntArray, n_groups: int, codes: npt.ArrayLike, k: int) -> IntArray:
    """``counts[j, c]``: requests of group ``j`` whose segment code is ``c`` (of ``k``)."""
    c = np.asarray(codes, dtype=np.int64)
    if c.shape != group.shape:
        msg = f"segment codes must have the requests' shape {group.shape}, got {c.shape}"
        raise ParameterError(msg, value=c.shape)
    counts: IntArray = np.bincount(group * k + c, minlength=n_groups * k).reshape(n_groups, k)
    return counts
