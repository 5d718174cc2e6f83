"""One running bakemon per recipe module (a module-scoped broker and service keep the suite
fast); a module sets ``API_TOKEN`` (``None``: no token, as Flagger's webhooks cannot send one)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from _rollout import Bakemon, start_bakemon


@pytest.fixture(scope="module")
def bakemon(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Bakemon]:
    """A bakemon with all roles on a fresh embedded broker, for the whole module."""
    token = getattr(request.module, "API_TOKEN", None)
    yield from start_bakemon(tmp_path_factory.mktemp("bakemon"), token)
