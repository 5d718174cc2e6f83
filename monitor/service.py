"""``bakemon run``: the roles of one process, started and stopped together.

Each role runs its own poll loop in a thread with its own consumer; the producer and the bake
registry follower are shared. SIGTERM/SIGINT stop the loops; each role then checkpoints once
more (flush partials or snapshots, commit) and leaves its group, within ``shutdown_timeout_s``.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from monitor.bake_store import BakeFollower
from monitor.bakes import BakeSpec
from monitor.config import Settings
from monitor.discovery import Discovery
from monitor.ingest import Ingest
from monitor.judge import Judge
from monitor.kafka_io import KafkaSink, KafkaSource, ensure_topics

__all__ = ["Service", "configure_logging"]

log = logging.getLogger("bakemon.service")

INGEST_GROUP = "bakemon-ingest"
JUDGE_GROUP = "bakemon-judge"


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out)


def configure_logging(level: str, fmt: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        _JsonFormatter()
        if fmt == "json"
        else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("kafka").setLevel(max(logging.WARNING, root.level))


class Service:
    """The roles of one ``bakemon run`` process."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.ingest: Ingest | None = None
        self.judge: Judge | None = None
        self.follower: BakeFollower | None = None
        self.sink: KafkaSink | None = None
        self.errors: list[BaseException] = []

    def _spec_for(self, bake_id: str, wait_s: float) -> BakeSpec | None:
        assert self.follower is not None
        if not self.follower.wait_for(bake_id, wait_s):
            return None
        return self.follower.registry().get(bake_id)

    def start(self) -> Service:
        s = self.settings
        layout = s.layout
        client = dict(s.kafka)
        if s.create_topics:
            ensure_topics(s.bootstrap_servers, layout, client)
        self.sink = KafkaSink(s.bootstrap_servers, client=client)
        self.follower = BakeFollower(
            s.bootstrap_servers, layout, static=s.bakes, client=client
        ).start()
        if "ingest" in s.roles:
            src = KafkaSource(
                s.bootstrap_servers, group_id=INGEST_GROUP, topics=s.topics, client=client
            )
            self.ingest = Ingest(
                src,
                self.sink,
                layout,
                self.follower.registry,
                s.field_map,
                block_offsets=s.block_offsets,
                flush_interval_s=s.flush_interval_s,
                discovery=Discovery(s.discovery) if s.discovery.enabled else None,
            )
            self._spawn("ingest", self.ingest.step, self.ingest.checkpoint, src.close)
        if "judge" in s.roles:
            src = KafkaSource(
                s.bootstrap_servers, group_id=JUDGE_GROUP, topics=[layout.partials], client=client
            )

            def restore_source(p: int) -> KafkaSource:
                return KafkaSource(
                    s.bootstrap_servers, partitions=[(layout.verdicts, p)], client=client
                )

            self.judge = Judge(
                src,
                self.sink,
                layout,
                self._spec_for,
                restore_source,
                checkpoint_interval_s=s.checkpoint_interval_s,
            )
            self._spawn("judge", self.judge.step, self.judge.checkpoint, src.close)
        log.info(
            "bakemon running: roles=%s topics=%s bootstrap=%s",
            ",".join(s.roles),
            ",".join(s.topics),
            s.bootstrap_servers,
        )
        return self

    def _spawn(
        self,
        name: str,
        step: Callable[[], Any],
        checkpoint: Callable[[], None],
        close: Callable[[], None],
    ) -> None:
        def loop() -> None:
            try:
                while not self._stop.is_set():
                    step()
                checkpoint()
            except BaseException as exc:  # a dead role must stop the process, not idle silently
                log.exception("role %s failed", name)
                self.errors.append(exc)
                self._stop.set()
            finally:
                try:
                    close()
                except Exception:
                    log.exception("closing %s", name)

        t = threading.Thread(target=loop, name=name, daemon=True)
        t.start()
        self._threads.append(t)

    def stop(self) -> None:
        """Stop the loops, final checkpoint, close — bounded by ``shutdown_timeout_s``."""
        self._stop.set()
        deadline = time.monotonic() + self.settings.shutdown_timeout_s
        for t in self._threads:
            t.join(max(deadline - time.monotonic(), 0.1))
        if self.follower is not None:
            self.follower.stop()
        if self.sink is not None:
            self.sink.close()
        log.info("bakemon stopped")

    def run_forever(self) -> int:
        """Run until SIGTERM/SIGINT; exit code 0, or 1 if a role failed."""

        def handle(signum: int, _frame: Any) -> None:
            log.info("signal %d: stopping", signum)
            self._stop.set()

        signal.signal(signal.SIGTERM, handle)
        signal.signal(signal.SIGINT, handle)
        while not self._stop.wait(0.5):
            pass
        self.stop()
        return 1 if self.errors else 0
