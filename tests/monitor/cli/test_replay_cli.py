"""End-to-end tests of ``bakemon replay`` on simulated logs, run as a user would."""

from __future__ import annotations

import gzip
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from bakesim.scenario import scenario_preset, write_jsonl
from monitor.cli.main import main

BAKE = ["--service", "checkout", "--canary", "v42", "--baseline", "v41"]


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("logs")
    out = {}
    for name, n in (("errors-2x", 150_000), ("aa", 400_000), ("latency-1.10", 150_000)):
        p = d / f"{name}.jsonl.gz"
        write_jsonl(p, scenario_preset(name, seed=7), total_requests=n)
        out[name] = p
    return out


def test_double_errors_exit_1_with_error_rate_reason(
    logs: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """A simulated 2x error regression replays to HALT (exit 1) citing the error rate."""
    code = main(["replay", str(logs["errors-2x"]), *BAKE, "--json"])
    doc = orjson.loads(capsys.readouterr().out)
    assert code == 1
    assert doc["status"] == "HALT" and doc["reasons"][0].startswith("error rate regression")
    assert doc["metrics"]["error_rate"]["ratio"] == pytest.approx(2.0, rel=0.35)


def test_aa_log_with_enough_traffic_exits_0(
    logs: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """An A/A log with enough canary traffic for its tolerance replays to PROMOTE (exit 0)."""
    code = main(
        ["replay", str(logs["aa"]), *BAKE, "--error-tol", "1.3", "--latency-tol", "1.3", "--json"]
    )
    doc = orjson.loads(capsys.readouterr().out)
    assert code == 0, doc["reasons"]
    assert doc["status"] == "PROMOTE" and doc["progress"]["canary_requests"] >= 10_000


def test_latency_regression_halts_on_latency(
    logs: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """A 10 % latency regression replays to HALT citing latency."""
    code = main(["replay", str(logs["latency-1.10"]), *BAKE, "--quiet"])
    out = capsys.readouterr().out
    assert code == 1 and "latency regression" in out


def test_garbage_lines_are_reported_and_the_rest_decides(
    logs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Garbage lines are counted by reason on stderr; the valid records still decide."""
    lines = gzip.decompress(logs["errors-2x"].read_bytes()).splitlines()
    bad = [
        b"garbage{",
        b"[1, 2]",
        b'{"ts": 1795824001, "service": "checkout", "version": "v42", "status": 200, "latency_ms": "fast"}',
        b'{"service": "checkout"}',
    ]
    mixed = tmp_path / "mixed.jsonl"
    mixed.write_bytes(b"\n".join(lines[:5000] + bad + lines[5000:]) + b"\n")
    code = main(["replay", str(mixed), *BAKE, "--json"])
    cap = capsys.readouterr()
    doc = orjson.loads(cap.out)
    assert code == 1
    assert "rejected 4 of 150,004 records" in cap.err
    assert (
        "invalid_json=1" in cap.err and "not_an_object=1" in cap.err and "bad_latency=1" in cap.err
    )
    clean = main(["replay", str(logs["errors-2x"]), *BAKE, "--json"])
    assert clean == 1
    # The same records counted, and the same decision at the same window: the garbage lines
    # only shift where the file's batches end (so how far the last watermark got).
    want = orjson.loads(capsys.readouterr().out)
    for key in ("canary_requests", "baseline_requests"):
        assert want["progress"][key] == doc["progress"][key]
    assert (want["decided_at"], want["reasons"]) == (doc["decided_at"], doc["reasons"])


def test_timeline_table_and_pending_exit_code(
    logs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A short log prints a timeline table and exits 3 (still PENDING)."""
    short = tmp_path / "short.jsonl"
    short.write_bytes(b"\n".join(gzip.decompress(logs["aa"].read_bytes()).splitlines()[:20_000]))
    code = main(["replay", str(short), *BAKE])
    out = capsys.readouterr().out
    assert code == 3
    assert out.splitlines()[0].split()[:3] == ["event", "time", "bake"]
    assert "PENDING" in out


def test_bake_from_toml_config(
    logs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A TOML file with [[bake]] and a policy drives the replay like flags do."""
    cfg = tmp_path / "bake.toml"
    cfg.write_text(
        '[[bake]]\nid = "checkout-v42"\nservice = "checkout"\ncanary = "v42"\nbaseline = "v41"\n'
        "[bake.policy]\nmin_canary_requests = 5000\n[bake.policy.latency]\nenabled = false\n"
    )
    code = main(["replay", str(logs["errors-2x"]), "--config", str(cfg), "--json"])
    doc = orjson.loads(capsys.readouterr().out)
    assert code == 1 and doc["id"] == "checkout-v42" and "latency" not in doc["metrics"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["replay", "/nonexistent.jsonl", *BAKE], 'log file "/nonexistent.jsonl" does not exist'),
        (
            ["replay", "x.jsonl", "--service", "checkout"],
            "a bake from flags needs --canary, --baseline",
        ),
        (["replay", "x.jsonl"], "no bake given"),
        (["replay", "x.jsonl", *BAKE, "--alpha", "2"], 'policy field "alpha"'),
        (["replay", "x.jsonl", *BAKE, "--increment", "0"], "--increment must be >= 1"),
    ],
)
def test_usage_errors_exit_4_with_a_message(
    argv: list[str],
    message: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Usage and input errors exit 4 with a clear one-line message, no traceback."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "x.jsonl").write_text("")
    try:
        code = main(argv)
    except SystemExit as exc:
        code = int(exc.code or 0)
    err = capsys.readouterr().err
    assert code == 4
    assert message in err and "Traceback" not in err


def test_console_script_runs_as_installed() -> None:
    """The installed ``bakemon`` entry point answers --version (as a new user runs it)."""
    exe = Path(sys.executable).with_name("bakemon")
    out = subprocess.run([str(exe), "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("bakemon ")


def test_help_lists_the_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    """`bakemon replay --help` documents exit codes 0 to 4."""
    with pytest.raises(SystemExit):
        main(["replay", "--help"])
    out = capsys.readouterr().out
    for line in ("0  PROMOTE", "1  HALT", "2  INCONCLUSIVE", "3  still PENDING", "4  usage"):
        assert line in out, line


def test_timeline_file_holds_the_evidence_over_time(
    logs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--timeline FILE` writes what GET /v1/bakes/{id}/timeline answers: bounded points whose
    last one agrees with the final document; an unwritable path is a CLI message (exit 4)."""
    out = tmp_path / "timeline.json"
    code = main(["replay", str(logs["errors-2x"]), *BAKE, "--json", "--timeline", str(out)])
    doc = orjson.loads(capsys.readouterr().out)
    tl = orjson.loads(out.read_bytes())
    assert code == 1 and tl["id"] == doc["id"] and 0 < len(tl["points"]) <= tl["max_points"]
    last = tl["points"][-1]
    assert last["status"] == "HALT"
    assert last["requests"]["canary"] == doc["progress"]["tested_canary_requests"]
    assert any(p["status"] == "PENDING" for p in tl["points"])
    bad = tmp_path / "missing-dir" / "t.json"
    assert main(["replay", str(logs["errors-2x"]), *BAKE, "--quiet", "--timeline", str(bad)]) == 4
    assert f"cannot write {bad}" in capsys.readouterr().err


def test_html_file_is_the_bake_page_and_loads_nothing(
    logs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--html FILE` writes the bake page for a post-mortem: the decision's reason, the charts
    with data points, the segment table, the HALT alert; no URL it would fetch."""
    out = tmp_path / "page.html"
    code = main(["replay", str(logs["errors-2x"]), *BAKE, "--json", "--html", str(out)])
    doc = orjson.loads(capsys.readouterr().out)
    page = out.read_text()
    assert code == 1 and doc["status"] == "HALT"
    assert doc["decision"]["reason"].split(";")[0] in page.replace("&quot;", '"')
    assert "<svg" in page and "<circle" in page
    assert "/checkout" in page and "zone" in page  # the segments breakdown
    assert "BakeHalted" in page  # the alert it raised
    assert 'src="http' not in page and 'href="http' not in page


def test_default_bake_id_from_an_upstream_address_is_valid(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Versions read from Envoy's upstream_host (`10.244.0.14:3000`) make a valid default id:
    the characters an id cannot hold become `-`."""
    from monitor.bakes.spec import default_bake_id

    assert default_bake_id("backend.example.com", "10.244.0.14:3000") == (
        "backend.example.com-10.244.0.14-3000"
    )
    assert default_bake_id("a b", "v/2,v3") == "a-b-v-2-v3"
    assert default_bake_id("//", "::") == "bake"
    log = tmp_path / "eg.jsonl"
    lines = [
        {"time": 1_795_824_000 + i / 10, "service": "backend.example.com",
         "version": "10.244.0.14:3000" if i % 2 else "10.244.0.13:3000",
         "status": 200, "latency_ms": 20.0}
        for i in range(200)
    ]  # fmt: skip
    log.write_bytes(b"\n".join(orjson.dumps(x) for x in lines))
    code = main(["replay", str(log), "--service", "backend.example.com",
                 "--canary", "10.244.0.14:3000", "--baseline", "10.244.0.13:3000", "--json"])  # fmt: skip
    doc = orjson.loads(capsys.readouterr().out)
    assert code in (0, 2, 3) and doc["id"] == "backend.example.com-10.244.0.14-3000", doc
