"""Per-segment HALT tests (STATISTICS.md §7.5) and the document's ``segments`` breakdown.

A regression confined to one route (or zone) is diluted in the pooled test: a 4× error rate on
a route with 15 % of the traffic is a 1.45× rate overall. So each value of each segment the
policy names (``segment_tests``, default zone and route) gets its own tests — the same
conditional tests as the pooled ones, on the cells of closed windows whose label has that value,
each cell a stratum — with a share of each metric's HALT budget:

    α_value = α_metric · segment_share / (len(segment_tests) · max_segment_values)

A union bound over every value that could ever be tested (the first ``max_segment_values``
values seen per segment, in a deterministic order), so a false HALT from any of them has
probability at most ``α_metric · segment_share``; the pooled test keeps the rest. The threshold
of one value's test is ``log(1 / α_value)`` instead of ``log(1 / α_metric)``, which is why a
regression on one value HALTs within a small factor of a test run on that value alone.

These tests only HALT: PROMOTE stays with the pooled, stratified tests (a canary fine
everywhere but on a minor route is caught here, not by refusing to promote).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from detectors.base import Assessment, Finding
from detectors.summary import CohortSummary
from monitor.errors import BakeError

__all__ = ["SegmentFinding", "SegmentTests", "ServedCounts", "parse_label"]

STATE_VERSION = 1
NO_REGRESSION = "NONE"  # a segment value's finding when its tests show no regression
EVIDENT_PER_SEGMENT = 2  # values a pooled HALT's note names per segment, at most

Cell = tuple[str, CohortSummary, CohortSummary]


class _Test(Protocol):
    metric: str

    @property
    def halted(self) -> bool: ...

    def update(self, canary: CohortSummary, baseline: CohortSummary) -> None: ...

    def update_many(
        self,
        canary: Sequence[CohortSummary],
        baseline: Sequence[CohortSummary],
        strata: Sequence[str] | None = None,
    ) -> Any: ...

    def assess(self) -> Assessment: ...

    def state_dict(self) -> dict[str, Any]: ...


# metric → (α of one value) → a fresh detector of that metric
Factory = Callable[[str, float], _Test]
Loader = Callable[[str, Mapping[str, Any]], _Test]


def parse_label(label: str) -> dict[str, str]:
    """``zone=eu-1|route=/api`` → ``{"zone": "eu-1", "route": "/api"}`` ("" → ``{}``)."""
    out: dict[str, str] = {}
    if not label:
        return out
    for part in label.split("|"):
        dim, _, value = part.partition("=")
        out[dim] = value
    return out


@dataclass
class _Value:
    tests: dict[str, _Test]
    canary: CohortSummary = field(default_factory=CohortSummary)
    baseline: CohortSummary = field(default_factory=CohortSummary)


@dataclass(frozen=True)
class SegmentFinding:
    """A segment value whose test found a regression."""

    segment: str
    value: str
    assessment: Assessment

    @property
    def reason(self) -> str:
        where = f'on {self.segment} "{self.value}"'
        text = self.assessment.reason
        if "regression:" in text:
            return text.replace("regression:", f"regression {where}:", 1)
        return f"{text} ({where})"


class SegmentTests:
    """The per-value tests of a bake's segments, fed with the cells of closed windows."""

    def __init__(
        self, dims: Sequence[str], max_values: int, alphas: Mapping[str, float], make: Factory
    ) -> None:
        self.dims = tuple(dims)
        self.max_values = max_values
        self.alphas = dict(alphas)  # metric → α of one value
        self.factory = make
        self._values: dict[str, dict[str, _Value]] = {d: {} for d in self.dims}

    def __bool__(self) -> bool:
        return bool(self.dims and self.alphas)

    def _slot(self, dim: str, value: str) -> _Value | None:
        values = self._values[dim]
        have = values.get(value)
        if have is None and len(values) < self.max_values:
            tests = {m: self.factory(m, a) for m, a in self.alphas.items()}
            have = values[value] = _Value(tests)
        return have

    def update(self, cells: Sequence[Cell]) -> None:
        """Feed the cells of one closed window (labels with the segment values). New values get
        a test in order of the window's traffic (then name), while slots last."""
        if not self:
            return
        parsed = [(parse_label(label), c, b) for label, c, b in cells]
        for dim in self.dims:
            groups: dict[str, list[tuple[str, CohortSummary, CohortSummary]]] = {}
            for (values, c, b), (label, _, _) in zip(parsed, cells, strict=True):
                value = values.get(dim, "")
                if value:
                    groups.setdefault(value, []).append((label, c, b))
            ranked = sorted(
                groups.items(),
                key=lambda kv: (-sum(c.requests + b.requests for _, c, b in kv[1]), kv[0]),
            )
            for value, pairs in ranked:
                slot = self._slot(dim, value)
                if slot is None:
                    continue
                strata = [label for label, _, _ in pairs]
                cs, bs = [c for _, c, _ in pairs], [b for _, _, b in pairs]
                for test in slot.tests.values():
                    test.update_many(cs, bs, strata)
                for _, c, b in pairs:
                    slot.canary.merge(c)
                    slot.baseline.merge(b)

    @property
    def halted(self) -> bool:
        """Whether any value's test has found a regression (cheap: the tests' sticky flags)."""
        return any(
            t.halted
            for values in self._values.values()
            for s in values.values()
            for t in s.tests.values()
        )

    def regressions(self) -> list[SegmentFinding]:
        """Every value whose test found a regression, strongest evidence first."""
        found = [
            SegmentFinding(dim, value, a)
            for dim, values in self._values.items()
            for value, slot in values.items()
            for test in slot.tests.values()
            if test.halted and (a := test.assess()).finding is Finding.REGRESSION
        ]
        return sorted(found, key=lambda f: (-f.assessment.e_halt, f.segment, f.value))

    def evident(self, metric: str, at_least: float = 10.0) -> list[dict[str, Any]]:
        """Where a pooled regression of ``metric`` shows most — a description, not a test of
        its own: per segment, strongest segment first. Every segment gets its own entries
        because an early pooled HALT can find a zone and a route about equally suspect (a
        route's regression shows in every zone its traffic crosses).

        For error rates a value is ranked by its *excess errors* — the canary's errors beyond
        what the baseline's rate on that value predicts — among values whose own test leans to
        a regression (e > 1): that is where the pooled excess comes from, while a small value's
        e-value can be the largest by chance. An early HALT rests on a few dozen errors, so two
        values can hold about the same excess; every value with at least half the top excess
        is listed (at most ``EVIDENT_PER_SEGMENT``), rather than a coin flip between them.
        Latency names the value with the largest e, among values with e ≥ ``at_least``."""
        by_dim: dict[str, list[tuple[float, str, Assessment, float | None]]] = {}
        for dim, values in self._values.items():
            for value, slot in values.items():
                test = slot.tests.get(metric)
                if test is None:
                    continue
                a = test.assess()
                excess = _excess_errors(slot) if metric == "error_rate" else None
                if excess is not None and a.e_halt > 1.0 and excess > 0:
                    by_dim.setdefault(dim, []).append((excess, value, a, excess))
                elif excess is None and a.e_halt >= at_least:
                    by_dim.setdefault(dim, []).append((a.e_halt, value, a, None))
        ranked = []
        for dim, found in by_dim.items():
            found.sort(key=lambda f: (-f[0], f[1]))
            top = found[0][0]
            keep = [f for f in found if f[3] is not None and f[0] >= top / 2]
            ranked.append((top, dim, keep[:EVIDENT_PER_SEGMENT] or found[:1]))
        ranked.sort(key=lambda r: (-r[0], r[1]))
        out = []
        for _, dim, found in ranked:
            for _, value, a, excess in found:
                x: dict[str, Any] = {
                    "segment": dim,
                    "value": value,
                    "estimate": a.estimate,
                    "e_value_halt": a.e_halt,
                }
                if excess is not None:
                    x["excess_errors"] = round(excess, 1)
                out.append(x)
        return out

    def most_evident(self, metric: str, at_least: float = 10.0) -> str | None:
        """:meth:`evident` in words, e.g. ``most evident on route "/api" (ratio 3.90, e=120),
        zone "eu-1" (ratio 1.40, e=12)``; None when no value has the evidence."""
        parts = []
        for x in self.evident(metric, at_least):
            ratio = "" if x["estimate"] is None else f"ratio {x['estimate']:.2f}, "
            excess = f", {x['excess_errors']:+.0f} errors" if "excess_errors" in x else ""
            parts.append(
                f'{x["segment"]} "{x["value"]}" ({ratio}e={x["e_value_halt"]:.3g}{excess})'
            )
        return "most evident on " + ", ".join(parts) if parts else None

    # -- read-out ------------------------------------------------------------------------------
    def breakdown(self) -> dict[str, list[dict[str, Any]]]:
        """Per segment, per tested value (most baseline traffic first): requests, error rates
        and p99 of the tested requests, the error ratio and its bounds, the finding."""
        out: dict[str, list[dict[str, Any]]] = {}
        for dim, values in self._values.items():
            rows = [self._row(value, slot) for value, slot in values.items()]
            rows.sort(key=lambda r: (-r["baseline"]["requests"], r["value"]))
            out[dim] = rows
        return out

    def _row(self, value: str, slot: _Value) -> dict[str, Any]:
        found = {m: t.assess() for m, t in slot.tests.items()}
        row: dict[str, Any] = {
            "value": value,
            "canary": _cohort(slot.canary),
            "baseline": _cohort(slot.baseline),
        }
        err = found.get("error_rate")
        if err is not None:
            row["error_ratio"] = err.estimate
            row["error_ratio_bounds"] = [err.lower, err.upper]
            row["error_e_value_halt"] = err.e_halt
        lat = found.get("latency")
        if lat is not None:
            c99, b99 = row["canary"]["p99_seconds"], row["baseline"]["p99_seconds"]
            row["p99_ratio"] = c99 / b99 if c99 and b99 else None
            row["latency_e_value_halt"] = lat.e_halt
        bad = [a for a in found.values() if a.finding is Finding.REGRESSION]
        row["finding"] = Finding.REGRESSION.value if bad else NO_REGRESSION
        row["reason"] = bad[0].reason if bad else None
        return row

    # -- state ---------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "v": STATE_VERSION,
            "values": {
                dim: [
                    [
                        value,
                        {m: t.state_dict() for m, t in slot.tests.items()},
                        slot.canary.to_dict(),
                        slot.baseline.to_dict(),
                    ]
                    for value, slot in values.items()
                ]
                for dim, values in self._values.items()
            },
        }

    def restore(self, state: Mapping[str, Any], load: Loader) -> None:
        """Load :meth:`state_dict` output into these (freshly built, same policy) tests."""
        if state.get("v") != STATE_VERSION:
            msg = f"unsupported segment-tests state version {state.get('v')!r}"
            raise BakeError(msg, value=state.get("v"))
        for dim, rows in state["values"].items():
            if dim not in self._values:
                continue
            for value, tests, canary, baseline in rows:
                self._values[dim][str(value)] = _Value(
                    {m: load(m, s) for m, s in tests.items()},
                    CohortSummary.from_dict(canary),
                    CohortSummary.from_dict(baseline),
                )


class ServedCounts:
    """Requests per segment value and cohort in closed windows (warm-up included), from the
    cell labels: what the coverage gate reads when its segment is a cell segment."""

    MAX_VALUES = 256

    def __init__(self) -> None:
        self._counts: dict[str, dict[str, list[int]]] = {}

    def __contains__(self, dim: object) -> bool:
        return dim in self._counts

    def add(self, cells: Sequence[Cell]) -> None:
        for label, c, b in cells:
            for dim, value in parse_label(label).items():
                values = self._counts.setdefault(dim, {})
                have = values.get(value)
                if have is None:
                    if not value or len(values) >= self.MAX_VALUES:
                        continue
                    have = values[value] = [0, 0]
                have[0] += c.requests
                have[1] += b.requests

    def of(self, dim: str) -> tuple[dict[str, int], dict[str, int]]:
        """(canary, baseline) requests per value of ``dim``."""
        values = self._counts.get(dim, {})
        return {v: n[0] for v, n in values.items()}, {v: n[1] for v, n in values.items()}

    def state_dict(self) -> dict[str, Any]:
        return {d: sorted([v, *n] for v, n in vals.items()) for d, vals in self._counts.items()}

    def restore(self, state: Mapping[str, Any]) -> None:
        self._counts = {
            str(d): {str(v): [int(c), int(b)] for v, c, b in rows} for d, rows in state.items()
        }


def _excess_errors(slot: _Value) -> float | None:
    """The canary's errors on a value beyond the baseline's rate there (None without a
    baseline)."""
    c, b = slot.canary, slot.baseline
    if not b.requests:
        return None
    return c.errors - c.requests * b.errors / b.requests


def _cohort(s: CohortSummary) -> dict[str, Any]:
    return {
        "requests": s.requests,
        "errors": s.errors,
        "error_rate": s.errors / s.requests if s.requests else None,
        "p99_seconds": s.quantile(0.99),
    }
