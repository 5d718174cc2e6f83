"""The command line's own exit codes, importable without the verdict package (and numpy).

A client command must start fast (README "The client"), and :class:`monitor.verdict.ExitCode`
lives next to the verdict document, which needs numpy. ``USAGE`` and ``UNREACHABLE`` are that
enum's values (``tests/monitor/cli/test_startup.py`` pins them equal); ``FIELDS_REJECTED`` is
``bakemon fields check``'s. The table is README "Exit codes and gates" and ``bakemon --help``.
"""

from __future__ import annotations

from typing import Final

__all__ = ["EXIT_CODES_HELP", "FIELDS_REJECTED", "UNREACHABLE", "USAGE"]

USAGE: Final = 4
UNREACHABLE: Final = 6
FIELDS_REJECTED: Final = 7

EXIT_CODES_HELP = """exit codes:
  0  PROMOTE (replay, bake wait, bake watch); success for every other command
  1  HALT
  2  INCONCLUSIVE
  3  still PENDING at the end of the log (replay)
  4  usage or input error: bad flags, config or URL, unknown bake, rejected token
  5  timeout: still PENDING when --timeout ran out (bake wait, bake watch)
  6  bakemon unreachable: no connection, or 5xx/408/429 or unreadable answers (client
     commands at once; bake wait after --retries polls)
  7  fields check: some lines were rejected
  8  CANCELLED: the bake was cancelled before it decided (bake wait, bake watch)
  130 interrupted (Ctrl-C)"""
