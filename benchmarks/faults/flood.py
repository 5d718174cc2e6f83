"""Bake floods (issue 10): create attempts in a loop against a running API process. The
``max_active_bakes`` cap answers 429 with the reason, and a create costs the same at the
10,000th attempt as at the first (the registry is updated per bake, not rebuilt)."""

from __future__ import annotations

import http.client
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import orjson

from benchmarks.faults.cluster import Cluster, wait_for
from benchmarks.faults.http_abuse import _api_port

__all__ = ["FloodResult", "run_flood"]

TOKEN = "flood-token-0123456789"


@dataclass
class FloodResult:
    attempts: int
    cap: int
    created: int
    refused_429: int
    other: dict[int, int]
    first_ms: float  # median latency of the first tenth of the creates (201)
    last_ms: float  # median latency of the last tenth of the creates
    refused_first_ms: float  # median latency of the first tenth of the refusals (429)
    refused_last_ms: float  # and of the last tenth
    latencies_ms: list[float]
    reason: str
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures

    @property
    def growth(self) -> float:
        """The larger of the last-to-first ratios of creates and of refusals (1: flat)."""
        return max(self.last_ms / self.first_ms, self.refused_last_ms / self.refused_first_ms)


def run_flood(
    bootstrap: str,
    workdir: Path,
    *,
    attempts: int = 10_000,
    cap: int = 1000,
    progress: Callable[[str], None] = lambda _: None,
) -> FloodResult:
    cluster = Cluster(
        bootstrap, workdir, settings={"max_active_bakes": cap}, env={"BAKEMON_API_TOKEN": TOKEN}
    )
    proc = cluster.add("api")
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    lat: list[float] = []
    codes: list[int] = []
    statuses: dict[int, int] = {}
    reason = ""
    try:
        wait_for(lambda: _api_port(proc.log) is not None, 60, "the API port", cluster=cluster)
        port = _api_port(proc.log)
        assert port is not None
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        wait_for(
            lambda: _status(conn, "GET", "/readyz", None, headers) == 200,
            60,
            "readiness",
            cluster=cluster,
        )
        for i in range(attempts):
            body = orjson.dumps(
                {"id": f"flood-{i}", "service": f"svc{i}", "canary": "v2", "baseline": "v1"}
            )
            t0 = time.perf_counter()
            conn.request("POST", "/v1/bakes", body, headers)
            resp = conn.getresponse()
            data = resp.read()
            lat.append((time.perf_counter() - t0) * 1000.0)
            statuses[resp.status] = statuses.get(resp.status, 0) + 1
            codes.append(resp.status)
            if resp.status == 429 and not reason:
                reason = str(orjson.loads(data).get("error", ""))
            if (i + 1) % 1000 == 0:
                progress(f"{i + 1:,}/{attempts:,} create attempts")
        conn.close()
    finally:
        cluster.stop_all()
    existing = 2  # the config's bakes count against the cap
    made = [x for x, c in zip(lat, codes, strict=True) if c == 201] or [float("nan")]
    refused = [x for x, c in zip(lat, codes, strict=True) if c == 429] or [float("nan")]
    t_made, t_ref = max(1, len(made) // 10), max(1, len(refused) // 10)
    result = FloodResult(
        attempts=attempts,
        cap=cap,
        created=statuses.get(201, 0),
        refused_429=statuses.get(429, 0),
        other={k: v for k, v in statuses.items() if k not in (201, 429)},
        first_ms=float(np.median(made[:t_made])),
        last_ms=float(np.median(made[-t_made:])),
        refused_first_ms=float(np.median(refused[:t_ref])),
        refused_last_ms=float(np.median(refused[-t_ref:])),
        latencies_ms=lat,
        reason=reason,
    )
    if result.created != cap - existing:
        result.failures.append(f"created {result.created}, the cap allows {cap - existing}")
    if result.refused_429 != attempts - result.created or result.other:
        result.failures.append(f"statuses {statuses}")
    for what, a, b in (
        ("creates", result.first_ms, result.last_ms),
        ("refusals", result.refused_first_ms, result.refused_last_ms),
    ):
        if b > 1.5 * a + 1.0:  # flat: within 1.5x, or a millisecond
            result.failures.append(f"{what} grew from {a:.1f} to {b:.1f} ms over the attempts")
    if "max_active_bakes" not in reason:
        result.failures.append(f"the 429 does not give the reason: {reason!r}")
    return result


def _status(
    conn: http.client.HTTPConnection, method: str, path: str, body: bytes | None, h: dict[str, str]
) -> int:
    conn.request(method, path, body, h)
    resp = conn.getresponse()
    resp.read()
    return resp.status
