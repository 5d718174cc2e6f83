"""Tests of the access-log presets against fixtures shaped like each project's documented format.

The fixtures in ``fixtures/`` follow the field lists of Envoy's default format (usage.rst),
Envoy Gateway's ``EnvoyJSONLogFields``, Istio's ``EnvoyJSONLogFormatIstio`` and Flagger's
``<name>``/``<name>-primary`` workloads shipped by Fluent Bit's kubernetes filter.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from monitor.bakes.spec import BakeSpec, Registry
from monitor.bakes.tagging import BASELINE, CANARY, tag
from monitor.errors import ConfigError
from monitor.records.columns import DecodeResult
from monitor.records.decode import (
    REASON_BAD_LATENCY,
    REASON_BAD_STATUS,
    REASON_BAD_TIME,
    REASON_MISSING_FIELD,
    decode_batch,
)
from monitor.records.fieldmap import PRESETS, FieldMap, LabelSource

FIXTURES = Path(__file__).parent / "fixtures"


def lines(preset: str) -> list[bytes]:
    return (FIXTURES / f"{preset}.jsonl").read_bytes().splitlines()


def decode(preset: str, msgs: list[bytes] | None = None) -> DecodeResult:
    return decode_batch(lines(preset) if msgs is None else msgs, PRESETS[preset])


def iso(s: str) -> float:
    return datetime.fromisoformat(s.replace("Z", "+00:00")).astimezone(UTC).timestamp()


def changed(preset: str, row: int, **fields: Any) -> bytes:
    """Fixture line ``row`` of ``preset`` with ``fields`` replaced (None values removed)."""
    obj = orjson.loads(lines(preset)[row])
    for k, v in fields.items():
        if v is None:
            obj.pop(k, None)
        else:
            obj[k] = v
    return orjson.dumps(obj)


# ---------------------------------------------------------------------------- envoy


def test_envoy_default_format_decodes() -> None:
    """Envoy's default operators: service is the authority without port, the endpoint is the
    version (the default names none), duration is ms, code 0/5xx are errors."""
    r = decode("envoy")
    b = r.batch
    assert r.rejections == []
    assert b.service.values().tolist() == ["locations"] * 4
    assert b.version.values().tolist() == [
        "10.0.2.1:80",
        "10.0.2.2:80",
        "10.0.2.1:80",
        "10.0.2.2:80",
    ]
    assert b.status.tolist() == [204, 200, 503, 404]
    assert b.error.tolist() == [False, False, True, False]
    assert b.latency_s.tolist() == [0.226, 0.012, 0.003, 0.0]
    starts = ["2026-11-28T10:00:00.310Z", "2026-11-28T10:00:01.002Z", "2026-11-28T10:00:01.517Z"]
    np.testing.assert_allclose(b.time_s[:3], [iso(t) for t in starts], rtol=0, atol=1e-6)
    hosts = ["tcp://10.0.2.1:80", "10.0.2.2:80", "10.0.2.1:80", "10.0.2.2:80"]
    assert b.segments["host"].values().tolist() == hosts
    assert b.segments["route"].values().tolist() == [""] * 4


def test_envoy_cluster_or_version_header_wins_over_endpoint() -> None:
    """An added %UPSTREAM_CLUSTER% (or x_version) is the version before the endpoint."""
    msgs = [
        changed("envoy", 0, upstream_cluster="locations-v7"),
        changed("envoy", 1, x_version="v8"),
        changed("envoy", 2, upstream_cluster="-", x_version="v8"),
    ]
    assert decode("envoy", msgs).batch.version.values().tolist() == ["locations-v7", "v8", "v8"]


# ---------------------------------------------------------------------------- envoy gateway


def test_envoy_gateway_default_format_decodes() -> None:
    """Envoy Gateway's default: ":authority" is the service, the rule's cluster a segment."""
    r = decode("envoy-gateway")
    b = r.batch
    assert r.rejections == []
    assert b.service.values().tolist() == ["www.example.com"] * 4
    assert b.version.values().tolist() == ["10.244.0.12:3000"] + ["10.244.0.15:3000"] * 3
    assert b.status.tolist() == [200, 200, 503, 200]
    assert b.error.tolist() == [False, False, True, False]
    assert b.latency_s.tolist() == [0.004, 0.007, 0.001, 0.009]
    assert b.time_s[0] == pytest.approx(iso("2026-11-28T10:00:00.101Z"), abs=1e-6)
    rules = [f"httproute/default/backend/rule/{i}" for i in (0, 0, 0, 1)]
    assert b.segments["route"].values().tolist() == rules


def test_envoy_gateway_version_header_when_added() -> None:
    """An EnvoyProxy format that adds "x-version": "%RESP(X-VERSION)%" gives real versions."""
    msgs = [changed("envoy-gateway", i, **{"x-version": f"v{i}"}) for i in range(2)]
    assert decode("envoy-gateway", msgs).batch.version.values().tolist() == ["v0", "v1"]


# ---------------------------------------------------------------------------- istio


def test_istio_default_format_decodes_cluster_variants() -> None:
    """Istio: service from any authority shape, version from the subset, else the cluster's
    host, else (inbound) the pod's version label."""
    r = decode("istio")
    b = r.batch
    assert r.rejections == []
    assert b.service.values().tolist() == ["reviews"] * 6
    assert b.version.values().tolist() == ["v1", "v2", "v2", "reviews-v3", "v1", "v2"]
    assert b.status.tolist() == [200, 200, 503, 200, 0, 200]
    assert b.error.tolist() == [False, False, True, False, True, False]
    assert b.latency_s.tolist() == [0.023, 0.031, 0.002, 0.018, 5.001, 0.012]
    assert b.time_s[-1] == pytest.approx(iso("2026-11-28T10:00:02.901Z"), abs=1e-6)
    assert b.segments["route"].values().tolist() == ["default"] * 6


@pytest.mark.parametrize(
    ("authority", "cluster", "service", "version"),
    [
        ("reviews", "outbound|9080|v2|reviews.default.svc.cluster.local", "reviews", "v2"),
        (
            "reviews.default.svc.cluster.local",
            "outbound|9080||reviews.default.svc.cluster.local",
            "reviews",
            "reviews",
        ),
        ("[fd00::1]:9080", "outbound|9080|canary|ratings.prod.svc.cluster.local", "fd00", "canary"),
        ("-", "outbound|9080|v2|reviews.default.svc.cluster.local", "reviews", "v2"),
        (
            "podinfo:9898",
            "outbound|9898||podinfo-canary.test.svc.cluster.local",
            "podinfo",
            "podinfo-canary",
        ),
    ],
)
def test_istio_label_variants(authority: str, cluster: str, service: str, version: str) -> None:
    """Authority with or without port or domain (or absent) and clusters with or without a
    subset give a clean service and version."""
    msg = changed("istio", 0, authority=authority, upstream_cluster=cluster)
    b = decode("istio", [msg]).batch
    assert (b.service.values().tolist(), b.version.values().tolist()) == ([service], [version])


def test_istio_default_bake_ids_are_valid_and_tag() -> None:
    """The default id SERVICE-CANARY built from decoded labels is a valid bake id, and a bake
    of v2 against v1 tags the outbound and inbound lines."""
    b = decode("istio").batch
    pairs = set(zip(b.service.values().tolist(), b.version.values().tolist(), strict=True))
    for service, version in pairs:
        BakeSpec.from_dict(
            {"id": f"{service}-{version}", "service": service, "canary": version, "baseline": "x"}
        )
    spec = {"id": "reviews-v2", "service": "reviews", "canary": "v2", "baseline": "v1"}
    t = tag(b, Registry([BakeSpec.from_dict(spec)]))
    assert t.bake.tolist() == [0, 0, 0, -1, 0, 0]
    assert t.cohort[[0, 1, 5]].tolist() == [BASELINE, CANARY, CANARY]


# ---------------------------------------------------------------------------- flagger


def test_flagger_preset_decodes_name_and_primary() -> None:
    """Flagger: "<name>" is the canary version, "<name>-primary" the baseline; the service is
    the name, from the app, name or app.kubernetes.io/name label."""
    r = decode("flagger")
    b = r.batch
    assert r.rejections == []
    assert b.service.values().tolist() == ["podinfo"] * 3 + ["frontend"] * 2
    versions = ["podinfo-primary", "podinfo", "podinfo", "frontend-primary", "frontend"]
    assert b.version.values().tolist() == versions
    assert b.status.tolist() == [200, 200, 500, 200, 404]
    assert b.error.tolist() == [False, False, True, False, False]
    assert b.latency_s.tolist() == [0.0125, 0.014, 0.00325, 0.00975, 0.001]
    assert b.time_s[0] == 1795860000.125
    assert b.segments["host"].values().tolist()[0] == "podinfo-primary-7d9f8c5b6-abcde"
    assert b.segments["zone"].values().tolist()[:2] == ["eu-west-1a", "eu-west-1b"]
    spec = {"id": "podinfo-canary", "service": "podinfo", "canary": "podinfo"}
    t = tag(b, Registry([BakeSpec.from_dict({**spec, "baseline": "podinfo-primary"})]))
    assert t.bake.tolist() == [0, 0, 0, -1, -1]
    assert t.cohort[:3].tolist() == [BASELINE, CANARY, CANARY]


# ---------------------------------------------------------------------------- rejections

BAD = [
    ("envoy", changed("envoy", 0, upstream_host="-"), REASON_MISSING_FIELD, 'no "version" found in "upstream_cluster", "x_version", "upstream_host"'),
    ("envoy", changed("envoy", 0, authority=None), REASON_MISSING_FIELD, 'no "service" found in "authority"'),
    ("envoy", changed("envoy", 0, duration="-1"), REASON_BAD_LATENCY, 'field "duration" is not a finite'),
    ("envoy", changed("envoy", 0, start_time="yesterday"), REASON_BAD_TIME, 'field "start_time" is not a time'),
    ("envoy-gateway", changed("envoy-gateway", 0, upstream_host=None), REASON_MISSING_FIELD, 'no "version" found in "x-version", "upstream_host"'),
    ("envoy-gateway", changed("envoy-gateway", 0, response_code="abc"), REASON_BAD_STATUS, 'field "response_code" is not an HTTP status'),
    ("envoy-gateway", changed("envoy-gateway", 0, duration=None), REASON_MISSING_FIELD, 'missing field "duration"'),
    ("istio", changed("istio", 0, upstream_cluster="PassthroughCluster"), REASON_MISSING_FIELD, 'no "version" found in "upstream_cluster" ~'),
    ("istio", changed("istio", 5, kubernetes=None), REASON_MISSING_FIELD, '("upstream_cluster": "inbound|9080||")'),
    ("istio", changed("istio", 0, authority=None, upstream_cluster="BlackHoleCluster"), REASON_MISSING_FIELD, 'no "service" found in "authority" ~'),
    ("istio", changed("istio", 0, response_code=1200), REASON_BAD_STATUS, "HTTP status"),
    ("flagger", changed("flagger", 0, kubernetes={"pod_name": "x", "labels": {}}), REASON_MISSING_FIELD, 'no "service" found in "kubernetes.labels.app" ~'),
    ("flagger", changed("flagger", 0, latency_ms="fast"), REASON_BAD_LATENCY, 'field "latency_ms"'),
    ("flagger", changed("flagger", 0, ts=1795860000125), REASON_BAD_TIME, 'field "ts" is not a time'),
]  # fmt: skip


@pytest.mark.parametrize(("preset", "msg", "reason", "detail"), BAD)
def test_malformed_lines_are_rejected_with_reason(
    preset: str, msg: bytes, reason: str, detail: str
) -> None:
    """A malformed line of each preset is rejected alone, with its reason and a detail that
    names the field; the good line beside it still decodes."""
    good = lines(preset)[1]
    r = decode(preset, [good, msg])
    assert r.batch.index.tolist() == [0]
    assert [(x.index, x.reason) for x in r.rejections] == [(1, reason)]
    assert detail in r.rejections[0].detail


# ---------------------------------------------------------------------------- sources config


def test_sources_from_config_and_overrides() -> None:
    """[fields] sources take paths and {path, pattern} tables; a plain field next to a preset
    replaces that preset's sources; bad sources fail with the key's name."""
    fm = FieldMap.from_dict(
        {"preset": "plain", "sources": {"version": [{"path": "img", "pattern": ":(.+)$"}, "v"]}}
    )
    assert fm.version == "img"
    assert fm.label_sources("version") == (LabelSource("img", ":(.+)$"), LabelSource("v"))
    b = decode_batch(
        [orjson.dumps({"ts": 1, "service": "s", "status": 200, "latency_ms": 1, **extra})
         for extra in ({"img": "shop:v9"}, {"img": "shop", "v": "v8"})],
        fm,
    ).batch  # fmt: skip
    assert b.version.values().tolist() == ["v9", "v8"]
    istio = FieldMap.from_dict({"preset": "istio", "version": "x_version"})
    assert istio.label_sources("version") == (LabelSource("x_version"),)
    assert istio.label_sources("service") == PRESETS["istio"].label_sources("service")
    with pytest.raises(ConfigError, match='"sources" keys must be label fields'):
        FieldMap.from_dict({"preset": "plain", "sources": {"latency": ["x"]}})
    with pytest.raises(ConfigError, match="is not a regex"):
        FieldMap.from_dict(
            {"preset": "plain", "sources": {"version": [{"path": "v", "pattern": "("}]}}
        )
    with pytest.raises(ConfigError, match=r'"sources.version" entries'):
        FieldMap.from_dict({"preset": "plain", "sources": {"version": [{"paht": "v"}]}})


def test_readme_preset_examples_decode_as_documented() -> None:
    """The README's Istio and Envoy Gateway example lines decode to what it says."""
    readme = (Path(__file__).parents[3] / "README.md").read_text()
    section = readme[readme.index("### Presets") : readme.index("## Development")]
    blocks = section.split("```json\n")[1:]
    istio, gateway = (orjson.dumps(orjson.loads(b.split("```")[0])) for b in blocks[:2])
    b = decode("istio", [istio]).batch
    assert (b.service.values()[0], b.version.values()[0], b.latency_s[0]) == (
        "reviews",
        "v2",
        0.031,
    )
    b = decode("envoy-gateway", [gateway]).batch
    assert (b.service.values()[0], b.version.values()[0]) == ("www.example.com", "10.244.0.12:3000")
