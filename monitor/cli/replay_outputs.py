"""The files ``bakemon replay`` can write besides its output: ``--timeline`` (the evidence
over time, as ``GET /v1/bakes/{id}/timeline`` answers) and ``--html`` (the console's bake page
as one self-contained file, for post-mortems and PR comments)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import orjson

from monitor.errors import InputError

__all__ = ["add_output_arguments", "write_outputs"]


def add_output_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print the final verdict document as JSON")
    p.add_argument("--quiet", action="store_true", help="no timeline, only the final verdict line")
    p.add_argument(
        "--timeline",
        metavar="FILE",
        help="write the evidence over time as JSON (what GET /v1/bakes/{id}/timeline answers)",
    )
    p.add_argument(
        "--html",
        metavar="FILE",
        help="write the bake page (decision, charts, segments, alerts) as one self-contained "
        "HTML file; with several bakes, FILE's stem gets each bake's id (page.ID.html)",
    )


def _write(path: Path, data: bytes) -> None:
    """Write an output file, or stop with a CLI message (exit 4) naming it."""
    try:
        path.write_bytes(data)
    except OSError as exc:
        msg = f"cannot write {path}: {exc.strerror or exc}"
        raise InputError(msg, value=str(path)) from exc
    print(f"wrote {path} ({len(data):,} bytes)", file=sys.stderr)


def write_outputs(args: argparse.Namespace, result: Any, docs: list[dict[str, Any]]) -> None:
    """The ``--timeline`` and ``--html`` files of a replay result (``monitor.replay``)."""
    timelines = {bid: t.document(bid) for bid, t in result.timelines.items()}
    if args.timeline:
        one = len(timelines) == 1
        body = next(iter(timelines.values())) if one else {"bakes": list(timelines.values())}
        _write(Path(args.timeline), orjson.dumps(body))
    if args.html:
        from monitor.surfaces.console import render_bake_html
        from monitor.verdict.alerts import alert_from_event

        target = Path(args.html)
        for doc in docs:
            bake_id = str(doc["id"])
            spec = result.verdicts[bake_id].spec
            alerts = [alert_from_event(e, spec) for e in result.events if e.bake == bake_id]
            page = render_bake_html(doc, timelines.get(bake_id), alerts)
            path = target if len(docs) == 1 else target.with_name(f"{target.stem}.{bake_id}.html")
            _write(path, page.encode())
