"""The HTTP client: its settings (flags → env → default) and `bakemon bake wait`'s exit codes."""

from __future__ import annotations

import io
import socket
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson
import pytest

from monitor.cli.client import ApiClient, WaitOptions, wait_for_verdict
from monitor.cli.connection import DEFAULT_API_URL, ClientSettings, load_client_settings
from monitor.cli.main import main
from monitor.errors import ConfigError

TOKEN = "client-token-0123456789"


# -- settings ------------------------------------------------------------------------------------
def test_flags_beat_environment_beat_default() -> None:
    """--url/--token win over BAKEMON_URL/BAKEMON_API_TOKEN, which win over the default."""
    env = {"BAKEMON_URL": "https://bakemon.internal:8443/", "BAKEMON_API_TOKEN": TOKEN}
    assert load_client_settings(None, None, env={}) == ClientSettings(DEFAULT_API_URL, None)
    assert load_client_settings(None, None, env=env) == ClientSettings(
        "https://bakemon.internal:8443", TOKEN
    )
    flagged = load_client_settings("http://127.0.0.1:9", "flag-token-0123456789", env=env)
    assert flagged == ClientSettings("http://127.0.0.1:9", "flag-token-0123456789")
    assert load_client_settings("", "", env={"BAKEMON_URL": "", "BAKEMON_API_TOKEN": ""}) == (
        ClientSettings(DEFAULT_API_URL, None)
    )


def test_settings_are_frozen_and_hide_the_token() -> None:
    """The settings cannot change after loading, and their repr never shows the token."""
    s = load_client_settings(None, TOKEN, env={})
    with pytest.raises(AttributeError):
        s.url = "http://elsewhere"  # type: ignore[misc]
    assert TOKEN not in repr(s)


@pytest.mark.parametrize(
    ("url", "token", "env", "message"),
    [
        ("localhost:8080", None, {}, '--url must be an http:// or https:// URL with a host, got "localhost:8080"'),
        ("ftp://host", None, {}, "--url must be an http:// or https:// URL"),
        ("http://", None, {}, "--url must be an http:// or https:// URL with a host"),
        ("http://host:99999", None, {}, "--url must be an http:// or https:// URL"),
        ("http://host/?x=1", None, {}, "--url must not have a query or fragment"),
        (None, None, {"BAKEMON_URL": "bakemon:8080"}, "BAKEMON_URL must be an http:// or https://"),
        (None, "two words", {}, "--token must not contain whitespace"),
        (None, None, {"BAKEMON_API_TOKEN": "tok\n"}, "BAKEMON_API_TOKEN must not contain whitespace"),
    ],
)  # fmt: skip
def test_bad_settings_are_named_errors(
    url: str | None, token: str | None, env: dict[str, str], message: str
) -> None:
    """A bad URL or token fails with a ConfigError naming the flag or variable it came from."""
    with pytest.raises(ConfigError, match="^" + message.replace("?", r"\?")) as info:
        load_client_settings(url, token, env=env)
    if "TOKEN" in message or "--token" in message:  # a secret is never echoed
        assert info.value.value == "(hidden)" and "word" not in str(info.value)


def test_cli_reads_the_url_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`bakemon bake get` with a bad BAKEMON_URL exits 4 with the variable named."""
    monkeypatch.setenv("BAKEMON_URL", "not-a-url")
    assert main(["bake", "get", "x"]) == 4
    assert 'BAKEMON_URL must be an http:// or https:// URL with a host, got "not-a-url"' in (
        capsys.readouterr().err
    )


# -- bake wait -----------------------------------------------------------------------------------
Answer = tuple[int, Any]  # HTTP status, body (bytes sent as is, anything else as JSON)


def _doc(status: str, **extra: Any) -> dict[str, Any]:
    return {"id": "b", "status": status, "reasons": [f"{status.lower()} reason"], **extra}


class _Scripted:
    """A tiny HTTP server answering GETs from a script; the last answer repeats."""

    def __init__(self, answers: list[Answer]) -> None:
        self.answers = answers
        self.calls = 0
        script = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                status, body = script.answers[min(script.calls, len(script.answers) - 1)]
                script.calls += 1
                data = body if isinstance(body, bytes) else orjson.dumps(body)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def scripted() -> Iterator[Callable[[list[Answer]], _Scripted]]:
    servers: list[_Scripted] = []

    def make(answers: list[Answer]) -> _Scripted:
        servers.append(_Scripted(answers))
        return servers[-1]

    yield make
    for s in servers:
        s.close()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait(url: str, *flags: str) -> int:
    return main(["bake", "wait", "b", "--url", url, "--interval", "0.05s", *flags])


@pytest.mark.parametrize(
    ("answers", "code", "stdout"),
    [
        ([(200, _doc("PENDING")), (200, _doc("PROMOTE"))], 0, "PROMOTE"),
        ([(200, _doc("HALT"))], 1, "HALT"),
        ([(200, _doc("INCONCLUSIVE", resolution="PROMOTE"))], 2, "INCONCLUSIVE"),
        ([(200, _doc("INCONCLUSIVE", resolution="HALT"))], 2, "INCONCLUSIVE"),
        ([(503, {"error": "monitor not ready"}), (200, _doc("HALT"))], 1, "HALT"),
        ([(200, b"<html>proxy</html>"), (200, _doc("PROMOTE"))], 0, "PROMOTE"),
    ],
)
def test_decisions_exit_with_their_codes(
    scripted: Callable[[list[Answer]], _Scripted],
    capsys: pytest.CaptureFixture[str],
    answers: list[Answer],
    code: int,
    stdout: str,
) -> None:
    """PROMOTE 0, HALT 1, INCONCLUSIVE 2 (either resolution); a passing 503 or junk is retried."""
    server = scripted(answers)
    assert _wait(server.url, "--timeout", "10s") == code
    cap = capsys.readouterr()
    assert cap.out == f"{stdout}\n"
    if "resolution" in answers[-1][1]:
        assert f"resolution: {answers[-1][1]['resolution']}" in cap.err


def test_still_pending_at_the_timeout_exits_5(
    scripted: Callable[[list[Answer]], _Scripted], capsys: pytest.CaptureFixture[str]
) -> None:
    """A bake still PENDING when --timeout runs out exits 5, not INCONCLUSIVE's 2."""
    server = scripted([(200, _doc("PENDING"))])
    assert _wait(server.url, "--timeout", "0.3s") == 5
    cap = capsys.readouterr()
    assert cap.out == "" and "timed out waiting for bake b" in cap.err
    assert server.calls >= 2


def test_an_unreachable_api_exits_6_after_the_retries(capsys: pytest.CaptureFixture[str]) -> None:
    """A closed port is retried --retries times, then exit 6 (well before the timeout)."""
    url = f"http://127.0.0.1:{_closed_port()}"
    assert _wait(url, "--timeout", "1h", "--retries", "2") == 6
    err = capsys.readouterr().err
    assert "cannot reach the bakemon API" in err and "failed poll 3 of 3" in err
    assert "giving up on bake b" in err


@pytest.mark.parametrize(
    "answer",
    [
        (500, {"error": "internal error (logged by bakemon)"}),
        (429, {"error": "slow down"}),
        (200, {"id": "b", "status": 3}),
        (200, _doc("HALT", override={"status": "PROMOTE"})),
    ],
    ids=["500", "429", "numeric-status", "contradicting-override"],
)
def test_persistent_errors_or_unreadable_documents_exit_6(
    scripted: Callable[[list[Answer]], _Scripted],
    capsys: pytest.CaptureFixture[str],
    answer: Answer,
) -> None:
    """5xx, 429 or documents that cannot be read, on every poll: exit 6, never a verdict."""
    server = scripted([answer])
    assert _wait(server.url, "--timeout", "1h", "--retries", "1") == 6
    assert server.calls == 2 and capsys.readouterr().out == ""


def test_timeout_while_unreachable_exits_6(capsys: pytest.CaptureFixture[str]) -> None:
    """If the last poll failed when the timeout ran out, the answer is "unreachable" (6)."""
    url = f"http://127.0.0.1:{_closed_port()}"
    assert _wait(url, "--timeout", "0.2s", "--retries", "1000") == 6
    assert "timed out" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        ((404, {"error": 'bake "b" is not registered', "status": 404}), "HTTP 404"),
        ((401, {"error": "missing bearer token", "status": 401}), "HTTP 401"),
    ],
)
def test_unknown_bake_or_rejected_token_exits_4_at_once(
    scripted: Callable[[list[Answer]], _Scripted],
    capsys: pytest.CaptureFixture[str],
    answer: Answer,
    message: str,
) -> None:
    """Waiting cannot fix a 404 or 401: exit 4 after one poll."""
    server = scripted([answer])
    assert _wait(server.url, "--timeout", "1h") == 4
    assert server.calls == 1 and message in capsys.readouterr().err


def test_bad_wait_options_exit_4(capsys: pytest.CaptureFixture[str]) -> None:
    """Negative --retries or a zero --interval are usage errors."""
    assert _wait(DEFAULT_API_URL, "--retries", "-1") == 4
    assert "--retries must be >= 0, got -1" in capsys.readouterr().err
    assert main(["bake", "wait", "b", "--interval", "0s"]) == 4
    assert "--interval must be > 0" in capsys.readouterr().err


def test_wait_polls_on_the_clock_it_is_given(
    scripted: Callable[[list[Answer]], _Scripted],
) -> None:
    """With a fake clock, a 30 min timeout at 5 s intervals polls at 0, 5, …, 1800 s, then exit 5."""
    server = scripted([(200, _doc("PENDING"))])
    now = [0.0]
    code = wait_for_verdict(
        ApiClient(server.url),
        "b",
        WaitOptions(timeout_s=1800, interval_s=5),
        out=io.StringIO(),
        clock=lambda: now[0],
        sleep=lambda s: now.__setitem__(0, now[0] + s),
    )
    assert code == 5 and server.calls == 361


def test_help_lists_every_exit_code(capsys: pytest.CaptureFixture[str]) -> None:
    """`bakemon bake wait --help` documents 0, 1, 2, 4, 5 and 6."""
    with pytest.raises(SystemExit):
        main(["bake", "wait", "--help"])
    out = capsys.readouterr().out
    for line in ("0  PROMOTE", "1  HALT", "2  INCONCLUSIVE", "4  usage", "5  timeout", "6  API"):
        assert line in out, line


def test_an_answer_cut_short_is_retried_not_a_crash(capsys: pytest.CaptureFixture[str]) -> None:
    """An API dying mid-answer (fewer bytes than Content-Length) is a failed poll, retried up
    to --retries, then exit 6; never an uncaught exception, whose exit code 1 reads as HALT."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", "1000")
            self.end_headers()
            self.wfile.write(b'{"id": "b", "sta')
            self.close_connection = True

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        assert _wait(url, "--timeout", "1h", "--retries", "1") == 6
    finally:
        server.shutdown()
        server.server_close()
    assert "failed poll 2 of 2" in capsys.readouterr().err
