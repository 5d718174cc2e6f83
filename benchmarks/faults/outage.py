"""Broker outages (issue 10) under a running ``bakemon run`` (all roles, one process), its
broker reached only through the fault proxy: a cut, a stall and a slow link, each for a set
time. The process must live, ``/healthz`` stay 200 throughout, log lines stay bounded, and
after healing every record be counted exactly once, caught up within a minute.
"""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.faults.cluster import Cluster, reference, service_log, wait_for
from benchmarks.faults.proxy import FaultProxy
from monitor.kafka.broker import EmbeddedBroker, free_port

__all__ = ["OutageResult", "run_outage"]


@dataclass
class OutageResult:
    fault: str
    seconds: float
    alive: bool
    healthz_failures: int
    healthz_checks: int
    readyz_named_outage: bool
    log_lines: int
    catch_up_s: float
    exact: bool
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures


def _status(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except OSError as e:
        return 0, str(e)


def _lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


def run_outage(
    workdir: Path,
    *,
    fault: str = "cut",
    seconds: float = 30.0,
    slow_delay_s: float = 0.5,
    records: int = 40_000,
    progress: Callable[[str], None] = lambda _: None,
) -> OutageResult:
    """``fault`` is "cut", "stall" or "slow" (every chunk held ``slow_delay_s``)."""
    workdir.mkdir(parents=True, exist_ok=True)
    proxy_port = free_port()
    broker = EmbeddedBroker(log_path=workdir / "tansu.log", advertised_port=proxy_port)
    proxy = FaultProxy(broker.port, proxy_port)
    broker.start()
    lines = service_log(records, seed=4)
    half = len(lines) // 2
    checks: list[tuple[int, str]] = []
    stop = threading.Event()
    try:
        cluster = Cluster(f"127.0.0.1:{proxy.port}", workdir)
        want = {b: tuple(r["totals"]) for b, r in reference(cluster.config, lines).items()}
        first = {b: tuple(r["totals"]) for b, r in reference(cluster.config, lines[:half]).items()}
        proc = cluster.add("ingest,judge,api")
        wait_for(lambda: proc.ops_port() is not None, 60, "the operations port", cluster=cluster)
        port = proc.ops_port()
        assert port is not None
        cluster.produce(lines[:half])

        wait_for(lambda: cluster.totals_are(first), 120, "the first half counted", cluster=cluster)

        def watch() -> None:
            while not stop.is_set():
                h = _status(port, "/healthz")
                r = _status(port, "/readyz")
                checks.append((h[0], r[1]))
                stop.wait(0.5)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        before = _lines(proc.log)
        progress(f"{fault} for {seconds:g}s")
        if fault == "cut":
            proxy.cut()
        elif fault == "stall":
            proxy.stall()
        else:
            proxy.slow(slow_delay_s)
        time.sleep(seconds)
        proxy.heal()
        during = _lines(proc.log) - before
        t_heal = time.monotonic()
        cluster.produce(lines[half:], start=half)
        wait_for(
            lambda: cluster.totals_are(want), 300, "every record after healing", cluster=cluster
        )
        catch_up_s = time.monotonic() - t_heal
        time.sleep(2.0)
        exact = cluster.totals_are(want)
        stop.set()
        watcher.join(5)
        alive = proc.alive()
        cluster.stop_all()
    finally:
        stop.set()
        proxy.close()
        broker.stop()
    fails = sum(1 for h, _ in checks if h != 200)
    named = any("broker unreachable since" in r for _, r in checks)
    result = OutageResult(
        fault=fault,
        seconds=seconds,
        alive=alive,
        healthz_failures=fails,
        healthz_checks=len(checks),
        readyz_named_outage=named,
        log_lines=during,
        catch_up_s=catch_up_s,
        exact=exact,
    )
    if not alive:
        result.failures.append("the process died")
    if fails:
        result.failures.append(f"/healthz failed {fails}/{len(checks)} checks")
    if fault == "cut" and not named:
        result.failures.append('/readyz never said "broker unreachable since"')
    if not exact:
        result.failures.append("totals not exact after healing")
    if catch_up_s > 60.0:
        result.failures.append(f"caught up {catch_up_s:.0f}s after healing (> 60 s)")
    if during > 60 + seconds / 60.0 * 10:
        result.failures.append(f"{during} log lines during the fault")
    return result
