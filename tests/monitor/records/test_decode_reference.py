"""Property test of batch decoding: seeded random records against a per-record reference."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import numpy as np
import orjson
import pytest

from monitor.records.columns import RecordBatch
from monitor.records.decode import (
    REASON_BAD_COHORT,
    REASON_BAD_LATENCY,
    REASON_BAD_STATUS,
    REASON_BAD_TIME,
    REASON_INVALID_JSON,
    REASON_MISSING_FIELD,
    REASON_NOT_AN_OBJECT,
    decode_batch,
)
from monitor.records.fieldmap import PRESETS

T0 = 1764323000.123  # 2025-11-28T09:43:20.123Z


SERVICES = ["checkout", "payments", "search"]
VERSIONS = ["v41", "v42", "v43"]
ZONES = ["eu-west-1a", "eu-west-1b", "us-east-1a"]


def _absent(v: Any) -> bool:
    return v is None or (isinstance(v, str) and v.strip() in ("", "-"))


def _label(v: Any) -> str | None:
    if _absent(v):
        return ""
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, int | float):
        return str(v)
    return v.strip() if isinstance(v, str) else None


def _ref_time(obj: dict[str, Any]) -> float | str:
    """The event time in s, or the rejection reason."""
    ts: Any = obj.get("ts")
    if _absent(ts):
        return REASON_MISSING_FIELD
    try:
        t = float(ts)
    except ValueError:
        try:
            dt = datetime.fromisoformat(ts)
        except ValueError:
            return REASON_BAD_TIME
        t = (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp()
    return t if 0 <= t < 1e11 else REASON_BAD_TIME


def _ref_latency(obj: dict[str, Any]) -> float | str:
    """The latency in s, or the rejection reason."""
    lat: Any = obj.get("latency_ms")
    if _absent(lat):
        return REASON_MISSING_FIELD
    try:
        lat_s = float(lat) / 1000.0
    except ValueError:
        return REASON_BAD_LATENCY
    return lat_s if math.isfinite(lat_s) and lat_s >= 0 else REASON_BAD_LATENCY


def reference(raw: bytes) -> dict[str, Any] | str:
    """Straightforward per-record decode (stdlib json) for the plain preset: values or reason."""
    try:
        obj = json.loads(raw)
    except ValueError:
        return REASON_INVALID_JSON
    if not isinstance(obj, dict):
        return REASON_NOT_AN_OBJECT
    t = _ref_time(obj)
    if isinstance(t, str):
        return t
    service, version = _label(obj.get("service")), _label(obj.get("version"))
    cohort = (_label(obj.get("cohort")) or "").lower()
    if cohort not in ("", "canary", "baseline"):
        return REASON_BAD_COHORT
    if not service or (not version and not cohort):
        return REASON_MISSING_FIELD
    raw_status: Any = obj.get("status")
    status = -1 if _absent(raw_status) else int(raw_status)
    if not 0 <= status <= 999 and status != -1:
        return REASON_BAD_STATUS
    flag = obj.get("error")
    if status == -1 and not isinstance(flag, bool):
        return REASON_MISSING_FIELD
    lat_s = _ref_latency(obj)
    if isinstance(lat_s, str):
        return lat_s
    return {
        "time_s": t,
        "latency_s": lat_s,
        "status": status,
        "error": flag if isinstance(flag, bool) else status >= 500,
        "service": service,
        "version": version,
        "cohort": cohort,
        "bake": _label(obj.get("bake")),
        **{seg: _label(obj.get(seg)) for seg in ("zone", "route", "host")},
    }


def _mix(
    rng: np.random.Generator, obj: dict[str, Any], t: float, lat: float, status: int, tz: timezone
) -> None:
    """Vary one record's value types in place, and make some of them bad."""
    k = int(rng.integers(6))
    if k == 1:
        obj["ts"] = datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds")
    elif k == 2:
        obj["ts"] = datetime.fromtimestamp(t, tz).isoformat(timespec="milliseconds")
    elif k == 3:
        obj["ts"] = str(t)
    if rng.random() < 0.2:
        obj["latency_ms"] = str(lat)
    if rng.random() < 0.2:
        obj["status"] = str(status)
    for seg in ("zone", "route", "host"):
        if rng.random() < 0.1:
            obj[seg] = ["-", "", 7][int(rng.integers(3))]
    if rng.random() < 0.1:
        obj["version"] = int(rng.integers(3))
    if rng.random() < 0.1:
        obj["cohort"] = str(rng.choice(["Canary", "blue", " baseline "]))
    if rng.random() < 0.03:
        del obj["latency_ms"]
    if rng.random() < 0.03:
        obj["latency_ms"] = str(rng.choice(["fast", "-1", "NaN"]))
    if rng.random() < 0.03:
        obj["ts"] = "not a time"
    if rng.random() < 0.03:
        obj["status"] = 1000


def random_messages(rng: np.random.Generator, n: int, mixed: bool) -> list[bytes]:
    """Random plain records; ``mixed`` varies value types per record and adds bad ones."""
    tz = timezone(timedelta(hours=5, minutes=30))
    out = []
    for i in range(n):
        t = round(T0 + float(rng.uniform(0, 3600)), 3)
        lat = round(float(rng.lognormal(3, 1.2)), 3)
        status = int(rng.choice([200, 200, 200, 201, 404, 429, 500, 503]))
        obj: dict[str, Any] = {
            "ts": t,
            "service": SERVICES[i % 3],
            "version": VERSIONS[int(rng.integers(3))],
            "status": status,
            "latency_ms": lat,
            "zone": ZONES[int(rng.integers(3))],
            "route": f"/r{int(rng.integers(20))}",
            "host": f"h{int(rng.integers(50))}",
        }
        if rng.random() < 0.2:
            obj["error"] = bool(rng.random() < 0.5)
        if rng.random() < 0.3:
            obj["cohort"] = str(rng.choice(["canary", "baseline"]))
            obj["bake"] = f"{obj['service']}-v42"
        if not mixed:
            obj["ts"] = datetime.fromtimestamp(t, UTC).isoformat().replace("+00:00", "Z")
            out.append(orjson.dumps(obj))
            continue
        _mix(rng, obj, t, lat, status, tz)
        raw = orjson.dumps(obj)
        if rng.random() < 0.02:
            raw = raw[: len(raw) // 2]
        out.append(raw)
    return out


@pytest.mark.parametrize("mixed", [False, True], ids=["homogeneous", "mixed"])
def test_decode_matches_per_record_reference(mixed: bool) -> None:
    """On 5,000 seeded random records, columns and rejections match a per-record reference."""
    msgs = random_messages(np.random.default_rng(20261128), 5000, mixed)
    r = decode_batch(msgs, PRESETS["plain"])
    expected = [reference(m) for m in msgs]
    good = [i for i, e in enumerate(expected) if isinstance(e, dict)]
    rows: list[dict[str, Any]] = [e for e in expected if isinstance(e, dict)]
    assert [(x.index, x.reason) for x in r.rejections] == [
        (i, e) for i, e in enumerate(expected) if isinstance(e, str)
    ]
    if mixed:
        assert len(r.rejections) > 100 and len(set(r.rejected_by_reason)) >= 5
    b: RecordBatch = r.batch
    assert b.index.tolist() == good
    np.testing.assert_allclose(b.time_s, [e["time_s"] for e in rows], rtol=0, atol=1e-6)
    np.testing.assert_array_equal(b.latency_s, [e["latency_s"] for e in rows])
    np.testing.assert_array_equal(b.status, [e["status"] for e in rows])
    np.testing.assert_array_equal(b.error, [e["error"] for e in rows])
    assert b.cohort is not None and b.bake is not None
    for name, cat in [
        ("service", b.service),
        ("version", b.version),
        ("cohort", b.cohort),
        ("bake", b.bake),
        *b.segments.items(),
    ]:
        assert cat.values().tolist() == [e[name] for e in rows], name
        assert list(cat.categories) == sorted(set(cat.categories))
