"""Own-topic creation on the real embedded broker: replication factor, min ISR and retention."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient
from kafka.errors import IncompatibleBrokerVersion

from monitor.config import load_settings
from monitor.kafka.broker import EmbeddedBroker
from monitor.kafka.topics import TopicLayout, create_owned_topics, ensure_topics


@pytest.fixture
def admin(broker: EmbeddedBroker) -> Iterator[KafkaAdminClient]:
    a = KafkaAdminClient(bootstrap_servers=broker.bootstrap_servers)
    yield a
    a.close()


def _configs(admin: KafkaAdminClient, topic: str) -> dict[str, str]:
    resource = ConfigResource(ConfigResourceType.TOPIC, topic)
    found = admin.describe_configs([resource], config_filter="all")
    return {k: v["value"] for k, v in found["topic"][topic].items()}


def test_default_asks_the_broker_for_its_replication_factor(
    broker: EmbeddedBroker, admin: KafkaAdminClient
) -> None:
    """With default settings every owned topic is created with factor -1 (the broker's
    default; the single-node broker answers 1), retention as configured, no min ISR."""
    layout = load_settings(None, env={"BAKEMON_PARTIALS_RETENTION_S": "7200"}).layout
    created = ensure_topics(broker.bootstrap_servers, layout, extra=[("requests", 2)])
    names = {n for n, _, _ in layout.specs()}
    assert set(created) == names | {"requests"}
    assert set(created.values()) == {1}
    assert names <= set(admin.list_topics())
    partials = _configs(admin, layout.partials)
    assert partials["retention.ms"] == "7200000"
    assert "min.insync.replicas" not in _configs(admin, layout.state)
    assert ensure_topics(broker.bootstrap_servers, layout) == {}  # idempotent: nothing new


def test_explicit_factor_reaches_create_topics_with_min_isr(
    broker: EmbeddedBroker, admin: KafkaAdminClient
) -> None:
    """replication_factor = 3 is what CreateTopics gets (the broker reports 3), and the
    bakes, state and verdicts topics get min.insync.replicas = 2; the others do not."""
    layout = TopicLayout("rf3.", partials_partitions=2, replication_factor=3)
    created = ensure_topics(broker.bootstrap_servers, layout)
    assert set(created.values()) == {3}
    for topic in (layout.bakes, layout.state, layout.verdicts):
        assert _configs(admin, topic)["min.insync.replicas"] == "2"
    for topic in (layout.partials, layout.alerts, layout.timelines):
        assert "min.insync.replicas" not in _configs(admin, topic)


class _OldBrokerAdmin:
    """The real admin client, refusing factor -1 the way kafka-python does for brokers < 2.4."""

    def __init__(self, real: KafkaAdminClient) -> None:
        self.real = real
        self.asked: list[int] = []

    def list_topics(self) -> list[str]:
        return list(self.real.list_topics())

    def create_topics(self, new_topics: dict[str, dict[str, Any]]) -> Any:
        rf = next(iter(new_topics.values()))["replication_factor"]
        self.asked.append(rf)
        if rf == -1:
            msg = "Broker version (2, 3) requires explicit num_partitions and replication_factor"
            raise IncompatibleBrokerVersion(msg)
        return self.real.create_topics(new_topics)

    def describe_configs(self, config_resources: Any, config_filter: str = "modified") -> Any:
        return self.real.describe_configs(config_resources, config_filter=config_filter)

    def describe_cluster(self) -> Any:
        return self.real.describe_cluster()


def test_refused_default_factor_falls_back_to_one_with_a_warning(
    admin: KafkaAdminClient, caplog: pytest.LogCaptureFixture
) -> None:
    """A broker that refuses -1 (and cannot say its default) gets factor 1 for every topic,
    asked once with -1, and a warning that says how to choose."""
    old = _OldBrokerAdmin(admin)
    layout = TopicLayout("old.", partials_partitions=2)
    with caplog.at_level(logging.WARNING, logger="bakemon.kafka"):
        created = create_owned_topics(old, layout)
    assert set(created) == {n for n, _, _ in layout.specs()}
    assert set(created.values()) == {1}
    assert old.asked[0] == -1 and set(old.asked[1:]) == {1}
    assert old.asked.count(-1) == 1
    warning = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warning) == 1 and 'set "replication_factor" to choose' in warning[0]


def test_broker_default_factor_is_read_from_kafka_python_3s_cluster_shape() -> None:
    """kafka-python 3's describe_cluster names brokers by ``broker_id`` (older: ``node_id``);
    either way the broker's default.replication.factor is what DescribeConfigs says."""
    from monitor.kafka.topics import _broker_default_rf

    class _Admin:
        def __init__(self, key: str) -> None:
            self.key, self.asked = key, ""

        def describe_cluster(self) -> Any:
            return {"brokers": [{self.key: 111, "host": "h", "port": 9092}]}

        def describe_configs(self, resources: Any, config_filter: str = "all") -> Any:
            self.asked = resources[0].name
            return {"broker": {self.asked: {"default.replication.factor": {"value": "3"}}}}

    for key in ("broker_id", "node_id"):
        fake = _Admin(key)
        assert _broker_default_rf(fake) == 3  # type: ignore[arg-type]
        assert fake.asked == "111"
