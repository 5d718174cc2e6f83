"""The topics bakemon owns: names, sizes, configs, creation, and our key → partition map.

Our own CRC-32 partitioner puts the partials, judge state and verdict document of a bake on the
same partition number, independent of any client's default partitioner.

Replication: ``replication_factor = -1`` (the default) asks the broker for its
``default.replication.factor`` (CreateTopics v4+, KIP-464, Kafka >= 2.4); a broker or client that
refuses -1 gets the broker's ``default.replication.factor`` read with DescribeConfigs, else 1,
with a warning. The topics whose loss loses state (bakes, judge state, verdicts) get
``min.insync.replicas`` when the factor is known to be >= 3 (producers use ``acks=all``).
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from monitor.kafka.io import MAX_MESSAGE_BYTES, KafkaIOError, client_config

__all__ = [
    "BROKER_DEFAULT_RF",
    "DOCUMENT_MAX_BYTES",
    "TopicLayout",
    "create_owned_topics",
    "ensure_topics",
    "partition_for",
]

log = logging.getLogger("bakemon.kafka")

# Verdict documents must fit Kafka's default message limit (message.max.bytes = 1 MiB + a little),
# so the verdicts topic needs no override on any broker: keep a margin for the batch framing.
DOCUMENT_MAX_BYTES = 1_000_000
BROKER_DEFAULT_RF = -1  # CreateTopics: "the broker's default.replication.factor" (KIP-464)
WEEK_S = 7 * 24 * 3600
AUTO_MIN_INSYNC = 2  # min.insync.replicas on durable topics when the factor is >= 3


def partition_for(key: str, partitions: int) -> int:
    """Stable key → partition (CRC-32), independent of any client's default partitioner."""
    return zlib.crc32(key.encode()) % partitions


@dataclass(frozen=True)
class TopicLayout:
    """Names and sizes of the topics bakemon owns."""

    prefix: str = "bakemon."
    partials_partitions: int = 8
    alerts_partitions: int = 1
    dead_letter: bool = True
    replication_factor: int = BROKER_DEFAULT_RF
    min_insync_replicas: int = 0  # 0: AUTO_MIN_INSYNC when the factor is >= 3, else the broker's
    partials_retention_s: float = WEEK_S
    alerts_retention_s: float = WEEK_S
    dead_letter_retention_s: float = WEEK_S

    @property
    def bakes(self) -> str:
        return f"{self.prefix}bakes"

    @property
    def partials(self) -> str:
        return f"{self.prefix}partials"

    @property
    def verdicts(self) -> str:
        """Verdict documents (the read model), keyed by bake id."""
        return f"{self.prefix}verdicts"

    @property
    def state(self) -> str:
        """The judge's private per-bake snapshots (its changelog), keyed by bake id."""
        return f"{self.prefix}judge-state"

    @property
    def timelines(self) -> str:
        """Each bake's evidence over time (the console's chart), keyed by bake id."""
        return f"{self.prefix}timelines"

    @property
    def alerts(self) -> str:
        return f"{self.prefix}alerts"

    @property
    def dead_letter_topic(self) -> str:
        return f"{self.prefix}deadletter"

    @property
    def durable(self) -> tuple[str, ...]:
        """Topics whose loss loses state: these get ``min.insync.replicas``."""
        return (self.bakes, self.state, self.verdicts)

    def min_insync_for(self, replication_factor: int | None) -> int | None:
        """``min.insync.replicas`` for the durable topics at this (known) factor, or None."""
        if self.min_insync_replicas > 0:
            return self.min_insync_replicas
        if replication_factor is not None and replication_factor >= 3:
            return AUTO_MIN_INSYNC
        return None

    def specs(self, replication_factor: int | None = None) -> list[tuple[str, int, dict[str, str]]]:
        """(name, partitions, configs) of every owned topic, for a replication factor known to
        be ``replication_factor`` (None: unknown). State and verdicts are co-partitioned with
        partials (the judge of partials partition p restores from state partition p); documents
        stay under the default message limit, so no override there."""
        # A judge snapshot holds two summaries per open source block: allow more than 1 MB.
        big = str(MAX_MESSAGE_BYTES)
        out = [
            (self.bakes, 1, {"cleanup.policy": "compact"}),
            (
                self.partials,
                self.partials_partitions,
                {
                    "cleanup.policy": "delete",
                    "retention.ms": _ms(self.partials_retention_s),
                    "max.message.bytes": big,
                },
            ),
            (
                self.state,
                self.partials_partitions,
                {"cleanup.policy": "compact", "max.message.bytes": big},
            ),
            (self.verdicts, self.partials_partitions, {"cleanup.policy": "compact"}),
            (self.timelines, self.partials_partitions, {"cleanup.policy": "compact"}),
            (
                self.alerts,
                self.alerts_partitions,
                {"cleanup.policy": "delete", "retention.ms": _ms(self.alerts_retention_s)},
            ),
        ]
        if self.dead_letter:
            retention = _ms(self.dead_letter_retention_s)
            out.append(
                (self.dead_letter_topic, 1, {"cleanup.policy": "delete", "retention.ms": retention})
            )
        isr = self.min_insync_for(replication_factor)
        if isr is not None:
            for name, _, configs in out:
                if name in self.durable:
                    configs["min.insync.replicas"] = str(isr)
        return out


def _ms(seconds: float) -> str:
    return str(int(seconds * 1000))


class Admin(Protocol):
    """The part of kafka-python's ``KafkaAdminClient`` that topic creation uses."""

    def list_topics(self) -> list[str]: ...
    def create_topics(self, new_topics: Any) -> Any: ...
    def describe_configs(self, config_resources: Any, config_filter: str = ...) -> Any: ...
    def describe_cluster(self) -> Any: ...


def ensure_topics(
    bootstrap_servers: str,
    layout: TopicLayout,
    client: Mapping[str, Any] | None = None,
    extra: Iterable[tuple[str, int]] = (),
) -> dict[str, int]:
    """Create the owned topics (and ``extra`` (name, partitions)) if missing; see
    :func:`create_owned_topics`."""
    from kafka.admin import KafkaAdminClient
    from kafka.errors import KafkaError

    try:
        admin = KafkaAdminClient(bootstrap_servers=bootstrap_servers, **client_config(client or {}))
    except KafkaError as exc:
        msg = f"cannot reach Kafka at {bootstrap_servers}: {exc}"
        raise KafkaIOError(msg, value=bootstrap_servers) from exc
    try:
        return create_owned_topics(admin, layout, extra)
    finally:
        admin.close()


def create_owned_topics(
    admin: Admin, layout: TopicLayout, extra: Iterable[tuple[str, int]] = ()
) -> dict[str, int]:
    """Create the missing topics; returns {created topic: replication factor the broker
    reported (or the one asked for)}. -1 refused → the broker's default, else 1 (logged)."""
    from kafka.errors import TopicAlreadyExistsError

    rf = layout.replication_factor
    known = rf if rf > 0 else _broker_default_rf(admin)
    existing = set(admin.list_topics())
    wanted = [(n, p, c) for n, p, c in layout.specs(known) if n not in existing]
    wanted += [(n, p, {}) for n, p in extra if n not in existing]
    created: dict[str, int] = {}
    for name, parts, configs in wanted:
        request = {"num_partitions": parts, "replication_factor": rf, "configs": configs}
        try:
            try:
                response = admin.create_topics({name: request})
            except Exception as exc:
                if rf != BROKER_DEFAULT_RF or not _refuses_default_rf(exc):
                    raise
                rf = known or 1
                log.warning(
                    "Kafka refused replication factor -1 (the broker's default; needs brokers "
                    ">= 2.4): %s; creating bakemon's topics with replication factor %d "
                    '(set "replication_factor" to choose)',
                    exc,
                    rf,
                )
                request["replication_factor"] = rf
                response = admin.create_topics({name: request})
        except TopicAlreadyExistsError:
            continue
        created[name] = _reported_rf(response, rf)
        log.info(
            "created topic %s (%d partitions, replication factor %d, %s)",
            name,
            parts,
            created[name],
            configs,
        )
    return created


def _broker_default_rf(admin: Admin) -> int | None:
    """The cluster's ``default.replication.factor`` (DescribeConfigs), or None if unknown."""
    from kafka.admin import ConfigResource, ConfigResourceType

    try:
        brokers = admin.describe_cluster()["brokers"]
        first = brokers[0]  # kafka-python 3 names it broker_id, older versions node_id
        node = first.get("broker_id", first.get("node_id"))
        resource = ConfigResource(ConfigResourceType.BROKER, str(node))
        found = admin.describe_configs([resource], config_filter="all")
        value = found["broker"][resource.name]["default.replication.factor"]["value"]
        return int(value)
    except Exception as exc:  # any broker that cannot say: decide without it
        log.debug("cannot read default.replication.factor: %s", exc)
        return None


def _refuses_default_rf(exc: Exception) -> bool:
    from kafka.errors import (
        IncompatibleBrokerVersion,
        InvalidReplicationFactorError,
        InvalidRequestError,
        UnsupportedVersionError,
    )

    refusals = (
        IncompatibleBrokerVersion,
        InvalidReplicationFactorError,
        InvalidRequestError,
        UnsupportedVersionError,
    )
    return isinstance(exc, refusals)


def _reported_rf(response: Any, asked: int) -> int:
    """CreateTopics v5+ answers the factor the broker chose; older ones do not."""
    try:
        rf = int(response["topics"][0]["replication_factor"])
    except (KeyError, IndexError, TypeError, ValueError):
        return asked
    return rf if rf > 0 else asked
