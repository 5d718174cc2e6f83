"""`replay --error-ratio/--latency-ratio`: ratios, clearly named; the old --*-tol flags too."""

from __future__ import annotations

import time
from pathlib import Path

import orjson
import pytest

from monitor.cli.main import build_parser, main
from monitor.cli.replay_cmd import _bakes_and_fields

BAKE = ["--service", "checkout", "--canary", "v42", "--baseline", "v41"]


def _policy(*flags: str) -> dict[str, object]:
    args = build_parser().parse_args(["replay", "x.jsonl", *BAKE, *flags])
    bakes, _ = _bakes_and_fields(args)
    policy = bakes[0].policy
    return {"errors": policy.errors.tol, "latency": policy.latency.tol}


def test_ratio_flags_set_the_toml_tolerances() -> None:
    """--error-ratio 1.5 is errors.tol 0.5; --latency-ratio 1.2 is latency.tol 0.2."""
    tols = _policy("--error-ratio", "1.5", "--latency-ratio", "1.2")
    assert tols == pytest.approx({"errors": 0.5, "latency": 0.2})
    # stored as the decimal a user wrote, not 1.2 - 1.0 = 0.19999999999999996
    assert _policy("--error-ratio", "1.2", "--latency-ratio", "1.1") == {
        "errors": 0.2,
        "latency": 0.1,
    }


def test_old_names_still_take_the_ratio_with_a_notice(capsys: pytest.CaptureFixture[str]) -> None:
    """--error-tol R is --error-ratio R, with a deprecation line on stderr."""
    assert _policy("--error-tol", "1.5") == _policy("--error-ratio", "1.5")
    assert "--error-tol is deprecated: use --error-ratio" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--error-ratio", "0.2"], '--error-ratio is a ratio of at least 1: --error-ratio 1.2 tolerates a canary error rate up to 1.2x the baseline\'s (the TOML\'s "errors.tol" = 0.2), got 0.2'),
        (["--error-tol", "0.2"], "--error-tol is a ratio of at least 1"),
        (["--latency-ratio", "0.1"], '(the TOML\'s "latency.tol" = 0.2), got 0.1'),
        (["--error-ratio", "1.2", "--error-tol", "1.2"], "give --error-ratio or its old name --error-tol, not both"),
    ],
)  # fmt: skip
def test_a_tolerance_given_as_a_ratio_flag_is_explained(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str], message: str
) -> None:
    """The TOML's quantity (0.2) given to a ratio flag exits 4 saying what the flag takes."""
    log = tmp_path / "l.jsonl"
    log.write_bytes(orjson.dumps({"ts": time.time(), "service": "checkout"}) + b"\n")
    assert main(["replay", str(log), *BAKE, *flags]) == 4
    err = capsys.readouterr().err
    assert message in err and "got -0.8" not in err and "Traceback" not in err


def test_replay_preset_is_the_base_of_the_config_fields(tmp_path: Path) -> None:
    """replay --preset envoy --config FILE keeps the file's [fields] overrides."""
    cfg = tmp_path / "b.toml"
    cfg.write_text(
        '[[bake]]\nid = "b"\nservice = "s"\ncanary = "v2"\nbaseline = "v1"\n'
        '[fields]\nlatency = "dur_s"\nlatency_unit = "s"\n'
    )
    args = build_parser().parse_args(
        ["replay", "x.jsonl", "--config", str(cfg), "--preset", "envoy"]
    )
    _, fm = _bakes_and_fields(args)
    assert (fm.time, fm.latency, fm.latency_unit) == ("start_time", "dur_s", "s")
