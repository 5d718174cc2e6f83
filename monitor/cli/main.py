"""The ``bakemon`` command line.

Exit codes (:mod:`monitor.cli.exits`, :class:`monitor.verdict.ExitCode`, README "Exit codes"):
0 PROMOTE, 1 HALT, 2 INCONCLUSIVE, 3 still PENDING (replay), 4 usage or input error, 5 timeout,
6 bakemon unreachable, 7 lines rejected (``fields check``).

Start-up is lazy: only the command being run has its arguments (and its imports) built, so a
client command starts without numpy, Kafka or the verdict engine (``benchmarks/cli_startup.py``).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

import monitor.cli.exits as exits
from monitor import __version__
from monitor.errors import MonitorError

__all__ = ["COMMANDS", "build_parser", "main"]


def _err(msg: str) -> None:
    print(f"bakemon: error: {msg}", file=sys.stderr)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # argparse exits 2; our usage code is 4
        self.print_usage(sys.stderr)
        _err(message)
        raise SystemExit(exits.USAGE)


# -- run ---------------------------------------------------------------------------------------
def cmd_run(args: argparse.Namespace) -> int:
    import logging
    import os

    from monitor.config import ignored_env, load_settings
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
    for warning in ignored_env(os.environ):
        logging.getLogger("bakemon.config").warning(warning)
    return Service(settings).start().run_forever()


def _add_run(sub: Any) -> None:
    from monitor.cli.presets import PRESET_NAMES

    p = sub.add_parser(
        "run",
        help=COMMANDS["run"],
        description="Consume request logs from Kafka and judge bakes. Settings come from --config "
        "(TOML), then BAKEMON_* environment variables, then these flags.",
    )
    p.add_argument("--config", help="TOML settings file")
    p.add_argument(
        "--bootstrap-servers", help="Kafka bootstrap servers (BAKEMON_BOOTSTRAP_SERVERS)"
    )
    p.add_argument("--topics", help="request topics, comma-separated (BAKEMON_TOPICS)")
    p.add_argument(
        "--roles",
        help="roles to run, comma-separated, from ingest,judge,api (default all three; BAKEMON_ROLES)",
    )
    p.add_argument("--topic-prefix", help='prefix of bakemon\'s own topics (default "bakemon.")')
    p.add_argument("--block-offsets", help="offsets per exactly-once block (default 50000)")
    p.add_argument("--flush-interval", help="seconds between partial flushes (default 1)")
    p.add_argument("--partials-partitions", help="partitions of the partials topic (default 8)")
    p.add_argument(
        "--preset",
        choices=PRESET_NAMES,
        help="field-map preset, the base of the config's [fields] keys (BAKEMON_FIELDS_PRESET; "
        "default: the [fields] table's, else plain)",
    )
    p.add_argument("--log-level", help="debug, info, warning, error (default info)")
    p.add_argument("--log-format", help="text or json (default text)")
    p.add_argument("--api-host", help="HTTP API bind address (default 0.0.0.0)")
    p.add_argument("--api-port", help="HTTP API port (default 8080; 0 = any free port)")
    p.set_defaults(func=cmd_run)


def _add_replay(sub: Any) -> None:
    from monitor.cli.replay_cmd import add_replay_arguments

    add_replay_arguments(sub)


def _add_simulate(sub: Any) -> None:
    from monitor.cli.simulate import add_simulate_arguments, run_simulate

    sim = sub.add_parser("simulate", help=COMMANDS["simulate"])
    add_simulate_arguments(sim)
    sim.set_defaults(func=run_simulate)


def _add_client(sub: Any) -> None:
    from monitor.cli.client import add_client_commands

    add_client_commands(sub, _Parser)


def _add_fields(sub: Any) -> None:
    from monitor.cli.fields_check import add_fields_commands

    add_fields_commands(sub, _Parser)


def _add_demo(sub: Any) -> None:
    from monitor.cli.demo import DEMO_DESCRIPTION, add_demo_arguments, run_demo

    demo = sub.add_parser("demo", help=COMMANDS["demo"], description=DEMO_DESCRIPTION)
    add_demo_arguments(demo)
    demo.set_defaults(func=run_demo)


# -- entry point -------------------------------------------------------------------------------
# name → one-line help (``bakemon --help``); the full parser is built only for the command run.
COMMANDS: dict[str, str] = {
    "replay": "decide a bake offline from a JSON-lines request log",
    "simulate": "write a simulated request log (JSON lines)",
    "run": "run the streaming service (ingest, judge, api)",
    "bake": "create, inspect and wait for bakes (HTTP API client)",
    "alerts": "print or follow bakemon's alerts (HTTP API client)",
    "fields": "check a log's format against a field map (fields check LOG)",
    "demo": "the whole system on this machine: embedded broker, bakemon, simulated traffic",
}
_ADDERS: dict[str, Callable[[Any], None]] = {
    "replay": _add_replay,
    "simulate": _add_simulate,
    "run": _add_run,
    "bake": _add_client,
    "alerts": _add_client,
    "fields": _add_fields,
    "demo": _add_demo,
}


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The whole parser, or only the command ``only`` in full and the others by name and help
    (``only=""``: none in full, for ``bakemon --help``)."""
    parser = _Parser(
        prog="bakemon",
        description="Streaming bake monitor for deployments.",
        epilog=exits.EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"bakemon {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    if only is None:
        adders = list(dict.fromkeys(_ADDERS.values()))
    else:
        adders = [_ADDERS[only]] if only else []
    for adder in adders:
        adder(sub)
    for name, help_text in COMMANDS.items():
        if name not in sub.choices:
            sub.add_parser(name, help=help_text)
    return parser


def _command_of(argv: Sequence[str]) -> str:
    """The command named in ``argv`` ("" for none): the first word that is not an option."""
    for word in argv:
        if not word.startswith("-"):
            return word if word in COMMANDS else ""
    return ""


def _run(args: argparse.Namespace) -> int:
    try:
        code: int = args.func(args)
    except MonitorError as exc:
        _err(str(exc))
        from monitor.cli.client import ClientError

        unreachable = isinstance(exc, ClientError) and exc.retryable
        return exits.UNREACHABLE if unreachable else exits.USAGE
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        return 130
    return code


def main(argv: Sequence[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(_command_of(words))
    args = parser.parse_args(words)
    if getattr(args, "increment", 1) < 1:
        parser.error(f"--increment must be >= 1, got {args.increment}")
    skew = getattr(args, "max_clock_skew", 1.0)
    if not (skew > 0 and math.isfinite(skew)):
        parser.error(f"--max-clock-skew must be a positive number of seconds, got {skew}")
    return _run(args)


if __name__ == "__main__":
    raise SystemExit(main())
