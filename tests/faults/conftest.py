"""Fault fixtures: a broker advertised through a fault proxy (clients reach it only via the
proxy, also after bootstrap), so a test can cut or stall the link under a running bakemon."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "pipeline"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchmarks.faults.proxy import FaultProxy
from monitor.kafka.broker import EmbeddedBroker, free_port


@pytest.fixture
def proxied_broker(tmp_path: Path) -> Iterator[tuple[EmbeddedBroker, FaultProxy]]:
    proxy_port = free_port()
    broker = EmbeddedBroker(log_path=tmp_path / "tansu.log", advertised_port=proxy_port)
    proxy = FaultProxy(broker.port, proxy_port)
    broker.start()
    try:
        yield broker, proxy
    finally:
        proxy.close()
        broker.stop()
