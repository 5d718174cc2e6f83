"""Verdicts: the per-bake engine, the document and its one interpretation, alerts."""

from __future__ import annotations

from monitor.verdict.document import (
    ExitCode,
    Gate,
    Reading,
    Status,
    build_document,
    exit_code_of,
    interpret,
    iso,
)
from monitor.verdict.engine import BakeVerdict, VerdictEvent, document_without_data

__all__ = [
    "BakeVerdict",
    "ExitCode",
    "Gate",
    "Reading",
    "Status",
    "VerdictEvent",
    "build_document",
    "document_without_data",
    "exit_code_of",
    "interpret",
    "iso",
]
