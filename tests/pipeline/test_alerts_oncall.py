"""Alerts an on-call can act on (issue 11), end to end on a real broker with a fake
Alertmanager (a real HTTP server): the HALT alert names the metric, links to an absolute URL,
carries the runbook and a one-line summary with the numbers, pages once (one fingerprint
however often it is re-sent), and an override resolves it and raises its own warning."""

from __future__ import annotations

import urllib.request
from pathlib import Path
from typing import Any

import orjson
from _pipeline import create_topics, produce, two_service_log, wait_until, write_config

from monitor.config import load_settings
from monitor.kafka.broker import EmbeddedBroker
from monitor.service import Service

TOKEN = "oncall-token-0123456789"
EXTERNAL = "https://bakemon.example.com"
RUNBOOK = "https://runbooks.example.com/bakemon-halt"
LABELS = {"alertname", "bake", "service", "severity", "metric"}


def _sent(posts: list[list[dict[str, Any]]], name: str) -> list[dict[str, Any]]:
    return [a for batch in list(posts) for a in batch if a["labels"]["alertname"] == name]


def _post(port: int, path: str, body: bytes) -> int:
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=body,
        method="POST",
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        return int(r.status)


def test_halt_pages_once_with_what_an_on_call_needs_and_an_override_resolves_it(
    broker: EmbeddedBroker, tmp_path: Path, alertmanager: tuple[str, list[list[dict[str, Any]]]]
) -> None:
    url, posts = alertmanager
    bs = broker.bootstrap_servers
    create_topics(bs)
    cfg = write_config(
        tmp_path / "c.toml", bs, alertmanager_url=url, external_url=EXTERNAL, runbook_url=RUNBOOK
    )
    svc = Service(load_settings(str(cfg), env={"BAKEMON_API_TOKEN": TOKEN})).start()
    try:
        produce(bs, two_service_log(60_000, seed=3))
        wait_until(lambda: _sent(posts, "BakeHalted"), 120, "the HALT alert")
        halt = _sent(posts, "BakeHalted")[0]
        assert set(halt["labels"]) == LABELS
        assert halt["labels"] == {
            "alertname": "BakeHalted",
            "bake": "checkout-v42",
            "service": "checkout",
            "severity": "critical",
            "metric": "error_rate",
        }
        assert halt["generatorURL"] == f"{EXTERNAL}/v1/bakes/checkout-v42"
        assert halt["annotations"]["runbook_url"] == RUNBOOK
        summary = halt["annotations"]["summary"]
        assert summary.startswith("checkout canary v42 (bake checkout-v42) HALT")
        assert "ratio" in summary and any(ch.isdigit() for ch in summary)
        assert "\n" not in summary
        assert "endsAt" not in halt

        assert svc.api is not None
        body = orjson.dumps({"status": "PROMOTE", "by": "alice", "reason": "known flaky dep"})
        assert _post(svc.api.port, "/v1/bakes/checkout-v42/override", body) == 202
        wait_until(
            lambda: any("endsAt" in a for a in _sent(posts, "BakeHalted")),
            60,
            "the HALT alert resolved",
        )
        over = _sent(posts, "BakeOverridden")
        assert over and over[0]["labels"]["severity"] == "warning"
        assert "alice" in over[0]["annotations"]["summary"]
        assert "known flaky dep" in over[0]["annotations"]["summary"]
    finally:
        svc.stop()
    # one page per HALT: however often re-sent, one alert identity
    halts = _sent(posts, "BakeHalted")
    assert len({orjson.dumps(a["labels"], option=orjson.OPT_SORT_KEYS) for a in halts}) == 1
