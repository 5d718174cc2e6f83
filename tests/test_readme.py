"""The README's commands and configuration keys work as written."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from monitor.bakes.policy import Evidence, Policy
from monitor.config import ROLES, SETTING_NAMES

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _blocks(lang: str) -> list[tuple[str, str]]:
    """(preceding text, body) of every fenced block in ``lang``."""
    return [
        (m.group(1), m.group(2))
        for m in re.finditer(rf"(.{{0,200}})```{lang}\n(.*?)```", README, re.S)
    ]


def test_runnable_shell_snippets_succeed() -> None:
    """Every ```sh block marked <!-- runnable --> runs from the repository root with exit 0."""
    runnable = [body for before, body in _blocks("sh") if "<!-- runnable -->" in before]
    assert runnable, "no runnable snippet found"
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    for body in runnable:
        venv_cmds = body.replace(".venv/bin/", f"{Path(sys.executable).parent}/")
        proc = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", venv_cmds],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
        assert "HALT" in proc.stdout and "PROMOTE" in proc.stdout


def test_bake_toml_example_replays(tmp_path: Path) -> None:
    """The README's bake TOML is valid and drives `bakemon replay` to a decision."""
    toml_blocks = [body for _, body in _blocks("toml") if "[[bake]]" in body]
    assert toml_blocks
    cfg = tmp_path / "bake.toml"
    cfg.write_text(toml_blocks[0])
    tomllib.loads(toml_blocks[0])
    from bakesim.scenario import scenario_preset, write_jsonl

    log = tmp_path / "e2x.jsonl"
    write_jsonl(log, scenario_preset("errors-2x", seed=3), total_requests=250_000)
    from monitor.cli.main import main

    assert main(["replay", str(log), "--config", str(cfg), "--quiet"]) == 1


def test_documented_setting_and_policy_keys_exist() -> None:
    """Every key in the README's settings and policy tables is one the code accepts."""
    settings_table = README[README.index("| key (TOML) |") : README.index("Topics bakemon owns")]
    keys = set(re.findall(r"^\| `([a-z_]+)`", settings_table, re.M))
    keys |= {
        k
        for pair in re.findall(r"^\| `([a-z_]+)` / `([a-z_]+)`", settings_table, re.M)
        for k in pair
    }
    tables = {"fields", "kafka", "bake", "discovery"}
    assert keys and keys <= set(SETTING_NAMES) | tables, sorted(keys - set(SETTING_NAMES) - tables)
    assert f"`{list(ROLES)}`".replace("'", '"') in settings_table
    start = README.index("## Policy reference")
    policy_table = README[start : README.index("\n## ", start + 5)]
    first_cells = [
        line.split("|")[1] for line in policy_table.splitlines() if line.startswith("| `")
    ]
    policy_keys = {
        k for cell in first_cells for k in re.findall(r"`([a-z_]+(?:\.[a-z_]+)?)`", cell)
    }
    assert len(policy_keys) > 10
    known_top = set(Policy.__dataclass_fields__) - {"extra", "errors", "latency", "evidence"}
    known_top |= set(Evidence.__dataclass_fields__)  # window_s, stratify, … are top-level keys
    for key in policy_keys:
        if "." in key:
            group, field = key.split(".")
            data = {
                group: {
                    field: 0.1
                    if field in ("tol", "abs_tol", "halt_margin", "weight", "slo_tol")
                    else (
                        [0.5]
                        if field == "quantiles"
                        else ([300] if field == "slo_thresholds_ms" else True)
                    )
                }
            }
            Policy.from_dict(data)
        else:
            assert key in known_top or key in ("halt", "alert", "promote"), key


@pytest.mark.parametrize(
    "cmd",
    [
        ["simulate", "--help"],
        ["replay", "--help"],
        ["run", "--help"],
        ["demo", "--help"],
        ["bake", "wait", "--help"],
        ["alerts", "tail", "--help"],
    ],
)
def test_documented_commands_exist(cmd: list[str]) -> None:
    """The commands the README uses are real subcommands."""
    out = subprocess.run(
        [sys.executable, "-m", "monitor.cli", *cmd], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
