"""Prometheus metrics on a registry passed in (never the global one); bounded labels only.

Counters and gauges are read from the roles' stats and the verdict view at scrape time (a custom
collector), so the hot paths pay nothing; the two latency histograms are observed directly.
Labels: ``reason`` (the fixed rejection reasons), ``role``, ``bake`` (bounded by the active
bakes), ``cohort``, ``status``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from monitor.pipeline.ingest import IngestStats
from monitor.pipeline.judge import JudgeStats
from monitor.records.decode import REJECTION_REASONS
from monitor.verdict import Status, interpret

__all__ = ["Metrics"]

STATUSES = tuple(s.value for s in Status)
# (metric name, help, JudgeStats attribute) of the judge's counters.
_JUDGE_COUNTERS = (
    ("bakemon_partials_folded", "Partials folded by the judge.", "partials"),
    ("bakemon_partials_malformed", "Partials that could not be decoded (skipped).", "malformed"),
    (
        "bakemon_partials_released",
        "Held partials folded once their bake appeared in the registry.",
        "released",
    ),
    (
        "bakemon_partials_unknown_bake_dead_lettered",
        "Partials of a bake never registered within the hold time, sent to the dead-letter topic.",
        "unknown_bake_dead_letters",
    ),
    ("bakemon_verdict_documents_published", "Changed verdict documents published.", "documents"),
    (
        "bakemon_verdict_documents_oversized",
        "Verdict documents over the 1 MB message limit, not published.",
        "oversized_documents",
    ),
    ("bakemon_judge_snapshots_written", "Judge state snapshots written.", "snapshots"),
    (
        "bakemon_bakes_retired",
        "Bakes retired from the live set retention_s after their decision or cancel.",
        "retired",
    ),
    (
        "bakemon_partials_of_retired_bakes",
        "Partials of retired bakes, skipped (their documents stay as retired).",
        "retired_partials",
    ),
    (
        "bakemon_judge_snapshots_unreadable",
        "State snapshots that could not be restored (the bake restarts from its partials).",
        "unreadable_snapshots",
    ),
)


class Metrics:
    """All of bakemon's metrics for one process."""

    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        ingest: Callable[[], IngestStats | None] = lambda: None,
        judge: Callable[[], JudgeStats | None] = lambda: None,
        documents: Callable[[], list[dict[str, Any]]] = list,
        lag: Callable[[], dict[str, int]] = dict,
        alerts: Callable[[], int] = lambda: 0,
        last_poll: Callable[[], dict[str, float]] = dict,
    ) -> None:
        self.registry = registry
        self.flush_seconds = Histogram(
            "bakemon_ingest_flush_seconds",
            "Time to publish partials and commit (one checkpoint).",
            registry=registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.fold_seconds = Histogram(
            "bakemon_judge_fold_seconds",
            "Time to fold one partial into a bake's detectors.",
            registry=registry,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25),
        )
        registry.register(_Collector(ingest, judge, documents, lag, alerts, last_poll))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _Collector(Collector):
    def __init__(
        self,
        ingest: Callable[[], IngestStats | None],
        judge: Callable[[], JudgeStats | None],
        documents: Callable[[], list[dict[str, Any]]],
        lag: Callable[[], dict[str, int]],
        alerts: Callable[[], int],
        last_poll: Callable[[], dict[str, float]],
    ) -> None:
        self._ingest, self._judge, self._documents = ingest, judge, documents
        self._lag, self._alerts, self._last_poll = lag, alerts, last_poll

    def collect(self) -> Iterator[Metric]:
        yield from self._ingest_metrics()
        yield from self._judge_metrics()
        yield from self._loop_metrics()
        alerts = CounterMetricFamily("bakemon_alerts_emitted", "Alerts seen on the alerts topic.")
        alerts.add_metric([], self._alerts())
        yield alerts
        yield from _bake_metrics(self._documents())

    def _ingest_metrics(self) -> Iterator[Metric]:
        ist = self._ingest()
        consumed = CounterMetricFamily(
            "bakemon_records_consumed", "Request records consumed by ingest."
        )
        tagged = CounterMetricFamily("bakemon_records_tagged", "Records that belong to a bake.")
        rejected = CounterMetricFamily(
            "bakemon_records_rejected", "Records rejected, by reason.", labels=["reason"]
        )
        partials = CounterMetricFamily(
            "bakemon_partials_published", "Partials published by ingest."
        )
        dead = CounterMetricFamily("bakemon_dead_letters", "Records sent to the dead-letter topic.")
        if ist is not None:
            consumed.add_metric([], ist.records)
            tagged.add_metric([], ist.tagged)
            for r in REJECTION_REASONS:
                rejected.add_metric([r], ist.rejected.get(r, 0))
            partials.add_metric([], ist.partials)
            dead.add_metric([], ist.dead_letters)
        yield from (consumed, tagged, rejected, partials, dead)

    def _judge_metrics(self) -> Iterator[Metric]:
        jst = self._judge()
        counters = [CounterMetricFamily(name, text) for name, text, _ in _JUDGE_COUNTERS]
        held = GaugeMetricFamily(
            "bakemon_judge_held_partials",
            "Partials of bakes not yet in the registry, held (not committed past) until it knows them.",
        )
        failures = CounterMetricFamily(
            "bakemon_checkpoint_failures",
            "Checkpoints whose flush (or commit) failed and were retried, by role and step.",
            labels=["role", "step"],
        )
        if jst is not None:
            for family, (_, _, attr) in zip(counters, _JUDGE_COUNTERS, strict=True):
                family.add_metric([], getattr(jst, attr))
            held.add_metric([], jst.held)
            failures.add_metric(["judge", "flush"], jst.checkpoint_failures)
            failures.add_metric(["judge", "commit"], jst.commit_failures)
        ist = self._ingest()
        if ist is not None:
            failures.add_metric(["ingest", "flush"], ist.checkpoint_failures)
            failures.add_metric(["ingest", "commit"], ist.commit_failures)
        yield from (*counters, held, failures)

    def _loop_metrics(self) -> Iterator[Metric]:
        lag = GaugeMetricFamily(
            "bakemon_consumer_lag_records", "Records behind the high watermark.", labels=["role"]
        )
        for role, value in self._lag().items():
            lag.add_metric([role], value)
        yield lag
        poll = GaugeMetricFamily(
            "bakemon_poll_loop_age_seconds",
            "Seconds since each loop last polled Kafka (alert when it grows: a stalled loop).",
            labels=["role"],
        )
        now = time.monotonic()
        for role, when in self._last_poll().items():
            if when:
                poll.add_metric([role], max(now - when, 0.0))
        yield poll


def _bake_metrics(all_docs: list[dict[str, Any]]) -> Iterator[Metric]:
    """Per-bake gauges from the verdict documents of the live set: bakes not yet retired
    (``retention_s`` after their decision), so the bake label stays bounded."""
    docs = [d for d in all_docs if not d.get("retired_at")]
    active = GaugeMetricFamily("bakemon_active_bakes", "Bakes not yet decided.")
    active.add_metric([], sum(1 for d in docs if not interpret(d).final))
    yield active
    verdict = GaugeMetricFamily(
        "bakemon_bake_verdict", "1 for the bake's current status.", labels=["bake", "status"]
    )
    canary = GaugeMetricFamily(
        "bakemon_bake_canary_requests", "Canary requests folded.", labels=["bake"]
    )
    progress = GaugeMetricFamily(
        "bakemon_bake_progress_ratio", "Canary requests / minimum.", labels=["bake"]
    )
    err = GaugeMetricFamily(
        "bakemon_bake_error_ratio", "Error rate per cohort.", labels=["bake", "cohort"]
    )
    p99 = GaugeMetricFamily(
        "bakemon_bake_latency_p99_seconds", "p99 latency per cohort.", labels=["bake", "cohort"]
    )
    dispersion = GaugeMetricFamily(
        "bakemon_bake_dispersion_ratio",
        "Over-dispersion of error events against the binomial model (about 1 when the tests'"
        " request-level assumption holds; see docs/statistics.md).",
        labels=["bake"],
    )
    suspect = GaugeMetricFamily(
        "bakemon_bake_assumption_suspect",
        "1 when a check says a guarantee's assumption looks violated (check=dispersion).",
        labels=["bake", "check"],
    )
    for d in docs:
        bake = str(d["id"])
        disp = (d.get("assumptions") or {}).get("dispersion")
        if isinstance(disp, dict):
            if disp.get("ratio") is not None:
                dispersion.add_metric([bake], disp["ratio"])
            suspect.add_metric([bake, "dispersion"], 1.0 if disp.get("suspect") else 0.0)
        for s in STATUSES:
            verdict.add_metric([bake, s], 1.0 if d.get("status") == s else 0.0)
        canary.add_metric([bake], d["progress"]["canary_requests"])
        progress.add_metric([bake], d["progress"]["fraction"])
        m = d.get("metrics", {})
        for cohort in ("canary", "baseline"):
            e = m.get("error_rate", {}).get(cohort)
            if e is not None:
                err.add_metric([bake, cohort], e)
            q = m.get("latency_p99_seconds", {}).get(cohort)
            if q is not None:
                p99.add_metric([bake, cohort], q)
    yield from (verdict, canary, progress, err, p99, dispersion, suspect)
