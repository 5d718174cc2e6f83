"""Record the golden replay outputs: ``python tests/golden/golden_cases.py``.

For each simulator scenario the log is generated with a fixed seed, then replayed through the
``bakemon replay --json`` CLI (final documents) and through the replay API (every timeline row
with its full document). The files were first recorded from the pre-move main; the golden test
checks that a refactor leaves them byte-identical. A change that is *meant* to alter verdicts
re-records them with this script and says why in its commit.

Re-recorded for event-time windows and strata (issue 9): decisions are now taken per closed
window, so decision times sit on window ends and the last window plus lateness is untested.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

from monitor.bakes.spec import Registry
from monitor.cli.main import build_parser
from monitor.cli.replay_cmd import _bakes_and_fields
from monitor.replay import iter_line_batches, open_log, replay

HERE = Path(__file__).resolve().parent
DATA = HERE / "data"

# name, scenario, requests, extra replay flags
CASES: tuple[tuple[str, str, int, tuple[str, ...]], ...] = (
    ("aa", "aa", 60_000, ("--min-requests", "5000", "--latency-tol", "1.2")),
    ("errors-2x", "errors-2x", 40_000, ()),
    ("errors-1.5x", "errors-1.5x", 40_000, ()),
    ("latency-1.10", "latency-1.10", 40_000, ()),
    ("slow-tail", "slow-tail", 30_000, ()),
    ("mid-bake", "mid-bake", 40_000, ()),
    ("low-traffic", "low-traffic", 3_000, ("--min-requests", "500", "--max-requests", "1000")),
    (
        "aa-promote",
        "aa+share",
        60_000,
        ("--min-requests", "3000", "--error-tol", "1.5", "--latency-tol", "1.3"),
    ),
    (
        "aa-inconclusive",
        "aa+share",
        20_000,
        ("--min-requests", "2000", "--max-requests", "3000", "--on-inconclusive", "promote"),
    ),
    ("policies", "aa+share", 60_000, ("--config", str(HERE / "policies.toml"))),
)
FLAG_BAKE = ("--service", "checkout", "--canary", "v42", "--baseline", "v41", "--id", "golden")
SEED = "7"


def bakemon(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "monitor.cli", *args], capture_output=True, check=False
    )


def simulate(scenario: str, requests: int, out: Path) -> None:
    """``NAME+share``: the preset with half the traffic on the canary and a 5 % error rate."""
    name, _, variant = scenario.partition("+")
    extra = ["--canary-share", "0.5", "--error-rate", "0.05"] if variant == "share" else []
    proc = bakemon(
        "simulate", "--scenario", name, "--requests", str(requests), "--seed", SEED,
        "--out", str(out), *extra,
    )  # fmt: skip
    if proc.returncode != 0:
        raise SystemExit(proc.stderr.decode())


def bake_args(extra: tuple[str, ...]) -> list[str]:
    """The replay flags of a case: its own bake config, or the flag-built bake."""
    return [*extra] if "--config" in extra else [*FLAG_BAKE, *extra]


def replay_json(log: Path, extra: tuple[str, ...]) -> tuple[int, bytes]:
    proc = bakemon("replay", str(log), *bake_args(extra), "--json")
    return proc.returncode, proc.stdout


def replay_timeline(log: Path, extra: tuple[str, ...]) -> bytes:
    """Every timeline row (event time, counts, status, reason, full document), one per line."""
    rows = timeline_rows(log, bake_args(extra))
    return b"".join(orjson.dumps(r, option=orjson.OPT_SORT_KEYS) + b"\n" for r in rows)


def timeline_rows(log: Path, args: Sequence[str]) -> list[dict[str, Any]]:
    ns = build_parser().parse_args(["replay", str(log), *args])
    bakes, field_map = _bakes_and_fields(ns)
    with open_log(log) as stream:
        result = replay(iter_line_batches(stream, ns.increment), Registry(bakes), field_map)
    rows = [
        {
            "bake": r.bake,
            "event_time_s": r.event_time_s,
            "canary_requests": r.canary_requests,
            "baseline_requests": r.baseline_requests,
            "status": r.status,
            "reason": r.reason,
            "document": r.document,
        }
        for r in result.timeline
    ]
    rows.extend(
        {"event": {"kind": e.kind, "status": e.status.value, "summary": e.summary,
                   "event_time_s": e.event_time_s, "metric": e.metric}}
        for e in result.events
    )  # fmt: skip
    return rows


def main() -> None:
    DATA.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for name, scenario, requests, extra in CASES:
            log = Path(tmp) / f"{name}.jsonl"
            simulate(scenario, requests, log)
            code, doc = replay_json(log, extra)
            (DATA / f"{name}.json").write_bytes(doc)
            (DATA / f"{name}.exit").write_text(f"{code}\n")
            (DATA / f"{name}.timeline.jsonl").write_bytes(replay_timeline(log, extra))
            print(f"{name}: exit {code}, {len(doc):,} bytes", file=sys.stderr)


if __name__ == "__main__":
    main()
