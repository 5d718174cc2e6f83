"""The replay's log reader in a child process decodes exactly what one process does."""

from __future__ import annotations

import gzip
import random
from pathlib import Path

import numpy as np
import orjson
import pytest

from bakesim.scenario import generate, scenario_preset, to_json_lines
from monitor.bakes.spec import BakeSpec, Registry
from monitor.errors import InputError
from monitor.records.fieldmap import PRESETS
from monitor.replay import open_log, replay_decoded
from monitor.replay_reader import read_decoded


def _log(path: Path, n: int, seed: int) -> list[bytes]:
    """A gzip log of the simulator's lines with ~1 % garbage, far-future times and blanks."""
    rng = random.Random(seed)
    lines = list(to_json_lines(generate(scenario_preset("errors-2x", seed=seed), total_requests=n)))
    for i in rng.sample(range(n), n // 100):
        lines[i] = rng.choice(
            [
                lines[i][:17],
                b"",
                orjson.dumps({**orjson.loads(lines[i]), "ts": 4.0e9}),
                b'{"service": 42}',
            ]
        )
    with gzip.open(path, "wb") as f:
        f.write(b"\n".join(lines) + b"\n")
    return lines


def _batches(path: Path, *, child: bool) -> list:
    with open_log(path) as stream:
        return list(read_decoded(stream, 700, PRESETS["plain"], child=child))


@pytest.mark.parametrize("seed", [1, 2])
def test_the_child_reader_decodes_as_one_process_does(tmp_path: Path, seed: int) -> None:
    log = tmp_path / "a.jsonl.gz"
    _log(log, 12_000, seed)
    here, there = _batches(log, child=False), _batches(log, child=True)
    assert len(here) == len(there) > 10
    for a, b in zip(here, there, strict=True):
        assert (a.lines, a.clock_s) == (b.lines, b.clock_s)
        assert [(r.index, r.reason, r.detail, r.raw) for r in a.result.rejections] == [
            (r.index, r.reason, r.detail, r.raw) for r in b.result.rejections
        ]
        x, y = a.result.batch, b.result.batch
        for name in ("index", "time_s", "latency_s", "error", "status"):
            np.testing.assert_array_equal(getattr(x, name), getattr(y, name))
        assert x.service.categories == y.service.categories
        assert x.segments.keys() == y.segments.keys()
    assert sum(len(b.result.rejections) for b in there) > 50  # the bad lines were in it


def test_a_replay_through_the_child_reader_decides_as_one_process(tmp_path: Path) -> None:
    log = tmp_path / "a.jsonl.gz"
    _log(log, 30_000, 3)
    reg = Registry(
        [BakeSpec.from_dict({"id": "c", "service": "checkout", "canary": "v42", "baseline": "v41"})]
    )
    docs = []
    for child in (False, True):
        with open_log(log) as stream:
            r = replay_decoded(read_decoded(stream, 2000, PRESETS["plain"], child=child), reg)
        docs.append((r.records, dict(r.rejected), r.verdicts["c"].document()))
    assert docs[0][:2] == docs[1][:2]
    strip = ("generated_at",)
    assert {k: v for k, v in docs[0][2].items() if k not in strip} == {
        k: v for k, v in docs[1][2].items() if k not in strip
    }


def test_a_truncated_gzip_file_is_an_input_error_from_the_child(tmp_path: Path) -> None:
    log = tmp_path / "cut.jsonl.gz"
    _log(log, 5_000, 4)
    log.write_bytes(log.read_bytes()[:-200])
    with pytest.raises(InputError, match="cannot read log"):
        _batches(log, child=True)
