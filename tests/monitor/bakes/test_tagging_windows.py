"""Window numbering of a flush's rows: dense over a short span, distinct values past it."""

from __future__ import annotations

import numpy as np
import pytest

from monitor.bakes.tagging import _DENSE_WINDOWS, _windows


@pytest.mark.parametrize("span", [1, 7, _DENSE_WINDOWS - 1, _DENSE_WINDOWS, 10**7])
def test_each_row_finds_its_window(span: int) -> None:
    rng = np.random.default_rng(span)
    k = 1_800_000_000 // 10 + rng.integers(0, span, 5_000)
    k[0], k[-1] = k.min(), k.min() + span - 1  # the whole span is used
    windows, inv = _windows(k.astype(np.int64))
    assert windows[inv].tolist() == k.tolist()
    assert (np.diff(windows) > 0).all()  # sorted, distinct: groups come out in window order
    dense = span <= _DENSE_WINDOWS
    assert windows.size == (span if dense else np.unique(k).size)


def test_no_rows() -> None:
    windows, inv = _windows(np.zeros(0, dtype=np.int64))
    assert windows.size == inv.size == 0
