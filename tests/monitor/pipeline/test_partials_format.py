"""The partials wire format: format 3 (sparse cell rows) round trips exactly, ingest's
array-held cells write what the summary objects would (rows reused only while unchanged),
and partials of formats 1 and 2 written by earlier versions still decode to the same
summaries."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
import pytest
from _memory_pipeline import drain, ingest, new_broker, produce, request_log

from detectors.summary import NUM_BUCKETS, CohortSummary
from monitor.pipeline.cells import BlockCells
from monitor.pipeline.partials import (
    BUNDLE_FORMAT_VERSION,
    PARTIAL_FORMAT_VERSION,
    BlockFold,
    Bundle,
    CellPairs,
    Clock,
    Partial,
    PartialError,
    _encode_cells,
    decode_message,
    partials_in,
)


def _summary(rng: np.random.Generator) -> CohortSummary:
    """A random summary: empty, a few buckets (often the edge buckets), or dense."""
    hist = np.zeros(NUM_BUCKETS, dtype=np.int64)
    shape = rng.integers(0, 4)
    if shape == 1:
        idx = rng.choice(NUM_BUCKETS, size=int(rng.integers(1, 12)), replace=False)
        hist[idx] = rng.integers(1, 50, idx.size)
    elif shape == 2:
        hist[[0, NUM_BUCKETS - 1]] = rng.integers(1, 2**40, 2)
    elif shape == 3:
        hist[:] = rng.integers(0, 3, NUM_BUCKETS)
    n = int(hist.sum())
    return CohortSummary(n, int(rng.integers(0, n + 1)), hist)


def _cells(rng: np.random.Generator, m: int) -> CellPairs:
    keys = {
        (int(rng.integers(-3, 10**9)), f"zone=z{rng.integers(0, 5)}|route=/r{rng.integers(0, 3)}")
        for _ in range(m)
    }
    return {k: (_summary(rng), _summary(rng)) for k in sorted(keys)}


def _partial(cells: CellPairs, rng: np.random.Generator, **kw: Any) -> Partial:
    fields: dict[str, Any] = {
        "bake": "checkout-v42",
        "topic": "requests",
        "partition": 3,
        "block": 7,
        "upto": 350_123,
        "complete": False,
        "canary": _summary(rng),
        "baseline": _summary(rng),
        "max_event_time_s": 1_795_824_012.5,
        "cells": cells,
        "progress_s": 1_795_824_011.0,
        "idle": False,
        "source_partitions": 4,
    }
    return Partial(**{**fields, **kw})


def _assert_same(a: CellPairs, b: CellPairs) -> None:
    assert a.keys() == b.keys()
    for key, pair in a.items():
        for x, y in zip(pair, b[key], strict=True):
            assert (x.requests, x.errors) == (y.requests, y.errors)
            assert y.hist.dtype == np.int64 and y.hist.shape == (NUM_BUCKETS,)
            assert np.array_equal(x.hist, y.hist)
            assert int(y.hist.sum()) == int(x.hist.sum())


@pytest.mark.parametrize("seed", range(40))
def test_format3_round_trip_is_exact(seed: int) -> None:
    rng = np.random.default_rng(seed)
    cells = _cells(rng, int(rng.integers(0, 60)))
    p = _partial(cells, rng, complete=bool(seed % 2))
    raw = p.encode()
    assert orjson.loads(raw)["v"] == PARTIAL_FORMAT_VERSION == 3
    q = Partial.decode(raw)
    assert q == p
    _assert_same(p.cells, q.cells)


@pytest.mark.parametrize("seed", range(20))
def test_format2_partials_still_decode(seed: int) -> None:
    """A format-2 partial (columnar cells, histogram triplets), as the previous release wrote
    it, decodes to exactly the summaries it was written from."""
    rng = np.random.default_rng(1000 + seed)
    p = _partial(_cells(rng, int(rng.integers(0, 40))), rng)
    v2 = {
        "v": 2,
        "bake": p.bake,
        "topic": p.topic,
        "partition": p.partition,
        "block": p.block,
        "upto": p.upto,
        "complete": p.complete,
        "canary": p.canary.to_dict(),
        "baseline": p.baseline.to_dict(),
        "t": p.max_event_time_s,
        "progress": p.progress_s,
        "idle": p.idle,
        "parts": p.source_partitions,
        "cells": _encode_cells(p.cells),
    }
    q = Partial.decode(orjson.dumps(v2))
    assert q == p
    _assert_same(p.cells, q.cells)


# Written by the format-2 encoder before format 3 (kept byte for byte).
_V2 = (
    b'{"v":2,"bake":"checkout-v42","topic":"requests","partition":3,"block":7,"upto":350123,'
    b'"complete":false,"canary":{"v":1,"n":5,"e":1,"hi":[0,400,401],"hc":[1,3,1],"s":{}},'
    b'"baseline":{"v":1,"n":4,"e":0,"hi":[399,987],"hc":[2,2],"s":{}},"t":1795824012.5,'
    b'"progress":1795824011.0,"idle":false,"parts":4,"cells":{"k":[179582400,179582400,'
    b'179582401],"s":["zone=eu-1","zone=eu-2","zone=eu-1"],"n":[3,1,0,3,2,0],"e":[1,0,0,0,0,0],'
    b'"h":[0,400,2,0,401,1,1,987,1,3,399,2,3,987,1,4,0,1,4,400,1]}}'
)


def _s(n: int, e: int, buckets: dict[int, int]) -> CohortSummary:
    hist = np.zeros(NUM_BUCKETS, dtype=np.int64)
    for i, c in buckets.items():
        hist[i] = c
    return CohortSummary(n, e, hist)


def test_a_recorded_format2_partial_decodes_and_reencodes_as_format3() -> None:
    p = Partial.decode(_V2)
    assert p.canary == _s(5, 1, {0: 1, 400: 3, 401: 1})
    assert p.baseline == _s(4, 0, {399: 2, 987: 2})
    assert p.cells == {
        (179582400, "zone=eu-1"): (_s(3, 1, {400: 2, 401: 1}), _s(1, 0, {987: 1})),
        (179582400, "zone=eu-2"): (CohortSummary(), _s(3, 0, {399: 2, 987: 1})),
        (179582401, "zone=eu-1"): (_s(2, 0, {0: 1, 400: 1}), CohortSummary()),
    }
    raw = p.encode()
    assert orjson.loads(raw)["cells"] == [
        [179582400, "zone=eu-1", 3, 1, 1, 0, [400, 2, 1, 1], [987, 1]],
        [179582400, "zone=eu-2", 0, 0, 3, 0, [], [399, 2, 588, 1]],
        [179582401, "zone=eu-1", 2, 0, 0, 0, [0, 1, 400, 1], []],
    ]
    assert Partial.decode(raw) == p
    assert len(raw) < len(_V2)


def test_format1_partials_still_decode() -> None:
    rng = np.random.default_rng(5)
    c, b = _summary(rng), _summary(rng)
    v1 = {"v": 1, "bake": "b", "topic": "t", "partition": 0, "block": 2, "upto": 1200}
    raw = orjson.dumps({**v1, "complete": True, "canary": c.to_dict(), "baseline": b.to_dict()})
    p = Partial.decode(raw)
    assert (p.canary, p.baseline, p.cells, p.progress_s) == (c, b, {}, None)


def test_ingest_flushes_from_its_arrays_what_a_fresh_encoding_would(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Through many flushes of growing blocks, every partial ingest publishes is byte for byte
    what encoding its decoded summaries gives, and unchanged rows are reused."""
    caches: list[BlockCells] = []
    init = BlockCells.__init__

    def counted(self: BlockCells) -> None:
        init(self)
        caches.append(self)

    monkeypatch.setattr(BlockCells, "__init__", counted)
    lines = request_log(2400, seed=11)
    broker = new_broker()
    w = ingest(broker, block_offsets=700, fetch_records=60)
    for i in range(0, len(lines), 150):
        produce(broker, lines[i : i + 150])
        drain(w)
        assert w.checkpoint()
    records = broker.records("m.partials")
    assert len(records) > 20
    clocks = 0
    for r in records:
        msg = decode_message(r.value or b"")
        clocks += isinstance(msg, Clock)
        assert msg.encode() == r.value
    assert 0 < clocks < len(records)
    assert sum(c.reused for c in caches) > 0 < sum(c.encoded for c in caches)


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        ([1, "z", 1, 0, 0, 0, [5], []], "odd length"),
        ([1, "z", 2, 0, 0, 0, [5, 1, 0, 1], []], "out of range"),  # a repeated bucket
        ([1, "z", 1, 0, 0, 0, [5, 1, -2, 1], []], "out of range"),  # a step back
        ([1, "z", 1, 0, 0, 0, [NUM_BUCKETS, 1], []], "out of range"),
        ([1, "z", 1, 0, 0, 0, [900, 1, 90, 1], []], "out of range"),  # 990 >= NUM_BUCKETS
        ([1, "z", 1, 0, 0, 0, [-1, 1], []], "out of range"),
        ([1, "z", 1, 0, 0, 0, [5, -1], []], "out of range"),
        ([1, "z", 1, 0, 0, 0, [5, 1]], "rows must be"),
        ([1, "z", 0, 1, 0, 0, [], []], "errors must be"),
    ],
)
def test_malformed_format3_cells_are_rejected(row: list[Any], reason: str) -> None:
    rng = np.random.default_rng(0)
    d = orjson.loads(_partial({}, rng).encode())
    with pytest.raises(PartialError, match=reason):
        Partial.decode(orjson.dumps({**d, "cells": [row]}))


def test_an_unknown_format_is_rejected() -> None:
    d = orjson.loads(_partial({}, np.random.default_rng(0)).encode())
    with pytest.raises(PartialError, match="unsupported partial format version 5"):
        Partial.decode(orjson.dumps({**d, "v": 5}))


def test_folding_format3_and_format2_partials_gives_the_same_increments() -> None:
    """The judge folds the same cumulative partials to the same increments, whichever format
    they came in, and its snapshot of open blocks restores them exactly."""
    rng = np.random.default_rng(3)
    cells = _cells(rng, 25)
    growing = {k: (c.copy(), b.copy()) for k, (c, b) in cells.items()}
    for c, _ in growing.values():
        c.merge(_s(1, 0, {42: 1}))
    first, second = _partial(cells, rng, upto=100), _partial(growing, rng, upto=200)
    folds = [BlockFold(), BlockFold()]
    for p in (first, second):
        v3 = Partial.decode(p.encode())
        d = {**orjson.loads(p.encode()), "v": 2, "cells": _encode_cells(p.cells)}
        v2 = Partial.decode(orjson.dumps(d))
        a, b = folds[0].fold(v3), folds[1].fold(v2)
        assert a is not None and b is not None
        assert a.canary == b.canary and a.baseline == b.baseline
        _assert_same(a.cells, b.cells)
    restored = BlockFold.from_state(orjson.loads(orjson.dumps(folds[0].state_dict())))
    assert restored.state_dict() == folds[1].state_dict()


def test_a_bundle_round_trips_and_a_single_partial_goes_alone() -> None:
    rng = np.random.default_rng(3)
    parts = [_partial(_cells(rng, 4), rng, partition=q, upto=100 + q) for q in range(3)]
    raw = Bundle.encode_parts("checkout-v42", [p.encode() for p in parts])
    msg = decode_message(raw)
    assert isinstance(msg, Bundle) and orjson.loads(raw)["v"] == BUNDLE_FORMAT_VERSION
    assert msg.bake == "checkout-v42" and len(msg.partials) == 3
    for got, want in zip(msg.partials, parts, strict=True):
        assert got.encode() == want.encode()
    assert msg.encode() == raw
    assert partials_in(msg) == msg.partials
    one = Bundle.encode_parts("checkout-v42", [parts[0].encode()])
    assert one == parts[0].encode() and partials_in(decode_message(one)) == (decode_message(one),)


def test_bundles_are_cut_to_their_size_limit_in_order() -> None:
    sizes = [100, 400_000, 200_000, 600_000, 10, 10, 530_000]
    encoded = [b"x" * n for n in sizes]
    chunks = Bundle.chunks(encoded)
    assert [b for c in chunks for b in c] == encoded  # nothing lost, nothing reordered
    for c in chunks:
        assert len(c) == 1 or sum(map(len, c)) <= Bundle.MAX_BYTES
    assert [len(c) for c in chunks] == [2, 1, 1, 2, 1]
    assert Bundle.chunks([]) == []


@pytest.mark.parametrize(
    ("bundle", "reason"),
    [
        ({"partials": []}, "non-empty list"),
        ({"partials": "x"}, "non-empty list"),
        ({"partials": [{"v": 2}]}, "format-3 partials"),
        ({"partials": [1]}, "format-3 partials"),
    ],
)
def test_malformed_bundles_are_rejected(bundle: dict[str, Any], reason: str) -> None:
    with pytest.raises(PartialError, match=reason):
        decode_message(orjson.dumps({"v": BUNDLE_FORMAT_VERSION, "bake": "b", **bundle}))


def test_a_bundle_of_another_bakes_partial_is_rejected() -> None:
    rng = np.random.default_rng(4)
    raw = Bundle.encode_parts("other", [_partial({}, rng).encode(), _partial({}, rng).encode()])
    with pytest.raises(PartialError, match='holds a partial of "checkout-v42"'):
        decode_message(raw)
    with pytest.raises(PartialError, match="not a partial"):
        Partial.decode(Bundle.encode_parts("checkout-v42", [_partial({}, rng).encode()] * 2))
