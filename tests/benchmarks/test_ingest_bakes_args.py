"""`benchmarks.ingest_bakes`: bad arguments are usage errors, and the table's ratios are to the
1-bake rate of the same client (no broker needed)."""

from __future__ import annotations

import argparse

import pytest

from benchmarks.ingest_bakes import main, table


@pytest.mark.parametrize(
    "bad", [["--bakes", "one"], ["--bakes", "0"], ["--bakes", ""], ["--clients", "nope"]]
)
def test_bad_arguments_are_usage_errors(bad: list[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(bad)
    assert exc.value.code == 2


def test_the_table_gives_each_count_as_a_ratio_of_the_one_bake_rate() -> None:
    args = argparse.Namespace(
        bakes=[1, 1000], records=10, span_s=60.0, partitions=4, repeats=2, clients=["kafka-python"]
    )
    runs = {
        "kafka-python": {1: [(100.0, 200.0, 1), (110.0, 220.0, 1)], 1000: [(84.0, 150.0, 9)] * 2}
    }
    text = table(args, runs, [0.1, 0.2])
    assert "| kafka-python | 1,000 | 84, 84 | 84 | 0.80 | 150 | 0.71 | 9 |" in text
    assert "1,000 bakes at 0.80× the 1-bake rate** (target ≥ 0.8: met)" in text
