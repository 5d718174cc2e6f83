"""Property test: the msgspec fast path and the orjson reference path decode alike.

Seeded random valid lines (the simulator's plain shape and the proxy fixtures) and seeded
mutations of them (the record fuzzer's 16 kinds) are decoded by :func:`decode_batch` (fast path
where it can) and :func:`decode_batch_reference`; columns and rejections must be identical.
"""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from benchmarks.faults.fuzz import _WRONG, _mutate
from monitor.records.columns import Categorical, DecodeResult
from monitor.records.decode import decode_batch, decode_batch_reference
from monitor.records.fast import _decoder, struct_fields
from monitor.records.fieldmap import PRESETS, FieldMap

FIXTURES = Path(__file__).parent / "fixtures"
PLAIN_KEYS = ("ts", "service", "version", "status", "latency_ms", "route", "zone", "host")


def _plain_line(rng: random.Random) -> bytes:
    d: dict[str, Any] = {
        "ts": 1764323000 + rng.random() * 3600,
        "service": rng.choice(["checkout", "payments"]),
        "version": rng.choice(["v41", "v42"]),
        "status": rng.choice([200, 200, 200, 404, 503]),
        "latency_ms": rng.choice([round(rng.expovariate(0.05), 3), rng.randrange(1, 500)]),
        "route": rng.choice(["/cart", "/pay", "/"]),
        "zone": rng.choice(["eu-west-1a", "eu-west-1b"]),
        "host": f"pod-{rng.randrange(6)}",
    }
    if rng.random() < 0.2:
        d["cohort"] = rng.choice(["canary", "baseline", "CANARY", "-", ""])
    if rng.random() < 0.2:
        d["error"] = rng.choice([True, False, None, "boom"])
    return orjson.dumps(d)


def _fixture_lines(preset: str, rng: random.Random, n: int) -> list[bytes]:
    base = (FIXTURES / f"{preset}.jsonl").read_bytes().splitlines()
    return [rng.choice(base) for _ in range(n)]


def _same_categorical(a: Categorical | None, b: Categorical | None) -> None:
    assert (a is None) == (b is None)
    if a is not None and b is not None:
        assert a.categories == b.categories
        assert a.codes.tolist() == b.codes.tolist()


def _assert_same(fast: DecodeResult, ref: DecodeResult) -> None:
    assert [(r.index, r.reason, r.detail, r.raw) for r in fast.rejections] == [
        (r.index, r.reason, r.detail, r.raw) for r in ref.rejections
    ]
    assert fast.rejected_by_reason == ref.rejected_by_reason
    a, b = fast.batch, ref.batch
    for name in ("index", "time_s", "latency_s", "error", "status"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
        assert getattr(a, name).dtype == getattr(b, name).dtype
    for name in ("service", "version", "cohort", "bake"):
        _same_categorical(getattr(a, name), getattr(b, name))
    assert a.segments.keys() == b.segments.keys()
    for k in a.segments:
        _same_categorical(a.segments[k], b.segments[k])


def _mutated(line: bytes, rng: random.Random) -> bytes:
    """The fuzzer's mutation; on proxy lines (other keys) a wrong value in a random key."""
    state = rng.getstate()
    try:
        return _mutate(line, rng)
    except (KeyError, TypeError):
        rng.setstate(state)
        rng.random()
        d = orjson.loads(line)
        d[rng.choice(sorted(d))] = rng.choice(_WRONG)
        return orjson.dumps(d)


def _batch(preset: str, rng: random.Random, n: int) -> list[bytes]:
    if preset in ("plain", "argo"):
        return [_plain_line(rng) for _ in range(n)]
    return _fixture_lines(preset, rng, n)


@pytest.mark.parametrize("preset", ["plain", "envoy", "istio", "envoy-gateway", "flagger"])
def test_valid_batches_take_the_fast_path_and_match(preset: str) -> None:
    """All-good batches decode on the fast path, with the reference path's exact columns."""
    rng = random.Random(13)
    fm = PRESETS[preset]
    decode_batch_reference(_batch(preset, rng, 50), fm)  # learns the log's keys
    for _ in range(20):
        msgs = _batch(preset, rng, rng.randrange(1, 300))
        assert struct_fields(msgs, fm) is not None
        _assert_same(decode_batch(msgs, fm), decode_batch_reference(msgs, fm))


@pytest.mark.parametrize("preset", ["plain", "envoy", "istio"])
def test_mutated_lines_are_rejected_alike(preset: str) -> None:
    """Fuzzed lines (16 mutation kinds) get the same rejections, index, reason and detail."""
    rng = random.Random(7)
    fm = PRESETS[preset]
    fast_batches = 0
    for _ in range(400):
        msgs = _batch(preset, rng, rng.randrange(1, 8))
        msgs = [_mutated(m, rng) if rng.random() < 0.3 else m for m in msgs]
        if struct_fields(msgs, fm) is not None:
            fast_batches += 1
        _assert_same(decode_batch(msgs, fm), decode_batch_reference(msgs, fm))
    assert fast_batches > 50  # the fast path really ran on many of the mixed batches


def test_values_orjson_reads_differently_go_to_the_reference_path() -> None:
    """Integers beyond 64 bits (orjson: floats) and out-of-range numbers decode as orjson does."""
    fm = PRESETS["plain"]
    ok = orjson.loads(_plain_line(random.Random(1)))
    msgs = [orjson.dumps(ok)]
    for raw in (b"18446744073709551616", b"-9223372036854775809", b"1e400", b"[1,2]"):
        for key in ("status", "latency_ms", "service"):
            msgs.append(
                orjson.dumps({**ok, key: 0}).replace(
                    b'"' + key.encode() + b'":0', b'"' + key.encode() + b'":' + raw
                )
            )
    msgs.append(b'{"ts":1764323000,"zz":"\xff"}')  # invalid UTF-8 in a key never seen
    for m in msgs:
        _assert_same(decode_batch([m], fm), decode_batch_reference([m], fm))
    _assert_same(decode_batch(msgs, fm), decode_batch_reference(msgs, fm))


_MAPS = iter(range(501, 600))


def _own_map() -> FieldMap:
    """The plain preset, as a map of its own: decoders are cached per map, and what one test
    teaches a decoder (a relaxed key) must not change another test's path."""
    return dataclasses.replace(PRESETS["plain"], error_status_min=next(_MAPS))


def test_typed_keys_show_the_logged_value_in_rejections() -> None:
    """Typed float columns hold -5.0 where the log wrote -5; details still show the log's -5."""
    fm = _own_map()
    rng = random.Random(3)
    ok = [_plain_line(rng) for _ in range(20)]
    decode_batch_reference(ok, fm)
    bad = dict(orjson.loads(ok[0]), latency_ms=-5, status=1000)
    msgs = [*ok, orjson.dumps(bad), orjson.dumps({**bad, "status": 200, "ts": 10**12})]
    assert struct_fields(msgs, fm) is not None  # the typed decoder took them
    fast = decode_batch(msgs, fm)
    _assert_same(fast, decode_batch_reference(msgs, fm))
    details = [r.detail for r in fast.rejections]
    assert any("1000" in d for d in details) and any("1000000000000" in d for d in details)
    assert not any(".0" in d for d in details), details


def test_a_key_whose_values_do_not_fit_its_type_is_relaxed() -> None:
    """ISO times (not floats) and numeric versions (not strings): after the first reference
    batch of such a log, its batches take the fast path again, decoded alike."""
    fm = PRESETS["plain"]
    rng = random.Random(5)

    def line() -> bytes:
        d = orjson.loads(_plain_line(rng))
        d["ts"] = f"2026-11-28T10:00:{rng.randrange(60):02d}.5Z"
        d["version"] = rng.choice([41, 42])
        d["zz_new_key"] = 1  # a key no field map reads, so the first batch is a reference one
        return orjson.dumps(d)

    first = [line() for _ in range(50)]
    assert struct_fields(first, fm) is None
    decode_batch(first, fm)  # the reference path learns: both keys are typed Any now
    for _ in range(5):
        msgs = [line() for _ in range(rng.randrange(1, 100))]
        assert struct_fields(msgs, fm) is not None
        _assert_same(decode_batch(msgs, fm), decode_batch_reference(msgs, fm))


def test_a_rare_value_that_does_not_fit_keeps_the_key_typed() -> None:
    """One numeric version in 2,000 rows: that batch goes to the reference path (decoded alike),
    the key stays typed and the next all-good batch is fast again."""
    fm = _own_map()
    rng = random.Random(9)
    decode_batch_reference([_plain_line(rng) for _ in range(50)], fm)
    msgs = [_plain_line(rng) for _ in range(2000)]
    msgs[777] = orjson.dumps({**orjson.loads(msgs[777]), "version": 42})
    assert struct_fields(msgs, fm) is None
    _assert_same(decode_batch(msgs, fm), decode_batch_reference(msgs, fm))
    nxt = [_plain_line(rng) for _ in range(500)]
    assert struct_fields(nxt, fm) is not None
    assert _decoder(fm).kinds.get("version") == "str"


def test_label_values_new_to_the_vocabulary_are_learnt_on_the_fast_path() -> None:
    """Label keys are typed as Literals of the values seen: a batch with a new host is parsed
    again with the key typed str (still the fast path, decoded alike), the host is learnt, and
    the next batch takes the literal decoder, which hands out one string object per value."""
    fm = _own_map()
    rng = random.Random(21)
    decode_batch_reference([_plain_line(rng) for _ in range(50)], fm)
    dec = _decoder(fm)
    assert set(dec.literal) >= {"service", "version", "route", "zone", "host"}
    assert "pod-99" not in dec.literal["host"]
    msgs = [_plain_line(rng) for _ in range(300)]
    msgs[150] = orjson.dumps({**orjson.loads(msgs[150]), "host": "pod-99"})
    assert struct_fields(msgs, fm) is not None
    assert "pod-99" in dec.literal["host"]
    _assert_same(decode_batch(msgs, fm), decode_batch_reference(msgs, fm))
    again = [_plain_line(rng) for _ in range(300)]
    fields = struct_fields(again, fm)
    assert fields is not None
    hosts = fields.get("host")
    assert hosts is not None
    assert len({id(h) for h in hosts}) == len(set(hosts))  # shared objects, one per value
    _assert_same(decode_batch(again, fm), decode_batch_reference(again, fm))


def test_a_label_key_with_too_many_values_is_typed_str() -> None:
    """Past VOCABULARY_MAX distinct values (request ids as a segment) a key leaves the
    literal decoder for good; its batches still decode on the fast path, alike."""
    from monitor.records.fast import VOCABULARY_MAX

    fm = _own_map()
    rng = random.Random(22)

    def line(i: int) -> bytes:
        return orjson.dumps({**orjson.loads(_plain_line(rng)), "host": f"h-{i}"})

    decode_batch_reference([line(i) for i in range(50)], fm)
    assert "host" in _decoder(fm).literal
    msgs = [line(i) for i in range(50, 60 + VOCABULARY_MAX)]
    assert struct_fields(msgs, fm) is not None
    assert _decoder(fm).vocabulary["host"] is None
    assert "host" not in _decoder(fm).literal and "zone" in _decoder(fm).literal
    for start in (10_000, 20_000):
        nxt = [line(i) for i in range(start, start + 200)]
        assert struct_fields(nxt, fm) is not None
        _assert_same(decode_batch(nxt, fm), decode_batch_reference(nxt, fm))


@pytest.mark.parametrize("seed", range(6))
def test_joint_label_encoding_equals_a_pass_per_column(seed: int) -> None:
    """first_rows of each column, from one pass over the rows' combinations, are those of a
    pass per column: the same values in the same order, the same first rows; and whether it
    paid follows the number of distinct combinations."""
    from monitor.records.convert import JOINT_MAX_SHARE, first_rows, joint_first_rows

    rng = random.Random(seed)
    m = rng.choice([1, 2, 7, 300, 2000])
    width = [rng.choice([1, 3, 40, 5000]) for _ in range(rng.randrange(1, 6))]
    cols = [[rng.choice([None, *(f"v{j}" for j in range(w))]) for _ in range(m)] for w in width]
    if rng.random() < 0.5:
        cols.append([cols[0][0]] * m)  # a one-value column
    joint, paid = joint_first_rows(cols)
    for col, (first, rows) in zip(cols, joint, strict=True):
        want_first, want_rows = first_rows(col)
        assert list(first.items()) == list(want_first.items())
        assert rows.tolist() == want_rows.tolist()
    assert paid == (len(set(zip(*cols, strict=True))) * JOINT_MAX_SHARE <= m)


def test_batches_with_many_label_combinations_encode_column_by_column_alike() -> None:
    """A batch whose rows hold too many distinct label combinations for joint encoding to pay
    turns it off for the next batches of the log; every batch decodes alike either way."""
    from monitor.records.rows import JOINT_RETRY

    fm = _own_map()
    rng = random.Random(23)

    def line(hosts: int) -> bytes:
        return orjson.dumps(
            {**orjson.loads(_plain_line(rng)), "host": f"pod-{rng.randrange(hosts)}"}
        )

    decode_batch_reference([line(500) for _ in range(600)], fm)
    dec = _decoder(fm)
    wide = [line(500) for _ in range(400)]
    _assert_same(decode_batch(wide, fm), decode_batch_reference(wide, fm))
    assert dec.joint_off == JOINT_RETRY
    narrow = [line(3) for _ in range(400)]
    _assert_same(decode_batch(narrow, fm), decode_batch_reference(narrow, fm))
    assert dec.joint_off == JOINT_RETRY - 1


@pytest.mark.parametrize("preset", ["plain", "envoy", "istio"])
def test_batches_with_a_few_bad_lines_are_split_and_decoded_alike(preset: str) -> None:
    """Large batches with ~1-4 % fuzzed lines (any of the 16 mutation kinds, some of them still
    valid records) and Kafka timestamps as default times: the refused lines go to the reference
    path, the rest stay on the fast path, and the merged result is the reference path's."""
    from monitor.records.fast import struct_fields_split

    rng = random.Random(31)
    fm = PRESETS[preset]
    decode_batch_reference(_batch(preset, rng, 50), fm)
    split = 0
    for _ in range(12):
        n = rng.randrange(100, 1500)
        msgs = _batch(preset, rng, n)
        for i in rng.sample(range(n), max(1, int(n * rng.uniform(0.01, 0.04)))):
            msgs[i] = _mutated(msgs[i], rng)
        defaults = [1764323000.0 + i for i in range(n)]
        if struct_fields(msgs, fm) is None and struct_fields_split(msgs, fm) is not None:
            split += 1
        _assert_same(
            decode_batch(msgs, fm, default_time_s=defaults),
            decode_batch_reference(msgs, fm, default_time_s=defaults),
        )
    assert split >= 6  # the split path really ran


def test_a_batch_of_mostly_refused_lines_goes_to_the_reference_path() -> None:
    """Past SPLIT_MAX_SHARE refused lines (a new key in every line: the log changed shape) the
    whole batch is decoded on the reference path, which learns the key for the next batch."""
    from monitor.records.fast import struct_fields_split

    fm = _own_map()
    rng = random.Random(32)
    decode_batch_reference([_plain_line(rng) for _ in range(50)], fm)
    msgs = [orjson.dumps({**orjson.loads(_plain_line(rng)), "trace": i}) for i in range(400)]
    assert struct_fields(msgs, fm) is None and struct_fields_split(msgs, fm) is None
    _assert_same(decode_batch(msgs, fm), decode_batch_reference(msgs, fm))
    assert struct_fields(msgs, fm) is not None  # learnt


def test_a_wanted_key_the_log_never_had_is_read_as_absent_until_it_appears() -> None:
    """A log without a cohort (or error) field: the struct has no such field and the columns
    are known absent; the first lines that carry one are decoded alike (refused by the struct,
    so on the reference path) and teach the key, after which the fast path reads it."""
    fm = _own_map()
    rng = random.Random(33)

    def line(extra: dict[str, Any] | None = None) -> bytes:
        d = orjson.loads(_plain_line(rng))
        d.pop("cohort", None)
        d.pop("error", None)
        return orjson.dumps({**d, **(extra or {})})

    decode_batch_reference([line() for _ in range(50)], fm)
    msgs = [line() for _ in range(300)]
    fields = struct_fields(msgs, fm)
    assert fields is not None and not fields.seen("cohort") and not fields.seen("error")
    assert fields.get("cohort") == [None] * 300
    _assert_same(decode_batch(msgs, fm), decode_batch_reference(msgs, fm))
    mixed = [line({"cohort": "canary"}) if i % 40 == 0 else line() for i in range(400)]
    assert struct_fields(mixed, fm) is None  # refused: a key the struct does not know
    _assert_same(decode_batch(mixed, fm), decode_batch_reference(mixed, fm))
    after = [line({"cohort": rng.choice(["canary", "baseline"])}) for _ in range(200)]
    fields = struct_fields(after, fm)
    assert fields is not None and fields.seen("cohort")
    _assert_same(decode_batch(after, fm), decode_batch_reference(after, fm))
