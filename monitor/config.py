"""Service settings, read in exactly one place: TOML file → ``BAKEMON_*`` environment → flags.

:func:`load_settings` validates everything with messages naming the key and freezes the result;
the roles get plain values from it. Nothing reads the environment at import time.
"""

from __future__ import annotations

import os
import re
import socket
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, Literal

from monitor.errors import ConfigError

# The service's types are imported where they are used: the client commands read
# ClientSettings from here and must start without numpy (README "The client").
if TYPE_CHECKING:
    from monitor.bakes.discovery import DiscoverySettings
    from monitor.bakes.spec import BakeSpec
    from monitor.kafka.topics import TopicLayout
    from monitor.records.fieldmap import FieldMap

__all__ = [
    "ROLES",
    "Settings",
    "field_map_from",
    "load_settings",
    "load_toml",
]

ROLES = ("ingest", "judge", "api")
ENV_PREFIX = "BAKEMON_"
_KAFKA_ENV_PREFIX = "BAKEMON_KAFKA_"
KAFKA_CLIENT_ENV = "BAKEMON_KAFKA_CLIENT"
FIELDS_PRESET_ENV = "BAKEMON_FIELDS_PRESET"


def _plain_field_map() -> FieldMap:
    from monitor.records.fieldmap import PRESETS

    return PRESETS["plain"]


def _default_discovery() -> DiscoverySettings:
    from monitor.bakes.discovery import DiscoverySettings

    return DiscoverySettings()


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
    unknown_bake_hold_s: float = 300.0
    max_clock_skew_s: float = 300.0
    dead_letter: bool = True
    create_topics: bool = True
    shutdown_timeout_s: float = 10.0
    broker_wait_s: float = 10.0
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["text", "json"] = "text"
    field_map: FieldMap = field(default_factory=_plain_field_map)
    kafka: Mapping[str, Any] = field(default_factory=dict)
    kafka_client: Literal["kafka-python", "confluent"] = "kafka-python"
    bakes: tuple[BakeSpec, ...] = ()
    discovery: DiscoverySettings = field(default_factory=_default_discovery)
    api_host: str = "0.0.0.0"
    api_port: int = 8080
    api_token: str | None = field(default=None, repr=False)
    api_protect_reads: bool = False
    api_workers: int = 8
    api_max_connections: int = 1000
    api_max_streams: int = 64
    api_read_timeout_s: float = 10.0
    max_active_bakes: int = 1000
    retention_s: float = 86_400.0
    external_url: str = ""
    runbook_url: str = ""
    ops_host: str = "0.0.0.0"
    ops_port: int = 8081
    stale_after_s: float = 120.0
    alertmanager_url: str | None = None
    alertmanager_resend_s: float = 60.0
    alert_ttl_s: float = 3600.0
    alerts_jsonl: str | None = None
    # Own topics (README "Running in production"): -1 = the broker's default.replication.factor;
    # min_insync_replicas 0 = 2 on the state topics when the factor is >= 3, else the broker's.
    replication_factor: int = -1
    min_insync_replicas: int = 0
    partials_retention_s: float = 7 * 86_400.0
    alerts_retention_s: float = 7 * 86_400.0
    dead_letter_retention_s: float = 7 * 86_400.0

    @property
    def layout(self) -> TopicLayout:
        from monitor.kafka.topics import TopicLayout

        return TopicLayout(
            self.topic_prefix,
            self.partials_partitions,
            1,
            self.dead_letter,
            replication_factor=self.replication_factor,
            min_insync_replicas=self.min_insync_replicas,
            partials_retention_s=self.partials_retention_s,
            alerts_retention_s=self.alerts_retention_s,
            dead_letter_retention_s=self.dead_letter_retention_s,
        )

    @property
    def alert_base_url(self) -> str:
        """Where alerts link to: ``external_url``, else this host's API (absolute either way:
        an alert is read far from here)."""
        if self.external_url:
            return self.external_url.rstrip("/")
        host = self.api_host if self.api_host not in ("", "0.0.0.0", "::") else socket.getfqdn()
        return f"http://{host}:{self.api_port}"


_SCALARS: dict[str, type] = {
    "bootstrap_servers": str,
    "kafka_client": str,
    "topic_prefix": str,
    "partials_partitions": int,
    "block_offsets": int,
    "flush_interval_s": float,
    "checkpoint_interval_s": float,
    "unknown_bake_hold_s": float,
    "max_clock_skew_s": float,
    "dead_letter": bool,
    "create_topics": bool,
    "shutdown_timeout_s": float,
    "broker_wait_s": float,
    "log_level": str,
    "log_format": str,
    "api_host": str,
    "api_port": int,
    "api_token": str,
    "api_protect_reads": bool,
    "api_workers": int,
    "api_max_connections": int,
    "api_max_streams": int,
    "api_read_timeout_s": float,
    "max_active_bakes": int,
    "retention_s": float,
    "external_url": str,
    "runbook_url": str,
    "ops_host": str,
    "ops_port": int,
    "stale_after_s": float,
    "alertmanager_url": str,
    "alertmanager_resend_s": float,
    "alert_ttl_s": float,
    "alerts_jsonl": str,
    "replication_factor": int,
    "min_insync_replicas": int,
    "partials_retention_s": float,
    "alerts_retention_s": float,
    "dead_letter_retention_s": float,
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


def load_toml(path: str) -> dict[str, Any]:
    """A TOML file as a dict; a missing or invalid file is a :class:`ConfigError` naming it."""
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        msg = f'config file "{path}" does not exist'
        raise ConfigError(msg, value=path) from None
    except tomllib.TOMLDecodeError as exc:
        msg = f'config file "{path}" is not valid TOML: {exc}'
        raise ConfigError(msg, value=path) from None


def _read_file(config_path: str | None) -> dict[str, Any]:
    if not config_path:
        return {}
    raw = load_toml(config_path)
    known = set(_SCALARS) | set(_LISTS) | set(_TABLES)
    unknown = sorted(set(raw) - known)
    if unknown:
        msg = f'unknown config key(s) {unknown} in "{config_path}"; valid: {sorted(known)}'
        raise ConfigError(msg, value=unknown)
    return raw


def _set(values: dict[str, Any], key: str, value: Any, source: str) -> None:
    """Coerce and store a scalar or list setting; other keys are not settings here."""
    if key in _SCALARS:
        values[key] = _coerce(key, value, source)
    elif key in _LISTS:
        values[key] = _as_list(key, value, source)


# Not settings, and not mistakes: the client's variables, and the service links Kubernetes adds
# for a Service named "bakemon" (BAKEMON_PORT=tcp://…, BAKEMON_SERVICE_HOST, …).
_NOT_SETTINGS = re.compile(
    r"BAKEMON_(URL|API_TOKEN|SERVICE_HOST|SERVICE_PORT(_\w+)?|PORT(_\d+_(TCP|UDP|SCTP)\w*)?)"
)


def ignored_env(env: Mapping[str, str]) -> list[str]:
    """``BAKEMON_*`` variables that are no setting, each with a suggestion when one is close:
    a misspelt variable must not be silently ignored (``bakemon run`` logs these)."""
    import difflib

    known = [f"{ENV_PREFIX}{k.upper()}" for k in (*_SCALARS, *_LISTS)]
    known += [FIELDS_PRESET_ENV, KAFKA_CLIENT_ENV]
    out = []
    for k in sorted(env):
        if not k.startswith(ENV_PREFIX) or k.startswith(_KAFKA_ENV_PREFIX):
            continue
        if k in known or _NOT_SETTINGS.fullmatch(k):
            continue
        close = difflib.get_close_matches(k, known, n=1, cutoff=0.8)
        hint = f" (did you mean {close[0]}?)" if close else ""
        out.append(f"environment variable {k} is not a bakemon setting; ignored{hint}")
    return out


def _from_env(env: Mapping[str, str], values: dict[str, Any], kafka: dict[str, Any]) -> str | None:
    """``BAKEMON_*`` into ``values`` and ``kafka``; the preset ``BAKEMON_FIELDS_PRESET`` names."""
    preset = None
    for k, v in env.items():
        if k == KAFKA_CLIENT_ENV:  # the setting kafka_client, not a client setting "client"
            _set(values, "kafka_client", v, "environment variable BAKEMON_")
        elif k.startswith(_KAFKA_ENV_PREFIX):
            kafka[k[len(_KAFKA_ENV_PREFIX) :].lower()] = v
        elif k == FIELDS_PRESET_ENV:
            preset = v or None
        elif k.startswith(ENV_PREFIX):
            _set(values, k[len(ENV_PREFIX) :].lower(), v, "environment variable BAKEMON_")
    return preset


def _from_flags(flags: Mapping[str, Any], values: dict[str, Any]) -> str | None:
    """CLI flags into ``values``; the preset ``--preset`` names."""
    preset = None
    for k, v in flags.items():
        if v is None:
            continue
        if k == "preset":
            preset = v
        else:
            _set(values, k, v, "flag")
    return preset


def field_map_from(fields_table: Mapping[str, Any] | None, preset: str | None = None) -> FieldMap:
    """The field map of a ``[fields]`` table, on top of ``preset`` when one is named.

    The preset (``--preset`` or ``BAKEMON_FIELDS_PRESET``) replaces the table's own ``preset``
    as the base; every other key of the table still overrides it, so a preset named on the
    command line never throws away the file's ``[fields]`` overrides.
    """
    from monitor.records.fieldmap import PRESETS, FieldMap

    if fields_table is not None and not isinstance(fields_table, Mapping):
        msg = f"[fields] must be a table of field-map keys, got {fields_table!r}"
        raise ConfigError(msg, value=fields_table)
    table = dict(fields_table or {})
    if preset is not None:
        table["preset"] = preset
    return FieldMap.from_dict(table) if table else PRESETS["plain"]


def load_settings(
    config_path: str | None = None,
    env: Mapping[str, str] | None = None,
    flags: Mapping[str, Any] | None = None,
) -> Settings:
    """Merge file, environment and flags (later wins), validate, freeze."""
    from monitor.bakes.discovery import DiscoverySettings
    from monitor.bakes.spec import BakeSpec
    from monitor.kafka.io import client_config

    raw = _read_file(config_path)
    values: dict[str, Any] = {}
    for k, v in raw.items():
        _set(values, k, v, "config key")
    kafka: dict[str, Any] = dict(raw.get("kafka", {}))
    env_preset = _from_env(os.environ if env is None else env, values, kafka)
    flag_preset = _from_flags(flags or {}, values)
    field_map = field_map_from(raw.get("fields"), flag_preset or env_preset)
    raw_bakes = raw.get("bake", [])
    bakes = tuple(
        BakeSpec.from_dict(b) for b in (raw_bakes if isinstance(raw_bakes, list) else [raw_bakes])
    )
    discovery = DiscoverySettings.from_dict(raw.get("discovery", {}))
    settings = Settings(
        **values,
        field_map=field_map,
        kafka=client_config(kafka),
        bakes=bakes,
        discovery=discovery,
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
        ("unknown_bake_hold_s", 0 < s.unknown_bake_hold_s <= 86_400, "in (0, 86400]"),
        ("max_clock_skew_s", 0 < s.max_clock_skew_s <= 86_400, "in (0, 86400]"),
        ("shutdown_timeout_s", 0 < s.shutdown_timeout_s <= 600, "in (0, 600]"),
        ("broker_wait_s", 0 <= s.broker_wait_s <= 86_400, "in [0, 86400]"),
        (
            "log_level",
            s.log_level in ("debug", "info", "warning", "error"),
            "debug|info|warning|error",
        ),
        ("log_format", s.log_format in ("text", "json"), "text|json"),
        ("bootstrap_servers", bool(s.bootstrap_servers.strip()), "non-empty"),
        ("api_port", 0 <= s.api_port <= 65535, "a port number"),
        ("ops_port", -1 <= s.ops_port <= 65535, "a port number (0: any free one, -1: off)"),
        ("stale_after_s", s.stale_after_s > 0, "> 0"),
        ("api_workers", 1 <= s.api_workers <= 256, "in [1, 256]"),
        ("max_active_bakes", 1 <= s.max_active_bakes <= 1_000_000, "in [1, 1000000]"),
        ("retention_s", 0 <= s.retention_s <= 31_536_000, "in [0, 31536000] (a year)"),
        (
            "external_url",
            not s.external_url or s.external_url.startswith(("http://", "https://")),
            'an absolute http(s) URL, e.g. "https://bakemon.example.com"',
        ),
        (
            "runbook_url",
            not s.runbook_url or s.runbook_url.startswith(("http://", "https://")),
            "an absolute http(s) URL",
        ),
        ("api_max_connections", 1 <= s.api_max_connections <= 100_000, "in [1, 100000]"),
        ("api_max_streams", 1 <= s.api_max_streams <= 10_000, "in [1, 10000]"),
        ("api_read_timeout_s", 0 < s.api_read_timeout_s <= 600, "in (0, 600]"),
        ("api_token", s.api_token is None or len(s.api_token) >= 16, "at least 16 characters"),
    )
    checks = (*checks, *_topic_checks(s), *_client_checks(s))
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


def _client_checks(s: Settings) -> tuple[tuple[str, bool, str], ...]:
    """(key, ok, wanted) of ``kafka_client``: librdkafka-only ``[kafka]`` keys need confluent."""
    from monitor.kafka.clients import KAFKA_CLIENTS, librdkafka_only

    rdkafka_keys = sorted(k for k in s.kafka if librdkafka_only(k))
    unknown = _unknown_kafka_keys([k for k in s.kafka if not librdkafka_only(k)])
    return (
        (
            "kafka",
            not unknown,
            "settings a kafka-python client takes ("
            + "; ".join(
                f"{k} is none" + (f", did you mean {m}?" if m else "") for k, m in unknown.items()
            )
            + ")",
        ),
        ("kafka_client", s.kafka_client in KAFKA_CLIENTS, " or ".join(KAFKA_CLIENTS)),
        (
            "kafka_client",
            s.kafka_client == "confluent" or not rdkafka_keys,
            f'"confluent" for the librdkafka [kafka] keys {rdkafka_keys}',
        ),
    )


def _unknown_kafka_keys(keys: Sequence[str]) -> dict[str, str | None]:
    """``[kafka]`` keys no kafka-python client takes, each with the closest one it does take
    (a misspelt key is a configuration error at start-up, not a connection error later)."""
    if not keys:
        return {}
    import difflib

    from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer

    known = {*KafkaConsumer.DEFAULT_CONFIG, *KafkaProducer.DEFAULT_CONFIG}
    known |= set(KafkaAdminClient.DEFAULT_CONFIG)
    out: dict[str, str | None] = {}
    for k in sorted(set(keys) - known):
        close = difflib.get_close_matches(k, sorted(known), n=1, cutoff=0.8)
        out[k] = close[0] if close else None
    return out


def _topic_checks(s: Settings) -> tuple[tuple[str, bool, str], ...]:
    """(key, ok, wanted) of the own-topic settings."""
    return (
        (
            "replication_factor",
            s.replication_factor == -1 or 1 <= s.replication_factor <= 32767,
            "-1 (the broker's default.replication.factor) or in [1, 32767]",
        ),
        (
            "min_insync_replicas",
            s.min_insync_replicas >= 0
            and (s.replication_factor < 1 or s.min_insync_replicas <= s.replication_factor),
            '0 (automatic) or in [1, "replication_factor"]',
        ),
        ("partials_retention_s", s.partials_retention_s >= 3600, ">= 3600 (an hour)"),
        ("alerts_retention_s", s.alerts_retention_s >= 60, ">= 60"),
        ("dead_letter_retention_s", s.dead_letter_retention_s >= 60, ">= 60"),
    )


SETTING_NAMES = tuple(f.name for f in fields(Settings))
