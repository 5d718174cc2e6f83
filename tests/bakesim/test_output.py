"""Tests of the JSON-lines output: record shape, byte-identical gzip files, write limits."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from bakesim.errors import SimulationError
from bakesim.generation import generate
from bakesim.model import Scenario
from bakesim.output import to_json_lines, write_jsonl
from bakesim.presets import scenario_preset


def test_same_seed_gives_identical_bytes(tmp_path: Path) -> None:
    """Same scenario and seed → byte-identical gzip files, whatever the file name."""
    sc = scenario_preset("errors-2x", seed=42)
    a, b = tmp_path / "a.jsonl.gz", tmp_path / "other.jsonl.gz"
    assert write_jsonl(a, sc, total_requests=30_000) == 30_000
    assert write_jsonl(b, sc, total_requests=30_000, chunk_requests=777) == 30_000
    assert a.read_bytes() == b.read_bytes()


def test_json_record_shape() -> None:
    """Each line is one orjson object with the plain preset's keys, types and rounding."""
    cols = generate(scenario_preset("errors-2x", seed=1), total_requests=5_000)
    lines = to_json_lines(cols)
    assert len(lines) == 5_000 and all(b"\n" not in line for line in lines)
    records = [orjson.loads(line) for line in lines]
    keys = ["ts", "service", "version", "status", "latency_ms", "route", "zone", "host"]
    assert all(list(r) == keys for r in records)
    r = records[0]
    assert isinstance(r["ts"], float) and isinstance(r["status"], int)
    assert isinstance(r["latency_ms"], float) and r["service"] == "checkout"
    assert all(
        round(x["ts"], 6) == x["ts"] and round(x["latency_ms"], 3) == x["latency_ms"]
        for x in records
    )
    assert [x["ts"] for x in records] == cols.ts.tolist()


def test_write_needs_a_limit(tmp_path: Path) -> None:
    """write_jsonl without duration or request limit raises SimulationError and writes nothing."""
    out = tmp_path / "x.jsonl"
    with pytest.raises(SimulationError, match="write_jsonl needs duration_s or total_requests"):
        write_jsonl(out, Scenario())
    assert not out.exists()
