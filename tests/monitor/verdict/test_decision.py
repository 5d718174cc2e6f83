"""The decision, frozen (issue 11): ``decision`` is fixed when the bake decides, agrees with
its reason, never changes afterwards (records keep arriving, live figures move), survives a
restore, and a PROMOTE's decision shows every metric non-inferior."""

from __future__ import annotations

import math

import numpy as np

from detectors.summary import CohortSummary
from monitor.bakes.spec import BakeSpec
from monitor.verdict.engine import BakeVerdict, Status

T0 = 1_795_824_000.0


def _spec(**policy: object) -> BakeSpec:
    return BakeSpec.from_dict(
        {"id": "b", "service": "s", "canary": "v2", "baseline": "v1", "policy": policy}
    )


def _summary(rng: np.random.Generator, n: int, p: float) -> CohortSummary:
    s = CohortSummary()
    s.update(np.exp(rng.normal(math.log(0.05), 0.5, n)), rng.random(n) < p)
    return s


def _feed(v: BakeVerdict, rng: np.random.Generator, start: int, windows: int, p_c: float) -> None:
    for i in range(start, start + windows):
        t = T0 + 10 * i
        c, b = _summary(rng, 300, p_c), _summary(rng, 300, 0.01)
        cells = {(int(t // 10), ""): (c, b)}
        v.update(c, b, t + 9, cells=cells, progress_s=t + 9, source=("r", 0), source_partitions=1)


def _until_decided(v: BakeVerdict, rng: np.random.Generator, p_c: float) -> int:
    for i in range(2000):
        _feed(v, rng, i, 1, p_c)
        if v.decided:
            return i + 1
    raise AssertionError("no decision")


def test_halt_decision_is_frozen_and_agrees_with_its_reason() -> None:
    rng = np.random.default_rng(1)
    v = BakeVerdict(_spec(min_canary_requests=0, latency={"enabled": False}))
    n = _until_decided(v, rng, 0.03)
    doc = v.document()
    d = doc["decision"]
    assert v.status is Status.HALT and d["status"] == "HALT"
    assert d["reason"] == doc["reasons"][0]
    err = d["metrics"]["error_rate"]
    assert err["finding"] == "REGRESSION" and err["e_value_halt"] >= err["halt_needs"]
    assert err["lower"] <= err["estimate"] <= err["upper"]
    assert f"{err['estimate']:.2f}" in d["reason"]  # the reason quotes the frozen ratio
    assert d["requests"]["tested_canary"] == doc["progress"]["tested_canary_requests"]
    assert doc["live"] and "live" in doc["live"]
    _feed(v, rng, n, 50, 0.03)  # the stream goes on
    later = v.document()
    assert later["decision"] == d
    assert later["progress"]["canary_requests"] > doc["progress"]["canary_requests"]
    assert later["metrics"]["error_rate"]["e_value_halt"] != err["e_value_halt"]
    assert BakeVerdict.from_state(v.state_dict()).document()["decision"] == d


def test_promote_decision_shows_every_metric_non_inferior() -> None:
    for seed in range(3):
        rng = np.random.default_rng(10 + seed)
        v = BakeVerdict(_spec(min_canary_requests=2_000, errors={"tol": 0.5}))
        n = _until_decided(v, rng, 0.01)
        d = v.document()["decision"]
        assert d["status"] == "PROMOTE", d["reason"]
        assert {m["finding"] for m in d["metrics"].values()} == {"NON_INFERIOR"}
        _feed(v, rng, n, 100, 0.01)
        assert v.document()["decision"] == d


def test_pending_has_no_decision_and_an_override_freezes_its_own() -> None:
    rng = np.random.default_rng(5)
    v = BakeVerdict(_spec(min_canary_requests=10**9))
    _feed(v, rng, 0, 5, 0.01)
    doc = v.document()
    assert doc["decision"] is None and doc["live"] is None
    v.override(Status.HALT, "alice", "bad deploy", T0 + 100)
    d = v.document()["decision"]
    assert d["status"] == "HALT" and d["override"]["by"] == "alice"
    assert d["reason"] == "operator override by alice: bad deploy"
