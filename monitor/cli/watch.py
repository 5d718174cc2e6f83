"""Verdicts for a terminal (issue 11): the ``bake watch`` live table (80 columns) and the
``bake get`` summary (the commands themselves are in :mod:`monitor.cli.client`).

The table is two lines per bake so it fits 80 columns whatever the reason says: the figures,
then the reason cut to the width. On a terminal it is redrawn in place and nothing else is
printed inside it; piped, it prints a snapshot every ``--interval`` (and the final one).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, TextIO

from monitor.verdict import ExitCode, interpret

__all__ = ["render_bake", "render_table", "watch"]

WIDTH = 80
_COLOURS = {
    "PROMOTE": "\033[32m",
    "HALT": "\033[31;1m",
    "INCONCLUSIVE": "\033[33m",
    "CANCELLED": "\033[2m",
}
_RESET = "\033[0m"
HEADER = (
    f"{'bake':<18} {'status':<12} {'tested':>9} {'to decide':>9} {'errors c/b':>13} {'p99 c/b':>13}"
)


def _x(ratio: float) -> str:
    """A bound of a ratio: two decimals, or ∞ when no data bounds it (1e304 is not news)."""
    return "∞" if ratio > 1e6 else f"{ratio:.2f}"


def _pct(x: Any) -> str:
    return f"{100 * x:.2f}%" if isinstance(x, int | float) else "-"


def _ms(x: Any) -> str:
    return f"{1000 * x:.0f}" if isinstance(x, int | float) else "-"


def _reason(doc: dict[str, Any]) -> str:
    decision = doc.get("decision")
    if decision:
        return str(decision["reason"])
    return str(doc["reasons"][0]) if doc.get("reasons") else ""


def render_row(doc: dict[str, Any], *, colour: bool = False, width: int = WIDTH) -> list[str]:
    """One bake as two lines of at most ``width`` columns (colour codes are not counted)."""
    p, m = doc["progress"], doc.get("metrics", {})
    err, p99 = m.get("error_rate", {}), m.get("latency_p99_seconds", {})
    need = p.get("estimated_requests_to_decision")
    status = str(doc["status"])
    shown = f"{status:<12}"
    if colour and status in _COLOURS:
        shown = f"{_COLOURS[status]}{shown}{_RESET}"
    errors = f"{_pct(err.get('canary'))}/{_pct(err.get('baseline'))}"
    lat = f"{_ms(p99.get('canary'))}/{_ms(p99.get('baseline'))}ms"
    bake_id = str(doc["id"])
    bake_id = bake_id if len(bake_id) <= 18 else bake_id[:17] + "…"
    line = (
        f"{bake_id:<18} {shown} {p.get('tested_canary_requests', p['canary_requests']):>9,} "
        f"{'-' if need is None else f'{need:,}':>9} {errors:>13} {lat:>13}"
    )
    reason = "  " + _reason(doc)
    if len(reason) > width:
        reason = reason[: width - 1] + "…"
    return [line, reason]


def render_table(docs: Sequence[dict[str, Any]], *, colour: bool = False) -> list[str]:
    lines = [HEADER]
    for d in docs:
        lines += render_row(d, colour=colour)
    return lines


def render_bake(doc: dict[str, Any]) -> list[str]:
    """``bake get``: the status and why, the decision's figures, progress, each metric, the
    segments with a finding."""
    p = doc["progress"]
    out = [f"{doc['id']} ({doc['service']}): {doc['status']}"]
    if doc.get("resolution"):
        out[0] += f" → {doc['resolution']}"
    out.append(f"  why: {_reason(doc)}")
    decision = doc.get("decision")
    if decision:
        r = decision["requests"]
        out.append(
            f"  decided at {decision['at']} with {r['tested_canary']:,} canary / "
            f"{r['tested_baseline']:,} baseline requests tested"
        )
        for name, fig in decision["metrics"].items():
            est = "-" if fig["estimate"] is None else f"{fig['estimate']:.2f}x"
            lo, hi = fig["lower"], fig["upper"]
            bounds = "" if lo is None or hi is None else f" (bounds {_x(lo)}-{_x(hi)})"
            needs = fig.get("halt_needs")
            need = "" if needs is None else f", HALT needs {needs:,.0f}"
            # The e-value that crossed (what the reason quotes) when there was one; the
            # window-end figure can be lower (strata are folded one by one within a window).
            e = fig.get("e_value_halt_crossed") or fig["e_value_halt"]
            out.append(
                f"    {name}: {fig['finding']} {est}{bounds}; evidence {e:,.3g}"
                f" against 'no worse'{need}"
            )
        if decision.get("segment"):
            s = decision["segment"]
            out.append(f'    on {s["segment"]} "{s["value"]}": {s["metric"]} {s["finding"]}')
    out.append(
        f"  requests: canary {p['canary_requests']:,} (tested {p['tested_canary_requests']:,}), "
        f"baseline {p['baseline_requests']:,}; {doc.get('progress_text', '')}"
    )
    for name, fig in doc.get("metrics", {}).items():
        if "finding" in fig:
            ratio = fig.get("ratio")
            shown = "-" if ratio is None else f"{ratio:.2f}x"
            out.append(f"  {name} (live): {fig['finding']} ratio {shown}")
    for dim, rows in (doc.get("segments") or {}).items():
        bad = [r for r in rows if r.get("finding") == "REGRESSION"]
        out.append(
            f"  {dim}: {len(rows)} values tested"
            + (f", regressed: {', '.join(r['value'] for r in bad)}" if bad else "")
        )
    for w in doc.get("warnings") or []:
        out.append(f"  warning: {w}")
    return out


def _docs(client: Any, ids: Sequence[str]) -> list[dict[str, Any]]:
    if ids:
        return [client.get(f"/v1/bakes/{i}") for i in ids]
    return sorted(client.get("/v1/bakes")["bakes"], key=lambda d: d["id"])


def _exit_code(docs: Sequence[dict[str, Any]]) -> int:
    """One bake: its ``wait`` code; several: HALT if any, else CANCELLED, else INCONCLUSIVE, else
    PROMOTE (all decided)."""
    codes = [int(interpret(d).exit_code) for d in docs]
    for code in (ExitCode.HALT, ExitCode.CANCELLED, ExitCode.INCONCLUSIVE):
        if int(code) in codes:
            return int(code)
    return int(ExitCode.PROMOTE)


def watch(
    client: Any,
    ids: Sequence[str],
    *,
    interval_s: float,
    timeout_s: float,
    out: TextIO,
    tty: bool,
) -> int:
    """Draw the table until every watched bake is decided (or ``timeout_s``); returns the exit
    code (``bake wait``'s for one bake)."""
    deadline = time.monotonic() + timeout_s
    drawn = 0
    next_print = 0.0
    while True:
        docs = _docs(client, ids)
        done = bool(docs) and all(interpret(d).final for d in docs)
        lines = render_table(docs, colour=tty)
        if tty:
            if drawn:
                out.write(f"\033[{drawn}F")
            out.write("".join(f"\033[2K{line}\n" for line in lines))
            out.flush()
            drawn = len(lines)
        elif done or time.monotonic() >= next_print:
            out.write("\n".join(lines) + "\n\n")
            out.flush()
            next_print = time.monotonic() + max(interval_s, 5.0)
        if done:
            return _exit_code(docs)
        if time.monotonic() >= deadline:
            return int(ExitCode.TIMEOUT)
        time.sleep(interval_s)
