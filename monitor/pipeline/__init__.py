"""The streaming pipeline: partials, checkpoints, snapshots, and the ingest and judge roles."""

from __future__ import annotations
