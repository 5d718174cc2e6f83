"""``python -m monitor.cli``."""

from monitor.cli.main import main

raise SystemExit(main())
