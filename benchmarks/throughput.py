"""Ingest throughput against a bare kafka-python poll loop on the same topic, in one run.

Run (from the repository root)::

    .venv/bin/python benchmarks/throughput.py                  # embedded broker, 300k records
    .venv/bin/python benchmarks/throughput.py --records 1000000 --bootstrap-servers host:9092

It produces N simulated request records (the plain JSON shape, two services with a bake each) to
a fresh topic, then alternately measures, ``--repeats`` times each:

* ``bare poll``: a kafka-python consumer in a fresh group polling the topic until it has seen N
  records (the ceiling: what the client itself can deliver);
* ``bakemon ingest``: :class:`monitor.pipeline.ingest.Ingest` on the same topic, fresh group: decode,
  tag, summarise, publish partials and commit, until N records are processed.

Both are timed from the first record received to the last processed (group joins excluded).
It prints a table, the ratio of medians (target: ingest ≥ 80 % of the bare loop), and writes
``throughput.md``, ``throughput.json`` and ``throughput.png`` to ``--out``. With ``--all`` it
then runs the other tables of issue 13's point 7, each writing its own files: confluent-kafka
against its bare loop (``python -m benchmarks.confluent``), ingest at 1 to 1,000 bakes on both
clients (``python -m benchmarks.ingest_bakes``) and the judge's cost, lag and memory at 1 to
1,000 bakes (``python -m benchmarks.scaling``); decision latency is
``benchmarks/decision_latency.py``.
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

from bakesim.scenario import Scenario, ServiceSpec, iter_chunks, to_json_lines
from monitor.bakes.spec import BakeSpec, Registry
from monitor.kafka.broker import EmbeddedBroker
from monitor.kafka.io import KafkaSink, KafkaSource
from monitor.kafka.topics import TopicLayout, ensure_topics
from monitor.pipeline.ingest import MAX_POLL_RECORDS, Ingest
from monitor.records.fieldmap import PRESETS

TARGET_RATIO = 0.80


def _produce(bootstrap: str, topic: str, n: int, partitions: int) -> None:
    from kafka import KafkaProducer

    p = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=50, batch_size=1024 * 1024, acks=1)
    sc = Scenario(
        services=(
            ServiceSpec(name="checkout"),
            ServiceSpec(name="search", baseline_version="v7", canary_version="v8"),
        ),
        seed=1,
    )
    i = 0
    t0 = time.monotonic()
    for cols in iter_chunks(sc, total_requests=n, chunk_requests=20_000):
        for line in to_json_lines(cols):
            p.send(topic, line, partition=i % partitions)
            i += 1
        print(f"\r  produced {i:,}/{n:,}", end="", file=sys.stderr)
    p.flush()
    p.close()
    print(f"\r  produced {n:,} records in {time.monotonic() - t0:.1f}s", file=sys.stderr)


def _bare(bootstrap: str, topic: str, n: int) -> float:
    src = KafkaSource(bootstrap, group_id=f"bench-bare-{uuid.uuid4().hex[:8]}", topics=[topic])
    seen = 0
    t0 = None
    while seen < n:
        batch = src.poll(0.5, MAX_POLL_RECORDS)  # as much per poll as ingest asks for
        for recs in batch.values():
            if recs and t0 is None:
                t0 = time.perf_counter()
            seen += len(recs)
    dt = time.perf_counter() - (t0 or time.perf_counter())
    src.close()
    return n / dt


def _ingest(bootstrap: str, topic: str, n: int) -> float:
    prefix = f"bench{uuid.uuid4().hex[:6]}."
    layout = TopicLayout(prefix, partials_partitions=4)
    ensure_topics(bootstrap, layout)
    registry = Registry(
        [
            BakeSpec.from_dict(
                {"id": "checkout-v42", "service": "checkout", "canary": "v42", "baseline": "v41"}
            ),
            BakeSpec.from_dict(
                {"id": "search-v8", "service": "search", "canary": "v8", "baseline": "v7"}
            ),
        ]
    )
    src = KafkaSource(bootstrap, group_id=f"bench-ingest-{uuid.uuid4().hex[:8]}", topics=[topic])
    sink = KafkaSink(bootstrap)
    ingest = Ingest(src, sink, layout, lambda: registry, PRESETS["plain"], flush_interval_s=1.0)
    t0 = None
    while ingest.stats.records < n:
        got = ingest.step(0.5)
        if got and t0 is None:
            t0 = time.perf_counter() - 0.0
    ingest.checkpoint()
    dt = time.perf_counter() - (t0 or time.perf_counter())
    src.close()
    sink.close()
    return n / dt


def main(argv: list[str] | None = None) -> int:
    """Produce the topic, measure both loops alternately, print the table, write the results."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--records", type=int, default=300_000)
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--bootstrap-servers", help="an existing broker (default: embedded Tansu)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    ap.add_argument(
        "--all",
        action="store_true",
        help="then every other table of issue 13's point 7: confluent-kafka against its bare "
        "loop (when installed), ingest at 1-1,000 bakes on both clients, the judge's scaling",
    )
    args = ap.parse_args(argv)
    broker = None if args.bootstrap_servers else EmbeddedBroker().start()
    bootstrap = args.bootstrap_servers or broker.bootstrap_servers  # type: ignore[union-attr]
    load = [os.getloadavg()[0]]  # other work on the machine skews both loops (the ratio less)
    try:
        bare, ingest = _measure(bootstrap, args.records, args.partitions, args.repeats)
    finally:
        if broker is not None:
            broker.stop()
    load.append(os.getloadavg()[0])
    b, i = statistics.median(bare), statistics.median(ingest)
    ratio = i / b
    rows = [("bare kafka-python poll", bare, b), ("bakemon ingest (kafka-python)", ingest, i)]
    where = "embedded Tansu" if broker else bootstrap
    table = _table(args.records, args.partitions, args.repeats, where, rows, ratio, load)
    print(table)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "throughput.md").write_text(table + "\n")
    result: dict[str, Any] = {
        "records": args.records,
        "bare": bare,
        "ingest": ingest,
        "ratio": ratio,
        "load_average_1m": load,
    }
    (out / "throughput.json").write_text(json.dumps(result, indent=2) + "\n")
    _plot(rows, ratio, out / "throughput.png")
    if args.all:
        _the_other_tables(args.out)
    return 0


def _the_other_tables(out: str) -> None:
    """benchmarks.confluent, benchmarks.ingest_bakes and benchmarks.scaling, in that order."""
    import importlib.util

    root = str(Path(__file__).resolve().parent.parent)
    if root not in sys.path:  # run as a script: the repository root is not on the path
        sys.path.insert(0, root)
    from benchmarks import confluent, ingest_bakes, scaling

    if importlib.util.find_spec("confluent_kafka") is not None:
        confluent.main(["--out", out])
    else:
        print("confluent-kafka is not installed: pip install 'bakemon[confluent]'", file=sys.stderr)
    ingest_bakes.main(["--out", out])
    scaling.main(["--out", out])


def _measure(
    bootstrap: str, records: int, partitions: int, repeats: int
) -> tuple[list[float], list[float]]:
    """(bare poll, bakemon ingest) records/s of each run, the two loops alternating."""
    topic = f"bench-requests-{uuid.uuid4().hex[:6]}"
    ensure_topics(bootstrap, TopicLayout("benchsetup."), extra=[(topic, partitions)])
    _produce(bootstrap, topic, records, partitions)
    bare: list[float] = []
    ingest: list[float] = []
    for r in range(repeats):
        bare.append(_bare(bootstrap, topic, records))
        print(f"  run {r + 1}: bare poll {bare[-1]:,.0f} records/s", file=sys.stderr)
        ingest.append(_ingest(bootstrap, topic, records))
        print(f"  run {r + 1}: bakemon ingest {ingest[-1]:,.0f} records/s", file=sys.stderr)
    return bare, ingest


Row = tuple[str, list[float], float]


def _table(
    records: int,
    partitions: int,
    repeats: int,
    where: str,
    rows: list[Row],
    ratio: float,
    load: list[float],
) -> str:
    met = "met" if ratio >= TARGET_RATIO else "NOT met"
    lines = [
        "# Ingest throughput",
        "",
        f"{records:,} records (plain JSON, ~165 B), {partitions} partitions, "
        f"{where}, {repeats} alternating runs each, one process; "
        f"{os.cpu_count()} CPUs, 1-minute load average {load[0]:.1f} before, {load[-1]:.1f} after.",
        "",
        "| loop | runs (records/s) | median records/s |",
        "|---|---|---|",
        *[f"| {name} | {', '.join(f'{x:,.0f}' for x in xs)} | {m:,.0f} |" for name, xs, m in rows],
        "",
        f"**ingest / bare = {ratio:.2f}** (target ≥ {TARGET_RATIO:.2f}: {met})",
    ]
    return "\n".join(lines)


def _plot(rows: list[Row], ratio: float, path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 3.2))
        ax.barh([r[0] for r in rows], [r[2] for r in rows], color=["#999999", "#1f77b4"])
        for y, (_, xs, _) in enumerate(rows):
            ax.plot(xs, [y] * len(xs), "k|", markersize=12)
        ax.set_xlabel("records/s (median; ticks = runs)")
        ax.set_title(f"ingest / bare poll = {ratio:.2f} (target ≥ {TARGET_RATIO:.2f})")
        fig.tight_layout()
        fig.savefig(path, dpi=120)
    except ImportError:
        print("matplotlib not installed: no plot", file=sys.stderr)


if __name__ == "__main__":
    raise SystemExit(main())
