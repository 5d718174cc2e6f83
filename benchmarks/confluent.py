"""Ingest on confluent-kafka against a bare confluent-kafka poll + ``orjson.loads`` loop, in one run.

Run (from the repository root; needs ``pip install 'bakemon[confluent]'``)::

    .venv/bin/python -m benchmarks.confluent                  # embedded broker, 300k records
    .venv/bin/python -m benchmarks.confluent --records 1000000 --bootstrap-servers host:9092

It produces N simulated request records to a fresh topic (as ``benchmarks/throughput.py``), then
alternately measures, ``--repeats`` times each, in a fresh consumer group every time:

* ``bare confluent poll + orjson``: ``Consumer.consume`` batches and ``orjson.loads`` of every
  value (the floor of any ingest on this client: fetch and parse, nothing else);
* ``bakemon ingest (confluent)``: :class:`monitor.pipeline.ingest.Ingest` on
  :class:`monitor.kafka.confluent.ConfluentSource`/``ConfluentSink``: decode, tag, summarise,
  publish partials and commit, until N records are processed.

Both are timed from the first record received to the last processed (group joins excluded), in
wall seconds and in CPU seconds of this process (all threads, librdkafka's included; the broker
is another process). The target (issue 13) is ingest ≥ 0.7× the bare loop per CPU-second. It
prints a table and writes ``confluent.md``, ``confluent.json`` and ``confluent.png`` to ``--out``.
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

import orjson

from benchmarks.throughput import _produce
from monitor.bakes.spec import BakeSpec, Registry
from monitor.kafka.broker import EmbeddedBroker
from monitor.kafka.clients import make_sink, make_source
from monitor.kafka.confluent import COMMON, GROUP_TIMING, THROUGHPUT_CONSUMER
from monitor.kafka.topics import TopicLayout, ensure_topics
from monitor.pipeline.ingest import MAX_POLL_RECORDS, Ingest
from monitor.records.fieldmap import PRESETS

TARGET_RATIO_CPU = 0.70
Run = tuple[float, float]  # (records per wall-second, records per CPU-second)


def _rates(n: int, wall0: float | None, cpu0: float | None) -> Run:
    wall = time.perf_counter() - (wall0 or time.perf_counter())
    cpu = time.process_time() - (cpu0 or time.process_time())
    return n / max(wall, 1e-9), n / max(cpu, 1e-9)


def _bare(bootstrap: str, topic: str, n: int) -> Run:
    from confluent_kafka import Consumer

    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-cbare-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            **COMMON,
            **THROUGHPUT_CONSUMER,
            **GROUP_TIMING,
        }
    )
    c.subscribe([topic])
    seen, parsed = 0, 0
    wall0 = cpu0 = None
    loads = orjson.loads
    while seen < n:
        msgs = c.consume(MAX_POLL_RECORDS, 0.5)  # as much per poll as ingest asks for
        if msgs and wall0 is None:
            wall0, cpu0 = time.perf_counter(), time.process_time()
        values = [v for m in msgs if m.error() is None and (v := m.value()) is not None]
        parsed += len(list(map(loads, values)))
        seen += len(msgs)
    rates = _rates(n, wall0, cpu0)
    c.close()
    assert parsed == n, (parsed, n)
    return rates


def _ingest(bootstrap: str, topic: str, n: int) -> Run:
    layout = TopicLayout(f"bench{uuid.uuid4().hex[:6]}.", partials_partitions=4)
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
    group = f"bench-cingest-{uuid.uuid4().hex[:8]}"
    src = make_source("confluent", bootstrap, group_id=group, topics=[topic])
    sink = make_sink("confluent", bootstrap)
    ingest = Ingest(src, sink, layout, lambda: registry, PRESETS["plain"], flush_interval_s=1.0)
    wall0 = cpu0 = None
    while ingest.stats.records < n:
        got = ingest.step(0.5)
        if got and wall0 is None:
            wall0, cpu0 = time.perf_counter(), time.process_time()
    ingest.checkpoint()
    rates = _rates(n, wall0, cpu0)
    src.close()
    sink.close()
    return rates


def _measure(bootstrap: str, records: int, partitions: int, repeats: int) -> dict[str, list[Run]]:
    topic = f"bench-requests-{uuid.uuid4().hex[:6]}"
    ensure_topics(bootstrap, TopicLayout("benchsetup."), extra=[(topic, partitions)])
    _produce(bootstrap, topic, records, partitions)
    runs: dict[str, list[Run]] = {"bare": [], "ingest": []}
    for r in range(repeats):
        for name, fn in (("bare", _bare), ("ingest", _ingest)):
            runs[name].append(fn(bootstrap, topic, records))
            wall, cpu = runs[name][-1]
            print(f"  run {r + 1}: {name} {wall:,.0f}/s wall, {cpu:,.0f}/CPU-s", file=sys.stderr)
    return runs


LABELS = {"bare": "bare confluent poll + orjson.loads", "ingest": "bakemon ingest (confluent)"}


def _table(
    args: argparse.Namespace, where: str, runs: dict[str, list[Run]], load: list[float]
) -> str:
    med = {
        k: (statistics.median(w for w, _ in v), statistics.median(c for _, c in v))
        for k, v in runs.items()
    }
    ratio_wall = med["ingest"][0] / med["bare"][0]
    ratio_cpu = med["ingest"][1] / med["bare"][1]
    met = "met" if ratio_cpu >= TARGET_RATIO_CPU else "NOT met"
    lines = [
        "# Ingest throughput on confluent-kafka",
        "",
        f"{args.records:,} records (plain JSON, ~165 B), {args.partitions} partitions, {where}, "
        f"{args.repeats} alternating runs each, one process; {os.cpu_count()} CPUs, 1-minute "
        f"load average {load[0]:.1f} before, {load[-1]:.1f} after.",
        "",
        "| loop | runs (records/s wall) | median /s wall | runs (records/CPU-s) | median /CPU-s |",
        "|---|---|---|---|---|",
    ]
    for k, v in runs.items():
        walls = ", ".join(f"{w:,.0f}" for w, _ in v)
        cpus = ", ".join(f"{c:,.0f}" for _, c in v)
        lines.append(f"| {LABELS[k]} | {walls} | {med[k][0]:,.0f} | {cpus} | {med[k][1]:,.0f} |")
    lines += [
        "",
        f"**ingest / bare = {ratio_cpu:.2f} per CPU-s** (target ≥ {TARGET_RATIO_CPU:.2f}: {met}), "
        f"{ratio_wall:.2f} per wall-s",
    ]
    return "\n".join(lines)


def _plot(runs: dict[str, list[Run]], title: str, path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no plot", file=sys.stderr)
        return
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2), sharey=True)
    names = [LABELS[k] for k in runs]
    for ax, idx, unit in (
        (axes[0], 0, "records per wall-second"),
        (axes[1], 1, "records per CPU-second"),
    ):
        meds = [statistics.median(r[idx] for r in v) for v in runs.values()]
        ax.barh(names, meds, color=["#999999", "#1f77b4"])
        for y, v in enumerate(runs.values()):
            ax.plot([r[idx] for r in v], [y] * len(v), "k|", markersize=12)
        ax.set_xlabel(f"{unit} (median; ticks = runs)")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> int:
    """Produce the topic, measure both loops alternately, print the table, write the results."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--records", type=int, default=300_000)
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--bootstrap-servers", help="an existing broker (default: embedded Tansu)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = ap.parse_args(argv)
    broker = None if args.bootstrap_servers else EmbeddedBroker().start()
    bootstrap = args.bootstrap_servers or broker.bootstrap_servers  # type: ignore[union-attr]
    load = [os.getloadavg()[0]]
    try:
        runs = _measure(bootstrap, args.records, args.partitions, args.repeats)
    finally:
        if broker is not None:
            broker.stop()
    load.append(os.getloadavg()[0])
    table = _table(args, "embedded Tansu" if broker else bootstrap, runs, load)
    print(table)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "confluent.md").write_text(table + "\n")
    result: dict[str, Any] = {"records": args.records, "runs": runs, "load_average_1m": load}
    (out / "confluent.json").write_text(json.dumps(result, indent=2) + "\n")
    _plot(runs, table.rsplit("\n", 1)[-1].replace("**", ""), out / "confluent.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
