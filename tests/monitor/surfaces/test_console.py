"""The web console's server side: its files, the bake page's HTML (charts, segments, reason),
the static page ``replay --html`` writes, and the document stream — on a real ``Api`` whose
followers are fed records directly (no broker)."""

from __future__ import annotations

import html
import http.client
import re
import socket
import time
from collections.abc import Iterator, Sequence
from typing import Any

import orjson
import pytest

from benchmarks.faults.cluster import service_log
from monitor.bakes.spec import BakeSpec, Registry
from monitor.bakes.store import BakeFollower
from monitor.kafka.topics import TopicLayout
from monitor.records.fieldmap import PRESETS
from monitor.replay import replay
from monitor.surfaces.api import Api, ApiSettings
from monitor.surfaces.console import asset, render_bake_html
from monitor.surfaces.console_http import summary
from monitor.surfaces.views import AlertLog, VerdictView

LAYOUT = TopicLayout("t.")
TOKEN = "console-token-0123456789"
POLICY = {"min_canary_requests": 2000, "errors": {"tol": 0.5}, "latency": {"tol": 0.3}}
SPECS = [
    BakeSpec.from_dict(
        {"id": f"{s}-{c}", "service": s, "canary": c, "baseline": b, "policy": POLICY, "start": 0}
    )
    for s, c, b in (("checkout", "v42", "v41"), ("search", "v8", "v7"))
]


@pytest.fixture(scope="module")
def replayed() -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
    """(document, timeline) per bake after replaying the two-service log (checkout: 2x errors)."""
    lines = service_log(150_000, seed=3)
    result = replay(
        iter([lines[i : i + 2000] for i in range(0, len(lines), 2000)]),
        Registry(SPECS),
        PRESETS["plain"],
    )
    return {
        k: (
            v.document(),
            result.timelines[k].document(k) if k in result.timelines else {"points": []},
        )
        for k, v in result.verdicts.items()
    }


class _NoSink:
    """Reads never publish; a mutation reaching here is a test bug."""

    def send(self, *args: Any, **kwargs: Any) -> None:
        raise AssertionError("the console's reads must not publish")

    def flush(self, timeout_s: float) -> None:
        pass


def _start(docs: Sequence[dict[str, Any]], alerts: Sequence[dict[str, Any]] = (), **settings: Any) -> tuple[Api, VerdictView]:  # fmt: skip
    view = VerdictView("127.0.0.1:9", LAYOUT)
    for i, d in enumerate(docs):
        view.apply(0, i, str(d["id"]).encode(), orjson.dumps(d))
    view.publish()
    log = AlertLog("127.0.0.1:9", LAYOUT)
    for i, a in enumerate(alerts):
        log.apply(0, i, None, orjson.dumps(a))
    log.publish()
    api = Api(
        ApiSettings(host="127.0.0.1", port=0, sse_keepalive_s=0.5, **settings),
        follower=BakeFollower("127.0.0.1:9", LAYOUT, static=SPECS),
        view=view,
        alerts=log,
        sink=_NoSink(),
        layout=LAYOUT,
    ).start()
    return api, view


@pytest.fixture
def api(replayed: dict[str, tuple[dict[str, Any], dict[str, Any]]]) -> Iterator[tuple[Api, VerdictView]]:  # fmt: skip
    alert = {"labels": {"alertname": "BakeHalted", "bake": "checkout-v42", "severity": "critical", "metric": "error_rate"},
             "annotations": {"summary": "checkout HALT <b>now</b>"}, "startsAt": "2026-01-01T00:00:00Z", "endsAt": None}  # fmt: skip
    a, view = _start([d for d, _ in replayed.values()], [alert])
    yield a, view
    a.stop()


def _get(port: int, path: str, headers: dict[str, str] | None = None) -> tuple[int, str, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", path, headers=headers or {})
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    return resp.status, resp.getheader("Content-Type", ""), body


def _points(svg_html: str) -> int:
    return len(re.findall(r'<circle class="pt', svg_html))


# -- the bake page ----------------------------------------------------------------------------
def test_replayed_documents_are_a_halt_and_a_promote(
    replayed: dict[str, tuple[dict[str, Any], dict[str, Any]]],
) -> None:
    """The fixture is what the page is about: checkout HALTs on a segment, search PROMOTEs."""
    assert replayed["checkout-v42"][0]["status"] == "HALT"
    assert replayed["search-v8"][0]["status"] == "PROMOTE"
    assert replayed["checkout-v42"][0]["segments"]


def test_static_page_shows_reason_chart_and_segments(
    replayed: dict[str, tuple[dict[str, Any], dict[str, Any]]],
) -> None:
    """The post-mortem page holds the frozen reason, ratio and evidence charts with one dot per
    timeline point, the segment tables with the culprit marked, and the data as JSON."""
    doc, timeline = replayed["checkout-v42"]
    out = render_bake_html(doc, timeline, [])
    reason = doc["decision"]["reason"]
    assert html.escape(reason) in out
    charts = re.findall(r'<svg class="chart".*?</svg>', out, re.S)
    assert len(charts) == 4  # ratio and evidence, for errors and latency
    n_err = sum(1 for p in timeline["points"] if p["metrics"]["error_rate"]["estimate"] is not None)
    assert _points(charts[0]) >= max(n_err, 2)
    assert 'class="band"' in charts[0] and 'class="tolerance"' in charts[0]
    assert "HALT needs" in charts[1]
    # the culprit: the segment whose test HALTed, else where the pooled HALT is most evident
    marked = re.findall(r'<tr class="culprit" data-segment="([^"]+)" data-value="([^"]+)"', out)
    seg = doc["decision"]["segment"]
    if seg is not None:
        assert marked == [(seg["segment"], html.escape(seg["value"]))]
    else:
        assert marked and all(
            f"{dim} &quot;{value}&quot;" in html.escape(reason) for dim, value in marked
        )
    for dim in doc["segments"]:
        assert f"<h3>by {dim}</h3>" in out
    embedded = re.search(
        r'<script type="application/json" id="bakemon-data">(.*?)</script>', out, re.S
    )
    assert embedded is not None and orjson.loads(embedded.group(1))["document"]["id"] == doc["id"]


def test_static_page_loads_nothing_and_cannot_be_broken_out_of(
    replayed: dict[str, tuple[dict[str, Any], dict[str, Any]]],
) -> None:
    """No external URL, a CSP that forbids connections, and document text (even a
    "</script>" in a reason) escaped everywhere."""
    doc, timeline = replayed["checkout-v42"]
    evil = {**doc, "reasons": ["</script><script>alert(1)</script>"], "service": "<img src=x>"}
    out = render_bake_html(evil, timeline, None)
    assert "default-src 'none'" in out
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", out)
    assert "<script>alert(1)" not in out and "<img src=x>" not in out
    assert out.count("</script>") == 1  # only the data block's own end


def test_pending_bake_without_timeline_still_renders(
    replayed: dict[str, tuple[dict[str, Any], dict[str, Any]]],
) -> None:
    """A bake with no timeline and no decision shows its reasons and draws its live point."""
    doc = {**replayed["search-v8"][0], "status": "PENDING", "decided": False, "decision": None}
    out = render_bake_html(doc, {"points": []})
    assert "Not decided yet" in out
    assert _points(out) >= 1 and "timeline not available" in out
    bare = render_bake_html(
        {"id": "x", "status": "PENDING", "reasons": ["no canary traffic"]}, None
    )
    assert "no canary traffic" in bare and "No metrics yet" in bare and "<svg" not in bare


# -- over HTTP --------------------------------------------------------------------------------
def test_console_files_are_served_with_their_types(api: tuple[Api, VerdictView]) -> None:
    """``/`` is the console page; its script and styles come from /console/ with a CSP; an
    unknown or traversing name is a JSON 404."""
    port = api[0].port
    status, ctype, body = _get(port, "/")
    assert status == 200 and ctype.startswith("text/html") and b"/console/console.js" in body
    status, ctype, body = _get(port, "/console/console.js")
    assert status == 200 and "javascript" in ctype and body == (asset("console.js") or (b"",))[0]
    for bad in ("/console/nope.js", "/console/..%2Fapi.py", "/console/a/b"):
        status, ctype, body = _get(port, bad)
        assert status == 404 and "json" in ctype and orjson.loads(body)["status"] == 404


def test_fragment_renders_the_bake_and_its_alerts(api: tuple[Api, VerdictView]) -> None:
    """The bake page fragment carries the status, the reason, the alerts (escaped); unknown
    bake → JSON 404."""
    port = api[0].port
    status, ctype, body = _get(port, "/console/fragment/bakes/checkout-v42")
    text = body.decode()
    assert status == 200 and ctype.startswith("text/html")
    assert 'data-status="HALT"' in text and "<svg" in text
    assert "checkout HALT &lt;b&gt;now&lt;/b&gt;" in text
    status, ctype, body = _get(port, "/console/fragment/bakes/nope")
    assert status == 404 and orjson.loads(body)["error"] == 'bake "nope" is not registered'


def test_protected_reads_need_the_token_for_data_not_for_the_page(
    replayed: dict[str, tuple[dict[str, Any], dict[str, Any]]],
) -> None:
    """With protect_reads the page and its files load (so it can ask for a token), the
    fragment and the stream answer 401 without it, 403 with a wrong one, 200 with it."""
    a, _ = _start([d for d, _ in replayed.values()], token=TOKEN, protect_reads=True)
    try:
        assert _get(a.port, "/")[0] == 200 and _get(a.port, "/console/console.css")[0] == 200
        for path in ("/console/fragment/bakes/checkout-v42", "/v1/bakes/stream"):
            assert _get(a.port, path)[0] == 401
            assert _get(a.port, path, {"Authorization": "Bearer wrong"})[0] == 403
        ok = _get(
            a.port, "/console/fragment/bakes/checkout-v42", {"Authorization": f"Bearer {TOKEN}"}
        )
        assert ok[0] == 200
    finally:
        a.stop()


def _events(sock: socket.socket, want: int, timeout_s: float = 10.0) -> list[tuple[str, str, Any]]:
    """(id, event, data) of the next ``want`` SSE events."""
    buf, out = b"", []
    deadline = time.monotonic() + timeout_s
    while len(out) < want and time.monotonic() < deadline:
        sock.settimeout(max(0.1, deadline - time.monotonic()))
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            break
        if not chunk:
            break
        buf += chunk
        while b"\n\n" in buf:
            block, buf = buf.split(b"\n\n", 1)
            fields = dict(
                line.split(": ", 1)
                for line in block.decode().split("\n")
                if ": " in line and not line.startswith(":")
            )
            if "event" in fields:
                out.append((fields["id"], fields["event"], orjson.loads(fields["data"])))
    return out


def _open_stream(port: int, query: str, headers: str = "") -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(f"GET /v1/bakes/stream{query} HTTP/1.1\r\nHost: t\r\n{headers}\r\n".encode())
    return s


def test_document_stream_starts_with_every_bake_then_sends_changes(
    api: tuple[Api, VerdictView],
) -> None:
    """The stream opens with each current document, then sends a bake again, with a higher
    id, when its document changes, and ``removed`` when it goes; ``bake=`` filters."""
    a, view = api
    with _open_stream(a.port, "?view=summary") as s:
        first = _events(s, 2)
        assert sorted(d["id"] for _, _, d in first) == ["checkout-v42", "search-v8"]
        assert all("segments" not in d and "policy" not in d for _, _, d in first)
        doc = {**a.document("search-v8"), "status": "HALT", "reasons": ["override"]}  # type: ignore[dict-item]
        view.apply(0, 10, b"search-v8", orjson.dumps(doc))
        view.publish()
        ((ident, event, data),) = _events(s, 1)
        assert (event, data["id"], data["status"]) == ("bake", "search-v8", "HALT")
        assert int(ident) > int(first[0][0])
        view.apply(0, 11, b"search-v8", None)
        view.publish()
        # still registered, so the document without data comes back, PENDING
        ((_, event, data),) = _events(s, 1)
        assert (event, data["id"], data["status"]) == ("bake", "search-v8", "PENDING")
    with _open_stream(a.port, "?bake=checkout-v42") as s:
        only = _events(s, 2, timeout_s=2.0)
        assert [d["id"] for _, _, d in only] == ["checkout-v42"] and "segments" in only[0][2]


def test_document_stream_resumes_after_last_event_id(api: tuple[Api, VerdictView]) -> None:
    """With Last-Event-ID there is no snapshot: only what changed after it."""
    a, view = api
    seq, _ = view.changes()
    doc = a.document("checkout-v42")
    assert doc is not None
    view.apply(0, 20, b"checkout-v42", orjson.dumps({**doc, "reasons": ["again"]}))
    view.publish()
    with _open_stream(a.port, "", f"Last-Event-ID: {seq}\r\n") as s:
        got = _events(s, 2, timeout_s=2.0)
    assert [(e, d["id"], d["reasons"]) for _, e, d in got] == [("bake", "checkout-v42", ["again"])]


@pytest.mark.parametrize(
    ("query", "headers", "words"),
    [("?view=all", {}, "view must be"), ("", {"Last-Event-ID": "x"}, "must be an integer")],
)
def test_document_stream_rejects_bad_parameters(
    api: tuple[Api, VerdictView], query: str, headers: dict[str, str], words: str
) -> None:
    """A bad ``view`` or Last-Event-ID is a JSON 400 naming the problem."""
    status, ctype, body = _get(api[0].port, f"/v1/bakes/stream{query}", headers)
    assert status == 400 and "json" in ctype and words in orjson.loads(body)["error"]


def test_summary_drops_the_heavy_parts(
    replayed: dict[str, tuple[dict[str, Any], dict[str, Any]]],
) -> None:
    """The list's summary keeps what the list shows and is much smaller than the document."""
    doc = replayed["checkout-v42"][0]
    s = summary(doc)
    assert s["decision"] == doc["decision"] and s["progress"] == doc["progress"]
    assert "thresholds" not in s["metrics"]["latency"]
    assert len(orjson.dumps(s)) < len(orjson.dumps(doc)) / 2
