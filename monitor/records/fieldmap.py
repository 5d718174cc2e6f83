"""Field maps: where the fields of one request live in a JSON log object, with presets.

A :class:`FieldMap` names dotted paths for event time, service, version (or explicit cohort and
bake labels), status or error flag, latency with its unit, and segment fields; :data:`PRESETS`
holds maps for the project's plain access log, Argo Rollouts pods, and the default JSON access
logs of Envoy, Envoy Gateway and Istio, and Flagger workloads. A label field (service, version,
cohort, bake) may be read from several :class:`LabelSource` paths in turn, each with a regex that
picks the label out of a longer value (``outbound|9080|v2|reviews.default.svc.cluster.local``).
:func:`monitor.records.decode.decode_batch` decodes batches with them.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from types import MappingProxyType
from typing import Any, Literal

import orjson

from monitor.errors import ConfigError

__all__ = [
    "LABEL_FIELDS",
    "PRESETS",
    "UNIT_DIVISOR",
    "FieldMap",
    "LabelSource",
    "LatencyUnit",
    "TimeUnit",
    "resolve_path",
    "show_value",
]

TimeUnit = Literal["s", "ms", "us", "ns"]
LatencyUnit = Literal["s", "ms", "us", "ns"]
UNIT_DIVISOR = {"s": 1.0, "ms": 1e3, "us": 1e6, "ns": 1e9}
_DETAIL_VALUE_CHARS = 80
LABEL_FIELDS = ("service", "version", "cohort", "bake")  # the fields that may have sources


# ---------------------------------------------------------------------------- label sources


@dataclass(frozen=True)
class LabelSource:
    """One place to read a label from: a path, and optionally a regex that picks the label.

    The label is the first non-empty group of the pattern's first match (``re.search``), or the
    whole match when the pattern has no groups; no match means absent, so the next source of
    the field is tried.

    >>> src = LabelSource("authority", r"^([^:]+)")
    >>> src.extract("reviews:9080"), src.extract(":9080")
    ('reviews', '')
    """

    path: str
    pattern: str | None = None

    def __post_init__(self) -> None:
        _check_path("sources", self.path, optional=False)
        if self.pattern is not None:
            if not isinstance(self.pattern, str) or not self.pattern:
                msg = f"a source pattern must be a non-empty regex, got {show_value(self.pattern)}"
                raise ConfigError(msg, value=self.pattern)
            try:
                re.compile(self.pattern)
            except re.error as exc:
                msg = f'source pattern {show_value(self.pattern)} of "{self.path}" is not a regex: {exc}'
                raise ConfigError(msg, value=self.pattern) from exc

    @cached_property
    def _regex(self) -> re.Pattern[str] | None:
        return None if self.pattern is None else re.compile(self.pattern)

    def extract(self, value: str) -> str:
        """The label in ``value`` ("" when the pattern does not match)."""
        rx = self._regex
        if rx is None:
            return value
        m = rx.search(value)
        if m is None:
            return ""
        if rx.groups == 0:
            return m.group(0)
        return next((g for g in m.groups() if g), "")

    def describe(self) -> str:
        return (
            f'"{self.path}"'
            if self.pattern is None
            else f'"{self.path}" ~ {show_value(self.pattern)}'
        )

    @classmethod
    def parse(cls, name: str, value: Any) -> LabelSource:
        """A source from config: a path string or a ``{path, pattern}`` table."""
        if isinstance(value, LabelSource):
            return value
        if isinstance(value, str):
            return cls(value)
        if isinstance(value, Mapping) and set(value) <= {"path", "pattern"} and "path" in value:
            return cls(value["path"], value.get("pattern"))
        msg = (
            f'"sources.{name}" entries must be a path or {{path, pattern}}, got {show_value(value)}'
        )
        raise ConfigError(msg, value=value)


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
    sources: Mapping[str, tuple[LabelSource, ...]] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        self._init_sources()
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

    def _init_sources(self) -> None:
        """Normalise ``sources``; a field's own path, when set and not the first source, wins."""
        if not isinstance(self.sources, Mapping):
            msg = (
                f'"sources" must map label fields to lists of paths, got {show_value(self.sources)}'
            )
            raise ConfigError(msg, value=self.sources)
        out: dict[str, tuple[LabelSource, ...]] = {}
        for name, entries in self.sources.items():
            if name not in LABEL_FIELDS:
                names = ", ".join(f'"{n}"' for n in LABEL_FIELDS)
                msg = f'"sources" keys must be label fields ({names}), got {show_value(name)}'
                raise ConfigError(msg, value=name)
            items: Any = entries
            if isinstance(items, str | Mapping | LabelSource) or not isinstance(items, Iterable):
                items = [items]
            srcs = tuple(LabelSource.parse(name, e) for e in items)
            if not srcs:
                continue
            own = getattr(self, name)
            if own is None or own == srcs[0].path:
                object.__setattr__(self, name, srcs[0].path)
                out[name] = srcs
        object.__setattr__(self, "sources", MappingProxyType(out))

    def label_sources(self, name: str) -> tuple[LabelSource, ...]:
        """Where label field ``name`` is read from, in order (empty when it is not mapped)."""
        if name in self.sources:
            return self.sources[name]
        path = getattr(self, name)
        return () if path is None else (LabelSource(path),)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> FieldMap:
        """Build a field map from plain config values, optionally on top of ``"preset"``.

        Keys given next to a preset replace the preset's values (``segments`` as a whole, and
        ``version = "x"`` replaces the preset's sources of the version too).
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
        base = PRESETS[preset]
        kept = {k: v for k, v in base.sources.items() if k not in values}
        given = values.get("sources", {})
        if isinstance(given, Mapping):
            values["sources"] = {**kept, **given}
            for name in given:  # sources given for a field replace the preset's path of it
                if name in LABEL_FIELDS and name not in values:
                    values[name] = None
        return dataclasses.replace(base, **values)


def _check_path(name: str, path: object, *, optional: bool) -> None:
    if path is None and optional:
        return
    if not isinstance(path, str) or not path or "" in path.split("."):
        msg = f'"{name}" must be a dotted field path like "request.latency", got {show_value(path)}'
        raise ConfigError(msg, value=path)


# Patterns shared by the proxy presets. Authorities are "host", "host:port" or "[v6]:port".
_HOST = r"^\[?([^\]]*?)\]?(?::[0-9]*)?$"  # the host, without the port
_SHORT_HOST = r"^\[?([^.:\]]+)"  # the first DNS label: "reviews" of "reviews.ns.svc:9080"
# Istio clusters: "outbound|9080|v2|reviews.default.svc.cluster.local" (direction, port,
# subset, FQDN); the subset is the version when a DestinationRule names one, else the host's
# first label ("reviews-v2", "podinfo-canary"). Inbound clusters ("inbound|9080||") name the
# pod's own service, not a version.
_ISTIO_SUBSET = r"^outbound\|[0-9]*\|([^|]+)\|"
_ISTIO_HOST = r"^outbound\|[0-9]*\|[^|]*\|([^.|]+)"

# Envoy's default format (docs: configuration/observability/access_log/usage.rst, "Default
# Format String") as a json_format dictionary with snake_case keys: start_time, method, path,
# protocol, response_code, response_flags, bytes_received, bytes_sent, duration,
# upstream_service_time, x_forwarded_for, user_agent, request_id, authority, upstream_host.
# It names no version: add "upstream_cluster": "%UPSTREAM_CLUSTER%" (one cluster per version,
# weighted_clusters) or "x_version": "%RESP(X-VERSION)%"; without either the endpoint address
# (upstream_host) is the version, so a bake names its canary hosts. Response code 0 (no
# response sent, e.g. downstream reset) counts as an error.
_ENVOY = FieldMap(
    time="start_time",
    service="authority",
    version="upstream_cluster",
    status="response_code",
    error_statuses=frozenset({0}),
    latency="duration",
    latency_unit="ms",
    segments={"route": "route_name", "host": "upstream_host"},
    sources={
        "service": (LabelSource("authority", _HOST),),
        "version": (
            LabelSource("upstream_cluster"),
            LabelSource("x_version"),
            LabelSource("upstream_host", r"^(?:[a-z]+://)?(.+)$"),
        ),
    },
)

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
    "envoy": _ENVOY,
    # Envoy Gateway's default JSON access log (internal/xds/translator/accesslog.go,
    # EnvoyJSONLogFields): Envoy's default operators under dashed keys (":authority",
    # "x-request-id", "x-envoy-upstream-service-time") plus upstream_cluster, route_name and
    # addresses. Its cluster is one per route rule ("httproute/default/checkout/rule/0"), shared
    # by the weighted backendRefs of that rule, so it is a segment, not the version: the version
    # is "x-version" when the EnvoyProxy's format adds "%RESP(X-VERSION)%", else the endpoint.
    "envoy-gateway": dataclasses.replace(
        _ENVOY,
        service=":authority",
        version="x-version",
        segments={"route": "upstream_cluster", "host": "upstream_host"},
        sources={
            "service": (LabelSource(":authority", _HOST),),
            "version": (
                LabelSource("x-version"),
                LabelSource("upstream_host", r"^(?:[a-z]+://)?(.+)$"),
            ),
        },
    ),
    # Istio's default JSON access log (meshConfig accessLogEncoding: JSON;
    # pilot/pkg/model/telemetry_logging.go, EnvoyJSONLogFormatIstio): Envoy's default keys plus
    # upstream_cluster (%UPSTREAM_CLUSTER_RAW%), route_name and addresses. Service: the first
    # label of the authority ("reviews" of "reviews:9080" or "reviews.default.svc.cluster.local");
    # version: the outbound cluster's subset, else its host's first label, else the pod's
    # "version" label (Fluent Bit kubernetes filter; inbound sidecar logs have no version).
    "istio": dataclasses.replace(
        _ENVOY,
        version="upstream_cluster",
        segments={"route": "route_name", "host": "upstream_host"},
        sources={
            "service": (
                LabelSource("authority", _SHORT_HOST),
                LabelSource("upstream_cluster", _ISTIO_HOST),
            ),
            "version": (
                LabelSource("upstream_cluster", _ISTIO_SUBSET),
                LabelSource("upstream_cluster", _ISTIO_HOST),
                LabelSource("kubernetes.labels.version"),
            ),
        },
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
# Flagger: the canary workload is "<name>" and the primary (baseline) "<name>-primary", and
# Flagger gives the primary's pods the selector label with the same suffix (app, name or
# app.kubernetes.io/name). Plain lines shipped by Fluent Bit's kubernetes filter: the version
# is that label ("podinfo" = canary, "podinfo-primary" = baseline), the service is it without
# "-primary", so a bake is {service "podinfo", canary "podinfo", baseline "podinfo-primary"}.
_FLAGGER_LABELS = ("app", "name", "app.kubernetes.io/name")
PRESETS["flagger"] = dataclasses.replace(
    PRESETS["plain"],
    service=None,
    version=None,
    sources={
        "service": tuple(
            LabelSource(f"kubernetes.labels.{k}", r"^(.+?)(?:-primary)?$") for k in _FLAGGER_LABELS
        ),
        "version": tuple(LabelSource(f"kubernetes.labels.{k}") for k in _FLAGGER_LABELS),
    },
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


def resolve_path(obj: dict[str, Any], parts: tuple[str, ...]) -> Any:
    """The value at the dotted path ``parts`` of ``obj`` (None where absent); nested objects
    first, then keys that contain dots themselves."""
    cur: Any = obj
    for p in parts:
        if type(cur) is not dict:
            break
        cur = cur.get(p)
    else:
        if cur is not None:
            return cur
    return _resolve_dotted(obj, parts, 0)


def _resolve_dotted(obj: dict[str, Any], parts: tuple[str, ...], start: int) -> Any:
    # Slow path for keys that contain dots themselves: try the longest key first.
    for end in range(len(parts), start, -1):
        key = ".".join(parts[start:end])
        if key in obj:
            v = obj[key]
            if end == len(parts):
                return v
            if type(v) is dict:
                found = _resolve_dotted(v, parts, end)
                if found is not None:
                    return found
    return None
