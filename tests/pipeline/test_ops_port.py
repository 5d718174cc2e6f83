"""Every process is observable whatever its roles: an ingest-only process serves /metrics
(with its reject counters), /healthz and /readyz on the operations port, and has no API."""

from __future__ import annotations

import http.client
from pathlib import Path

import orjson
from _pipeline import create_topics, produce, two_service_log, wait_until, write_config

from monitor.config import load_settings
from monitor.kafka.broker import EmbeddedBroker
from monitor.service import Service


def _get(port: int, path: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", path)
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    return resp.status, body


def test_an_ingest_only_process_serves_metrics_and_health(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    create_topics(broker.bootstrap_servers)
    produce(broker.bootstrap_servers, [b"not json", b'{"service": 1}', *two_service_log(2_000)])
    cfg = write_config(tmp_path / "c.toml", broker.bootstrap_servers)
    svc = Service(load_settings(str(cfg), env={}, flags={"roles": "ingest"})).start()
    try:
        assert svc.api is None and svc.ops is not None
        port = svc.ops.port
        assert _get(port, "/healthz")[0] == 200
        wait_until(lambda: _get(port, "/readyz")[0] == 200, 60, "readiness")

        def rejects() -> bytes:
            return _get(port, "/metrics")[1]

        wait_until(lambda: b'bakemon_records_rejected_total{reason="invalid_json"} 1.0' in rejects(), 60, "reject counters")  # fmt: skip
        status, body = _get(port, "/v1/bakes")
        assert status == 404 and "operations port" in orjson.loads(body)["error"]
    finally:
        svc.stop()
