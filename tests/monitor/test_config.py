"""Tests of service settings: file → environment → flags, validated in one place."""

from __future__ import annotations

from pathlib import Path

import pytest

from monitor.cli.main import main
from monitor.config import load_settings
from monitor.errors import ConfigError


def test_precedence_file_then_env_then_flags(tmp_path: Path) -> None:
    """A flag beats the environment, which beats the file; defaults fill the rest."""
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        'bootstrap_servers = "file:9092"\ntopics = ["a"]\nblock_offsets = 1000\n[fields]\npreset = "envoy"\n'
    )
    s = load_settings(
        str(cfg),
        env={"BAKEMON_BOOTSTRAP_SERVERS": "env:9092", "BAKEMON_BLOCK_OFFSETS": "2000"},
        flags={"bootstrap_servers": "flag:9092"},
    )
    assert s.bootstrap_servers == "flag:9092"
    assert s.block_offsets == 2000
    assert s.topics == ("a",)
    assert s.field_map.time == "start_time"  # envoy preset from the file
    assert s.flush_interval_s == 1.0 and s.roles == ("ingest", "judge", "api")


def test_kafka_client_settings_pass_through(tmp_path: Path) -> None:
    """[kafka] and BAKEMON_KAFKA_* reach the client config (SASL/TLS)."""
    cfg = tmp_path / "c.toml"
    cfg.write_text('[kafka]\nsecurity_protocol = "SASL_SSL"\n')
    s = load_settings(str(cfg), env={"BAKEMON_KAFKA_SASL_MECHANISM": "PLAIN"})
    assert s.kafka == {"security_protocol": "SASL_SSL", "sasl_mechanism": "PLAIN"}


@pytest.mark.parametrize(
    ("toml", "env", "match"),
    [
        ("colour = 1\n", {}, "unknown config key"),
        ("block_offsets = 0\n", {}, '"block_offsets" must be >= 1'),
        ('block_offsets = "many"\n', {}, 'config key "block_offsets" must be int'),
        ("", {"BAKEMON_FLUSH_INTERVAL_S": "soon"}, 'BAKEMON_ "flush_interval_s" must be float'),
        ('roles = ["ingest", "api2"]\n', {}, "unknown role"),
        ('topics = ["t.bakes"]\ntopic_prefix = "t."\n', {}, "clash with bakemon's own topics"),
        ('[fields]\npreset = "nginx"\n', {}, "unknown field map preset"),
        ('[[bake]]\nid = "x"\n', {}, 'bake field "service" is required'),
        ("not toml [", {}, "is not valid TOML"),
    ],
)
def test_bad_settings_fail_with_the_key_named(
    tmp_path: Path, toml: str, env: dict[str, str], match: str
) -> None:
    """Each bad setting raises ConfigError naming the key and value."""
    cfg = tmp_path / "c.toml"
    cfg.write_text(toml)
    with pytest.raises(ConfigError, match=match):
        load_settings(str(cfg), env=env)


def test_run_with_bad_config_exits_4_with_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`bakemon run` with an invalid config prints one clear line and exits 4."""
    cfg = tmp_path / "c.toml"
    cfg.write_text("partials_partitions = 0\n")
    assert main(["run", "--config", str(cfg)]) == 4
    err = capsys.readouterr().err
    assert '"partials_partitions" must be in [1, 1024]' in err and "Traceback" not in err


def test_run_without_a_reachable_broker_fails_clearly(capsys: pytest.CaptureFixture[str]) -> None:
    """With nothing listening, `bakemon run` exits 4 saying it cannot reach Kafka."""
    from monitor.kafka.broker import free_port

    code = main(["run", "--bootstrap-servers", f"127.0.0.1:{free_port()}", "--log-level", "error"])
    assert code == 4
    assert "cannot reach Kafka" in capsys.readouterr().err


@pytest.mark.parametrize("where", ["env", "flag"])
def test_preset_keeps_the_file_fields_overrides(tmp_path: Path, where: str) -> None:
    """--preset / BAKEMON_FIELDS_PRESET replace the base preset; [fields] keys still apply."""
    cfg = tmp_path / "c.toml"
    cfg.write_text('[fields]\npreset = "plain"\nlatency = "dur_s"\nlatency_unit = "s"\n')
    env = {"BAKEMON_FIELDS_PRESET": "envoy"} if where == "env" else {}
    flags = {"preset": "envoy"} if where == "flag" else {}
    fm = load_settings(str(cfg), env=env, flags=flags).field_map
    assert (fm.time, fm.service, fm.version) == ("start_time", "authority", "upstream_cluster")
    assert (fm.latency, fm.latency_unit) == ("dur_s", "s")


def test_flag_preset_beats_env_preset(tmp_path: Path) -> None:
    """The flag's preset wins over the environment's, which wins over the table's."""
    cfg = tmp_path / "c.toml"
    cfg.write_text('[fields]\npreset = "envoy"\n')
    s = load_settings(str(cfg), env={"BAKEMON_FIELDS_PRESET": "argo"}, flags={"preset": "plain"})
    assert s.field_map.version == "version"
    s = load_settings(str(cfg), env={"BAKEMON_FIELDS_PRESET": "argo"})
    assert s.field_map.version == "kubernetes.labels.rollouts-pod-template-hash"


def test_kafka_env_values_reach_the_client_typed(tmp_path: Path) -> None:
    """BAKEMON_KAFKA_* strings become the types kafka-python expects; secrets stay strings."""
    env = {
        "BAKEMON_KAFKA_SSL_CHECK_HOSTNAME": "false",
        "BAKEMON_KAFKA_REQUEST_TIMEOUT_MS": "5000",
        "BAKEMON_KAFKA_RETRIES": "3",
        "BAKEMON_KAFKA_API_VERSION": "2.5.0",
        "BAKEMON_KAFKA_ACKS": "all",
        "BAKEMON_KAFKA_SASL_PLAIN_PASSWORD": "12345",
        "BAKEMON_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
    }
    kafka = load_settings(None, env=env).kafka
    assert kafka["ssl_check_hostname"] is False
    assert kafka["request_timeout_ms"] == 5000 and type(kafka["request_timeout_ms"]) is int
    assert kafka["retries"] == 3.0 and kafka["api_version"] == (2, 5, 0)
    assert kafka["acks"] == "all" and kafka["sasl_plain_password"] == "12345"
    assert kafka["security_protocol"] == "SASL_SSL"


@pytest.mark.parametrize(
    ("key", "value", "match"),
    [
        ("SSL_CHECK_HOSTNAME", "maybe", 'Kafka setting "ssl_check_hostname" must be true or false'),
        ("REQUEST_TIMEOUT_MS", "soon", 'Kafka setting "request_timeout_ms" must be a number'),
        ("API_VERSION", "new", 'Kafka setting "api_version" must be a version like "2.5.0"'),
    ],
)
def test_bad_kafka_env_value_fails_at_start_up(key: str, value: str, match: str) -> None:
    """A BAKEMON_KAFKA_* value of the wrong type is a ConfigError naming it, before connecting."""
    with pytest.raises(ConfigError, match=match):
        load_settings(None, env={f"BAKEMON_KAFKA_{key}": value})


def test_run_with_a_bad_kafka_value_exits_4(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`bakemon run` with BAKEMON_KAFKA_SSL_CHECK_HOSTNAME=nah prints one line and exits 4."""
    monkeypatch.setenv("BAKEMON_KAFKA_SSL_CHECK_HOSTNAME", "nah")
    assert main(["run"]) == 4
    err = capsys.readouterr().err
    assert 'Kafka setting "ssl_check_hostname" must be true or false, got "nah"' in err


# ---------------------------------------------------------------------------- own-topic settings


def test_topic_settings_default_to_the_broker_and_a_week(tmp_path: Path) -> None:
    """Without settings: replication factor -1 (broker default), automatic min ISR, 7-day
    retention of partials, alerts and dead letters, all reaching the topic layout."""
    layout = load_settings(None, env={}).layout
    assert (layout.replication_factor, layout.min_insync_replicas) == (-1, 0)
    configs = {name: c for name, _, c in layout.specs(None)}
    week_ms = str(7 * 86_400 * 1000)
    assert configs[layout.partials]["retention.ms"] == week_ms
    assert configs[layout.alerts]["retention.ms"] == week_ms
    assert configs[layout.dead_letter_topic]["retention.ms"] == week_ms
    assert not any("min.insync.replicas" in c for c in configs.values())


def test_topic_settings_from_toml_env_and_flags(tmp_path: Path) -> None:
    """TOML sets the factor and retentions, BAKEMON_* overrides them as typed values, a flag
    beats both; the layout carries them into the topic configs."""
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        "replication_factor = 3\nmin_insync_replicas = 2\npartials_retention_s = 172800\n"
        "alerts_retention_s = 86400\n"
    )
    env = {"BAKEMON_REPLICATION_FACTOR": "5", "BAKEMON_DEAD_LETTER_RETENTION_S": "3600"}
    s = load_settings(str(cfg), env=env)
    assert (s.replication_factor, s.min_insync_replicas) == (5, 2)
    assert type(s.replication_factor) is int
    configs = {name: c for name, _, c in s.layout.specs(s.replication_factor)}
    assert configs[s.layout.partials]["retention.ms"] == "172800000"
    assert configs[s.layout.alerts]["retention.ms"] == "86400000"
    assert configs[s.layout.dead_letter_topic]["retention.ms"] == "3600000"
    isr = {n for n, c in configs.items() if c.get("min.insync.replicas") == "2"}
    assert isr == {s.layout.bakes, s.layout.state, s.layout.verdicts}
    assert load_settings(str(cfg), env=env, flags={"replication_factor": 3}).replication_factor == 3


def test_automatic_min_insync_needs_a_known_factor_of_three() -> None:
    """Automatic min.insync.replicas is 2 on the durable topics at factor >= 3 only."""
    layout = load_settings(None, env={}).layout
    assert layout.min_insync_for(None) is None and layout.min_insync_for(2) is None
    assert layout.min_insync_for(3) == 2 and layout.min_insync_for(5) == 2


@pytest.mark.parametrize(
    ("env", "match"),
    [
        ({"BAKEMON_REPLICATION_FACTOR": "0"}, '"replication_factor" must be -1'),
        ({"BAKEMON_REPLICATION_FACTOR": "three"}, '"replication_factor" must be int'),
        (
            {"BAKEMON_REPLICATION_FACTOR": "2", "BAKEMON_MIN_INSYNC_REPLICAS": "3"},
            '"min_insync_replicas" must be 0 .automatic. or in .1, "replication_factor".',
        ),
        ({"BAKEMON_MIN_INSYNC_REPLICAS": "-1"}, '"min_insync_replicas" must be'),
        ({"BAKEMON_PARTIALS_RETENTION_S": "60"}, '"partials_retention_s" must be >= 3600'),
        ({"BAKEMON_ALERTS_RETENTION_S": "1"}, '"alerts_retention_s" must be >= 60'),
    ],
)
def test_bad_topic_settings_fail_with_the_key(env: dict[str, str], match: str) -> None:
    """Out-of-range topic settings are a ConfigError naming the setting and its bound."""
    with pytest.raises(ConfigError, match=match):
        load_settings(None, env=env)


def test_readme_production_examples_load(tmp_path: Path) -> None:
    """The README's SASL_SSL and mTLS TOML examples load, with typed Kafka settings."""
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    start = readme.index("## Running in production")
    section = readme[start : readme.index("\n## ", start + 5)]
    blocks = [b.split("```")[0] for b in section.split("```toml\n")[1:]]
    assert len(blocks) == 2
    loaded = []
    for i, body in enumerate(blocks):
        cfg = tmp_path / f"p{i}.toml"
        cfg.write_text(body)
        loaded.append(load_settings(str(cfg), env={}))
    sasl, mtls = loaded
    assert sasl.kafka["security_protocol"] == "SASL_SSL" and sasl.replication_factor == 3
    assert sasl.kafka["sasl_mechanism"] == "SCRAM-SHA-512"
    assert mtls.kafka["ssl_certfile"].endswith("user.crt")
    assert mtls.kafka["ssl_check_hostname"] is True


def test_misspelt_environment_variables_are_named_not_silently_ignored() -> None:
    """A BAKEMON_ variable that is no setting is reported with the closest setting; the client's
    variables and Kubernetes' service links for a Service "bakemon" are not reported."""
    from monitor.config import ignored_env

    env = {
        "BAKEMON_API_PROT": "9090",
        "BAKEMON_TOPIC": "requests",
        "BAKEMON_NONSENSE_THING": "1",
        "BAKEMON_API_PORT": "8080",
        "BAKEMON_KAFKA_SECURITY_PROTOCOL": "SSL",
        "BAKEMON_FIELDS_PRESET": "envoy",
        "BAKEMON_URL": "http://x",
        "BAKEMON_API_TOKEN": "t" * 16,
        "BAKEMON_PORT": "tcp://10.0.0.1:8080",
        "BAKEMON_PORT_8080_TCP_ADDR": "10.0.0.1",
        "BAKEMON_SERVICE_HOST": "10.0.0.1",
        "BAKEMON_SERVICE_PORT_HTTP": "8080",
        "HOME": "/root",
    }
    found = ignored_env(env)
    assert len(found) == 3, found
    assert (
        "BAKEMON_API_PROT is not a bakemon setting; ignored (did you mean BAKEMON_API_PORT?)"
        in (found[0])
    )
    assert "did you mean BAKEMON_TOPICS?" in found[2] and "BAKEMON_TOPIC " in found[2]
    assert found[1].endswith("ignored")  # nothing close to BAKEMON_NONSENSE_THING


def test_a_misspelt_kafka_client_setting_is_a_config_error_naming_the_right_one() -> None:
    """BAKEMON_KAFKA_SSL_CHEK_HOSTNAME fails at once with the closest real setting, instead of a
    "cannot reach Kafka" ten seconds later; a real setting and librdkafka keys pass."""
    from monitor.config import load_settings
    from monitor.errors import ConfigError

    with pytest.raises(
        ConfigError, match="ssl_chek_hostname is none, did you mean ssl_check_hostname"
    ):
        load_settings(env={"BAKEMON_KAFKA_SSL_CHEK_HOSTNAME": "false"})
    ok = load_settings(env={"BAKEMON_KAFKA_SSL_CHECK_HOSTNAME": "false"})
    assert ok.kafka["ssl_check_hostname"] is False
