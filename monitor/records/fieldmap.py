"""Field maps: where the fields of one request live in a JSON log object, with presets.

A :class:`FieldMap` names dotted paths for event time, service, version (or explicit cohort and
bake labels), status or error flag, latency with its unit, and segment fields; :data:`PRESETS`
holds maps for the project's plain access log, Envoy's JSON access log and Argo Rollouts pods.
:func:`monitor.records.decode.decode_batch` decodes batches with them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

import orjson

from monitor.errors import ConfigError

__all__ = ["PRESETS", "UNIT_DIVISOR", "FieldMap", "LatencyUnit", "TimeUnit", "show_value"]

TimeUnit = Literal["s", "ms", "us", "ns"]
LatencyUnit = Literal["s", "ms", "us", "ns"]
UNIT_DIVISOR = {"s": 1.0, "ms": 1e3, "us": 1e6, "ns": 1e9}
_DETAIL_VALUE_CHARS = 80


# ---------------------------------------------------------------------------- field map


@dataclass(frozen=True, kw_only=True)
class FieldMap:
    """Where the fields of one request live in a JSON log object.

    Paths are dotted for nesting (``"request.latency"``); a key that itself contains dots
    (``"kubernetes.labels.app.kubernetes.io/name"``) is found too. ``time_unit`` is the unit of
    numeric times; ISO-8601 strings are always recognised. ``version`` may be None when the
    records carry an explicit ``cohort`` label ("canary"/"baseline"); a record needs a version
    or a cohort label. ``error`` names a boolean field that, when it holds a bool, overrides the
    status; any other value there (null, an error message, a number) is ignored. Otherwise a
    status counts as an error when it is ``>= error_status_min`` or in ``error_statuses``.
    Segment values that are absent become ``""``. ``service_default`` is used for records
    without a service (e.g. one topic per service).

    >>> fm = FieldMap.from_dict({"preset": "plain", "latency": "request.latency_s",
    ...                          "latency_unit": "s"})
    >>> fm.latency, fm.time
    ('request.latency_s', 'ts')
    """

    time: str
    latency: str
    time_unit: TimeUnit = "s"
    latency_unit: LatencyUnit = "ms"
    service: str | None = None
    service_default: str | None = None
    version: str | None = None
    cohort: str | None = None
    bake: str | None = None
    status: str | None = None
    error: str | None = None
    error_status_min: int = 500
    error_statuses: frozenset[int] = frozenset()
    segments: Mapping[str, str] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        for name in ("time", "latency"):
            _check_path(name, getattr(self, name), optional=False)
        for name in ("service", "version", "cohort", "bake", "status", "error"):
            _check_path(name, getattr(self, name), optional=True)
        for name in ("time_unit", "latency_unit"):
            unit = getattr(self, name)
            if unit not in UNIT_DIVISOR:
                units = ", ".join(f'"{u}"' for u in UNIT_DIVISOR)
                msg = f'"{name}" must be one of {units}, got {show_value(unit)}'
                if name == "time_unit":
                    msg += " (ISO-8601 strings are always recognised)"
                raise ConfigError(msg, value=unit)
        if self.service_default is not None and (
            not isinstance(self.service_default, str) or not self.service_default.strip()
        ):
            msg = f'"service_default" must be a non-empty string, got {show_value(self.service_default)}'
            raise ConfigError(msg, value=self.service_default)
        if self.service is None and self.service_default is None:
            msg = 'field map needs "service" or "service_default"'
            raise ConfigError(msg, value=None)
        if self.version is None and self.cohort is None:
            msg = 'field map needs "version" or an explicit "cohort" label field'
            raise ConfigError(msg, value=None)
        if self.status is None and self.error is None:
            msg = 'field map needs "status" or a boolean "error" field'
            raise ConfigError(msg, value=None)
        lo = self.error_status_min
        if type(lo) is not int or not 100 <= lo <= 1000:
            msg = f'"error_status_min" must be an integer in [100, 1000], got {show_value(lo)}'
            raise ConfigError(msg, value=lo)
        statuses = self.error_statuses
        if isinstance(statuses, str | bytes | Mapping) or not isinstance(statuses, Iterable):
            msg = f'"error_statuses" must be a list of integers, got {show_value(statuses)}'
            raise ConfigError(msg, value=statuses)
        for s in statuses:
            if type(s) is not int or not 0 <= s <= 999:
                msg = f'"error_statuses" entries must be integers in [0, 999], got {show_value(s)}'
                raise ConfigError(msg, value=s)
        object.__setattr__(self, "error_statuses", frozenset(statuses))
        if not isinstance(self.segments, Mapping):
            msg = f'"segments" must map segment names to paths, got {show_value(self.segments)}'
            raise ConfigError(msg, value=self.segments)
        for seg, path in self.segments.items():
            if not isinstance(seg, str) or not seg:
                msg = f'"segments" names must be non-empty strings, got {show_value(seg)}'
                raise ConfigError(msg, value=seg)
            _check_path(f"segments.{seg}", path, optional=False)
        object.__setattr__(self, "segments", MappingProxyType(dict(self.segments)))

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> FieldMap:
        """Build a field map from plain config values, optionally on top of ``"preset"``.

        Keys given next to a preset replace the preset's values (``segments`` as a whole).
        """
        valid = sorted(f.name for f in dataclasses.fields(cls))
        unknown = sorted(k for k in d if k != "preset" and k not in valid)
        if unknown:
            keys = ", ".join(f'"{k}"' for k in unknown)
            allowed = ", ".join(f'"{k}"' for k in ["preset", *valid])
            msg = f"unknown field map key(s) {keys}; valid keys: {allowed}"
            raise ConfigError(msg, value=unknown)
        values = {k: v for k, v in d.items() if k != "preset"}
        if "preset" not in d:
            missing = [k for k in ("time", "latency") if k not in values]
            if missing:
                keys = ", ".join(f'"{k}"' for k in missing)
                msg = f'field map without a "preset" needs {keys}'
                raise ConfigError(msg, value=missing)
            return cls(**values)
        preset = d["preset"]
        if not isinstance(preset, str) or preset not in PRESETS:
            names = ", ".join(f'"{p}"' for p in PRESETS)
            msg = f"unknown field map preset {show_value(preset)}; presets: {names}"
            raise ConfigError(msg, value=preset)
        return dataclasses.replace(PRESETS[preset], **values)


def _check_path(name: str, path: object, *, optional: bool) -> None:
    if path is None and optional:
        return
    if not isinstance(path, str) or not path or "" in path.split("."):
        msg = f'"{name}" must be a dotted field path like "request.latency", got {show_value(path)}'
        raise ConfigError(msg, value=path)


PRESETS: dict[str, FieldMap] = {
    # The project's own access-log shape (what the simulator writes).
    "plain": FieldMap(
        time="ts",
        time_unit="s",
        service="service",
        version="version",
        cohort="cohort",
        bake="bake",
        status="status",
        error="error",
        latency="latency_ms",
        latency_unit="ms",
        segments={"zone": "zone", "route": "route", "host": "host"},
    ),
    # Envoy JSON access log (json_format or typed_json_format) with the operator names as keys:
    #   start_time: "%START_TIME%", response_code: "%RESPONSE_CODE%", duration: "%DURATION%",
    #   authority: "%REQ(:AUTHORITY)%", upstream_cluster: "%UPSTREAM_CLUSTER%",
    #   route_name: "%ROUTE_NAME%", upstream_host: "%UPSTREAM_HOST%".
    # Envoy has no version; this preset takes it from upstream_cluster, which fits the usual
    # Envoy canary (weighted_clusters, one cluster per version). With one cluster for both
    # versions, have the app send an X-Version response header, log it as
    # "x_version": "%RESP(X-VERSION)%" and set version = "x_version". Response code 0 (no
    # response sent, e.g. downstream reset) counts as an error.
    "envoy": FieldMap(
        time="start_time",
        service="authority",
        version="upstream_cluster",
        status="response_code",
        error_statuses=frozenset({0}),
        latency="duration",
        latency_unit="ms",
        segments={"route": "route_name", "host": "upstream_host"},
    ),
}
# The plain shape shipped by Fluent Bit's kubernetes filter (Merge_Log on): the version is Argo
# Rollouts' rollouts-pod-template-hash pod label, so cohorts match Argo's stable and canary
# ReplicaSets. For Vector, use kubernetes.pod_labels.* and kubernetes.pod_name instead.
PRESETS["argo"] = dataclasses.replace(
    PRESETS["plain"],
    version="kubernetes.labels.rollouts-pod-template-hash",
    segments={"zone": "zone", "route": "route", "host": "kubernetes.pod_name"},
)


def show_value(v: Any) -> str:
    """A value for an error message: JSON-ish (strings in double quotes), truncated."""
    try:
        text = orjson.dumps(v).decode()
    except TypeError:
        text = repr(v)
    if len(text) > _DETAIL_VALUE_CHARS:
        text = text[: _DETAIL_VALUE_CHARS - 1] + "…"
    return text
