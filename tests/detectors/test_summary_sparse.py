"""A summary's histogram held sparse (few buckets) or dense gives the same summary: merges,
copies, differences, serialisation and read-outs agree whatever the mix of forms."""

from __future__ import annotations

import numpy as np
import pytest

from detectors.errors import ParameterError
from detectors.summary import NUM_BUCKETS, SPARSE_MAX_BUCKETS, CohortSummary


def _pair(rng: np.random.Generator, n: int) -> tuple[CohortSummary, CohortSummary]:
    """The same requests as a summary built by ``update`` (sparse while few buckets) and one
    given its dense histogram."""
    s = CohortSummary()
    s.update(rng.lognormal(-3.0, rng.uniform(0.05, 2.0), n), rng.random(n) < 0.05)
    idx, cnt = s.buckets()  # read without making ``s`` dense
    h = np.zeros(NUM_BUCKETS, dtype=np.int64)
    h[idx] = cnt
    return s, CohortSummary(s.requests, s.errors, h)


def test_sparse_and_dense_forms_agree_through_random_merges() -> None:
    rng = np.random.default_rng(7)
    forms = 0
    for _ in range(300):
        acc_sparse, acc_dense = CohortSummary(), CohortSummary(hist=np.zeros(NUM_BUCKETS))
        for _ in range(int(rng.integers(1, 12))):
            a, b = _pair(rng, int(rng.integers(0, 60)))
            forms += a._sparse is not None
            acc_sparse.merge(a if rng.random() < 0.5 else b)
            acc_dense.merge(b if rng.random() < 0.5 else a)
        assert acc_sparse == acc_dense
        assert acc_sparse.to_dict() == acc_dense.to_dict()
        assert CohortSummary.from_dict(acc_sparse.to_dict()) == acc_dense
        assert acc_sparse.copy() == acc_dense.copy()
        for q in (0.0, 0.5, 0.99, 1.0):
            assert acc_sparse.quantile(q) == acc_dense.quantile(q)
        assert acc_sparse.buckets() == acc_dense.buckets()
        # A later state minus an earlier one: the same increment from either form.
        a, b = _pair(rng, int(rng.integers(0, 30)))
        later = acc_sparse.copy()
        later.merge(a)
        assert later - acc_sparse == b
        assert later - acc_dense == b
        if acc_sparse.requests:
            with pytest.raises(ParameterError):
                _ = acc_sparse - later if a.requests else acc_sparse - (later + acc_sparse)
        idx, cnt = acc_sparse.buckets()
        rebuilt = CohortSummary.from_buckets(acc_sparse.requests, acc_sparse.errors, idx, cnt)
        assert rebuilt == acc_dense
        np.testing.assert_array_equal(acc_sparse.hist, acc_dense.hist)
    assert forms > 100  # the sparse form was exercised, not only the dense one


def test_a_sparse_summary_turns_dense_past_its_bucket_limit_and_stays_exact() -> None:
    rng = np.random.default_rng(8)
    s = CohortSummary()
    dense = np.zeros(NUM_BUCKETS, dtype=np.int64)
    for _ in range(40):
        part = CohortSummary()
        lat = rng.lognormal(-3.0, 1.5, 5)
        part.update(lat, np.zeros(5, bool))
        dense += part.hist.copy()
        s.merge(part)
    assert s._sparse is None and len(s.buckets()[0]) > SPARSE_MAX_BUCKETS
    np.testing.assert_array_equal(s.hist, dense)
    copy = s.copy()
    copy.merge(s)
    np.testing.assert_array_equal(copy.hist, 2 * dense)
    np.testing.assert_array_equal(s.hist, dense)  # the copy is independent
