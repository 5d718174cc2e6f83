"""Helpers for the broker-backed tests: produce logs, run bakemon processes, read verdicts."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import orjson

from benchmarks.faults.cluster import service_log
from monitor.kafka.io import KafkaSource, read_to_end
from monitor.kafka.topics import TopicLayout, ensure_topics

REQUESTS = "requests"
PREFIX = "t."
LAYOUT = TopicLayout(PREFIX, partials_partitions=4)
POLICY = {"min_canary_requests": 2000, "errors": {"tol": 0.5}, "latency": {"tol": 0.3}}


def two_service_log(n: int, seed: int = 1) -> list[bytes]:
    """checkout: canary with 2x errors; search: healthy canary. Both at a 50 % canary share
    (the fault suite's log: ``benchmarks.faults.cluster.service_log``)."""
    return service_log(n, seed)


def _counted(lines: Sequence[bytes], errors_only: bool) -> dict[str, tuple[int, int]]:
    """(canary, baseline) counts per bake id of the two-service log's valid records (of those
    with status >= 500 when ``errors_only``)."""
    out = {"checkout-v42": [0, 0], "search-v8": [0, 0]}
    for line in lines:
        try:
            d = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if not isinstance(d, dict) or not isinstance(d.get("latency_ms"), int | float):
            continue
        key = {"checkout": "checkout-v42", "search": "search-v8"}.get(d.get("service"))
        if key is None:
            continue
        if errors_only and not (isinstance(d.get("status"), int) and d["status"] >= 500):
            continue
        out[key][0 if d["version"] in ("v42", "v8") else 1] += 1
    return {k: (v[0], v[1]) for k, v in out.items()}


def expected_counts(lines: Sequence[bytes]) -> dict[str, tuple[int, int]]:
    """Exact (canary, baseline) request counts per bake id of the two-service log."""
    return _counted(lines, errors_only=False)


def expected_errors(lines: Sequence[bytes]) -> dict[str, tuple[int, int]]:
    """Exact (canary, baseline) errors (status >= 500) per bake id of the same records."""
    return _counted(lines, errors_only=True)


_BAKE_TOML = """
[[bake]]
id = "{service}-{canary}"
service = "{service}"
canary = "{canary}"
baseline = "{baseline}"
[bake.policy]
min_canary_requests = 2000
[bake.policy.errors]
tol = 0.5
[bake.policy.latency]
tol = 0.3
"""
BAKES_TOML = "".join(
    _BAKE_TOML.format(service=s, canary=c, baseline=b)
    for s, c, b in (("checkout", "v42", "v41"), ("search", "v8", "v7"))
)


def judge_errors(judge: Any) -> dict[str, tuple[int, int]]:
    """(canary, baseline) errors the judge has folded, per bake."""
    return {
        k: (st.verdict.canary.errors, st.verdict.baseline.errors) for k, st in judge.bakes.items()
    }


def judge_totals(judge: Any) -> dict[str, tuple[int, int]]:
    """(canary, baseline) requests the judge has folded, per bake."""
    return {
        k: (st.verdict.canary.requests, st.verdict.baseline.requests)
        for k, st in judge.bakes.items()
    }


def judge_has(judge: Any, want: dict[str, tuple[int, int]]) -> bool:
    """The judge's totals equal ``want`` for every bake in it."""
    got = judge_totals(judge)
    return all(got.get(k) == v for k, v in want.items())


def write_config(path: Path, bootstrap: str, **extra: Any) -> Path:
    settings = {
        "bootstrap_servers": bootstrap,
        "topics": [REQUESTS],
        "topic_prefix": PREFIX,
        "partials_partitions": 4,
        "block_offsets": 5000,
        "flush_interval_s": 0.5,
        "checkpoint_interval_s": 0.5,
        "api_port": 0,
        "ops_port": 0,
        "api_host": "127.0.0.1",
        "ops_host": "127.0.0.1",
        **extra,
    }
    lines = []
    for k, v in settings.items():
        lines.append(
            f"{k} = {orjson.dumps(v).decode() if not isinstance(v, bool) else str(v).lower()}"
        )
    path.write_text("\n".join(lines) + "\n" + BAKES_TOML)
    return path


def create_topics(bootstrap: str, partitions: int = 4) -> None:
    ensure_topics(bootstrap, LAYOUT, extra=[(REQUESTS, partitions)])


def produce(
    bootstrap: str, lines: Sequence[bytes], partitions: int = 4, topic: str = REQUESTS
) -> None:
    from kafka import KafkaProducer

    p = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, batch_size=512 * 1024, acks="all")
    for i, line in enumerate(lines):
        p.send(topic, line, partition=i % partitions)
    p.flush()
    p.close()


def start_run(config: Path, roles: str, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    fh = open(log, "ab")  # noqa: SIM115  # the child owns it
    return subprocess.Popen(
        [sys.executable, "-m", "monitor.cli", "run", "--config", str(config), "--roles", roles],
        stdout=fh,
        stderr=subprocess.STDOUT,
        env=env,
    )


def kill(proc: subprocess.Popen[bytes], sig: int = signal.SIGKILL, timeout_s: float = 20.0) -> int:
    proc.send_signal(sig)
    return proc.wait(timeout_s)


def verdict_documents(bootstrap: str) -> dict[str, dict[str, Any]]:
    """Latest verdict document per bake from the verdicts topic."""
    src = KafkaSource(bootstrap, partitions=[(LAYOUT.verdicts, p) for p in range(4)])
    try:
        snap = read_to_end(src, LAYOUT.verdicts, range(4))
    finally:
        src.close()
    return {k.decode(): orjson.loads(v) for k, v in snap.values.items() if v is not None}


def totals(doc: dict[str, Any]) -> tuple[int, int]:
    return doc["progress"]["canary_requests"], doc["progress"]["baseline_requests"]


def wait_until(cond: Callable[[], bool], timeout_s: float, what: str, every_s: float = 0.5) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(every_s)
    raise AssertionError(f"timed out after {timeout_s:g}s waiting for {what}")
