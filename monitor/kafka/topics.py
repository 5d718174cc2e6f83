"""The topics bakemon owns: names, sizes, configs, creation, and our key → partition map.

Our own CRC-32 partitioner puts the partials, judge state and verdict document of a bake on the
same partition number, independent of any client's default partitioner.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from monitor.kafka.io import MAX_MESSAGE_BYTES, KafkaIOError, client_config

__all__ = ["DOCUMENT_MAX_BYTES", "TopicLayout", "ensure_topics", "partition_for"]

log = logging.getLogger("bakemon.kafka")

# Verdict documents must fit Kafka's default message limit (message.max.bytes = 1 MiB + a little),
# so the verdicts topic needs no override on any broker: keep a margin for the batch framing.
DOCUMENT_MAX_BYTES = 1_000_000


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

    def specs(self) -> list[tuple[str, int, dict[str, str]]]:
        """(name, partitions, configs) of every owned topic. State and verdicts are
        co-partitioned with partials (the judge of partials partition p restores from state
        partition p); documents stay under the default message limit, so no override there."""
        week_ms = str(7 * 24 * 3600 * 1000)
        # A judge snapshot holds two summaries per open source block: allow more than 1 MB.
        big = str(MAX_MESSAGE_BYTES)
        out = [
            (self.bakes, 1, {"cleanup.policy": "compact"}),
            (
                self.partials,
                self.partials_partitions,
                {"cleanup.policy": "delete", "retention.ms": week_ms, "max.message.bytes": big},
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
                {"cleanup.policy": "delete", "retention.ms": week_ms},
            ),
        ]
        if self.dead_letter:
            out.append(
                (self.dead_letter_topic, 1, {"cleanup.policy": "delete", "retention.ms": week_ms})
            )
        return out


def ensure_topics(
    bootstrap_servers: str,
    layout: TopicLayout,
    client: Mapping[str, Any] | None = None,
    extra: Iterable[tuple[str, int]] = (),
) -> None:
    """Create the owned topics (and ``extra`` (name, partitions)) if missing."""
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import KafkaError, TopicAlreadyExistsError

    try:
        admin = KafkaAdminClient(bootstrap_servers=bootstrap_servers, **client_config(client or {}))
    except KafkaError as exc:
        msg = f"cannot reach Kafka at {bootstrap_servers}: {exc}"
        raise KafkaIOError(msg, value=bootstrap_servers) from exc
    try:
        existing = set(admin.list_topics())
        wanted = [(n, p, c) for n, p, c in layout.specs() if n not in existing]
        wanted += [(n, p, {}) for n, p in extra if n not in existing]
        for name, parts, configs in wanted:
            try:
                admin.create_topics([NewTopic(name, parts, 1, topic_configs=configs)])
                log.info("created topic %s (%d partitions, %s)", name, parts, configs)
            except TopicAlreadyExistsError:
                pass
    finally:
        admin.close()
