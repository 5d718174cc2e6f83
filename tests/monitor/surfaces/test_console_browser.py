"""The web console in a real headless browser (Debian's ``chromium``) against a running
bakemon (real broker, all roles, simulated traffic): the list shows both bakes, the HALT
bake's page shows the reason, the charts and the segment table, and both pages change live,
without a reload, when the verdicts change. Writes the screenshots the README shows.

Chromium is driven over the DevTools protocol on a pipe (``--remote-debugging-pipe``: JSON
messages separated by NUL on file descriptors 3 and 4), so no port is opened and no client
library is needed. Loopback only; every wait is bounded; the browser is killed at the end.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import itertools
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from monitor.cli.client import ApiClient
from monitor.cli.demo import SCENARIOS, create_bakes
from monitor.cli.demo_traffic import PARTITIONS, REQUEST_TOPIC, DemoTraffic
from monitor.config import load_settings
from monitor.kafka.broker import EmbeddedBroker, free_port
from monitor.kafka.topics import ensure_topics
from monitor.service import Service

ROOT = Path(__file__).resolve().parents[3]
RESULTS = ROOT / "benchmarks" / "results"
REQUESTS = REQUEST_TOPIC
DECIDE_TIMEOUT_S = 150.0


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.skip(
            "chromium not installed: the console's browser test is skipped (apt-get install chromium)"
        )
    return found


_ON_3_AND_4 = "import os, sys; os.dup2(int(sys.argv[1]), 3); os.dup2(int(sys.argv[2]), 4); os.execv(sys.argv[3], sys.argv[3:])"


def _high(fd: int) -> int:
    high = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 100)
    os.close(fd)
    return high


class Browser:
    """A headless chromium and a DevTools session per page, over the debugging pipe."""

    def __init__(self, binary: str, profile: Path) -> None:
        # high numbers, so that putting them on 3 and 4 cannot overwrite one with the other
        to_r, self._to_w = (_high(fd) for fd in os.pipe())
        self._from_r, from_w = (_high(fd) for fd in os.pipe())
        args = [
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--no-first-run", "--no-default-browser-check", "--disable-extensions",
            "--disable-background-networking", "--disable-sync", "--mute-audio",
            "--hide-scrollbars", "--remote-debugging-pipe", f"--user-data-dir={profile}",
            "--proxy-server=direct://", "--proxy-bypass-list=*", "about:blank",
        ]  # fmt: skip
        # fds 3 and 4 are the protocol's: a small exec wrapper puts the pipe ends there
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _ON_3_AND_4, str(to_r), str(from_w), binary, *args],
            pass_fds=(to_r, from_w),
            stdout=subprocess.DEVNULL,
            stderr=(profile.parent / "chromium.log").open("wb"),
        )
        os.close(to_r)
        os.close(from_w)
        self._ids = itertools.count(1)
        self._replies: dict[int, dict[str, Any]] = {}
        self._cond = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        buf = b""
        while chunk := os.read(self._from_r, 1 << 20):
            buf += chunk
            *msgs, buf = buf.split(b"\0")
            for raw in msgs:
                msg = orjson.loads(raw)
                if "id" in msg:
                    with self._cond:
                        self._replies[msg["id"]] = msg
                        self._cond.notify_all()

    def send(self, method: str, params: dict[str, Any] | None = None, session: str | None = None, timeout_s: float = 30.0) -> dict[str, Any]:  # fmt: skip
        ident = next(self._ids)
        msg: dict[str, Any] = {"id": ident, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._to_w, orjson.dumps(msg) + b"\0")
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while ident not in self._replies:
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    raise TimeoutError(f"no answer to {method} from chromium")
                self._cond.wait(left)
            reply = self._replies.pop(ident)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return dict(reply.get("result", {}))

    def page(self, url: str, width: int = 1280, height: int = 800) -> str:
        """A new tab at ``url``; its session id."""
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = str(
            self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        )
        self.resize(session, width, height)
        self.send("Page.enable", session=session)
        self.send("Page.navigate", {"url": url}, session=session)
        return session

    def resize(self, session: str, width: int, height: int) -> None:
        self.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 600},
            session=session,
        )

    def js(self, session: str, expression: str) -> Any:
        r = self.send(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
            session=session,
        )
        if "exceptionDetails" in r:
            raise RuntimeError(f"{expression}: {r['exceptionDetails']}")
        return r["result"].get("value")

    def wait_for(self, session: str, expression: str, timeout_s: float, what: str) -> Any:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            value = self.js(session, expression)
            if value:
                return value
            time.sleep(0.25)
        shown = self.js(session, "document.body.innerText.slice(0, 800)")
        raise AssertionError(
            f"timed out after {timeout_s:.0f}s waiting for {what}; page: {shown!r}"
        )

    def screenshot(self, session: str, path: Path) -> None:
        shot = self.send("Page.captureScreenshot", {"format": "png"}, session=session)
        path.write_bytes(base64.b64decode(shot["data"]))

    def close(self) -> None:
        with contextlib.suppress(OSError, TimeoutError, RuntimeError):
            self.send("Browser.close", timeout_s=5)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        os.close(self._to_w)
        os.close(self._from_r)


@pytest.fixture
def bakemon(broker: EmbeddedBroker) -> Iterator[tuple[str, Service]]:
    port = free_port()
    settings = load_settings(
        None,
        env={},
        flags={
            "bootstrap_servers": broker.bootstrap_servers,
            "topics": REQUESTS,
            "api_host": "127.0.0.1",
            "api_port": port,
            "ops_host": "127.0.0.1",
            "ops_port": 0,
            "block_offsets": 20_000,
            "flush_interval_s": 0.5,
            "checkpoint_interval_s": 0.5,
        },
    )
    ensure_topics(broker.bootstrap_servers, settings.layout, extra=[(REQUESTS, PARTITIONS)])
    svc = Service(settings).start()
    try:
        deadline = time.monotonic() + 60
        while not svc.ready()[0]:
            assert time.monotonic() < deadline, "bakemon did not become ready"
            time.sleep(0.2)
        yield f"http://127.0.0.1:{port}", svc
    finally:
        svc.stop()


ROWS = "JSON.stringify([...document.querySelectorAll('table.bakes tr[data-bake]')].map(r => [r.dataset.bake, r.dataset.status]).sort())"  # fmt: skip
PAGE = (
    "(() => { const a = document.querySelector('article.bake'); return a && a.dataset.status; })()"
)


def test_console_lists_bakes_and_follows_a_halt_live(
    bakemon: tuple[str, Service], tmp_path: Path
) -> None:
    """Both bakes listed PENDING, then HALT and PROMOTE in the same page (no reload); the HALT
    bake's page, open since PENDING, turns HALT with its reason, charts with data points and
    the segment table with the culprit; screenshots at 1280×800 and 390×844."""
    base, _ = bakemon
    client = ApiClient(base)
    create_bakes(client)
    browser = Browser(_chromium(), tmp_path / "profile")
    # The demo's fleet, at 25k requests/s: slow enough that a page sees PENDING first.
    traffic = DemoTraffic(
        bakemon[1].settings.bootstrap_servers, SCENARIOS["errors"].regression, 42, 25_000.0
    )
    try:
        listing = browser.page(f"{base}/")
        page = browser.page(f"{base}/#/bakes/checkout-v42")
        pending = '[["checkout-v42","PENDING"],["search-v8","PENDING"]]'
        browser.wait_for(listing, f"{ROWS} === '{pending}'", 30, "both bakes listed PENDING")
        browser.wait_for(page, f"{PAGE} === 'PENDING'", 30, "the bake page, PENDING")
        for s in (listing, page):  # a reload would lose this
            browser.js(s, "window.__sameDocument = 'yes'")
        traffic.start()
        decided = '[["checkout-v42","HALT"],["search-v8","PROMOTE"]]'
        browser.wait_for(
            listing,
            f"{ROWS} === '{decided}'",
            DECIDE_TIMEOUT_S,
            "the list to show HALT and PROMOTE",
        )
        browser.wait_for(page, f"{PAGE} === 'HALT'", 30, "the bake page to turn HALT")
        assert [browser.js(s, "window.__sameDocument") for s in (listing, page)] == ["yes", "yes"]
        doc = client.get("/v1/bakes/checkout-v42")
        shown = browser.js(page, "document.querySelector('#decision .reason').textContent")
        assert shown == doc["decision"]["reason"]
        dots = browser.js(
            page,
            "[...document.querySelectorAll('svg.chart')].map(s => s.querySelectorAll('circle.pt').length)",
        )
        assert len(dots) == 4 and min(dots) >= 1 and dots[0] >= 2, dots
        segments = browser.js(
            page,
            "JSON.stringify([...document.querySelectorAll('table.segments tbody tr')].map(r => [r.dataset.segment, r.className]))",
        )
        rows = orjson.loads(segments)
        assert {d for d, _ in rows} >= {"zone", "route"} and any(c == "culprit" for _, c in rows)
        RESULTS.mkdir(parents=True, exist_ok=True)
        browser.screenshot(page, RESULTS / "console-1280x800.png")
        browser.resize(page, 390, 844)
        time.sleep(0.5)
        assert browser.js(page, "document.documentElement.scrollWidth") <= 390  # no sideways page
        browser.screenshot(page, RESULTS / "console-390x844.png")
        browser.screenshot(listing, RESULTS / "console-list-1280x800.png")
    finally:
        traffic.stop_event.set()
        browser.close()
        if traffic.is_alive():
            traffic.join(timeout=10)
