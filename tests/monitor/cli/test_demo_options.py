"""`bakemon demo`'s port and settings: an asked-for port is used or the demo stops clearly."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from monitor.cli.demo import DEFAULT_PORT, _choose_port, _say_ignored
from monitor.cli.main import main
from monitor.errors import ConfigError


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


def test_busy_port_stops_the_demo_with_exit_4(
    busy_port: int, capsys: pytest.CaptureFixture[str]
) -> None:
    """--port N already taken: exit 4 naming the port, before any broker starts."""
    assert main(["demo", "--port", str(busy_port)]) == 4
    captured = capsys.readouterr()
    assert f"--port {busy_port}: the port is in use on 127.0.0.1" in captured.err
    assert "Traceback" not in captured.err and "broker" not in captured.out


def test_free_port_is_used_exactly(capsys: pytest.CaptureFixture[str]) -> None:
    """A free --port (or BAKEMON_API_PORT) is the port, not another one."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert _choose_port(port, None, None) == port
    assert _choose_port(None, str(port), None) == port


def test_env_port_busy_or_bad_is_an_error(busy_port: int) -> None:
    """BAKEMON_API_PORT is held to the same rule, and must be a number."""
    with pytest.raises(ConfigError, match=f"BAKEMON_API_PORT {busy_port}: the port is in use"):
        _choose_port(None, str(busy_port), None)
    with pytest.raises(ConfigError, match='BAKEMON_API_PORT must be a port number, got "http"'):
        _choose_port(None, "http", None)
    with pytest.raises(ConfigError, match=r"--port must be a port number in \[0, 65535\]"):
        _choose_port(70000, None, None)


def test_default_port_falls_back_and_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    """Without --port: 8080 if free, else any free port, announced on the output."""
    import sys

    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", DEFAULT_PORT))
            s.listen()
        except OSError:
            pass  # already taken by something else: the fallback is what we test either way
        port = _choose_port(None, None, sys.stdout)
    assert port != DEFAULT_PORT
    assert f"port {DEFAULT_PORT} is taken: the API uses port {port}" in capsys.readouterr().out


def test_settings_the_demo_fixes_are_named_and_dropped(capsys: pytest.CaptureFixture[str]) -> None:
    """BAKEMON_TOPICS / _FIELDS_PRESET are said to be ignored; the others are kept."""
    import sys

    env = {"BAKEMON_TOPICS": "x", "BAKEMON_FIELDS_PRESET": "envoy", "BAKEMON_LOG_LEVEL": "debug"}
    _say_ignored(env, sys.stdout)
    out = capsys.readouterr().out
    assert "ignoring BAKEMON_TOPICS, BAKEMON_FIELDS_PRESET" in out
    assert env == {"BAKEMON_LOG_LEVEL": "debug"}
