"""The forecast to a decision: stable requests, seconds at the recent rate, same after restore."""

from __future__ import annotations

import itertools
import math

import numpy as np
import orjson

from detectors.summary import CohortSummary
from monitor.bakes.spec import BakeSpec
from monitor.verdict.engine import BakeVerdict
from monitor.verdict.eta import DecisionEta

T0 = 1_795_824_000.0


def test_mean_of_aged_projections_damps_one_noisy_window() -> None:
    eta = DecisionEta(keep=5)
    for i, p in enumerate([10_000, 9_900, 300, 9_700, 9_600]):  # one window's noise: 300
        eta.observe(100 * i, T0 + 10 * i, p)
    assert eta.requests(400) is not None
    assert 9_000 <= eta.requests(400) <= 9_800  # type: ignore[operator]  # not 300
    eta.observe(500, T0 + 50, None)
    eta.observe(600, T0 + 60, None)
    eta.observe(700, T0 + 70, None)  # most recent say "not in sight"
    assert eta.requests(700) is None


def test_seconds_use_the_recent_tested_rate() -> None:
    eta = DecisionEta(rate_windows=3)
    for i in range(10):
        eta.observe(50 * i, T0 + 10 * i, 1_000)  # 5 canary requests tested per second
    assert math.isclose(eta.rate() or 0, 5.0)
    assert eta.seconds(1_000) == 200.0
    assert DecisionEta().seconds(1_000) is None  # no rate yet


def _spec() -> BakeSpec:
    return BakeSpec.from_dict(
        {"id": "b", "service": "s", "canary": "v2", "baseline": "v1",
         "policy": {"min_canary_requests": 20_000}}
    )  # fmt: skip


def _summary(rng: np.random.Generator, n: int, p: float) -> CohortSummary:
    s = CohortSummary()
    s.update(np.exp(rng.normal(math.log(0.05), 0.5, n)), rng.random(n) < p)
    return s


def _steps(xs: list[int]) -> list[float]:
    return [abs(math.log(b / a)) for a, b in itertools.pairwise(xs) if a and b]


def test_the_document_forecast_is_steadier_than_the_raw_projection_and_survives_a_restore() -> None:
    """A/A at 20 canary requests per second: the document's requests estimate moves less from
    one window to the next than the detectors' raw projection (fewer and smaller jumps), the
    seconds are those requests at 20/s, and a restored engine says the same."""
    rng = np.random.default_rng(2)
    v = BakeVerdict(_spec())
    raw, shown, secs = [], [], []
    for i in range(60):
        t = T0 + 10 * i
        v.update(_summary(rng, 200, 0.01), _summary(rng, 2_000, 0.01), t + 9, progress_s=t + 9)
        prog = v.document()["progress"]
        p = v.tests.projection(v.tests.assessments())
        if prog["estimated_requests_to_decision"] and p:
            raw.append(p)
            shown.append(prog["estimated_requests_to_decision"])
            secs.append(prog["estimated_seconds_to_decision"])
    assert len(shown) > 30
    big = math.log(1.4)
    assert sum(x > big for x in _steps(shown)) < sum(x > big for x in _steps(raw))
    assert max(_steps(shown)) <= max(_steps(raw))
    assert secs[-1] is not None and math.isclose(secs[-1], shown[-1] / 20, rel_tol=0.05)
    doc = v.document()
    assert "at the current rate" in doc["progress_text"]
    restored = BakeVerdict.from_state(orjson.loads(orjson.dumps(v.state_dict())))
    assert restored.document()["progress"] == doc["progress"]


def _limited(shown: list[tuple[int, int]], step: float) -> bool:
    """Each figure within ``step``× of the previous one aged by the requests tested since."""
    for (at, a), (now, b) in itertools.pairwise(shown):
        aged = max(a - (now - at), 0)
        if aged and not aged / step - 1 <= b <= aged * step + 1:
            return False
    return True


def test_no_figure_before_three_windows_then_at_most_1_5x_per_window() -> None:
    """The helper's complaint (the first two figures 4.3× apart within 13 s; 9,878 → 383 in
    30 s): over 30 seeds, A/A and a canary erring 3× as often, nothing is shown before the third
    tested window and each figure is within 1.5× of the previous one aged by the requests tested
    in between — while the unlimited mean it follows jumped more than that in many runs."""
    unlimited_jumped = 0
    for seed in range(30):
        rng = np.random.default_rng(seed)
        v = BakeVerdict(_spec())
        free = DecisionEta(max_step=1e12)
        shown: list[tuple[int, int]] = []
        free_shown: list[tuple[int, int]] = []
        p_canary = 0.01 if seed % 2 else 0.03
        for i in range(25):
            t = T0 + 10 * i
            v.update(
                _summary(rng, 150, p_canary), _summary(rng, 1500, 0.01), t + 9, progress_s=t + 9
            )
            doc = v.document()
            est = doc["progress"]["estimated_requests_to_decision"]
            if i < 2:
                assert est is None and "estimating" in doc["progress_text"]
            if v.decided:
                assert est == 0 and "estimating" not in doc["progress_text"]
                break
            n = v.tests.tested_canary
            free.observe(n, t + 9, v.tests.projection(v.tests.assessments()))
            if est:
                shown.append((n, est))
            if f := free.requests(n):
                free_shown.append((n, f))
        assert _limited(shown, 1.5), seed
        unlimited_jumped += not _limited(free_shown, 1.5)
    assert unlimited_jumped >= 3  # the limit was needed: the property is not one of the traffic
