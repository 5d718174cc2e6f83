"""Surfaces: read models, the HTTP API and its OpenAPI document, Prometheus metrics, alert sinks."""

from __future__ import annotations
