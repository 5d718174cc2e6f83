"""The ``kafka_client`` setting and the kafka-python → librdkafka settings mapping."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from monitor.config import load_settings
from monitor.errors import ConfigError
from monitor.kafka.clients import kafka_python_config, make_sink, require_client
from monitor.kafka.confluent import librdkafka_config


def test_common_settings_map_to_librdkafka_names() -> None:
    """Bootstrap, security, SASL and SSL settings get librdkafka's names and meanings."""
    got = librdkafka_config(
        {
            "bootstrap_servers": "b:9092",
            "security_protocol": "SASL_SSL",
            "sasl_mechanism": "SCRAM-SHA-512",
            "sasl_plain_username": "bakemon",
            "sasl_plain_password": "secret",
            "ssl_cafile": "/etc/ca.pem",
            "ssl_certfile": "/etc/c.pem",
            "ssl_keyfile": "/etc/k.pem",
            "ssl_password": "kp",
            "ssl_check_hostname": False,
            "session_timeout_ms": 10_000,
            "api_version": (2, 5, 0),
        }
    )
    assert got == {
        "bootstrap.servers": "b:9092",
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "bakemon",
        "sasl.password": "secret",
        "ssl.ca.location": "/etc/ca.pem",
        "ssl.certificate.location": "/etc/c.pem",
        "ssl.key.location": "/etc/k.pem",
        "ssl.key.password": "kp",
        "ssl.endpoint.identification.algorithm": "none",
        "session.timeout.ms": 10_000,
        "broker.version.fallback": "2.5.0",
    }
    assert librdkafka_config({"ssl_check_hostname": True}) == {
        "ssl.endpoint.identification.algorithm": "https"
    }


def test_librdkafka_properties_pass_through_and_unset_or_poll_only_keys_are_dropped() -> None:
    """Dotted keys and ``rdkafka_a_b`` (→ ``a.b``) pass verbatim; None and max_poll_records go."""
    got = librdkafka_config(
        {
            "socket.keepalive.enable": True,
            "rdkafka_statistics_interval_ms": "5000",
            "ssl_cafile": None,
            "max_poll_records": 500,
        }
    )
    assert got == {"socket.keepalive.enable": True, "statistics.interval.ms": "5000"}


def test_a_kafka_python_only_setting_is_a_config_error_naming_it() -> None:
    """A setting librdkafka has no equivalent for fails with its name, not silently."""
    with pytest.raises(ConfigError, match='"sasl_oauth_token_provider"'):
        librdkafka_config({"sasl_oauth_token_provider": object()})


def test_kafka_python_clients_never_see_librdkafka_keys() -> None:
    """The kafka-python half of the settings drops the librdkafka-only keys."""
    client = {"security_protocol": "SSL", "socket.keepalive.enable": True, "rdkafka_debug": "all"}
    assert kafka_python_config(client) == {"security_protocol": "SSL"}


def test_kafka_client_defaults_to_kafka_python_and_reads_toml_and_env(tmp_path: Path) -> None:
    """kafka_client: default kafka-python; TOML sets it, BAKEMON_KAFKA_CLIENT overrides it (and
    is not taken for a client setting "client")."""
    assert load_settings(env={}).kafka_client == "kafka-python"
    cfg = tmp_path / "c.toml"
    cfg.write_text('kafka_client = "confluent"\n[kafka]\n"socket.keepalive.enable" = true\n')
    s = load_settings(str(cfg), env={})
    assert s.kafka_client == "confluent" and s.kafka == {"socket.keepalive.enable": True}
    s = load_settings(env={"BAKEMON_KAFKA_CLIENT": "confluent"})
    assert s.kafka_client == "confluent" and "client" not in s.kafka


def test_unknown_kafka_client_and_librdkafka_keys_on_kafka_python_are_rejected(
    tmp_path: Path,
) -> None:
    """A misspelt client, or librdkafka keys without the confluent client, fail at load."""
    with pytest.raises(ConfigError, match='"kafka_client" must be kafka-python or confluent'):
        load_settings(env={"BAKEMON_KAFKA_CLIENT": "librdkafka"})
    cfg = tmp_path / "c.toml"
    cfg.write_text('[kafka]\n"socket.keepalive.enable" = true\n')
    with pytest.raises(ConfigError, match=r"socket\.keepalive\.enable"):
        load_settings(str(cfg), env={})


def test_confluent_selected_but_not_installed_says_how_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without the confluent-kafka package, selecting it is a ConfigError with the pip line."""
    monkeypatch.setitem(sys.modules, "confluent_kafka", None)  # makes the import fail
    with pytest.raises(ConfigError, match=r"pip install 'bakemon\[confluent\]'"):
        require_client("confluent")
    with pytest.raises(ConfigError, match="confluent-kafka package"):
        make_sink("confluent", "127.0.0.1:1")


def test_only_the_two_client_names_are_accepted() -> None:
    """require_client knows kafka-python and confluent, and nothing else."""
    assert require_client("kafka-python") == "kafka-python"
    with pytest.raises(ConfigError, match='"kafka_client" must be one of'):
        require_client("rdkafka")
