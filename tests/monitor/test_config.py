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
