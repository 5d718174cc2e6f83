"""The bake page as HTML: the console's bake view (fetched as a fragment) and the static
post-mortem page (``replay --html``) are this one rendering.

Everything from the document is escaped; the markup needs no script. Status is shown by a
word and a shape as well as a colour (Okabe–Ito hues, see ``console.css``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from html import escape
from typing import Any
from urllib.parse import quote

import orjson

from monitor.surfaces.console.chart import evidence_chart, ratio_chart, series

__all__ = ["STATUS_ICONS", "render_bake_section"]

STATUS_ICONS = {"PROMOTE": "✓", "HALT": "✕", "INCONCLUSIVE": "?", "PENDING": "…", "CANCELLED": "⊘"}
METRIC_NAMES = {"error_rate": "Error rate", "latency": "Latency"}


def _t(x: Any) -> str:
    return escape(str(x))


def _pct(x: Any) -> str:
    return f"{100 * x:.2f}%" if isinstance(x, int | float) and math.isfinite(x) else "–"


def _ms(x: Any) -> str:
    return f"{1000 * x:,.1f} ms" if isinstance(x, int | float) and math.isfinite(x) else "–"


def _ratio(x: Any) -> str:
    return f"{x:.2f}×" if isinstance(x, int | float) and math.isfinite(x) else "–"


def _int(x: Any) -> str:
    return f"{x:,}" if isinstance(x, int) else "–"


def _ev(x: Any) -> str:
    if not isinstance(x, int | float) or not math.isfinite(x):
        return "–"
    return f"{x:,.0f}" if 1 <= x < 1e6 else f"{x:.3g}"


def _bounds(lo: Any, hi: Any) -> str:
    return f"{_ratio(lo)}–{_ratio(hi)}" if lo is not None and hi is not None else "–"


def badge(status: Any) -> str:
    s = str(status)
    return (
        f'<span class="badge s-{_t(s.lower())}"><span class="icon" aria-hidden="true">'
        f"{STATUS_ICONS.get(s, '•')}</span>{_t(s)}</span>"
    )


def _finding(f: Any) -> str:
    cls = {"REGRESSION": "f-bad", "NON_INFERIOR": "f-good"}.get(str(f), "f-open")
    words = {
        "REGRESSION": "regression",
        "NON_INFERIOR": "no worse",
        "UNDECIDED": "undecided",
        "NONE": "no finding",
    }
    return f'<span class="finding {cls}">{_t(words.get(str(f), f or "–"))}</span>'


def _table(head: Sequence[str], rows: Iterable[str], cls: str = "") -> str:
    th = "".join(f'<th scope="col">{h}</th>' for h in head)
    return (
        f'<div class="scroll"><table class="{cls}"><thead><tr>{th}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></div>"
    )


def _card(ident: str, title: str, body: str, extra: str = "") -> str:
    return f'<section class="card {extra}" id="{ident}"><h2>{title}</h2>{body}</section>'


# -- sections ----------------------------------------------------------------------------------
def _header(doc: Mapping[str, Any]) -> str:
    canary = ", ".join(map(str, (doc.get("canary") or {}).get("versions") or [])) or "–"
    baseline = ", ".join(map(str, (doc.get("baseline") or {}).get("versions") or [])) or "–"
    notes = []
    if doc.get("resolution"):
        notes.append(f"resolved as {badge(doc['resolution'])}")
    if doc.get("stale"):
        notes.append('<span class="warn-inline">stale: no new document lately</span>')
    if doc.get("cancelled_at"):
        notes.append(f"cancelled at {_t(doc['cancelled_at'])}")
    return (
        f'<header class="bake-head"><h1><span class="bake-id">{_t(doc.get("id"))}</span> '
        f"{badge(doc.get('status'))}</h1>"
        f'<p class="sub">service <b>{_t(doc.get("service"))}</b> · canary <b>{_t(canary)}</b> vs '
        f"baseline <b>{_t(baseline)}</b> · created {_t(doc.get('created_at') or '–')}"
        f"{' · ' + ' · '.join(notes) if notes else ''}</p></header>"
    )


def _frozen_rows(decision: Mapping[str, Any]) -> list[str]:
    rows = []
    for name, m in (decision.get("metrics") or {}).items():
        rows.append(
            f"<tr><th scope=row>{_t(METRIC_NAMES.get(name, name))}</th><td>{_finding(m.get('finding'))}</td>"
            f"<td>{_ratio(m.get('estimate'))}</td><td>{_bounds(m.get('lower'), m.get('upper'))}</td>"
            f"<td>{_ev(m.get('e_value_halt_crossed') or m.get('e_value_halt'))}</td>"
            f"<td>{_ev(m.get('halt_needs'))}</td></tr>"
        )
    seg = decision.get("segment")
    if isinstance(seg, Mapping):
        rows.append(
            f'<tr class="culprit"><th scope=row>{_t(seg.get("segment"))} “{_t(seg.get("value"))}” '
            f"({_t(METRIC_NAMES.get(str(seg.get('metric')), seg.get('metric')))})</th>"
            f"<td>{_finding(seg.get('finding'))}</td><td>{_ratio(seg.get('estimate'))}</td>"
            f"<td>{_bounds(seg.get('lower'), seg.get('upper'))}</td>"
            f"<td>{_ev(seg.get('e_value_halt_crossed') or seg.get('e_value_halt'))}</td>"
            f"<td>{_ev(seg.get('halt_needs'))}</td></tr>"
        )
    return rows


def _decision(doc: Mapping[str, Any]) -> str:
    decision = doc.get("decision")
    head = ["", "finding", "ratio", "bounds", "evidence", "HALT needs"]
    if isinstance(decision, Mapping):
        r = decision.get("requests") or {}
        over = decision.get("override")
        who = ""
        if isinstance(over, Mapping):
            who = f'<p class="override">Operator override by <b>{_t(over.get("by") or "?")}</b>: {_t(over.get("reason") or "")}</p>'
        body = (
            f'<p class="reason">{_t(decision.get("reason"))}</p>{who}'
            f'<p class="meta">{badge(decision.get("status"))} at {_t(decision.get("at") or "–")} with '
            f"{_int(r.get('tested_canary'))} canary and {_int(r.get('tested_baseline'))} baseline "
            "requests tested. These figures are frozen at the decision.</p>"
            + _table(head, _frozen_rows(decision), "figures")
            + '<p class="hint">Evidence is the e-value against “the canary is no worse”: HALT '
            "when it reaches the threshold (1/α for the metric); it is valid however often the "
            "bake is looked at.</p>"
        )
        return _card(
            "decision", "Decision and why", body, f"st-{_t(str(decision.get('status')).lower())}"
        )
    p = doc.get("progress") or {}
    frac = float(p["fraction"]) if isinstance(p.get("fraction"), int | float) else 0.0
    reasons = "".join(f"<li>{_t(x)}</li>" for x in doc.get("reasons") or []) or "<li>–</li>"
    need = p.get("estimated_requests_to_decision")
    body = (
        f'<p class="reason">Not decided yet.</p><ul class="reasons">{reasons}</ul>'
        f'<div class="progress" role="progressbar" aria-valuemin="0" aria-valuemax="100" '
        f'aria-valuenow="{100 * frac:.0f}"><span style="width:{100 * frac:.1f}%"></span></div>'
        f'<p class="meta">{_int(p.get("tested_canary_requests"))} of {_int(p.get("min_canary_requests"))} '
        f"canary requests tested{f', about {_int(need)} more to decide' if isinstance(need, int) and need else ''}.</p>"
    )
    return _card("decision", "Decision and why", body, "st-pending")


def _live(doc: Mapping[str, Any]) -> str:
    m = doc.get("metrics") or {}
    p = doc.get("progress") or {}
    rows = []
    err = m.get("error_rate")
    if isinstance(err, Mapping):
        b = err.get("ratio_bounds") or [None, None]
        rows.append(
            f"<tr><th scope=row>Error rate</th><td>{_pct(err.get('canary'))}</td><td>{_pct(err.get('baseline'))}</td>"
            f"<td>{_ratio(err.get('ratio'))}</td><td>{_bounds(*b[:2])}</td><td>{_ev(err.get('e_value_halt'))}</td>"
            f"<td>{_finding(err.get('finding'))}</td></tr>"
        )
    lat = m.get("latency")
    if isinstance(lat, Mapping):
        b = lat.get("ratio_bounds") or [None, None]
        p99 = m.get("latency_p99_seconds") or {}
        rows.append(
            f"<tr><th scope=row>Latency (p99)</th><td>{_ms(p99.get('canary'))}</td><td>{_ms(p99.get('baseline'))}</td>"
            f"<td>{_ratio(lat.get('ratio'))}</td><td>{_bounds(*b[:2])}</td><td>{_ev(lat.get('e_value_halt'))}</td>"
            f"<td>{_finding(lat.get('finding'))}</td></tr>"
        )
    note = f'<p class="hint">{_t(doc["live"])}</p>' if doc.get("live") else ""
    wait = p.get("waiting_requests") or {}
    body = (
        note
        + f'<p class="meta">canary {_int(p.get("canary_requests"))} requests ({_int(p.get("tested_canary_requests"))} tested, '
        f"{_int(wait.get('canary'))} waiting for their window) · baseline {_int(p.get('baseline_requests'))} · "
        f"evaluated {_t(doc.get('evaluated_at') or '–')}</p>"
        + _table(
            ["", "canary", "baseline", "ratio", "bounds", "evidence", "finding"], rows, "figures"
        )
    )
    return _card("live", "Live figures", body)


def _charts(doc: Mapping[str, Any], timeline: Mapping[str, Any] | None) -> str:
    policy = doc.get("policy") or {}
    decision = doc.get("decision") if isinstance(doc.get("decision"), Mapping) else None
    at = (decision.get("requests") or {}).get("tested_canary") if decision else None
    label = f"{decision.get('status')} at {_int(at)}" if decision else ""
    parts = []
    for metric, key in (("error_rate", "errors"), ("latency", "latency")):
        pts = series(doc, timeline, metric)
        if not pts and metric not in (doc.get("metrics") or {}):
            continue
        pol = policy.get(key) or {}
        tol = pol.get("tol")
        margin = pol.get("halt_margin")
        name = METRIC_NAMES[metric]
        ratio = ratio_chart(
            pts,
            title=f"{name}: canary/baseline ratio and its confidence band",
            tolerance=1 + tol if isinstance(tol, int | float) else None,
            halt_line=1 + margin if isinstance(margin, int | float) else None,
            decided_at=at if isinstance(at, int) else None,
            decided_label=label,
        )
        evidence = evidence_chart(
            pts,
            title=f"{name}: evidence against “no worse”",
            decided_at=at if isinstance(at, int) else None,
            decided_label=label,
        )
        parts.append(
            f'<div class="chart-pair" data-metric="{metric}"><figure><figcaption>{name} ratio, canary/baseline '
            f"(estimate, band)</figcaption>{ratio}</figure><figure><figcaption>{name} evidence for HALT "
            f"(e-value, log scale)</figcaption>{evidence}</figure></div>"
        )
    n = len((timeline or {}).get("points") or [])
    src = (
        f"{n:,} timeline points" if n else "timeline not available: decision and live figures only"
    )
    body = "".join(parts) or "<p>No metrics yet.</p>"
    return _card("charts", "Evidence over time", body + f'<p class="hint">{_t(src)}.</p>')


def _latency(doc: Mapping[str, Any]) -> str:
    m = doc.get("metrics") or {}
    rows = []
    figs = [m.get(f"latency_{q}_seconds") or {} for q in ("p50", "p90", "p99")]
    values = [
        v for f in figs for v in (f.get("canary"), f.get("baseline")) if isinstance(v, int | float)
    ]
    top = max(values, default=0) or 1
    for q in ("p50", "p90", "p99"):
        fig = m.get(f"latency_{q}_seconds")
        if not isinstance(fig, Mapping):
            continue
        bars = "".join(
            f'<span class="bar {cls}" style="width:{100 * v / top:.1f}%" title="{cls} {_ms(v)}"></span>'
            for cls, v in (("canary", fig.get("canary")), ("baseline", fig.get("baseline")))
            if isinstance(v, int | float)
        )
        rows.append(
            f"<tr><th scope=row>{q}</th><td>{_ms(fig.get('canary'))}</td><td>{_ms(fig.get('baseline'))}</td>"
            f'<td>{_ratio(fig.get("ratio"))}</td><td class="bars">{bars}</td></tr>'
        )
    if not rows:
        return ""
    return _card(
        "latency",
        "Latency quantiles",
        _table(["", "canary", "baseline", "ratio", ""], rows, "figures"),
    )


def _culprits(doc: Mapping[str, Any]) -> dict[str, tuple[Any, str]]:
    """Per dimension, the value to highlight: the segment whose own test HALTed (the
    decision's ``segment``), else the values of ``decision.evident`` (what a pooled HALT's
    reason names: its most evident value per segment; from the reason's words for older
    documents) — never a pick from the live figures, which may have moved since."""
    decision = doc.get("decision")
    if not isinstance(decision, Mapping):
        return {}
    seg = decision.get("segment")
    if isinstance(seg, Mapping):
        return {str(seg.get("segment")): (seg.get("value"), "culprit")}
    out: dict[str, tuple[Any, str]] = {}
    for e in decision.get("evident") or []:  # a pooled HALT's most evident value per segment
        if isinstance(e, Mapping) and str(e.get("segment")) not in out:
            out[str(e.get("segment"))] = (e.get("value"), "named in the decision")
    if out:
        return out
    reason = str(decision.get("reason") or "")  # documents from before `evident`
    for dim, rows in (doc.get("segments") or {}).items():
        values = {str(r.get("value")) for r in rows}
        for m in re.finditer(rf'\b{re.escape(str(dim))} "([^"]+)"', reason):
            if m.group(1) in values and str(dim) not in out:
                out[str(dim)] = (m.group(1), "named in the decision")
    return out


def _segments(doc: Mapping[str, Any]) -> str:
    culprits = _culprits(doc)
    tables = []
    for dim, rows in (doc.get("segments") or {}).items():
        out = []
        for r in rows:
            c, b = r.get("canary") or {}, r.get("baseline") or {}
            value, why = culprits.get(str(dim), (None, ""))
            hit = value is not None and value == r.get("value")
            mark = f' <span class="culprit-tag">◀ {why}</span>' if hit else ""
            out.append(
                f'<tr class="{"culprit" if hit else ""}" data-segment="{_t(dim)}" data-value="{_t(r.get("value"))}">'
                f"<th scope=row>{_t(r.get('value'))}{mark}</th><td>{_int(c.get('requests'))}</td>"
                f"<td>{_pct(c.get('error_rate'))} / {_pct(b.get('error_rate'))}</td>"
                f"<td>{_ratio(r.get('error_ratio'))}</td><td>{_bounds(*(r.get('error_ratio_bounds') or [None, None])[:2])}</td>"
                f"<td>{_ev(r.get('error_e_value_halt'))}</td><td>{_ms(c.get('p99_seconds'))} / {_ms(b.get('p99_seconds'))}</td>"
                f"<td>{_finding(r.get('finding'))}</td></tr>"
            )
        head = [
            _t(dim),
            "canary req.",
            "errors c / b",
            "error ratio",
            "bounds",
            "evidence",
            "p99 c / b",
            "finding",
        ]
        tables.append(f"<h3>by {_t(dim)}</h3>" + _table(head, out, "segments"))
    body = "".join(tables) or "<p>No per-segment breakdown in this document.</p>"
    return _card("segments", "Per segment", body)


def _alerts(alerts: Sequence[Mapping[str, Any]] | None) -> str:
    if alerts is None:
        return ""
    rows = []
    for a in reversed(alerts):
        labels, ann = a.get("labels") or {}, a.get("annotations") or {}
        sev = str(labels.get("severity", ""))
        state = "resolved " + _t(a["endsAt"]) if a.get("endsAt") else "open"
        rows.append(
            f'<tr><td>{_t(a.get("startsAt") or "–")}</td><td><span class="sev sev-{_t(sev)}">{_t(sev)}</span></td>'
            f"<td>{_t(labels.get('alertname', ''))}</td><td>{_t(labels.get('metric', ''))}</td>"
            f'<td class="wrap">{_t(ann.get("summary", ""))}</td><td>{state}</td></tr>'
        )
    body = (
        _table(["starts", "severity", "alert", "metric", "summary", "state"], rows, "alerts")
        if rows
        else "<p>No alerts for this bake.</p>"
    )
    return _card("alerts", "Alerts", body)


def _flatten(d: Mapping[str, Any], prefix: str = "") -> Iterable[tuple[str, Any]]:
    for k, v in d.items():
        if isinstance(v, Mapping):
            yield from _flatten(v, f"{prefix}{k}.")
        else:
            yield f"{prefix}{k}", v


def _policy(doc: Mapping[str, Any]) -> str:
    policy = doc.get("policy")
    if not isinstance(policy, Mapping):
        return ""
    items = "".join(
        f"<div><dt>{_t(k)}</dt><dd>{_t(v if isinstance(v, str) else orjson.dumps(v).decode())}</dd></div>"
        for k, v in _flatten(policy)
    )
    return _card("policy", "Policy", f'<dl class="policy">{items}</dl>')


def _links(bake_id: str, base: str | None) -> str:
    if base is None:
        note = "This page is a snapshot: the document, timeline and alerts it shows are embedded in it as JSON (the <code>bakemon-data</code> script element)."
        return _card("links", "Raw data", f'<p class="hint">{note}</p>')
    q = quote(bake_id, safe="")
    links = [
        (f"{base}/v1/bakes/{q}", "verdict document (JSON)"),
        (f"{base}/v1/bakes/{q}/timeline", "timeline (JSON)"),
        (f"{base}/v1/alerts?bake={q}", "alerts (JSON)"),
    ]
    items = "".join(f'<li><a href="{_t(h)}">{_t(t)}</a></li>' for h, t in links)
    return _card("links", "Raw data", f'<ul class="links">{items}</ul>')


def _warnings(doc: Mapping[str, Any]) -> str:
    ws = doc.get("warnings") or []
    if not ws:
        return ""
    items = "".join(f"<li>{_t(w)}</li>" for w in ws)
    return f'<div class="warnings" role="note"><b>⚠ Read with care:</b><ul>{items}</ul></div>'


def render_bake_section(
    doc: Mapping[str, Any],
    timeline: Mapping[str, Any] | None,
    alerts: Sequence[Mapping[str, Any]] | None,
    *,
    link_base: str | None = "",
) -> str:
    """The bake page's markup (an ``<article>``): header, decision and why, live figures, the
    charts, latency quantiles, segments, alerts, policy and links to the JSON (under
    ``link_base``; None: a snapshot, the data are embedded instead)."""
    status = str(doc.get("status", ""))
    return (
        f'<article class="bake" data-bake="{_t(doc.get("id"))}" data-status="{_t(status)}">'
        + _header(doc)
        + _warnings(doc)
        + '<div class="grid">'
        + _decision(doc)
        + _live(doc)
        + "</div>"
        + _charts(doc, timeline)
        + '<div class="grid">'
        + _latency(doc)
        + _alerts(alerts)
        + "</div>"
        + _segments(doc)
        + '<div class="grid">'
        + _policy(doc)
        + _links(str(doc.get("id", "")), link_base)
        + "</div></article>"
    )
