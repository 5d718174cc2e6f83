"""The driver: seeded bakes of every variant through the real verdict engine, in worker processes."""

from __future__ import annotations

import argparse
import functools
import json
import math
import multiprocessing as mp
import subprocess
import sys
import time
import zlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.production.partials import EVENT_TIME_START_S, IngestStream
from benchmarks.production.report import plot, render_markdown, summarize
from benchmarks.production.scenarios import ALPHA, VARIANTS, Variant, select, with_horizon
from benchmarks.production.traffic import CANARY, Records, TrafficGenerator
from monitor.bakes.spec import BakeSpec
from monitor.pipeline.judge import feed
from monitor.verdict.engine import BakeVerdict

DEFAULT_RUNS = 300
QUICK_RUNS = 2
RESULTS_DIR = Path(__file__).resolve().parents[1] / "results"
Bounds = tuple[float | None, float | None, float | None]


@dataclass(frozen=True)
class Outcome:
    """One bake's result: the decision (None = none within the horizon) and its evidence."""

    status: str | None
    tested_canary: int  # canary requests the tests had seen at the decision (closed windows)
    tested_baseline: int
    canary_n: int  # canary requests served (folded into the totals) by then
    baseline_n: int
    late_canary: int  # canary requests that arrived after their window closed (never tested)
    reason: str  # the decision's reason, or why it is still pending
    error_reason: str  # the error test's own reason at the end
    elapsed_s: float  # true event time ingest had seen (skewed clocks excluded) at the decision
    tested_through_s: float | None  # end of the last window tested (event time), None = none
    duration_s: float  # the duration the verdict reports
    bad_time: int  # records the event clocks rejected
    route_n: int | None  # canary requests on the variant's watched route in the tested windows
    error_bounds: Bounds  # error-rate ratio estimate, lower, upper (at the probe, else the end)
    promote_path: str | None  # how the error test shows non-inferiority: "ratio", "absolute"

    @property
    def lag_s(self) -> float | None:
        """Event time between the last tested window's end and the stream at the decision."""
        return None if self.tested_through_s is None else self.elapsed_s - self.tested_through_s


def bake_spec(v: Variant) -> BakeSpec:
    """The bake of a variant: canary v2 against baseline v1 under the variant's policy."""
    policy = {"alpha": ALPHA, **v.policy}
    return BakeSpec.from_dict(
        {"id": v.name, "service": "shop", "canary": "v2", "baseline": "v1", "policy": policy}
    )


def run_bake(v: Variant, run: int, seed: int) -> Outcome:
    """One seeded bake: draw traffic chunk by chunk, publish each flush's partials as ingest
    does, feed each to the verdict engine as the judge does, until it decides."""
    seq = np.random.SeedSequence([seed, zlib.crc32(v.key.encode()), run])
    gen_seq, order_seq = seq.spawn(2)
    gen = TrafficGenerator(v.traffic, np.random.default_rng(gen_seq))
    spec = bake_spec(v)
    stream = IngestStream(gen, spec, np.random.default_rng(order_seq))
    engine = BakeVerdict(spec)
    route = None if v.watch_route is None else RouteWindows(gen, v.watch_route, spec)
    probe: Bounds | None = None
    t0 = 0.0
    while t0 < v.horizon_s and not engine.decided:
        t1 = min(t0 + v.chunk_s, v.horizon_s)
        recs = gen.records(t0, t1)
        if route is not None:
            route.add(recs)
        for flushed in stream.push(recs, t1):
            feed(engine, flushed.partial, flushed.increment)
            if v.probe_at_s is not None and probe is None and stream.true_clock_s >= v.probe_at_s:
                probe = error_bounds(engine)
            if engine.decided:
                break
        t0 = t1
    return _outcome(engine, stream, route, probe)


class RouteWindows:
    """The canary's requests on one route per event-time window, to count those tested."""

    def __init__(self, gen: TrafficGenerator, route: str, spec: BakeSpec) -> None:
        self._route = gen.route_index(route)
        ev = spec.policy.evidence
        self._window_s, self._lateness_s = ev.window_s, ev.allowed_lateness_s
        self._counts: dict[int, int] = {}

    def add(self, recs: Records) -> None:
        m = (recs.cohort == CANARY) & (recs.route == self._route) & ~recs.skewed
        k = np.floor((EVENT_TIME_START_S + recs.time_s[m]) / self._window_s).astype(np.int64)
        for w, c in zip(*np.unique(k, return_counts=True), strict=True):
            self._counts[int(w)] = self._counts.get(int(w), 0) + int(c)

    def tested(self, watermark_s: float | None) -> int:
        """Requests of the windows closed at ``watermark_s`` (end + lateness <= watermark)."""
        if watermark_s is None:
            return 0
        last = math.floor((watermark_s - self._lateness_s) / self._window_s) - 1
        return sum(c for w, c in self._counts.items() if w <= last)


def error_bounds(engine: BakeVerdict) -> Bounds:
    """The error test's ratio estimate and confidence-sequence bounds now."""
    a = engine.readout().assessments.get("error_rate")
    return (None, None, None) if a is None else (a.estimate, a.lower, a.upper)


def _outcome(
    engine: BakeVerdict, stream: IngestStream, route: RouteWindows | None, probe: Bounds | None
) -> Outcome:
    readout = engine.readout()
    ev = readout.evidence
    reason = "; ".join(readout.reasons)
    if not engine.decided:
        reason = f"undecided: {reason}"
    err = readout.assessments.get("error_rate")
    last = readout.last_event_time_s
    return Outcome(
        status=engine.status.value if engine.decided else None,
        tested_canary=ev.tested_canary,
        tested_baseline=ev.tested_baseline,
        canary_n=engine.canary.requests,
        baseline_n=engine.baseline.requests,
        late_canary=ev.late_canary,
        reason=reason,
        error_reason="" if err is None else err.reason,
        elapsed_s=round(stream.true_clock_s, 3) if math.isfinite(stream.true_clock_s) else 0.0,
        tested_through_s=None if last is None else round(last - EVENT_TIME_START_S, 3),
        duration_s=round(readout.duration_s, 3),
        bad_time=stream.bad_time,
        route_n=None if route is None else route.tested(ev.watermark_s),
        error_bounds=probe if probe is not None else error_bounds(engine),
        promote_path=None if err is None else err.detail.get("promote_path"),
    )


Task = tuple[str, int, int, float | None]


def run_task(task: Task) -> tuple[str, int, Outcome, float]:
    """Worker entry point: one (variant, run), with its CPU time."""
    name, run, seed, max_event_s = task
    t0 = time.process_time()
    outcome = run_bake(with_horizon(VARIANTS[name], max_event_s), run, seed)
    return name, run, outcome, time.process_time() - t0


# -- driver ------------------------------------------------------------------------------------
def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.production",
        description="bakemon's verdicts on production-shaped traffic (issue 9's situations).",
    )
    p.add_argument("--runs", type=int, default=DEFAULT_RUNS, help="runs of each A/A variant")
    p.add_argument("--seed", type=int, default=20240901)
    p.add_argument("--jobs", type=int, default=2, help="worker processes")
    p.add_argument(
        "--quick",
        action="store_true",
        help=f"smoke run: --runs {QUICK_RUNS} (every variant, a minute or two)",
    )
    p.add_argument("--only", default=None, help="scenario numbers or names, comma-separated")
    p.add_argument(
        "--unscaled",
        action="store_true",
        help="every selected variant gets --runs runs (the acceptance runs: no per-variant share)",
    )
    p.add_argument("--out", type=Path, default=RESULTS_DIR, help="output directory")
    p.add_argument("--code-label", default=None, help="what code is measured (default: from git)")
    p.add_argument(
        "--update",
        action="store_true",
        help="merge into the results already in --out (same --runs and --seed): re-run only --only",
    )
    p.add_argument(
        "--max-event-s", type=float, default=None, help="cap each bake's event time (smoke runs)"
    )
    args = p.parse_args(argv)
    if args.quick:
        args.runs = QUICK_RUNS
    if args.runs < 1 or args.jobs < 1:
        p.error(f"--runs and --jobs must be >= 1, got {args.runs} and {args.jobs}")
    try:
        args.variants = select(args.only)
    except ValueError as exc:
        p.error(str(exc))
    return args


def runs_of(v: Variant, runs: int, unscaled: bool = False) -> int:
    """Runs of a variant: ``runs`` scaled by the variant's share (unless ``unscaled``), at
    least one."""
    return runs if unscaled else max(1, math.ceil(runs * v.runs_scale))


def main(argv: Sequence[str] | None = None) -> int:
    """Run every selected variant, print the tables, write production.md, .json and .png."""
    args = parse_args(argv)
    n_runs = {v.name: runs_of(v, args.runs, args.unscaled) for v in args.variants}
    start = time.perf_counter()
    _log(f"production benchmark: {sum(n_runs.values())} bakes, {args.jobs} jobs")
    outcomes, cpu = _run_all(n_runs, args.seed, args.jobs, args.max_event_s, start)
    wall_s = time.perf_counter() - start
    doc = {
        "settings": _settings(args, wall_s),
        "results": {v.name: summarize(v, outcomes[v.name], cpu[v.name]) for v in args.variants},
        "runs": {name: [_raw(o) for o in outs] for name, outs in outcomes.items()},
    }
    path = args.out / "production.json"
    if args.update and path.exists():
        doc = _merged(json.loads(path.read_text()), doc)
    table = render_markdown(doc["results"], doc["settings"], doc["runs"])
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "production.md").write_text(table)
    path.write_text(dump_json(doc))
    plot(doc["results"], doc["runs"], args.out / "production.png")
    print(table)
    _log(f"done in {wall_s:.1f}s; wrote {args.out}/production.md, .json, .png")
    return 0


def _raw(o: Outcome) -> list[Any]:
    """One run in production.json: status, tested and served canary requests, the event time
    at the decision, its lag behind the last tested window, the reported duration."""
    lag = o.lag_s
    return [
        o.status,
        o.tested_canary,
        o.canary_n,
        o.elapsed_s,
        None if lag is None else round(lag, 1),
        o.duration_s,
    ]


def dump_json(doc: dict[str, Any]) -> str:
    """The results document: settings and results indented, each variant's runs on one line."""
    head = json.dumps({k: v for k, v in doc.items() if k != "runs"}, indent=1, default=str)
    runs = ",\n".join(
        f"  {json.dumps(name)}: {json.dumps(r, separators=(',', ':'))}"
        for name, r in doc["runs"].items()
    )
    return f'{head[:-2]},\n "runs": {{\n{runs}\n }}\n}}\n'


def _merged(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """``new``'s variants replace ``old``'s; every variant's runs are seeded by its own name and
    run index, so the merge equals one run of all of them. Refuses other --runs or --seed."""
    for key in ("runs", "seed", "alpha", "max_event_s"):
        if old["settings"].get(key) != new["settings"][key]:
            msg = f"--update needs the same {key} as the results it merges into: {old['settings'].get(key)!r}"
            raise SystemExit(msg)
    order = [n for n in VARIANTS if n in old["results"] or n in new["results"]]
    settings = dict(new["settings"])
    settings["wall_s"] = round(old["settings"]["wall_s"] + new["settings"]["wall_s"], 1)
    settings["variants"] = old["settings"]["variants"] | new["settings"]["variants"]
    settings["updated"] = sorted(set(old["settings"].get("updated", [])) | set(new["results"]))
    return {
        "settings": settings,
        "results": {n: new["results"].get(n) or old["results"][n] for n in order},
        "runs": {n: new["runs"].get(n) or old["runs"][n] for n in order},
    }


_log = functools.partial(print, file=sys.stderr, flush=True)


def _run_all(
    n_runs: dict[str, int], seed: int, jobs: int, max_event_s: float | None, start: float
) -> tuple[dict[str, list[Outcome]], dict[str, float]]:
    """Every (variant, run), in worker processes when ``jobs`` > 1, with progress on stderr."""
    tasks: list[Task] = [(n, r, seed, max_event_s) for n, k in n_runs.items() for r in range(k)]
    slots: dict[str, list[Outcome | None]] = {n: [None] * k for n, k in n_runs.items()}
    cpu = dict.fromkeys(n_runs, 0.0)
    done = dict.fromkeys(n_runs, 0)

    def collect(name: str, run: int, outcome: Outcome, cpu_s: float) -> None:
        slots[name][run] = outcome
        cpu[name] += cpu_s
        done[name] += 1
        k, elapsed = n_runs[name], time.perf_counter() - start
        if done[name] == k:
            _log(f"[{elapsed:7.1f}s] {name:<20} {k} runs done, cpu {cpu[name]:7.1f}s")
        elif done[name] % max(1, k // 4) == 0:
            _log(f"[{elapsed:7.1f}s] {name:<20} {done[name]}/{k}")

    if jobs == 1:
        for task in tasks:
            collect(*run_task(task))
    else:
        with mp.Pool(jobs) as pool:
            for item in pool.imap_unordered(run_task, tasks, chunksize=2):
                collect(*item)
    outcomes = {n: [o for o in outs if o is not None] for n, outs in slots.items()}
    return outcomes, cpu


def _code_version() -> dict[str, Any]:
    """The commit measured and whether the verdict code differs from it (read-only git)."""
    root = Path(__file__).absolute().parents[2]

    def git(*cmd: str) -> str:
        try:
            out = subprocess.run(
                ["git", *cmd], cwd=root, capture_output=True, text=True, timeout=10, check=True
            )
        except (OSError, subprocess.SubprocessError):
            return ""
        return out.stdout.strip()

    changed = git("status", "--porcelain", "--", "detectors", "monitor")
    return {"commit": git("rev-parse", "HEAD") or "unknown", "verdict_code_changed": changed}


def _settings(args: argparse.Namespace, wall_s: float) -> dict[str, Any]:
    """The settings block of production.json (and the markdown header)."""
    return {
        "runs": args.runs,
        "seed": args.seed,
        "only": args.only,
        "unscaled": args.unscaled,
        "alpha": ALPHA,
        "jobs": args.jobs,
        "max_event_s": args.max_event_s,
        "wall_s": round(wall_s, 1),
        "code": _code_version()
        if args.code_label is None
        else {"commit": args.code_label, "verdict_code_changed": ""},
        "variants": {
            v.name: {
                "runs": runs_of(v, args.runs, args.unscaled),
                "truth": v.truth,
                "policy": dict(v.policy),
                "horizon_s": v.horizon_s,
                "traffic": {k: _plain(x) for k, x in v.traffic.describe().items()},
            }
            for v in args.variants
        },
    }


def _plain(x: Any) -> Any:
    """Dataclasses as dicts (JSON-able)."""
    if hasattr(x, "__dataclass_fields__"):
        return asdict(x)
    if isinstance(x, tuple):
        return [_plain(y) for y in x]
    return x
