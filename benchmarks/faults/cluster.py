"""A small bakemon deployment on the embedded broker for fault runs: split-role processes, a
request log, and the fault-free reference (``replay`` of the same records).

Everything listens on loopback only; processes are started with ``bakemon run`` exactly as an
operator would, and killed with real signals.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from bakesim.scenario import Regression, Scenario, ServiceSpec, generate, to_json_lines
from monitor.bakes.spec import Registry
from monitor.config import load_settings
from monitor.kafka.io import KafkaSource, read_to_end
from monitor.kafka.topics import TopicLayout, ensure_topics
from monitor.records.fieldmap import PRESETS
from monitor.replay import replay

__all__ = ["BAKES", "Cluster", "Proc", "reference", "service_log"]

REQUEST_TOPIC = "requests"
PARTITIONS = 4
PREFIX = "f."
LAYOUT = TopicLayout(PREFIX, partials_partitions=PARTITIONS)
# (bake id, service, canary, baseline): checkout's canary has 2x the errors, search's is healthy
BAKES = (("checkout-v42", "checkout", "v42", "v41"), ("search-v8", "search", "v8", "v7"))
_OPS_LINE = re.compile(rb"operations port on 127\.0\.0\.1:(\d+)")


def service_log(n: int, seed: int) -> list[bytes]:
    """``n`` JSON request lines of two services (checkout: 2x errors; search: healthy), both
    at a 50 % canary share, 400 requests/s of event time."""
    sc = Scenario(
        services=(
            ServiceSpec(
                name="checkout", canary_share=0.5, regression=Regression(error_multiplier=2.0)
            ),
            ServiceSpec(
                name="search", baseline_version="v7", canary_version="v8", canary_share=0.5
            ),
        ),
        mean_rps=400.0,
        seed=seed,
    )
    return to_json_lines(generate(sc, total_requests=n))


def reference(config: Path, lines: Sequence[bytes], batch: int = 2000) -> dict[str, dict[str, Any]]:
    """The fault-free run: ``replay`` of the same lines with the same bakes, per bake its
    status, the event time of the decision (s) and the totals."""
    result = replay(
        iter([lines[i : i + batch] for i in range(0, len(lines), batch)]),
        Registry(load_settings(str(config), env={}).bakes),
        PRESETS["plain"],
    )
    out = {}
    for bake_id, v in result.verdicts.items():
        r = v.readout()
        out[bake_id] = {
            "status": r.status.value,
            "decided_at_s": r.decided_at_s,
            "totals": (r.canary.requests, r.baseline.requests),
        }
    return out


@dataclass
class Proc:
    """One ``bakemon run`` process of a role slot; restarted in place after a kill."""

    roles: str
    log: Path
    popen: subprocess.Popen[bytes] | None = None
    starts: int = 0

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def ops_port(self) -> int | None:
        """The operations port this incarnation logged (the last one in the log)."""
        found = _OPS_LINE.findall(self.log.read_bytes()) if self.log.exists() else []
        return int(found[-1]) if found else None


@dataclass
class Cluster:
    """Topics, a config and role processes against one broker's ``bootstrap``."""

    bootstrap: str
    workdir: Path
    settings: dict[str, Any] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)  # extra environment of the processes
    procs: list[Proc] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        ensure_topics(self.bootstrap, LAYOUT, extra=[(REQUEST_TOPIC, PARTITIONS)])
        self.config = self.workdir / "bakemon.toml"
        base = {
            "bootstrap_servers": self.bootstrap,
            "topics": [REQUEST_TOPIC],
            "topic_prefix": PREFIX,
            "partials_partitions": PARTITIONS,
            "block_offsets": 5000,
            "flush_interval_s": 0.5,
            "checkpoint_interval_s": 0.5,
            "api_host": "127.0.0.1",
            "api_port": 0,
            "ops_host": "127.0.0.1",
            "ops_port": 0,
            **self.settings,
        }
        text = "".join(f"{k} = {orjson.dumps(v).decode()}\n" for k, v in base.items())
        for bake_id, service, canary, baseline in BAKES:
            text += (
                f'\n[[bake]]\nid = "{bake_id}"\nservice = "{service}"\ncanary = "{canary}"\n'
                f'baseline = "{baseline}"\n[bake.policy]\n'
                "min_canary_requests = 2000\n[bake.policy.errors]\ntol = 0.5\n"
                "[bake.policy.latency]\ntol = 0.3\n"
            )
        self.config.write_text(text)

    # -- processes ---------------------------------------------------------------------------
    def add(self, roles: str) -> Proc:
        proc = Proc(roles, self.workdir / f"{roles.replace(',', '+')}-{len(self.procs)}.log")
        self.procs.append(proc)
        self.start(proc)
        return proc

    def start(self, proc: Proc) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.env}
        with open(proc.log, "ab") as fh:
            fh.write(f"--- start {proc.starts} at {time.time():.3f}\n".encode())
            argv = [sys.executable, "-m", "monitor.cli", "run", "--config", str(self.config)]
            proc.popen = subprocess.Popen(
                [*argv, "--roles", proc.roles],
                stdout=fh,
                stderr=subprocess.STDOUT,
                env=env,
            )
        proc.starts += 1

    def kill(self, proc: Proc, sig: int = signal.SIGKILL, timeout_s: float = 30.0) -> int:
        assert proc.popen is not None
        proc.popen.send_signal(sig)
        return proc.popen.wait(timeout_s)

    def check_alive(self) -> None:
        """AssertionError naming the first process that died by itself (with its log tail)."""
        for p in self.procs:
            if p.popen is not None and p.popen.poll() is not None:
                tail = p.log.read_text(errors="replace")[-1500:]
                msg = f"{p.log.name} exited with {p.popen.returncode}:\n{tail}"
                raise AssertionError(msg)

    def stop_all(self) -> list[int]:
        codes = []
        for p in self.procs:
            if p.alive():
                codes.append(self.kill(p, signal.SIGTERM))
        return codes

    # -- traffic and results -----------------------------------------------------------------
    def produce(self, lines: Sequence[bytes], start: int = 0) -> None:
        from kafka import KafkaProducer

        p = KafkaProducer(
            bootstrap_servers=self.bootstrap, linger_ms=20, batch_size=512 * 1024, acks="all"
        )
        for i, line in enumerate(lines, start=start):
            p.send(REQUEST_TOPIC, line, partition=i % PARTITIONS)
        p.flush(timeout=120)
        p.close(timeout=10)

    def documents(self) -> dict[str, dict[str, Any]]:
        """The latest verdict document per bake, from the verdicts topic."""
        return _latest(self.bootstrap, LAYOUT.verdicts)

    def totals_are(self, want: dict[str, tuple[int, ...]]) -> bool:
        """Whether every bake's document holds exactly ``want`` (canary, baseline) requests."""
        docs = self.documents()
        return all(
            b in docs
            and (docs[b]["progress"]["canary_requests"], docs[b]["progress"]["baseline_requests"])
            == tuple(v)
            for b, v in want.items()
        )

    def state_partitions(self) -> dict[str, int]:
        """Bake id → the judge-state partition holding its snapshot."""
        src = KafkaSource(self.bootstrap, partitions=[(LAYOUT.state, p) for p in range(PARTITIONS)])
        try:
            out: dict[str, int] = {}
            for p in range(PARTITIONS):
                snap = read_to_end(src, LAYOUT.state, [p])
                out.update({k.decode(): p for k, v in snap.values.items() if v is not None})
            return out
        finally:
            src.close()


def _latest(bootstrap: str, topic: str) -> dict[str, dict[str, Any]]:
    src = KafkaSource(bootstrap, partitions=[(topic, p) for p in range(PARTITIONS)])
    try:
        snap = read_to_end(src, topic, range(PARTITIONS))
    finally:
        src.close()
    return {k.decode(): orjson.loads(v) for k, v in snap.values.items() if v is not None}


def scrape(port: int, path: str = "/metrics", timeout_s: float = 5.0) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout_s) as r:
        return str(r.read().decode())


def wait_for(
    cond: Callable[[], bool],
    timeout_s: float,
    what: str,
    every_s: float = 0.5,
    cluster: Cluster | None = None,
) -> float:
    """Seconds until ``cond()``; AssertionError naming ``what`` after ``timeout_s``, or at once
    when a process of ``cluster`` has died by itself."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        if cluster is not None:
            cluster.check_alive()
        try:
            if cond():
                return time.monotonic() - t0
        except (OSError, ValueError):
            pass  # a broker or port not answering yet
        time.sleep(every_s)
    raise AssertionError(f"timed out after {timeout_s:g}s waiting for {what}")
