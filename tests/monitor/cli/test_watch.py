"""The terminal (issue 11): `bake watch` fits 80 columns and prints nothing but its table,
exits like `bake wait`; `bake get` is readable by default."""

from __future__ import annotations

import io
import math
import re
from typing import Any

import numpy as np

from detectors.summary import CohortSummary
from monitor.bakes.spec import BakeSpec
from monitor.cli.watch import WIDTH, render_bake, render_table, watch
from monitor.verdict.engine import BakeVerdict

T0 = 1_795_824_000.0
ANSI = re.compile(r"\033\[[0-9;]*[A-Za-z]")


def _doc(bake_id: str, p_c: float, windows: int) -> dict[str, Any]:
    """A real engine's document after ``windows`` windows at a canary error rate ``p_c``."""
    spec = BakeSpec.from_dict(
        {"id": bake_id, "service": "checkout", "canary": "v2", "baseline": "v1",
         "policy": {"min_canary_requests": 0, "latency": {"enabled": False}}}
    )  # fmt: skip
    v = BakeVerdict(spec)
    rng = np.random.default_rng(1)
    for i in range(windows):
        t = T0 + 10 * i
        c, b = CohortSummary(), CohortSummary()
        c.update(np.exp(rng.normal(math.log(0.05), 0.5, 300)), rng.random(300) < p_c)
        b.update(np.exp(rng.normal(math.log(0.05), 0.5, 300)), rng.random(300) < 0.01)
        cells = {(int(t // 10), ""): (c, b)}
        v.update(c, b, t + 9, cells=cells, progress_s=t + 9, source=("r", 0), source_partitions=1)
    return v.document()


class _Client:
    """Answers /v1/bakes with the next list of documents (the last one repeats)."""

    def __init__(self, frames: list[list[dict[str, Any]]]) -> None:
        self.frames, self.calls = frames, 0

    def get(self, path: str) -> Any:
        frame = self.frames[min(self.calls, len(self.frames) - 1)]
        self.calls += 1
        if path == "/v1/bakes":
            return {"bakes": frame}
        return next(d for d in frame if path.endswith("/" + d["id"]))


def test_table_fits_80_columns_whatever_the_reason() -> None:
    halt = _doc("checkout-v42-with-a-rather-long-id", 0.05, 60)
    pending = _doc("search-v8", 0.01, 1)
    lines = render_table([halt, pending])
    assert len(lines) == 1 + 2 * 2
    assert all(len(line) <= WIDTH for line in lines), [len(x) for x in lines]
    assert halt["status"] == "HALT" and "HALT" in lines[1]
    coloured = render_table([halt], colour=True)
    assert all(len(ANSI.sub("", line)) <= WIDTH for line in coloured)


def test_watch_prints_only_its_table_and_exits_like_wait() -> None:
    pending = _doc("checkout-v42", 0.05, 1)
    halt = _doc("checkout-v42", 0.05, 60)
    out = io.StringIO()
    code = watch(
        _Client([[pending], [halt]]), [], interval_s=0.01, timeout_s=10, out=out, tty=False
    )
    assert code == 1
    text = out.getvalue()
    body = [line for line in text.splitlines() if line]
    assert body[0].startswith("bake ") and all(len(line) <= WIDTH for line in body)
    assert all(line.startswith(("bake ", "checkout-v42", "  ")) for line in body)
    tty = io.StringIO()
    assert (
        watch(_Client([[halt]]), ["checkout-v42"], interval_s=0.01, timeout_s=10, out=tty, tty=True)
        == 1
    )
    assert all(len(ANSI.sub("", line)) <= WIDTH for line in tty.getvalue().splitlines())
    late = io.StringIO()
    assert (
        watch(_Client([[pending]]), [], interval_s=0.01, timeout_s=0.05, out=late, tty=False) == 5
    )


def test_bake_get_reads_like_a_summary() -> None:
    halt = _doc("checkout-v42", 0.05, 60)
    text = "\n".join(render_bake(halt))
    assert text.startswith("checkout-v42 (checkout): HALT")
    assert "why: error rate regression" in text
    assert "HALT needs" in text and "decided at" in text
    pending = "\n".join(render_bake(_doc("search-v8", 0.01, 1)))
    assert "PENDING" in pending and "decided at" not in pending


def test_bake_get_quotes_the_e_value_that_crossed_as_the_reason_does() -> None:
    """The decided figure is the e-value when the HALT gate fired (what the reason quotes), not
    the lower window-end value (the helper saw the two disagree)."""
    halt = _doc("checkout-v42", 0.05, 60)
    fig = halt["decision"]["metrics"]["error_rate"]
    fig["e_value_halt"], fig["e_value_halt_crossed"] = 7.0, 123.0
    text = "\n".join(render_bake(halt))
    assert "evidence 123 against" in text and "evidence 7 against" not in text
