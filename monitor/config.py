"""Service settings, read in exactly one place: TOML file → ``BAKEMON_*`` environment → flags.

:func:`load_settings` validates everything with messages naming the key and freezes the result;
the roles get plain values from it. Nothing reads the environment at import time.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, Literal

from monitor.bakes.discovery import DiscoverySettings
from monitor.bakes.spec import BakeSpec
from monitor.errors import ConfigError
from monitor.kafka.topics import TopicLayout
from monitor.records.fieldmap import PRESETS, FieldMap

__all__ = ["ROLES", "Settings", "load_settings"]

ROLES = ("ingest", "judge", "api")
ENV_PREFIX = "BAKEMON_"
_KAFKA_ENV_PREFIX = "BAKEMON_KAFKA_"


@dataclass(frozen=True)
class Settings:
    """Everything ``bakemon run`` needs (see README "Configuration")."""

    bootstrap_servers: str = "localhost:9092"
    topics: tuple[str, ...] = ("requests",)
    roles: tuple[str, ...] = ROLES
    topic_prefix: str = "bakemon."
    partials_partitions: int = 8
    block_offsets: int = 50_000
    flush_interval_s: float = 1.0
    checkpoint_interval_s: float = 1.0
    dead_letter: bool = True
    create_topics: bool = True
    shutdown_timeout_s: float = 10.0
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["text", "json"] = "text"
    field_map: FieldMap = PRESETS["plain"]
    kafka: Mapping[str, Any] = field(default_factory=dict)
    bakes: tuple[BakeSpec, ...] = ()
    discovery: DiscoverySettings = field(default_factory=DiscoverySettings)
    api_host: str = "0.0.0.0"
    api_port: int = 8080
    api_token: str | None = field(default=None, repr=False)
    api_protect_reads: bool = False
    stale_after_s: float = 120.0
    alertmanager_url: str | None = None
    alertmanager_resend_s: float = 60.0
    alert_ttl_s: float = 3600.0
    alerts_jsonl: str | None = None

    @property
    def layout(self) -> TopicLayout:
        return TopicLayout(self.topic_prefix, self.partials_partitions, 1, self.dead_letter)


_SCALARS: dict[str, type] = {
    "bootstrap_servers": str,
    "topic_prefix": str,
    "partials_partitions": int,
    "block_offsets": int,
    "flush_interval_s": float,
    "checkpoint_interval_s": float,
    "dead_letter": bool,
    "create_topics": bool,
    "shutdown_timeout_s": float,
    "log_level": str,
    "log_format": str,
    "api_host": str,
    "api_port": int,
    "api_token": str,
    "api_protect_reads": bool,
    "stale_after_s": float,
    "alertmanager_url": str,
    "alertmanager_resend_s": float,
    "alert_ttl_s": float,
    "alerts_jsonl": str,
}
_LISTS = ("topics", "roles")
_TABLES = ("fields", "kafka", "bake", "discovery")


def _coerce(key: str, value: Any, source: str) -> Any:
    kind = _SCALARS[key]
    if isinstance(value, str) and kind is not str:
        text = value.strip().lower()
        try:
            if kind is bool:
                if text not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                    raise ValueError(text)
                return text in ("1", "true", "yes", "on")
            return kind(text)
        except ValueError:
            msg = f'{source} "{key}" must be {kind.__name__}, got {value!r}'
            raise ConfigError(msg, value=value) from None
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        msg = f'{source} "{key}" must be {kind.__name__}, got {value!r}'
        raise ConfigError(msg, value=value)
    return value


def _as_list(key: str, value: Any, source: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    if (
        not isinstance(value, list | tuple)
        or not value
        or not all(isinstance(v, str) and v for v in value)
    ):
        msg = f'{source} "{key}" must be a non-empty list of names, got {value!r}'
        raise ConfigError(msg, value=value)
    return tuple(value)


def load_settings(
    config_path: str | None = None,
    env: Mapping[str, str] | None = None,
    flags: Mapping[str, Any] | None = None,
) -> Settings:
    """Merge file, environment and flags (later wins), validate, freeze."""
    env = os.environ if env is None else env
    raw: dict[str, Any] = {}
    if config_path:
        try:
            with open(config_path, "rb") as fh:
                raw = tomllib.load(fh)
        except FileNotFoundError:
            msg = f'config file "{config_path}" does not exist'
            raise ConfigError(msg, value=config_path) from None
        except tomllib.TOMLDecodeError as exc:
            msg = f'config file "{config_path}" is not valid TOML: {exc}'
            raise ConfigError(msg, value=config_path) from None
    known = set(_SCALARS) | set(_LISTS) | set(_TABLES)
    unknown = sorted(set(raw) - known)
    if unknown:
        msg = f'unknown config key(s) {unknown} in "{config_path}"; valid: {sorted(known)}'
        raise ConfigError(msg, value=unknown)
    values: dict[str, Any] = {}
    for k, v in raw.items():
        if k in _SCALARS:
            values[k] = _coerce(k, v, "config key")
        elif k in _LISTS:
            values[k] = _as_list(k, v, "config key")
    kafka: dict[str, Any] = dict(raw.get("kafka", {}))
    fields_table: dict[str, Any] = dict(raw.get("fields", {}))
    for k, v in env.items():
        if k.startswith(_KAFKA_ENV_PREFIX):
            kafka[k[len(_KAFKA_ENV_PREFIX) :].lower()] = v
        elif k == "BAKEMON_FIELDS_PRESET":
            fields_table = {"preset": v}
        elif k.startswith(ENV_PREFIX):
            key = k[len(ENV_PREFIX) :].lower()
            if key in _SCALARS:
                values[key] = _coerce(key, v, "environment variable BAKEMON_")
            elif key in _LISTS:
                values[key] = _as_list(key, v, "environment variable BAKEMON_")
    for k, v in (flags or {}).items():
        if v is None:
            continue
        if k == "preset":
            fields_table = {"preset": v}
        elif k in _SCALARS:
            values[k] = _coerce(k, v, "flag")
        elif k in _LISTS:
            values[k] = _as_list(k, v, "flag")
    field_map = FieldMap.from_dict(fields_table) if fields_table else PRESETS["plain"]
    raw_bakes = raw.get("bake", [])
    bakes = tuple(
        BakeSpec.from_dict(b) for b in (raw_bakes if isinstance(raw_bakes, list) else [raw_bakes])
    )
    discovery = DiscoverySettings.from_dict(raw.get("discovery", {}))
    settings = Settings(
        **values, field_map=field_map, kafka=kafka, bakes=bakes, discovery=discovery
    )
    _validate(settings)
    return settings


def _validate(s: Settings) -> None:
    bad_roles = sorted(set(s.roles) - set(ROLES))
    if bad_roles:
        msg = f"unknown role(s) {bad_roles}; valid: {list(ROLES)}"
        raise ConfigError(msg, value=bad_roles)
    checks: Sequence[tuple[str, bool, str]] = (
        ("partials_partitions", 1 <= s.partials_partitions <= 1024, "in [1, 1024]"),
        ("block_offsets", s.block_offsets >= 1, ">= 1"),
        ("flush_interval_s", 0 < s.flush_interval_s <= 600, "in (0, 600]"),
        ("checkpoint_interval_s", 0 < s.checkpoint_interval_s <= 600, "in (0, 600]"),
        ("shutdown_timeout_s", 0 < s.shutdown_timeout_s <= 600, "in (0, 600]"),
        (
            "log_level",
            s.log_level in ("debug", "info", "warning", "error"),
            "debug|info|warning|error",
        ),
        ("log_format", s.log_format in ("text", "json"), "text|json"),
        ("bootstrap_servers", bool(s.bootstrap_servers.strip()), "non-empty"),
        ("api_port", 0 <= s.api_port <= 65535, "a port number"),
        ("stale_after_s", s.stale_after_s > 0, "> 0"),
        ("api_token", s.api_token is None or len(s.api_token) >= 16, "at least 16 characters"),
    )
    for key, ok, want in checks:
        if not ok:
            shown = "(hidden)" if key == "api_token" else repr(getattr(s, key))
            msg = f'"{key}" must be {want}, got {shown}'
            raise ConfigError(msg, value=getattr(s, key))
    owned = {n for n, _, _ in s.layout.specs()}
    clash = sorted(set(s.topics) & owned)
    if clash:
        msg = f"request topics {clash} clash with bakemon's own topics"
        raise ConfigError(msg, value=clash)


SETTING_NAMES = tuple(f.name for f in fields(Settings))
