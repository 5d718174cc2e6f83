"""Tests of field maps: validation messages, unknown keys, presets overridden and frozen."""

from __future__ import annotations

from typing import Any

import pytest

from monitor.errors import ConfigError
from monitor.records.fieldmap import PRESETS, FieldMap

PLAIN = PRESETS["plain"]


def test_bad_unit_is_a_config_error_naming_the_field() -> None:
    """An unknown time or latency unit raises ConfigError naming the field and the value."""
    with pytest.raises(ConfigError, match=r'"time_unit" must be one of .*got "iso"') as e:
        FieldMap.from_dict({"preset": "plain", "time_unit": "iso"})
    assert e.value.value == "iso"
    with pytest.raises(ConfigError, match='"latency_unit"'):
        FieldMap(time="ts", service="s", version="v", status="c", latency="l", latency_unit="h")  # type: ignore[arg-type]


def test_unknown_key_lists_valid_keys() -> None:
    """from_dict rejects unknown keys with a message listing the valid ones."""
    with pytest.raises(ConfigError, match=r'"latency_col".*valid keys: "preset", .*"time"') as e:
        FieldMap.from_dict({"preset": "plain", "latency_col": "x"})
    assert e.value.value == ["latency_col"]


@pytest.mark.parametrize(
    ("d", "match"),
    [
        ({"preset": "nginx"}, 'unknown field map preset "nginx"; presets: "plain", "envoy"'),
        ({"time": "ts", "service": "s", "version": "v", "status": "c"}, '"latency"'),
        ({"preset": "plain", "latency": "a..b"}, '"latency" must be a dotted field path'),
        ({"preset": "plain", "status": 5}, '"status" must be a dotted field path'),
        ({"preset": "plain", "version": None, "cohort": None}, '"version" or an explicit'),
        ({"preset": "plain", "status": None, "error": None}, '"status" or a boolean "error"'),
        ({"preset": "plain", "service": None}, '"service" or "service_default"'),
        ({"preset": "plain", "error_status_min": 50}, '"error_status_min" must be'),
        ({"preset": "plain", "error_statuses": [429, "x"]}, '"error_statuses" entries'),
        ({"preset": "plain", "segments": {"zone": ""}}, '"segments.zone"'),
        ({"preset": "plain", "segments": ["zone"]}, '"segments" must map'),
    ],
)
def test_invalid_field_map_raises_config_error(d: dict[str, Any], match: str) -> None:
    """Invalid field map settings raise ConfigError with a message naming the field."""
    with pytest.raises(ConfigError, match=match):
        FieldMap.from_dict(d)


def test_from_dict_overrides_preset_and_freezes() -> None:
    """Keys next to a preset override it; the result is frozen and hashable."""
    fm = FieldMap.from_dict(
        {"preset": "envoy", "version": "x_version", "segments": {"zone": "x_zone"}}
    )
    assert fm.version == "x_version" and fm.time == "start_time"
    assert dict(fm.segments) == {"zone": "x_zone"}
    assert fm.error_statuses == frozenset({0})
    assert hash(fm) == hash(FieldMap.from_dict({"preset": "envoy", "version": "x_version"}))
    with pytest.raises(AttributeError):
        fm.time = "x"  # type: ignore[misc]
    assert FieldMap.from_dict({"preset": "plain"}) == PLAIN
