"""``bakemon fields check LOG``: is this log read the way its owner thinks?

Decodes the first ``--lines`` lines with the field map the service would use (``--config``'s
``[fields]`` on top of ``--preset`` or ``BAKEMON_FIELDS_PRESET``), prints every record as
parsed, the rejected lines with their reasons, and plausibility warnings: latencies that look
like the wrong unit, event times far from now, a version field with one value, no error seen,
no status. Exit 0 when no line was rejected (warnings are advice), 7 when some were, 4 for a
bad config or an unreadable file.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import logging
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any, TextIO

import monitor.cli.exits as exits
from monitor.cli.presets import PRESET_NAMES
from monitor.config import FIELDS_PRESET_ENV, field_map_from, load_toml

if TYPE_CHECKING:
    from monitor.records.columns import DecodeResult, RecordBatch
    from monitor.records.fieldmap import FieldMap

__all__ = ["DEFAULT_LINES", "add_fields_commands", "check_lines", "cmd_fields_check"]

DEFAULT_LINES = 20
FAR_FROM_NOW_S = 86_400.0  # event times further than a day from now: an old sample, or a unit
UNIT_MIN_VALUES = 3  # a short sample is all fields check has
_CELL = 16


@dataclass(frozen=True)
class Report:
    """What ``fields check`` found in the lines it read."""

    lines: int
    rows: list[str]
    rejections: list[str]
    warnings: list[str]


def _read_lines(stream: IO[bytes], limit: int) -> Iterator[tuple[int, bytes]]:
    """(line number, line) of the first ``limit`` non-empty lines."""
    taken = 0
    for number, raw in enumerate(stream, 1):
        line = raw.strip()
        if line:
            yield number, line
            taken += 1
            if taken >= limit:
                return


def _iso(epoch_s: float) -> str:
    try:
        when = dt.datetime.fromtimestamp(epoch_s, tz=dt.UTC)
    except (OverflowError, OSError, ValueError):
        return f"{epoch_s:g}"
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _cut(text: str, width: int = _CELL) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


HEADER = (
    f"{'line':>5}  {'time':<24}  {'service':<{_CELL}}  {'version':<{_CELL}}  {'status':>6}  "
    f"{'error':<5}  {'latency':>10}  segments"
)


def _rows(batch: RecordBatch, numbers: list[int]) -> list[str]:
    """One line per accepted record, as parsed."""
    services, versions = batch.service.values(), batch.version.values()
    cohorts = None if batch.cohort is None else batch.cohort.values()
    segments = {name: col.values() for name, col in batch.segments.items()}
    rows = []
    for i in range(batch.n):
        version = str(versions[i]) or (f"({cohorts[i]})" if cohorts is not None else "")
        status = int(batch.status[i])
        segs = " ".join(f"{k}={v[i]}" for k, v in segments.items() if v[i])
        rows.append(
            f"{numbers[int(batch.index[i])]:>5}  {_iso(float(batch.time_s[i])):<24}  "
            f"{_cut(str(services[i])):<{_CELL}}  {_cut(version or '-'):<{_CELL}}  "
            f"{status if status >= 0 else '-':>6}  {'yes' if batch.error[i] else 'no':<5}  "
            f"{batch.latency_s[i] * 1000:>8.3f}ms  {segs or '-'}"
        )
    return rows


def _warnings(batch: RecordBatch, fm: FieldMap, now_s: float) -> list[str]:
    """Plausibility warnings about the accepted records (empty when they look right)."""
    import numpy as np

    from monitor.records.convert import latency_unit_hint
    from monitor.records.fieldmap import UNIT_DIVISOR

    out: list[str] = []
    if batch.n == 0:
        return out
    divisor = UNIT_DIVISOR[fm.latency_unit]
    hint = latency_unit_hint(batch.latency_s, fm.latency_unit, divisor, min_values=UNIT_MIN_VALUES)
    if hint is not None:
        out.append(f'latency field "{fm.latency}": {hint}')
    offset_s = float(np.median(batch.time_s)) - now_s
    if abs(offset_s) > FAR_FROM_NOW_S:
        when = "ahead of" if offset_s > 0 else "behind"
        out.append(
            f'event times ("{fm.time}", read in {fm.time_unit}) are {abs(offset_s) / 86_400:,.1f} '
            f"days {when} now: fine for an old sample, else check time_unit"
        )
    versions = {v for v in batch.version.values() if v}
    if fm.version is not None and len(versions) == 1:
        out.append(
            f'version field "{fm.version}" has one value ("{versions.pop()}") in {batch.n} '
            "records: a bake compares two versions serving at the same time"
        )
    if fm.status is not None and not (batch.status >= 0).any():
        out.append(f'no record has a status in "{fm.status}": errors come only from "{fm.error}"')
    if not batch.error.any():
        rule = f"status >= {fm.error_status_min}"
        if fm.error_statuses:
            rule += f" or in {sorted(fm.error_statuses)}"
        out.append(
            f"no error in {batch.n} records ({rule}): fine for a healthy sample, else check "
            '"status", "error_status_min" and "error_statuses"'
        )
    return out


@contextlib.contextmanager
def _quiet_decoder() -> Iterator[None]:
    """The decoder's log lines (a unit warning) held back: this command reports them itself."""
    quiet = logging.NullHandler()
    records_log = logging.getLogger("bakemon.records")
    records_log.addHandler(quiet)
    try:
        yield
    finally:
        records_log.removeHandler(quiet)


def check_lines(lines: list[tuple[int, bytes]], fm: FieldMap, now_s: float) -> Report:
    """Decode ``lines`` with ``fm``: the parsed rows, the rejections and the warnings."""
    from monitor.records.decode import decode_batch

    numbers = [n for n, _ in lines]
    with _quiet_decoder():  # the decoder's own unit warning: reported below instead
        result: DecodeResult = decode_batch([raw for _, raw in lines], fm)
    rejections = [
        f"line {numbers[r.index]}: {r.reason}: {r.detail or _cut(r.raw.decode(errors='replace'), 80)}"
        for r in result.rejections
    ]
    return Report(
        len(lines), _rows(result.batch, numbers), rejections, _warnings(result.batch, fm, now_s)
    )


def _field_map(args: argparse.Namespace) -> tuple[FieldMap, str]:
    """The field map to check with, and where it came from (for the header)."""
    table = None
    if args.config:
        table = load_toml(args.config).get("fields")
    preset = args.preset or os.environ.get(FIELDS_PRESET_ENV) or None
    fm = field_map_from(table, preset)
    base = f'preset "{preset}"' if preset else ""
    if table is not None:
        base = " + ".join(p for p in (base, f'[fields] of "{args.config}"') if p)
    return fm, base or 'preset "plain"'


def _describe(fm: FieldMap) -> str:
    parts = [f'time "{fm.time}" ({fm.time_unit})', f'latency "{fm.latency}" ({fm.latency_unit})']
    for name in ("service", "version", "cohort", "bake", "status", "error"):
        if getattr(fm, name):
            parts.append(f'{name} "{getattr(fm, name)}"')
    if fm.service_default:
        parts.append(f'service_default "{fm.service_default}"')
    parts += [f'segments.{k} "{v}"' for k, v in fm.segments.items()]
    return ", ".join(parts)


def _print(report: Report, out: TextIO) -> None:
    print(HEADER, file=out)
    for row in report.rows:
        print(row, file=out)
    if report.rejections:
        print(f"\nrejected {len(report.rejections)} of {report.lines} lines:", file=out)
        for line in report.rejections:
            print(f"  {line}", file=out)
    if report.warnings:
        print("\nwarnings:", file=out)
        for line in report.warnings:
            print(f"  - {line}", file=out)
    verdict = "some lines were rejected" if report.rejections else "every line decoded"
    print(f"\n{report.lines} lines read: {verdict}, {len(report.warnings)} warning(s)", file=out)


def cmd_fields_check(args: argparse.Namespace) -> int:
    from monitor.errors import ConfigError, InputError
    from monitor.replay import open_log

    if args.lines < 1:
        msg = f"--lines must be >= 1, got {args.lines}"
        raise ConfigError(msg, value=args.lines)
    fm, source = _field_map(args)
    try:
        with open_log(args.log) as stream:
            lines = list(_read_lines(stream, args.lines))
    except (OSError, EOFError) as exc:  # a directory, a truncated gzip file, no permission
        msg = f'cannot read log "{args.log}": {exc}'
        raise InputError(msg, value=args.log) from None
    out = sys.stdout
    print(f"field map: {source}: {_describe(fm)}", file=out)
    if not lines:
        print(f'"{args.log}" holds no lines', file=out)
        return exits.FIELDS_REJECTED
    report = check_lines(lines, fm, time.time())
    _print(report, out)
    if len(report.rejections) * 2 > report.lines and (
        hint := _preset_hint(lines, len(report.rejections))
    ):
        print(hint, file=out)
    return exits.FIELDS_REJECTED if report.rejections else 0


def _preset_hint(lines: list[tuple[int, bytes]], rejected: int) -> str | None:
    """When most lines were rejected: the presets that decode more of them, best first."""
    from monitor.records.decode import decode_batch
    from monitor.records.fieldmap import PRESETS

    raw = [r for _, r in lines]
    with _quiet_decoder():
        fits = {name: len(decode_batch(raw, fm).rejections) for name, fm in PRESETS.items()}
    better = sorted((n, name) for name, n in fits.items() if n < rejected)
    if not better:
        return None
    names = ", ".join(f"{name} ({len(raw) - n}/{len(raw)} decode)" for n, name in better[:3])
    return f"hint: these lines look like another format; try --preset with: {names}"


def add_fields_commands(sub: Any, parser_class: type[argparse.ArgumentParser]) -> None:
    fields = sub.add_parser(
        "fields", help="check a log's format against a field map (fields check LOG)"
    )
    fsub = fields.add_subparsers(dest="fields_command", required=True, parser_class=parser_class)
    p = fsub.add_parser(
        "check",
        help="decode a log's first lines and show them as bakemon reads them",
        description="Decode the first --lines lines of LOG with the field map bakemon would use "
        "(--config's [fields] table on top of --preset or BAKEMON_FIELDS_PRESET), print each "
        "record as parsed, the rejected lines with their reasons, and warnings about values "
        "that look wrong (latency unit, event times far from now, one version, no errors).",
        epilog="exit codes:\n  0  every line decoded (warnings are advice)\n"
        f"  {exits.USAGE}  usage error, bad config, unreadable file\n"
        f"  {exits.FIELDS_REJECTED}  some lines were rejected, or the log is empty",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("log", metavar="LOG", help='JSON-lines log (.jsonl or .jsonl.gz; "-" for stdin)')
    p.add_argument("--config", help="TOML file whose [fields] table is the field map")
    p.add_argument(
        "--preset",
        choices=PRESET_NAMES,
        help="field-map preset, the base of the [fields] keys (default BAKEMON_FIELDS_PRESET, "
        "else the table's preset, else plain)",
    )
    p.add_argument(
        "--lines",
        "-n",
        type=int,
        default=DEFAULT_LINES,
        help=f"lines to check (default {DEFAULT_LINES})",
    )
    p.set_defaults(func=cmd_fields_check)
