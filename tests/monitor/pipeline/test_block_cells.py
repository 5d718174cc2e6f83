"""Ingest's array-held cells (monitor.pipeline.cells.BlockCells) against the summary-object
path they replace (summarise_cells + merge_cells + format 3's _cell_rows): the same rows, byte
for byte, through many flushes of random traffic: several bakes with different windows and
strata, absent labels, one-bucket and wide histograms, and a label cap that overflows."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from detectors.summary import CohortSummary
from monitor.bakes.spec import BakeSpec, Registry
from monitor.bakes.tagging import CellCounts, cell_counts, increments, summarise_cells, tag
from monitor.pipeline.cells import BlockCells
from monitor.pipeline.partials import _cell_rows
from monitor.records.decode import decode_batch
from monitor.records.fieldmap import PRESETS
from monitor.verdict.windows import merge_cells

T0 = 1_795_824_000.0


def _registry() -> Registry:
    return Registry(
        [
            BakeSpec.from_dict(
                {"id": "a-v2", "service": "a", "canary": "v2", "baseline": "v1", "start": 0}
            ),
            BakeSpec.from_dict(
                {
                    "id": "b-v2",
                    "service": "b",
                    "canary": "v2",
                    "baseline": "v1",
                    "start": 0,
                    "policy": {"window_s": 3, "stratify": ["zone", "route"]},
                }
            ),
            BakeSpec.from_dict(
                {
                    "id": "c-v2",
                    "service": "c",
                    "canary": "v2",
                    "baseline": "v1",
                    "start": 0,
                    "policy": {"window_s": 60, "stratify": []},
                }
            ),
        ]
    )


def _batch(rng: np.random.Generator, n: int, t: float, far: bool = False) -> list[bytes]:
    out = []
    for _ in range(n):
        ts = t + float(rng.uniform(-20, 15))  # late and early records
        if far and rng.random() < 0.02:
            ts -= 4e7  # a host a year behind: its windows are too far away to pack
        rec: dict[str, object] = {
            "ts": ts,
            "service": str(rng.choice(["a", "b", "c", "d"])),
            "version": str(rng.choice(["v1", "v2", "v3"])),
            "status": int(rng.choice([200, 200, 200, 500])),
            "latency_ms": float(rng.choice([5.0, float(rng.lognormal(3, 1.5))])),
        }
        if rng.random() < 0.8:
            rec["zone"] = f"z{rng.integers(0, 5)}"
        if rng.random() < 0.5:
            rec["route"] = f"/r{rng.integers(0, 9)}"
        out.append(orjson.dumps(rec))
    return out


@pytest.mark.parametrize(
    ("seed", "max_labels", "jump_s", "far"),
    [
        (0, None, 0, False),
        (1, 256, 0, False),
        (2, 3, 0, False),
        (3, 1, 0, False),
        (4, 5, 0, False),
        (5, None, 3e7, False),
        (6, 2, 3e7, False),
        *((seed, [None, 256, 3, 5][seed % 4], 0, True) for seed in range(7, 31)),
    ],
)
def test_block_cells_encode_what_the_summary_objects_encode(
    seed: int, max_labels: int | None, jump_s: float, far: bool
) -> None:
    """``jump_s``: a flush far later than the others; ``far``: a few records a year late in
    some flushes (their windows are too far apart to pack: their cells are found one by one,
    the others' at once, and nothing is made twice)."""
    rng = np.random.default_rng(seed)
    reg = _registry()
    cells = BlockCells()
    reference: dict[str, dict[tuple[int, str], tuple[CohortSummary, CohortSummary]]] = {}
    t = T0
    for _flush in range(12):
        lines = _batch(rng, int(rng.integers(0, 300)), t, far=far and rng.random() < 0.3)
        batch = decode_batch(lines, PRESETS["plain"]).batch
        tags = tag(batch, reg)
        for bake_idx, inc in increments(batch, tags, reg).items():  # ingest's former path
            merge_cells(
                reference.setdefault(reg.bakes[bake_idx].id, {}), inc.cells.items(), max_labels
            )
        cc = cell_counts(batch, tags, reg)
        cells.add(reg.ids(), cc, max_labels)
        for bake in sorted(reference):
            assert cells.rows_json(bake) == _cell_rows(reference[bake]), (bake, _flush)
        t += float(rng.uniform(0, 20)) + (jump_s if _flush == 5 else 0.0)
    assert sorted(cells.bakes()) == sorted(reference) == ["a-v2", "b-v2", "c-v2"]
    assert cells.encoded > 0 and cells.reused > 0
    if max_labels is not None and max_labels < 5:
        assert any("(other)" in s for s in cells._sids)  # the cap was reached


def test_cell_counts_are_the_cells_of_summarise_cells() -> None:
    """cell_counts gives summarise_cells' groups, requests, errors and histograms as columns."""
    rng = np.random.default_rng(9)
    reg = _registry()
    batch = decode_batch(_batch(rng, 2000, T0), PRESETS["plain"]).batch
    tags = tag(batch, reg)
    cc: CellCounts = cell_counts(batch, tags, reg)
    objects = summarise_cells(batch, tags, reg)
    assert cc.n.size == sum(len(v) for v in objects.values()) > 50
    for g in range(cc.n.size):
        s = objects[(int(cc.bake[g]), int(cc.cohort[g]))][(int(cc.k[g]), cc.label(g))]
        mine = cc.h_group == g
        assert (s.requests, s.errors) == (int(cc.n[g]), int(cc.e[g]))
        assert s.buckets() == (cc.h_bucket[mine].tolist(), cc.h_count[mine].tolist())


def test_every_partial_ingest_publishes_is_its_records_summarised_from_scratch() -> None:
    """Each partial ingest publishes from its arrays (totals with segment counts, cells)
    equals the summaries the object path (decode, tag, increments) makes of the source
    records [block start, upto) of its partition: through many flushes, late records and a
    block boundary."""
    from _memory_pipeline import BOTH, LAYOUT, REQUESTS, drain, ingest, new_broker, produce

    from monitor.pipeline.partials import decode_message, partials_in

    rng = np.random.default_rng(12)
    lines = []
    for i in range(3000):
        rec = orjson.loads(_batch(rng, 1, T0 + i * 0.05)[0])
        rec["service"] = str(rng.choice(["checkout", "search", "cart"]))
        rec["version"] = str(rng.choice(["v42", "v41", "v8", "v7", "v1"]))
        lines.append(orjson.dumps(rec))
    broker = new_broker()
    w = ingest(broker, block_offsets=700)
    for i in range(0, len(lines), 230):
        produce(broker, lines[i : i + 230])
        drain(w)
        assert w.checkpoint()
    seen = 0
    for r in broker.records(LAYOUT.partials):
        for p in partials_in(decode_message(r.value or b"")):
            src = broker.records(REQUESTS, p.partition)[p.block * 700 : p.upto]
            batch = decode_batch([s.value or b"" for s in src], PRESETS["plain"]).batch
            inc = increments(batch, tag(batch, BOTH), BOTH)[BOTH._index[p.bake]]
            assert (p.canary, p.baseline) == (inc.canary, inc.baseline)
            assert p.canary.segments == inc.canary.segments and p.canary.segments["zone"]
            assert p.cells.keys() == inc.cells.keys()
            for key, (c, b) in inc.cells.items():
                assert p.cells[key] == (c, b)
            assert p.max_event_time_s == inc.max_time_s
            seen += 1
    assert seen > 30
