"""The ``bakemon`` command line.

Exit codes of verdict commands (:class:`monitor.verdict.ExitCode`, README "Exit codes"):
0 PROMOTE, 1 HALT, 2 INCONCLUSIVE, 3 still PENDING (replay), 4 usage or input error,
5 timeout and 6 API unreachable (``bake wait``).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Sequence
from typing import Any

from monitor import __version__
from monitor.cli.replay_cmd import add_replay_arguments
from monitor.errors import MonitorError
from monitor.records.fieldmap import PRESETS
from monitor.verdict import ExitCode

__all__ = ["main"]


def _err(msg: str) -> None:
    print(f"bakemon: error: {msg}", file=sys.stderr)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # argparse exits 2; our usage code is 4
        self.print_usage(sys.stderr)
        _err(message)
        raise SystemExit(int(ExitCode.USAGE))


# -- run ---------------------------------------------------------------------------------------
def cmd_run(args: argparse.Namespace) -> int:
    from monitor.config import load_settings
    from monitor.service import Service, configure_logging

    settings = load_settings(
        args.config,
        flags={
            "bootstrap_servers": args.bootstrap_servers,
            "topics": args.topics,
            "roles": args.roles,
            "topic_prefix": args.topic_prefix,
            "block_offsets": args.block_offsets,
            "flush_interval_s": args.flush_interval,
            "partials_partitions": args.partials_partitions,
            "preset": args.preset,
            "log_level": args.log_level,
            "log_format": args.log_format,
            "api_host": args.api_host,
            "api_port": args.api_port,
        },
    )
    configure_logging(settings.log_level, settings.log_format)
    return Service(settings).start().run_forever()


def _add_run(sub: Any) -> None:
    p = sub.add_parser(
        "run",
        help="run the streaming service (ingest, judge)",
        description="Consume request logs from Kafka and judge bakes. Settings come from --config "
        "(TOML), then BAKEMON_* environment variables, then these flags.",
    )
    p.add_argument("--config", help="TOML settings file")
    p.add_argument(
        "--bootstrap-servers", help="Kafka bootstrap servers (BAKEMON_BOOTSTRAP_SERVERS)"
    )
    p.add_argument("--topics", help="request topics, comma-separated (BAKEMON_TOPICS)")
    p.add_argument("--roles", help="roles to run, comma-separated: ingest,judge (BAKEMON_ROLES)")
    p.add_argument("--topic-prefix", help='prefix of bakemon\'s own topics (default "bakemon.")')
    p.add_argument("--block-offsets", help="offsets per exactly-once block (default 50000)")
    p.add_argument("--flush-interval", help="seconds between partial flushes (default 1)")
    p.add_argument("--partials-partitions", help="partitions of the partials topic (default 8)")
    p.add_argument("--preset", choices=sorted(PRESETS), help="field-map preset (default plain)")
    p.add_argument("--log-level", help="debug, info, warning, error (default info)")
    p.add_argument("--log-format", help="text or json (default text)")
    p.add_argument("--api-host", help="HTTP API bind address (default 0.0.0.0)")
    p.add_argument("--api-port", help="HTTP API port (default 8080; 0 = any free port)")
    p.set_defaults(func=cmd_run)


# -- entry point -------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="bakemon", description="Streaming bake monitor for deployments.")
    parser.add_argument("--version", action="version", version=f"bakemon {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    add_replay_arguments(sub)
    from monitor.cli.simulate import add_simulate_arguments, run_simulate

    sim = sub.add_parser("simulate", help="write a simulated request log (JSON lines)")
    add_simulate_arguments(sim)
    sim.set_defaults(func=run_simulate)
    _add_run(sub)
    from monitor.cli.client import add_client_commands

    add_client_commands(sub, _Parser)
    from monitor.cli.demo import add_demo_arguments, run_demo

    demo = sub.add_parser(
        "demo",
        help="the whole system on this machine: embedded broker, bakemon, simulated traffic",
        description="Start an embedded broker and bakemon, create two bakes through the API, "
        "drive simulated traffic (checkout: regressed canary, search: healthy), show live progress "
        "and exit 0 when the verdicts are HALT and PROMOTE.",
    )
    add_demo_arguments(demo)
    demo.set_defaults(func=run_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "increment", 1) < 1:
        parser.error(f"--increment must be >= 1, got {args.increment}")
    skew = getattr(args, "max_clock_skew", 1.0)
    if not (skew > 0 and math.isfinite(skew)):
        parser.error(f"--max-clock-skew must be a positive number of seconds, got {skew}")
    try:
        code: int = args.func(args)
    except MonitorError as exc:
        _err(str(exc))
        return int(ExitCode.USAGE)
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    raise SystemExit(main())
