"""The ``bakemon`` command line."""

from __future__ import annotations

from monitor.cli.main import main

__all__ = ["main"]
