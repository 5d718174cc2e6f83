"""A bake's policy: error budget, request and duration bounds, tolerances and operational gates.

Built from a plain mapping (TOML, JSON body of ``POST /v1/bakes``) by :meth:`Policy.from_dict`,
which rejects unknown keys and bad values with a message naming the field; frozen afterwards.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from monitor.bakes.evidence import Coverage, Evidence
from monitor.bakes.fields import check_keys as _check_keys
from monitor.bakes.fields import fail as _fail
from monitor.bakes.fields import num as _num

__all__ = ["BlastRadius", "Coverage", "MetricPolicy", "Policy", "PromotionWindow"]

_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


@dataclass(frozen=True)
class MetricPolicy:
    """Tolerances for one gated metric.

    ``tol`` is the relative tolerance: for errors on the error-rate ratio (0.2 = up to 1.2x the
    baseline's rate is acceptable), for latency on latency at each quantile (0.1 = up to 10 %
    slower); ``slo_tol`` the exceedance-rate tolerance of fixed SLO thresholds; ``abs_tol`` an optional absolute tolerance on the canary's excess rate,
    ``halt_margin`` the ratio excess a HALT must prove, ``weight`` its share of the bake's
    false-HALT budget alpha.
    """

    enabled: bool = True
    tol: float = 0.2
    abs_tol: float | None = None
    halt_margin: float = 0.0
    weight: float = 0.5
    quantiles: tuple[float, ...] = ()
    slo_thresholds_ms: tuple[float, ...] = ()
    slo_tol: float = 0.2

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], path: str, defaults: MetricPolicy) -> MetricPolicy:
        if not isinstance(data, Mapping):
            raise _fail(path, "must be a table/object", data)
        allowed = {"enabled", "tol", "abs_tol", "halt_margin", "weight"}
        if path == "latency":
            allowed |= {"quantiles", "slo_thresholds_ms", "slo_tol"}
        _check_keys(data, allowed, path)
        enabled = data.get("enabled", defaults.enabled)
        if not isinstance(enabled, bool):
            raise _fail(f"{path}.enabled", "must be true or false", enabled)
        quantiles = defaults.quantiles
        if "quantiles" in data:
            q = data["quantiles"]
            if not isinstance(q, list | tuple) or not all(
                isinstance(x, int | float) and not isinstance(x, bool) and 0 < x < 1 for x in q
            ):
                raise _fail(f"{path}.quantiles", "must be a list of numbers in (0, 1)", q)
            quantiles = tuple(float(x) for x in q)
        slo = defaults.slo_thresholds_ms
        if "slo_thresholds_ms" in data:
            s = data["slo_thresholds_ms"]
            if not isinstance(s, list | tuple) or not all(
                isinstance(x, int | float) and not isinstance(x, bool) and 0 < x < 3_600_000
                for x in s
            ):
                raise _fail(
                    f"{path}.slo_thresholds_ms", "must be a list of numbers in (0, 3600000)", s
                )
            slo = tuple(float(x) for x in s)
        if path == "latency" and enabled and not quantiles and not slo:
            raise _fail(
                f"{path}.quantiles", "needs quantiles or slo_thresholds_ms when enabled", []
            )
        return cls(
            enabled=enabled,
            tol=float(
                _num(data, "tol", path, defaults.tol, 0.0, 1.0 if path == "latency" else 50.0)
            ),
            abs_tol=_num(data, "abs_tol", path, defaults.abs_tol, 0.0, 1.0, lo_open=True),
            halt_margin=float(_num(data, "halt_margin", path, defaults.halt_margin, 0.0, 50.0)),
            weight=float(_num(data, "weight", path, defaults.weight, 0.0, 1.0, lo_open=True)),
            quantiles=quantiles,
            slo_thresholds_ms=slo,
            slo_tol=float(_num(data, "slo_tol", path, defaults.slo_tol, 0.0, 50.0)),
        )


@dataclass(frozen=True)
class PromotionWindow:
    """Event-time window (UTC) in which a PROMOTE may be issued, e.g. mon-thu 09:00-16:00."""

    days: tuple[str, ...] = _DAYS[:5]
    start: str = "00:00"
    end: str = "24:00"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], path: str) -> PromotionWindow:
        if not isinstance(data, Mapping):
            raise _fail(path, "must be a table/object", data)
        _check_keys(data, {"days", "start", "end"}, path)
        days = data.get("days", list(_DAYS[:5]))
        if isinstance(days, str):
            days = _expand_days(days, f"{path}.days")
        if not isinstance(days, list | tuple) or not days or not all(d in _DAYS for d in days):
            raise _fail(
                f"{path}.days",
                f'must be a list of {", ".join(_DAYS)} or a range like "mon-thu"',
                days,
            )
        start, end = data.get("start", "00:00"), data.get("end", "24:00")
        for key, v in (("start", start), ("end", end)):
            if not isinstance(v, str) or not (_HHMM.match(v) or v == "24:00"):
                raise _fail(f"{path}.{key}", 'must be "HH:MM"', v)
        if _minutes(start) >= _minutes(end):
            raise _fail(f"{path}.end", f'must be after start "{start}"', end)
        return cls(tuple(days), start, end)

    def contains(self, epoch_s: float) -> bool:
        """Whether the instant (UTC epoch seconds) falls in this window."""
        day_index = int(epoch_s // 86400 + 3) % 7  # 1970-01-01 was a Thursday
        minute = (epoch_s % 86400) / 60.0
        return _DAYS[day_index] in self.days and _minutes(self.start) <= minute < _minutes(self.end)


def _minutes(hhmm: str) -> int:
    h, m = hhmm.split(":")
    return int(h) * 60 + int(m)


def _expand_days(spec: str, path: str) -> list[str]:
    out: list[str] = []
    for part in spec.lower().replace(" ", "").split(","):
        if "-" in part:
            a, b = part.split("-", 1)
            if a not in _DAYS or b not in _DAYS:
                raise _fail(path, "unknown day in range", spec)
            i, j = _DAYS.index(a), _DAYS.index(b)
            out.extend(_DAYS[i : j + 1] if i <= j else _DAYS[i:] + _DAYS[: j + 1])
        elif part in _DAYS:
            out.append(part)
        else:
            raise _fail(path, "unknown day", spec)
    return out


@dataclass(frozen=True)
class BlastRadius:
    """Canary seen in more than ``max_values`` values of ``segment`` (e.g. zones) violates it."""

    segment: str = "zone"
    max_values: int = 1
    action: Literal["alert", "halt"] = "alert"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], path: str) -> BlastRadius:
        if not isinstance(data, Mapping):
            raise _fail(path, "must be a table/object", data)
        _check_keys(data, {"segment", "max_values", "action"}, path)
        segment = data.get("segment", "zone")
        if not isinstance(segment, str) or not segment:
            raise _fail(f"{path}.segment", "must be a segment name", segment)
        action = data.get("action", "alert")
        if action not in ("alert", "halt"):
            raise _fail(f"{path}.action", 'must be "alert" or "halt"', action)
        max_values = int(_num(data, "max_values", path, 1, 1, None, integer=True))
        return cls(segment, max_values, action)


# Errors get the larger share of the HALT budget: they are the commonest and most visible canary
# failure, and the latency family already pools its thresholds (benchmarks/detection/).
DEFAULT_ERRORS = MetricPolicy(tol=0.2, abs_tol=None, weight=0.6)
# Latency tolerances are latency ratios (0.1 = canary up to 10 % slower at each quantile).
DEFAULT_LATENCY = MetricPolicy(tol=0.1, abs_tol=0.005, weight=0.4, quantiles=(0.5, 0.9, 0.99))


@dataclass(frozen=True)
class Policy:
    """Everything that turns detector findings into a verdict (see docs/statistics.md)."""

    alpha: float = 0.01
    min_canary_requests: int = 10_000
    max_canary_requests: int = 500_000
    min_duration_s: float = 0.0
    max_duration_s: float | None = None
    errors: MetricPolicy = DEFAULT_ERRORS
    latency: MetricPolicy = DEFAULT_LATENCY
    on_inconclusive: Literal["halt", "promote"] = "halt"
    promotion_windows: tuple[PromotionWindow, ...] = ()
    blast_radius: BlastRadius | None = None
    coverage: Coverage | None = field(default_factory=lambda: Coverage())
    drift_alerts: bool = True
    evidence: Evidence = field(default_factory=lambda: Evidence())
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> Policy:
        """Validate and build a policy; missing fields take the defaults above."""
        data = data or {}
        if not isinstance(data, Mapping):
            raise _fail("policy", "must be a table/object", data)
        _check_keys(data, _POLICY_FIELDS, "")
        alpha = float(_num(data, "alpha", "", 0.01, 0.0, 0.5, lo_open=True))
        min_req, max_req, min_dur, max_dur = _bounds(data)
        errors = MetricPolicy.from_dict(data.get("errors", {}), "errors", DEFAULT_ERRORS)
        latency = MetricPolicy.from_dict(data.get("latency", {}), "latency", DEFAULT_LATENCY)
        if not errors.enabled and not latency.enabled:
            raise _fail(
                "errors.enabled", "at least one of errors and latency must be enabled", False
            )
        on_inc = data.get("on_inconclusive", "halt")
        if on_inc not in ("halt", "promote"):
            raise _fail("on_inconclusive", 'must be "halt" or "promote"', on_inc)
        windows, blast, coverage, drift_alerts = _gates(data)
        return cls(
            evidence=Evidence.from_dict(data),
            alpha=alpha,
            min_canary_requests=min_req,
            max_canary_requests=max_req,
            min_duration_s=min_dur,
            max_duration_s=max_dur,
            errors=errors,
            latency=latency,
            on_inconclusive=on_inc,
            promotion_windows=windows,
            blast_radius=blast,
            coverage=coverage,
            drift_alerts=drift_alerts,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form that :meth:`from_dict` reads back to an equal policy."""
        d = asdict(self)
        d.pop("extra")
        for key in ("errors", "latency"):
            d[key]["quantiles"] = list(d[key]["quantiles"])
            d[key]["slo_thresholds_ms"] = list(d[key]["slo_thresholds_ms"])
        for key in ("quantiles", "slo_thresholds_ms", "slo_tol"):
            d["errors"].pop(key)
        d.pop("evidence")
        d.update(self.evidence.to_dict())
        if self.coverage is None:
            d["coverage"] = False
        d["promotion_windows"] = [
            {"days": list(w.days), "start": w.start, "end": w.end} for w in self.promotion_windows
        ]
        return d

    def halt_alphas(self) -> dict[str, float]:
        """Each enabled metric's share of the false-HALT budget (weights renormalised)."""
        enabled = {
            k: m for k, m in (("error_rate", self.errors), ("latency", self.latency)) if m.enabled
        }
        total = sum(m.weight for m in enabled.values())
        return {k: self.alpha * m.weight / total for k, m in enabled.items()}


_POLICY_FIELDS = {
    "alpha",
    "min_canary_requests",
    "max_canary_requests",
    "min_duration_s",
    "max_duration_s",
    "errors",
    "latency",
    "on_inconclusive",
    "promotion_windows",
    "blast_radius",
    "coverage",
    "drift_alerts",
    *Evidence.KEYS,
}


def _bounds(data: Mapping[str, Any]) -> tuple[int, int, float, float | None]:
    """(min, max canary requests, min, max duration in s), each max checked against its min."""
    min_req = int(_num(data, "min_canary_requests", "", 10_000, 0, None, integer=True))
    max_req = int(
        _num(data, "max_canary_requests", "", max(500_000, min_req), 1, None, integer=True)
    )
    if max_req < min_req:
        raise _fail("max_canary_requests", f"must be >= min_canary_requests ({min_req})", max_req)
    min_dur = float(_num(data, "min_duration_s", "", 0.0, 0.0, None))
    max_dur = _num(data, "max_duration_s", "", None, 0.0, None, lo_open=True)
    if max_dur is not None and max_dur < min_dur:
        raise _fail("max_duration_s", f"must be >= min_duration_s ({min_dur})", max_dur)
    return min_req, max_req, min_dur, None if max_dur is None else float(max_dur)


def _coverage(raw: Any) -> Coverage | None:
    """``coverage``: absent (or ``true``) is the default gate, ``false`` turns it off, a table
    sets it. ``null`` is off too: specs stored before coverage was on by default wrote it."""
    if raw is True:
        return Coverage()
    if raw is None or raw is False:
        return None
    return Coverage.from_dict(raw, "coverage")


def _gates(
    data: Mapping[str, Any],
) -> tuple[tuple[PromotionWindow, ...], BlastRadius | None, Coverage | None, bool]:
    """The operational gates: promotion windows, blast radius, coverage, drift alerts."""
    windows_raw = data.get("promotion_windows", [])
    if not isinstance(windows_raw, list):
        raise _fail("promotion_windows", "must be a list", windows_raw)
    windows = tuple(
        PromotionWindow.from_dict(w, f"promotion_windows[{i}]") for i, w in enumerate(windows_raw)
    )
    drift_alerts = data.get("drift_alerts", True)
    if not isinstance(drift_alerts, bool):
        raise _fail("drift_alerts", "must be true or false", drift_alerts)
    blast, coverage = data.get("blast_radius"), data.get("coverage", True)
    return (
        windows,
        None if blast is None else BlastRadius.from_dict(blast, "blast_radius"),
        _coverage(coverage),
        drift_alerts,
    )
