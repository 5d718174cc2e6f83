"""`benchmarks.scaling` measures what it says: every record processed, partials per bake."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks.scaling import main, measure_one


def test_one_count_processes_every_record_and_sends_partials_for_every_bake() -> None:
    small, more = measure_one(1, 4_000), measure_one(8, 4_000)
    assert small["processed"] == more["processed"] == 4_000
    # Every active bake hears every flushed block of every partition: partials grow with bakes.
    assert more["partials"] >= 8 * small["partials"] > 0
    assert more["ingest_records_per_cpu_s"] > 0 and more["judge_us_per_partial"] > 0


def test_cli_writes_table_json_and_reports_bad_arguments(tmp_path: Path) -> None:
    assert main(["--bakes", "1,3", "--records", "2000", "--out", str(tmp_path)]) == 0
    rows = json.loads((tmp_path / "scaling.json").read_text())
    assert [r["bakes"] for r in rows] == [1, 3]
    assert "| 3 |" in (tmp_path / "scaling.md").read_text()
    import pytest

    for bad in (["--bakes", "one"], ["--bakes", "0"], ["--records", "10"]):
        with pytest.raises(SystemExit) as exc:
            main([*bad, "--out", str(tmp_path)])
        assert exc.value.code == 2
