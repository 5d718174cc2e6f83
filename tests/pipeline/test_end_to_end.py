"""End to end on a real broker: records → ingest → partials → judge → verdicts."""

from __future__ import annotations

from pathlib import Path

import orjson
from _pipeline import (
    LAYOUT,
    create_topics,
    expected_counts,
    judge_has,
    produce,
    totals,
    two_service_log,
    verdict_documents,
    wait_until,
    write_config,
)
from kafka import KafkaAdminClient

from monitor.bakes.spec import Registry
from monitor.config import load_settings
from monitor.kafka.broker import EmbeddedBroker
from monitor.kafka.io import KafkaSource, read_to_end
from monitor.kafka.topics import partition_for
from monitor.pipeline.feed import feed, feed_clock
from monitor.pipeline.partials import BlockFold, Clock, decode_message, partials_in
from monitor.records.fieldmap import PRESETS
from monitor.replay import replay
from monitor.service import JUDGE_GROUP, Service
from monitor.verdict.engine import BakeVerdict


def test_streaming_verdicts_match_replay_with_exact_totals(
    broker: EmbeddedBroker, tmp_path: Path, kafka_client: str
) -> None:
    """A 2x-error bake HALTs, an A/A bake PROMOTEs, totals are exact and match replay."""
    lines = two_service_log(120_000)
    create_topics(broker.bootstrap_servers)
    produce(broker.bootstrap_servers, lines)
    settings = load_settings(
        str(write_config(tmp_path / "c.toml", broker.bootstrap_servers, kafka_client=kafka_client)),
        env={},
    )
    svc = Service(settings).start()
    want = expected_counts(lines)
    try:
        assert svc.judge is not None
        judge = svc.judge

        wait_until(lambda: judge_has(judge, want), 90, "the judge to fold every record")
    finally:
        svc.stop()
    docs = verdict_documents(broker.bootstrap_servers)
    assert docs["checkout-v42"]["status"] == "HALT"
    assert docs["checkout-v42"]["reasons"][0].startswith("error rate regression")
    assert docs["search-v8"]["status"] == "PROMOTE", docs["search-v8"]["reasons"]
    for bake_id, counts in want.items():
        assert totals(docs[bake_id]) == counts, bake_id
    # The offline replay of the same records decides the same.
    registry = Registry(settings.bakes)
    result = replay(
        iter([lines[i : i + 2000] for i in range(0, len(lines), 2000)]), registry, PRESETS["plain"]
    )
    for bake_id, v in result.verdicts.items():
        assert v.status.value == docs[bake_id]["status"], bake_id
        assert (v.canary.requests, v.baseline.requests) == totals(docs[bake_id])
    # Determinism: folding the partials topic again, offline, gives the very same documents —
    # up to the judge's last commit, the partials its last published documents are made of (a
    # partial ingest sent as both stopped, e.g. a partition turning idle, was never judged).
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap_servers)
    try:
        committed = admin.list_group_offsets(JUDGE_GROUP)[JUDGE_GROUP]
    finally:
        admin.close()
    upto = {p: 0 for p in range(4)}  # a partition no bake hashes to has no commit
    upto.update(
        {tp.partition: m.offset for tp, m in committed.items() if tp.topic == LAYOUT.partials}
    )
    assert sum(upto.values()) > 0, committed
    src = KafkaSource(broker.bootstrap_servers, partitions=[(LAYOUT.partials, p) for p in range(4)])
    try:
        for p in range(4):
            src.seek_to_beginning((LAYOUT.partials, p))
        per_partition: dict[int, list[bytes]] = {}
        wait_until(
            lambda: (
                not any(
                    per_partition.setdefault(tp[1], []).extend(
                        r.value for r in recs if r.offset < upto[tp[1]]
                    )
                    or False
                    for tp, recs in src.poll(0.5, 50_000).items()
                )
                and all(
                    src.position((LAYOUT.partials, p)) >= (src.highwater((LAYOUT.partials, p)) or 0)
                    for p in range(4)
                )
            ),
            30,
            "the partials topic",
        )
    finally:
        src.close()
    engines: dict[str, tuple[BakeVerdict, BlockFold]] = {}

    def engine(bake_id: str) -> tuple[BakeVerdict, BlockFold]:
        return engines.setdefault(bake_id, (BakeVerdict(registry.get(bake_id)), BlockFold()))

    for p in sorted(per_partition):
        for raw in per_partition[p]:
            msg = decode_message(raw)
            if isinstance(msg, Clock):  # as the judge: every active bake of this partition
                for spec in registry.bakes:
                    if spec.end_s is None and partition_for(spec.id, 4) == p:
                        feed_clock(engine(spec.id)[0], msg)
                continue
            for part in partials_in(msg):
                v, fold = engine(part.bake)
                inc = fold.fold(part)
                if inc is not None:
                    feed(v, part, inc)
    for bake_id, (v, _) in engines.items():
        assert v.document() == docs[bake_id], bake_id
    # HALT raised an alert on the alerts topic, Alertmanager-shaped.
    src = KafkaSource(broker.bootstrap_servers, partitions=[(LAYOUT.alerts, 0)])
    try:
        alerts = [
            orjson.loads(v) for v in read_to_end(src, LAYOUT.alerts, [0]).values.values() if v
        ]
    finally:
        src.close()
    assert any(
        a["labels"]["alertname"] == "BakeHalted" and a["labels"]["bake"] == "checkout-v42"
        for a in alerts
    )


def test_malformed_messages_are_dead_lettered_and_the_rest_counted(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    """Garbage between valid records goes to the dead-letter topic with its reason; all valid
    records are counted."""
    good = two_service_log(20_000, seed=3)
    garbage = [
        b"not json",
        b"[1,2,3]",
        b'{"ts": 1795824000, "service": "checkout", "version": "v42", "status": 200, "latency_ms": "slow"}',
        b"",
    ]
    lines = good[:7000] + garbage + good[7000:]
    create_topics(broker.bootstrap_servers)
    produce(broker.bootstrap_servers, lines)
    settings = load_settings(
        str(write_config(tmp_path / "c.toml", broker.bootstrap_servers)), env={}
    )
    svc = Service(settings).start()
    want = expected_counts(good)
    try:
        assert svc.judge is not None and svc.ingest is not None
        judge, ingest = svc.judge, svc.ingest
        wait_until(lambda: judge_has(judge, want), 60, "every valid record")
        assert sum(ingest.stats.rejected.values()) == len(garbage)
        assert (
            ingest.stats.rejected["invalid_json"] == 2
            and ingest.stats.rejected["not_an_object"] == 1
        )
        assert ingest.stats.rejected["bad_latency"] == 1
    finally:
        svc.stop()
    src = KafkaSource(broker.bootstrap_servers, partitions=[(LAYOUT.dead_letter_topic, 0)])
    try:
        src.seek_to_beginning((LAYOUT.dead_letter_topic, 0))
        got: list[tuple[bytes, dict[str, bytes]]] = []
        wait_until(
            lambda: (
                bool(
                    got.extend(
                        (r.value or b"", dict(r.headers))
                        for recs in src.poll(0.5, 100).values()
                        for r in recs  # type: ignore[attr-defined]
                    )
                )
                or len(got) >= len(garbage)
            ),
            20,
            "dead letters",
        )
    finally:
        src.close()
    assert sorted(v for v, _ in got) == sorted(garbage)
    assert {h["bakemon.reason"].decode() for _, h in got} == {
        "invalid_json",
        "not_an_object",
        "bad_latency",
    }


def test_auto_discovery_creates_a_bake_for_a_new_version(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    """With discovery on, a new version of a service gets a bake in the bakes topic, and the
    traffic after its start is judged."""
    bs = broker.bootstrap_servers

    def rows(t0: float, n: int, mixed: bool) -> list[bytes]:
        return [
            orjson.dumps(
                {
                    "ts": t0 + i * 0.01,
                    "service": "cart",
                    "version": "v2" if mixed and i % 2 else "v1",
                    "status": 200,
                    "latency_ms": 20.0,
                }
            )
            for i in range(n)
        ]

    create_topics(bs)
    produce(bs, rows(1795824000.0, 3000, False) + rows(1795824030.0, 3000, True), partitions=1)
    cfg = write_config(tmp_path / "c.toml", bs)
    cfg.write_text(
        cfg.read_text()
        + "\n[discovery]\nenabled = true\nmin_requests = 500\n[discovery.policy]\nmin_canary_requests = 100\n"
    )
    svc = Service(load_settings(str(cfg), env={})).start()
    try:
        assert svc.follower is not None and svc.judge is not None
        follower, judge = svc.follower, svc.judge
        wait_until(
            lambda: "auto-cart-v2" in follower.registry(), 60, "the auto-bake in the registry"
        )
        spec = follower.registry().get("auto-cart-v2")
        assert spec.canary_versions == ("v2",) and spec.baseline_versions == ("v1",)
        # Discovery fires within the mixed traffic, so the start lies inside it.
        assert 1795824030.0 < spec.start_s <= 1795824030.0 + 5999 * 0.01
        produce(bs, rows(1795824100.0, 4000, True), partitions=1)
        wait_until(
            lambda: (
                "auto-cart-v2" in judge.bakes
                and judge.bakes["auto-cart-v2"].verdict.canary.requests >= 2000
                and judge.bakes["auto-cart-v2"].verdict.baseline.requests >= 2000
            ),
            60,
            "the auto-bake to judge the traffic after its start",
        )
    finally:
        svc.stop()
    assert "auto-cart-v2" in verdict_documents(bs)
