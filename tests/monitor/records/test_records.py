"""Tests of monitor.records.decode: presets, conversions, rejections and columnar batches."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import numpy as np
import orjson
import pytest

from monitor.records.columns import Categorical, DecodeResult
from monitor.records.decode import (
    REASON_BAD_COHORT,
    REASON_BAD_LATENCY,
    REASON_BAD_STATUS,
    REASON_BAD_TIME,
    REASON_BAD_TYPE,
    REASON_INVALID_JSON,
    REASON_MISSING_FIELD,
    REASON_NOT_AN_OBJECT,
    REJECTION_REASONS,
    decode_batch,
)
from monitor.records.fieldmap import PRESETS, FieldMap

PLAIN = PRESETS["plain"]
T0 = 1764323000.123  # 2025-11-28T09:43:20.123Z
T0_ISO = "2025-11-28T09:43:20.123Z"


def rec(**fields: Any) -> bytes:
    """A plain-preset record with sensible defaults, fields overridden or removed (None)."""
    base: dict[str, Any] = {
        "ts": T0,
        "service": "checkout",
        "version": "v42",
        "status": 200,
        "latency_ms": 12.5,
        "route": "/cart",
        "zone": "eu-west-1a",
        "host": "checkout-7d9f-x2",
    }
    base.update(fields)
    return orjson.dumps({k: v for k, v in base.items() if v is not None})


def decode(messages: list[Any], fm: FieldMap = PLAIN, **kw: Any) -> DecodeResult:
    return decode_batch(messages, fm, **kw)


# ---------------------------------------------------------------------------- plain preset


def test_plain_record_lands_in_columns_with_exact_values() -> None:
    """A plain record's values land in the right columns, latency converted from ms to s."""
    msg = rec(error=True, cohort="canary", bake="checkout-v42")
    b = decode([msg]).batch
    assert b.n == 1
    assert b.index.tolist() == [0]
    assert b.index.dtype == np.int64
    assert b.time_s.tolist() == [T0]
    assert b.latency_s.tolist() == [0.0125]
    assert b.status.tolist() == [200] and b.status.dtype == np.int32
    assert b.error.tolist() == [True]
    assert b.service.values().tolist() == ["checkout"]
    assert b.version.values().tolist() == ["v42"]
    assert b.cohort is not None and b.cohort.values().tolist() == ["canary"]
    assert b.bake is not None and b.bake.values().tolist() == ["checkout-v42"]
    assert {k: v.values().tolist() for k, v in b.segments.items()} == {
        "zone": ["eu-west-1a"],
        "route": ["/cart"],
        "host": ["checkout-7d9f-x2"],
    }


def test_status_threshold_decides_error_without_flag() -> None:
    """Without an error flag, status >= 500 is an error and 4xx is not."""
    msgs = [rec(status=s) for s in (200, 404, 429, 499, 500, 503, 599)]
    b = decode(msgs).batch
    assert b.error.tolist() == [False, False, False, False, True, True, True]


def test_error_statuses_adds_explicit_codes() -> None:
    """error_statuses counts listed codes as errors in addition to the minimum."""
    fm = FieldMap.from_dict({"preset": "plain", "error_statuses": [429], "error_status_min": 502})
    b = decode([rec(status=s) for s in (429, 500, 502)], fm).batch
    assert b.error.tolist() == [True, False, True]


def test_bool_error_flag_overrides_status() -> None:
    """A bool error field overrides the status; other values there are ignored."""
    msgs = [
        rec(status=200, error=True),
        rec(status=503, error=False),
        rec(status=503, error="upstream timeout"),
        rec(status=None, error=True),
    ]
    r = decode(msgs)
    assert r.rejections == []
    assert r.batch.error.tolist() == [True, False, True, True]
    assert r.batch.status.tolist() == [200, 503, 503, -1]


@pytest.mark.parametrize(
    ("unit", "value", "expected_s"),
    [("s", 0.25, 0.25), ("ms", 12.5, 0.0125), ("us", 1500, 0.0015), ("ns", 2_000_000, 0.002)],
)
def test_latency_units_convert_to_seconds(unit: str, value: float, expected_s: float) -> None:
    """latency_unit converts latencies to seconds."""
    fm = FieldMap.from_dict({"preset": "plain", "latency_unit": unit})
    assert decode([rec(latency_ms=value)], fm).batch.latency_s.tolist() == [expected_s]


def test_iso_and_epoch_times_agree() -> None:
    """ISO-8601 (Z, +00:00, other offsets, naive) and epoch s/ms/strings give the same time."""
    msgs = [
        rec(ts=T0),
        rec(ts=T0_ISO),
        rec(ts="2025-11-28T09:43:20.123+00:00"),
        rec(ts="2025-11-28T11:13:20.123+01:30"),
        rec(ts="2025-11-28T09:43:20.123"),
        rec(ts="1764323000.123"),
    ]
    t = decode(msgs).batch.time_s
    np.testing.assert_allclose(t, T0, rtol=0, atol=1e-6)
    fm_ms = FieldMap.from_dict({"preset": "plain", "time_unit": "ms"})
    t_ms = decode([rec(ts=1764323000123), rec(ts=T0_ISO)], fm_ms).batch.time_s
    assert t_ms[0] == T0
    np.testing.assert_allclose(t_ms, T0, rtol=0, atol=1e-6)


def test_iso_fast_path_and_fallback_agree() -> None:
    """A batch of canonical UTC ISO times and one forcing the per-value path agree."""
    rng = np.random.default_rng(3)
    times = T0 + np.sort(rng.uniform(0, 86_400, 200))
    isos = [datetime.fromtimestamp(float(t), UTC).isoformat(timespec="microseconds") for t in times]
    fast = decode([rec(ts=s.replace("+00:00", "Z")) for s in isos]).batch.time_s
    odd = [rec(ts=s) for s in isos] + [rec(ts="2025-11-28T10:43:20.123+01:00")]
    slow = decode(odd).batch.time_s
    np.testing.assert_allclose(fast, times, rtol=0, atol=1e-6)
    np.testing.assert_allclose(slow[:-1], fast, rtol=0, atol=1e-6)
    assert slow[-1] == pytest.approx(T0, abs=1e-6)


def test_missing_time_uses_default_when_given() -> None:
    """default_time_s fills absent times; a NaN or negative default still rejects."""
    msgs = [rec(ts=None), rec(), rec(ts=None), rec(ts=None)]
    defaults = np.array([1764323999.5, 1.0, math.nan, -0.001])
    r = decode(msgs, default_time_s=defaults)
    assert r.batch.index.tolist() == [0, 1]
    assert r.batch.time_s.tolist() == [1764323999.5, T0]
    assert [(x.index, x.reason) for x in r.rejections] == [
        (2, REASON_MISSING_FIELD),
        (3, REASON_MISSING_FIELD),
    ]


def test_default_time_of_wrong_length_is_a_caller_error() -> None:
    """default_time_s must have one entry per message."""
    with pytest.raises(ValueError, match="default_time_s"):
        decode([rec(), rec()], default_time_s=np.zeros(3))


def test_service_default_fills_absent_service() -> None:
    """service_default names the service of records without one."""
    fm = FieldMap.from_dict({"preset": "plain", "service_default": "payments"})
    b = decode([rec(service=None), rec(service="checkout"), rec(service="-")], fm).batch
    assert b.service.values().tolist() == ["payments", "checkout", "payments"]


def test_cohort_label_makes_version_optional() -> None:
    """A record with a cohort label needs no version; one with neither is rejected."""
    r = decode([rec(version=None, cohort="Baseline"), rec(version=None)])
    assert r.batch.index.tolist() == [0]
    assert r.batch.version.values().tolist() == [""]
    assert r.batch.cohort is not None and r.batch.cohort.values().tolist() == ["baseline"]
    assert r.rejections[0].detail == 'missing field "version"'


def test_missing_segments_become_empty_strings() -> None:
    """Absent, null and "-" segment values become "" without rejecting the record."""
    msgs = [rec(zone=None), orjson.dumps({**orjson.loads(rec()), "zone": None}), rec(zone="-")]
    r = decode(msgs)
    assert r.rejections == []
    assert r.batch.segments["zone"].values().tolist() == ["", "", ""]


def test_nested_and_dotted_key_paths_resolve() -> None:
    """Dotted paths reach nested fields, and keys that contain dots themselves."""
    fm = FieldMap(
        time="req.ts",
        service="k8s.labels.app.kubernetes.io/name",
        version="k8s.labels.version",
        status="req.status",
        latency="req.latency.ms",
    )
    obj = {
        "req": {"ts": T0, "status": 503, "latency": {"ms": 7}},
        "k8s": {"labels": {"app.kubernetes.io/name": "checkout", "version": "v7"}},
    }
    b = decode([orjson.dumps(obj)], fm).batch
    assert (b.time_s[0], b.status[0], b.latency_s[0]) == (T0, 503, 0.007)
    assert b.service.values().tolist() == ["checkout"]
    assert b.version.values().tolist() == ["v7"]


def test_argo_preset_reads_pod_template_hash() -> None:
    """The argo preset takes the version from Argo's rollouts-pod-template-hash label."""
    obj = {
        **orjson.loads(rec(version=None, host=None)),
        "kubernetes": {
            "pod_name": "checkout-6c5b9f7d4-x2x9k",
            "labels": {"app": "checkout", "rollouts-pod-template-hash": "6c5b9f7d4"},
        },
    }
    b = decode([orjson.dumps(obj)], PRESETS["argo"]).batch
    assert b.version.values().tolist() == ["6c5b9f7d4"]
    assert b.segments["host"].values().tolist() == ["checkout-6c5b9f7d4-x2x9k"]


def test_str_messages_decode_like_bytes() -> None:
    """str messages decode exactly like their bytes."""
    a = decode([rec(), rec(status=503)]).batch
    b = decode([rec().decode(), rec(status=503).decode()]).batch
    assert a.time_s.tolist() == b.time_s.tolist()
    assert a.error.tolist() == b.error.tolist()


def test_empty_input_gives_empty_batch() -> None:
    """No messages give an empty batch with typed columns and no rejections."""
    r = decode([])
    b = r.batch
    assert b.n == 0 and r.rejections == [] and r.rejected_by_reason == {}
    assert b.time_s.dtype == np.float64 and b.status.dtype == np.int32
    assert b.service.categories == () and b.service.codes.dtype == np.int32
    assert b.cohort is not None and b.cohort.categories == ()
    assert sorted(b.segments) == ["host", "route", "zone"]


def test_columns_are_read_only() -> None:
    """Decoded columns cannot be modified in place."""
    b = decode([rec()]).batch
    with pytest.raises(ValueError, match="read-only"):
        b.latency_s[0] = 1.0


def test_take_selects_rows_by_mask_and_index() -> None:
    """take() with a mask or an index array returns the matching sub-batch."""
    b = decode([rec(status=s) for s in (200, 503, 404, 500)]).batch
    by_mask = b.take(b.error)
    assert by_mask.index.tolist() == [1, 3] and by_mask.status.tolist() == [503, 500]
    by_index = b.take(np.array([2, 0]))
    assert by_index.status.tolist() == [404, 200]
    assert by_index.service.values().tolist() == ["checkout", "checkout"]


# ---------------------------------------------------------------------------- envoy preset

ENVOY_TYPED = [
    {
        "start_time": "2026-11-28T10:00:00.123Z",
        "method": "GET",
        "path": "/cart",
        "protocol": "HTTP/1.1",
        "response_code": 200,
        "response_flags": "-",
        "bytes_received": 0,
        "bytes_sent": 1204,
        "duration": 23,
        "upstream_service_time": "21",
        "x_forwarded_for": None,
        "user_agent": "curl/8.5.0",
        "request_id": "cc21d9b0-cf5c-432b-8c7e-98aeb7988cd2",
        "authority": "checkout.example.com",
        "upstream_host": "10.0.2.1:8080",
        "upstream_cluster": "checkout-v42",
        "route_name": "checkout_route",
    },
    {"response_code": 0, "response_flags": "DC", "duration": 5001, "upstream_host": None},
    {
        "response_code": 503,
        "response_flags": "UF",
        "duration": 2,
        "upstream_cluster": "checkout-v41",
    },
    {"response_code": 404, "response_flags": "NR", "duration": 0, "route_name": None},
]


def envoy_lines(typed: bool) -> list[bytes]:
    """Envoy access-log lines: typed_json_format, or json_format (every value a string, "-")."""
    lines = []
    for i, extra in enumerate(ENVOY_TYPED):
        obj = {**ENVOY_TYPED[0], **extra}
        obj["start_time"] = f"2026-11-28T10:00:0{i}.123Z"
        if not typed:
            obj = {k: "-" if v is None else str(v) for k, v in obj.items()}
        lines.append(orjson.dumps(obj))
    return lines


@pytest.mark.parametrize("typed", [True, False], ids=["typed_json_format", "json_format"])
def test_envoy_preset_decodes_access_log(typed: bool) -> None:
    """Envoy lines decode: code 0 and 503 are errors, 404 is not; "-"/null hosts become ""."""
    r = decode(envoy_lines(typed), PRESETS["envoy"])
    b = r.batch
    assert r.rejections == []
    assert b.status.tolist() == [200, 0, 503, 404]
    assert b.error.tolist() == [False, True, True, False]
    assert b.latency_s.tolist() == [0.023, 5.001, 0.002, 0.0]
    t0 = datetime(2026, 11, 28, 10, 0, 0, 123000, tzinfo=UTC).timestamp()
    np.testing.assert_allclose(b.time_s, t0 + np.arange(4), rtol=0, atol=1e-6)
    assert b.service.values().tolist() == ["checkout.example.com"] * 4
    assert b.version.values().tolist() == ["checkout-v42"] * 2 + ["checkout-v41", "checkout-v42"]
    hosts = ["10.0.2.1:8080", "", "10.0.2.1:8080", "10.0.2.1:8080"]
    assert b.segments["host"].values().tolist() == hosts
    assert b.segments["route"].values().tolist() == ["checkout_route"] * 3 + [""]


# ---------------------------------------------------------------------------- rejections

REJECTION_CASES = [
    (b'{"ts": 1764323000, "service": ', REASON_INVALID_JSON, "invalid JSON"),
    (rec().replace(b"12.5", b"1e400"), REASON_INVALID_JSON, "infinity"),
    (b'[{"ts": 1764323000.1}]', REASON_NOT_AN_OBJECT, "JSON array is not an object"),
    (b'"hello"', REASON_NOT_AN_OBJECT, "JSON string is not an object"),
    (rec(latency_ms=None), REASON_MISSING_FIELD, 'missing field "latency_ms"'),
    (rec(latency_ms="fast"), REASON_BAD_LATENCY, 'field "latency_ms" is not a finite'),
    (rec(latency_ms=-0.5), REASON_BAD_LATENCY, "-0.5"),
    (rec(latency_ms="NaN"), REASON_BAD_LATENCY, '"NaN"'),
    (rec(latency_ms="inf"), REASON_BAD_LATENCY, '"inf"'),
    (rec(latency_ms=True), REASON_BAD_LATENCY, "true"),
    (rec(latency_ms={"p50": 3}), REASON_BAD_LATENCY, '{"p50":3}'),
    (rec(ts=None), REASON_MISSING_FIELD, 'missing field "ts"'),
    (rec(ts="yesterday"), REASON_BAD_TIME, '"yesterday"'),
    (rec(ts="2026-02-30T10:00:00Z"), REASON_BAD_TIME, "2026-02-30"),
    (rec(ts=1764323000123), REASON_BAD_TIME, "1764323000123"),
    (rec(ts=-5), REASON_BAD_TIME, "-5"),
    (rec(status="teapot"), REASON_BAD_STATUS, '"teapot"'),
    (rec(status=1200), REASON_BAD_STATUS, "1200"),
    (rec(status=True), REASON_BAD_STATUS, "true"),
    (rec(status=None), REASON_MISSING_FIELD, 'missing field "status"'),
    (rec(cohort="blue"), REASON_BAD_COHORT, '"blue"'),
    (rec(service={"name": "x"}), REASON_BAD_TYPE, 'field "service"'),
    (rec(version=["v1"]), REASON_BAD_TYPE, 'field "version"'),
    (rec(zone={"id": 1}), REASON_BAD_TYPE, 'field "zone"'),
    (rec(service=None), REASON_MISSING_FIELD, 'missing field "service"'),
    (rec(service="  "), REASON_MISSING_FIELD, 'missing field "service"'),
]


@pytest.mark.parametrize(("raw", "reason", "detail"), REJECTION_CASES)
def test_bad_record_is_rejected_with_reason(raw: bytes, reason: str, detail: str) -> None:
    """Each kind of bad record is rejected with its reason, detail and raw bytes."""
    r = decode([rec(), raw, rec(status=503)])
    assert r.batch.index.tolist() == [0, 2]
    assert r.batch.status.tolist() == [200, 503]
    assert len(r.rejections) == 1
    rej = r.rejections[0]
    assert (rej.index, rej.reason, rej.raw) == (1, reason, raw)
    assert detail in rej.detail
    assert r.rejected_by_reason == {reason: 1}
    assert reason in REJECTION_REASONS


def test_tombstone_is_rejected_not_raised() -> None:
    """A None message (Kafka tombstone) is rejected as invalid JSON with empty raw bytes."""
    r = decode([None, rec()])
    assert [(x.index, x.reason, x.raw) for x in r.rejections] == [(0, REASON_INVALID_JSON, b"")]
    assert r.batch.index.tolist() == [1]


def test_garbage_between_good_lines_keeps_good_rows_and_indices() -> None:
    """Garbage lines between good ones are rejected; good rows keep values and input index."""
    msgs: list[Any] = [
        rec(latency_ms=1.0),
        b"\x00\xff garbage",
        rec(latency_ms=2.0, version="v41"),
        b"[]",
        b"",
        rec(latency_ms="slow"),
        rec(latency_ms=3.0, status=500),
        "{}",
        rec(latency_ms=4.0, zone="eu-west-1b"),
    ]
    r = decode(msgs)
    b = r.batch
    assert b.index.tolist() == [0, 2, 6, 8]
    assert b.latency_s.tolist() == [0.001, 0.002, 0.003, 0.004]
    assert b.error.tolist() == [False, False, True, False]
    assert b.version.values().tolist() == ["v42", "v41", "v42", "v42"]
    assert b.segments["zone"].values().tolist() == ["eu-west-1a"] * 3 + ["eu-west-1b"]
    assert [x.index for x in r.rejections] == [1, 3, 4, 5, 7]
    assert r.rejected_by_reason == {
        REASON_INVALID_JSON: 2,
        REASON_NOT_AN_OBJECT: 1,
        REASON_BAD_LATENCY: 1,
        REASON_MISSING_FIELD: 1,
    }


def test_categorical_codes_and_categories_are_consistent() -> None:
    """Categories are sorted and unique, every one is used, and codes index the row values."""
    hosts = ["h3", "h1", "h2", "h1", "h3", "h3"]
    msgs = [rec(host=h) for h in hosts] + [rec(host="only-in-rejected", latency_ms=-1)]
    b = decode(msgs).batch
    cat = b.segments["host"]
    assert cat.codes.dtype == np.int32
    assert cat.categories == ("h1", "h2", "h3")
    assert [cat.categories[c] for c in cat.codes] == hosts
    assert cat.values().tolist() == hosts
    assert cat.code("h2") == 1 and cat.code("nope") == -1
    assert cat.isin(["h1", "h2"]).tolist() == [h in ("h1", "h2") for h in hosts]
    assert Categorical.from_values(hosts).categories == cat.categories
    assert np.array_equal(Categorical.from_values(hosts).codes, cat.codes)


def test_overlong_labels_are_cut_so_memory_and_partials_stay_bounded() -> None:
    """A 100 kB route (or version) is cut to MAX_LABEL_CHARS, marked; two long values with the
    same start become one label; short values are untouched."""
    from monitor.records.convert import MAX_LABEL_CHARS

    base = {"ts": 1764323000.5, "service": "s", "version": "v1", "status": 200, "latency_ms": 5}
    lines = [
        orjson.dumps({**base, "route": "/" + "r" * 100_000}),
        orjson.dumps({**base, "route": "/" + "r" * 50_000}),
        orjson.dumps({**base, "route": "/api"}),
    ]
    r = decode_batch(lines, PRESETS["plain"])
    route = r.batch.segments["route"]
    values = route.values().tolist()
    assert values[2] == "/api"
    assert values[0] == values[1] and len(values[0]) == MAX_LABEL_CHARS
    assert values[0].endswith("…") and values[0].startswith("/rrr")


def test_concatenated_batches_summarise_as_the_sum_of_their_parts() -> None:
    """concat_batches unions each string column's categories (a dimension a batch lacks is
    absent there): every row keeps its values, and the summaries of the whole are the merged
    summaries of the parts."""
    from monitor.bakes.spec import BakeSpec, Registry
    from monitor.bakes.tagging import Tags, summarise, tag
    from monitor.records.columns import concat_batches

    rng = np.random.default_rng(4)
    reg = Registry(
        [BakeSpec.from_dict({"id": "c-v2", "service": "c", "canary": "v2", "baseline": "v1"})]
    )
    batches = []
    for size in (5, 40, 1, 17):
        lines = [
            orjson.dumps(
                {
                    "ts": 1_795_824_000 + float(rng.uniform(0, 100)),
                    "service": str(rng.choice(["c", "d"])),
                    "version": str(rng.choice(["v1", "v2"])),
                    "status": int(rng.choice([200, 503])),
                    "latency_ms": float(rng.uniform(1, 900)),
                    **({"zone": f"z{rng.integers(0, 4)}"} if rng.random() < 0.7 else {}),
                }
            )
            for _ in range(size)
        ]
        batches.append(decode_batch(lines, PRESETS["plain"]).batch)
    whole = concat_batches(batches)
    assert whole.n == sum(b.n for b in batches)
    for name in ("service", "version"):
        assert list(getattr(whole, name).values()) == [
            v for b in batches for v in getattr(b, name).values()
        ]
    for dim in whole.segments:
        assert list(whole.segments[dim].values()) == [
            v
            for b in batches
            for v in (b.segments[dim].values() if dim in b.segments else [""] * b.n)
        ]
    tags = [tag(b, reg) for b in batches]
    merged: dict[tuple[int, int], object] = {}
    for b, t in zip(batches, tags, strict=True):
        for key, (s, _) in summarise(b, t).items():
            if key in merged:
                merged[key].merge(s)  # type: ignore[attr-defined]
            else:
                merged[key] = s
    all_tags = Tags(
        np.concatenate([t.bake for t in tags]), np.concatenate([t.cohort for t in tags])
    )
    got = {k: s for k, (s, _) in summarise(whole, all_tags).items()}
    assert got == merged and len(got) == 2


@pytest.mark.parametrize("seed", range(6))
def test_encode_labels_fast_path_names_as_the_general_one(seed: int) -> None:
    """Batches of clean labels skip the per-value normalisation; whatever the mix (padded,
    absent, "-", too long, lower-cased), every row's label is the normalised value."""
    from monitor.records.convert import MAX_LABEL_CHARS, encode_labels

    rng = np.random.default_rng(seed)
    pool: list[Any] = [f"svc{i}" for i in range(50)]
    if seed % 2:
        pool += [" pad ", "-", "", None, "X" * (MAX_LABEL_CHARS + 3), "MiXed"]
    col = [pool[int(i)] for i in rng.integers(0, len(pool), 400)]
    for lower in (False, True):
        got = encode_labels(col, default="dflt", lower=lower)
        names = [got.names[c] for c in got.codes.tolist()]
        want = []
        for v in col:
            name = "dflt" if v is None else v.strip()
            if len(name) > MAX_LABEL_CHARS:
                name = name[: MAX_LABEL_CHARS - 1] + "…"
            name = "dflt" if name in ("", "-") else (name.lower() if lower else name)
            want.append(name)
        assert names == want
        assert len(set(got.names)) == len(got.names)  # one code per label
