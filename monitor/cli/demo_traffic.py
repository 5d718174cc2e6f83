"""The demo's simulated traffic, produced by a child process paced by the pipeline.

Producing with kafka-python costs about as much CPU per record as ingesting it, so the
generator runs in its own process (``python -m monitor.cli.demo_traffic``): bakemon's process
keeps its interpreter to itself, as it would in production, where traffic comes from elsewhere.
The two talk over the child's stdin and stdout, one exchange per chunk of :data:`CHUNK` records:
the child reports (records sent, latest event time) and waits for ``go`` or ``stop``; the parent's :class:`DemoTraffic` thread answers
``go`` once ``keeps_up(sent)`` holds (the pipeline is not left behind), so the demo runs as fast
as bakemon does without a backlog that every verdict would wait behind. A child that fails
reports its error (or its exit code and stderr); a parent that dies closes the pipe, and the
child stops at its next chunk.
"""

from __future__ import annotations

import base64
import contextlib
import os
import pickle
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from typing import IO, Any

import orjson

from bakesim import Regression, Scenario, ServiceSpec, iter_chunks, to_json_lines
from monitor.kafka.io import client_config

__all__ = ["CHUNK", "PARTITIONS", "REQUEST_TOPIC", "DemoTraffic", "fleet"]

REQUEST_TOPIC = "requests"
PARTITIONS = 4
CHUNK = 1000  # records per exchange with the child
STOP_WAIT_S = 10.0  # how long a stopped child may take to flush its producer


def fleet(regression: Regression, seed: int) -> Scenario:
    """The demo's fleet: checkout (with ``regression``) and search (healthy), 25 % canaries."""
    return Scenario(
        services=(
            ServiceSpec(name="checkout", canary_share=0.25, regression=regression),
            ServiceSpec(
                name="search", baseline_version="v7", canary_version="v8", canary_share=0.25
            ),
        ),
        mean_rps=2000.0,
        start_s=time.time(),
        seed=seed,
    )


class _Pipe:
    """The child's end: JSON lines out on the real stdout, words in on stdin."""

    def __init__(self) -> None:
        self._out = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
        sys.stdout = sys.stderr  # a stray print must not garble the protocol

    def send(self, msg: tuple[str, int, Any]) -> None:
        self._out.write(orjson.dumps(msg) + b"\n")
        self._out.flush()

    def recv(self) -> str:
        line = sys.stdin.readline()
        if not line:
            raise EOFError
        return line.strip()


def _produce(
    conn: _Pipe, bootstrap: str, kafka: dict[str, Any], scenario: Scenario, rate: float
) -> None:
    """The child: produce ``scenario`` chunk by chunk, at most ``rate`` records/s (0: no
    limit), each chunk only after the parent's ``go``."""
    sent = 0
    try:
        from kafka import KafkaProducer

        tuning = {"linger_ms": 20, "batch_size": 512 * 1024, "acks": 1}
        producer = KafkaProducer(bootstrap_servers=bootstrap, **(tuning | kafka))
        t0 = time.monotonic()
        for cols in iter_chunks(scenario, chunk_requests=CHUNK):
            for line in to_json_lines(cols):
                producer.send(REQUEST_TOPIC, line, partition=sent % PARTITIONS)
                sent += 1
            if rate > 0:
                time.sleep(max(0.0, sent / rate - (time.monotonic() - t0)))
            conn.send(("chunk", sent, float(cols.ts.max())))
            if conn.recv() != "go":
                break
        producer.flush()
        producer.close()
        conn.send(("done", sent, 0.0))
    except (EOFError, BrokenPipeError):
        return  # the parent is gone
    except BaseException as exc:
        with contextlib.suppress(OSError, ValueError):
            conn.send(("error", sent, f"{type(exc).__name__}: {exc}"))


class DemoTraffic(threading.Thread):
    """Runs the traffic child until stopped; :attr:`sent` counts the records it handed to its
    producer, :attr:`error` holds why it failed."""

    def __init__(
        self,
        bootstrap: str,
        regression: Regression,
        seed: int,
        rate: float,
        kafka: dict[str, Any] | None = None,
        keeps_up: Callable[[int], bool] | None = None,
    ) -> None:
        super().__init__(name="demo-traffic", daemon=True)
        self.bootstrap = bootstrap
        self.kafka = client_config(kafka or {})
        self.scenario = fleet(regression, seed)
        self.rate = rate
        self.keeps_up = keeps_up  # (records sent) -> whether the pipeline keeps up: else wait
        self.stop_event = threading.Event()
        self.sent = 0
        self.error: BaseException | None = None

    def produced(self, latest_event_s: float) -> None:
        """Called when a chunk has been handed to the producer (a benchmark notes times here)."""

    def run(self) -> None:
        args = pickle.dumps((self.bootstrap, self.kafka, self.scenario, self.rate))
        env = os.environ | {"PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        with tempfile.TemporaryFile() as errors:
            child = subprocess.Popen(
                [sys.executable, "-m", __name__],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=errors,
                env=env,
            )
            assert child.stdin is not None and child.stdout is not None
            try:
                child.stdin.write(base64.b64encode(args) + b"\n")
                child.stdin.flush()
                self._converse(child.stdin, child.stdout)
            except BaseException as exc:
                self.error = exc
            finally:
                with contextlib.suppress(OSError):
                    child.stdin.close()
                try:
                    child.wait(STOP_WAIT_S)
                except subprocess.TimeoutExpired:
                    child.kill()
                    child.wait()
            if self.error is None and child.returncode not in (0, None):
                errors.seek(0)
                tail = errors.read()[-2000:].decode(errors="replace").strip()
                self.error = RuntimeError(
                    f"the traffic process exited with code {child.returncode}: {tail}"
                )

    def _converse(self, to_child: IO[bytes], from_child: IO[bytes]) -> None:
        while True:
            line = from_child.readline()
            if not line:
                return  # exited: run() reports its code
            kind, sent, value = orjson.loads(line)
            self.sent = sent
            if kind == "error":
                raise RuntimeError(value)
            if kind == "done":
                return
            self.produced(value)
            while not self.stop_event.is_set() and not (
                self.keeps_up is None or self.keeps_up(sent)
            ):
                self.stop_event.wait(0.01)
            to_child.write(b"stop\n" if self.stop_event.is_set() else b"go\n")
            to_child.flush()


def _main() -> None:
    bootstrap, kafka, scenario, rate = pickle.loads(base64.b64decode(sys.stdin.readline()))
    _produce(_Pipe(), bootstrap, kafka, scenario, rate)


if __name__ == "__main__":
    _main()
