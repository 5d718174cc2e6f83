"""Broker outages under a running bakemon (issue 10): the link to the broker is cut, then
stalled, through a fault proxy. The process lives, /healthz stays 200, /readyz names the
outage, logging stays bounded, and after healing every record is counted exactly once."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from _pipeline import (
    create_topics,
    expected_counts,
    expected_errors,
    judge_errors,
    judge_has,
    judge_totals,
    produce,
    two_service_log,
    wait_until,
    write_config,
)

from benchmarks.faults.proxy import FaultProxy
from monitor.config import load_settings
from monitor.kafka.broker import EmbeddedBroker
from monitor.service import Service, configure_logging

CUT_S = 20.0
STALL_S = 10.0


class _Count(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.n = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.n += 1


def _watch(svc: Service, seconds: float) -> tuple[set[str], list[str]]:
    """Why /healthz failed (empty: it never did) and readiness reasons, over ``seconds``."""
    healthy: set[str] = set()
    reasons: list[str] = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        ok, why = svc.healthy()
        if not ok:
            healthy.add(why)
        ok, why = svc.ready()
        if not ok:
            reasons.append(why)
        time.sleep(0.5)
    return healthy, reasons


def test_cut_and_stall_are_weather(
    proxied_broker: tuple[EmbeddedBroker, FaultProxy], tmp_path: Path
) -> None:
    _, proxy = proxied_broker
    bootstrap = f"127.0.0.1:{proxy.port}"
    lines = two_service_log(40_000, seed=3)
    first, second = lines[:20_000], lines[20_000:]
    create_topics(bootstrap)
    produce(bootstrap, first)
    settings = load_settings(str(write_config(tmp_path / "c.toml", bootstrap)), env={})
    root = logging.getLogger()
    saved = (root.handlers[:], root.level, logging.getLogger("kafka").level)
    configure_logging("info", "text")  # what `bakemon run` installs, rate limits included
    counter = _Count()
    counter.filters = list(root.handlers[0].filters)
    root.addHandler(counter)
    svc = Service(settings).start()
    try:
        assert svc.judge is not None
        judge = svc.judge
        wait_until(lambda: judge_has(judge, expected_counts(first)), 90, "the first half")

        counter.n = 0
        proxy.cut()
        healthy, reasons = _watch(svc, CUT_S)
        assert healthy == set(), "a broker outage must not fail /healthz"
        assert any("broker unreachable since" in r for r in reasons), reasons[-3:]
        assert not svc.errors and all(t.is_alive() for t in svc._threads)
        proxy.heal()

        proxy.stall()
        healthy, _ = _watch(svc, STALL_S)
        assert healthy == set()
        assert not svc.errors and all(t.is_alive() for t in svc._threads)
        proxy.heal()
        outage_lines = counter.n

        produce(bootstrap, second)
        want = expected_counts(lines)
        wait_until(lambda: judge_has(judge, want), 90, "every record after healing")
        wait_until(lambda: svc.ready()[0], 60, "readiness after healing")
    finally:
        svc.stop()
        root.handlers[:], _, kafka_level = saved
        root.setLevel(saved[1])
        logging.getLogger("kafka").setLevel(kafka_level)
    assert judge_totals(judge) == want  # exactly once: nothing lost, nothing twice
    assert judge_errors(judge) == expected_errors(lines)  # nor an error moved between cohorts
    # One line per loop when the trouble starts, a summary a minute, one at recovery: bounded.
    assert outage_lines < 60, outage_lines
