"""The HTTP surfaces against a real broker and real HTTP requests, shaped for the integrations."""

from __future__ import annotations

import base64
import http.client
import socket
import threading
from pathlib import Path
from typing import Any

import orjson
import pytest
from _pipeline import LAYOUT, create_topics, produce, two_service_log, wait_until, write_config
from prometheus_client.parser import text_string_to_metric_families

from monitor.cli.client import ApiClient
from monitor.cli.main import main
from monitor.config import load_settings
from monitor.kafka.broker import EmbeddedBroker
from monitor.service import Service

TOKEN = "test-token-0123456789"
POLICY = {"min_canary_requests": 2000, "errors": {"tol": 0.5}, "latency": {"tol": 0.3}}


def _req(
    port: int,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request(method, path, body=body, headers=headers or {})
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    ctype = resp.getheader("Content-Type", "")
    return resp.status, orjson.loads(data) if "json" in ctype and data else data


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def _auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}


@pytest.fixture
def service(broker: EmbeddedBroker, tmp_path: Path):  # type: ignore[no-untyped-def]
    create_topics(broker.bootstrap_servers)
    cfg = write_config(tmp_path / "c.toml", broker.bootstrap_servers)
    cfg.write_text(cfg.read_text().split("[[bake]]")[0])  # bakes come through the API here
    svc = Service(load_settings(str(cfg), env={"BAKEMON_API_TOKEN": TOKEN})).start()
    wait_until(lambda: svc.ready()[0], 30, "readiness")
    yield svc
    svc.stop()


def test_pipelines_see_pending_then_decisions(service: Service, broker: EmbeddedBroker) -> None:
    """Argo-style polls read PENDING then HALT / PROMOTE; Flagger's promote gate answers 409
    then 200; `bakemon bake wait` exits 1 for HALT and 0 for PROMOTE; metrics show progress."""
    assert service.api is not None
    port = service.api.port
    for bake in (
        {
            "id": "checkout-v42",
            "service": "checkout",
            "canary": "v42",
            "baseline": "v41",
            "policy": POLICY,
        },
        {
            "id": "search-v8",
            "service": "search",
            "canary": "v8",
            "baseline": "v7",
            "policy": POLICY,
        },
    ):
        status, doc = _req(port, "POST", "/v1/bakes", orjson.dumps({**bake, "start": 0}), _auth())
        assert status == 201 and doc["status"] == "PENDING", doc
        # idempotent on the client-given id
        again, _ = _req(port, "POST", "/v1/bakes", orjson.dumps({**bake, "start": 0}), _auth())
        assert again == 200
    flagger = orjson.dumps(
        {
            "name": "search",
            "namespace": "shop",
            "phase": "Progressing",
            "checksum": "abc",
            "metadata": {"bake": "search-v8"},
        }
    )
    status, body = _req(
        port, "POST", "/v1/gate/promote", flagger, {"Content-Type": "application/json"}
    )
    assert status == 409 and body["status"] == "PENDING" and body["reason"].startswith("PENDING")
    seen: dict[str, list[str]] = {"checkout-v42": [], "search-v8": []}
    progress: list[float] = []

    def poll_like_argo() -> bool:
        for bake_id, statuses in seen.items():
            code, doc = _req(port, "GET", f"/v1/bakes/{bake_id}")
            assert code == 200 and isinstance(doc["status"], str)
            if not statuses or statuses[-1] != doc["status"]:
                statuses.append(doc["status"])
        _, text = _req(port, "GET", "/metrics")
        for fam in text_string_to_metric_families(text.decode()):
            if fam.name == "bakemon_bake_canary_requests":
                progress.extend(s.value for s in fam.samples if s.labels["bake"] == "search-v8")
        return seen["checkout-v42"][-1] == "HALT" and seen["search-v8"][-1] == "PROMOTE"

    poll_like_argo()
    lines = two_service_log(120_000)
    producer = threading.Thread(target=produce, args=(broker.bootstrap_servers, lines))
    producer.start()
    wait_until(poll_like_argo, 120, "HALT and PROMOTE through the API", every_s=0.3)
    producer.join()
    assert seen["checkout-v42"] == ["PENDING", "HALT"]
    assert seen["search-v8"] == ["PENDING", "PROMOTE"]
    assert len(set(progress)) >= 2 and progress == sorted(progress), progress
    assert (
        _req(port, "POST", "/v1/gate/promote", flagger, {"Content-Type": "application/json"})[0]
        == 200
    )
    assert _req(port, "GET", "/v1/gate/promote/search-v8")[0] == 200
    assert _req(port, "GET", "/v1/gate/rollback/search-v8")[0] == 409
    assert _req(port, "GET", "/v1/gate/rollback/checkout-v42")[0] == 200
    code, doc = _req(port, "GET", "/v1/verdict?service=search&version=v8")
    assert code == 200 and doc["id"] == "search-v8"
    code, listing = _req(port, "GET", "/v1/bakes?status=halt")
    assert [d["id"] for d in listing["bakes"]] == ["checkout-v42"]
    url = f"http://127.0.0.1:{port}"
    assert (
        main(["bake", "wait", "checkout-v42", "--url", url, "--timeout", "10s", "--interval", "1s"])
        == 1
    )
    assert (
        main(["bake", "wait", "search-v8", "--url", url, "--timeout", "10s", "--interval", "1s"])
        == 0
    )
    assert main(["bake", "wait", "nope", "--url", url, "--timeout", "3s", "--interval", "1s"]) == 4
    # An operator override is audited in the document and raises an alert.
    body = orjson.dumps({"status": "PROMOTE", "by": "alice", "reason": "known flaky dependency"})
    assert (
        _req(
            port,
            "POST",
            "/v1/bakes/checkout-v42/override",
            body,
            {"Content-Type": "application/json"},
        )[0]
        == 401
    )
    status, ack = _req(port, "POST", "/v1/bakes/checkout-v42/override", body, _auth())
    assert status == 202 and ack["override"]["by"] == "alice"

    def overridden() -> bool:
        doc = _req(port, "GET", "/v1/bakes/checkout-v42")[1]
        return doc["status"] == "PROMOTE" and (doc["override"] or {}).get("by") == "alice"

    wait_until(overridden, 30, "the override to show in the document")
    doc = _req(port, "GET", "/v1/bakes/checkout-v42")[1]
    assert (
        doc["override"]["previous"] == "HALT"
        and doc["override"]["reason"] == "known flaky dependency"
    )
    wait_until(
        lambda: any(
            a["labels"]["alertname"] == "BakeOverridden"
            for a in _req(port, "GET", "/v1/alerts?bake=checkout-v42")[1]["alerts"]
        ),
        30,
        "the override alert",
    )

    # The evidence over time: the HALT and then the override, with the tested counts growing.
    def timeline_shows_the_override() -> bool:
        code, tl = _req(port, "GET", "/v1/bakes/checkout-v42/timeline")
        assert code == 200 and tl["id"] == "checkout-v42"
        return bool(tl["points"]) and tl["points"][-1]["status"] == "PROMOTE"

    wait_until(timeline_shows_the_override, 30, "the override in the timeline")
    points = _req(port, "GET", "/v1/bakes/checkout-v42/timeline")[1]["points"]
    assert [p["status"] for p in points].count("HALT") >= 1
    counts = [p["requests"]["canary"] for p in points]
    assert counts == sorted(counts) and counts[-1] > 0
    assert points[-1]["metrics"]["error_rate"]["halt_needs"] > 1
    assert _req(port, "GET", "/v1/bakes/nope/timeline")[0] == 404
    assert _req(port, "POST", "/v1/bakes/checkout-v42/timeline", b"{}", _auth())[0] == 405


def test_sse_resume_with_last_event_id_gets_exactly_the_missed_alerts(
    service: Service, broker: EmbeddedBroker
) -> None:
    """A client that disconnects and reconnects with Last-Event-ID receives exactly what it missed."""
    from kafka import KafkaProducer

    assert service.api is not None
    client = ApiClient(f"http://127.0.0.1:{service.api.port}")
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap_servers)

    def emit(i: int) -> None:
        alert = {
            "labels": {
                "alertname": "BakeDrift",
                "bake": "b",
                "severity": "warning",
                "metric": f"m{i}",
            },
            "annotations": {"summary": "s", "description": f"alert {i}"},
        }
        producer.send(LAYOUT.alerts, orjson.dumps(alert), key=b"b", partition=0)
        producer.flush()

    for i in range(3):
        emit(i)
    wait_until(
        lambda: len(service.alert_log.alerts()) == 3 if service.alert_log else False, 20, "alerts"
    )
    stream = client.stream("/v1/alerts/stream?replay=all")
    got = [next(stream) for _ in range(3)]
    assert [a["annotations"]["description"] for _, a in got] == ["alert 0", "alert 1", "alert 2"]
    last_id = got[-1][0]
    stream.close()
    for i in range(3, 7):  # missed while disconnected
        emit(i)
    wait_until(
        lambda: len(service.alert_log.alerts()) == 7 if service.alert_log else False,
        20,
        "more alerts",
    )
    resumed = client.stream("/v1/alerts/stream", last_id)
    again = [next(resumed) for _ in range(4)]
    assert [a["annotations"]["description"] for _, a in again] == [
        f"alert {i}" for i in range(3, 7)
    ]
    emit(7)
    assert next(resumed)[1]["annotations"]["description"] == "alert 7"  # and it keeps streaming
    resumed.close()
    producer.close()


def test_bad_requests_get_clear_errors_and_the_service_keeps_serving(service: Service) -> None:
    """Malformed JSON, unknown fields, wrong types, oversized bodies, missing and wrong tokens."""
    assert service.api is not None
    port = service.api.port
    good = {"id": "x-v2", "service": "x", "canary": "v2", "baseline": "v1"}
    json_ct = {"Content-Type": "application/json"}
    cases = [
        (b"{not json", _auth(), 400, "malformed JSON"),
        (orjson.dumps({**good, "colour": "red"}), _auth(), 400, "unknown bake field(s) ['colour']"),
        (
            orjson.dumps({**good, "policy": {"alpha": "high"}}),
            _auth(),
            400,
            'policy field "alpha": must be a number',
        ),
        (orjson.dumps({**good, "service": 3}), _auth(), 400, '"id" and "service" must be strings'),
        (orjson.dumps([1, 2]), _auth(), 400, "must be a JSON object"),
        (b"{" + b" " * (100 * 1024) + b"}", _auth(), 413, "exceeds the limit"),
        (orjson.dumps(good), {"Content-Type": "application/json"}, 401, "missing bearer token"),
        (
            orjson.dumps(good),
            {"Authorization": "Bearer wrong-token-000000000", "Content-Type": "application/json"},
            403,
            "invalid token",
        ),
        (
            orjson.dumps(good),
            {**json_ct, "Authorization": _basic("flagger", "nope")},
            403,
            "invalid",
        ),
        (orjson.dumps(good), {**json_ct, "Authorization": "Basic !!"}, 401, "missing bearer"),
        (orjson.dumps(good), {**json_ct, "Authorization": "Token abc"}, 401, "missing bearer"),
        (
            orjson.dumps({"name": "x", "namespace": "shop", "phase": "Progressing"}),
            _auth(),
            400,
            "Flagger payload has no checksum",
        ),
    ]
    for body, headers, want, message in cases:
        status, doc = _req(port, "POST", "/v1/bakes", body, headers)
        assert status == want, (message, status, doc)
        assert message in doc["error"], (message, doc)
        assert "Traceback" not in str(doc)
    status, doc = _req(port, "POST", "/v1/gate/promote", b"{}", {"Content-Length": "-1"})
    assert status == 400 and "invalid Content-Length" in doc["error"]
    assert _req(port, "GET", "/v1/nothing-here")[0] == 404
    assert _req(port, "DELETE", "/v1/bakes")[0] == 405
    assert _req(port, "GET", "/v1/bakes/unknown")[0] == 404
    assert _req(port, "GET", "/v1/verdict?service=x")[0] == 400
    no_checksum = orjson.dumps({"name": "x", "namespace": "shop", "phase": "Progressing"})
    for gate in ("/v1/gate/promote", "/v1/gate/rollback"):  # never an earlier rollout's bake
        status, doc = _req(port, "POST", gate, no_checksum, json_ct)
        assert status == 400 and "no checksum" in doc["error"], doc
    # still serving, and a good request works, also with the token as a Basic password (what
    # Flagger sends for a webhook URL http://user:<token>@host/…)
    basic = {**json_ct, "Authorization": _basic("flagger", TOKEN)}
    assert _req(port, "POST", "/v1/bakes", orjson.dumps(good), basic)[0] == 201
    assert _req(port, "POST", "/v1/bakes", orjson.dumps(good), _auth())[0] == 200
    assert _req(port, "GET", "/healthz")[0] == 200 and _req(port, "GET", "/readyz")[0] == 200


def test_openapi_document_lists_every_route(service: Service) -> None:
    """/openapi.json describes exactly the routes the server answers."""
    assert service.api is not None
    port = service.api.port
    _, spec = _req(port, "GET", "/openapi.json")
    documented = set(spec["paths"])
    served = {
        "/v1/bakes",
        "/v1/bakes/{id}",
        "/v1/bakes/{id}/cancel",
        "/v1/bakes/{id}/override",
        "/v1/bakes/{id}/timeline",
        "/v1/bakes/stream",
        "/v1/verdict",
        "/v1/gate/promote/{id}",
        "/v1/gate/rollback/{id}",
        "/v1/gate/promote",
        "/v1/gate/rollback",
        "/v1/alerts",
        "/v1/alerts/stream",
        "/metrics",
        "/healthz",
        "/readyz",
        "/openapi.json",
        "/",
    }
    assert documented == served
    for path in served:  # every documented route is routed (a missing bake is not a missing route)
        concrete = path.replace("{id}", "x")
        if path.endswith("/stream"):
            with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                sock.sendall(f"GET {concrete} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
                assert sock.recv(64).startswith(b"HTTP/1.1 200"), path
            continue
        method = "POST" if path.endswith(("/cancel", "/override")) else "GET"
        status, body = _req(
            port,
            method,
            concrete,
            b"{}" if method == "POST" else None,
            _auth() if method == "POST" else None,
        )
        assert not (status == 404 and "no route" in str(body)), (path, status, body)


def test_cli_client_create_get_list_cancel(
    service: Service, capsys: pytest.CaptureFixture[str]
) -> None:
    """`bakemon bake create|get|list|cancel` work against the API; errors exit 4 with a message."""
    assert service.api is not None
    url = f"http://127.0.0.1:{service.api.port}"
    args = ["--url", url, "--token", TOKEN]
    assert (
        main(
            [
                "bake",
                "create",
                *args,
                "--service",
                "cart",
                "--canary",
                "v3",
                "--baseline",
                "v2",
                "--policy",
                '{"min_canary_requests": 500}',
                "--json",
            ]
        )
        == 0
    )
    created = orjson.loads(capsys.readouterr().out)
    assert created["id"] == "cart-v3" and created["status"] == "PENDING"
    assert main(["bake", "get", "cart-v3", "--json", "--url", url]) == 0
    assert orjson.loads(capsys.readouterr().out)["policy"]["min_canary_requests"] == 500
    assert main(["bake", "list", "--url", url]) == 0
    assert "cart-v3" in capsys.readouterr().out
    assert main(["bake", "cancel", "cart-v3", *args]) == 0
    shown = capsys.readouterr().out  # readable by default: the lines of `bake get`
    assert "cart-v3" in shown and "CANCELLED" in shown and len(shown.splitlines()) < 40
    assert main(["bake", "cancel", "cart-v3", *args, "--json"]) == 0  # idempotent
    cancelled = orjson.loads(capsys.readouterr().out)
    assert cancelled["cancelled_at"] is not None and cancelled["status"] == "CANCELLED"
    assert main(["bake", "wait", "cart-v3", "--url", url, "--timeout", "5s"]) == 8  # terminal
    assert _req(service.api.port, "GET", "/v1/gate/promote/cart-v3")[0] == 409
    assert (
        main(
            [
                "bake",
                "create",
                "--url",
                url,
                "--service",
                "cart",
                "--canary",
                "v4",
                "--baseline",
                "v3",
            ]
        )
        == 4
    )
    assert "HTTP 401: missing bearer token" in capsys.readouterr().err


def test_flagger_pre_rollout_webhook_creates_the_bake(service: Service) -> None:
    """Flagger's pre-rollout payload creates `<namespace>-<name>-<checksum>`: canary `<name>` vs
    `<name>-primary`; a later rollout (new checksum) gets a bake of its own."""
    assert service.api is not None
    port = service.api.port
    payload = {
        "name": "checkout",
        "namespace": "shop",
        "phase": "Progressing",
        "checksum": "6d5f",
        "metadata": {"policy": '{"min_canary_requests": 1000}'},
    }
    status, doc = _req(port, "POST", "/v1/bakes", orjson.dumps(payload), _auth())
    assert status == 201 and doc["id"] == "shop-checkout-6d5f"
    assert doc["canary"]["versions"] == ["checkout"]
    assert doc["baseline"]["versions"] == ["checkout-primary"]
    assert doc["policy"]["min_canary_requests"] == 1000
    # The promote gate finds it by name + namespace + checksum, and holds with 409 while PENDING.
    gate = orjson.dumps({k: v for k, v in payload.items() if k != "metadata"})
    json_ct = {"Content-Type": "application/json"}
    status, body = _req(port, "POST", "/v1/gate/promote", gate, json_ct)
    assert status == 409 and body["id"] == "shop-checkout-6d5f"
    status, doc = _req(
        port, "POST", "/v1/bakes", orjson.dumps({**payload, "checksum": "99aa"}), _auth()
    )
    assert status == 201 and doc["id"] == "shop-checkout-99aa"
    next_gate = orjson.dumps(
        {"name": "checkout", "namespace": "shop", "phase": "Progressing", "checksum": "99aa"}
    )
    assert (
        _req(port, "POST", "/v1/gate/promote", next_gate, json_ct)[1]["id"] == "shop-checkout-99aa"
    )


def test_override_before_traffic_opens_the_gate_and_wait_times_out_apart(
    service: Service, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bake without traffic is PENDING: gates hold (409) and `bake wait` times out with 5, not
    INCONCLUSIVE's 2; an operator's PROMOTE before any traffic opens the promote gate and ends
    the wait with 0."""
    assert service.api is not None
    port = service.api.port
    url = f"http://127.0.0.1:{port}"
    bake = {"id": "cart-v9", "service": "cart", "canary": "v9", "baseline": "v8", "start": 0}
    assert _req(port, "POST", "/v1/bakes", orjson.dumps(bake), _auth())[0] == 201
    status, body = _req(port, "GET", "/v1/gate/promote/cart-v9")
    assert status == 409 and body["reason"] == "PENDING: no traffic observed for this bake yet"
    assert _req(port, "GET", "/v1/gate/rollback/cart-v9")[0] == 409
    wait = ["bake", "wait", "cart-v9", "--url", url, "--interval", "0.2s"]
    assert main([*wait, "--timeout", "1s"]) == 5
    assert "timed out" in capsys.readouterr().err
    override = orjson.dumps({"status": "PROMOTE", "by": "bob", "reason": "hotfix, verified"})
    assert _req(port, "POST", "/v1/bakes/cart-v9/override", override, _auth())[0] == 202
    wait_until(lambda: _req(port, "GET", "/v1/gate/promote/cart-v9")[0] == 200, 30, "the override")
    doc = _req(port, "GET", "/v1/bakes/cart-v9")[1]
    assert doc["status"] == "PROMOTE" and doc["override"]["by"] == "bob"
    assert doc["reasons"] == ["operator override by bob: hotfix, verified"]
    assert main([*wait, "--timeout", "10s"]) == 0
    assert capsys.readouterr().out == "PROMOTE\n"


@pytest.fixture
def capped_service(broker: EmbeddedBroker, tmp_path: Path):  # type: ignore[no-untyped-def]
    create_topics(broker.bootstrap_servers)
    cfg = write_config(tmp_path / "c.toml", broker.bootstrap_servers, max_active_bakes=30)
    cfg.write_text(cfg.read_text().split("[[bake]]")[0])
    svc = Service(load_settings(str(cfg), env={"BAKEMON_API_TOKEN": TOKEN})).start()
    wait_until(lambda: svc.ready()[0], 30, "readiness")
    yield svc
    svc.stop()


def test_bake_floods_hit_the_cap_with_429_and_creates_stay_cheap(capped_service: Service) -> None:
    """Creating bakes in a loop: the cap answers 429 with the reason; a cancelled bake frees
    its slot; the registry builds incrementally (no per-bake full rebuild)."""
    assert capped_service.api is not None
    port = capped_service.api.port
    created = 0
    for i in range(40):
        body = {"id": f"flood-{i}", "service": f"svc{i}", "canary": "v2", "baseline": "v1"}
        status, doc = _req(port, "POST", "/v1/bakes", orjson.dumps(body), _auth())
        if status == 201:
            created += 1
            continue
        assert status == 429, doc
        assert "max_active_bakes" in doc["error"] and "30" in doc["error"]
    assert created == 30
    assert _req(port, "POST", "/v1/bakes/flood-0/cancel", b"", _auth())[0] == 200
    body = {"id": "after-cancel", "service": "x", "canary": "v2", "baseline": "v1"}
    assert _req(port, "POST", "/v1/bakes", orjson.dumps(body), _auth())[0] == 201


def test_operators_override_and_read_bakes_from_the_terminal(
    service: Service, capsys: pytest.CaptureFixture[str]
) -> None:
    """`bake override` records who and why; `bake get` reads as a summary, `--json` is the
    document; a blank reason is refused."""
    assert service.api is not None
    url = ["--url", f"http://127.0.0.1:{service.api.port}", "--token", TOKEN]
    bake = {"id": "cart-v3", "service": "cart", "canary": "v3", "baseline": "v2"}
    assert _req(service.api.port, "POST", "/v1/bakes", orjson.dumps(bake), _auth())[0] == 201
    capsys.readouterr()
    assert main(["bake", "override", "cart-v3", "--status", "HALT", "--reason", " ", *url]) == 4
    assert "--reason must say why" in capsys.readouterr().err
    args = ["bake", "override", "cart-v3", "--status", "HALT", "--reason", "pager says so"]
    assert main([*args, "--by", "carol", *url]) == 0

    def overridden() -> bool:
        doc = ApiClient(url[1], TOKEN).get("/v1/bakes/cart-v3")
        return doc["status"] == "HALT" and (doc["override"] or {}).get("by") == "carol"

    wait_until(overridden, 30, "the override")
    capsys.readouterr()
    assert main(["bake", "get", "cart-v3", *url]) == 0
    text = capsys.readouterr().out
    assert text.startswith("cart-v3 (cart): HALT") and "operator override by carol" in text
    assert main(["bake", "get", "cart-v3", "--json", *url]) == 0
    assert orjson.loads(capsys.readouterr().out)["decision"]["override"]["by"] == "carol"
