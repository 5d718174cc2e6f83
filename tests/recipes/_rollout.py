"""What every recipe test shares: a running bakemon on a real embedded broker, the traffic of a
rollout (a healthy, a regressed and an undecided canary), and the recipe files themselves.

A test plays its tool's call sequence against ``Bakemon.url``; the only things a test changes in a
recipe are the address (``RECIPE_HOST`` → the test server), the time scale (the tool's intervals
and timeouts, shortened), and the policy the bake is created with (``POLICY``: small minimums, so
bakes decide in seconds instead of the hours a production policy takes).
"""

from __future__ import annotations

import http.client
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import orjson

from bakesim.scenario import Regression, Scenario, ServiceSpec, generate, to_json_lines
from monitor.config import load_settings
from monitor.kafka.broker import EmbeddedBroker
from monitor.kafka.topics import TopicLayout, ensure_topics
from monitor.service import Service

PIPELINES = Path(__file__).resolve().parents[2] / "deploy" / "pipelines"
RECIPE_HOST = "http://bakemon.observability:8080"
REQUESTS = "requests"
PREFIX = "r."
PARTITIONS = 2
LAYOUT = TopicLayout(PREFIX, partials_partitions=PARTITIONS)
# Small minimums and wide tolerances: the healthy canary PROMOTEs and the regressed one HALTs
# within seconds of traffic (checked offline with `replay` on this log's shape, seeds 1-5: PROMOTE
# at +9 to +16 s and HALT at +1 to +10 s of its 50 s of event time).
POLICY: dict[str, Any] = {
    "min_canary_requests": 1000,
    # 5 s windows closed 5 s late (not 10 + 30 s): the decisions' windows close well inside the
    # log's 50 s of event time instead of at its very end, so a loaded CI still sees them.
    "window_s": 5.0,
    "allowed_lateness_s": 5.0,
    "errors": {"tol": 1.0},
    "latency": {"tol": 0.5},
}
LINES_PER_SERVICE = 30_000  # of a service at traffic weight 1 (an undecided one gets 2 %)
RPS_PER_SERVICE = 600.0
TRAFFIC_SEED = 3
DECIDE_TIMEOUT_S = 60.0

Kind = Literal["healthy", "regressed", "undecided"]


@dataclass(frozen=True)
class Canary:
    """One rollout of the test: the service, its canary and baseline versions, and its fate."""

    service: str
    canary: str
    baseline: str
    kind: Kind


@dataclass
class Bakemon:
    """A running bakemon (all roles) on an embedded broker, reachable at ``url``."""

    broker: EmbeddedBroker
    service: Service
    token: str | None

    @property
    def url(self) -> str:
        assert self.service.api is not None
        return f"http://127.0.0.1:{self.service.api.port}"

    def request(
        self,
        method: str,
        url: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        timeout_s: float = 10.0,
    ) -> tuple[int, bytes]:
        """One HTTP request as a tool sends it: (status, raw body)."""
        parts = urlsplit(url)
        assert parts.hostname == "127.0.0.1", url  # loopback only
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout_s)
        try:
            target = parts.path + (f"?{parts.query}" if parts.query else "")
            conn.request(method, target, body=body, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    def document(self, bake_id: str) -> dict[str, Any]:
        status, raw = self.request("GET", f"{self.url}/v1/bakes/{bake_id}")
        assert status == 200, (status, raw)
        doc: dict[str, Any] = orjson.loads(raw)
        return doc

    def produce(self, canaries: Sequence[Canary]) -> None:
        """The requests of a rollout of ``canaries``, starting now (after the bakes exist)."""
        from kafka import KafkaProducer

        lines = rollout_traffic(canaries, start_s=time.time() + 1.0)
        p = KafkaProducer(
            bootstrap_servers=self.broker.bootstrap_servers,
            linger_ms=20,
            batch_size=512 * 1024,
            acks="all",
        )
        for i, line in enumerate(lines):
            p.send(REQUESTS, line, partition=i % PARTITIONS)
        p.flush()
        p.close()


def rollout_traffic(canaries: Sequence[Canary], start_s: float) -> list[bytes]:
    """JSON request lines (plain preset) of every canary and its baseline, half the traffic on
    the canary: ``regressed`` has 4x the baseline's errors, ``undecided`` gets 2 % of a service's
    traffic (a few hundred canary requests, short of ``POLICY``'s minimum)."""
    specs = tuple(
        ServiceSpec(
            name=c.service,
            baseline_version=c.baseline,
            canary_version=c.canary,
            canary_share=0.5,
            base_error_rate=0.05,
            traffic_weight=0.02 if c.kind == "undecided" else 1.0,
            regression=Regression(error_multiplier=4.0) if c.kind == "regressed" else None,
        )
        for c in canaries
    )
    weight = sum(s.traffic_weight for s in specs)
    sc = Scenario(
        services=specs,
        mean_rps=RPS_PER_SERVICE * weight,
        diurnal_amplitude=0.0,  # the same traffic whatever the time of day the test runs
        start_s=start_s,
        seed=TRAFFIC_SEED,
    )
    return to_json_lines(generate(sc, total_requests=round(LINES_PER_SERVICE * weight)))


def start_bakemon(tmp: Path, token: str | None) -> Iterator[Bakemon]:
    """A module's bakemon: a fresh broker and one Service with the api role on loopback."""
    with EmbeddedBroker(log_path=tmp / "tansu.log") as broker:
        ensure_topics(broker.bootstrap_servers, LAYOUT, extra=[(REQUESTS, PARTITIONS)])
        cfg = tmp / "bakemon.toml"
        settings = {
            "bootstrap_servers": broker.bootstrap_servers,
            "topics": [REQUESTS],
            "topic_prefix": PREFIX,
            "partials_partitions": PARTITIONS,
            "block_offsets": 5000,
            "flush_interval_s": 0.3,
            "checkpoint_interval_s": 0.5,
            "api_host": "127.0.0.1",
            "api_port": 0,
            "ops_port": -1,
        }
        cfg.write_text("".join(f"{k} = {orjson.dumps(v).decode()}\n" for k, v in settings.items()))
        env = {"BAKEMON_API_TOKEN": token} if token else {}
        svc = Service(load_settings(str(cfg), env=env)).start()
        try:
            wait_until(lambda: svc.ready()[0], 30, "bakemon readiness")
            yield Bakemon(broker, svc, token)
        finally:
            svc.stop()


def wait_until(cond: Callable[[], bool], timeout_s: float, what: str, every_s: float = 0.2) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(every_s)
    raise AssertionError(f"timed out after {timeout_s:g}s waiting for {what}")


def local(url: str, bakemon: Bakemon) -> str:
    """A recipe's URL pointed at the test server (the one change made to the address)."""
    assert url.startswith(RECIPE_HOST), url
    return bakemon.url + url[len(RECIPE_HOST) :]
