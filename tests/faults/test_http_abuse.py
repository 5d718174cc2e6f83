"""Hostile HTTP against a running API process (issue 10): 500 idle connections held while
normal requests are answered, slowloris headers closed at the read timeout, a request smuggled
in an unread body never answered, JSON errors for malformed requests (HTTP/0.9, oversized
headers, bad lengths, unknown methods), an alert-stream flood capped with 503s, a burst of
parallel requests. Latency is reported by ``benchmarks/faults``, not asserted here."""

from __future__ import annotations

from pathlib import Path

from benchmarks.faults.http_abuse import run_http_abuse
from monitor.kafka.broker import EmbeddedBroker


def test_hostile_clients_cannot_exhaust_or_desync_the_api(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    r = run_http_abuse(
        broker.bootstrap_servers,
        tmp_path,
        idle=500,
        normal=200,
        slowloris=20,
        read_timeout_s=2.0,
        max_streams=8,
        burst=300,
    )
    assert r.ok, r.failures
    assert r.normal_ok == 200 and r.slowloris_closed == 20 and r.desync_responses == 1
    assert r.streams_opened == 8 and r.streams_refused == 20
