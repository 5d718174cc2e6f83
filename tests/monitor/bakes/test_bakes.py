"""Tests of bake specs, the registry and deterministic cohort tagging."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from detectors.summary import NUM_BUCKETS, OTHER_SEGMENT, CohortSummary, bucket_index
from monitor.bakes.spec import BakeSpec, Registry
from monitor.bakes.tagging import BASELINE, CANARY, Tags, summarise, tag
from monitor.errors import BakeError, ConfigError
from monitor.records.columns import RecordBatch
from monitor.records.decode import decode_batch
from monitor.records.fieldmap import PRESETS


def _lines(rows: list[dict[str, object]]) -> list[bytes]:
    return [orjson.dumps(r) for r in rows]


def _row(ts: float, service: str, version: str, **kw: object) -> dict[str, object]:
    return {
        "ts": ts,
        "service": service,
        "version": version,
        "status": 200,
        "latency_ms": 10.0,
        **kw,
    }


def _spec(id_: str, canary: str, baseline: str, start: float = 0.0, **kw: object) -> BakeSpec:
    return BakeSpec.from_dict(
        {
            "id": id_,
            "service": "checkout",
            "canary": canary,
            "baseline": baseline,
            "start": start,
            **kw,
        }
    )


def test_tags_by_service_and_version() -> None:
    """Canary and baseline versions of the bake's service are tagged; others are not."""
    reg = Registry([_spec("b1", "v2", "v1")])
    rows = [
        _row(10, "checkout", "v2"),
        _row(11, "checkout", "v1"),
        _row(12, "checkout", "v0"),
        _row(13, "search", "v2"),
    ]
    batch = decode_batch(_lines(rows), PRESETS["plain"]).batch
    t = tag(batch, reg)
    assert t.bake.tolist() == [0, 0, -1, -1]
    assert t.cohort[:2].tolist() == [CANARY, BASELINE]


def test_latest_started_bake_wins_and_start_end_are_respected() -> None:
    """A version in two bakes goes to the latest-started one at the record's event time."""
    reg = Registry(
        [_spec("old", "v2", "v1", start=100), _spec("new", "v3", "v2", start=200, end=300)]
    )
    rows = [
        _row(50, "checkout", "v2"),
        _row(150, "checkout", "v2"),
        _row(250, "checkout", "v2"),
        _row(350, "checkout", "v2"),
    ]
    t = tag(decode_batch(_lines(rows), PRESETS["plain"]).batch, reg)
    assert t.bake.tolist() == [-1, 0, 1, -1]  # before any start; old; new; after new's end
    assert t.cohort[1:3].tolist() == [CANARY, BASELINE]


def test_explicit_labels_take_precedence() -> None:
    """Records with bake and cohort labels are tagged by them, whatever their version."""
    reg = Registry([_spec("b1", "v2", "v1")])
    rows = [
        _row(10, "checkout", "v9", bake="b1", cohort="canary"),
        _row(10, "checkout", "v9", cohort="baseline"),
        _row(10, "checkout", "v2", bake="unknown", cohort="canary"),
    ]
    t = tag(decode_batch(_lines(rows), PRESETS["plain"]).batch, reg)
    assert t.bake.tolist() == [0, 0, -1]
    assert t.cohort[:2].tolist() == [CANARY, BASELINE]


def test_tagging_is_deterministic_under_batch_splits() -> None:
    """Tagging a log in one batch or many gives the same tags (pure function of record)."""
    rng = np.random.default_rng(0)
    reg = Registry([_spec("a", "v2", "v1", start=100), _spec("b", "v3", "v2", start=500)])
    rows = [
        _row(float(t), "checkout", f"v{rng.integers(0, 4)}") for t in rng.uniform(0, 1000, 2000)
    ]
    lines = _lines(rows)
    whole = tag(decode_batch(lines, PRESETS["plain"]).batch, reg)
    parts = [
        tag(decode_batch(lines[i : i + 137], PRESETS["plain"]).batch, reg)
        for i in range(0, 2000, 137)
    ]
    assert np.concatenate([p.bake for p in parts]).tolist() == whole.bake.tolist()
    assert np.concatenate([p.cohort for p in parts]).tolist() == whole.cohort.tolist()


def test_summarise_equals_direct_summaries() -> None:
    """Vectorised per-group summaries equal summaries built from each group's rows."""
    rng = np.random.default_rng(1)
    reg = Registry([_spec("a", "v2", "v1")])
    n = 3000
    versions = rng.choice(["v1", "v2", "v0"], n)
    lat = rng.lognormal(3, 1, n)
    status = np.where(rng.random(n) < 0.05, 503, 200)
    zones = rng.choice(["z1", "z2"], n)
    rows = [
        {
            "ts": 1.0 + i,
            "service": "checkout",
            "version": str(versions[i]),
            "status": int(status[i]),
            "latency_ms": float(lat[i]),
            "zone": str(zones[i]),
        }
        for i in range(n)
    ]
    batch = decode_batch(_lines(rows), PRESETS["plain"]).batch
    groups = summarise(batch, tag(batch, reg), segment_dims=("zone",))
    for cohort, version in ((CANARY, "v2"), (BASELINE, "v1")):
        m = versions == version
        want = CohortSummary()
        want.update(lat[m] / 1000.0, status[m] >= 500, {"zone": zones[m]})
        got, max_t = groups[(0, cohort)]
        assert got == want
        assert max_t == float(np.flatnonzero(m).max() + 1)


def _legacy_summarise(
    batch: RecordBatch, tags: Tags, segment_dims: tuple[str, ...]
) -> dict[tuple[int, int], tuple[CohortSummary, float]]:
    """summarise() as it was before CohortSummary.from_groups: the reference for exactness."""
    sel = np.flatnonzero(tags.bake >= 0)
    group = tags.bake[sel].astype(np.int64) * 2 + tags.cohort[sel]
    groups, ginv = np.unique(group, return_inverse=True)
    g = groups.size
    buckets = bucket_index(batch.latency_s[sel])
    hist = np.bincount(ginv * NUM_BUCKETS + buckets, minlength=g * NUM_BUCKETS)
    hist = hist.reshape(g, NUM_BUCKETS)
    requests = np.bincount(ginv, minlength=g)
    errors = np.bincount(ginv, weights=batch.error[sel].astype(np.float64), minlength=g)
    max_time = np.full(g, -np.inf)
    np.maximum.at(max_time, ginv, batch.time_s[sel])
    seg_counts = {}
    for dim in segment_dims:
        col = batch.segments.get(dim)
        if col is None or not col.categories:
            continue
        k = len(col.categories)
        counts = np.bincount(ginv * k + col.codes[sel], minlength=g * k).reshape(g, k)
        seg_counts[dim] = (counts, col.categories)
    out = {}
    for j, grp in enumerate(groups.tolist()):
        s = CohortSummary(int(requests[j]), round(errors[j]), hist[j])
        for dim, (counts, cats) in seg_counts.items():
            nz = np.flatnonzero(counts[j]).tolist()
            s.add_segment_counts(dim, {cats[c]: int(counts[j, c]) for c in nz if cats[c] != ""})
        out[(grp // 2, grp % 2)] = (s, float(max_time[j]))
    return out


def test_summarise_gives_exactly_the_legacy_numbers() -> None:
    """Two bakes, absent and overflowing segment values: summaries serialise as before, byte for byte."""
    rng = np.random.default_rng(2)
    reg = Registry([_spec("a", "v2", "v1"), _spec("b", "v4", "v3", start=500.0)])
    n = 4000
    versions = rng.choice(["v1", "v2", "v3", "v4", "v0"], n)
    hosts = rng.integers(0, 300, n)  # more than MAX_SEGMENT_VALUES distinct hosts
    rows = [
        {
            "ts": 1.0 + i / 4,
            "service": "checkout",
            "version": str(versions[i]),
            "status": 503 if rng.random() < 0.05 else 200,
            "latency_ms": float(rng.lognormal(3, 1)),
            "zone": ["", "z1", "z2"][i % 3],
            "host": f"h{hosts[i]}",
        }
        for i in range(n)
    ]
    batch = decode_batch(_lines(rows), PRESETS["plain"]).batch
    tags = tag(batch, reg)
    dims = ("zone", "route", "host")
    got, want = summarise(batch, tags, dims), _legacy_summarise(batch, tags, dims)
    assert list(got) == list(want) and len(got) == 4
    assert any(OTHER_SEGMENT in s.segments["host"] for s, _ in got.values())
    assert all(s.segments["route"] == {} and "" not in s.segments["zone"] for s, _ in got.values())

    def encoded(groups: dict[tuple[int, int], tuple[CohortSummary, float]]) -> bytes:
        return orjson.dumps([[k, s.to_dict(), t] for k, (s, t) in groups.items()])

    assert encoded(got) == encoded(want)


def test_spec_validation_messages() -> None:
    """Bad bake specs raise ConfigError naming the problem."""
    with pytest.raises(ConfigError, match='bake field "canary" is required'):
        BakeSpec.from_dict({"id": "x", "service": "s", "baseline": "v1"})
    with pytest.raises(ConfigError, match="in both canary and baseline"):
        _spec("x", "v1", "v1")
    for bad in ("bad id!", "ok\n", "x" * 129, "-leading", ""):
        with pytest.raises(ConfigError, match="bake id must be 1-128 characters"):
            _spec(bad, "v2", "v1")
    assert _spec("a" * 128, "v2", "v1").id == "a" * 128
    with pytest.raises(ConfigError, match='bake id "stream" is reserved'):
        _spec("stream", "v2", "v1")  # /v1/bakes/stream is the console's live feed
    with pytest.raises(ConfigError, match="unknown bake field"):
        BakeSpec.from_dict({"id": "x", "service": "s", "canary": "a", "baseline": "b", "colour": 1})


def test_registry_lookup_errors_name_the_bake() -> None:
    """Looking up an unknown bake raises BakeError with its id in double quotes."""
    with pytest.raises(BakeError, match='bake "nope" is not registered'):
        Registry().get("nope")


def test_spec_round_trip() -> None:
    """to_dict/from_dict round-trips a spec with a custom policy."""
    s = _spec("x", "v2", "v1", start=5.0, policy={"alpha": 0.05, "latency": {"enabled": False}})
    assert BakeSpec.from_dict(s.to_dict()) == s


def test_registry_replacing_a_bake_reindexes_its_versions() -> None:
    """add() of a known id replaces its version index entries (incremental, no full rebuild)."""
    r = Registry([_spec("a", "v2", "v1"), _spec("b", "v3", "v1")])
    assert [i for _, i, _ in r.candidates("checkout", "v1")] == [0, 1]
    r.add(_spec("a", "v4", "v0"))
    assert r.candidates("checkout", "v2") == []
    assert [i for _, i, _ in r.candidates("checkout", "v1")] == [1]
    assert [i for _, i, _ in r.candidates("checkout", "v4")] == [0]
    assert [b.id for b in r.bakes] == ["a", "b"] and r.get("a").canary_versions == ("v4",)


def test_tagging_does_not_depend_on_the_order_bakes_were_added() -> None:
    """Bakes selecting the same version from the same start: the greatest id wins, whatever
    the add order (an incremental update and a rebuild tag the same); with_specs leaves the
    registry it copies unchanged."""
    specs = [_spec("b-2", "v2", "v1"), _spec("b-1", "v2", "v1"), _spec("b-3", "v3", "v1", 5.0)]
    rows = [(float(t), "v2" if t % 2 else "v1") for t in range(10)]
    lines = [
        orjson.dumps({"ts": t, "service": "checkout", "version": v, "status": 200,
                      "latency_ms": 5})
        for t, v in rows
    ]  # fmt: skip
    batch = decode_batch(lines, PRESETS["plain"]).batch

    def owners(reg: Registry) -> list[str | None]:
        t = tag(batch, reg)
        return [reg.bakes[i].id if i >= 0 else None for i in t.bake.tolist()]

    forward, backward = Registry(specs), Registry(reversed(specs))
    base = Registry(specs[:1])
    grown = base.with_specs(specs[1:])
    assert owners(forward) == owners(backward) == owners(grown)
    assert set(owners(forward)) == {"b-2", "b-3"}  # b-2 > b-1 from t=0; b-3 from t=5 (v1)
    assert [b.id for b in base.bakes] == ["b-2"] and len(grown) == 3
    assert owners(base) == ["b-2"] * 10


def _reference_tag(rows: list[dict[str, object]], specs: list[BakeSpec]) -> list[tuple[int, int]]:
    """Tagging one record at a time by the rules of monitor.bakes.spec (the reference for the
    vectorised tagger): a cohort label goes to the service's latest-started bake, else the
    latest bake started by the record's time that selects its version; outside that bake's
    [start, end) the record is in no bake."""
    out = []
    for r in rows:
        svc, ver, t = r["service"], r["version"], float(r["ts"])  # type: ignore[arg-type]
        chosen: tuple[int, int] | None = None
        if r.get("cohort") in ("canary", "baseline"):
            mine = [(s.start_s, s.id, i) for i, s in enumerate(specs) if s.service == svc]
            if mine:
                chosen = (max(mine)[2], CANARY if r["cohort"] == "canary" else BASELINE)
        else:
            cands = [
                (s.start_s, s.id, i, CANARY if ver in s.canary_versions else BASELINE)
                for i, s in enumerate(specs)
                if s.service == svc
                and (ver in s.canary_versions or ver in s.baseline_versions)
                and s.start_s <= t
            ]
            if cands:
                best = max(cands)
                chosen = (best[2], best[3])
        if chosen is not None:
            s = specs[chosen[0]]
            if t < s.start_s or (s.end_s is not None and t >= s.end_s):
                chosen = None
        out.append(chosen if chosen is not None else (-1, 0))
    return out


@pytest.mark.parametrize("seed", range(5))
def test_vectorised_tagging_matches_a_per_record_reference(seed: int) -> None:
    """Many services, bakes that overlap in time and share versions, ends, cohort labels: the
    tagger (one lookup per distinct service and version) agrees with the per-record rules."""
    rng = np.random.default_rng(seed)
    services = [f"svc{k}" for k in range(40)]
    specs = []
    for svc in services:
        for j in range(int(rng.integers(0, 4))):
            v = int(rng.integers(1, 5))
            start = float(rng.uniform(0, 600))
            end = start + float(rng.uniform(50, 600)) if rng.random() < 0.3 else None
            specs.append(
                BakeSpec.from_dict(
                    {
                        "id": f"{svc}-b{j}",
                        "service": svc,
                        "canary": f"v{v + 1}",
                        "baseline": f"v{v}",
                        "start": start,
                        **({"end": end} if end is not None else {}),
                    }
                )
            )
    reg = Registry(specs)
    rows: list[dict[str, object]] = []
    for _ in range(3000):
        row = _row(
            float(rng.uniform(0, 1000)),
            services[int(rng.integers(0, len(services)))],
            f"v{rng.integers(0, 7)}",
        )
        if rng.random() < 0.1:
            row["cohort"] = "canary" if rng.random() < 0.5 else "baseline"
        rows.append(row)
    t = tag(decode_batch(_lines(rows), PRESETS["plain"]).batch, reg)
    cohorts = [c if b >= 0 else 0 for b, c in zip(t.bake, t.cohort, strict=True)]
    got = list(zip(t.bake.tolist(), cohorts, strict=True))
    assert got == _reference_tag(rows, specs)
    assert (t.bake >= 0).sum() > 300  # the case is not vacuous
