"""The driver: bakemon's real verdict engine and the comparators on every simulated run."""

from __future__ import annotations

import argparse
import functools
import json
import math
import multiprocessing as mp
import sys
import time
import zlib
from collections.abc import Callable, Sequence
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
    fixed_t,
    fixed_z,
    oracle_sprt,
    peeked_mw,
    peeked_z,
)
from benchmarks.detection.report import plot, render_markdown, summarize
from benchmarks.detection.scenarios import (
    AA_MW_CAP_CANARY,
    AA_RUNS_FACTOR,
    ALPHA,
    BASE_ERROR_P,
    DEFAULT_RUNS,
    EVENT_TIME_START_S,
    LATENCY_MEDIAN_S,
    LOG_LATENCY_SIGMA,
    POWER,
    QUICK_RUNS,
    RESULTS_DIR,
    SCENARIOS,
    STATS_MW_ALPHA,
    STATS_MW_CAP_CANARY,
    STATS_MW_LOOK_REQUESTS,
    STEPS_PER_LOOK,
    Outcome,
    Scenario,
    Stream,
    design_n,
    simulate,
)
from detectors.summary import CohortSummary
from monitor.bakes.spec import BakeSpec
from monitor.verdict.engine import BakeVerdict


def run_bakemon(sc: Scenario, st: Stream) -> Outcome:
    """Feed the real verdict engine one second of event time per update, as the service does.

    Each second holds ``1 / STEPS_PER_LOOK`` of a look's requests, so a default 10 s window holds
    one look (the comparators' schedule); after the data, seconds without requests let the last
    windows close (``window_s`` + ``allowed_lateness_s``). The outcome's n is the canary
    requests the tests had seen when the verdict was taken.
    """
    spec = BakeSpec.from_dict(
        {"id": "b", "service": "s", "canary": "v2", "baseline": "v1", "policy": dict(sc.policy)}
    )
    ev = spec.policy.evidence
    if ev.window_s != STEPS_PER_LOOK:
        msg = (
            f"a look is {STEPS_PER_LOOK} one-second steps: window_s must be that, got {ev.window_s}"
        )
        raise ValueError(msg)
    verdict = BakeVerdict(spec)
    lc, lb = sc.canary_per_look // STEPS_PER_LOOK, sc.baseline_per_look // STEPS_PER_LOOK
    steps = sc.looks * STEPS_PER_LOOK
    reason = ""
    for i in range(steps + math.ceil(ev.window_s + ev.allowed_lateness_s)):
        c, b = CohortSummary(), CohortSummary()
        if i < steps:
            c.update(st.canary_lat[i * lc : (i + 1) * lc], st.canary_err[i * lc : (i + 1) * lc])
            b.update(st.baseline_lat[i * lb : (i + 1) * lb], st.baseline_err[i * lb : (i + 1) * lb])
        for event in verdict.update(c, b, EVENT_TIME_START_S + i):
            if event.kind == "verdict":
                reason = event.summary.split(":")[0]
        if verdict.decided:
            break
    if not verdict.decided:
        return Outcome(None, None)
    return Outcome(verdict.status.value, verdict.readout().evidence.tested_canary, reason)


MethodFn = Callable[[Scenario, Stream], Outcome]


def methods_for(sc: Scenario) -> list[tuple[str, MethodFn]]:
    """The methods run on a scenario's data, in table order."""
    out: list[tuple[str, MethodFn]] = [(BAKEMON, run_bakemon)]
    if sc.kind == "aa":
        n_z, n_t = design_n("errors-2x"), design_n("latency-1.10")
        out += [
            (FIXED_Z, lambda s, st: fixed_z(s, st, n_z)),
            (FIXED_T, lambda s, st: fixed_t(s, st, n_t)),
            (PEEKED_Z, peeked_z),
            (PEEKED_MW, lambda s, st: peeked_mw(st, 100, 100, AA_MW_CAP_CANARY, ALPHA, False)),
            (
                PEEKED_MW_STATS,
                lambda s, st: peeked_mw(
                    st,
                    STATS_MW_LOOK_REQUESTS,
                    STATS_MW_LOOK_REQUESTS,
                    STATS_MW_CAP_CANARY,
                    STATS_MW_ALPHA,
                    True,
                ),
            ),
        ]
    elif sc.kind == "errors":
        out += [(FIXED_Z, lambda s, st: fixed_z(s, st, design_n(s.name))), (PEEKED_Z, peeked_z)]
    else:
        out += [
            (FIXED_T, lambda s, st: fixed_t(s, st, design_n(s.name))),
            (
                PEEKED_MW,
                lambda s, st: peeked_mw(
                    st, s.canary_per_look, s.baseline_per_look, s.cap_canary, ALPHA, False
                ),
            ),
        ]
    if sc.kind != "aa":
        out.append((ORACLE, oracle_sprt))
    return out


def run_task(task: tuple[str, int, int]) -> tuple[str, int, dict[str, tuple[Outcome, float]]]:
    """Simulate run ``run`` of a scenario and apply every method to it (worker entry point)."""
    name, run, seed = task
    sc = SCENARIOS[name]
    seq = np.random.SeedSequence([seed, zlib.crc32(name.encode()), run])
    st = simulate(sc, np.random.default_rng(seq))
    results: dict[str, tuple[Outcome, float]] = {}
    for method, fn in methods_for(sc):
        t0 = time.process_time()
        outcome = fn(sc, st)
        results[method] = (outcome, time.process_time() - t0)
    return name, run, results


# -- driver ------------------------------------------------------------------------------------
def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.detection",
        description="Detection quality of bakemon's verdict engine against classical canary judges.",
    )
    p.add_argument("--runs", type=int, default=DEFAULT_RUNS, help="runs per scenario")
    p.add_argument("--jobs", type=int, default=2, help="worker processes")
    p.add_argument("--seed", type=int, default=20240601)
    p.add_argument(
        "--aa-runs",
        type=int,
        default=None,
        help=f"runs of the A/A scenario (default {AA_RUNS_FACTOR} × --runs; --runs with --quick)",
    )
    p.add_argument("--quick", action="store_true", help=f"smoke run: {QUICK_RUNS} runs")
    p.add_argument("--scenarios", default=",".join(SCENARIOS), help="comma-separated names")
    p.add_argument("--out", type=Path, default=RESULTS_DIR, help="output directory")
    args = p.parse_args(argv)
    if args.quick:
        args.runs = QUICK_RUNS
    if args.aa_runs is None:
        args.aa_runs = args.runs if args.quick else AA_RUNS_FACTOR * args.runs
    for flag, value in (("--runs", args.runs), ("--aa-runs", args.aa_runs)):
        if value < 1:
            p.error(f"{flag} must be >= 1, got {value}")
    if args.jobs < 1:
        p.error(f"--jobs must be >= 1, got {args.jobs}")
    names = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = [s for s in names if s not in SCENARIOS]
    if unknown or not names:
        p.error(f"unknown scenario(s) {unknown}; valid: {', '.join(SCENARIOS)}")
    args.names = names
    return args


Results = dict[str, dict[str, dict[str, Any]]]
Raw = dict[str, dict[str, list[list[Any]]]]


def main(argv: Sequence[str] | None = None) -> int:
    """Run every scenario's runs, print the table and write detection.md, .json and .png."""
    args = parse_args(argv)
    n_runs = {name: args.aa_runs if name == "aa" else args.runs for name in args.names}
    start = time.perf_counter()
    _log(f"detection benchmark: runs {n_runs}, {args.jobs} jobs")
    outcomes, cpu = _run_all(args.names, n_runs, args.seed, args.jobs, start)
    wall_s = time.perf_counter() - start
    results, raw = _aggregate(args.names, outcomes, cpu)
    table = render_markdown(results, args.runs, args.aa_runs, args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "detection.md").write_text(table)
    doc = {
        "settings": _settings(args),
        "results": results,
        "runs": raw,
        "timing": {"wall_s": round(wall_s, 1), "jobs": args.jobs},
    }
    (args.out / "detection.json").write_text(json.dumps(doc, indent=1) + "\n")
    plot(results, raw, args.out / "detection.png")
    print(table)
    _log(f"done in {wall_s:.1f}s; wrote {args.out}/detection.md, .json, .png")
    return 0


_log = functools.partial(print, file=sys.stderr, flush=True)
Outcomes = dict[str, dict[str, list[Outcome | None]]]


def _run_all(
    names: Sequence[str], n_runs: dict[str, int], seed: int, jobs: int, start: float
) -> tuple[Outcomes, dict[str, dict[str, float]]]:
    """Every (scenario, run) task, in worker processes when ``jobs`` > 1, with progress lines."""
    tasks = [(name, run, seed) for name in names for run in range(n_runs[name])]
    outcomes: Outcomes = {}
    cpu: dict[str, dict[str, float]] = {}
    done = dict.fromkeys(names, 0)

    def collect(name: str, run: int, res: dict[str, tuple[Outcome, float]]) -> None:
        per = outcomes.setdefault(name, {})
        for method, (outcome, cpu_s) in res.items():
            per.setdefault(method, [None] * n_runs[name])[run] = outcome
            cpu.setdefault(name, {})[method] = cpu.get(name, {}).get(method, 0.0) + cpu_s
        done[name] += 1
        elapsed = time.perf_counter() - start
        runs = n_runs[name]
        if done[name] == runs:
            for method, total in cpu[name].items():
                _log(f"[{elapsed:7.1f}s] {name:<13} {method:<32} {runs} runs, cpu {total:7.1f}s")
        elif done[name] % max(1, runs // 4) == 0:
            _log(f"[{elapsed:7.1f}s] {name:<13} {done[name]}/{runs} runs")

    if jobs == 1:
        for task in tasks:
            collect(*run_task(task))
    else:
        with mp.Pool(jobs) as pool:
            for item in pool.imap_unordered(run_task, tasks):
                collect(*item)
    return outcomes, cpu


def _aggregate(
    names: Sequence[str], outcomes: Outcomes, cpu: dict[str, dict[str, float]]
) -> tuple[Results, Raw]:
    """Per scenario and method: the summary statistics, and every run's (decision, n)."""
    results: Results = {}
    raw: Raw = {}
    for name in names:
        sc = SCENARIOS[name]
        results[name], raw[name] = {}, {}
        for method, outs in outcomes[name].items():
            runs = [o for o in outs if o is not None]
            results[name][method] = summarize(sc, method, runs, cpu[name][method])
            raw[name][method] = [[o.decision, o.n] for o in runs]
    return results, raw


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    """The settings block of detection.json."""
    return {
        "runs": args.runs,
        "aa_runs": args.aa_runs,
        "seed": args.seed,
        "alpha": ALPHA,
        "power": POWER,
        "base_error_p": BASE_ERROR_P,
        "latency_median_s": LATENCY_MEDIAN_S,
        "log_latency_sigma": LOG_LATENCY_SIGMA,
        "scenarios": {
            n: {k: v for k, v in vars(SCENARIOS[n]).items() if k != "policy"}
            | {"policy": dict(SCENARIOS[n].policy)}
            for n in args.names
        },
        "design_n": {n: design_n(n) for n in SCENARIOS if SCENARIOS[n].kind != "aa"},
    }
