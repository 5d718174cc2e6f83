"""``python -m benchmarks.faults``: the fault suite's long version (issue 10), printing the
measured table and writing ``benchmarks/results/faults.md``, ``.json`` and ``.png``.

Experiments (``--only``, comma-separated): ``outage`` (broker cut, stall and slow link through
a fault proxy), ``killloop`` (SIGKILLs over split roles vs the fault-free replay), ``fuzz``
(poisoned records), ``http`` (hostile clients), ``flood`` (bake-create attempts). Everything
runs on loopback against embedded brokers and stops by itself.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from benchmarks.faults.flood import run_flood
from benchmarks.faults.fuzz import run_fuzz
from benchmarks.faults.http_abuse import run_http_abuse
from benchmarks.faults.killloop import run_kill_loop
from benchmarks.faults.outage import run_outage
from monitor.kafka.broker import EmbeddedBroker

RESULTS = Path(__file__).resolve().parents[1] / "results"
EXPERIMENTS = ("outage", "killloop", "fuzz", "http", "flood")
Row = tuple[str, str, bool]


def _log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _with_broker(work: Path, fn: Callable[[str], Any]) -> Any:
    with EmbeddedBroker(log_path=work / "tansu.log") as b:
        return fn(b.bootstrap_servers)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.faults", description=__doc__)
    p.add_argument("--only", default=",".join(EXPERIMENTS), help="experiments, comma-separated")
    p.add_argument("--quick", action="store_true", help="small sizes (a few minutes)")
    p.add_argument("--cuts", default="30,300", help="broker cut lengths, seconds")
    p.add_argument("--stall-s", type=float, default=30.0)
    p.add_argument("--slow-s", type=float, default=30.0)
    p.add_argument("--kills", type=int, default=24)
    p.add_argument("--fuzz-records", type=int, default=1_000_000)
    p.add_argument("--idle", type=int, default=500, help="idle connections held")
    p.add_argument("--creates", type=int, default=10_000)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    args.only = [x.strip() for x in args.only.split(",") if x.strip()]
    unknown = set(args.only) - set(EXPERIMENTS)
    if unknown:
        p.error(f"unknown experiments {sorted(unknown)}; choose from {', '.join(EXPERIMENTS)}")
    if args.quick:
        args.cuts, args.stall_s, args.slow_s = "20", 10.0, 10.0
        args.kills, args.fuzz_records, args.creates = 6, 50_000, 2_000
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    rows: list[Row] = []
    raw: dict[str, Any] = {}
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bakemon-faults-") as tmp:
        work = Path(tmp)
        if "outage" in args.only:
            runs = [("cut", float(s)) for s in args.cuts.split(",") if s]
            runs += [("stall", args.stall_s), ("slow", args.slow_s)]
            raw["outage"] = []
            for k, (fault, secs) in enumerate(runs):
                _log(f"outage: {fault} {secs:g}s")
                r = run_outage(work / f"outage-{k}", fault=fault, seconds=secs, progress=_log)
                raw["outage"].append(asdict(r))
                rows.append(
                    (
                        f"broker {fault} for {secs:g} s (one process, all roles)",
                        f"process alive: {r.alive}; /healthz 200 in "
                        f"{r.healthz_checks - r.healthz_failures}/{r.healthz_checks} checks; "
                        f"/readyz named the outage: {r.readyz_named_outage}; {r.log_lines} log "
                        f"lines during it; exact totals: {r.exact}, caught up "
                        f"{r.catch_up_s:.1f} s after healing",
                        r.ok,
                    )
                )
        if "killloop" in args.only:
            _log(f"kill loop: {args.kills} SIGKILLs")
            r = _with_broker(
                work,
                lambda bs: run_kill_loop(
                    bs, work / "killloop", kills=args.kills, records=200_000, seed=args.seed,
                    produce_s=max(30.0, 3.5 * args.kills), gap_s=(1.0, 5.0), progress=_log,
                ),
            )  # fmt: skip
            raw["killloop"] = asdict(r)
            shifts = ", ".join(f"{b} {v['shift_s']:+.0f} s" for b, v in r.bakes.items())
            rows.append(
                (
                    f"{r.kills} SIGKILLs at random points, 2 ingest + 2 judge processes, "
                    f"{r.records:,} records",
                    f"kills {r.kills_by_role}; totals exact: "
                    f"{all(v['totals'] == v['reference_totals'] for v in r.bakes.values())}; "
                    f"statuses as fault-free: "
                    f"{all(v['status'] == v['reference_status'] for v in r.bakes.values())}; "
                    f"decision point vs fault-free: {shifts} (window {r.window_s:g} s); "
                    f"{r.restores_checked - len(r.restores_empty)}/{r.restores_checked} "
                    f"assignments restored their bakes; caught up {r.catch_up_s:.0f} s after "
                    "the last kill",
                    r.ok,
                )
            )
        if "fuzz" in args.only:
            _log(f"fuzz: {args.fuzz_records:,} records")
            r = _with_broker(
                work,
                lambda bs: run_fuzz(
                    bs, work / "fuzz", records=args.fuzz_records, seed=args.seed, progress=_log
                ),
            )
            raw["fuzz"] = asdict(r)
            rows.append(
                (
                    f"{r.records:,} records, half fuzzed, one ingest+judge process",
                    f"alive: {r.alive}; consumed {r.consumed:,}; rejected by reason on /metrics "
                    f"{r.rejected}; dead letters match: {r.dead_letters == r.rejected}; matches "
                    f"the in-process decoder: {not any('reference' in f for f in r.failures)}; "
                    f"tagged {r.tagged:,} = judged; max RSS {r.max_rss_mb:.0f} MB; "
                    f"{r.wall_s:.0f} s",
                    r.ok,
                )
            )
        if "http" in args.only:
            _log(f"HTTP abuse: {args.idle} idle connections")
            r = _with_broker(
                work, lambda bs: run_http_abuse(bs, work / "http", idle=args.idle, progress=_log)
            )
            raw["http"] = asdict(r)
            rows.append(
                (
                    f"HTTP: {r.normal:,} normal requests while {r.idle_held} idle connections "
                    "are held",
                    f"{r.normal_ok}/{r.normal} answered; p50 {r.p50_ms:.1f} ms, p99 "
                    f"{r.p99_ms:.1f} ms (target ≤ 100 ms)",
                    r.normal_ok == r.normal and r.p99_ms <= 100.0,
                )
            )
            rows.append(
                (
                    "HTTP: slowloris, desync, malformed, alert-stream flood, burst",
                    f"slowloris {r.slowloris_closed}/{r.slowloris} closed, the last after "
                    f"{r.slowloris_max_s:.1f} s (read timeout {r.read_timeout_s:g} s); "
                    f"a smuggled request got {r.desync_responses - 1} answers; malformed → "
                    f"{r.malformed}; streams {r.streams_opened} opened, {r.streams_refused}/20 "
                    f"over the cap refused with 503; burst {r.burst_ok}/{r.burst} answered, "
                    f"p99 {r.burst_p99_ms:.0f} ms at 32 in parallel",
                    r.ok,
                )
            )
        if "flood" in args.only:
            _log(f"bake flood: {args.creates:,} create attempts")
            r = _with_broker(
                work,
                lambda bs: run_flood(bs, work / "flood", attempts=args.creates, progress=_log),
            )
            raw["flood"] = asdict(r)
            rows.append(
                (
                    f"{r.attempts:,} bake-create attempts (max_active_bakes {r.cap:,})",
                    f"{r.created:,} created (2 config bakes count), {r.refused_429:,} refused "
                    f"with 429 ({r.reason!r}); create median {r.first_ms:.0f} → "
                    f"{r.last_ms:.0f} ms first to last tenth, refusal {r.refused_first_ms:.1f} "
                    f"→ {r.refused_last_ms:.1f} ms",
                    r.ok,
                )
            )
    wall = time.monotonic() - t0
    table = _render(rows, args, wall)
    print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "faults.md").write_text(table)
    (args.out / "faults.json").write_text(json.dumps({"rows": rows, "raw": raw}, default=str))
    _plot(raw, args.out / "faults.png")
    _log(f"done in {wall:.0f}s; wrote {args.out}/faults.md, .json, .png")
    return 0 if all(ok for _, _, ok in rows) else 1


def _render(rows: list[Row], args: argparse.Namespace, wall_s: float) -> str:
    command = " ".join(["python -m benchmarks.faults", *args.argv])
    lines = [
        "# bakemon under faults and hostile input (issue 10)",
        "",
        f"`{command}` (experiments: {', '.join(args.only)}); {wall_s:.0f} s; "
        "embedded Tansu broker on loopback, `bakemon run` processes; 2 cores.",
        "",
        "| experiment | measured | met |",
        "|---|---|---|",
    ]
    lines += [f"| {e} | {m} | {'yes' if ok else 'NO'} |" for e, m, ok in rows]
    return "\n".join(lines) + "\n"


def _plot(raw: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, axes = plt.subplots(1, 2, figsize=(13, 5))
    if "flood" in raw:
        lat = np.array(raw["flood"]["latencies_ms"])
        axes[0].plot(np.arange(1, lat.size + 1), lat, ".", ms=2)
        axes[0].set_yscale("log")
        axes[0].set_xlabel("create attempt")
        axes[0].set_ylabel("ms")
        axes[0].set_title("bake-create latency (201 then 429 past the cap)")
    if "http" in raw:
        lat = np.sort(np.array(raw["http"]["latencies_ms"]))
        axes[1].plot(lat, np.arange(1, lat.size + 1) / lat.size)
        axes[1].axvline(100, color="k", ls="--", lw=1, label="100 ms")
        axes[1].set_xscale("log")
        axes[1].set_xlabel("ms")
        axes[1].set_title(f"normal requests with {raw['http']['idle_held']} idle connections")
        axes[1].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
