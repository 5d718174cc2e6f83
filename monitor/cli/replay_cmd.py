"""``bakemon replay``: decide a bake offline from a JSON-lines request log."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any, TextIO

import orjson

from monitor.cli.presets import PRESET_NAMES
from monitor.cli.replay_outputs import add_output_arguments, write_outputs
from monitor.config import field_map_from, load_toml
from monitor.errors import ConfigError

# The replay machinery (numpy, detectors) is imported when a replay runs, not when the CLI
# starts (README "The client": client commands start without it).
if TYPE_CHECKING:
    from monitor.bakes.spec import BakeSpec
    from monitor.records.fieldmap import FieldMap
    from monitor.replay import ReplayResult, TimelineRow

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
    for metric in ("errors", "latency"):
        ratio = _tolerated_ratio(args, metric)
        if ratio is not None:
            # 1.2 - 1.0 is 0.19999999999999996 in binary floating point: the document would
            # show that; 12 decimals keep every ratio a flag can mean and drop the artefact.
            policy.setdefault(metric, {})["tol"] = round(ratio - 1.0, 12)
    if args.no_latency:
        policy.setdefault("latency", {})["enabled"] = False
    if args.on_inconclusive is not None:
        policy["on_inconclusive"] = args.on_inconclusive
    return policy


# metric → (ratio flag, its old name, what the ratio compares)
_RATIO_FLAGS = {
    "errors": ("--error-ratio", "--error-tol", "error rate"),
    "latency": ("--latency-ratio", "--latency-tol", "latency at each quantile"),
}


def _tolerated_ratio(args: argparse.Namespace, metric: str) -> float | None:
    """The canary/baseline ratio tolerated for ``metric``: the TOML's ``tol`` is this minus 1."""
    flag, old, what = _RATIO_FLAGS[metric]
    new_value = getattr(args, flag[2:].replace("-", "_"), None)
    old_value = getattr(args, old[2:].replace("-", "_"), None)
    if new_value is not None and old_value is not None:
        msg = f"give {flag} or its old name {old}, not both"
        raise ConfigError(msg, value=old_value)
    if old_value is not None:
        if old_value >= 1.0:
            print(
                f"bakemon: {old} is deprecated: use {flag} (the same ratio); {old} "
                f'{old_value:g} is read as the ratio {old_value:g}, the TOML\'s "{metric}.tol" = '
                f"{old_value - 1:g}",
                file=sys.stderr,
            )
        flag, new_value = old, old_value
    if new_value is not None and not new_value >= 1.0:
        msg = (
            f"{flag} is a ratio of at least 1: {flag} 1.2 tolerates a canary {what} up to 1.2x "
            f"the baseline's (the TOML's \"{metric}.tol\" = 0.2), got {new_value:g}"
        )
        raise ConfigError(msg, value=new_value)
    return None if new_value is None else float(new_value)


def _bakes_and_fields(args: argparse.Namespace) -> tuple[list[BakeSpec], FieldMap]:
    from monitor.bakes.spec import BakeSpec, default_bake_id

    fields_table: dict[str, Any] | None = None
    bakes: list[BakeSpec] = []
    if args.config:
        cfg = load_toml(args.config)
        unknown = sorted(set(cfg) - {"bake", "fields"})
        if unknown:
            msg = f'unknown top-level key(s) {unknown} in "{args.config}"; valid: bake, fields'
            raise ConfigError(msg, value=unknown)
        fields_table = cfg.get("fields")
        raw = cfg.get("bake", [])
        for b in raw if isinstance(raw, list) else [raw]:
            bakes.append(BakeSpec.from_dict(b))
    if args.service or args.canary or args.baseline:
        missing = [f"--{k}" for k in ("service", "canary", "baseline") if not getattr(args, k)]
        if missing:
            msg = f"a bake from flags needs {', '.join(missing)}"
            raise ConfigError(msg, value=missing)
        spec: dict[str, Any] = {
            "id": args.id or default_bake_id(args.service, args.canary),
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
    # --preset is the base and the file's [fields] keys override it (README "Log formats").
    return bakes, field_map_from(fields_table, args.preset)


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
        from monitor.verdict import iso

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
    from monitor.bakes.spec import Registry
    from monitor.replay import open_log, replay_decoded
    from monitor.replay_reader import read_decoded
    from monitor.verdict import exit_code_of, interpret

    bakes, field_map = _bakes_and_fields(args)
    registry = Registry(bakes)
    printer = None if args.json or args.quiet else _TimelinePrinter(sys.stdout, sys.stdout.isatty())
    with open_log(args.file) as stream:
        result = replay_decoded(
            read_decoded(stream, args.increment, field_map, args.max_clock_skew),
            registry,
            on_row=printer,
        )
    _warn_about_input(result)
    docs = [v.document() for v in result.verdicts.values()]
    write_outputs(args, result, docs)
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
    from monitor.records.clock import DEFAULT_MAX_CLOCK_SKEW_S
    from monitor.replay import DEFAULT_INCREMENT_RECORDS

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
        choices=PRESET_NAMES,
        help="field-map preset, the base of the --config file's [fields] keys (default: the "
        "[fields] table's preset, else plain)",
    )
    p.add_argument(
        "--id", help="bake id (default SERVICE-CANARY, characters an id cannot hold as -)"
    )
    p.add_argument("--service", help="service name of the bake")
    p.add_argument("--canary", help="canary version(s), comma-separated")
    p.add_argument("--baseline", help="baseline version(s), comma-separated")
    p.add_argument("--start", type=float, help="bake start, epoch seconds (default: all records)")
    _add_policy_flags(p)
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
    add_output_arguments(p)
    p.set_defaults(func=cmd_replay)


def _add_policy_flags(p: argparse.ArgumentParser) -> None:
    """The flags of a bake's policy: budget, request bounds, tolerated ratios."""
    p.add_argument("--alpha", type=float, help="false-HALT budget (default 0.01)")
    p.add_argument(
        "--min-requests", type=int, help="min canary requests before PROMOTE (default 10000)"
    )
    p.add_argument(
        "--max-requests", type=int, help="max canary requests before INCONCLUSIVE (default 500000)"
    )
    p.add_argument(
        "--error-ratio",
        type=float,
        metavar="R",
        help='tolerated canary/baseline error-rate ratio, >= 1 (default 1.2; the TOML\'s "errors.tol" '
        "is R - 1)",
    )
    p.add_argument(
        "--latency-ratio",
        type=float,
        metavar="R",
        help="tolerated canary/baseline latency ratio at each quantile, in [1, 2] (default 1.1; "
        'the TOML\'s "latency.tol" is R - 1)',
    )
    p.add_argument("--error-tol", type=float, metavar="R", help="deprecated: --error-ratio")
    p.add_argument("--latency-tol", type=float, metavar="R", help="deprecated: --latency-ratio")
