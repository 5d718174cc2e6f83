"""Which requests count, and how they become evidence (STATISTICS.md §7, docs/statistics.md).

:class:`Evidence` holds the policy's top-level evidence keys: event-time windows, strata, the
per-segment HALT tests and the canary warm-up. :class:`Coverage` is the PROMOTE gate "the
canary has served the traffic that matters".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from monitor.bakes.fields import check_keys, fail, num

__all__ = ["DEFAULT_STRATIFY", "MAX_STRATA_LIMIT", "Coverage", "Evidence"]

DEFAULT_STRATIFY = ("zone", "route")
DEFAULT_SEGMENT_TESTS = ("zone", "route")
MAX_STRATA_LIMIT = 256
MAX_SEGMENT_VALUES_LIMIT = 64


def _dims(data: Mapping[str, Any], key: str, default: Sequence[str]) -> tuple[str, ...]:
    raw = data.get(key, list(default))
    if not isinstance(raw, list | tuple) or not all(isinstance(x, str) and x for x in raw):
        raise fail(key, "must be a list of segment names (e.g. zone, route)", raw)
    if len(set(raw)) != len(raw):
        raise fail(key, "must not repeat a segment", raw)
    return tuple(raw)


@dataclass(frozen=True)
class Evidence:
    """How requests become evidence.

    * ``window_s``, ``allowed_lateness_s``: event-time windows, closed ``allowed_lateness_s``
      after their end (§7.1);
    * ``stratify``, ``max_strata``: within a window, canary and baseline are compared within
      strata of these segments (top ``max_strata`` per window, the rest merged; ``[]`` pools,
      §7.2);
    * ``segment_tests``, ``max_segment_values``, ``segment_share``: per-value HALT tests of
      these segments (the first ``max_segment_values`` values seen per segment), which get
      ``segment_share`` of each metric's HALT budget, split evenly over every possible value
      (§7.5; ``[]`` turns them off and gives the pooled test the whole budget, as does a
      segment the records do not carry);
    * ``canary_warmup_requests``, ``canary_warmup_s``: the canary's first requests and seconds
      (event time from its first window) are left out of the tests (§7.6).
    """

    window_s: float = 10.0
    allowed_lateness_s: float = 30.0
    stratify: tuple[str, ...] = DEFAULT_STRATIFY
    max_strata: int = 16
    segment_tests: tuple[str, ...] = DEFAULT_SEGMENT_TESTS
    max_segment_values: int = 6
    segment_share: float = 0.2
    canary_warmup_requests: int = 0
    canary_warmup_s: float = 0.0

    KEYS = (
        "window_s",
        "allowed_lateness_s",
        "stratify",
        "max_strata",
        "segment_tests",
        "max_segment_values",
        "segment_share",
        "canary_warmup_requests",
        "canary_warmup_s",
    )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Evidence:
        """Read the policy's top-level evidence keys (:attr:`KEYS`)."""
        window_s = float(num(data, "window_s", "", 10.0, 0.0, 3600.0, lo_open=True))
        lateness = float(num(data, "allowed_lateness_s", "", 30.0, 0.0, 86400.0))
        max_strata = int(num(data, "max_strata", "", 16, 1, MAX_STRATA_LIMIT, integer=True))
        max_values = int(
            num(data, "max_segment_values", "", 6, 1, MAX_SEGMENT_VALUES_LIMIT, integer=True)
        )
        share = float(num(data, "segment_share", "", 0.2, 0.0, 0.9))
        return cls(
            window_s,
            lateness,
            _dims(data, "stratify", DEFAULT_STRATIFY),
            max_strata,
            _dims(data, "segment_tests", DEFAULT_SEGMENT_TESTS),
            max_values,
            share,
            int(num(data, "canary_warmup_requests", "", 0, 0, None, integer=True)),
            float(num(data, "canary_warmup_s", "", 0.0, 0.0, 86400.0)),
        )

    def to_dict(self) -> dict[str, Any]:
        """The top-level keys, JSON-able (lists for the segment names)."""
        d: dict[str, Any] = {k: getattr(self, k) for k in self.KEYS}
        d["stratify"] = list(self.stratify)
        d["segment_tests"] = list(self.segment_tests)
        return d

    @property
    def cell_dims(self) -> tuple[str, ...]:
        """The segments an evidence cell is keyed by: the strata's, then the tested ones."""
        return self.stratify + tuple(d for d in self.segment_tests if d not in self.stratify)

    @property
    def segment_alpha_share(self) -> float:
        """The share of each metric's HALT budget the per-segment tests take (0 without any)."""
        return self.segment_share if self.segment_tests else 0.0


@dataclass(frozen=True)
class Coverage:
    """PROMOTE waits until the canary has served the traffic that matters, in ``segment``:

    * by mass (the default): the baseline's values ranked by requests, the fewest that carry
      ``mass`` of its requests (at most ``max_values`` of them), each served by the canary with
      at least ``min_requests_each`` requests;
    * by count (``mass = 0``, or a table with ``min_values`` and no ``mass``): at least
      ``min_values`` values with ``min_requests_each`` (then default 1) each.

    A bake whose records have no value for the segment (no such field) is covered trivially.
    ``coverage = false`` in a policy turns the gate off.
    """

    segment: str = "route"
    mass: float = 0.9
    min_values: int = 1
    min_requests_each: int = 100
    max_values: int = 10

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], path: str) -> Coverage:
        if not isinstance(data, Mapping):
            raise fail(path, "must be a table/object, or false to turn it off", data)
        check_keys(data, {"segment", "mass", "min_values", "min_requests_each", "max_values"}, path)
        segment = data.get("segment", "route")
        if not isinstance(segment, str) or not segment:
            raise fail(f"{path}.segment", "must be a segment name", segment)
        # A table that names min_values and no mass counts values (the gate before mass existed)
        by_count = "min_values" in data and "mass" not in data
        return cls(
            segment,
            float(num(data, "mass", path, 0.0 if by_count else 0.9, 0.0, 1.0)),
            int(num(data, "min_values", path, 1, 1, None, integer=True)),
            int(
                num(data, "min_requests_each", path, 1 if by_count else 100, 1, None, integer=True)
            ),
            int(num(data, "max_values", path, 10, 1, 256, integer=True)),
        )

    def required(self, baseline: Mapping[str, int]) -> list[tuple[str, float]]:
        """The values the canary must serve, with their share of the baseline's requests (by
        mass; empty by count or when the baseline has no values)."""
        total = sum(baseline.values())
        if self.mass <= 0.0 or total <= 0:
            return []
        ranked = sorted(baseline.items(), key=lambda kv: (-kv[1], kv[0]))
        out: list[tuple[str, float]] = []
        covered = 0
        for value, n in ranked[: self.max_values]:
            out.append((value, n / total))
            covered += n
            if covered >= self.mass * total:
                break
        return out

    def missing(self, canary: Mapping[str, int], baseline: Mapping[str, int]) -> str | None:
        """Why the canary does not cover the traffic yet (None: it does)."""
        need = self.min_requests_each
        if self.mass <= 0.0:
            served = sum(1 for c in canary.values() if c >= need)
            if served >= self.min_values:
                return None
            return (
                f"coverage: canary served {served} of {self.min_values} {self.segment} values "
                f"({need:,} requests each)"
            )
        required = self.required(baseline)
        short = [(v, s) for v, s in required if canary.get(v, 0) < need]
        if not short:
            return None
        mass = sum(s for _, s in required)
        names = ", ".join(f'"{v}" ({canary.get(v, 0):,})' for v, _ in short[:3])
        more = f" and {len(short) - 3} more" if len(short) > 3 else ""
        return (
            f"coverage: the canary has not served {need:,} requests on each {self.segment} "
            f"carrying {mass:.0%} of the baseline's traffic: {names}{more}"
        )
