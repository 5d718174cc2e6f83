"""Golden replay outputs: the final documents and full timelines recorded before the house move.

Every key, string, status and exit code must match exactly; numbers to 10 significant digits.
The last bits of a float follow the numpy build (numpy 2.4 sums some arrays in another order
than 2.3, moving e-values in their 16th digit), and a golden file guards behaviour, not ulps.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from golden_cases import CASES, DATA, replay_json, replay_timeline, simulate

DIGITS = 10


def _rounded(x: Any) -> Any:
    if isinstance(x, float):
        return float(f"{x:.{DIGITS}g}")
    if isinstance(x, dict):
        return {k: _rounded(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_rounded(v) for v in x]
    return x


def _lines(raw: bytes) -> list[Any]:
    return [_rounded(orjson.loads(line)) for line in raw.splitlines() if line.strip()]


@pytest.mark.parametrize(
    ("name", "scenario", "requests", "extra"), CASES, ids=[c[0] for c in CASES]
)
def test_replay_matches_golden(
    tmp_path: Path, name: str, scenario: str, requests: int, extra: tuple[str, ...]
) -> None:
    """`replay --json`, its exit code and every timeline row equal the recording (numbers to
    10 significant digits)."""
    log = tmp_path / f"{name}.jsonl"
    simulate(scenario, requests, log)
    code, doc = replay_json(log, extra)
    assert _rounded(orjson.loads(doc)) == _rounded(
        orjson.loads((DATA / f"{name}.json").read_bytes())
    )
    assert f"{code}\n" == (DATA / f"{name}.exit").read_text()
    timeline = replay_timeline(log, extra)
    assert _lines(timeline) == _lines((DATA / f"{name}.timeline.jsonl").read_bytes())
    assert timeline.count(b"\n") == (DATA / f"{name}.timeline.jsonl").read_bytes().count(b"\n")


def test_rounding_keeps_what_matters() -> None:
    """The comparison ignores a float's 16th digit, not a changed value, key or string."""
    a = {"e": 0.6658476563486551, "s": "HALT", "n": [1, 2.5]}
    assert _rounded(a) == _rounded({"e": 0.665847656348655, "s": "HALT", "n": [1, 2.5]})
    assert _rounded(a) != _rounded({**a, "e": 0.6658477})
    assert _rounded(a) != _rounded({**a, "s": "PROMOTE"})
    assert _rounded(a) != _rounded({**a, "n": [1, 2.5, 3]})
