"""The record fuzzer (issue 10): valid request lines and seeded mutations of them through a
running ``bakemon run --roles ingest,judge``. The process must live; every record is either
counted (tagged or untagged) or rejected; every reject is counted by reason on the ingest
process's ``/metrics`` and dead-lettered with that reason; the per-reason counts match the
decoder run in-process on the same lines (the reference), and RSS stays bounded.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from benchmarks.faults.cluster import LAYOUT, Cluster, scrape, service_log, wait_for
from monitor.records.decode import REASON_BAD_TIME, decode_batch
from monitor.records.fieldmap import PRESETS

__all__ = ["FuzzResult", "fuzz_lines", "run_fuzz"]


def _obj(line: bytes) -> dict[str, Any]:
    return dict(orjson.loads(line))


_WRONG: list[Any] = [
    None,
    True,
    "12",
    "abc",
    [],
    {},
    [1],
    -1,
    -1e308,
    1e308,
    0,
    "NaN",
    "Infinity",
    "",
]


def _mutate(line: bytes, rng: random.Random) -> bytes:
    """One seeded mutation of a valid line (some stay valid: unknown versions, extra keys)."""
    kind = rng.randrange(16)
    if kind == 0:  # truncated
        return line[: rng.randrange(len(line))]
    if kind == 1:  # flipped bytes
        b = bytearray(line)
        for _ in range(rng.randint(1, 4)):
            b[rng.randrange(len(b))] = rng.randrange(256)
        return bytes(b)
    if kind == 2:  # invalid UTF-8 in a string
        return line.replace(b'"v', b'"\xff\xfev', 1)
    if kind == 3:  # not an object
        return rng.choice([b"[1,2]", b"42", b'"x"', b"null", b"true", b"[]"])
    if kind == 4:  # empty or blank
        return rng.choice([b"", b" ", b"\n", b"{}"])
    d = _obj(line)
    key = rng.choice(["ts", "service", "version", "status", "latency_ms"])
    if kind == 5:  # a field missing
        d.pop(key, None)
    elif kind in (6, 7):  # a wrong type or value
        d[key] = rng.choice(_WRONG)
    elif kind == 8:  # time far off or in the wrong unit
        d["ts"] = rng.choice([d["ts"] * 1000, d["ts"] + 86_400 * 365, 1e20, -5.0, d["ts"] - 1e6])
    elif kind == 9:  # status out of range
        d["status"] = rng.choice([0, 99, 600, 1000, -200, 2**63, 200.5])
    elif kind == 10:  # latency out of range
        d["latency_ms"] = rng.choice([-1.0, 1e15, -0.0, 1e-300])
    elif kind == 11:  # unknown version or service (valid, untagged)
        d[rng.choice(["version", "service"])] = f"x{rng.randrange(10**6)}"
    elif kind == 12:  # extra and nested fields (valid)
        d["extra"] = {"a": [1, {"b": None}], "c": "d" * rng.randrange(2000)}
    elif kind == 13:  # deep nesting
        return b"[" * 2000 + b"]" * 2000
    elif kind == 14:  # duplicate keys: JSON allows them, the last wins
        return line[:-1] + b',"status":503}'
    else:  # a large line (well under the broker's message limit)
        d["route"] = "/" + "r" * rng.randrange(10_000, 200_000)
    return orjson.dumps(d)


def fuzz_lines(n: int, seed: int, bad_share: float = 0.5) -> list[bytes]:
    """``n`` lines: valid two-service request lines, ``bad_share`` of them mutated."""
    rng = random.Random(seed)
    base = service_log(min(n, 200_000), seed=seed)
    out = []
    for i in range(n):
        line = base[i % len(base)]
        out.append(_mutate(line, rng) if rng.random() < bad_share else line)
    return out


def reference_rejects(lines: list[bytes], now_s: float) -> Counter[str]:
    """Rejections by reason as the decoder sees them (Kafka timestamps ``now_s`` fill an absent
    time, as ingest does); ``bad_time`` is left out (it depends on each partition's clock)."""
    out: Counter[str] = Counter()
    for i in range(0, len(lines), 5000):
        chunk = lines[i : i + 5000]
        r = decode_batch(chunk, PRESETS["plain"], default_time_s=np.full(len(chunk), now_s))
        out.update({k: v for k, v in r.rejected_by_reason.items() if k != REASON_BAD_TIME})
    return out


@dataclass
class FuzzResult:
    records: int
    wall_s: float
    rejected: dict[str, int]
    dead_letters: dict[str, int]
    reference: dict[str, int]
    consumed: int
    tagged: int
    max_rss_mb: float
    alive: bool
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures


def _metric(text: str, name: str) -> dict[str, float]:
    """Samples of one counter: label value (or "") → value."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith(name + "_total"):
            head, _, value = line.rpartition(" ")
            label = head.partition('"')[2].rpartition('"')[0]
            out[label] = float(value)
    return out


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return 0.0


def _dead_letters(bootstrap: str, expect: int, timeout_s: float = 120.0) -> Counter[str]:
    """Dead letters by their ``bakemon.reason`` header (every record, not compacted)."""
    from kafka import KafkaConsumer, TopicPartition

    tp = TopicPartition(LAYOUT.dead_letter_topic, 0)
    c = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    out: Counter[str] = Counter()
    try:
        c.assign([tp])
        c.seek_to_beginning(tp)
        end = c.end_offsets([tp])[tp]
        deadline = time.monotonic() + timeout_s
        while c.position(tp) < end and time.monotonic() < deadline:
            for recs in c.poll(1000, max_records=50_000).values():
                for r in recs:
                    out[dict(r.headers).get("bakemon.reason", b"?").decode()] += 1
    finally:
        c.close()
    if sum(out.values()) < expect:
        out["(unread)"] = expect - sum(out.values())
    return out


def run_fuzz(
    bootstrap: str,
    workdir: Path,
    *,
    records: int,
    seed: int = 3,
    chunks: int = 20,
    timeout_s: float = 600.0,
    progress: Callable[[str], None] = lambda _: None,
) -> FuzzResult:
    lines = fuzz_lines(records, seed)
    now = time.time()
    want = reference_rejects(lines, now)
    cluster = Cluster(bootstrap, workdir)
    proc = cluster.add("ingest,judge")
    t0 = time.monotonic()
    max_rss = 0.0
    failures: list[str] = []
    try:
        wait_for(lambda: proc.ops_port() is not None, 60, "the operations port", cluster=cluster)
        port = proc.ops_port()
        assert port is not None and proc.popen is not None
        step = -(-records // chunks)
        for i in range(0, records, step):
            cluster.produce(lines[i : i + step], start=i)
            max_rss = max(max_rss, _rss_mb(proc.popen.pid))
            progress(f"produced {min(i + step, records):,}/{records:,}")

        def consumed() -> bool:
            nonlocal max_rss
            max_rss = max(max_rss, _rss_mb(proc.popen.pid))  # type: ignore[union-attr]
            return _metric(scrape(port), "bakemon_records_consumed").get("", 0) >= records

        wait_for(consumed, timeout_s, f"{records:,} records consumed", cluster=cluster)
        tagged = int(_metric(scrape(port), "bakemon_records_tagged").get("", 0))

        def counted() -> int:
            return sum(
                d["progress"]["canary_requests"] + d["progress"]["baseline_requests"]
                for d in cluster.documents().values()
            )

        try:
            wait_for(lambda: counted() >= tagged, 60, "the judge's totals", cluster=cluster)
        except AssertionError as exc:
            failures.append(str(exc))
        time.sleep(2.0)  # the last checkpoint's dead letters; anything counted twice
        text = scrape(port)
        alive = proc.alive()
        judged = counted()
    finally:
        cluster.stop_all()
    rejected = {k: int(v) for k, v in _metric(text, "bakemon_records_rejected").items() if v}
    dead = _dead_letters(bootstrap, sum(rejected.values()))
    consumed_n = int(_metric(text, "bakemon_records_consumed").get("", 0))
    if not alive:
        failures.append("the process died")
    if consumed_n != records:
        failures.append(f"consumed {consumed_n:,} of {records:,}")
    if dict(dead) != rejected:
        failures.append(f"dead letters by reason {dict(dead)} != rejected {rejected}")
    mismatch = {
        r: (rejected.get(r, 0), n)
        for r, n in {**want, **{k: 0 for k in rejected if k != REASON_BAD_TIME}}.items()
        if rejected.get(r, 0) != want.get(r, 0)
    }
    if mismatch:
        failures.append(f"rejected (got, reference) differ: {mismatch}")
    if judged != tagged:
        failures.append(f"judge counted {judged:,} requests, ingest tagged {tagged:,}")
    return FuzzResult(
        records=records,
        wall_s=time.monotonic() - t0,
        rejected=rejected,
        dead_letters=dict(dead),
        reference=dict(want),
        consumed=consumed_n,
        tagged=tagged,
        max_rss_mb=max_rss,
        alive=alive,
        failures=failures,
    )
