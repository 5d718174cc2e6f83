"""Issue 12's CLI traps: fast, light start-up, distinct exit codes, no blank help, clear errors."""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

import pytest

from monitor.cli import exits
from monitor.cli.main import build_parser, main
from monitor.verdict import ExitCode

HEAVY = ("numpy", "kafka", "river", "prometheus_client", "detectors", "monitor.verdict")


def _bakemon(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "monitor.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.mark.parametrize(
    "code",
    [
        "import monitor.cli.client, monitor.cli.main",
        "from monitor.cli.main import build_parser; build_parser('bake').parse_args("
        "['bake', 'get', 'x'])",
        "from monitor.cli.main import build_parser; build_parser('')",
    ],
)
def test_client_path_imports_no_heavy_module(code: str) -> None:
    """The client modules and the client's parser import neither numpy, Kafka, river nor the
    verdict engine (what made every command take seconds to start)."""
    probe = f"import sys\n{code}\nprint(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_light_exit_codes_are_the_verdict_enum() -> None:
    """monitor.cli.exits mirrors ExitCode's usage and unreachable codes, and 7 is new."""
    assert (exits.USAGE, exits.UNREACHABLE) == (ExitCode.USAGE, ExitCode.UNREACHABLE)
    assert exits.FIELDS_REJECTED not in {int(c) for c in ExitCode}


def _help_entries(parser: argparse.ArgumentParser, path: str) -> list[tuple[str, str | None]]:
    entries: list[tuple[str, str | None]] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help for a in action._choices_actions}
            for name, sub in action.choices.items():
                entries.append((f"{path} {name}", helps.get(name)))
                entries += _help_entries(sub, f"{path} {name}")
        elif action.dest != "help":
            entries.append((f"{path} {action.option_strings or action.dest}", action.help))
    return entries


def test_every_help_entry_says_something() -> None:
    """Every command, subcommand, option and argument has a non-blank help text."""
    entries = _help_entries(build_parser(), "bakemon")
    assert len(entries) > 80
    assert [name for name, text in entries if not (text or "").strip()] == []


def test_lazy_parser_offers_the_same_commands() -> None:
    """`bakemon --help` (nothing built in full) lists every command the full parser has."""
    full = build_parser().format_help()
    lazy = build_parser("").format_help()
    assert full.splitlines()[:2] == lazy.splitlines()[:2]
    assert "6  bakemon unreachable" in lazy and "7  fields check" in lazy


def test_top_level_help_documents_exit_codes() -> None:
    """`bakemon --help` exits 0 and lists the exit codes."""
    out = _bakemon("--help")
    assert out.returncode == 0
    for line in ("1  HALT", "4  usage or input error", "5  timeout", "6  bakemon unreachable"):
        assert line in out.stdout


@pytest.mark.parametrize(
    "args",
    [
        ["bake", "get", "X", "--url", "not-a-url"],
        ["bake", "wait", "X", "--url", "127.0.0.1:1"],
        ["bake", "list", "--url", "ftp://host"],
        ["alerts", "tail", "--url", "http://"],
    ],
)
def test_bad_url_is_one_line_usage_error_at_once(args: list[str]) -> None:
    """A URL without http(s):// or a host exits 4 with one line, no traceback, no retries."""
    t0 = time.monotonic()
    out = _bakemon(*args)
    assert out.returncode == exits.USAGE
    assert time.monotonic() - t0 < 30  # not bake wait's 30-minute retry loop
    assert "Traceback" not in out.stderr and "failed poll" not in out.stderr
    assert out.stderr.strip().splitlines() == [
        f'bakemon: error: --url must be an http:// or https:// URL with a host, got "{args[-1]}"'
    ]


@pytest.mark.parametrize(
    "args",
    [["bake", "get", "X"], ["bake", "list"], ["bake", "cancel", "X"], ["alerts", "tail"]],
)
def test_unreachable_api_exits_6_not_halt(
    args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """With nothing listening, client commands exit 6 (unreachable), never 1 (HALT) or 4."""
    assert main([*args, "--url", "http://127.0.0.1:1"]) == exits.UNREACHABLE
    err = capsys.readouterr().err
    assert "cannot reach the bakemon API at http://127.0.0.1:1" in err and "Traceback" not in err


def test_unknown_command_is_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    """An unknown command exits 4 naming the valid ones."""
    with pytest.raises(SystemExit) as exc:
        main(["bakes"])
    assert exc.value.code == exits.USAGE
    assert "invalid choice: 'bakes'" in capsys.readouterr().err
