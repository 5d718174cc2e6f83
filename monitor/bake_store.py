"""The bake registry as a Kafka topic: bake specs keyed by id in the compacted ``bakes`` topic.

Every instance reads the topic to its end before it is ready, then follows it in a background
thread; readers get an immutable :class:`~monitor.bakes.Registry` snapshot, swapped on change.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable

import orjson

from monitor.bakes import BakeSpec, Registry
from monitor.errors import ConfigError
from monitor.kafka_io import KafkaSource, Sink, TopicLayout, read_to_end

__all__ = ["BakeFollower", "publish_bake"]

log = logging.getLogger("bakemon.bakes")


def publish_bake(sink: Sink, layout: TopicLayout, spec: BakeSpec) -> None:
    """Append a bake spec to the bakes topic (the latest spec per id wins)."""
    sink.send(layout.bakes, orjson.dumps(spec.to_dict()), key=spec.id.encode(), partition=0)


class BakeFollower:
    """Keeps a registry in sync with the bakes topic (plus config-file bakes)."""

    def __init__(
        self,
        bootstrap_servers: str,
        layout: TopicLayout,
        *,
        static: Iterable[BakeSpec] = (),
        client: dict[str, object] | None = None,
    ) -> None:
        self._bootstrap = bootstrap_servers
        self._layout = layout
        self._client = dict(client or {})
        self._static = list(static)
        self._specs: dict[str, BakeSpec] = {s.id: s for s in self._static}
        self._registry = Registry(self._specs.values())
        self._ready = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.invalid = 0
        self.last_poll_s = 0.0

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    def registry(self) -> Registry:
        """The current registry snapshot (never mutated after publication)."""
        return self._registry

    def _apply(self, key: bytes, value: bytes | None) -> bool:
        bake_id = key.decode(errors="replace")
        if value is None:
            return self._specs.pop(bake_id, None) is not None
        try:
            spec = BakeSpec.from_dict(orjson.loads(value))
        except (orjson.JSONDecodeError, ConfigError) as exc:
            self.invalid += 1
            log.warning('ignoring invalid bake "%s" in %s: %s', bake_id, self._layout.bakes, exc)
            return False
        if self._specs.get(spec.id) == spec:
            return False
        self._specs[spec.id] = spec
        return True

    def _publish(self) -> None:
        self._registry = Registry(sorted(self._specs.values(), key=lambda s: (s.start_s, s.id)))

    def start(self, timeout_s: float = 30.0) -> BakeFollower:
        """Read the topic to its end (blocking), then follow it in a daemon thread."""
        source = KafkaSource(
            self._bootstrap, partitions=[(self._layout.bakes, 0)], client=self._client
        )
        snap = read_to_end(source, self._layout.bakes, [0], timeout_s=timeout_s)
        for k, v in snap.values.items():
            self._apply(k, v)
        self._publish()
        self._ready.set()
        log.info("bake registry loaded: %d bakes", len(self._specs))
        self._thread = threading.Thread(
            target=self._follow, args=(source,), name="bake-follower", daemon=True
        )
        self._thread.start()
        return self

    def _follow(self, source: KafkaSource) -> None:
        try:
            while not self._stop.is_set():
                batch = source.poll(0.5, 10_000)
                self.last_poll_s = time.monotonic()
                changed = False
                for recs in batch.values():
                    for r in recs:
                        if r.key is not None:
                            changed |= self._apply(r.key, r.value)
                if changed:
                    self._publish()
        except Exception:  # keep the service alive; /healthz reports the stalled follower
            log.exception("bake follower stopped")
        finally:
            source.close()

    def wait_for(self, bake_id: str, timeout_s: float) -> bool:
        """Wait until ``bake_id`` is in the registry (e.g. a partial arrived first)."""
        deadline = time.monotonic() + timeout_s
        while bake_id not in self._registry:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
