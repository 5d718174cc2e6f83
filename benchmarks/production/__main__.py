"""``python -m benchmarks.production``: run the production-traffic benchmark (see the package)."""

from __future__ import annotations

import sys

from benchmarks.production.run import main

if __name__ == "__main__":
    sys.exit(main())
