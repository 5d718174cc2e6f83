"""`bakemon fields check`: records as parsed, rejections with reasons, plausibility warnings."""

from __future__ import annotations

import time
from pathlib import Path

import orjson
import pytest

from monitor.cli import exits
from monitor.cli.main import main


def _line(**over: object) -> bytes:
    rec: dict[str, object] = {
        "ts": time.time(),
        "service": "checkout",
        "version": "v42",
        "status": 200,
        "latency_ms": 12,
        "route": "/cart",
    }
    rec.update(over)
    return orjson.dumps(rec)


def _log(tmp_path: Path, lines: list[bytes], name: str = "log.jsonl") -> str:
    path = tmp_path / name
    path.write_bytes(b"\n".join(lines) + b"\n")
    return str(path)


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["fields", "check", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_good_lines_exit_0_and_print_each_record(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Plausible lines: one row per record with its fields, exit 0, no warning."""
    lines = [_line(version=v, status=s) for v, s in (("v42", 200), ("v41", 503), ("v41", 200))]
    code, out, _ = _run(capsys, _log(tmp_path, lines))
    assert code == 0
    rows = [r for r in out.splitlines() if "checkout" in r]
    assert len(rows) == 3
    assert "v41" in rows[1] and "503" in rows[1] and "yes" in rows[1] and "12.000ms" in rows[1]
    assert "route=/cart" in rows[0]
    assert "warnings:" not in out and "3 lines read: every line decoded, 0 warning(s)" in out


def test_rejected_lines_exit_7_with_line_numbers_and_reasons(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Bad lines are listed with their file line numbers and reasons; exit 7."""
    lines = [_line(version="v1"), b"", b"not json", _line(version="v2", latency_ms=-3)]
    code, out, _ = _run(capsys, _log(tmp_path, lines))
    assert code == exits.FIELDS_REJECTED
    assert "rejected 2 of 3 lines:" in out
    assert "line 3: invalid_json" in out and "line 4: bad_latency" in out


def test_seconds_read_as_ms_are_warned_about(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Latencies like 0.042 under the default ms unit draw a unit warning naming the fix."""
    lines = [_line(version=f"v{i % 2}", latency_ms=0.031 + i / 1000) for i in range(6)]
    code, out, err = _run(capsys, _log(tmp_path, lines))
    assert code == 0
    assert 'latency field "latency_ms": latencies look like seconds, not ms' in out
    assert 'set latency_unit = "s"' in out and err == ""


def test_time_far_from_now_and_one_version_are_warned_about(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Event times days away and a single version are each one warning."""
    lines = [_line(ts=time.time() - 10 * 86_400) for _ in range(3)]
    _, out, _ = _run(capsys, _log(tmp_path, lines))
    assert 'event times ("ts", read in s) are 10.0 days behind now' in out
    assert 'version field "version" has one value ("v42") in 3 records' in out
    assert "no error in 3 records (status >= 500)" in out


def test_preset_is_the_base_of_the_config_fields(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--preset envoy with a [fields] override of the latency path decodes with both."""
    cfg = tmp_path / "f.toml"
    cfg.write_text('[fields]\nlatency = "dur_s"\nlatency_unit = "s"\n')
    rec = {"start_time": time.time(), "authority": "api", "upstream_cluster": "v1",
           "response_code": 0, "dur_s": 0.25}  # fmt: skip
    code, out, _ = _run(
        capsys, _log(tmp_path, [orjson.dumps(rec)]), "--preset", "envoy", "--config", str(cfg)
    )
    assert code == 0
    assert 'preset "envoy" + [fields] of' in out and 'latency "dur_s" (s)' in out
    assert "250.000ms" in out and " yes " in out  # response code 0 is an envoy error


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["missing.jsonl"], 'log file "missing.jsonl" does not exist'),
        (["LOG", "--lines", "0"], "--lines must be >= 1, got 0"),
        (["LOG", "--config", "nope.toml"], 'config file "nope.toml" does not exist'),
    ],
)
def test_bad_input_is_one_line_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    """A missing log or config, or a bad --lines, exits 4 with one clear line."""
    log = _log(tmp_path, [_line()])
    code, _, err = _run(capsys, *[log if a == "LOG" else a for a in args])
    assert code == exits.USAGE
    assert message in err and "Traceback" not in err


def test_bad_fields_table_is_one_line_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An unknown field-map key in the config exits 4 naming it."""
    cfg = tmp_path / "f.toml"
    cfg.write_text('[fields]\npreset = "plain"\nlatncy = "x"\n')
    code, _, err = _run(capsys, _log(tmp_path, [_line()]), "--config", str(cfg))
    assert code == exits.USAGE and 'unknown field map key(s) "latncy"' in err


def test_empty_log_exits_7(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A log without lines is not "all good"."""
    code, out, _ = _run(capsys, _log(tmp_path, [b""]))
    assert code == exits.FIELDS_REJECTED and "holds no lines" in out


def test_lines_limit_reads_only_the_first_lines(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--lines N checks N lines: a bad line after them is not read."""
    lines = [_line(version=f"v{i % 2}") for i in range(5)] + [b"oops"]
    code, out, _ = _run(capsys, _log(tmp_path, lines), "--lines", "5")
    assert code == 0 and "5 lines read: every line decoded" in out


FIXTURES = Path(__file__).resolve().parents[1] / "records" / "fixtures"


@pytest.mark.parametrize("fmt", ["envoy-gateway", "istio"])
def test_a_format_read_with_the_wrong_preset_names_the_presets_that_fit(
    fmt: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Lines of another format (every one rejected by the default map) end with a hint naming
    the presets that decode them — the right one among them — and it decodes them all."""
    code, out, _ = _run(capsys, str(FIXTURES / f"{fmt}.jsonl"))
    assert code == exits.FIELDS_REJECTED
    hint = out.strip().splitlines()[-1]
    assert hint.startswith("hint:") and f"{fmt} (" in hint, hint
    code, out, _ = _run(capsys, "--preset", fmt, str(FIXTURES / f"{fmt}.jsonl"))
    assert code == 0 and "hint:" not in out


def test_no_hint_when_most_lines_decode(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines = [_line(), _line(), b"not json"]
    code, out, _ = _run(capsys, _log(tmp_path, lines))
    assert code == exits.FIELDS_REJECTED and "hint:" not in out
