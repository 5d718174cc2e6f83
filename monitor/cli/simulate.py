"""``bakemon simulate``: command-line front end of the :mod:`bakesim` traffic simulator."""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import sys
import time
from datetime import UTC, datetime
from typing import Any, Final

import numpy as np

from bakesim import (
    SCENARIO_NAMES,
    Columns,
    Regression,
    Scenario,
    SimulationError,
    iter_chunks,
    scenario_preset,
    write_jsonl,
    write_lines,
)
from bakesim.model import DEFAULT_START_S
from bakesim.validation import require
from monitor.cli.durations import parse_duration_s
from monitor.errors import ConfigError

__all__ = ["add_simulate_arguments", "run_simulate"]

EXIT_OK: Final = 0
EXIT_USAGE: Final = 4
DEFAULT_CLI_DURATION_S: Final = 1200.0  # 20 minutes of event time
_PROGRESS_INTERVAL_S: Final = 0.5
_NO_REGRESSION: Final = Regression()


def _parse_number(text: str, flag: str, kind: type[int] | type[float] = float) -> float:
    try:
        value = kind(text.strip())
    except ValueError:
        word = "an integer" if kind is int else "a number"
        msg = f'{flag} must be {word}, got "{text}"'
        raise ConfigError(msg, value=text) from None
    if not math.isfinite(value):
        msg = f'{flag} must be finite, got "{text}"'
        raise ConfigError(msg, value=text)
    return value


# flag, metavar, what it sets (a scenario / service / regression field), value kind, help
_OVERRIDES: Final = (
    ("--rps", "R", "scenario", "mean_rps", "float", "fleet mean requests per second"),
    ("--service", "NAME", "service", "name", "str", "service name"),
    ("--baseline-version", "V", "service", "baseline_version", "str", "baseline version label"),
    ("--canary-version", "V", "service", "canary_version", "str", "canary version label"),
    ("--canary-share", "F", "service", "canary_share", "float", "share of requests on the canary"),
    ("--error-rate", "P", "service", "base_error_rate", "float", "baseline error rate, all routes"),
    ("--error-multiplier", "M", "regression", "error_multiplier", "float", "canary errors x M"),
    ("--latency-multiplier", "M", "regression", "latency_multiplier", "float", "latency x M"),
    ("--slow-tail-fraction", "F", "regression", "slow_tail_fraction", "float", "share made slow"),
    ("--slow-tail-ms", "MS", "regression", "slow_tail_add_s", "ms", "ms added to those"),
    ("--regression-start", "SPAN", "regression", "start_after_s", "span", "starts after SPAN"),
)  # fmt: skip


def add_simulate_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``bakemon simulate`` options; values are checked by :func:`run_simulate`."""
    add = parser.add_argument
    add("--out", required=True, metavar="FILE", help='JSON lines; ".gz" compresses, "-" is stdout')
    add(
        "--scenario",
        default="aa",
        metavar="NAME",
        help=f"{', '.join(SCENARIO_NAMES)} (default: aa)",
    )
    add("--requests", metavar="N", help="number of records (stops at this or --duration, first)")
    add(
        "--duration",
        metavar="SPAN",
        help="event time: 90s, 20m, 2h (default: 20m without --requests)",
    )
    add("--seed", default="0", metavar="INT", help="random seed (default: 0)")
    add(
        "--start",
        metavar="TIME",
        help='first record\'s event time: "now" (to feed a running bakemon, whose bakes count '
        "from their creation), an ISO 8601 time or epoch seconds (default: "
        f"{_iso(DEFAULT_START_S)}, so a seed always gives the same file)",
    )
    for flag, metavar, _, _, _, text in _OVERRIDES:
        add(flag, metavar=metavar, help=text)


def _scenario_from_args(args: argparse.Namespace) -> tuple[Scenario, float | None, int | None]:
    seed = _parse_number(str(args.seed), "--seed", int)
    scenario = scenario_preset(str(args.scenario), seed=int(seed))
    total = None if args.requests is None else int(_parse_number(args.requests, "--requests", int))
    if total is not None:
        require("--requests", total, 1, integer=True)
    duration_s = (
        None if args.duration is None else parse_duration_s(args.duration, name="--duration")
    )
    if duration_s is not None:
        require("--duration", duration_s, 0, open_lo=True)
    elif total is None:
        duration_s = DEFAULT_CLI_DURATION_S
    fields: dict[str, dict[str, Any]] = {"scenario": {}, "service": {}, "regression": {}}
    for flag, _, target, field, kind, _ in _OVERRIDES:
        text = getattr(args, flag[2:].replace("-", "_"))
        if text is None:
            continue
        text = str(text)
        if kind == "span":
            fields[target][field] = parse_duration_s(text, name=flag)
        elif kind == "str":
            fields[target][field] = text
        else:
            fields[target][field] = _parse_number(text, flag) / (1e3 if kind == "ms" else 1)
    services = []
    for spec in scenario.services:
        if fields["regression"]:
            regression = dataclasses.replace(
                spec.regression or _NO_REGRESSION, **fields["regression"]
            )
            spec = dataclasses.replace(spec, regression=regression)
        services.append(dataclasses.replace(spec, **fields["service"]))
    scenario = dataclasses.replace(scenario, services=tuple(services), **fields["scenario"])
    if args.start is not None:
        scenario = dataclasses.replace(scenario, start_s=_parse_start(str(args.start)))
    return scenario, duration_s, total


def _parse_start(text: str) -> float:
    """``--start``: "now", an ISO 8601 time (Z or an offset; none means UTC) or epoch seconds."""
    if text.strip().lower() == "now":
        return float(int(time.time()))
    try:
        epoch = float(text)
    except ValueError:
        pass
    else:
        if not math.isfinite(epoch) or epoch < 0:
            msg = f"--start must be a time after 1970, got {text}"
            raise ConfigError(msg, value=text)
        return epoch
    try:
        t = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        msg = f'--start must be "now", an ISO 8601 time or epoch seconds, got "{text}"'
        raise ConfigError(msg, value=text) from None
    return (t if t.tzinfo else t.replace(tzinfo=UTC)).timestamp()


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class _Tally:
    """Counts for the summary line, and progress on a terminal (the CLI may read the clock)."""

    def __init__(self, start_s: float, progress: bool) -> None:
        self.start_s, self.progress = start_s, progress
        self.records = self.canary = 0
        self.first_ts = self.last_ts = math.nan
        self._shown_at = time.monotonic()

    def __call__(self, cols: Columns) -> None:
        if len(cols) == 0:
            return
        if self.records == 0:
            self.first_ts = float(cols.ts[0])
        self.records += len(cols)
        self.canary += int(np.count_nonzero(cols.canary))
        self.last_ts = float(cols.ts[-1])
        if self.progress and time.monotonic() - self._shown_at >= _PROGRESS_INTERVAL_S:
            self._shown_at = time.monotonic()
            span = self.last_ts - self.start_s
            print(f"\rsimulate: {self.records:,} records, +{span:,.0f} s", end="", file=sys.stderr)

    def summary(self, out: str) -> str:
        head = f"simulate: wrote {self.records:,} records to {'stdout' if out == '-' else out}"
        if self.records == 0:
            return head
        return (
            f"{head} (canary {self.canary:,}, baseline {self.records - self.canary:,}; event time "
            f"{_iso(self.first_ts)} .. {_iso(self.last_ts)}, {self.last_ts - self.first_ts:,.1f} s)"
        )


def run_simulate(args: argparse.Namespace) -> int:
    """``bakemon simulate``: write a scenario's records; 0 on success, 4 on a usage error."""
    try:
        scenario, duration_s, total = _scenario_from_args(args)
    except (ConfigError, SimulationError) as exc:
        print(f"bakemon simulate: {exc}", file=sys.stderr)
        return EXIT_USAGE
    tally = _Tally(scenario.start_s, progress=sys.stderr.isatty())
    out = str(args.out)
    try:
        if out == "-":
            chunks = iter_chunks(scenario, duration_s=duration_s, total_requests=total)
            write_lines(sys.stdout.buffer, chunks, tally)
            sys.stdout.buffer.flush()
        else:
            write_jsonl(out, scenario, duration_s=duration_s, total_requests=total, on_chunk=tally)
    except BrokenPipeError:
        # The reader went away (`| head`): it has what it wanted; keep exit-time flush quiet.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except OSError as exc:
        print(f'bakemon simulate: cannot write "{out}": {exc.strerror or exc}', file=sys.stderr)
        return EXIT_USAGE
    if tally.progress:
        print(file=sys.stderr)
    print(tally.summary(out), file=sys.stderr)
    return EXIT_OK
