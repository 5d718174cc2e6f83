"""bakesim: a seeded traffic simulator for bakemon (scenarios and record generation); not part of the monitor."""

from __future__ import annotations
