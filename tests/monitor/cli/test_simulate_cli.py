"""Tests of `bakemon simulate`: durations, output files, overrides and usage errors (exit 4)."""

from __future__ import annotations

import argparse
import gzip
import re
from pathlib import Path

import orjson
import pytest

from bakesim import generate, scenario_preset, to_json_lines, write_jsonl
from bakesim.model import DEFAULT_START_S
from monitor.cli.durations import parse_duration_s
from monitor.cli.simulate import add_simulate_arguments, run_simulate
from monitor.errors import ConfigError


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bakemon simulate")
    add_simulate_arguments(parser)
    return run_simulate(parser.parse_args(argv))


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90", 90.0),
        ("90s", 90.0),
        ("20m", 1200.0),
        ("2h", 7200.0),
        ("1.5h", 5400.0),
        ("500ms", 0.5),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    """Durations accept plain seconds and ms/s/m/h/d suffixes."""
    assert parse_duration_s(text) == seconds


def test_cli_writes_gzip_with_requested_line_count(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--out x.gz --requests N writes N gzip lines, equal to write_jsonl, and a summary line."""
    out = tmp_path / "bake.jsonl.gz"
    rc = _run(["--out", str(out), "--requests", "12345", "--scenario", "errors-2x", "--seed", "5"])
    assert rc == 0
    lines = gzip.decompress(out.read_bytes()).splitlines()
    assert len(lines) == 12_345
    ref = tmp_path / "ref.jsonl.gz"
    write_jsonl(ref, scenario_preset("errors-2x", seed=5), total_requests=12_345)
    assert out.read_bytes() == ref.read_bytes()
    err = capsys.readouterr().err
    match = re.search(r"wrote 12,345 records .*canary ([\d,]+), baseline ([\d,]+)", err)
    assert match is not None
    assert sum(int(g.replace(",", "")) for g in match.groups()) == 12_345
    assert "2026-11-28T00:00:00" in err


def test_cli_overrides_reach_the_records(tmp_path: Path) -> None:
    """Service, version, share and regression flags shape the written records."""
    out = tmp_path / "x.jsonl"
    argv = ["--out", str(out), "--duration", "2m", "--rps", "300", "--service", "search"]
    argv += ["--baseline-version", "b1", "--canary-version", "c2", "--canary-share", "0.5"]
    argv += ["--error-rate", "0.2", "--error-multiplier", "2", "--regression-start", "1m"]
    assert _run(argv) == 0
    records = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    assert {r["service"] for r in records} == {"search"}
    assert {r["version"] for r in records} == {"b1", "c2"}
    assert all(r["ts"] < DEFAULT_START_S + 120 for r in records)
    assert records[-1]["ts"] > DEFAULT_START_S + 110

    def rate(version: str, late: bool) -> float:
        picked = [
            r
            for r in records
            if r["version"] == version and (r["ts"] >= DEFAULT_START_S + 60) == late
        ]
        return float(sum(r["status"] >= 500 for r in picked) / len(picked))

    assert rate("b1", True) < 0.3 and rate("c2", False) < 0.3 and rate("c2", True) > 0.3


def test_cli_writes_to_stdout(capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    """--out - writes the JSON lines to stdout and the summary to stderr."""
    assert _run(["--out", "-", "--requests", "100", "--seed", "3"]) == 0
    captured = capsysbinary.readouterr()
    assert captured.out.splitlines() == to_json_lines(
        generate(scenario_preset("aa", seed=3), total_requests=100)
    )
    assert b"wrote 100 records to stdout" in captured.err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--requests", "0"], "--requests must be an integer >= 1, got 0"),
        (["--requests", "lots"], '--requests must be an integer, got "lots"'),
        (["--duration", "2x"], '--duration must look like 90s, 20m or 2h, got "2x"'),
        (["--duration", "0s"], "--duration must be > 0"),
        (["--canary-share", "1.5"], "canary_share must be in (0, 1), got 1.5"),
        (["--error-rate", "nan"], '--error-rate must be finite, got "nan"'),
        (["--scenario", "nope"], 'scenario "nope" is not known'),
        (["--seed", "-1"], "seed must be an integer >= 0, got -1"),
        (["--slow-tail-fraction", "2"], "slow_tail_fraction must be in [0, 1], got 2.0"),
        (["--regression-start", "soon"], "--regression-start must look like 90s"),
        (["--start", "yesterday"], '--start must be "now", an ISO 8601 time or epoch seconds'),
        (["--start", "-5"], "--start must be a time after 1970, got -5"),
    ],
)
def test_cli_bad_arguments_exit_4(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    """Bad values return 4 with a message naming the problem, and write no file."""
    out = tmp_path / "x.jsonl"
    assert _run(["--out", str(out), *argv]) == 4
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_cli_unwritable_output_exits_4(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An output path that cannot be opened returns 4 with the path in the message."""
    out = tmp_path / "missing-dir" / "x.jsonl"
    assert _run(["--out", str(out), "--requests", "10"]) == 4
    assert str(out) in capsys.readouterr().err


def test_bad_duration_raises_config_error() -> None:
    """A duration that is not a number with a unit raises ConfigError naming the flag."""
    with pytest.raises(ConfigError, match='--duration must look like 90s, 20m or 2h, got "soon"'):
        parse_duration_s("soon", name="--duration")


def test_start_moves_event_time_and_keeps_the_default_reproducible(
    capsysbinary: pytest.CaptureFixture[bytes],
) -> None:
    """--start now puts the records at the clock (to feed a running bakemon, whose bakes count
    from their creation); an ISO time is taken as given; without it the file is the same."""
    import time

    def first_ts(*extra: str) -> float:
        assert _run(["--out", "-", "--requests", "5", *extra]) == 0
        return float(orjson.loads(capsysbinary.readouterr().out.splitlines()[0])["ts"])

    before = time.time()
    assert before - 2 <= first_ts("--start", "now") <= time.time() + 2
    assert int(first_ts("--start", "2026-12-02T10:00:00Z")) == 1_796_205_600
    assert int(first_ts("--start", "2026-12-02T11:00:00+01:00")) == 1_796_205_600
    assert int(first_ts()) == int(DEFAULT_START_S)
