"""One checkpoint for both roles: send outputs → flush (wait for acks) → commit offsets.

A role implements :class:`Outputs`. :meth:`Checkpoint.run` asks it to send what changed, sends
again the side outputs a failed flush left unacknowledged, and waits for the producer's acks. On
a transient error nothing is committed and the role marks its outputs to be sent again (they
are cumulative or idempotent, so re-sending is always safe); otherwise the role says which
offsets its acknowledged outputs cover, and those of partitions it still owns are committed (a
revoked partition's new owner commits for itself).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from monitor.errors import ConfigError
from monitor.kafka.io import TP, KafkaIOError, Sink, Source, transient_errors

__all__ = ["Checkpoint", "Outputs"]

log = logging.getLogger("bakemon.checkpoint")

FLUSH_TIMEOUT_S = 30.0


class Outputs(Protocol):
    """What a role tells its checkpoint."""

    def send_outputs(self, sink: Sink) -> None:
        """Send everything changed since the last acknowledged checkpoint."""

    def outputs_failed(self) -> None:
        """The flush failed: mark what was sent since the last acknowledged checkpoint to be
        sent again."""

    def outputs_acked(self) -> Mapping[TP, int]:
        """The flush succeeded: forget what is now durable; return the offsets it covers."""
        ...


@dataclass(frozen=True)
class _Message:
    topic: str
    value: bytes | None
    key: bytes | None
    partition: int | None
    headers: tuple[tuple[str, bytes], ...]


class Checkpoint:
    """Flush → commit in one place, on a schedule of ``interval_s`` of ``clock``."""

    def __init__(
        self,
        name: str,
        source: Source,
        sink: Sink,
        *,
        interval_s: float,
        clock: Callable[[], float] = time.monotonic,
        observe_s: Callable[[float], None] | None = None,
        flush_timeout_s: float = FLUSH_TIMEOUT_S,
    ) -> None:
        if interval_s <= 0:
            msg = f"interval_s must be > 0, got {interval_s}"
            raise ConfigError(msg, value=interval_s)
        self.name = name
        self.source = source
        self.sink = sink
        self.interval_s = interval_s
        self.clock = clock
        self.observe_s = observe_s
        self.flush_timeout_s = flush_timeout_s
        self._transient = transient_errors()
        self._unacked: list[_Message] = []
        self._retry: list[_Message] = []
        self.completed = 0
        self.failed = 0
        self.commit_failures = 0
        self.last_s = 0.0
        self._next_s = clock() + interval_s

    def due(self) -> bool:
        return self.clock() >= self._next_s

    def send(
        self,
        topic: str,
        value: bytes | None,
        *,
        key: bytes | None = None,
        partition: int | None = None,
        headers: Sequence[tuple[str, bytes]] = (),
    ) -> None:
        """Send a side output now (an alert, a dead letter, a bake proposal); it is kept until
        a checkpoint's flush acknowledges it and sent again after a failed one."""
        m = _Message(topic, value, key, partition, tuple(headers))
        try:
            self._send(m)
        except self._transient as exc:  # the next checkpoint sends it before its flush
            log.warning("%s send failed, sending again at the next checkpoint: %s", self.name, exc)
            self._retry.append(m)

    def _send(self, m: _Message) -> None:
        self.sink.send(m.topic, m.value, key=m.key, partition=m.partition, headers=m.headers)
        self._unacked.append(m)

    def run(self, outputs: Outputs) -> bool:
        """One checkpoint; True if the outputs were acknowledged (and offsets committed)."""
        t0 = time.perf_counter()
        retry, self._retry = self._retry, []
        try:  # a send can fail too (no metadata within max_block_ms): the same as a failed flush
            outputs.send_outputs(self.sink)
            while retry:
                self._send(retry[0])
                retry.pop(0)
            if self._retry:  # a side output the role sent just now failed: commit nothing yet
                msg = f"{len(self._retry)} side output(s) not sent"
                raise KafkaIOError(msg, value=len(self._retry))
            self.sink.flush(self.flush_timeout_s)
        except self._transient as exc:
            log.warning("%s checkpoint failed, sending again at the next one: %s", self.name, exc)
            outputs.outputs_failed()
            self._retry, self._unacked = [*self._unacked, *retry, *self._retry], []
            self.failed += 1
            self._next_s = self.clock() + self.interval_s
            return False
        self._unacked = []
        offsets = outputs.outputs_acked()
        owned = self.source.assignment()
        commits = {tp: o for tp, o in offsets.items() if tp in owned}
        if commits:
            try:
                self.source.commit(commits)
            except self._transient as exc:  # a later commit covers it; re-reading is safe
                log.warning("%s commit failed, retrying at the next checkpoint: %s", self.name, exc)
                self.commit_failures += 1
        self.completed += 1
        self.last_s = self.clock()
        self._next_s = self.last_s + self.interval_s
        if self.observe_s is not None:
            self.observe_s(time.perf_counter() - t0)
        return True
