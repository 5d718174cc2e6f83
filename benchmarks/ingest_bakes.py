"""Ingest throughput with 1 to 1,000 active bakes, on the embedded broker, both clients, in one run.

Run (from the repository root)::

    .venv/bin/python -m benchmarks.ingest_bakes                       # 1, 10, 100, 1,000 bakes
    .venv/bin/python -m benchmarks.ingest_bakes --bakes 1,1000 --span-s 600 --clients kafka-python

For each bake count N it produces ``--records`` plain-JSON requests spread uniformly over N
services (canary v2 against baseline v1, 20 % canary) over ``--span-s`` seconds of event time
(default 60: 5,000 requests/s, a busy ingest's traffic; ``--span-s 600`` spreads them ten
times thinner, so each bake's cells hold ten times fewer requests) to a fresh topic of
``--partitions`` partitions. Then, ``--repeats`` times, alternating the counts and the
clients, it runs :class:`monitor.pipeline.ingest.Ingest` with N bakes (a policy that never
decides, so every bake stays active) in a fresh consumer group until every record is
processed: decode, tag, summarise, publish partials (a flush a second of wall time, as in
production) and commit. Each run is timed from the first record received to the last
processed, in wall seconds and CPU seconds of this process.

The table gives each count's median ingest rate as a ratio of the 1-bake rate of the same
client in the same run (the target of issue 13 at 1,000 bakes: ≥ 0.8). It writes
``ingest_bakes.md``, ``ingest_bakes.json`` and ``ingest_bakes.png`` to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from benchmarks.scaling import lines
from monitor.bakes.spec import BakeSpec, Registry
from monitor.errors import ConfigError
from monitor.kafka.broker import EmbeddedBroker
from monitor.kafka.clients import make_sink, make_source, require_client
from monitor.kafka.topics import TopicLayout, ensure_topics
from monitor.pipeline.ingest import Ingest
from monitor.records.fieldmap import PRESETS

TARGET_RATIO = 0.8


def available_clients() -> list[str]:
    """The Kafka clients installed here (confluent-kafka is optional)."""
    out = []
    for kind in ("kafka-python", "confluent"):
        try:
            require_client(kind)
        except ConfigError:
            continue
        out.append(kind)
    return out


Run = tuple[float, float, int]  # (records per wall-second, records per CPU-second, partials)


def _produce(bootstrap: str, topic: str, lines: list[bytes], partitions: int) -> None:
    from kafka import KafkaProducer

    p = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=50, batch_size=1 << 20, acks=1)
    for i, line in enumerate(lines):
        p.send(topic, line, partition=i % partitions)
    p.flush()
    p.close()


def _registry(n_bakes: int, t0: float) -> Registry:
    policy = {"min_canary_requests": 10**12}  # never decides: every bake stays active
    return Registry(
        [
            BakeSpec.from_dict(
                {
                    "id": f"svc{k}-v2",
                    "service": f"svc{k}",
                    "canary": "v2",
                    "baseline": "v1",
                    "start": t0 - 60,
                    "policy": policy,
                }
            )
            for k in range(n_bakes)
        ]
    )


def _ingest(client: str, bootstrap: str, topic: str, n: int, registry: Registry) -> Run:
    layout = TopicLayout(f"bench{uuid.uuid4().hex[:6]}.", partials_partitions=4)
    ensure_topics(bootstrap, layout)
    group = f"bench-bakes-{uuid.uuid4().hex[:8]}"
    src = make_source(client, bootstrap, group_id=group, topics=[topic])
    sink = make_sink(client, bootstrap)
    ingest = Ingest(src, sink, layout, lambda: registry, PRESETS["plain"], flush_interval_s=1.0)
    wall0 = cpu0 = None
    deadline = time.monotonic() + 600  # bounded whatever happens
    while ingest.stats.records < n and time.monotonic() < deadline:
        got = ingest.step(0.5)
        if got and wall0 is None:
            wall0, cpu0 = time.perf_counter(), time.process_time()
    ingest.checkpoint()
    wall = time.perf_counter() - (wall0 or time.perf_counter())
    cpu = time.process_time() - (cpu0 or time.process_time())
    src.close()
    sink.close()
    if ingest.stats.records < n:
        msg = f"ingest processed {ingest.stats.records:,} of {n:,} records in 600 s"
        raise RuntimeError(msg)
    return n / wall, n / cpu, ingest.stats.partials


def _measure(args: argparse.Namespace, bootstrap: str) -> dict[str, dict[int, list[Run]]]:
    t0 = time.time() - args.span_s - 60
    topics: dict[int, str] = {}
    for nb in args.bakes:
        topic = f"bench-bakes-{nb}-{uuid.uuid4().hex[:6]}"
        ensure_topics(bootstrap, TopicLayout("benchsetup."), extra=[(topic, args.partitions)])
        _produce(bootstrap, topic, lines(args.records, nb, args.span_s, t0=t0), args.partitions)
        topics[nb] = topic
        print(f"  produced {args.records:,} records over {nb:,} services", file=sys.stderr)
    runs: dict[str, dict[int, list[Run]]] = {c: {nb: [] for nb in args.bakes} for c in args.clients}
    for r in range(args.repeats):
        for client in args.clients:
            for nb in args.bakes:
                run = _ingest(client, bootstrap, topics[nb], args.records, _registry(nb, t0))
                runs[client][nb].append(run)
                print(
                    f"  run {r + 1} {client} {nb:,} bakes: {run[0]:,.0f} records/s wall, "
                    f"{run[1]:,.0f}/CPU-s, {run[2]:,} partials",
                    file=sys.stderr,
                )
    return runs


def _medians(v: list[Run]) -> tuple[float, float]:
    return statistics.median(r[0] for r in v), statistics.median(r[1] for r in v)


def table(
    args: argparse.Namespace, runs: dict[str, dict[int, list[Run]]], load: list[float]
) -> str:
    lines = [
        "# Ingest throughput by active bakes",
        "",
        f"`python -m benchmarks.ingest_bakes --bakes {','.join(map(str, args.bakes))} "
        f"--records {args.records} --span-s {args.span_s:g} --clients {','.join(args.clients)}`",
        "",
        f"{args.records:,} plain-JSON records over N services and {args.span_s:g} s of event "
        f"time, {args.partitions} partitions, embedded Tansu, flush every second, medians of "
        f"{args.repeats} alternating runs; {os.cpu_count()} CPUs, 1-minute load average "
        f"{load[0]:.1f} before, {load[-1]:.1f} after.",
        "",
        "| client | bakes | records/s wall (runs) | median /s wall | × 1-bake (wall) "
        "| median /CPU-s | × 1-bake (CPU) | partials |",
        "|---|---|---|---|---|---|---|---|",
    ]
    verdicts = []
    for client, by_n in runs.items():
        base = _medians(by_n[min(by_n)])
        for nb, v in by_n.items():
            wall, cpu = _medians(v)
            lines.append(
                f"| {client} | {nb:,} | {', '.join(f'{r[0]:,.0f}' for r in v)} | {wall:,.0f} "
                f"| {wall / base[0]:.2f} | {cpu:,.0f} | {cpu / base[1]:.2f} "
                f"| {statistics.median(r[2] for r in v):,.0f} |"
            )
        top = max(by_n)
        ratio = _medians(by_n[top])[0] / base[0]
        met = "met" if ratio >= TARGET_RATIO else "NOT met"
        verdicts.append(
            f"**{client}: {top:,} bakes at {ratio:.2f}× the 1-bake rate** "
            f"(target ≥ {TARGET_RATIO}: {met})"
        )
    return "\n".join([*lines, "", *verdicts])


def _plot(runs: dict[str, dict[int, list[Run]]], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no plot", file=sys.stderr)
        return
    fig, ax = plt.subplots(figsize=(6, 3.4))
    for client, by_n in runs.items():
        base = _medians(by_n[min(by_n)])[0]
        xs = sorted(by_n)
        ax.plot(xs, [_medians(by_n[n])[0] / base for n in xs], "o-", label=client)
    ax.axhline(TARGET_RATIO, color="#999999", ls="--", lw=1, label="target")
    ax.set_xscale("log")
    ax.set_ylim(0, 1.2)
    ax.set_xlabel("active bakes")
    ax.set_ylabel("ingest rate ÷ 1-bake rate (wall)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bakes", default="1,10,100,1000", help="bake counts, comma-separated")
    ap.add_argument("--records", type=int, default=300_000)
    ap.add_argument("--span-s", type=float, default=60.0, help="event time the records span")
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--clients", default=",".join(available_clients()))
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = ap.parse_args(argv)
    try:
        args.bakes = sorted({int(x) for x in args.bakes.split(",") if x.strip()})
    except ValueError:
        ap.error(f"--bakes must be comma-separated counts, got {args.bakes!r}")
    if not args.bakes or min(args.bakes) < 1:
        ap.error("--bakes needs counts >= 1")
    args.clients = [c.strip() for c in args.clients.split(",") if c.strip()]
    unknown = set(args.clients) - set(available_clients())
    if unknown:
        ap.error(f"--clients: {sorted(unknown)} not installed (have {available_clients()})")
    broker = EmbeddedBroker().start()
    load = [os.getloadavg()[0]]
    try:
        runs = _measure(args, broker.bootstrap_servers)
    finally:
        broker.stop()
    load.append(os.getloadavg()[0])
    text = table(args, runs, load)
    print(text)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "ingest_bakes.md").write_text(text + "\n")
    result: dict[str, Any] = {
        "args": {k: v for k, v in vars(args).items() if k != "out"},
        "runs": {c: {str(n): v for n, v in by_n.items()} for c, by_n in runs.items()},
        "load_average_1m": load,
    }
    (out / "ingest_bakes.json").write_text(json.dumps(result, indent=2) + "\n")
    _plot(runs, out / "ingest_bakes.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
