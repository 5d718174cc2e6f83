"""Build the roles' :class:`~monitor.kafka.io.Source` and ``Sink`` for the ``kafka_client`` setting.

``"kafka-python"`` (the default) gives :class:`~monitor.kafka.io.KafkaSource`/``KafkaSink``;
``"confluent"`` gives :class:`~monitor.kafka.confluent.ConfluentSource`/``ConfluentSink`` and
needs the optional confluent-kafka package. The ``[kafka]`` settings are kafka-python names
either way; librdkafka-only keys (with a dot, or ``rdkafka_…``) reach only the confluent client.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

from monitor.errors import ConfigError
from monitor.kafka.io import TP, KafkaSink, KafkaSource, Sink, Source

__all__ = [
    "KAFKA_CLIENTS",
    "KafkaClient",
    "kafka_python_config",
    "librdkafka_only",
    "make_sink",
    "make_source",
    "require_client",
]

KafkaClient = Literal["kafka-python", "confluent"]
KAFKA_CLIENTS: tuple[KafkaClient, ...] = ("kafka-python", "confluent")


def librdkafka_only(key: str) -> bool:
    """A ``[kafka]`` key only the confluent client understands (a librdkafka property)."""
    from monitor.kafka.confluent import RDKAFKA_PREFIX

    return "." in key or key.startswith(RDKAFKA_PREFIX)


def kafka_python_config(client: Mapping[str, Any]) -> dict[str, Any]:
    """``client`` without the librdkafka-only keys: what kafka-python clients are given."""
    return {k: v for k, v in client.items() if not librdkafka_only(k)}


def require_client(kind: str) -> KafkaClient:
    """``kind`` as a :data:`KafkaClient`, its package importable; else a :class:`ConfigError`."""
    if kind == "kafka-python":
        return "kafka-python"
    if kind == "confluent":
        from monitor.kafka.confluent import import_confluent

        import_confluent()
        return "confluent"
    msg = f'"kafka_client" must be one of {list(KAFKA_CLIENTS)}, got "{kind}"'
    raise ConfigError(msg, value=kind)


def make_source(
    kind: str,
    bootstrap_servers: str,
    *,
    group_id: str | None = None,
    topics: Sequence[str] = (),
    partitions: Sequence[TP] = (),
    client: Mapping[str, Any] | None = None,
) -> Source:
    """A consumer of the ``kind`` client, in group ``group_id`` on ``topics`` or on ``partitions``."""
    if require_client(kind) == "confluent":
        from monitor.kafka.confluent import ConfluentSource

        return ConfluentSource(
            bootstrap_servers,
            group_id=group_id,
            topics=topics,
            partitions=partitions,
            client=client,
        )
    return KafkaSource(
        bootstrap_servers,
        group_id=group_id,
        topics=topics,
        partitions=partitions,
        client=kafka_python_config(client or {}),
    )


def make_sink(
    kind: str, bootstrap_servers: str, *, client: Mapping[str, Any] | None = None
) -> Sink:
    """A producer of the ``kind`` client (thread-safe; flush waits for every ack)."""
    if require_client(kind) == "confluent":
        from monitor.kafka.confluent import ConfluentSink

        return ConfluentSink(bootstrap_servers, client=client)
    return KafkaSink(bootstrap_servers, client=kafka_python_config(client or {}))
