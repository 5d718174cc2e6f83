"""Golden replay outputs: the final documents and full timelines recorded before the house move."""

from __future__ import annotations

from pathlib import Path

import pytest
from golden_cases import CASES, DATA, replay_json, replay_timeline, simulate


@pytest.mark.parametrize(
    ("name", "scenario", "requests", "extra"), CASES, ids=[c[0] for c in CASES]
)
def test_replay_matches_golden(
    tmp_path: Path, name: str, scenario: str, requests: int, extra: tuple[str, ...]
) -> None:
    """`replay --json`, its exit code and every timeline row are byte-identical to the recording."""
    log = tmp_path / f"{name}.jsonl"
    simulate(scenario, requests, log)
    code, doc = replay_json(log, extra)
    assert doc == (DATA / f"{name}.json").read_bytes()
    assert f"{code}\n" == (DATA / f"{name}.exit").read_text()
    assert replay_timeline(log, extra) == (DATA / f"{name}.timeline.jsonl").read_bytes()
