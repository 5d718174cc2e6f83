"""Tests of the mergeable cohort summary and its log-bucket histogram."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from detectors.summary import (
    NUM_BUCKETS,
    RELATIVE_ACCURACY,
    CohortSummary,
    bucket_index,
    bucket_upper_edge_s,
    bucket_value_s,
)


def _random_summary(
    rng: np.random.Generator, n: int
) -> tuple[CohortSummary, np.ndarray, np.ndarray]:
    lat = rng.lognormal(-3.0, 1.2, n)
    err = rng.random(n) < 0.03
    s = CohortSummary()
    zones = rng.choice(["a", "b", "c"], n)
    s.update(lat, err, {"zone": zones})
    return s, lat, err


def test_merge_of_shards_equals_summary_of_union() -> None:
    """Summaries of random shards, merged in any order, equal the summary of all records."""
    rng = np.random.default_rng(7)
    lat = rng.lognormal(-2.5, 1.5, 50_000)
    err = rng.random(lat.size) < 0.02
    zones = rng.choice(["z1", "z2", "z3", "z4"], lat.size)
    whole = CohortSummary()
    whole.update(lat, err, {"zone": zones})
    for trial in range(20):
        cuts = np.sort(rng.choice(np.arange(1, lat.size), size=rng.integers(1, 30), replace=False))
        shards = []
        for part in np.split(np.arange(lat.size), cuts):
            s = CohortSummary()
            s.update(lat[part], err[part], {"zone": zones[part]})
            shards.append(s)
        order = rng.permutation(len(shards))
        merged = CohortSummary()
        for i in order:
            merged.merge(shards[i])
        assert merged == whole, f"trial {trial}"


def test_quantiles_within_relative_accuracy_of_numpy() -> None:
    """Histogram quantiles are within 1 % of numpy's (rank-floor) quantile across shapes."""
    rng = np.random.default_rng(11)
    samples = [
        rng.lognormal(-3.0, 0.5, 20_000),
        rng.lognormal(-1.0, 1.5, 20_000),
        rng.exponential(0.05, 20_000) + 1e-4,
        rng.uniform(0.001, 10.0, 20_000),
    ]
    for lat in samples:
        s = CohortSummary()
        s.update(lat, np.zeros(lat.size, dtype=bool))
        for q in (0.0, 0.01, 0.1, 0.5, 0.9, 0.99, 0.999, 1.0):
            want = float(np.quantile(lat, q, method="lower"))
            got = s.quantile(q)
            assert got is not None
            assert abs(got - want) <= RELATIVE_ACCURACY * want * (1 + 1e-9), (q, got, want)


def test_bucket_edges_bracket_values() -> None:
    """Every latency lies in (upper edge of previous bucket, upper edge of its bucket]."""
    rng = np.random.default_rng(3)
    lat = np.exp(rng.uniform(np.log(2e-5), np.log(3000), 100_000))
    idx = bucket_index(lat)
    upper = np.array([bucket_upper_edge_s(int(i)) for i in idx])
    lower = np.array([bucket_upper_edge_s(int(i) - 1) for i in idx])
    assert np.all(lat <= upper * (1 + 1e-12))
    assert np.all(lat > lower * (1 - 1e-12))
    values = np.array([bucket_value_s(int(i)) for i in idx])
    assert np.max(np.abs(values - lat) / lat) <= RELATIVE_ACCURACY + 1e-12


def test_out_of_range_latencies_go_to_under_and_overflow() -> None:
    """Zero, tiny, huge, NaN and inf latencies land in the edge buckets and are still counted."""
    idx = bucket_index(np.array([0.0, 1e-9, 1e6, np.inf, np.nan]))
    assert idx.tolist() == [0, 0, NUM_BUCKETS - 1, NUM_BUCKETS - 1, 0]


def test_count_above_is_exact() -> None:
    """count_above(i) equals the number of latencies above bucket i's upper edge."""
    rng = np.random.default_rng(5)
    s, lat, _ = _random_summary(rng, 30_000)
    for q in (0.5, 0.9, 0.99):
        i = s.quantile_bucket(q)
        assert i is not None
        edge = bucket_upper_edge_s(i)
        assert s.count_above(i) == int(np.sum(bucket_index(lat) > i))
        # and in terms of values (up to float rounding at the edge itself)
        assert abs(s.count_above(i) - int(np.sum(lat > edge))) <= 1


def test_subtraction_gives_the_increment() -> None:
    """(a + b) - a == b, including segment counts."""
    rng = np.random.default_rng(9)
    a, _, _ = _random_summary(rng, 5000)
    b, _, _ = _random_summary(rng, 3000)
    assert (a + b) - a == b


def test_subtracting_a_non_prefix_raises() -> None:
    """Subtracting a summary that is not contained in this one is refused."""
    rng = np.random.default_rng(2)
    a, _, _ = _random_summary(rng, 100)
    b, _, _ = _random_summary(rng, 200)
    with pytest.raises(ValueError, match="cannot subtract"):
        _ = a - b


def test_serialization_round_trip_is_exact() -> None:
    """to_dict/from_dict round-trips exactly, and the sparse form stays small."""
    rng = np.random.default_rng(4)
    s, _, _ = _random_summary(rng, 10_000)
    d = s.to_dict()
    assert CohortSummary.from_dict(d) == s
    assert len(d["hi"]) < NUM_BUCKETS


@pytest.mark.parametrize(
    ("doc", "match"),
    [
        ({"v": 99, "n": 0, "e": 0, "hi": [], "hc": []}, "version"),
        ({"v": 1, "n": 0, "e": 0, "hi": [NUM_BUCKETS], "hc": [1]}, "out of range"),
        ({"v": 1, "n": 0, "e": 0, "hi": [1], "hc": [-1]}, "negative"),
        ({"v": 1, "n": 0, "e": 0}, "malformed"),
    ],
)
def test_bad_documents_are_rejected(doc: dict[str, object], match: str) -> None:
    """A corrupt or foreign summary document raises ValueError with a reason."""
    with pytest.raises(ValueError, match=match):
        CohortSummary.from_dict(doc)


def test_constructor_validates_counts() -> None:
    """Counts are checked at construction, naming the bad values."""
    with pytest.raises(ValueError, match="errors must be <= requests"):
        CohortSummary(requests=1, errors=2)
    with pytest.raises(ValueError, match="hist must have shape"):
        CohortSummary(hist=np.zeros(3))


def test_segment_values_are_bounded() -> None:
    """A segment dimension keeps at most MAX_SEGMENT_VALUES values, folding the rest."""
    from detectors.summary import MAX_SEGMENT_VALUES, OTHER_SEGMENT

    s = CohortSummary()
    hosts = np.array([f"h{i}" for i in range(MAX_SEGMENT_VALUES + 50)])
    s.update(np.full(hosts.size, 0.01), np.zeros(hosts.size, bool), {"host": hosts})
    assert len(s.segments["host"]) == MAX_SEGMENT_VALUES + 1
    assert sum(s.segments["host"].values()) == hosts.size
    assert s.segments["host"][OTHER_SEGMENT] == 50


def test_from_groups_equals_one_update_per_group() -> None:
    """Per-group summaries of a batch equal summaries updated with each group's rows alone."""
    rng = np.random.default_rng(21)
    n, g = 20_000, 5
    group = rng.integers(0, g - 1, n)  # the last group stays empty
    lat = rng.lognormal(-3.0, 1.2, n)
    err = rng.random(n) < 0.04
    cats = ["", "z1", "z2", "z3"]
    codes = rng.integers(0, len(cats), n)
    got = CohortSummary.from_groups(group, g, lat, err, {"zone": (codes, cats)})
    assert len(got) == g
    for j in range(g):
        m = group == j
        want = CohortSummary()
        want.update(lat[m], err[m], {"zone": np.array(cats)[codes[m]]})
        assert got[j] == want
        assert "" not in got[j].segments["zone"]
    assert got[-1] == CohortSummary(segments={"zone": {}})
    assert sum(s.requests for s in got) == n


def test_absent_segment_values_are_not_counted() -> None:
    """A segment value "" means absent: it is not a value of the dimension."""
    s = CohortSummary()
    s.update(np.full(4, 0.01), np.zeros(4, bool), {"zone": np.array(["", "a", "", "a"])})
    assert s.segments == {"zone": {"a": 2}}


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (([0, 1], 2, [0.1], [False]), "must be 1-d of one length"),
        (([0, 2], 2, [0.1, 0.1], [False, False]), r"group codes must be in \[0, 2\), got 0..2"),
        (([0, -1], 2, [0.1, 0.1], [False, False]), r"group codes must be in \[0, 2\)"),
        (([], -1, [], []), "n_groups must be >= 0, got -1"),
    ],
)
def test_from_groups_rejects_inconsistent_columns(args: tuple[object, ...], match: str) -> None:
    """Columns of different lengths or group codes out of range raise ParameterError."""
    from detectors.errors import ParameterError

    with pytest.raises(ParameterError, match=match):
        CohortSummary.from_groups(*args)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("hist", "reason"),
    [
        ({"hi": [1, 2], "hc": [1]}, "lists of one length"),
        ({"hi": (1,), "hc": (1,)}, "lists of one length"),
        ({"hi": [1.5], "hc": [1]}, "must be integers"),
        ({"hi": [1], "hc": ["2"]}, "must be integers"),
        ({"hi": [True], "hc": [1]}, "must be integers"),
        ({"hi": [-1], "hc": [1]}, "out of range"),
        ({"hi": [NUM_BUCKETS], "hc": [1]}, "out of range"),
        ({"hi": [3], "hc": [-1]}, "negative histogram count"),
        ({"hi": [3, 3], "hc": [1, 1]}, "repeats"),
    ],
)
def test_a_malformed_summary_document_is_rejected_with_its_reason(
    hist: dict[str, object], reason: str
) -> None:
    from detectors.errors import StateError

    doc = {"v": 1, "n": 2, "e": 0, "s": {}, **hist}
    with pytest.raises(StateError, match=reason):
        CohortSummary.from_dict(doc)


def test_a_summary_document_round_trips_sparse_and_dense() -> None:
    rng = np.random.default_rng(2)
    for n_buckets in (0, 3, 40, 300):
        hist = np.zeros(NUM_BUCKETS, dtype=np.int64)
        hist[rng.choice(NUM_BUCKETS, n_buckets, replace=False)] = rng.integers(1, 9, n_buckets)
        s = CohortSummary(int(hist.sum()), 0, hist)
        s.add_segment_counts("zone", {"a": 1})
        back = CohortSummary.from_dict(orjson.loads(orjson.dumps(s.to_dict())))
        assert back == s and np.array_equal(back.hist, hist)
