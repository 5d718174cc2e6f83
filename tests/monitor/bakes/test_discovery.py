"""Tests of auto-discovery of new versions."""

from __future__ import annotations

import orjson
import pytest

from monitor.bakes.discovery import Discovery, DiscoverySettings
from monitor.bakes.spec import BakeSpec, Registry
from monitor.errors import ConfigError
from monitor.records.decode import decode_batch
from monitor.records.fieldmap import PRESETS


def _batch(rows: list[tuple[float, str, str]]):  # type: ignore[no-untyped-def]
    lines = [
        orjson.dumps({"ts": t, "service": s, "version": v, "status": 200, "latency_ms": 5})
        for t, s, v in rows
    ]
    return decode_batch(lines, PRESETS["plain"]).batch


def test_new_version_next_to_serving_one_becomes_a_bake() -> None:
    """A new version with enough traffic beside the serving one is proposed once, as canary."""
    d = Discovery(
        DiscoverySettings(enabled=True, min_requests=50, policy={"min_canary_requests": 100})
    )
    reg = Registry()
    assert d.observe(_batch([(1000.0 + i, "cart", "v1") for i in range(100)]), reg) == []
    mixed = [(1100.0 + i, "cart", "v2" if i % 2 else "v1") for i in range(120)]
    specs = d.observe(_batch(mixed), reg)
    assert [(s.id, s.canary_versions, s.baseline_versions) for s in specs] == [
        ("auto-cart-v2", ("v2",), ("v1",))
    ]
    assert specs[0].policy.min_canary_requests == 100 and specs[0].start_s == 1219.0
    assert d.observe(_batch(mixed), reg) == []  # proposed once


def test_versions_already_baked_and_the_cap_are_respected() -> None:
    """No proposal for versions in a bake; beyond max_active within the window, none either."""
    d = Discovery(DiscoverySettings(enabled=True, min_requests=10, max_active=1))
    reg = Registry(
        [
            BakeSpec.from_dict(
                {
                    "id": "auto-x-v9",
                    "service": "x",
                    "canary": "v9",
                    "baseline": "v8",
                    "start": 1000.0,
                }
            )
        ]
    )
    rows = [(1000.0 + i, "cart", "v1") for i in range(20)] + [
        (1020.0 + i, "cart", "v2" if i % 2 else "v1") for i in range(100)
    ]
    assert d.observe(_batch(rows), reg) == []
    assert d.skipped_cap == 1
    d2 = Discovery(DiscoverySettings(enabled=True, min_requests=10))
    reg2 = Registry(
        [BakeSpec.from_dict({"id": "b", "service": "cart", "canary": "v2", "baseline": "v1"})]
    )
    assert d2.observe(_batch(rows), reg2) == []


def test_disabled_or_bad_settings() -> None:
    """Disabled discovery proposes nothing; bad settings fail at start-up with the key."""
    d = Discovery(DiscoverySettings())
    assert d.observe(_batch([(1.0, "cart", "v2")] * 500), Registry()) == []
    with pytest.raises(ConfigError, match="unknown \\[discovery\\] key"):
        DiscoverySettings.from_dict({"enable": True})
    with pytest.raises(ConfigError, match='policy field "alpha"'):
        DiscoverySettings.from_dict({"enabled": True, "policy": {"alpha": 3}})
