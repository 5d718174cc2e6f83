"""Inline SVG charts for the bake page: a ratio with its confidence band, and the evidence
against its threshold, both against tested canary requests.

No JavaScript and no library: the console's fragment, and the static page ``replay --html``
writes, show the same markup. Colours come from classes styled in ``console.css``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from html import escape
from typing import Any

__all__ = ["Point", "evidence_chart", "ratio_chart", "series"]

WIDTH, HEIGHT = 640, 240
LEFT, RIGHT, TOP, BOTTOM = 52, 16, 14, 34
RATIO_TICKS = (
    0.1,
    0.2,
    0.25,
    0.5,
    0.75,
    1.0,
    1.25,
    1.5,
    2.0,
    3.0,
    4.0,
    5.0,
    10.0,
    20.0,
    50.0,
    100.0,
)
EVIDENCE_CAP_DECADES = 4  # e-values are drawn up to needs × 10⁴; higher ones sit on the top edge
EVIDENCE_FLOOR = 1e-4


@dataclass(frozen=True)
class Point:
    """One moment of one metric: tested canary requests, the ratio estimate and its bounds, the
    evidence for HALT and what HALT needs (any of them None when unknown)."""

    requests: int
    estimate: float | None
    lower: float | None
    upper: float | None
    e_halt: float | None
    halt_needs: float | None
    status: str = ""


def _num(x: Any) -> float | None:
    return float(x) if isinstance(x, int | float) and math.isfinite(x) else None


def _from_figures(requests: Any, m: Mapping[str, Any], status: str) -> Point | None:
    if not isinstance(requests, int | float) or not isinstance(m, Mapping):
        return None
    bounds = m.get("ratio_bounds")
    lo, hi = (bounds[0], bounds[1]) if isinstance(bounds, list | tuple) and len(bounds) == 2 else (None, None)  # fmt: skip
    return Point(
        int(requests),
        _num(m.get("estimate", m.get("ratio"))),
        _num(m.get("lower", lo)),
        _num(m.get("upper", hi)),
        _num(m.get("e_value_halt")),
        _num(m.get("halt_needs")),
        status,
    )


def series(doc: Mapping[str, Any], timeline: Mapping[str, Any] | None, metric: str) -> list[Point]:
    """The timeline's points of ``metric``, plus the frozen decision and the live figures (so a
    bake whose timeline is not available yet still shows where it decided and where it is),
    one point per request count, in request order."""
    found: dict[int, Point] = {}
    for p in (timeline or {}).get("points") or []:
        if isinstance(p, Mapping):
            reqs = (p.get("requests") or {}).get("canary")
            pt = _from_figures(reqs, (p.get("metrics") or {}).get(metric) or {}, str(p.get("status", "")))  # fmt: skip
            if pt is not None:
                found[pt.requests] = pt
    decision = doc.get("decision")
    if isinstance(decision, Mapping):
        figs = (decision.get("metrics") or {}).get(metric)
        reqs = (decision.get("requests") or {}).get("tested_canary")
        pt = _from_figures(reqs, figs or {}, str(decision.get("status", "")))
        if figs and pt is not None:
            found.setdefault(pt.requests, pt)
    live = (doc.get("metrics") or {}).get(metric)
    reqs = (doc.get("progress") or {}).get("tested_canary_requests")
    pt = _from_figures(reqs, live or {}, str(doc.get("status", "")))
    if live and pt is not None and (not found or pt.requests > max(found)):
        found[pt.requests] = pt
    return [found[k] for k in sorted(found)]


# -- scales ------------------------------------------------------------------------------------
def _x_scale(max_x: float) -> tuple[float, list[float]]:
    """Upper end and ticks of a linear axis from 0 (1, 2 or 5 × 10^k steps)."""
    max_x = max(max_x, 1.0)
    raw = max_x / 5
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    top = math.ceil(max_x / step) * step
    return top, [i * step for i in range(round(top / step) + 1)]


def _log_y(lo: float, hi: float) -> tuple[float, float]:
    lo, hi = math.log10(lo), math.log10(hi)
    pad = max((hi - lo) * 0.08, 0.02)
    return lo - pad, hi + pad


def _short(n: float) -> str:
    if n >= 1e6:
        return f"{n / 1e6:g}M"
    return f"{n / 1e3:g}k" if n >= 1e3 else f"{n:g}"


def _e(x: float) -> str:
    return f"{x:,.0f}" if 1 <= x < 1e6 else f"{x:.3g}"


class _Frame:
    """Maps data to the SVG's pixels: x linear from 0, y log10."""

    def __init__(self, max_x: float, y_lo: float, y_hi: float) -> None:
        self.x_top, self.x_ticks = _x_scale(max_x)
        self.y0, self.y1 = _log_y(y_lo, y_hi)

    def x(self, v: float) -> float:
        return LEFT + (WIDTH - LEFT - RIGHT) * v / self.x_top

    def y(self, v: float) -> float:
        f = (math.log10(v) - self.y0) / (self.y1 - self.y0)
        return TOP + (HEIGHT - TOP - BOTTOM) * (1 - f)

    def inside(self, v: float) -> bool:
        return self.y0 <= math.log10(v) <= self.y1

    def axes(self, y_ticks: Sequence[tuple[float, str]], x_label: str) -> list[str]:
        out = []
        for v, label in y_ticks:
            y = self.y(v)
            out.append(
                f'<line class="gridline" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>'
            )
            out.append(
                f'<text class="tick" x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{label}</text>'
            )
        base = HEIGHT - BOTTOM
        out.append(f'<line class="axis" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{base}" y2="{base}"/>')
        for v in self.x_ticks:
            x = self.x(v)
            out.append(
                f'<text class="tick" x="{x:.1f}" y="{base + 15}" text-anchor="middle">{_short(v)}</text>'
            )
        out.append(
            f'<text class="axis-label" x="{WIDTH - RIGHT}" y="{HEIGHT - 3}" text-anchor="end">{escape(x_label)}</text>'
        )
        return out

    def hline(self, v: float, cls: str, label: str) -> list[str]:
        if not self.inside(v):
            return []
        y = self.y(v)
        return [
            f'<line class="{cls}" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>',
            f'<text class="{cls}-label" x="{WIDTH - RIGHT - 4}" y="{y - 5:.1f}" text-anchor="end">{escape(label)}</text>',
        ]

    def vline(self, v: float | None, label: str) -> list[str]:
        if v is None:
            return []
        x = self.x(v)
        return [
            f'<line class="decided" x1="{x:.1f}" x2="{x:.1f}" y1="{TOP}" y2="{HEIGHT - BOTTOM}"/>',
            f'<text class="decided-label" x="{x + 4:.1f}" y="{TOP + 10}">{escape(label)}</text>',
        ]


def _svg(title: str, body: list[str], n: int) -> str:
    return (
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(title)}" '
        f'data-points="{n}" preserveAspectRatio="xMidYMid meet"><title>{escape(title)}</title>'
        + "".join(body)
        + "</svg>"
    )


def _empty(title: str, why: str) -> str:
    return (
        f'<div class="chart-empty" role="img" aria-label="{escape(title)}">'
        f"<p>{escape(why)}</p></div>"
    )


def ratio_chart(
    points: Sequence[Point],
    *,
    title: str,
    tolerance: float | None,
    halt_line: float | None,
    decided_at: int | None,
    decided_label: str = "decided",
) -> str:
    """The ratio estimate (line and dots) inside its confidence band, the tolerance PROMOTE
    must prove the upper bound under, and the line HALT must prove the ratio above."""
    est = [(p.requests, p.estimate) for p in points if p.estimate is not None and p.estimate > 0]
    if not est:
        return _empty(title, "no estimate yet: the tests have not seen enough requests")
    band = [
        (p.requests, p.lower, p.upper)
        for p in points
        if p.estimate is not None and p.lower is not None and p.upper is not None and p.lower > 0
    ]
    vals = [e for _, e in est] + [v for _, lo, hi in band for v in (lo, hi)]
    vals += [v for v in (tolerance, halt_line) if v is not None]
    f = _Frame(max(x for x, _ in est) or 1, min(vals), max(vals))
    ticks = [(t, f"{t:g}×") for t in RATIO_TICKS if f.inside(t)]
    body = f.axes(ticks[:: max(1, len(ticks) // 6)], "tested canary requests")
    if len(band) >= 2:
        upper = " ".join(f"{f.x(x):.1f},{f.y(hi):.1f}" for x, _, hi in band)
        lower = " ".join(f"{f.x(x):.1f},{f.y(lo):.1f}" for x, lo, _ in reversed(band))
        body.append(f'<polygon class="band" points="{upper} {lower}"/>')
    for x, lo, hi in band:  # whiskers: the band at each point, visible even with one point
        body.append(
            f'<line class="whisker" x1="{f.x(x):.1f}" x2="{f.x(x):.1f}" y1="{f.y(lo):.1f}" y2="{f.y(hi):.1f}"/>'
        )
    if tolerance is not None:
        body += f.hline(
            tolerance, "tolerance", f"tolerance {tolerance:g}× (PROMOTE: upper bound below)"
        )
    if halt_line is not None:
        body += f.hline(halt_line, "halt-line", f"HALT line {halt_line:g}× (ratio above it)")
    body += f.vline(decided_at, decided_label)
    line = " ".join(f"{f.x(x):.1f},{f.y(e):.1f}" for x, e in est)
    body.append(f'<polyline class="estimate" points="{line}"/>')
    bounds = {x: f" (bounds {lo:.2f}–{hi:.2f})" for x, lo, hi in band}
    for x, e in est:
        tip = f"{x:,} requests: ratio {e:.2f}×{bounds.get(x, '')}"
        body.append(
            f'<circle class="pt" cx="{f.x(x):.1f}" cy="{f.y(e):.1f}" r="3">'
            f"<title>{escape(tip)}</title></circle>"
        )
    return _svg(title, body, len(est))


def evidence_chart(
    points: Sequence[Point], *, title: str, decided_at: int | None, decided_label: str = "decided"
) -> str:
    """The e-value against "no worse" (log scale) and the threshold HALT needs."""
    pts = [(p.requests, max(p.e_halt, EVIDENCE_FLOOR)) for p in points if p.e_halt is not None]
    if not pts:
        return _empty(title, "no evidence yet")
    needs = next((p.halt_needs for p in reversed(points) if p.halt_needs), None)
    vals = [e for _, e in pts]
    cap = needs * 10**EVIDENCE_CAP_DECADES if needs else max(vals)
    shown = [min(v, cap) for v in vals]
    f = _Frame(max(x for x, _ in pts) or 1, min([*shown, 1.0]), max([*shown, needs or 1.0]))
    decades = range(math.ceil(f.y0), math.floor(f.y1) + 1)
    step = max(1, len(decades) // 5)
    body = f.axes([(10.0**d, _e(10.0**d)) for d in decades[::step]], "tested canary requests")
    if needs:
        body += f.hline(needs, "halt-line", f"HALT needs {_e(needs)}")
    body += f.vline(decided_at, decided_label)
    line = " ".join(f"{f.x(x):.1f},{f.y(v):.1f}" for (x, _), v in zip(pts, shown, strict=True))
    body.append(f'<polyline class="evidence" points="{line}"/>')
    for (x, raw), v in zip(pts, shown, strict=True):
        capped = " (above the chart)" if raw > v else ""
        tip = f"{x:,} requests: evidence {_e(raw)}{capped}"
        body.append(
            f'<circle class="pt ev" cx="{f.x(x):.1f}" cy="{f.y(v):.1f}" r="3">'
            f"<title>{escape(tip)}</title></circle>"
        )
    return _svg(title, body, len(pts))
