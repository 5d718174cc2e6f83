"""``python -m benchmarks.detection``: run the detection benchmark (see the package docstring)."""

from __future__ import annotations

import sys

from benchmarks.detection.run import main

if __name__ == "__main__":
    sys.exit(main())
