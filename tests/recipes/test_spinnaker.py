"""The Spinnaker recipe, played as Orca's webhook stage runs (orca-webhook: CreateWebhookTask,
WebhookResponseProcessor, MonitorWebhookTask).

Create task: the stage's ``method`` to ``url`` with ``payload``; 2xx succeeds (and, with
``waitForCompletion`` and ``statusUrlResolution: getMethod``, the status URL is ``url``),
5xx/429 are retried, other codes are TERMINAL. Monitor task: GET the status URL; a non-2xx
is retried when 5xx/429/``retryStatusCodes``, else TERMINAL; ``statusJsonPath`` must give a
string (a number reads as percent complete), ``progressJsonPath`` a string (else TERMINAL); the
upper-cased status is looked up in success/canceled/terminal statuses, anything else RUNNING;
``stageTimeoutMs`` ends the stage TERMINAL.
"""

from __future__ import annotations

import re
import threading
import time
from typing import Any

import orjson
from _rollout import PIPELINES, POLICY, Bakemon, Canary, local

API_TOKEN = "spinnaker-token-0123456789"
CREATE = PIPELINES / "spinnaker-create-bake-stage.json"
WAIT = PIPELINES / "spinnaker-webhook-stage.json"
SCALE = 0.5 / 15  # Orca polls every 15 s after the first minute; the test every 0.5 s
STAGE_TIMEOUT_S = 45.0  # the stage's stageTimeoutMs (1 h) as the test plays it: room for a loaded CI to decide the healthy bake
CANARIES = (
    Canary("cart", "v8", "v7", "healthy"),
    Canary("pay", "v3", "v2", "regressed"),
    Canary("search", "v5", "v4", "undecided"),
)


def _expr(text: str, ctx: dict[str, str]) -> str:
    """Spinnaker's ``${parameters.x}`` / ``${execution.id}`` expressions (the forms used)."""

    def one(m: re.Match[str]) -> str:
        assert m.group(1) in ctx, f"expression not understood by the test: {m.group(0)}"
        return ctx[m.group(1)]

    out = re.sub(r"\$\{([A-Za-z_.]+)\}", one, text)
    assert "${" not in out, out
    return out


def _json_path(path: str, data: Any) -> Any:
    m = re.fullmatch(r"\$((?:\.[A-Za-z_][A-Za-z0-9_]*)+)", path)
    assert m, f"jsonPath form not understood by the test: {path!r}"
    for key in m.group(1).split(".")[1:]:
        if not isinstance(data, dict) or key not in data:
            raise KeyError(path)
        data = data[key]
    return data


def _statuses(stage: dict[str, Any]) -> dict[str, str]:
    out = {}
    for field, status in (
        ("successStatuses", "SUCCEEDED"),
        ("canceledStatuses", "CANCELED"),
        ("terminalStatuses", "TERMINAL"),
    ):
        for s in (stage.get(field) or "").split(","):
            if s.strip():
                out[s.strip().upper()] = status
    return out


def run_stage(
    bakemon: Bakemon, stage: dict[str, Any], ctx: dict[str, str], headers: dict[str, str]
) -> tuple[str, list[Any]]:
    """One webhook stage: (its final ExecutionStatus, the status values it read)."""
    url = local(_expr(stage["url"], ctx), bakemon)
    payload = stage.get("payload")
    body = orjson.loads(_expr(orjson.dumps(payload).decode(), ctx)) if payload else None
    heads = {**stage.get("customHeaders", {}), **headers}
    seen: list[Any] = []
    assert float(stage.get("stageTimeoutMs", 3_600_000)) >= 600_000  # a bake takes minutes
    deadline = time.monotonic() + STAGE_TIMEOUT_S
    while True:  # the create task
        code, _ = bakemon.request(stage["method"], url, orjson.dumps(body) if body else None, heads)
        seen.append(code)
        if 200 <= code < 400:
            break
        if code in stage.get("failFastStatusCodes", []) or not (code >= 500 or code == 429):
            return "TERMINAL", seen
        time.sleep(1 * SCALE)
    if not stage.get("waitForCompletion"):
        return "SUCCEEDED", seen
    assert stage["statusUrlResolution"] == "getMethod"
    time.sleep(float(stage.get("waitBeforeMonitor", 0)) * SCALE)
    statuses = _statuses(stage)
    while time.monotonic() < deadline:  # the monitor task
        code, raw = bakemon.request("GET", url, None, heads)
        if not 200 <= code < 300:
            if code >= 500 or code == 429 or code in stage.get("retryStatusCodes", []):
                time.sleep(15 * SCALE)
                continue
            return "TERMINAL", seen
        doc = orjson.loads(raw)
        try:
            status = _json_path(stage["statusJsonPath"], doc)
            progress = _json_path(stage["progressJsonPath"], doc)
        except KeyError:
            return "TERMINAL", seen
        seen.append(status)
        if not isinstance(progress, str) or not isinstance(status, str):
            return "TERMINAL", seen  # a number would be percent complete
        result = statuses.get(status.upper(), "RUNNING")
        if result != "RUNNING":
            return result, seen
        time.sleep(15 * SCALE)
    return "TERMINAL", seen  # the stage timed out


def test_stages_share_one_bake_id_per_execution() -> None:
    """Both stages name the same bake, and it includes the execution id (one per run)."""
    create, wait = orjson.loads(CREATE.read_text()), orjson.loads(WAIT.read_text())
    bake_id = create["payload"]["id"]
    assert "${execution.id}" in bake_id and wait["url"].endswith("/v1/bakes/" + bake_id)
    assert wait["requisiteStageRefIds"] == [create["refId"]]
    assert "PENDING" not in _statuses(wait) and _statuses(wait)["PROMOTE"] == "SUCCEEDED"


def test_pipeline_passes_healthy_stops_regressed_and_undecided(bakemon: Bakemon) -> None:
    """Healthy: SUCCEEDED; regressed: TERMINAL on HALT; undecided: still RUNNING (PENDING) when
    the stage times out, so TERMINAL: the deploy stage after it never runs."""
    create, wait = orjson.loads(CREATE.read_text()), orjson.loads(WAIT.read_text())
    create["payload"]["policy"] = POLICY  # the test's policy
    # the token as a preconfigured webhook (orca-local.yml) adds it
    headers = {"Authorization": f"Bearer {API_TOKEN}"}
    results: dict[str, tuple[str, list[Any]]] = {}
    for c in CANARIES:
        ctx = {
            "parameters.service": c.service,
            "parameters.canaryVersion": c.canary,
            "parameters.baselineVersion": c.baseline,
            "execution.id": "01JABCDEF0123456789XYZ" + c.service,
        }
        assert run_stage(bakemon, create, ctx, headers) == ("SUCCEEDED", [201])
        assert run_stage(bakemon, create, ctx, headers) == ("SUCCEEDED", [200])  # a retry

        def play(c: Canary = c, ctx: dict[str, str] = ctx) -> None:
            results[c.kind] = run_stage(bakemon, wait, ctx, {})

        threading.Thread(target=play, name=c.kind).start()
    bakemon.produce(CANARIES)
    deadline = time.monotonic() + 150
    while len(results) < 3 and time.monotonic() < deadline:
        time.sleep(0.2)
    final = {k: v[0] for k, v in results.items()}
    assert final == {"healthy": "SUCCEEDED", "regressed": "TERMINAL", "undecided": "TERMINAL"}
    assert results["healthy"][1][-1] == "PROMOTE" and results["regressed"][1][-1] == "HALT"
    assert set(results["undecided"][1][1:]) == {"PENDING"}
