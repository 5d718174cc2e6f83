"""``bakemon demo``: the whole system on one machine in a couple of minutes.

Starts the embedded broker (unless ``--bootstrap-servers``), bakemon with all roles, creates two
bakes through the HTTP API, and produces simulated traffic for a small fleet: ``checkout`` gets a
regressed canary, ``search`` a healthy one. It shows live progress, prints the verdict URLs and
the final verdicts, and exits 0 when they are what the scenario expects (HALT for checkout,
PROMOTE for search). Simulated event time runs faster than the wall clock: the traffic is
produced (by a child process, :mod:`monitor.cli.demo_traffic`) as fast as bakemon keeps up with
it — at most ``MAX_AHEAD`` records ahead of ingest and ``MAX_PARTIALS_BEHIND`` partials ahead of
the judge — or at ``--rate``.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import socket
import sys
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import monitor.cli.exits as exits
from bakesim import Regression
from monitor.cli.client import ApiClient, ClientError
from monitor.cli.demo_traffic import PARTITIONS, REQUEST_TOPIC, DemoTraffic
from monitor.config import ENV_PREFIX, FIELDS_PRESET_ENV, load_settings
from monitor.errors import ConfigError
from monitor.kafka.broker import EmbeddedBroker, free_port

if TYPE_CHECKING:
    from monitor.config import Settings
    from monitor.service import Service

__all__ = ["DEMO_DESCRIPTION", "SCENARIOS", "add_demo_arguments", "run_demo"]

DEMO_DESCRIPTION = (
    "Start an embedded broker and bakemon, create two bakes through the API, drive simulated "
    "traffic (checkout: regressed canary, search: healthy), show live progress and exit 0 when "
    "the verdicts are HALT and PROMOTE. --keep-running leaves the API up afterwards, to open "
    "the printed URLs, until Ctrl-C. BAKEMON_* settings apply, except the few the demo must "
    "fix (it names them when they are set)."
)
DEFAULT_PORT = 8080
# Settings the demo must fix (its own traffic, all roles, a local API), and the demo's tuning,
# which a BAKEMON_* variable may change.
_FIXED = {
    "topics": REQUEST_TOPIC,
    "roles": "ingest,judge,api",
    "api_host": "127.0.0.1",
    "ops_host": "127.0.0.1",
}
_TUNING = {"block_offsets": 20_000, "flush_interval_s": 0.5, "checkpoint_interval_s": 0.5}
# The traffic waits while ingest has this many records left to read, or the judge this many
# partials left to fold: as fast as the machine runs the pipeline, without a backlog that every
# verdict would wait behind (everything shares one process, so one stage left behind is starved).
MAX_AHEAD = 10_000
MAX_PARTIALS_BEHIND = 8
_TUNING_ENV = {"ops_port": 0}


@dataclass(frozen=True)
class DemoScenario:
    description: str
    regression: Regression


SCENARIOS = {
    "errors": DemoScenario(
        "checkout canary with 2x the error rate", Regression(error_multiplier=2.0)
    ),
    "latency": DemoScenario("checkout canary 25% slower", Regression(latency_multiplier=1.25)),
    "slow-tail": DemoScenario(
        "5% of checkout canary requests +300 ms",
        Regression(slow_tail_fraction=0.05, slow_tail_add_s=0.3),
    ),
}
POLICY = {"min_canary_requests": 5000, "errors": {"tol": 0.5}, "latency": {"tol": 0.25}}
EXPECTED = {"checkout": "HALT", "search": "PROMOTE"}
_STATUS_COLOURS = {
    "PROMOTE": "\033[32m",
    "HALT": "\033[31m",
    "INCONCLUSIVE": "\033[33m",
    "PENDING": "\033[36m",
}


def add_demo_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--scenario",
        choices=sorted(SCENARIOS),
        default="errors",
        help="the checkout canary's regression (default errors)",
    )
    p.add_argument("--bootstrap-servers", help="use this Kafka instead of the embedded broker")
    p.add_argument(
        "--port",
        type=int,
        help=f"API port, used or the demo stops (0: any free port; default BAKEMON_API_PORT, "
        f"else {DEFAULT_PORT}, else any free port if {DEFAULT_PORT} is taken)",
    )
    p.add_argument(
        "--rate",
        type=float,
        default=0.0,
        help="records/s to produce (default: as fast as bakemon ingests them)",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=170.0,
        help="seconds to wait for both verdicts (default 170)",
    )
    p.add_argument(
        "--keep-running",
        action="store_true",
        help="leave the API and metrics up after the verdicts, until Ctrl-C (then exit as "
        "without it)",
    )
    p.add_argument("--seed", type=int, default=42, help="simulator seed (default 42)")


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _choose_port(flag: int | None, env_port: str | None, out: Any) -> int:
    """The API port: ``--port`` (else ``BAKEMON_API_PORT``) exactly, or the demo stops; without
    either, 8080 or, if that is taken, any free port (said on ``out``)."""
    source, port = "--port", flag
    if port is None and env_port:
        source = f"{ENV_PREFIX}API_PORT"
        try:
            port = int(env_port)
        except ValueError:
            msg = f'{source} must be a port number, got "{env_port}"'
            raise ConfigError(msg, value=env_port) from None
    if port is None:
        if _port_free(DEFAULT_PORT):
            return DEFAULT_PORT
        port = free_port()
        print(f"port {DEFAULT_PORT} is taken: the API uses port {port}", file=out, flush=True)
        return port
    if not 0 <= port <= 65535:
        msg = f"{source} must be a port number in [0, 65535], got {port}"
        raise ConfigError(msg, value=port)
    if port == 0:
        return free_port()
    if not _port_free(port):
        msg = f"{source} {port}: the port is in use on 127.0.0.1; stop what holds it, pick another, or use 0 for any free port"
        raise ConfigError(msg, value=port)
    return port


def _say_ignored(env: dict[str, str], out: Any) -> None:
    """Name the BAKEMON_* variables that are set but that the demo must fix."""
    fixed = [f"{ENV_PREFIX}{k.upper()}" for k in _FIXED] + [FIELDS_PRESET_ENV]
    ignored = [name for name in fixed if env.get(name)]
    if ignored:
        print(
            f"demo: ignoring {', '.join(ignored)} (the demo's own traffic topic, field map, "
            "roles and local API)",
            file=out,
            flush=True,
        )
        for name in ignored:
            env.pop(name)


def _row(doc: dict[str, Any], colour: bool) -> str:
    p = doc["progress"]
    m = doc.get("metrics", {})
    err = m.get("error_rate", {})
    p99 = m.get("latency_p99_seconds", {})

    def pct(x: Any) -> str:
        return f"{100 * x:.2f}%" if isinstance(x, float) else "-"

    def ms(x: Any) -> str:
        return f"{1000 * x:.0f}ms" if isinstance(x, float) else "-"

    need = p.get("estimated_requests_to_decision")
    status = doc["status"]
    shown = f"{_STATUS_COLOURS.get(status, '')}{status:<12}\033[0m" if colour else f"{status:<12}"
    return (
        f"{doc['id']:<14} {p['canary_requests']:>9,} {p['baseline_requests']:>10,} "
        f"{pct(err.get('canary')) + '/' + pct(err.get('baseline')):>15} "
        f"{ms(p99.get('canary')) + '/' + ms(p99.get('baseline')):>13} {shown} "
        f"{'-' if need is None else f'{need:,}':>9}  {doc['reasons'][0][:70] if doc['reasons'] else ''}"
    )


HEADER = f"{'bake':<14} {'canary':>9} {'baseline':>10} {'errors c/b':>15} {'p99 c/b':>13} {'verdict':<12} {'to decide':>9}  reason"


def _interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def run_demo(args: argparse.Namespace) -> int:
    """``bakemon demo``: 0 when both verdicts are the expected ones, 1 if not, 130 on Ctrl-C
    (with ``--keep-running``, Ctrl-C after the verdicts exits 0 or 1 as without it); 4 for a
    bad setting or a busy ``--port``, 6 when bakemon stops answering."""
    from monitor.config import ignored_env
    from monitor.service import configure_logging

    out = sys.stdout
    # Ctrl-C and SIGTERM both stop everything cleanly, broker included (a shell's background job
    # may have inherited an ignored SIGINT, so install the handlers explicitly).
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    configure_logging("warning", "text")
    for warning in ignored_env(os.environ):
        logging.getLogger("bakemon.config").warning(warning)
    scenario = SCENARIOS[args.scenario]
    stack = _Stack()
    try:
        base, bootstrap = stack.start(args, out)
        assert stack.settings is not None
        client = ApiClient(base, stack.settings.api_token)
        create_bakes(client)
        print(f"scenario {args.scenario}: {scenario.description}; search canary healthy", file=out)
        print(f"web console: {base}/   (bakemon demo --keep-running keeps it up)", file=out)
        print("verdict documents:", file=out)
        for bake in ("checkout-v42", "search-v8"):
            print(f"  {base}/v1/bakes/{bake}", file=out)
        print(f"metrics: {base}/metrics   alerts: {base}/v1/alerts/stream\n", file=out, flush=True)
        stack.traffic = DemoTraffic(
            bootstrap,
            scenario.regression,
            args.seed,
            args.rate,
            dict(stack.settings.kafka),
            keeps_up=stack.keeps_up,
        )
        stack.traffic.start()
        docs = _watch(client, stack.traffic, args.timeout, out.isatty(), out)
        stack.traffic.stop_event.set()
        ok = _print_verdicts(docs, out)
        if args.keep_running:
            _keep_running(base, out)
        return 0 if ok else 1
    except KeyboardInterrupt:
        print("\ninterrupted: stopping…", file=out, flush=True)
        return 130
    except ClientError as exc:
        print(f"bakemon demo: {exc}", file=sys.stderr)
        return exits.UNREACHABLE if exc.retryable else 1
    finally:
        stack.stop()


def _keep_running(base: str, out: Any) -> None:
    """Serve until Ctrl-C (or SIGTERM); the verdicts still decide the exit code."""
    print(
        f"\nbakemon keeps running until Ctrl-C: {base}/v1/bakes, {base}/metrics, "
        f"{base}/v1/alerts/stream",
        file=out,
        flush=True,
    )
    try:
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        print("\nstopping…", file=out, flush=True)


class _Stack:
    """What the demo starts (broker, bakemon, traffic), stopped in reverse order."""

    def __init__(self) -> None:
        self.broker: EmbeddedBroker | None = None
        self.service: Service | None = None
        self.traffic: DemoTraffic | None = None
        self.settings: Settings | None = None

    def start(self, args: argparse.Namespace, out: Any) -> tuple[str, str]:
        """Start the broker (unless given) and bakemon with all roles: (API URL, bootstrap)."""
        from monitor.kafka.topics import ensure_topics
        from monitor.service import Service

        env = dict(os.environ)
        port = _choose_port(args.port, env.get(f"{ENV_PREFIX}API_PORT"), out)
        _say_ignored(env, out)
        bootstrap = args.bootstrap_servers or env.get(f"{ENV_PREFIX}BOOTSTRAP_SERVERS") or ""
        if not bootstrap:
            print("starting the embedded Kafka-protocol broker (Tansu)…", file=out, flush=True)
            self.broker = EmbeddedBroker().start()
            bootstrap = self.broker.bootstrap_servers
        flags: dict[str, Any] = {**_FIXED, "bootstrap_servers": bootstrap, "api_port": port}
        for key, value in (_TUNING | _TUNING_ENV).items():
            if f"{ENV_PREFIX}{key.upper()}" not in env:
                flags[key] = value
        self.settings = load_settings(None, env=env, flags=flags)
        ensure_topics(
            bootstrap, self.settings.layout, self.settings.kafka, [(REQUEST_TOPIC, PARTITIONS)]
        )
        base = f"http://127.0.0.1:{port}"
        print(
            f"starting bakemon (ingest, judge, api): API {base}, Kafka {bootstrap}…",
            file=out,
            flush=True,
        )
        self.service = Service(self.settings).start()
        return base, bootstrap

    def keeps_up(self, sent: int) -> bool:
        """Whether bakemon is at most MAX_AHEAD records behind ``sent`` in ingest and at most
        MAX_PARTIALS_BEHIND partials behind ingest in the judge."""
        svc = self.service
        if svc is None or svc.ingest is None:
            return sent <= MAX_AHEAD
        ing = svc.ingest.stats
        judged = ing.partials if svc.judge is None else svc.judge.stats.partials
        return sent - ing.records <= MAX_AHEAD and ing.partials - judged <= MAX_PARTIALS_BEHIND

    def stop(self) -> None:
        if self.traffic is not None:
            self.traffic.stop_event.set()
            self.traffic.join(timeout=10)
        if self.service is not None:
            with contextlib.suppress(Exception):
                self.service.stop()
        if self.broker is not None:
            self.broker.stop()


def create_bakes(client: ApiClient, policy: dict[str, Any] | None = None) -> None:
    """The demo's two bakes (checkout-v42, search-v8) under ``policy`` (default: its POLICY),
    counting from the start."""
    for svc, canary, baseline in (("checkout", "v42", "v41"), ("search", "v8", "v7")):
        client.post(
            "/v1/bakes",
            {
                "id": f"{svc}-{canary}",
                "service": svc,
                "canary": canary,
                "baseline": baseline,
                "policy": POLICY if policy is None else policy,
                "start": 0,
            },
        )


def _print_verdicts(docs: list[dict[str, Any]], out: Any) -> bool:
    """Print the final verdicts; whether each is the one the scenario expects."""
    print("\nfinal verdicts:", file=out)
    ok = True
    for d in docs:
        want = EXPECTED[d["service"]]
        good = d["status"] == want
        ok &= good
        print(
            f"  {d['id']}: {d['status']} ({'as expected' if good else f'expected {want}'}) — {d['reasons'][0]}",
            file=out,
        )
    return ok


def _watch(
    client: ApiClient, traffic: DemoTraffic, timeout_s: float, tty: bool, out: Any
) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout_s
    next_line = 0.0
    drawn = 0
    docs: list[dict[str, Any]] = []
    if tty:
        print(HEADER, file=out)
    while time.monotonic() < deadline:
        docs = sorted(client.get("/v1/bakes")["bakes"], key=lambda d: d["id"])
        if traffic.error is not None:
            msg = f"traffic generator failed: {traffic.error}"
            raise ClientError(msg, value=None)
        if tty:
            if drawn:
                out.write(f"\033[{drawn}F")
            for d in docs:
                out.write("\033[2K" + _row(d, True) + "\n")
            out.write(f"\033[2Kproduced {traffic.sent:,} records\n")
            out.flush()
            drawn = len(docs) + 1
        elif time.monotonic() >= next_line:
            for d in docs:
                print(_row(d, False), file=out, flush=True)
            next_line = time.monotonic() + 5.0
        if docs and all(d["decided"] for d in docs):
            if not tty:
                for d in docs:
                    print(_row(d, False), file=out, flush=True)
            return docs
        time.sleep(0.5)
    print(f"timed out after {timeout_s:.0f}s before both bakes decided", file=out)
    return docs
