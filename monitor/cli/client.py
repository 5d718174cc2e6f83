"""``bakemon bake …`` and ``bakemon alerts tail``: a small client of the HTTP API (stdlib only).

The API address comes from ``--url`` or ``BAKEMON_URL`` (default http://localhost:8080), the
token from ``--token`` or ``BAKEMON_API_TOKEN``. ``bake wait`` exits 0 PROMOTE, 1 HALT,
2 INCONCLUSIVE or timeout, 4 usage/connection errors, printing progress to stderr.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import orjson

from monitor.cli.durations import parse_duration_s
from monitor.errors import MonitorError

__all__ = ["ApiClient", "add_client_commands"]

DEFAULT_URL = "http://localhost:8080"
WAIT_EXIT = {"PROMOTE": 0, "HALT": 1, "INCONCLUSIVE": 2}
_COLOURS = {"critical": "\033[31m", "warning": "\033[33m", "info": "\033[36m"}
_RESET = "\033[0m"


class ClientError(MonitorError):
    """The API answered with an error, or could not be reached."""


class ApiClient:
    def __init__(self, url: str, token: str | None = None, timeout_s: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self.timeout_s = timeout_s

    def _request(
        self, method: str, path: str, body: Any = None, *, ok: tuple[int, ...] = (200, 201)
    ) -> tuple[int, Any]:
        data = None if body is None else orjson.dumps(body)
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if self.token:
            req.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                return resp.status, orjson.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            payload = exc.read()
            try:
                doc = orjson.loads(payload)
            except orjson.JSONDecodeError:
                doc = {"error": payload.decode(errors="replace")}
            if exc.code in ok:
                return exc.code, doc
            msg = (
                f"{method} {path}: HTTP {exc.code}: {doc.get('error') or doc.get('reason') or doc}"
            )
            raise ClientError(msg, value=exc.code) from None
        except (urllib.error.URLError, OSError) as exc:
            msg = f"cannot reach the bakemon API at {self.url}: {getattr(exc, 'reason', exc)}"
            raise ClientError(msg, value=self.url) from None

    def get(self, path: str) -> Any:
        return self._request("GET", path)[1]

    def post(self, path: str, body: Any = None) -> Any:
        return self._request("POST", path, body if body is not None else {})[1]

    def stream(
        self, path: str, last_event_id: str | None = None
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        """(id, alert) from an SSE endpoint, until the connection ends."""
        req = urllib.request.Request(self.url + path)
        req.add_header("Accept", "text/event-stream")
        if last_event_id:
            req.add_header("Last-Event-ID", last_event_id)
        if self.token:
            req.add_header("Authorization", f"Bearer {self.token}")
        try:
            resp = urllib.request.urlopen(req, timeout=60)
        except (urllib.error.URLError, OSError) as exc:
            msg = f"cannot reach the bakemon API at {self.url}: {getattr(exc, 'reason', exc)}"
            raise ClientError(msg, value=self.url) from None
        with resp:
            event_id, data = "", b""
            for raw in resp:
                line = raw.rstrip(b"\r\n")
                if not line:
                    if data:
                        yield event_id, orjson.loads(data)
                    event_id, data = "", b""
                elif line.startswith(b"id:"):
                    event_id = line[3:].strip().decode()
                elif line.startswith(b"data:"):
                    data += line[5:].strip()


def _client(args: argparse.Namespace) -> ApiClient:
    return ApiClient(
        args.url or os.environ.get("BAKEMON_URL", DEFAULT_URL),
        args.token or os.environ.get("BAKEMON_API_TOKEN"),
    )


def _print_json(doc: Any) -> None:
    sys.stdout.buffer.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n")


def cmd_bake_create(args: argparse.Namespace) -> int:
    spec: dict[str, Any] = {}
    if args.file:
        try:
            with open(args.file, "rb") as fh:
                spec = orjson.loads(fh.read())
        except (OSError, orjson.JSONDecodeError) as exc:
            msg = f'cannot read bake file "{args.file}": {exc}'
            raise MonitorError(msg, value=args.file) from None
    for key in ("id", "service", "canary", "baseline"):
        if getattr(args, key):
            spec[key] = getattr(args, key)
    if args.policy:
        try:
            spec["policy"] = orjson.loads(args.policy)
        except orjson.JSONDecodeError as exc:
            msg = f"--policy is not JSON: {exc}"
            raise MonitorError(msg, value=args.policy) from None
    _print_json(_client(args).post("/v1/bakes", spec))
    return 0


def cmd_bake_get(args: argparse.Namespace) -> int:
    _print_json(_client(args).get(f"/v1/bakes/{args.id}"))
    return 0


def cmd_bake_list(args: argparse.Namespace) -> int:
    q = "&".join(f"{k}={v}" for k, v in (("service", args.service), ("status", args.status)) if v)
    docs = _client(args).get("/v1/bakes" + (f"?{q}" if q else ""))["bakes"]
    if args.json:
        _print_json(docs)
        return 0
    print(f"{'id':<28} {'status':<13} {'canary':>10} {'baseline':>10}  reason")
    for d in docs:
        p = d["progress"]
        print(
            f"{d['id'][:28]:<28} {d['status']:<13} {p['canary_requests']:>10,} {p['baseline_requests']:>10,}  {d['reasons'][0] if d['reasons'] else ''}"
        )
    return 0


def cmd_bake_cancel(args: argparse.Namespace) -> int:
    _print_json(_client(args).post(f"/v1/bakes/{args.id}/cancel"))
    return 0


def cmd_bake_wait(args: argparse.Namespace) -> int:
    client = _client(args)
    timeout_s = parse_duration_s(args.timeout, name="--timeout")
    interval_s = parse_duration_s(args.interval, name="--interval")
    deadline = time.monotonic() + timeout_s
    last = ""
    while True:
        try:
            doc = client.get(f"/v1/bakes/{args.id}")
        except ClientError as exc:
            if exc.value == 404:
                raise
            print(f"bakemon: {exc} (retrying)", file=sys.stderr)
            doc = None
        if doc is not None:
            status = doc["status"]
            line = f"{status}: {doc.get('progress_text', '')} — {doc['reasons'][0] if doc['reasons'] else ''}"
            if line != last:
                print(line, file=sys.stderr)
                last = line
            if status in WAIT_EXIT:
                print(status)
                return WAIT_EXIT[status]
        if time.monotonic() + interval_s > deadline:
            print(
                f"bakemon: timed out after {args.timeout} waiting for bake {args.id}",
                file=sys.stderr,
            )
            return 2
        time.sleep(interval_s)


def _format_alert(alert: dict[str, Any], colour: bool) -> str:
    labels = alert.get("labels", {})
    sev = labels.get("severity", "info")
    head = f"{alert.get('startsAt') or '-'} {sev.upper():<8} {labels.get('alertname', '')} {labels.get('bake', '')}"
    if colour:
        head = f"{_COLOURS.get(sev, '')}{head}{_RESET}"
    return f"{head}: {alert.get('annotations', {}).get('description', '')}"


def cmd_alerts_tail(args: argparse.Namespace) -> int:
    client = _client(args)
    colour = sys.stdout.isatty() and not args.json
    q = f"?bake={args.bake}" if args.bake else ""
    last: str | None = None
    for item in client.get(f"/v1/alerts{q}{'&' if q else '?'}limit={args.lines}")["alerts"]:
        alert = {k: v for k, v in item.items() if k != "id"}
        print(
            orjson.dumps(alert).decode() if args.json else _format_alert(alert, colour), flush=True
        )
        last = str(item["id"])
    if not args.follow:
        return 0
    while True:  # reconnect with Last-Event-ID: no alert is lost or repeated
        for event_id, alert in client.stream(f"/v1/alerts/stream{q}", last):
            last = event_id
            print(
                orjson.dumps(alert).decode() if args.json else _format_alert(alert, colour),
                flush=True,
            )
        time.sleep(1)


def add_client_commands(sub: Any, parser_class: type[argparse.ArgumentParser]) -> None:
    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--url", help=f"bakemon API (BAKEMON_URL, default {DEFAULT_URL})")
        p.add_argument("--token", help="bearer token (BAKEMON_API_TOKEN)")

    bake = sub.add_parser("bake", help="create, inspect and wait for bakes (HTTP API client)")
    bsub = bake.add_subparsers(dest="bake_command", required=True, parser_class=parser_class)
    p = bsub.add_parser("create", help="create a bake")
    common(p)
    p.add_argument("--file", help="JSON bake spec")
    p.add_argument("--id")
    p.add_argument("--service")
    p.add_argument("--canary", help="canary version")
    p.add_argument("--baseline", help="baseline version")
    p.add_argument("--policy", help="policy as JSON")
    p.set_defaults(func=cmd_bake_create)
    p = bsub.add_parser("get", help="print a bake's verdict document")
    common(p)
    p.add_argument("id")
    p.set_defaults(func=cmd_bake_get)
    p = bsub.add_parser("list", help="list bakes")
    common(p)
    p.add_argument("--service")
    p.add_argument("--status")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_bake_list)
    p = bsub.add_parser("cancel", help="stop counting traffic for a bake")
    common(p)
    p.add_argument("id")
    p.set_defaults(func=cmd_bake_cancel)
    p = bsub.add_parser(
        "wait", help="wait for a decision: exit 0 PROMOTE, 1 HALT, 2 INCONCLUSIVE/timeout"
    )
    common(p)
    p.add_argument("id")
    p.add_argument("--timeout", default="30m", help="give up after this long (default 30m)")
    p.add_argument("--interval", default="5s", help="poll interval (default 5s)")
    p.set_defaults(func=cmd_bake_wait)
    alerts = sub.add_parser("alerts", help="alerts")
    asub = alerts.add_subparsers(dest="alerts_command", required=True, parser_class=parser_class)
    p = asub.add_parser("tail", help="print recent alerts; --follow streams new ones")
    common(p)
    p.add_argument("--follow", "-f", action="store_true")
    p.add_argument("--bake")
    p.add_argument("--json", action="store_true")
    p.add_argument("--lines", "-n", type=int, default=20)
    p.set_defaults(func=cmd_alerts_tail)
