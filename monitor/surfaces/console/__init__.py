"""The web console (issue 11): static files served by the API role at ``/``, the bake page's
HTML (:mod:`.page`, with :mod:`.chart`), and the self-contained page ``replay --html`` writes.

No build step and no network: ``index.html``, ``console.css`` and ``console.js`` ship as
package data and are read with :mod:`importlib.resources`.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from html import escape
from importlib import resources
from typing import Any

import orjson

from monitor.surfaces.console.page import render_bake_section

__all__ = ["ASSET_TYPES", "asset", "render_bake_html", "render_bake_section"]

ASSET_TYPES = {
    "html": "text/html; charset=utf-8",
    "css": "text/css; charset=utf-8",
    "js": "text/javascript; charset=utf-8",
}
_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,63}\.(html|css|js)")
# The static page may not load anything: styles inline, no script, no connection.
STATIC_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'"


@functools.cache
def asset(name: str) -> tuple[bytes, str] | None:
    """(content, content type) of a console file, or None if there is no such file."""
    match = _NAME.fullmatch(name)
    if match is None:
        return None
    path = resources.files(__package__).joinpath(name)
    if not path.is_file():
        return None
    return path.read_bytes(), ASSET_TYPES[match.group(1)]


def _css() -> str:
    found = asset("console.css")
    assert found is not None, "console.css is missing from the package"
    return found[0].decode()


def render_bake_html(
    document: Mapping[str, Any],
    timeline: Mapping[str, Any] | None,
    alerts: Sequence[Mapping[str, Any]] | None = None,
) -> str:
    """One self-contained HTML file of a bake page (for post-mortems and PR comments): styles
    inline, charts as inline SVG, the document, timeline and alerts embedded as JSON; it loads
    nothing from the network."""
    data = orjson.dumps({"document": document, "timeline": timeline, "alerts": alerts})
    # Inside <script>, "<" is written as \u003c: no "</script>" can end the block early.
    embedded = data.decode().replace("<", "\\u003c")
    title = f"bake {document.get('id', '?')}: {document.get('status', '?')}"
    return (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{STATIC_CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{_css()}</style></head>"
        '<body class="static"><header class="top"><span class="brand">bakemon</span>'
        '<span class="conn">static snapshot</span></header><main id="main">'
        + render_bake_section(document, timeline, alerts, link_base=None)
        + '</main><script type="application/json" id="bakemon-data">'
        + embedded
        + "</script></body></html>\n"
    )
