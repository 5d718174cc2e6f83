"""The HTTP abuse client (issue 10), against a running ``bakemon run --roles api`` on
loopback: idle connections held while normal requests are timed, slowloris headers, a request
smuggled in an unread body (desync), malformed request lines, an alert-stream (SSE) flood and a
burst of parallel requests. Every probe is bounded in count and time and closes its sockets.
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.faults.cluster import Cluster, wait_for

__all__ = ["AbuseResult", "run_http_abuse"]

_API_LINE = b"API listening on http://127.0.0.1:"


def _api_port(log: Path) -> int | None:
    text = log.read_bytes() if log.exists() else b""
    i = text.rfind(_API_LINE)
    if i < 0:
        return None
    return int(text[i + len(_API_LINE) :].split(b"\n", 1)[0])


def _connect(port: int, timeout_s: float = 5.0) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout_s)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def _read_all(s: socket.socket, timeout_s: float) -> bytes:
    """Everything until the server closes (or ``timeout_s``)."""
    s.settimeout(timeout_s)
    out = b""
    try:
        while chunk := s.recv(65536):
            out += chunk
    except TimeoutError:
        pass
    return out


def _get(port: int, path: str = "/v1/bakes") -> tuple[int, float]:
    """Status and seconds of one GET on a fresh connection."""
    t0 = time.perf_counter()
    with _connect(port) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        data = _read_all(s, 10.0)
    dt = time.perf_counter() - t0
    try:
        return int(data.split(b" ", 2)[1]), dt
    except (IndexError, ValueError):
        return 0, dt


@dataclass
class AbuseResult:
    idle_held: int
    normal: int
    normal_ok: int
    p50_ms: float
    p99_ms: float
    slowloris: int
    slowloris_closed: int
    slowloris_max_s: float
    read_timeout_s: float
    desync_responses: int
    malformed: dict[str, int]
    streams_opened: int
    streams_refused: int
    burst: int
    burst_ok: int
    burst_p99_ms: float
    latencies_ms: list[float] = field(default_factory=list)  # the normal requests'
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures


def _idle(port: int, n: int) -> list[socket.socket]:
    out = []
    for _ in range(n):
        out.append(_connect(port))
    return out


def _timed_gets(port: int, n: int, parallel: int = 1) -> list[tuple[int, float]]:
    if parallel == 1:
        return [_get(port) for _ in range(n)]
    with ThreadPoolExecutor(parallel) as ex:
        return list(ex.map(lambda _: _get(port), range(n)))


def _slowloris(port: int, n: int, seconds: float) -> list[float]:
    """``n`` connections sending one header byte every 0.5 s; seconds until each was closed
    (``inf`` if still open after ``seconds``)."""
    socks = [_connect(port) for _ in range(n)]
    closed: dict[int, float] = {}
    t0 = time.monotonic()
    payload = b"GET /v1/bakes HTTP/1.1\r\nX-Slow: " + b"a" * 10_000
    i = 0
    while time.monotonic() - t0 < seconds and len(closed) < n:
        for k, s in enumerate(socks):
            if k in closed:
                continue
            try:
                s.sendall(payload[i % len(payload) : i % len(payload) + 1])
                s.settimeout(0.001)
                if s.recv(65536) == b"":
                    closed[k] = time.monotonic() - t0
            except TimeoutError:
                pass
            except OSError:
                closed[k] = time.monotonic() - t0
        i += 1
        time.sleep(0.5)
    for s in socks:
        s.close()
    return [closed.get(k, float("inf")) for k in range(n)]


def _desync(port: int) -> int:
    """A GET with a body holding a second request: how many responses come back (1 is right:
    the server must not parse the body as the next request)."""
    smuggled = b"GET /v1/bakes/smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
    req = (
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: "
        + str(len(smuggled)).encode()
        + b"\r\n\r\n"
        + smuggled
    )
    with _connect(port) as s:
        s.sendall(req)
        data = _read_all(s, 5.0)
    return data.count(b"HTTP/1.")


_MALFORMED = {
    "garbage": b"\x00\x01\x02 nonsense\r\n\r\n",
    "no_version": b"GET /v1/bakes\r\n\r\n",
    "unknown_method": b"BREW /v1/bakes HTTP/1.1\r\nHost: x\r\n\r\n",
    "huge_header": b"GET /v1/bakes HTTP/1.1\r\nX: " + b"a" * 200_000 + b"\r\n\r\n",
    "bad_length": b"POST /v1/bakes HTTP/1.1\r\nContent-Length: -5\r\n\r\n",
    "bad_json": b"POST /v1/bakes HTTP/1.1\r\nContent-Length: 5\r\n\r\n{{{{{",
    "bad_id": b"GET /v1/bakes/a%0A HTTP/1.1\r\nHost: x\r\n\r\n",
}


def _malformed(port: int) -> dict[str, int]:
    """Status per malformed request (0: no HTTP answer); every answer must be JSON 4xx/5xx."""
    out = {}
    for name, raw in _MALFORMED.items():
        with _connect(port) as s:
            with contextlib.suppress(OSError):  # it may answer and close before reading it all
                s.sendall(raw)
            try:
                data = _read_all(s, 5.0)
            except OSError:
                data = b""
        head, _, body = data.partition(b"\r\n\r\n")
        try:
            status = int(head.split(b" ", 2)[1])
        except (IndexError, ValueError):
            status = 0
        json_body = body.lstrip().startswith(b"{") and b"application/json" in head.lower()
        out[name] = status if json_body else -status
    return out


def _streams(port: int, n: int) -> tuple[int, int, list[socket.socket]]:
    """Open ``n`` alert streams: (opened with 200, refused with 503, sockets to close)."""
    opened = refused = 0
    socks = []
    for _ in range(n):
        s = _connect(port)
        s.sendall(b"GET /v1/alerts/stream HTTP/1.1\r\nHost: x\r\n\r\n")
        s.settimeout(5.0)
        try:
            head = s.recv(4096)
        except TimeoutError:
            head = b""
        if head.startswith(b"HTTP/1.1 200") or head.startswith(b"HTTP/1.0 200"):
            opened += 1
            socks.append(s)
        else:
            refused += head[9:12] == b"503"
            s.close()
    return opened, refused, socks


def run_http_abuse(
    bootstrap: str,
    workdir: Path,
    *,
    idle: int = 500,
    normal: int = 1000,
    slowloris: int = 50,
    read_timeout_s: float = 3.0,
    max_streams: int = 16,
    burst: int = 2000,
    progress: Callable[[str], None] = lambda _: None,
) -> AbuseResult:
    """Start an API process (read timeout ``read_timeout_s``, ``max_streams`` alert streams,
    a connection cap above ``idle``) and abuse it; :attr:`AbuseResult.failures` lists every
    property that did not hold."""
    settings: dict[str, Any] = {
        "api_read_timeout_s": read_timeout_s,
        "api_max_streams": max_streams,
        "api_max_connections": idle + slowloris + max_streams + 200,
    }
    cluster = Cluster(bootstrap, workdir, settings=settings)
    proc = cluster.add("api")
    failures: list[str] = []
    try:
        wait_for(lambda: _api_port(proc.log) is not None, 60, "the API port", cluster=cluster)
        port = _api_port(proc.log)
        assert port is not None
        wait_for(lambda: _get(port)[0] == 200, 60, "the API answering", cluster=cluster)
        _timed_gets(port, 50)  # warm up

        held = _idle(port, idle)
        progress(f"holding {len(held)} idle connections")
        normal_runs = _timed_gets(port, normal)
        for s in held:
            s.close()
        lat_ms = np.array([dt for _, dt in normal_runs]) * 1000.0
        normal_ok = sum(1 for st, _ in normal_runs if st == 200)

        progress(f"slowloris: {slowloris} connections")
        closes = _slowloris(port, slowloris, read_timeout_s * 3 + 5)
        desync = _desync(port)
        malformed = _malformed(port)
        progress("alert-stream flood")
        opened, refused, streams = _streams(port, max_streams + 20)
        during = _get(port)[0]
        for s in streams:
            s.close()
        progress(f"burst: {burst} requests, 32 in parallel")
        bursts = _timed_gets(port, burst, parallel=32)
        b_ms = np.array([dt for _, dt in bursts]) * 1000.0
        alive = proc.alive()
    finally:
        cluster.stop_all()
    result = AbuseResult(
        idle_held=idle,
        normal=normal,
        normal_ok=normal_ok,
        p50_ms=float(np.percentile(lat_ms, 50)),
        p99_ms=float(np.percentile(lat_ms, 99)),
        slowloris=slowloris,
        slowloris_closed=sum(1 for c in closes if c != float("inf")),
        slowloris_max_s=max(closes),
        read_timeout_s=read_timeout_s,
        desync_responses=desync,
        malformed=malformed,
        streams_opened=opened,
        streams_refused=refused,
        burst=burst,
        burst_ok=sum(1 for st, _ in bursts if st == 200),
        burst_p99_ms=float(np.percentile(b_ms, 99)),
        latencies_ms=lat_ms.tolist(),
    )
    if not alive:
        failures.append("the API process died")
    if normal_ok != normal:
        failures.append(f"{normal - normal_ok}/{normal} normal requests failed with idle held")
    if result.slowloris_closed != slowloris or result.slowloris_max_s > read_timeout_s + 2.0:
        failures.append(
            f"slowloris: {result.slowloris_closed}/{slowloris} closed, the last after "
            f"{result.slowloris_max_s:.1f}s (read timeout {read_timeout_s:g}s)"
        )
    if desync != 1:
        failures.append(f"desync: {desync} responses to one request with a smuggled body")
    bad = {k: v for k, v in malformed.items() if not 400 <= v < 600}
    if bad:
        failures.append(f"malformed requests without a JSON 4xx/5xx: {bad}")
    if opened != max_streams or refused != 20 or during != 200:
        failures.append(
            f"streams: {opened} opened (cap {max_streams}), {refused}/20 refused with 503, "
            f"a normal request during the flood got {during}"
        )
    if result.burst_ok != burst:
        failures.append(f"burst: {burst - result.burst_ok}/{burst} failed")
    result.failures = failures
    return result
