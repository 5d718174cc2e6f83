"""Aggregation and reporting: per-method rates and quantiles, the markdown table, targets, plot."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.detection.comparators import (
    BAKEMON,
    FIXED_T,
    FIXED_Z,
    ORACLE,
    PEEKED_MW,
    PEEKED_MW_STATS,
    PEEKED_Z,
    method_cap,
)
from benchmarks.detection.scenarios import (
    AA_MW_CAP_CANARY,
    ALPHA,
    SCENARIOS,
    STATS_MW_ALPHA,
    STATS_MW_CAP_CANARY,
    STATS_MW_LOOK_REQUESTS,
    Outcome,
    Scenario,
    design_n,
)


def summarize(
    sc: Scenario, method: str, outcomes: Sequence[Outcome], cpu_s: float
) -> dict[str, Any]:
    """Rates and quantiles of one method on one scenario (censored runs count as +inf)."""
    runs = len(outcomes)
    count = {d: sum(o.decision == d for o in outcomes) for d in ("HALT", "PROMOTE", "INCONCLUSIVE")}
    target = "PROMOTE" if sc.kind == "aa" and method == BAKEMON else "HALT"
    one_look = method in (FIXED_Z, FIXED_T)
    if one_look:
        n_one = outcomes[0].n
        med = p90 = float(n_one if n_one is not None else math.nan)
    else:
        n = np.array(
            [o.n if o.decision == target and o.n is not None else math.inf for o in outcomes]
        )
        med, p90 = (float(np.quantile(n, q, method="inverted_cdf")) for q in (0.5, 0.9))
    halt_rate = count["HALT"] / runs
    reasons: dict[str, int] = {}
    for o in outcomes:
        if o.detail:
            reasons[o.detail] = reasons.get(o.detail, 0) + 1
    return {
        "runs": runs,
        "halts": count["HALT"],
        "promotes": count["PROMOTE"],
        "inconclusive": count["INCONCLUSIVE"],
        "false_halt_rate": halt_rate if sc.kind == "aa" else None,
        "power": halt_rate if sc.kind != "aa" else None,
        "promote_rate": count["PROMOTE"] / runs if method == BAKEMON else None,
        "decision": "one look" if one_look else target,
        "median_n": None if math.isinf(med) else med,
        "p90_n": None if math.isinf(p90) else p90,
        "cap_canary": None if one_look else method_cap(sc, method),
        "decision_reasons": reasons,
        "cpu_s": round(cpu_s, 2),
    }


def _fmt_n(v: float | None, cap: int | None) -> str:
    return f"> {cap:,}" if v is None else f"{round(v):,}"


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{100.0 * v:.1f}%"


def render_markdown(
    results: Mapping[str, Mapping[str, dict[str, Any]]], runs: int, aa_runs: int, seed: int
) -> str:
    """The results table with settings, targets and a target check."""
    lines = _header(results, runs, aa_runs, seed)
    for name, per_method in results.items():
        for method, s in per_method.items():
            false_halt = (
                "n/a"
                if s["false_halt_rate"] is None
                else f"{_pct(s['false_halt_rate'])} ({s['halts']}/{s['runs']})"
            )
            cells = [
                name,
                method,
                false_halt,
                _pct(s["power"]),
                _fmt_n(s["median_n"], s["cap_canary"]),
                _fmt_n(s["p90_n"], s["cap_canary"]),
                "—" if s["promote_rate"] is None else _pct(s["promote_rate"]),
            ]
            lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "## Targets", "", "| target | measured | met |", "|---|---|---|"]
    for target, measured, met in check_targets(results):
        lines.append(f"| {target} | {measured} | {'yes' if met else 'NO'} |")
    return "\n".join(lines) + "\n"


def _header(
    results: Mapping[str, Mapping[str, dict[str, Any]]], runs: int, aa_runs: int, seed: int
) -> list[str]:
    """Settings, methods and targets, down to the table's head."""
    return [
        "# bakemon detection benchmark",
        "",
        f"Seed {seed}, {runs} runs per scenario ({aa_runs} for aa), α = {ALPHA} (bakemon: whole bake, split over "
        "errors and latency; comparators: one-sided per test). Baseline: 1% errors, latency "
        "lognormal(log 50 ms, σ 0.5). n = canary requests; equal arms unless noted.",
        "",
        "- **Looks.** A look is 100 requests/arm (10 % share: 10 canary + 90 baseline). "
        "**bakemon** (the real `BakeVerdict`) is fed one second of event time per update, a "
        "tenth of a look (10 requests/arm; 1 + 9), and tests its default 10 s event-time "
        "windows, each closed 30 s (`allowed_lateness_s`) after its end: one test per look, "
        "the comparators' schedule. Its **n is the canary requests tested** when it decided "
        f"(closed windows, so quantised to one look: {_quantisation(results)}); after the data, "
        "40 s without requests let the last windows close. Regressions: policy "
        '`{"min_canary_requests": 0}`, cap 60,000 canary (10 % share: 20,000; ×1.05: 40,000). '
        "A/A: default policy (min 10,000, tol 1.2), cap 300,000/arm; its n columns are requests "
        "to PROMOTE.",
        f"- **fixed-horizon**: one look at the 80%-power n for the true effect (pooled z-test, "
        f"Welch t on log-latency). A/A uses the 2× errors n ({design_n('errors-2x'):,}) and "
        f"the ×1.10 latency n ({design_n('latency-1.10'):,}).",
        "- **peeked**: z-test (errors) or one-sided Mann–Whitney (latency) at every look (the "
        "same looks as bakemon's windows), "
        "stopping at the first rejection; A/A z-test to 300,000/arm, Mann–Whitney to "
        f"{AA_MW_CAP_CANARY:,}/arm; the `≤10k` row repeats Mann–Whitney every "
        f"{STATS_MW_LOOK_REQUESTS} requests/arm to {STATS_MW_CAP_CANARY:,}/arm at a nominal "
        "5% two-sided (STATISTICS.md's setting).",
        "- **oracle SPRT**: knows the true effect; errors: conditional binomial LR of the "
        "canary's error share; latency shift: normal LR of mean log-latency differences, σ "
        "known; slow tail: exact mixture LR with the baseline distribution known.",
        "- Runs without the decision count as beyond the cap (shown `> cap`). PROMOTE rate is "
        "bakemon's only; comparators never promote.",
        "",
        "Targets (STATISTICS.md §6; issue 9): 2× errors median ≤ 3,450; latency ×1.10 median ≤ "
        "3,000 (issue 9: ≤ 2,500); "
        "A/A PROMOTE (tol 1.2) median ≤ 60,000; A/A false HALT ≤ α (prototype: 0.75%); repeated Mann–Whitney "
        "inflates false alarms.",
        "",
        "| scenario | method | false HALT | power | median n | p90 n | PROMOTE rate |",
        "|---|---|---|---|---|---|---|",
    ]


def _quantisation(results: Mapping[str, Mapping[str, dict[str, Any]]]) -> str:
    """The largest share one look's canary requests make of a bakemon median n."""
    shares = [
        (SCENARIOS[name].canary_per_look / s["median_n"], name)
        for name, per in results.items()
        if (s := per.get(BAKEMON)) is not None and s["median_n"]
    ]
    if not shares:
        return "no median measured"
    share, name = max(shares)
    return f"at most {100 * share:.1f} % of a median, `{name}`"


def _wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval for k successes in n trials."""
    if n == 0:
        return 0.0, 1.0
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(centre - half, 0.0), min(centre + half, 1.0)


def check_targets(
    results: Mapping[str, Mapping[str, dict[str, Any]]],
) -> list[tuple[str, str, bool]]:
    """(target, measured, met) for the STATISTICS.md §6 targets whose scenarios were run."""
    out: list[tuple[str, str, bool]] = []

    def median_target(scenario: str, text: str, limit: int) -> None:
        s = results.get(scenario, {}).get(BAKEMON)
        if s is not None:
            med = s["median_n"]
            out.append((text, _fmt_n(med, s["cap_canary"]), med is not None and med <= limit))

    median_target("errors-2x", "2× errors: bakemon median ≤ 3,450", 3_450)
    median_target("latency-1.10", "latency ×1.10: bakemon median ≤ 3,000", 3_000)
    median_target("latency-1.10", "latency ×1.10: bakemon median ≤ 2,500 (issue 9)", 2_500)
    median_target("aa", "A/A: bakemon PROMOTE median ≤ 60,000", 60_000)
    aa = results.get("aa", {})
    if BAKEMON in aa:
        rate = aa[BAKEMON]["false_halt_rate"]
        runs = int(aa[BAKEMON]["runs"])
        lo, hi = _wilson(round(rate * runs), runs)
        measured = f"{_pct(rate)} (95% CI {_pct(lo)}–{_pct(hi)})"
        # The guarantee is <= alpha; 0.75% is what STATISTICS.md's prototype measured.
        out.append(
            (
                f"A/A: bakemon false HALT ≤ α = {_pct(ALPHA)} (the guarantee)",
                measured,
                lo <= ALPHA,  # not significantly above alpha
            )
        )
        out.append(
            (
                "A/A: bakemon false HALT consistent with the prototype's 0.75%",
                measured,
                lo <= 0.0075,
            )
        )
    for method in (PEEKED_MW, PEEKED_MW_STATS):
        if method in aa:
            rate = aa[method]["false_halt_rate"]
            nominal = STATS_MW_ALPHA if method == PEEKED_MW_STATS else ALPHA
            out.append(
                (
                    f"A/A: {method} inflated over nominal {_pct(nominal)}",
                    _pct(rate),
                    rate > 2 * nominal,
                )
            )
    return out


_STYLES: dict[str, tuple[str, str]] = {
    BAKEMON: ("C0", "-"),
    ORACLE: ("C2", "-"),
    PEEKED_Z: ("C3", "-"),
    PEEKED_MW: ("C1", "-"),
    PEEKED_MW_STATS: ("C4", "-"),
    FIXED_Z: ("0.35", ":"),
    FIXED_T: ("C9", ":"),
}
_TARGET_MEDIANS = {"errors-2x": 3_450, "latency-1.10": 3_000, "aa": 60_000}


def plot(
    results: Mapping[str, Mapping[str, dict[str, Any]]],
    raw: Mapping[str, Mapping[str, list[list[Any]]]],
    path: Path,
) -> None:
    """ECDFs of canary requests to decision, one panel per scenario, one shared legend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    names = list(results)
    cols = min(4, len(names) + 1)
    rows = math.ceil((len(names) + 1) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.4 * cols, 3.6 * rows), squeeze=False)
    for ax, name in zip(axes.flat, names, strict=False):
        _panel(ax, name, results[name], raw[name])
    spare = list(axes.flat)[len(names) :]
    for ax in spare:
        ax.axis("off")
    used = {m for per in results.values() for m in per}
    handles = [
        Line2D([], [], color=c, ls=ls, lw=2, label=m + (" (one look at n)" if ls == ":" else ""))
        for m, (c, ls) in _STYLES.items()
        if m in used
    ]
    handles.append(Line2D([], [], color="k", ls="--", lw=1, label="STATISTICS.md target median"))
    spare[0].legend(handles=handles, loc="center", fontsize=8, frameon=False)
    fig.suptitle(
        "Canary requests to decision: ECDF over runs (HALT; bakemon in A/A: PROMOTE; "
        "peeked tests in A/A: first false alarm). Plateau = share decided by the cap."
    )
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def _panel(
    ax: Any,
    name: str,
    per_method: Mapping[str, dict[str, Any]],
    raw: Mapping[str, list[list[Any]]],
) -> None:
    """One scenario's panel: a step ECDF per sequential method, a line per one-look method."""
    from matplotlib.ticker import LogLocator, NullFormatter

    for method, s in per_method.items():
        color, ls = _STYLES[method]
        if s["decision"] == "one look":
            ax.axvline(s["median_n"], color=color, ls=ls, lw=1.8)
            continue
        decided = [n for d, n in raw[method] if d == s["decision"]]
        n = np.sort(np.array(decided, dtype=np.float64))
        if n.size:
            x = np.concatenate([n, [s["cap_canary"]]])
            y = np.concatenate([np.arange(1, n.size + 1), [n.size]]) / s["runs"]
            ax.step(x, y, where="post", color=color, ls=ls, lw=1.8)
    if name in _TARGET_MEDIANS:
        ax.axvline(_TARGET_MEDIANS[name], color="k", ls="--", lw=1)
    ax.axhline(0.5, color="0.75", lw=0.8)
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(base=10.0))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_ylim(0, 1.02)
    ax.set_title(f"{name}: {SCENARIOS[name].label}", fontsize=9)
    ax.set_xlabel("canary requests")
    ax.set_ylabel("share of runs decided")
    ax.grid(True, which="both", alpha=0.25)
