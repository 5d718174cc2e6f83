"""The kill loop (issue 10): split-role ``bakemon run`` processes SIGKILLed at random points
while requests stream in, each restarted at once; then the totals and the decision points are
compared with the fault-free run (``replay`` of the same records), and every judge assignment
after the bakes' first snapshots must have restored them.
"""

from __future__ import annotations

import datetime as dt
import random
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.faults.cluster import Cluster, reference, service_log, wait_for

__all__ = ["KillLoopResult", "run_kill_loop"]

SLOTS = ("ingest", "ingest", "judge", "judge")
_RESTORE_LINE = re.compile(
    rb"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) INFO bakemon\.judge: "
    rb"judge restored partition (\d+): (\d+) bakes"
)


@dataclass
class KillLoopResult:
    """What a kill loop saw; :attr:`failures` lists every property that did not hold."""

    kills: int
    kills_by_role: dict[str, int]
    records: int
    wall_s: float
    catch_up_s: float
    bakes: dict[str, dict[str, Any]]
    restores_checked: int
    restores_empty: list[str]
    window_s: float
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures

    @property
    def max_decision_shift_s(self) -> float:
        return max((abs(b["shift_s"]) for b in self.bakes.values()), default=0.0)


def _restore_lines(cluster: Cluster) -> list[tuple[float, str, int, int]]:
    """(wall time, log, partition, bakes) of every judge restore the logs show."""
    out = []
    for p in cluster.procs:
        if "judge" not in p.roles or not p.log.exists():
            continue
        for line in p.log.read_bytes().splitlines():
            m = _RESTORE_LINE.match(line)
            if m:
                when = dt.datetime.strptime(m.group(1).decode(), "%Y-%m-%d %H:%M:%S,%f")
                out.append((when.timestamp(), p.log.name, int(m.group(2)), int(m.group(3))))
    return out


def _pace(cluster: Cluster, lines: Sequence[bytes], seconds: float, chunks: int) -> None:
    """Produce ``lines`` in ``chunks`` spread over ``seconds`` (a stream, not a backlog)."""
    step = max(1, len(lines) // chunks)
    for i in range(0, len(lines), step):
        t0 = time.monotonic()
        cluster.produce(lines[i : i + step], start=i)
        time.sleep(max(0.0, seconds / chunks - (time.monotonic() - t0)))


def run_kill_loop(
    bootstrap: str,
    workdir: Path,
    *,
    kills: int,
    records: int = 120_000,
    seed: int = 1,
    produce_s: float = 40.0,
    gap_s: tuple[float, float] = (1.0, 6.0),
    settle_timeout_s: float = 240.0,
    slots: Sequence[str] = SLOTS,
    progress: Callable[[str], None] = lambda _: None,
) -> KillLoopResult:
    """Run ``slots`` (one process each), kill a random one every ``gap_s`` seconds (uniform)
    ``kills`` times while ``records`` lines stream in over ``produce_s`` seconds, restart it at
    once; wait until the verdict documents hold the exact totals; compare."""
    rng = random.Random(seed)
    lines = service_log(records, seed=seed)
    cluster = Cluster(bootstrap, workdir)
    ref = reference(cluster.config, lines)
    window_s = 10.0
    t_start = time.time()
    for roles in slots:
        cluster.add(roles)
    time.sleep(4.0)  # the first incarnations join their groups
    producer = threading.Thread(
        target=_pace, args=(cluster, lines, produce_s, 40), name="produce", daemon=True
    )
    producer.start()
    by_role: dict[str, int] = {}
    state_since: float | None = None
    judged_since_state = False  # a judge was killed after every bake had state
    try:
        for k in range(kills):
            time.sleep(rng.uniform(*gap_s))
            last = k == kills - 1
            deadline = time.monotonic() + (30.0 if last else 0.0)
            while state_since is None:  # the last kill waits for the state to exist
                if len(cluster.state_partitions()) == len(ref):
                    state_since = time.time()
                elif time.monotonic() >= deadline:
                    break
                else:
                    time.sleep(1.0)
            cluster.check_alive()  # nothing may die by itself
            proc = rng.choice(cluster.procs)
            if last and not judged_since_state:  # so at least one restore can be checked
                time.sleep(1.5)
                proc = rng.choice([p for p in cluster.procs if "judge" in p.roles])
            if (
                state_since is not None
                and "judge" in proc.roles
                and time.time() > state_since + 1.5
            ):
                judged_since_state = True
            if proc.alive():
                cluster.kill(proc)
            by_role[proc.roles] = by_role.get(proc.roles, 0) + 1
            cluster.start(proc)
            progress(f"kill {k + 1}/{kills}: {proc.roles} ({proc.log.name})")
        producer.join()
        t_end = time.monotonic()
        want = {b: r["totals"] for b, r in ref.items()}

        wait_for(
            lambda: cluster.totals_are(want),
            settle_timeout_s,
            "exact totals after the kills",
            cluster=cluster,
        )
        catch_up_s = time.monotonic() - t_end
        time.sleep(3.0)  # anything counted twice would show now
        docs = cluster.documents()
        partitions = cluster.state_partitions()
    finally:
        codes = cluster.stop_all()
    if state_since is None:
        state_since = t_start + 1e9
    failures: list[str] = []
    if any(c != 0 for c in codes):
        failures.append(f"SIGTERM exit codes {codes}")
    bakes: dict[str, dict[str, Any]] = {}
    for bake_id, r in ref.items():
        d = docs[bake_id]
        got = (d["progress"]["canary_requests"], d["progress"]["baseline_requests"])
        at = d.get("decided_at")
        at_s = (
            None if at is None else dt.datetime.fromisoformat(at.replace("Z", "+00:00")).timestamp()
        )
        shift = (
            0.0
            if at_s is None and r["decided_at_s"] is None
            else float("inf")
            if at_s is None or r["decided_at_s"] is None
            else at_s - r["decided_at_s"]
        )
        bakes[bake_id] = {
            "status": d["status"],
            "reference_status": r["status"],
            "totals": got,
            "reference_totals": tuple(r["totals"]),
            "shift_s": shift,
        }
        if got != tuple(r["totals"]):
            failures.append(f"{bake_id}: totals {got} != {tuple(r['totals'])}")
        if d["status"] != r["status"]:
            failures.append(f"{bake_id}: status {d['status']} != fault-free {r['status']}")
        if abs(shift) > window_s:
            failures.append(f"{bake_id}: decided {shift:+.1f} s of event time from fault-free")
    checked, empty = 0, []
    for when, log_name, partition, n in _restore_lines(cluster):
        holds = [b for b, p in partitions.items() if p == partition]
        if when > state_since + 1.0 and holds:
            checked += 1
            if n < len(holds):
                empty.append(f"{log_name} at {when - t_start:.1f}s: partition {partition}: {n}")
    if empty:
        failures.append(f"{len(empty)}/{checked} judge assignments restored fewer bakes: {empty}")
    return KillLoopResult(
        kills=kills,
        kills_by_role=by_role,
        records=records,
        wall_s=time.time() - t_start,
        catch_up_s=catch_up_s,
        bakes=bakes,
        restores_checked=checked,
        restores_empty=empty,
        window_s=window_s,
        failures=failures,
    )
