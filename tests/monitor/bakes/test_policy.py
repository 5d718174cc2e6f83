"""Tests of policy parsing and validation."""

from __future__ import annotations

import pytest

from monitor.bakes.policy import Policy
from monitor.errors import ConfigError


def test_defaults_and_round_trip() -> None:
    """An empty policy takes the documented defaults and to_dict/from_dict round-trips."""
    p = Policy.from_dict({})
    assert p.alpha == 0.01 and p.min_canary_requests == 10_000 and p.on_inconclusive == "halt"
    full = Policy.from_dict(
        {
            "alpha": 0.05,
            "min_canary_requests": 100,
            "max_canary_requests": 1000,
            "errors": {"tol": 0.1, "abs_tol": 0.002, "weight": 0.7},
            "latency": {"quantiles": [0.9], "slo_thresholds_ms": [250], "tol": 0.3},
            "promotion_windows": [{"days": "mon-thu", "start": "09:00", "end": "16:00"}],
            "blast_radius": {"segment": "zone", "max_values": 2, "action": "halt"},
            "coverage": {"segment": "route", "min_values": 3},
            "on_inconclusive": "promote",
        }
    )
    assert Policy.from_dict(full.to_dict()) == full
    assert full.promotion_windows[0].days == ("mon", "tue", "wed", "thu")


def test_halt_budget_is_split_by_weight() -> None:
    """Each gated metric gets alpha times its renormalised weight; disabled metrics none."""
    p = Policy.from_dict({"alpha": 0.01, "errors": {"weight": 0.75}, "latency": {"weight": 0.25}})
    assert p.halt_alphas() == pytest.approx({"error_rate": 0.0075, "latency": 0.0025})
    only = Policy.from_dict({"latency": {"enabled": False}})
    assert only.halt_alphas() == {"error_rate": 0.01}


@pytest.mark.parametrize(
    ("doc", "match"),
    [
        ({"alpha": 1.5}, 'policy field "alpha": must be <= 0.5, got 1.5'),
        ({"alpha": "high"}, '"alpha": must be a number'),
        ({"min_canary_requests": 10.5}, "must be an integer"),
        ({"min_canary_requests": 100, "max_canary_requests": 10}, "must be >= min_canary_requests"),
        ({"errors": {"tolerance": 0.2}}, 'unknown field\\(s\\) "tolerance" in "errors"'),
        (
            {"colour": "red"},
            'unknown field\\(s\\) "colour" in policy; valid: allowed_lateness_s, alpha',
        ),
        ({"on_inconclusive": "maybe"}, '"on_inconclusive": must be "halt" or "promote"'),
        ({"promotion_windows": [{"days": "funday"}]}, "unknown day"),
        ({"promotion_windows": [{"start": "9am"}]}, 'must be "HH:MM"'),
        ({"blast_radius": {"action": "panic"}}, '"blast_radius.action"'),
        ({"errors": {"enabled": False}, "latency": {"enabled": False}}, "at least one"),
        ({"latency": {"quantiles": [2]}}, "quantiles"),
    ],
)
def test_bad_policies_name_the_field(doc: dict[str, object], match: str) -> None:
    """Each invalid policy raises ConfigError whose message names the field and value."""
    with pytest.raises(ConfigError, match=match):
        Policy.from_dict(doc)


def test_promotion_window_contains_by_event_time() -> None:
    """Windows are evaluated on UTC event time, day and minute."""
    p = Policy.from_dict(
        {"promotion_windows": [{"days": "mon-thu", "start": "09:00", "end": "16:00"}]}
    )
    w = p.promotion_windows[0]
    monday_10 = 1795428000.0  # 2026-11-23 (Mon) 10:00 UTC
    assert w.contains(monday_10)
    assert not w.contains(monday_10 + 7 * 3600)  # 17:00
    assert not w.contains(monday_10 + 4 * 86400)  # Friday 10:00
