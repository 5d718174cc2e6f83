"""The streaming pipeline: partials, the checkpoint, snapshots, held partials, and the ingest and judge roles."""

from __future__ import annotations
