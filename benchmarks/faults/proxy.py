"""A loopback TCP fault proxy: forwards ``listen_port`` → ``target_port`` and can cut (reset
every connection and refuse new ones), stall (hold connections, forward nothing), slow (delay
every chunk forwarded) or heal.

Only 127.0.0.1, daemon threads, and :meth:`close` ends everything: it cannot outlive a test.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading

__all__ = ["FaultProxy"]


class FaultProxy:
    def __init__(self, target_port: int, listen_port: int = 0) -> None:
        self.target = ("127.0.0.1", target_port)
        self._listen = socket.create_server(("127.0.0.1", listen_port))
        self._listen.settimeout(0.2)
        self.port = self._listen.getsockname()[1]
        self.mode = "pass"  # "pass" | "cut" | "stall" | "slow"
        self.delay_s = 0.0
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.connections = 0
        threading.Thread(target=self._accept, name="fault-proxy", daemon=True).start()
        threading.Thread(target=self._pump, name="fault-pump", daemon=True).start()

    def cut(self) -> None:
        """Reset every open connection; refuse new ones until :meth:`heal`."""
        self.mode = "cut"
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for a, b in pairs:
            for s in (a, b):
                with contextlib.suppress(OSError):
                    s.setsockopt(
                        socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
                    )
                    s.close()

    def stall(self) -> None:
        """Keep connections open but forward nothing (a hung broker or a black-holed link)."""
        self.mode = "stall"

    def slow(self, delay_s: float) -> None:
        """Forward, but hold every chunk ``delay_s`` first (a congested or distant link)."""
        self.delay_s = delay_s
        self.mode = "slow"

    def heal(self) -> None:
        self.mode = "pass"
        self.delay_s = 0.0

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listen.accept()
            except (TimeoutError, OSError):
                continue
            if self.mode == "cut":
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=2)
            except OSError:
                client.close()
                continue
            client.setblocking(False)
            upstream.setblocking(False)
            with self._lock:
                self._pairs.append((client, upstream))
                self.connections += 1

    def _pump(self) -> None:
        while not self._stop.is_set():
            if self.mode not in ("pass", "slow"):
                self._stop.wait(0.05)
                continue
            with self._lock:
                pairs = list(self._pairs)
            if not pairs:
                self._stop.wait(0.02)
                continue
            sel = selectors.DefaultSelector()
            for a, b in pairs:
                with contextlib.suppress(ValueError, KeyError, OSError):
                    sel.register(a, selectors.EVENT_READ, (a, b))
                    sel.register(b, selectors.EVENT_READ, (b, a))
            try:
                ready = sel.select(0.05)
            finally:
                sel.close()
            for key, _ in ready:
                src, dst = key.data
                self._forward(src, dst)

    def _forward(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            data = src.recv(65536)
            if data and self.delay_s > 0:
                self._stop.wait(self.delay_s)
            if data:
                dst.setblocking(True)
                dst.settimeout(5)
                dst.sendall(data)
                dst.setblocking(False)
                return
        except OSError:
            pass
        self._drop(src, dst)

    def _drop(self, a: socket.socket, b: socket.socket) -> None:
        with self._lock:
            self._pairs = [p for p in self._pairs if a not in p]
        for s in (a, b):
            with contextlib.suppress(OSError):
                s.close()

    def close(self) -> None:
        self._stop.set()
        self.cut()
        with contextlib.suppress(OSError):
            self._listen.close()
