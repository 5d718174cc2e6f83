"""Aggregation and reporting: rates with Wilson intervals, requests to decision, reasons, plot."""

from __future__ import annotations

import math
import re
import statistics
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from benchmarks.detection.report import _wilson
from benchmarks.production.acceptance import acceptance_lines
from benchmarks.production.scenarios import ALPHA, SCENARIO_OF, SCENARIOS, VARIANTS, Variant

if TYPE_CHECKING:
    from benchmarks.production.run import Outcome

# Which decision's requests the n columns show: the right one (A/A: PROMOTE; regression: HALT)
# or, on the tolerance boundary, the wrong one that matters (PROMOTE).
TARGET = {"aa": "PROMOTE", "regression": "HALT", "boundary": "PROMOTE", "minor": "HALT"}
FALSE_HALT = ("aa", "boundary")
FALSE_PROMOTE = ("regression", "boundary")
wilson = _wilson  # one Wilson interval for both benchmarks
_NUMBER = re.compile(r"[-+]?\d[\d,]*(\.\d+)?(e[-+]?\d+)?")


def normalise(reason: str) -> str:
    """A reason with its numbers replaced by ``#``, so that like reasons count together."""
    return _NUMBER.sub("#", reason)


def _rate(k: int | None, n: int) -> dict[str, Any] | None:
    if k is None:
        return None
    lo, hi = wilson(k, n)
    return {"k": k, "n": n, "rate": k / n if n else 0.0, "ci": [lo, hi]}


def _quantiles(values: Sequence[float]) -> tuple[float | None, float | None]:
    """Median and p90, runs without the decision counting as +inf (None = beyond)."""
    if not values:
        return None, None
    a = np.array(values, dtype=np.float64)
    out = [float(np.quantile(a, q, method="inverted_cdf")) for q in (0.5, 0.9)]
    return out[0] if math.isfinite(out[0]) else None, out[1] if math.isfinite(out[1]) else None


def summarize(v: Variant, outcomes: Sequence[Outcome], cpu_s: float) -> dict[str, Any]:
    """One variant's rates, requests to decision, reasons and situation-specific notes."""
    runs = len(outcomes)
    count = Counter(o.status or "undecided" for o in outcomes)
    target = TARGET[v.truth]
    n_target = [o.tested_canary if o.status == target else math.inf for o in outcomes]
    med, p90 = _quantiles(n_target)
    lags = [o.lag_s for o in outcomes if o.status is not None and o.lag_s is not None]
    reasons = Counter(normalise(o.reason) for o in outcomes).most_common(3)
    return {
        "scenario": v.scenario,
        "label": v.label,
        "truth": v.truth,
        "runs": runs,
        "counts": {k: count.get(k, 0) for k in ("HALT", "PROMOTE", "INCONCLUSIVE", "undecided")},
        "false_halt": _rate(count["HALT"] if v.truth in FALSE_HALT else None, runs),
        "false_promote": _rate(count["PROMOTE"] if v.truth in FALSE_PROMOTE else None, runs),
        "target": target,
        "median_n": med,
        "p90_n": p90,
        "median_served": _quantiles(
            [o.canary_n if o.status == target else math.inf for o in outcomes]
        )[0],
        "median_lag_s": _median(lags),
        "late_canary": sum(o.late_canary for o in outcomes),
        "canary_served": sum(o.canary_n for o in outcomes),
        "bad_time": sum(o.bad_time for o in outcomes),
        "reasons": [[r, c] for r, c in reasons],
        "error_reasons": [
            [r, c] for r, c in Counter(normalise(o.error_reason) for o in outcomes).most_common(2)
        ],
        "extra": _extra(v, outcomes),
        "cpu_s": round(cpu_s, 1),
    }


def _median(xs: Sequence[float]) -> float | None:
    return statistics.median(xs) if xs else None


def _extra(v: Variant, outcomes: Sequence[Outcome]) -> dict[str, Any]:
    """Numbers particular to a situation (see the notes in the markdown)."""
    halts = [o for o in outcomes if o.status == "HALT"]
    promotes = [o for o in outcomes if o.status == "PROMOTE"]
    out: dict[str, Any] = {}
    if v.scenario == "far-future":
        min_s = float(v.policy.get("min_duration_s", 0.0))
        out["promote_before_min_duration"] = sum(o.elapsed_s < min_s for o in promotes)
        out["median_elapsed_s_at_promote"] = _median([o.elapsed_s for o in promotes])
        out["median_reported_duration_s"] = _median([o.duration_s for o in promotes])
        out["median_n_at_promote"] = _median([o.tested_canary for o in promotes])
        out["runs_with_bad_time"] = sum(o.bad_time > 0 for o in outcomes)
    if v.truth != "aa" and any(o.promote_path == "absolute" for o in promotes):
        out["promote_paths"] = dict(Counter(str(o.promote_path) for o in promotes))
    if v.watch_route is not None:
        out["halt_names_route"] = sum(f'route "{v.watch_route}"' in o.reason for o in halts)
        out["median_route_n_at_halt"] = _median([o.route_n or 0 for o in halts])
        out["median_ratio_at_halt"] = _median([o.error_bounds[0] or 0.0 for o in halts])
    if v.scenario in ("canary-burst", "pod-keyed"):
        bounds = [o.error_bounds for o in outcomes]
        outside = [b for b in bounds if b[0] is not None and not (b[1] <= b[0] <= b[2])]  # type: ignore[operator]
        out["estimate_outside_bounds"] = len(outside)
        out["example_outside"] = list(outside[0]) if outside else None
        out["no_events_at_end"] = sum("no events yet" in o.error_reason for o in outcomes)
    return out


# -- markdown ----------------------------------------------------------------------------------
def _pct(r: Mapping[str, Any] | None) -> str:
    if r is None:
        return "—"
    lo, hi = r["ci"]
    return f"{100 * r['rate']:.1f} % ({r['k']}/{r['n']}; {100 * lo:.1f}–{100 * hi:.1f})"


def _short(commit: str) -> str:
    return commit[:12] if re.fullmatch(r"[0-9a-f]{40}", commit) else commit


def _n(x: float | None) -> str:
    return "—" if x is None else f"{round(x):,}"


def _n_cell(s: Mapping[str, Any]) -> str:
    return f"{s['target']}: {_n(s['median_n'])} / {_n(s['p90_n'])}"


def _served_lag(s: Mapping[str, Any]) -> str:
    lag = s.get("median_lag_s")
    return f"{_n(s.get('median_served'))} / {'—' if lag is None else f'{lag:.0f} s'}"


def _counts(s: Mapping[str, Any]) -> str:
    c = s["counts"]
    return f"{c['HALT']}/{c['PROMOTE']}/{c['INCONCLUSIVE']}/{c['undecided']}"


def _notes(name: str, s: Mapping[str, Any], results: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Situation-specific lines under a scenario's table."""
    x, v = s["extra"], VARIANTS[name]
    out: list[str] = []
    if "promote_before_min_duration" in x:
        out.append(
            f"`{name}`: PROMOTE before {v.policy['min_duration_s']:g} s of true event time in "
            f"{x['promote_before_min_duration']}/{s['counts']['PROMOTE']} promotions; median at "
            f"PROMOTE: {_n(x['median_elapsed_s_at_promote'])} s elapsed, reported duration "
            f"{_n(x['median_reported_duration_s'])} s, {_n(x['median_n_at_promote'])} canary requests"
        )
    if "absolute" in x.get("promote_paths", {}):
        paths = ", ".join(f"{p} {k}" for p, k in sorted(x["promote_paths"].items()))
        out.append(f"`{name}`: PROMOTEs by the error test's path: {paths}")
    if "halt_names_route" in x and v.traffic.only_route is not None:
        out.append(
            f"`{name}`: median canary {v.watch_route} requests tested at HALT: "
            f"{_n(x['median_route_n_at_halt'])}; median ratio reported {x['median_ratio_at_halt']:.2f}"
        )
    elif "halt_names_route" in x:
        alone = results.get(f"{name}-alone", {}).get("extra", {}).get("median_route_n_at_halt")
        ratio = ""
        if alone and x["median_route_n_at_halt"]:
            ratio = f"; {x['median_route_n_at_halt'] / alone:.2f}× the route-alone test's median"
        out.append(
            f"`{name}`: HALT reasons naming {v.watch_route}: {x['halt_names_route']}/"
            f"{s['counts']['HALT']}; median canary {v.watch_route} requests tested at HALT: "
            f"{_n(x['median_route_n_at_halt'])}{ratio}; median error-rate ratio reported at HALT "
            f"{x['median_ratio_at_halt']:.2f}"
        )
    if s.get("late_canary"):
        share = s["late_canary"] / max(s["canary_served"], 1)
        out.append(
            f"`{name}`: canary requests that arrived after their window closed (counted, never "
            f"tested): {s['late_canary']:,} of {s['canary_served']:,} served ({100 * share:.2f} %)"
        )
    if "estimate_outside_bounds" in x:
        ex = x["example_outside"]
        example = (
            "" if ex is None else f" (e.g. estimate {ex[0]:.3g}, bounds [{ex[1]:.3g}, {ex[2]:.3g}])"
        )
        out.append(
            f"`{name}`: error-rate estimate outside its own bounds in "
            f"{x['estimate_outside_bounds']}/{s['runs']} runs{example}; error test says "
            f'"no events yet" at the end in {x["no_events_at_end"]}/{s["runs"]}'
        )
    return out


def render_markdown(
    results: Mapping[str, Mapping[str, Any]], settings: Mapping[str, Any], raw: Raw
) -> str:
    """The header, a summary table and one table per scenario with its notes."""
    code = settings["code"]
    dirty = " (verdict code modified in the work tree)" if code["verdict_code_changed"] else ""
    if settings.get("updated"):
        dirty += f"; re-run and merged with `--update`: {', '.join(settings['updated'])}"
    flags = (f" --only {settings['only']}" if settings.get("only") else "") + (
        " --unscaled" if settings.get("unscaled") else ""
    )
    lines = [
        "# bakemon on production-shaped traffic (issue 9)",
        "",
        f"`python -m benchmarks.production --runs {settings['runs']} --seed {settings['seed']}"
        f"{flags}`; "
        f"code {_short(code['commit'])}{dirty}; α = {ALPHA}; {settings['wall_s']:.0f} s on "
        f"{settings['jobs']} workers.",
        "",
        "Traffic from `benchmarks/production/traffic.py` (not bakesim): Poisson arrivals; routes "
        "/static 40 % (latency ×0.3, 0.1 % errors), /api/search 30 % (×1, 1 %), /api/cart 15 % "
        "(×1.5, 0.5 %), /api/checkout 15 % (×3, 2 %); lognormal latency (median 50 ms, σ 0.5); "
        "3 zones; 6 baseline pods and 2–3 canary pods; 4 source partitions with random keys and a "
        "1 s flush unless stated. The path is bakemon's own: per source partition and flush, a "
        "`RecordBatch` of what arrived (event time + shipper lag) is screened by that partition's "
        "`EventClock` (records > `max_clock_skew_s` ahead rejected as bad_time), tagged and "
        "summarised into totals and (window, stratum) cells by `monitor.bakes.tagging`, and fed "
        "by `monitor.pipeline.judge.feed` with the partition's clock — a partial for every "
        "partition at every flush, data or not; partitions in a random order within a flush. "
        "Default policy except where a variant says otherwise.",
        "",
        "Columns: decisions H/P/I/U = HALT / PROMOTE / INCONCLUSIVE / undecided at the horizon; "
        "false HALT is counted where no version is worse (A/A) or the canary is exactly on the "
        "margin; false PROMOTE where the canary is worse than the tolerance or on it (neither for a "
        "canary worse but within the tolerance); 95 % Wilson intervals. **n = canary requests "
        "tested** at the decision named — those of the event-time windows closed when it was "
        "taken, the statistic's sample size (median / p90; — = not reached by half / 90 % of "
        "runs). A decision additionally waits for its window to close: `window_s` + "
        "`allowed_lateness_s` (10 + 30 s) of event time after the window's end, plus the "
        "watermark's own lag (the slowest partition's clock, the 64th-latest event time it has "
        "seen); *served / lag* gives the median canary requests served (in the totals) at that "
        "decision and the median event time between the end of the last tested window and the "
        "stream at any decision.",
        "",
        *acceptance_lines(results, raw),
        "| # | variant | runs | false HALT | false PROMOTE | tested n median / p90 | served / lag | issue said |",
        "|---|---|---|---|---|---|---|---|",
    ]
    seen: set[int] = set()
    for name, s in results.items():
        sc = SCENARIO_OF[name]
        issue = "" if sc.number in seen else sc.issue
        seen.add(sc.number)
        lines.append(
            f"| {sc.number} | {name} | {s['runs']} | {_pct(s['false_halt'])} | "
            f"{_pct(s['false_promote'])} | {_n_cell(s)} | {_served_lag(s)} | {issue} |"
        )
    for sc in SCENARIOS:
        names = [v.name for v in sc.variants if v.name in results]
        if names:
            lines += ["", *_scenario_table(sc.number, sc.title, sc.issue, names, results)]
    return "\n".join(lines) + "\n"


def _scenario_table(
    number: int, title: str, issue: str, names: Sequence[str], results: Mapping[str, Any]
) -> list[str]:
    lines = [
        f"## {number}. {title}",
        "",
        f"Issue 9: {issue}.",
        "",
        "| variant | setting | runs | H/P/I/U | false HALT | false PROMOTE | tested n median / p90 | served / lag | reasons seen most |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    notes: list[str] = []
    for name in names:
        s = results[name]
        reasons = "<br>".join(f"{c}× {r[:110]}" for r, c in s["reasons"][:2])
        lines.append(
            f"| {name} | {s['label']} | {s['runs']} | {_counts(s)} | {_pct(s['false_halt'])} | "
            f"{_pct(s['false_promote'])} | {_n_cell(s)} | {_served_lag(s)} | {reasons} |"
        )
        notes += _notes(name, s, results)
    return lines + ([""] + [f"- {n}" for n in notes] if notes else [])


# -- plot --------------------------------------------------------------------------------------
Raw = Mapping[str, Sequence[Sequence[Any]]]  # per variant, per run: [status, canary_n, ...]


def plot(results: Mapping[str, Mapping[str, Any]], raw: Raw, path: Path) -> None:
    """False-HALT and false-PROMOTE rates with Wilson intervals; ECDFs of requests to HALT."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(19, 7.5))
    for ax, key, title in (
        (axes[0], "false_halt", "false HALT (A/A and boundary variants)"),
        (axes[1], "false_promote", "false PROMOTE (regression and boundary variants)"),
    ):
        _rate_panel(ax, results, key, title)
    _ecdf_panel(axes[2], results, raw)
    fig.suptitle("bakemon on production-shaped traffic (issue 9): 95 % Wilson intervals")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _rate_panel(ax: Any, results: Mapping[str, Mapping[str, Any]], key: str, title: str) -> None:
    rows = [(n, s[key]) for n, s in results.items() if s[key] is not None]
    y = np.arange(len(rows))
    rates = np.array([100 * r["rate"] for _, r in rows])
    lo = np.clip(rates - np.array([100 * r["ci"][0] for _, r in rows]), 0.0, None)
    hi = np.clip(np.array([100 * r["ci"][1] for _, r in rows]) - rates, 0.0, None)
    ax.barh(y, rates, xerr=[lo, hi], color="C3" if key == "false_halt" else "C1", capsize=3)
    ax.axvline(100 * ALPHA, color="k", ls="--", lw=1, label=f"α = {100 * ALPHA:g} %")
    ax.set_yticks(y, [n for n, _ in rows], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 100)
    ax.set_xlabel("% of bakes")
    ax.set_title(title, fontsize=10)
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(True, axis="x", alpha=0.3)


_ECDF_SCENARIOS = ("control", "route-regression", "pod-keyed")


def _ecdf_panel(ax: Any, results: Mapping[str, Mapping[str, Any]], raw: Raw) -> None:
    import matplotlib

    shown = [
        n for n, s in results.items() if s["scenario"] in _ECDF_SCENARIOS and s["truth"] != "aa"
    ]
    colors = matplotlib.colormaps["tab20"]
    for k, name in enumerate(shown):
        s = results[name]
        n = np.sort([run[1] for run in raw[name] if run[0] == "HALT"])
        if n.size:
            y = np.arange(1, n.size + 1) / s["runs"]
            ax.step(n, y, where="post", lw=1.4, label=name, color=colors(k % 20))
    ax.set_xscale("log")
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("canary requests at HALT")
    ax.set_ylabel("share of bakes halted")
    ax.set_title("requests to HALT, scenarios 5, 11, 14 (plateau = share ever halted)", fontsize=10)
    if ax.get_lines():
        ax.legend(fontsize=7, ncol=2)
    ax.grid(True, which="both", alpha=0.25)
