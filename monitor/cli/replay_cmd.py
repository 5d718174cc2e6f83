"""``bakemon replay``: decide a bake offline from a JSON-lines request log."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, TextIO

import orjson

from monitor.bakes.spec import BakeSpec, Registry
from monitor.config import load_toml
from monitor.errors import ConfigError, InputError
from monitor.records.clock import DEFAULT_MAX_CLOCK_SKEW_S
from monitor.records.fieldmap import PRESETS, FieldMap
from monitor.replay import (
    DEFAULT_INCREMENT_RECORDS,
    ReplayResult,
    TimelineRow,
    iter_line_batches,
    open_log,
    replay,
)
from monitor.verdict import exit_code_of, interpret, iso

__all__ = ["REPLAY_EXIT_CODES", "add_replay_arguments", "cmd_replay"]

REPLAY_EXIT_CODES = """exit codes (the worst bake's):
  0  PROMOTE (every bake)
  1  HALT
  2  INCONCLUSIVE (whatever its resolution)
  3  still PENDING at the end of the log
  4  usage or input error"""
_COLOURS = {
    "PROMOTE": "\033[32m",
    "HALT": "\033[31m",
    "INCONCLUSIVE": "\033[33m",
    "PENDING": "\033[36m",
}
_RESET = "\033[0m"


# -- replay ------------------------------------------------------------------------------------
def _policy_from_flags(args: argparse.Namespace) -> dict[str, Any]:
    policy: dict[str, Any] = {}
    if args.alpha is not None:
        policy["alpha"] = args.alpha
    if args.min_requests is not None:
        policy["min_canary_requests"] = args.min_requests
    if args.max_requests is not None:
        policy["max_canary_requests"] = args.max_requests
    if args.error_tol is not None:
        policy.setdefault("errors", {})["tol"] = args.error_tol - 1.0
    if args.latency_tol is not None:
        policy.setdefault("latency", {})["tol"] = args.latency_tol - 1.0
    if args.no_latency:
        policy.setdefault("latency", {})["enabled"] = False
    if args.on_inconclusive is not None:
        policy["on_inconclusive"] = args.on_inconclusive
    return policy


def _bakes_and_fields(args: argparse.Namespace) -> tuple[list[BakeSpec], FieldMap]:
    field_map = PRESETS[args.preset]
    bakes: list[BakeSpec] = []
    if args.config:
        cfg = load_toml(args.config)
        unknown = sorted(set(cfg) - {"bake", "fields"})
        if unknown:
            msg = f'unknown top-level key(s) {unknown} in "{args.config}"; valid: bake, fields'
            raise ConfigError(msg, value=unknown)
        if "fields" in cfg:
            field_map = FieldMap.from_dict(cfg["fields"])
        raw = cfg.get("bake", [])
        for b in raw if isinstance(raw, list) else [raw]:
            bakes.append(BakeSpec.from_dict(b))
    if args.service or args.canary or args.baseline:
        missing = [f"--{k}" for k in ("service", "canary", "baseline") if not getattr(args, k)]
        if missing:
            msg = f"a bake from flags needs {', '.join(missing)}"
            raise ConfigError(msg, value=missing)
        spec: dict[str, Any] = {
            "id": args.id or f"{args.service}-{args.canary}",
            "service": args.service,
            "canary": args.canary.split(","),
            "baseline": args.baseline.split(","),
            "policy": _policy_from_flags(args),
        }
        if args.start is not None:
            spec["start"] = args.start
        bakes.append(BakeSpec.from_dict(spec))
    if not bakes:
        msg = (
            "no bake given: use --service/--canary/--baseline or --config FILE with [[bake]] tables"
        )
        raise ConfigError(msg, value=None)
    return bakes, field_map


def _fmt_rate(x: object) -> str:
    return "-" if not isinstance(x, float) else f"{100 * x:.2f}%"


def _fmt_s(x: object) -> str:
    return "-" if not isinstance(x, float) else f"{1000 * x:.0f}ms"


class _TimelinePrinter:
    HEADER = f"{'event time':<24} {'bake':<18} {'canary':>9} {'baseline':>9} {'err c/b':>15} {'p99 c/b':>13} {'status':<12} reason"

    def __init__(self, out: TextIO, colour: bool) -> None:
        self.out = out
        self.colour = colour
        self.started = False

    def __call__(self, row: TimelineRow) -> None:
        if not self.started:
            print(self.HEADER, file=self.out)
            self.started = True
        m: Any = row.document.get("metrics", {})
        err = m.get("error_rate", {})
        p99 = m.get("latency_p99_seconds", {})
        status = row.status
        if self.colour:
            status = f"{_COLOURS.get(row.status, '')}{row.status:<12}{_RESET}"
        reason = row.reason if len(row.reason) <= 90 else row.reason[:87] + "..."
        print(
            f"{iso(row.event_time_s) or '-':<24} {row.bake[:18]:<18} {row.canary_requests:>9,} "
            f"{row.baseline_requests:>9,} "
            f"{_fmt_rate(err.get('canary')) + '/' + _fmt_rate(err.get('baseline')):>15} "
            f"{_fmt_s(p99.get('canary')) + '/' + _fmt_s(p99.get('baseline')):>13} {status:<12} {reason}",
            file=self.out,
        )


def cmd_replay(args: argparse.Namespace) -> int:
    bakes, field_map = _bakes_and_fields(args)
    registry = Registry(bakes)
    printer = None if args.json or args.quiet else _TimelinePrinter(sys.stdout, sys.stdout.isatty())
    with open_log(args.file) as stream:
        result = replay(
            iter_line_batches(stream, args.increment),
            registry,
            field_map,
            on_row=printer,
            max_clock_skew_s=args.max_clock_skew,
        )
    _warn_about_input(result)
    docs = [v.document() for v in result.verdicts.values()]
    if args.timeline:
        timelines = [t.document(bid) for bid, t in result.timelines.items()]
        _write(
            args.timeline,
            orjson.dumps(timelines[0] if len(timelines) == 1 else {"bakes": timelines}),
        )
    if args.json:
        sys.stdout.buffer.write(
            orjson.dumps(docs[0] if len(docs) == 1 else docs, option=orjson.OPT_INDENT_2)
        )
        sys.stdout.buffer.write(b"\n")
    else:
        for doc in docs:
            reading = interpret(doc)
            res = f" (resolution {reading.resolution})" if reading.resolution else ""
            print(f"{doc['id']}: {doc['status']}{res}: {'; '.join(doc['reasons'])}")
    return int(exit_code_of(interpret(d) for d in docs))


def _write(path: str, data: bytes) -> None:
    """Write an output file, or stop with a CLI message (exit 2) naming it."""
    try:
        Path(path).write_bytes(data)
    except OSError as exc:
        msg = f"cannot write {path}: {exc.strerror or exc}"
        raise InputError(msg, value=path) from exc
    print(f"wrote {path} ({len(data):,} bytes)", file=sys.stderr)


def _warn_about_input(result: ReplayResult) -> None:
    rejected = sum(result.rejected.values())
    if rejected:
        by_reason = ", ".join(f"{r}={n:,}" for r, n in result.rejected.most_common())
        print(f"rejected {rejected:,} of {result.records:,} records ({by_reason})", file=sys.stderr)
        for ex in result.rejection_examples:
            print(f"  {ex}", file=sys.stderr)
    if result.records == 0:
        print("warning: the log holds no records", file=sys.stderr)
    elif result.untagged == result.records - rejected:
        print(
            "warning: no record matched any bake (check --service/--canary/--baseline and the field map)",
            file=sys.stderr,
        )


def add_replay_arguments(sub: Any) -> None:
    p = sub.add_parser(
        "replay",
        help="decide a bake offline from a JSON-lines request log",
        description="Run tagging, summaries, detectors and the verdict over a JSON-lines log "
        "(optionally gzip) in increments, print the verdict timeline, and exit "
        "0 PROMOTE, 1 HALT, 2 INCONCLUSIVE, 3 PENDING, 4 usage or input error.",
        epilog=REPLAY_EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("file", help='log file (.jsonl or .jsonl.gz; "-" for stdin)')
    p.add_argument("--config", help="TOML file with [[bake]] tables and an optional [fields] table")
    p.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        default="plain",
        help="field-map preset (default plain)",
    )
    p.add_argument("--id", help="bake id (default SERVICE-CANARY)")
    p.add_argument("--service", help="service name of the bake")
    p.add_argument("--canary", help="canary version(s), comma-separated")
    p.add_argument("--baseline", help="baseline version(s), comma-separated")
    p.add_argument("--start", type=float, help="bake start, epoch seconds (default: all records)")
    p.add_argument("--alpha", type=float, help="false-HALT budget (default 0.01)")
    p.add_argument(
        "--min-requests", type=int, help="min canary requests before PROMOTE (default 10000)"
    )
    p.add_argument(
        "--max-requests", type=int, help="max canary requests before INCONCLUSIVE (default 500000)"
    )
    p.add_argument("--error-tol", type=float, help="tolerated error-rate ratio (default 1.2)")
    p.add_argument(
        "--latency-tol", type=float, help="tolerated slowdown ratio at each quantile (default 1.1)"
    )
    p.add_argument("--no-latency", action="store_true", help="gate on errors only")
    p.add_argument(
        "--on-inconclusive",
        choices=["halt", "promote"],
        help="resolution of INCONCLUSIVE (default halt)",
    )
    p.add_argument(
        "--increment",
        type=int,
        default=DEFAULT_INCREMENT_RECORDS,
        help=f"records per increment (default {DEFAULT_INCREMENT_RECORDS})",
    )
    p.add_argument(
        "--max-clock-skew",
        type=float,
        default=DEFAULT_MAX_CLOCK_SKEW_S,
        metavar="S",
        help="reject records more than S seconds ahead of the log's clock as bad_time "
        f"(default {DEFAULT_MAX_CLOCK_SKEW_S:g})",
    )
    p.add_argument("--json", action="store_true", help="print the final verdict document as JSON")
    p.add_argument("--quiet", action="store_true", help="no timeline, only the final verdict line")
    p.add_argument(
        "--timeline",
        metavar="FILE",
        help="write the evidence over time as JSON (what GET /v1/bakes/{id}/timeline answers)",
    )
    p.set_defaults(func=cmd_replay)
