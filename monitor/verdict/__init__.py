"""Verdicts: the per-bake engine, the document and its one interpretation, alerts."""

from __future__ import annotations

from monitor.verdict.engine import BakeVerdict, Status, VerdictEvent, iso

__all__ = ["BakeVerdict", "Status", "VerdictEvent", "iso"]
