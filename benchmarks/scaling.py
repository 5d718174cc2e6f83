"""How ingest and the judge scale with the number of active bakes (issue 13, point 4).

Run (from the repository root)::

    .venv/bin/python -m benchmarks.scaling                     # 1, 10, 100, 1,000 bakes
    .venv/bin/python -m benchmarks.scaling --bakes 1,100 --records 100000

For each bake count N, a fresh process (so resident memory is its own) builds N services with a
bake each (canary v2 against baseline v1, a policy that cannot decide in the run, so every bake
stays active), produces ``--records`` plain-JSON requests spread over the services at ``--rate``
requests per second of event time (default 5,000/s, 60 s: a busy ingest process; ``--rate 333``
spreads 100k requests over 5 minutes, a small service's traffic split a thousand ways) to an
in-memory broker (our own Source/Sink fakes: the subject here is
our code's cost per bake, not the client's; ``benchmarks/throughput.py`` measures the client),
and measures, in CPU seconds of that process (the clock moves with the records' event time, as
when tailing a live topic: a flush per second of it, a window every ten):

* ingest: decode, tag, summarise, flush partials every second of a simulated clock and commit,
  until every record is processed — records per CPU-second;
* the judge: fold every partial and source clock it finds into its bakes' verdicts and
  checkpoint — partials per CPU-second, µs per partial, and whether its totals are exact (every
  tagged request counted once);
* resident memory (RSS) added over each role's run. It includes the messages the in-memory
  broker came to hold meanwhile (partials, snapshots, documents: in production they live in
  Kafka, not in bakemon's processes), shown apart as "broker-held" (stored at their own size,
  as a broker holds them); an RSS delta below the broker-held size means the role's state
  fitted in memory the process had already freed.

The table gives each count's ingest rate as a ratio of the 1-bake rate measured in the same run
(target at 1,000 bakes: ≥ 0.8), the judge's µs per partial (target ≤ 100) and RSS (target
< 300 MB per process). It writes ``scaling.md``, ``scaling.json`` and ``scaling.png`` to
``--out``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson

INGEST_RATIO_TARGET = 0.8
JUDGE_US_TARGET = 100.0
RSS_TARGET_MB = 300.0
T0 = 1_795_824_000.0
DEFAULT_RATE = 5_000.0


def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _held_mb(broker: Any) -> float:
    """Memory of the messages the in-memory broker holds, in MB (Python object sizes of each
    record, its key, value and headers): Kafka's, not bakemon's, so it is taken out of the
    roles' RSS deltas (a 1,000-bake run stores ~170k partials and as many snapshots)."""
    total = 0
    for logs in broker._logs.values():
        for part in logs:
            for r in part:
                total += sys.getsizeof(r) + sys.getsizeof(r.value) + sys.getsizeof(r.key)
                total += sys.getsizeof(r.headers)
    return total / 2**20


def lines(
    n_records: int, n_bakes: int, span_s: float, seed: int = 1, t0: float = T0
) -> list[bytes]:
    """Plain-JSON requests spread uniformly over ``n_bakes`` services (svc0.., canary v2 on
    20 %, 1 % errors) over ``span_s`` seconds of event time from ``t0``."""
    rng = np.random.default_rng(seed)
    svc = rng.integers(0, n_bakes, n_records)
    canary = rng.random(n_records) < 0.2
    errors = rng.random(n_records) < 0.01
    lat = np.round(rng.lognormal(3.0, 0.5, n_records), 3)
    ts = t0 + np.sort(rng.random(n_records)) * span_s
    return [
        orjson.dumps(
            {
                "ts": float(ts[i]),
                "service": f"svc{svc[i]}",
                "version": "v2" if canary[i] else "v1",
                "status": 500 if errors[i] else 200,
                "latency_ms": float(lat[i]),
            }
        )
        for i in range(n_records)
    ]


def measure_one(n_bakes: int, n_records: int, rate: float = DEFAULT_RATE) -> dict[str, Any]:
    """One bake count, in this process: ingest and judge CPU costs and RSS deltas."""
    from monitor.bakes.spec import BakeSpec, Registry
    from monitor.kafka.memory import MemoryBroker, MemorySink, MemorySource
    from monitor.kafka.topics import TopicLayout
    from monitor.pipeline.ingest import Ingest
    from monitor.pipeline.judge import Judge
    from monitor.records.fieldmap import PRESETS

    layout = TopicLayout("s.", partials_partitions=4)
    policy = {"min_canary_requests": 10**9}
    spec = {"canary": "v2", "baseline": "v1", "policy": policy, "start": T0 - 60}
    registry = Registry(
        [
            BakeSpec.from_dict({"id": f"svc{k}-v2", "service": f"svc{k}", **spec})
            for k in range(n_bakes)
        ]
    )
    broker = MemoryBroker()
    broker.create_topics((name, parts) for name, parts, _ in layout.specs())
    broker.create_topic("requests", 4)
    span_s = n_records / rate
    for i, line in enumerate(lines(n_records, n_bakes, span_s)):
        broker.append("requests", line, partition=i % 4)
    gc.collect()
    rss0, held0 = _rss_mb(), _held_mb(broker)

    now = [0.0]
    ing = Ingest(
        # Polls of a quarter second of traffic (as tailing with a 0.2 s poll), a flush a second.
        MemorySource(
            broker,
            group_id="i",
            topics=["requests"],
            fetch_records=max(50, min(5_000, int(rate) // 4)),
        ),
        MemorySink(broker),
        layout,
        lambda: registry,
        PRESETS["plain"],
        flush_interval_s=1.0,
        clock=lambda: now[0],
    )
    cpu = time.process_time()
    done = 0
    while done < n_records:
        moved = ing.step(0.0)
        # Live tailing: the clock moves as far as the event time of the records just read, so
        # flushes (every second) and windows (10 s) come in the proportion they do in production.
        now[0] += moved / rate
        done += moved
        if not moved and not sum(ing.source.lag().values()):
            break
    ing.checkpoint()
    ingest_cpu = time.process_time() - cpu
    rss_ingest, held_ingest = _rss_mb(), _held_mb(broker)
    # Partials are counted one per (bake, source block) as the judge folds them; a message
    # carries a bake's partials of one flush (a bundle), or a source clock.
    partials, messages = ing.stats.partials, ing.stats.messages
    tagged, clocks = ing.stats.tagged, ing.stats.clocks
    del ing
    gc.collect()
    rss1, held1 = _rss_mb(), _held_mb(broker)

    jnow = [0.0]
    judge = Judge(
        MemorySource(broker, group_id="j", topics=[layout.partials], fetch_records=2_000),
        MemorySink(broker),
        layout,
        lambda: registry,
        lambda tps: MemorySource(broker, partitions=list(tps)),
        checkpoint_interval_s=1.0,
        clock=lambda: jnow[0],
    )
    cpu = time.process_time()
    for _ in range(1_000_000):
        moved = judge.step(0.0)
        jnow[0] += 0.05
        if not moved and not sum(judge.source.lag().values()):
            break
    judge.checkpoint()
    judge_cpu = time.process_time() - cpu
    judged = sum(
        st.verdict.canary.requests + st.verdict.baseline.requests for st in judge.bakes.values()
    )
    return {
        "bakes": n_bakes,
        "records": n_records,
        "processed": done,
        "rate": rate,
        "tagged": tagged,
        "judged": judged,
        "clocks": clocks,
        "ingest_cpu_s": ingest_cpu,
        "ingest_records_per_cpu_s": done / ingest_cpu,
        "partials": partials,
        "messages": messages,
        # the judge's share of one core at this traffic rate (< 1: it keeps up)
        "judge_core_share": judge_cpu / (n_records / rate),
        "judge_cpu_s": judge_cpu,
        "judge_us_per_partial": 1e6 * judge_cpu / max(partials, 1),
        "judge_partials_per_cpu_s": partials / judge_cpu if judge_cpu else None,
        # RSS added over each role's run, the broker's new messages included (shown apart)
        "ingest_rss_mb": rss_ingest - rss0,
        "judge_rss_mb": _rss_mb() - rss1,
        "ingest_broker_held_mb": held_ingest - held0,
        "judge_broker_held_mb": _held_mb(broker) - held1,
        "broker_held_mb": _held_mb(broker) - held0,
        "process_rss_mb": _rss_mb(),
    }


def _row(r: dict[str, Any], base: float) -> str:
    ratio = r["ingest_records_per_cpu_s"] / base
    return (
        f"| {r['bakes']:,} | {r['ingest_records_per_cpu_s']:,.0f} | {ratio:.2f} | "
        f"{r['partials']:,} ({r.get('messages', 0):,}) | {r['judge_us_per_partial']:,.0f} | "
        f"{r['judge_partials_per_cpu_s']:,.0f} | {r.get('judge_core_share', float('nan')):.2f} | "
        f"{r['ingest_rss_mb']:+.0f} | "
        f"{r['judge_rss_mb']:+.0f} | {r.get('broker_held_mb', float('nan')):.0f} | "
        f"{r['process_rss_mb']:.0f} | "
        f"{'yes' if r['judged'] == r['tagged'] else 'NO'} |"
    )


def table(rows: list[dict[str, Any]]) -> str:
    base = rows[0]["ingest_records_per_cpu_s"]
    head = (
        f"| bakes | ingest records/CPU-s | × {rows[0]['bakes']}-bake rate | partials (messages) | "
        "judge µs/partial | judge partials/CPU-s | judge share of a core | ingest +RSS MB | "
        "judge +RSS MB | broker-held MB | process RSS MB | judge totals exact |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|"
    )
    return "\n".join([head, *(_row(r, base) for r in rows)])


def _plot(rows: list[dict[str, Any]], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no plot", file=sys.stderr)
        return
    xs = [r["bakes"] for r in rows]
    base = rows[0]["ingest_records_per_cpu_s"]
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.2))
    a.semilogx(xs, [r["ingest_records_per_cpu_s"] / base for r in rows], "o-")
    a.axhline(INGEST_RATIO_TARGET, color="grey", ls="--")
    a.set(xlabel="active bakes", ylabel="ingest rate / 1-bake rate", ylim=(0, 1.2))
    b.loglog(xs, [r["judge_us_per_partial"] for r in rows], "o-")
    b.axhline(JUDGE_US_TARGET, color="grey", ls="--")
    b.set(xlabel="active bakes", ylabel="judge µs per partial")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def _write(dest: Path, rows: list[dict[str, Any]], flags: str) -> None:
    text = table(rows)
    (dest / "scaling.md").write_text(f"`python -m benchmarks.scaling {flags}`\n\n{text}\n")
    (dest / "scaling.json").write_text(json.dumps(rows, indent=1))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.scaling", description=__doc__.split("\n")[0]
    )
    p.add_argument("--bakes", default="1,10,100,1000", help="bake counts, comma-separated")
    p.add_argument("--records", type=int, default=300_000, help="requests per bake count")
    p.add_argument(
        "--rate", type=float, default=DEFAULT_RATE, help="requests per second of event time"
    )
    p.add_argument("--out", default="benchmarks/results", help="directory for the results")
    p.add_argument("--one", type=int, help=argparse.SUPPRESS)  # the child process
    args = p.parse_args(argv)
    if args.one is not None:
        print(json.dumps(measure_one(args.one, args.records, args.rate)))
        return 0
    try:
        counts = [int(x) for x in args.bakes.split(",")]
    except ValueError:
        p.error(f"--bakes must be comma-separated integers, got {args.bakes!r}")
    if not counts or min(counts) < 1 or args.records < 1000 or not args.rate >= 1:
        p.error("--bakes must be >= 1, --records >= 1000 and --rate >= 1")
    dest = Path(args.out)
    dest.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    for n in counts:
        print(f"scaling: {n:,} bakes, {args.records:,} records …", file=sys.stderr, flush=True)
        cmd = [sys.executable, "-m", "benchmarks.scaling", "--one", str(n), "--records", str(args.records), "--rate", str(args.rate)]  # fmt: skip
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
        print(_row(rows[-1], rows[0]["ingest_records_per_cpu_s"]), file=sys.stderr)
        flags = f"--bakes {args.bakes} --records {args.records} --rate {args.rate:g}"
        _write(dest, rows, flags)  # each row kept
    print(table(rows))
    _plot(rows, dest / "scaling.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
