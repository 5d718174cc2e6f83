"""Followers: read a topic to its end (by the fetch high watermark), then keep following it.

A follower owns one plain (group-less) consumer on fixed partitions, applies every record in
order in a daemon thread and publishes an immutable view for readers (the HTTP handlers, the
roles), swapped by reference. Subclasses say how a record changes their state.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Self

from monitor.kafka.io import TP, KafkaSource, Record, Source, consume_to_end
from monitor.kafka.outage import Outage

__all__ = ["SourceFactory", "TopicFollower"]

log = logging.getLogger("bakemon.follower")

POLL_TIMEOUT_S = 0.5

# Builds the group-less consumer of a follower on fixed (topic, partition)s; tests pass one
# that returns an in-memory source.
SourceFactory = Callable[[Sequence[TP]], Source]


class TopicFollower:
    """Base class: subclasses implement :meth:`apply` and :meth:`publish`."""

    name = "follower"
    poll_timeout_s = POLL_TIMEOUT_S  # how long a follow poll waits; also bounds stop()

    def __init__(
        self,
        bootstrap_servers: str,
        topic: str,
        partitions: Iterable[int],
        *,
        client: Mapping[str, Any] | None = None,
        source_factory: SourceFactory | None = None,
    ) -> None:
        self._bootstrap = bootstrap_servers
        self.topic = topic
        self._partitions = sorted(set(partitions))
        self._client = dict(client or {})
        self._source_factory = source_factory or self._kafka_source
        self._ready = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_poll_s = 0.0
        self.failed: BaseException | None = None
        self.outage = Outage(self.name, log)

    # -- for subclasses ----------------------------------------------------------------------
    def apply(self, partition: int, offset: int, key: bytes | None, value: bytes | None) -> bool:
        """Fold one record; return True if the published view must change."""
        raise NotImplementedError

    def publish(self) -> None:
        """Build and swap in the readers' view."""
        raise NotImplementedError

    # -- lifecycle ---------------------------------------------------------------------------
    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    def _kafka_source(self, partitions: Sequence[TP]) -> Source:
        return KafkaSource(self._bootstrap, partitions=partitions, client=self._client)

    def start(self, timeout_s: float = 30.0) -> Self:
        """Read to the end (blocking, so readiness means "caught up"), then follow."""
        source = self._source_factory([(self.topic, p) for p in self._partitions])

        def apply(partition: int, r: Record) -> None:
            self.apply(partition, r.offset, r.key, r.value)

        try:
            consume_to_end(source, self.topic, self._partitions, apply, timeout_s=timeout_s)
        except BaseException:
            source.close()
            raise
        self.last_poll_s = time.monotonic()
        self.publish()
        self._ready.set()
        self._thread = threading.Thread(
            target=self._follow, args=(source,), name=self.name, daemon=True
        )
        self._thread.start()
        return self

    def _poll(self, source: Source) -> bool:
        batch = source.poll(self.poll_timeout_s, 10_000)
        self.last_poll_s = time.monotonic()
        changed = False
        for (_, p), recs in batch.items():
            for r in recs:
                changed |= self.apply(p, r.offset, r.key, r.value)
        if changed:
            self.publish()
        return bool(batch)

    def _follow(self, source: Source) -> None:
        """Follow until stopped; a failure (a broker outage, a bad record) keeps the last view
        served, backs off and carries on (``outage`` says since when, for /readyz)."""
        try:
            while not self._stop.is_set():
                try:
                    self._poll(source)
                except Exception as exc:
                    self.failed = exc
                    self._stop.wait(self.outage.failed(exc))
                else:
                    self.failed = None
                    self.outage.ok()
        finally:
            source.close()

    def stalled(self, after_s: float) -> bool:
        """The follower thread has neither polled nor tried to for ``after_s``."""
        if self._thread is None:
            return False
        if not self._thread.is_alive() and not self._stop.is_set():
            return True
        return time.monotonic() - self.outage.alive_at > after_s

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
