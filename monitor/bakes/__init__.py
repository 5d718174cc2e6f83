"""Bakes: specs, policies, the registry and cohort tagging (the registry topic and auto-discovery live in ``store`` and ``discovery``)."""

from __future__ import annotations

from monitor.bakes.policy import BlastRadius, Coverage, MetricPolicy, Policy, PromotionWindow
from monitor.bakes.spec import BASELINE, CANARY, COHORT_NAMES, BakeSpec, Registry
from monitor.bakes.tagging import Tags, summarise, tag

__all__ = [
    "BASELINE",
    "CANARY",
    "COHORT_NAMES",
    "BakeSpec",
    "BlastRadius",
    "Coverage",
    "MetricPolicy",
    "Policy",
    "PromotionWindow",
    "Registry",
    "Tags",
    "summarise",
    "tag",
]
