"""`benchmarks.scaling` measures what it says: every record processed and judged once, and
messages that grow with the bakes that had traffic, clocks that do not grow at all."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks.scaling import main, measure_one


def test_one_count_processes_every_record_and_judges_it_once() -> None:
    small, more = measure_one(1, 4_000, rate=400), measure_one(8, 4_000, rate=400)
    assert small["processed"] == more["processed"] == 4_000
    for r in (small, more):
        assert r["judged"] == r["tagged"] == 4_000  # plain lines: every record is in a bake
    # One clock per source partition and flush, whatever the bakes; partials only for bakes with
    # records in the flush (at most 8x the 1-bake count), a bake's partials of a flush in one
    # message (a bundle over the source partitions).
    assert more["clocks"] == small["clocks"] > 0
    assert small["partials"] < more["partials"] <= 8 * small["partials"]
    for r in (small, more):
        assert r["messages"] < r["partials"]
    assert more["ingest_records_per_cpu_s"] > 0 and more["judge_us_per_partial"] > 0


def test_cli_writes_table_json_and_reports_bad_arguments(tmp_path: Path) -> None:
    assert (
        main(["--bakes", "1,3", "--records", "2000", "--rate", "500", "--out", str(tmp_path)]) == 0
    )
    rows = json.loads((tmp_path / "scaling.json").read_text())
    assert [r["bakes"] for r in rows] == [1, 3]
    assert "| 3 |" in (tmp_path / "scaling.md").read_text()
    import pytest

    for bad in (["--bakes", "one"], ["--bakes", "0"], ["--records", "10"], ["--rate", "0"]):
        with pytest.raises(SystemExit) as exc:
            main([*bad, "--out", str(tmp_path)])
        assert exc.value.code == 2
