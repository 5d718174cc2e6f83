"""A source partition that never had a record is still heard from once idle, so the watermark
does not wait for it forever (found by benchmarks/production: a pod-keyed topic where a
partition got no pod)."""

from __future__ import annotations

from detectors.summary import CohortSummary
from monitor.bakes.spec import BakeSpec
from monitor.pipeline.judge import feed
from monitor.pipeline.partials import Increment, Partial
from monitor.verdict.engine import BakeVerdict

T0 = 1_795_824_000.0


def _partial(partition: int, progress: float | None, *, idle: bool = False) -> Partial:
    return Partial(
        "b", "requests", partition, 0, 10, False, CohortSummary(), CohortSummary(), None,
        progress_s=progress, idle=idle, source_partitions=2,
    )  # fmt: skip


def test_an_idle_partition_without_records_releases_the_watermark() -> None:
    spec = BakeSpec.from_dict({"id": "b", "service": "s", "canary": "v2", "baseline": "v1"})
    v = BakeVerdict(spec)
    k = int(T0 // 10)
    cells = {(k, ""): (CohortSummary(50, 1), CohortSummary(50, 1))}
    busy = Partial(
        "b", "requests", 0, 0, 100, False, CohortSummary(50, 1), CohortSummary(50, 1), T0 + 5,
        cells=cells, progress_s=T0 + 100, source_partitions=2,
    )  # fmt: skip
    feed(v, busy, Increment(CohortSummary(50, 1), CohortSummary(50, 1), cells))
    feed(v, _partial(1, None), None)  # not idle yet: holds the watermark
    assert v.readout().evidence.tested_canary == 0
    feed(v, _partial(1, None, idle=True), None)
    assert v.readout().evidence.tested_canary == 50
