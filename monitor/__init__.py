"""bakemon's service package: records, bakes, verdicts, and (later) Kafka I/O and HTTP surfaces."""

from __future__ import annotations

__all__ = ["__version__"]
__version__ = "0.1.0"
