"""``bakemon bake …`` and ``bakemon alerts tail``: a small client of the HTTP API (stdlib only).

The API address and token come from ``--url``/``--token``, else ``BAKEMON_URL``/
``BAKEMON_API_TOKEN`` (:func:`monitor.cli.connection.load_client_settings`). ``bake wait`` reads each
document through :func:`monitor.verdict.interpret` and exits with its code (README "Exit
codes"): 0 PROMOTE, 1 HALT, 2 INCONCLUSIVE, 4 usage error or unknown bake, 5 timeout, 6 API
unreachable (or answering errors or unreadable documents) for more than ``--retries`` polls.
The other commands exit 6 at the first such failure (:func:`monitor.cli.main.main`).
"""

from __future__ import annotations

import argparse
import getpass
import http.client
import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TextIO

import orjson

from monitor.cli.connection import DEFAULT_API_URL, load_client_settings
from monitor.cli.durations import parse_duration_s
from monitor.errors import ConfigError, InputError, MonitorError

# The verdict package (numpy, detectors) is imported once an answer has to be read, so a
# client command starts fast and fails fast (benchmarks/cli_startup.py).
if TYPE_CHECKING:
    from monitor.verdict import ExitCode, Reading

__all__ = ["ApiClient", "ClientError", "WaitOptions", "add_client_commands", "wait_for_verdict"]

DEFAULT_RETRIES = 12
REQUEST_TIMEOUT_S = 10.0
WAIT_EXIT_CODES = """exit codes:
  0  PROMOTE
  1  HALT
  2  INCONCLUSIVE (whatever its resolution, printed on stderr)
  4  usage error, unknown bake, or a token the API rejects
  5  timeout: still PENDING when --timeout ran out
  6  API unreachable, or answering 5xx/429 or unreadable documents, for more than
     --retries consecutive polls (or at the timeout)"""
_RETRIED_HTTP = (408, 429)  # and every 5xx: the API is restarting or overloaded
_COLOURS = {"critical": "\033[31m", "warning": "\033[33m", "info": "\033[36m"}
_RESET = "\033[0m"


class ClientError(MonitorError):
    """The API answered with an error, or could not be reached; ``retryable`` if trying again
    later may help (no connection, a 5xx, 408, 429, an answer that is not JSON)."""

    def __init__(self, msg: str, *, value: Any = None, retryable: bool = False) -> None:
        super().__init__(msg, value=value)
        self.retryable = retryable


class ApiClient:
    def __init__(
        self, url: str, token: str | None = None, timeout_s: float = REQUEST_TIMEOUT_S
    ) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self.timeout_s = timeout_s

    def _unreachable(self, exc: BaseException) -> ClientError:
        msg = f"cannot reach the bakemon API at {self.url}: {getattr(exc, 'reason', exc)}"
        return ClientError(msg, value=self.url, retryable=True)

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
            try:
                with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                    status, payload = resp.status, resp.read()
            except urllib.error.HTTPError as exc:
                status, payload = exc.code, exc.read()
        # An answer cut short (IncompleteRead) is the API going away, like a refused connection.
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            raise self._unreachable(exc) from None
        try:
            doc = orjson.loads(payload or b"null")
        except orjson.JSONDecodeError:
            if status in ok:
                msg = f"{method} {path}: HTTP {status} with an answer that is not JSON"
                raise ClientError(msg, value=status, retryable=True) from None
            doc = {"error": payload.decode(errors="replace")}
        if status in ok:
            return status, doc
        detail = (doc.get("error") or doc.get("reason") or doc) if isinstance(doc, dict) else doc
        msg = f"{method} {path}: HTTP {status}: {detail}"
        raise ClientError(msg, value=status, retryable=status >= 500 or status in _RETRIED_HTTP)

    def get(self, path: str) -> Any:
        return self._request("GET", path)[1]

    def post(self, path: str, body: Any = None) -> Any:
        payload = body if body is not None else {}
        return self._request("POST", path, payload, ok=(200, 201, 202))[1]

    def stream(
        self, path: str, last_event_id: str | None = None
    ) -> Generator[tuple[str, dict[str, Any]], None, None]:
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
            raise self._unreachable(exc) from None
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
    settings = load_client_settings(args.url, args.token)
    return ApiClient(settings.url, settings.token)


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
            raise InputError(msg, value=args.file) from None
    for key in ("id", "service", "canary", "baseline"):
        if getattr(args, key):
            spec[key] = getattr(args, key)
    if args.policy:
        try:
            spec["policy"] = orjson.loads(args.policy)
        except orjson.JSONDecodeError as exc:
            msg = f"--policy is not JSON: {exc}"
            raise ConfigError(msg, value=args.policy) from None
    _show(_client(args).post("/v1/bakes", spec), args.json)
    return 0


def _show(doc: Any, as_json: bool) -> None:
    """A verdict document: readable (the lines of ``bake get``), or as JSON with ``--json``."""
    if as_json or not isinstance(doc, dict) or "status" not in doc:
        _print_json(doc)
        return
    from monitor.cli.watch import render_bake

    print("\n".join(render_bake(doc)))


def cmd_bake_get(args: argparse.Namespace) -> int:
    _show(_client(args).get(f"/v1/bakes/{args.id}"), args.json)
    return 0


def cmd_bake_watch(args: argparse.Namespace) -> int:
    interval = parse_duration_s(args.interval, name="--interval")
    timeout = parse_duration_s(args.timeout, name="--timeout")
    if interval <= 0:
        msg = f"--interval must be > 0, got {args.interval}"
        raise ConfigError(msg, value=args.interval)
    tty = sys.stdout.isatty() and os.environ.get("TERM") != "dumb"
    client = _client(args)
    from monitor.cli.watch import watch

    return watch(client, args.ids, interval_s=interval, timeout_s=timeout, out=sys.stdout, tty=tty)


def cmd_bake_override(args: argparse.Namespace) -> int:
    if not args.reason.strip():
        msg = "--reason must say why (it is shown in the document and the alert)"
        raise ConfigError(msg, value=args.reason)
    body = {"status": args.status, "by": args.by or getpass.getuser(), "reason": args.reason}
    _print_json(_client(args).post(f"/v1/bakes/{args.id}/override", body))
    return 0


def _add_terminal_commands(bsub: Any, common: Callable[[argparse.ArgumentParser], None]) -> None:
    """``bake watch``, ``bake get`` and ``bake override``."""
    p = bsub.add_parser(
        "watch",
        help="a live table of bakes (all, or the ids given) until they are decided",
        description="Redraws in place on a terminal (80 columns); piped, prints a snapshot "
        "every --interval (at least 5 s). Exits like `bake wait`: 0 PROMOTE, 1 HALT (any), "
        "2 INCONCLUSIVE (any), 5 timeout.",
    )
    common(p)
    p.add_argument("ids", nargs="*", metavar="ID", help="bakes to watch (default: all)")
    p.add_argument("--interval", default="2s", help="refresh interval (default 2s)")
    p.add_argument("--timeout", default="24h", help="give up after this long (default 24h)")
    p.set_defaults(func=cmd_bake_watch)
    p = bsub.add_parser("get", help="a bake's verdict, readable (--json: the document)")
    common(p)
    p.add_argument("id", help="bake id")
    p.add_argument("--json", action="store_true", help="print the verdict document")
    p.set_defaults(func=cmd_bake_get)
    p = bsub.add_parser(
        "override",
        help="decide a bake as an operator (audited: who and why show in the document and alert)",
    )
    common(p)
    p.add_argument("id", help="bake id")
    p.add_argument(
        "--status",
        required=True,
        choices=["PROMOTE", "HALT", "INCONCLUSIVE"],
        help="the decision to record",
    )
    p.add_argument("--reason", required=True, help="why (shown in the document and the alert)")
    p.add_argument("--by", help="who (default: the current user)")
    p.set_defaults(func=cmd_bake_override)


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
    _show(_client(args).post(f"/v1/bakes/{args.id}/cancel"), args.json)
    return 0


@dataclass(frozen=True)
class WaitOptions:
    timeout_s: float
    interval_s: float
    retries: int = DEFAULT_RETRIES  # consecutive failed polls tolerated before exit 6

    def __post_init__(self) -> None:
        if self.retries < 0:
            msg = f"--retries must be >= 0, got {self.retries}"
            raise ConfigError(msg, value=self.retries)
        if self.interval_s <= 0:
            msg = f"--interval must be > 0, got {self.interval_s:g}s"
            raise ConfigError(msg, value=self.interval_s)


def _poll(client: ApiClient, path: str) -> tuple[Reading | None, dict[str, Any], str]:
    """One poll: (reading, document, problem); a reading only when the answer is usable."""
    from monitor.verdict import interpret

    try:
        doc = client.get(path)
    except ClientError as exc:
        if not exc.retryable:  # unknown bake, rejected token: waiting will not help
            raise
        return None, {}, str(exc)
    reading = interpret(doc)
    if reading.meaning == "broken":
        return None, {}, reading.reason
    return reading, doc, ""


def _exit_code(name: str) -> ExitCode:
    from monitor.verdict import ExitCode

    return ExitCode[name]


def wait_for_verdict(
    client: ApiClient,
    bake_id: str,
    options: WaitOptions,
    *,
    out: TextIO | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> ExitCode:
    """Poll a bake until it is decided; progress goes to ``out`` (stderr), the status to stdout."""
    err = out or sys.stderr
    deadline = clock() + options.timeout_s
    failures, last = 0, ""
    while True:
        reading, doc, problem = _poll(client, f"/v1/bakes/{bake_id}")
        if reading is None:
            failures += 1
            print(f"bakemon: {problem} (failed poll {failures} of {options.retries + 1})", file=err)
            if failures > options.retries:
                print(f"bakemon: giving up on bake {bake_id}: no usable answer", file=err)
                return _exit_code("UNREACHABLE")
        else:
            failures = 0
            line = f"{doc.get('progress_text') or reading.status} — {reading.detail}"
            if line != last:
                print(line, file=err)
                last = line
            if reading.final:
                if reading.resolution is not None:
                    print(f"resolution: {reading.resolution.value}", file=err)
                print(reading.status)
                return reading.exit_code
        if clock() + options.interval_s > deadline:
            print(f"bakemon: timed out waiting for bake {bake_id}", file=err)
            return _exit_code("UNREACHABLE" if failures else "TIMEOUT")
        sleep(options.interval_s)


def cmd_bake_wait(args: argparse.Namespace) -> int:
    options = WaitOptions(
        timeout_s=parse_duration_s(args.timeout, name="--timeout"),
        interval_s=parse_duration_s(args.interval, name="--interval"),
        retries=args.retries,
    )
    return int(wait_for_verdict(_client(args), args.id, options))


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
        p.add_argument("--url", help=f"bakemon API (BAKEMON_URL, default {DEFAULT_API_URL})")
        p.add_argument("--token", help="bearer token (BAKEMON_API_TOKEN)")

    bake = sub.add_parser("bake", help="create, inspect and wait for bakes (HTTP API client)")
    bsub = bake.add_subparsers(dest="bake_command", required=True, parser_class=parser_class)
    p = bsub.add_parser("create", help="create a bake")
    common(p)
    p.add_argument("--file", help="JSON bake spec")
    p.add_argument("--id", help="bake id (default <service>-<canary>, made a valid id)")
    p.add_argument("--service", help="service the bake watches")
    p.add_argument("--canary", help="canary version")
    p.add_argument("--baseline", help="baseline version")
    p.add_argument("--policy", help="policy as JSON")
    p.add_argument("--json", action="store_true", help="print the verdict document")
    p.set_defaults(func=cmd_bake_create)
    _add_terminal_commands(bsub, common)
    p = bsub.add_parser("list", help="list bakes")
    common(p)
    p.add_argument("--service", help="only this service's bakes")
    p.add_argument("--status", help="only bakes in this status (PENDING, PROMOTE, HALT, …)")
    p.add_argument("--json", action="store_true", help="print the verdict documents as JSON")
    p.set_defaults(func=cmd_bake_list)
    p = bsub.add_parser("cancel", help="stop counting traffic for a bake")
    common(p)
    p.add_argument("id", help="bake id")
    p.add_argument("--json", action="store_true", help="print the verdict document")
    p.set_defaults(func=cmd_bake_cancel)
    p = bsub.add_parser(
        "wait",
        help="wait for a decision: exit 0 PROMOTE, 1 HALT, 2 INCONCLUSIVE, 5 timeout, 6 unreachable, 8 CANCELLED",
        description="Poll the bake's verdict document until it is decided; progress goes to "
        "stderr, the final status to stdout.",
        epilog=WAIT_EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    common(p)
    p.add_argument("id", help="bake id")
    p.add_argument("--timeout", default="30m", help="give up after this long (default 30m)")
    p.add_argument("--interval", default="5s", help="poll interval (default 5s)")
    p.add_argument(
        "--retries",
        type=int,
        default=DEFAULT_RETRIES,
        help="consecutive failed polls (no connection, 5xx, unreadable answer) tolerated "
        f"before exit 6 (default {DEFAULT_RETRIES})",
    )
    p.set_defaults(func=cmd_bake_wait)
    alerts = sub.add_parser("alerts", help="print or follow bakemon's alerts (HTTP API client)")
    asub = alerts.add_subparsers(dest="alerts_command", required=True, parser_class=parser_class)
    p = asub.add_parser("tail", help="print recent alerts; --follow streams new ones")
    common(p)
    p.add_argument("--follow", "-f", action="store_true", help="stream new alerts until Ctrl-C")
    p.add_argument("--bake", help="only this bake's alerts")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.add_argument(
        "--lines", "-n", type=int, default=20, help="recent alerts to print first (default 20)"
    )
    p.set_defaults(func=cmd_alerts_tail)
