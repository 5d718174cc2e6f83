"""``bakemon run``: the roles of one process, started and stopped together.

Each role runs its own poll loop in a thread with its own consumer; the producer and the bake
registry follower are shared. SIGTERM/SIGINT stop the loops; each role then checkpoints once
more (flush partials or snapshots, commit) and leaves its group, within ``shutdown_timeout_s``.
"""

from __future__ import annotations

import json
import logging
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from prometheus_client import CollectorRegistry

from monitor.bakes.discovery import Discovery
from monitor.bakes.store import BakeFollower
from monitor.config import Settings
from monitor.kafka.clients import kafka_python_config, make_sink, make_source, require_client
from monitor.kafka.follower import TopicFollower
from monitor.kafka.io import TP, KafkaIOError, Sink, Source
from monitor.kafka.outage import Outage, RateLimitFilter, is_transient
from monitor.kafka.topics import ensure_topics
from monitor.pipeline.ingest import Ingest
from monitor.pipeline.judge import Judge
from monitor.surfaces.alert_sinks import AlertmanagerPusher, JsonLinesWriter
from monitor.surfaces.api import Api, ApiSettings
from monitor.surfaces.httpserver import ServerLimits
from monitor.surfaces.metrics import Metrics
from monitor.surfaces.ops import OpsServer
from monitor.surfaces.timelines import TimelineView
from monitor.surfaces.views import AlertLog, VerdictView

__all__ = ["Service", "configure_logging"]

log = logging.getLogger("bakemon.service")

INGEST_GROUP = "bakemon-ingest"
JUDGE_GROUP = "bakemon-judge"
STALL_AFTER_S = (
    120.0  # > the longest bounded Kafka call a loop may wait in (flush 30 s, restore 30 s)
)


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


class _KafkaLogLimit(logging.Filter):
    """kafka-python logs every failed reconnect: one line per logger and message a minute."""

    def __init__(self) -> None:
        super().__init__()
        self._limit = RateLimitFilter(60.0)

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.name.startswith("kafka") or self._limit.filter(record)


def configure_logging(level: str, fmt: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        _JsonFormatter()
        if fmt == "json"
        else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    handler.addFilter(_KafkaLogLimit())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # kafka-python's own warnings (slow event-loop tasks, reconnects) are noise at our levels.
    logging.getLogger("kafka").setLevel(
        logging.DEBUG if root.level <= logging.DEBUG else logging.ERROR
    )


def probe_broker(bootstrap_servers: str, timeout_s: float = 2.0) -> None:
    """Fail fast (OSError) when no bootstrap address accepts a TCP connection, before a Kafka
    client spends its 30 s bootstrap timeout (and its log lines) finding that out."""
    last: OSError | None = None
    for addr in bootstrap_servers.split(","):
        host, _, port = addr.strip().rpartition(":")
        try:
            with socket.create_connection((host.strip("[]") or "localhost", int(port)), timeout_s):
                return
        except ValueError:
            return  # not host:port; let the client report it
        except OSError as exc:
            last = exc
    raise last or OSError(f"no bootstrap servers in {bootstrap_servers!r}")


def _closer(*things: Source | Sink) -> Callable[[], None]:
    def close() -> None:
        for t in things:
            t.close()

    return close


class Service:
    """The roles of one ``bakemon run`` process."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.ingest: Ingest | None = None
        self.judge: Judge | None = None
        self.follower: BakeFollower | None = None
        self.sink: Sink | None = None
        self.errors: list[BaseException] = []
        self.outages: dict[str, Outage] = {}
        self.view: VerdictView | None = None
        self.alert_log: AlertLog | None = None
        self.timeline_view: TimelineView | None = None
        self.api: Api | None = None
        self._started = False
        self.pusher: AlertmanagerPusher | None = None
        self.jsonl: JsonLinesWriter | None = None
        self.ops: OpsServer | None = None

    def start(self) -> Service:
        s = self.settings
        require_client(s.kafka_client)  # confluent selected but not installed: say so first
        client = kafka_python_config(s.kafka)  # admin and followers stay on kafka-python
        self._connect(client)
        assert self.follower is not None
        self.metrics = Metrics(
            CollectorRegistry(),
            ingest=lambda: self.ingest.stats if self.ingest else None,
            judge=lambda: self.judge.stats if self.judge else None,
            documents=lambda: self.api.all_documents() if self.api else [],
            lag=self._lag,
            alerts=lambda: len(self.alert_log.alerts()) if self.alert_log else 0,
            last_poll=self._last_polls,
        )
        if s.ops_port >= 0:
            self.ops = OpsServer(
                s.ops_host,
                s.ops_port,
                metrics=self.metrics.render,
                healthy=self.healthy,
                ready=self.ready,
            ).start()
        if "ingest" in s.roles:
            self._start_ingest(client)
        if "judge" in s.roles:
            self._start_judge(client)
        if "api" in s.roles:
            self._start_api(client)
        self._started = True
        log.info(
            "bakemon running: roles=%s topics=%s bootstrap=%s",
            ",".join(s.roles),
            ",".join(s.topics),
            s.bootstrap_servers,
        )
        return self

    def _connect(self, client: dict[str, Any]) -> None:
        """Topics, the shared producer and the bake registry, retried for ``broker_wait_s``;
        then one clear error (a configuration problem, or no broker)."""
        s = self.settings
        deadline = time.monotonic() + s.broker_wait_s
        quiet = logging.getLogger("bakemon.startup")  # a short wait ends in one error line
        quiet.setLevel(logging.INFO if s.broker_wait_s > 10 else logging.ERROR)
        outage = Outage("start-up", quiet, cap_s=5.0)
        while True:
            try:
                probe_broker(s.bootstrap_servers)
                if s.create_topics:
                    ensure_topics(s.bootstrap_servers, s.layout, client)
                self.sink = self.sink or make_sink(
                    s.kafka_client, s.bootstrap_servers, client=s.kafka
                )
                self.follower = BakeFollower(
                    s.bootstrap_servers, s.layout, static=s.bakes, client=client
                ).start()
                outage.ok()
                return
            except Exception as exc:
                if not is_transient(exc) or time.monotonic() >= deadline:
                    if self.sink is not None:
                        self.sink.close()
                    msg = (
                        f"cannot reach Kafka at {s.bootstrap_servers} within "
                        f"{s.broker_wait_s:g}s ({type(exc).__name__}: {exc}); check "
                        "bootstrap_servers, or wait longer with broker_wait_s / BAKEMON_BROKER_WAIT_S"
                    )
                    raise KafkaIOError(msg, value=s.bootstrap_servers) from exc
                time.sleep(min(outage.failed(exc), max(deadline - time.monotonic(), 0.1)))

    def _start_ingest(self, client: dict[str, Any]) -> None:
        s = self.settings
        assert self.follower is not None
        src = make_source(
            s.kafka_client,
            s.bootstrap_servers,
            group_id=INGEST_GROUP,
            topics=s.topics,
            client=s.kafka,
        )
        # Each role has its own producer, so one role's flush never takes another's futures.
        sink = make_sink(s.kafka_client, s.bootstrap_servers, client=s.kafka)
        self.ingest = Ingest(
            src,
            sink,
            s.layout,
            self.follower.registry,
            s.field_map,
            block_offsets=s.block_offsets,
            flush_interval_s=s.flush_interval_s,
            discovery=Discovery(s.discovery) if s.discovery.enabled else None,
            observe_flush_s=self.metrics.flush_seconds.observe,
            max_clock_skew_s=s.max_clock_skew_s,
        )
        self._spawn("ingest", self.ingest.step, self.ingest.checkpoint, _closer(src, sink))

    def _start_judge(self, client: dict[str, Any]) -> None:
        s = self.settings
        layout = s.layout
        assert self.follower is not None
        src = make_source(
            s.kafka_client,
            s.bootstrap_servers,
            group_id=JUDGE_GROUP,
            topics=[layout.partials],
            client=s.kafka,
        )

        def restore_source(tps: Sequence[TP]) -> Source:
            return make_source(
                s.kafka_client, s.bootstrap_servers, partitions=list(tps), client=s.kafka
            )

        sink = make_sink(s.kafka_client, s.bootstrap_servers, client=s.kafka)
        self.judge = Judge(
            src,
            sink,
            layout,
            self.follower.registry,
            restore_source,
            checkpoint_interval_s=s.checkpoint_interval_s,
            unknown_bake_hold_s=s.unknown_bake_hold_s,
            retention_s=s.retention_s,
            alert_base_url=s.alert_base_url,
            runbook_url=s.runbook_url,
            observe_fold_s=self.metrics.fold_seconds.observe,
        )
        self._spawn("judge", self.judge.step, self.judge.checkpoint, _closer(src, sink))

    def _start_api(self, client: dict[str, Any]) -> None:
        s = self.settings
        assert self.follower is not None and self.sink is not None
        self.view = VerdictView(s.bootstrap_servers, s.layout, client=client).start()
        self.alert_log = AlertLog(s.bootstrap_servers, s.layout, client=client).start()
        self.timeline_view = TimelineView(s.bootstrap_servers, s.layout, client=client).start()
        self.api = Api(
            ApiSettings(
                host=s.api_host,
                port=s.api_port,
                token=s.api_token,
                protect_reads=s.api_protect_reads,
                stale_after_s=s.stale_after_s,
                max_active_bakes=s.max_active_bakes,
                limits=ServerLimits(
                    workers=s.api_workers,
                    max_connections=s.api_max_connections,
                    max_streams=s.api_max_streams,
                    read_timeout_s=s.api_read_timeout_s,
                ),
            ),
            follower=self.follower,
            view=self.view,
            alerts=self.alert_log,
            timelines=self.timeline_view,
            sink=self.sink,
            layout=s.layout,
            metrics=self.metrics.render,
            healthy=self.healthy,
            ready=self.ready,
        ).start()
        if s.alertmanager_url:
            self.pusher = AlertmanagerPusher(
                self.alert_log,
                s.alertmanager_url,
                resend_s=s.alertmanager_resend_s,
                ttl_s=s.alert_ttl_s,
            ).start()
        if s.alerts_jsonl:
            self.jsonl = JsonLinesWriter(self.alert_log, s.alerts_jsonl).start()

    # -- health ------------------------------------------------------------------------------
    def _last_polls(self) -> dict[str, float]:
        out: dict[str, float] = {}
        if self.ingest is not None:
            out["ingest"] = self.ingest.stats.last_poll_s
        if self.judge is not None:
            out["judge"] = self.judge.stats.last_poll_s
        for name, f in (
            ("bakes", self.follower),
            ("verdicts", self.view),
            ("alerts", self.alert_log),
        ):
            if f is not None:
                out[name] = f.last_poll_s
        return out

    def _lag(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for role, r in (("ingest", self.ingest), ("judge", self.judge)):
            if r is not None:
                out[role] = sum(r.source.lag().values())
        return out

    def healthy(self) -> tuple[bool, str]:
        """Every loop is alive: it polled, or tried to and is backing off (a broker outage is
        not a reason to restart the process); 503 when a loop is stuck or keeps failing on
        something that is not Kafka (a bug a restart may clear)."""
        if self.errors:
            return False, f"role failed: {self.errors[0]!r}"
        now = time.monotonic()
        stuck = [n for n, o in self.outages.items() if now - o.alive_at > STALL_AFTER_S]
        stuck += [n for n, f in self._followers() if f.stalled(STALL_AFTER_S)]
        if stuck:
            return False, f"stalled loops: {', '.join(stuck)}"
        broken = [o.describe() for o in self._troubles() if not o.transient]
        if broken:
            return False, "; ".join(broken)
        return True, "loops alive"

    def _followers(self) -> list[tuple[str, TopicFollower]]:
        pairs = (
            ("bakes", self.follower),
            ("verdicts", self.view),
            ("alerts", self.alert_log),
            ("timelines", self.timeline_view),
        )
        return [(n, f) for n, f in pairs if f is not None]

    def _troubles(self) -> list[Outage]:
        outages = list(self.outages.values()) + [f.outage for _, f in self._followers()]
        return [o for o in outages if o.active]

    def ready(self) -> tuple[bool, str]:
        """Registry loaded, followers caught up, every role has polled once, and no loop is
        cut off from the broker (``broker unreachable since …``)."""
        if not self._started or self.follower is None or not self.follower.ready:
            return False, "bake registry loading"
        for name, f in (("verdicts", self.view), ("alerts", self.alert_log)):
            if f is not None and not f.ready:
                return False, f"{name} loading"
        troubles = self._troubles()
        if troubles:
            return False, "; ".join(o.describe() for o in troubles)
        for name, r in (("ingest", self.ingest), ("judge", self.judge)):
            if r is not None and r.stats.last_poll_s == 0.0:
                return False, f"{name} not polling yet"
        return True, "ready"

    def _spawn(
        self,
        name: str,
        step: Callable[[], Any],
        checkpoint: Callable[[], Any],
        close: Callable[[], None],
    ) -> None:
        outage = self.outages[name] = Outage(name, log)

        def loop() -> None:
            try:
                while not self._stop.is_set():
                    try:
                        step()
                    except Exception as exc:
                        self._stop.wait(outage.failed(exc))
                    else:
                        outage.ok()
                try:
                    checkpoint()
                except Exception:
                    log.exception(
                        "final checkpoint of %s failed (it resumes from the last one)", name
                    )
            except BaseException as exc:  # not an Exception: the loop itself is broken
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
        if self.api is not None:
            self.api.stop()
        if self.ops is not None:
            self.ops.stop()
        for sink in (self.pusher, self.jsonl):
            if sink is not None:
                sink.stop()
        for f in (self.view, self.alert_log, self.timeline_view):
            if f is not None:
                f.stop()
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
