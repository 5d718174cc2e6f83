"""The shipped deployment and pipeline examples stay consistent with the code."""

from __future__ import annotations

import re
from pathlib import Path

import orjson
from prometheus_client import CollectorRegistry

from monitor.pipeline.ingest import IngestStats
from monitor.pipeline.judge import JudgeStats
from monitor.surfaces.metrics import Metrics
from monitor.surfaces.openapi import OPENAPI

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
DOC = {
    "id": "b",
    "decided": False,
    "status": "PENDING",
    "progress": {"canary_requests": 1, "fraction": 0.1},
    "metrics": {
        "error_rate": {"canary": 0.01, "baseline": 0.01},
        "latency_p99_seconds": {"canary": 0.2, "baseline": 0.2},
    },
}


def _exported_names() -> set[str]:
    m = Metrics(
        CollectorRegistry(),
        ingest=IngestStats,
        judge=JudgeStats,
        documents=lambda: [DOC],
        lag=lambda: {"ingest": 0},
        last_poll=lambda: {"ingest": 1.0},
    )
    text = m.render().decode()
    return {
        line.split("{")[0].split(" ")[0]
        for line in text.splitlines()
        if line and not line.startswith("#")
    }


def test_dashboard_and_rules_use_only_exported_metrics() -> None:
    """Every bakemon_* series in the Grafana dashboard and PrometheusRule is one we export."""
    exported = _exported_names()
    texts = [
        (DEPLOY / "grafana" / "bakemon-dashboard.json").read_text(),
        (DEPLOY / "kubernetes" / "monitoring.yaml").read_text(),
        (DEPLOY / "kubernetes" / "halt-rule-without-push.yaml").read_text(),
    ]
    used = {name for t in texts for name in re.findall(r"bakemon_[a-z0-9_]+", t)}
    assert used, "no metric referenced"
    missing = sorted(used - exported)
    assert not missing, missing
    orjson.loads(texts[0])


def test_one_halt_pages_once() -> None:
    """The shipped rules raise no HALT alert of their own (bakemon pushes it); the rule for
    installations without the push is a separate file."""
    rules = (DEPLOY / "kubernetes" / "monitoring.yaml").read_text()
    assert "alert: BakeHalted" not in rules
    assert (
        "alert: BakeHalted" in (DEPLOY / "kubernetes" / "halt-rule-without-push.yaml").read_text()
    )


def test_pipeline_examples_use_real_routes_and_fields() -> None:
    """Argo, Flagger, Spinnaker and shell examples point at documented routes and fields."""
    argo = (DEPLOY / "pipelines" / "argo-analysistemplate.yaml").read_text()
    assert 'jsonPath: "{$.status}"' in argo and "/v1/bakes/{{args.bake-id}}" in argo
    flagger = (DEPLOY / "pipelines" / "flagger-canary.yaml").read_text()
    for route in re.findall(r"url: http://[^/]+(/\S+)", flagger):
        assert route in OPENAPI["paths"], route
    spin = orjson.loads((DEPLOY / "pipelines" / "spinnaker-webhook-stage.json").read_text())
    assert spin["statusJsonPath"] == "$.status" and spin["progressJsonPath"] == "$.progress_text"
    assert "bakemon bake wait" in (DEPLOY / "pipelines" / "github-actions.yaml").read_text()
