"""The Argo Rollouts recipe, played as Argo's analysis controller plays an AnalysisTemplate.

Each metric's measurements go through the web provider's steps (method, headers, body, non-2xx
is an Error, ``jsonPath``), the recipe's ``successCondition``/``failureCondition`` decide each
measurement's phase, and the run's phase follows ``analysis/analysis.go``: ``failureLimit``,
``inconclusiveLimit``, ``consecutiveErrorLimit`` (default 4), ``count``, and
``consecutiveSuccessLimit`` only where the Argo version knows it (>= 1.8).
"""

from __future__ import annotations

import copy
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
import yaml
from _rollout import PIPELINES, POLICY, Bakemon, Canary, local

API_TOKEN = "argo-token-0123456789"
RECIPE = PIPELINES / "argo-analysistemplate.yaml"
PACE_S = 1.0  # the recipe's interval (30 s) as the test plays it (count 40: a 40 s window)
CANARIES = (
    Canary("cart", "5d9c7f6b8", "77f4c9d6b", "healthy"),
    Canary("pay", "6b8d5c9f7", "84c6f7b9d", "regressed"),
    Canary("search", "7c6f8b9d5", "9b7d6c8f4", "undecided"),
)
_CONDITION = re.compile(r'^\s*result\s*==\s*"([A-Z]+)"\s*$')


def _template() -> dict[str, Any]:
    docs = [d for d in yaml.safe_load_all(RECIPE.read_text()) if d]
    assert [d["kind"] for d in docs] == ["AnalysisTemplate"]
    template: dict[str, Any] = docs[0]
    return template


def _condition(expr: str | None) -> set[str]:
    """The statuses a condition accepts; the recipe may only use ``result == "S"`` joined by
    ``||`` (the forms this evaluator knows, a subset of Argo's expr language)."""
    if expr is None:
        return set()
    out = set()
    for part in expr.split("||"):
        m = _CONDITION.match(part)
        assert m, f"condition form not understood by the test: {expr!r}"
        out.add(m.group(1))
    return out


def _resolve(value: Any, args: dict[str, str]) -> Any:
    """Argo's ``{{args.x}}`` substitution over a metric (it templates the metric's JSON)."""
    text = orjson.dumps(value).decode()
    for name, v in args.items():
        text = text.replace("{{args." + name + "}}", orjson.dumps(v).decode()[1:-1])
    assert "{{" not in text, text
    return orjson.loads(text)


def _evaluate(metric: dict[str, Any], value: Any) -> str:
    """``evaluate.EvaluateResult``: a missing condition is the negation of the other; neither
    condition true is Inconclusive."""
    has_ok, has_bad = "successCondition" in metric, "failureCondition" in metric
    if not has_ok and not has_bad:
        return "Successful"
    ok = value in _condition(metric.get("successCondition"))
    bad = value in _condition(metric.get("failureCondition"))
    if not has_bad:
        bad = not ok
    if not has_ok:
        ok = not bad
    if bad:
        return "Failed"
    return "Successful" if ok else "Inconclusive"


def _json_path(path: str, data: Any) -> Any:
    """The k8s JSONPath forms the recipe uses: ``{$.a.b}``."""
    m = re.fullmatch(r"\{\$((?:\.[A-Za-z_][A-Za-z0-9_]*)*)\}", path)
    assert m, f"jsonPath form not understood by the test: {path!r}"
    for key in [k for k in m.group(1).split(".") if k]:
        data = data[key]
    return data


def _interval_s(text: str | None) -> float:
    if not text:
        return 0.0
    m = re.fullmatch(r"(\d+)(s|m)", text)
    assert m, text
    return int(m.group(1)) * (60 if m.group(2) == "m" else 1)


@dataclass
class MetricRun:
    """One metric's counters, as Argo keeps them in ``MetricResult``."""

    spec: dict[str, Any]
    phase: str = "Running"
    count: int = 0
    successful: int = 0
    failed: int = 0
    inconclusive: int = 0
    error: int = 0
    consecutive_error: int = 0
    consecutive_success: int = 0
    values: list[Any] = field(default_factory=list)

    def measure(self, bakemon: Bakemon) -> None:
        web = self.spec["provider"]["web"]
        method = web.get("method", "GET")
        headers = {h["key"]: h["value"] for h in web.get("headers", [])}
        body = web.get("body")
        assert body is None or method in ("POST", "PUT"), "Argo refuses a body on GET"
        status, raw = bakemon.request(
            method,
            local(web["url"], bakemon),
            body.encode() if body is not None else None,
            headers,
            timeout_s=float(web.get("timeoutSeconds", 10)),
        )
        if not 200 <= status < 300:
            phase, value = "Error", status
        else:
            value = _json_path(web.get("jsonPath", "{$}"), orjson.loads(raw))
            phase = _evaluate(self.spec, value)
        self.values.append(value)
        if phase == "Error":
            self.error += 1
            self.consecutive_error += 1
            self.consecutive_success = 0
            return
        self.count += 1
        self.consecutive_error = 0
        if phase == "Successful":
            self.successful += 1
            self.consecutive_success += 1
        else:
            self.consecutive_success = 0
            self.failed += phase == "Failed"
            self.inconclusive += phase == "Inconclusive"

    def assess(self) -> str:
        """``assessMetricStatus`` of Argo (a version before 1.8 has no consecutiveSuccessLimit:
        the template it is given then has none)."""
        s = self.spec
        failure_limit = int(s.get("failureLimit", 0))
        phase = ""
        if failure_limit >= 0 and self.failed > failure_limit:
            phase = "Failed"
        if self.inconclusive > int(s.get("inconclusiveLimit", 0)):
            phase = "Inconclusive"
        if self.consecutive_error > int(s.get("consecutiveErrorLimit", 4)):
            phase = "Error"
        if phase:
            return phase
        csl = int(s.get("consecutiveSuccessLimit", 0))
        if csl > 0 and self.consecutive_success >= csl:
            return "Successful"
        if "count" in s and self.count >= int(s["count"]):
            if csl > 0:
                return "Inconclusive" if failure_limit >= 0 else "Failed"
            return "Successful"
        return "Running"


def run_analysis(
    bakemon: Bakemon, template: dict[str, Any], args: dict[str, str]
) -> tuple[str, dict[str, MetricRun]]:
    """An AnalysisRun of the recipe's template: every metric on its own clock (interval and
    initialDelay at PACE_S per 30 s), the run's phase the worst of its metrics' phases."""
    declared = {a["name"] for a in template["spec"]["args"]}
    assert set(args) == declared, (sorted(args), sorted(declared))
    scale = PACE_S / 30
    runs = {m["name"]: MetricRun(_resolve(m, args)) for m in template["spec"]["metrics"]}
    start = time.monotonic()
    due = {n: start + _interval_s(r.spec.get("initialDelay")) * scale for n, r in runs.items()}
    while any(r.phase == "Running" for r in runs.values()):
        name = min((n for n, r in runs.items() if r.phase == "Running"), key=due.__getitem__)
        time.sleep(max(0.0, due[name] - time.monotonic()))
        run = runs[name]
        run.measure(bakemon)
        run.phase = run.assess()
        # Argo retries an Error after 10 s when the metric has no interval
        every = _interval_s(run.spec.get("interval")) or 10
        due[name] = time.monotonic() + every * scale
    order = ["Successful", "Inconclusive", "Failed", "Error"]
    worst = max((r.phase for r in runs.values()), key=order.index)
    return worst, runs


def _args(c: Canary, bakemon: Bakemon) -> dict[str, str]:
    # What the Rollout passes: service by value, the two hashes by podTemplateHashValue, the
    # token from its Secret.
    assert bakemon.token is not None
    return {
        "service": c.service,
        "bake-id": c.canary,
        "stable-hash": c.baseline,
        "api-token": bakemon.token,
    }


def test_recipe_is_safe_on_every_argo_version() -> None:
    """No consecutiveSuccessLimit (older CRDs reject it); inconclusiveLimit below count, so a
    run of PENDING measurements can never reach count as a success."""
    metrics = {m["name"]: m for m in _template()["spec"]["metrics"]}
    verdict = metrics["bake-verdict"]
    assert "consecutiveSuccessLimit" not in verdict
    assert int(verdict["inconclusiveLimit"]) < int(verdict["count"])
    assert int(verdict["failureLimit"]) == 0
    assert "PENDING" not in _condition(verdict["successCondition"])
    assert "PROMOTE" not in _condition(verdict["failureCondition"])
    assert metrics["create-bake"]["provider"]["web"]["method"] == "POST"


def _as_played(template: dict[str, Any], with_csl: bool) -> dict[str, Any]:
    """The template with the test's policy in the created bake's body, and, for Argo >= 1.8,
    the optional ``consecutiveSuccessLimit: 1`` line of the recipe uncommented."""
    t = copy.deepcopy(template)
    metrics = {m["name"]: m for m in t["spec"]["metrics"]}
    web = metrics["create-bake"]["provider"]["web"]
    body = orjson.loads(web["body"])
    assert set(body) == {"id", "service", "canary", "baseline"}, body
    web["body"] = orjson.dumps({**body, "policy": POLICY}).decode()
    if with_csl:
        assert "# consecutiveSuccessLimit: 1" in RECIPE.read_text()
        metrics["bake-verdict"]["consecutiveSuccessLimit"] = 1
    return t


def test_rollout_promotes_healthy_aborts_regressed_pauses_undecided(bakemon: Bakemon) -> None:
    """The analysis step creates each bake and polls it: the healthy canary's run is
    Successful, the regressed one's Failed, and the undecided one's Inconclusive (the rollout
    pauses; it is not promoted), on Argo before 1.8 and on 1.8 with consecutiveSuccessLimit."""
    # Two controllers (Argo before 1.8, and 1.8 with the optional line) play the same three
    # rollouts: the create call is idempotent, so they share each bake.
    variants = {"pre18": False, "csl": True}
    results: dict[tuple[str, str], tuple[str, dict[str, MetricRun]]] = {}
    threads = []
    for tag, with_csl in variants.items():
        template = _as_played(_template(), with_csl)
        for canary in CANARIES:

            def play(c: Canary = canary, t: dict[str, Any] = template, v: str = tag) -> None:
                results[v, c.kind] = run_analysis(bakemon, t, _args(c, bakemon))

            threads.append(threading.Thread(target=play))
    for t in threads:
        t.start()
    time.sleep(PACE_S)  # the first verdict measurements see PENDING: no traffic yet
    bakemon.produce(CANARIES)
    for t in threads:
        t.join(120)
    for tag in variants:
        phase = {k: results[tag, k][0] for k in ("healthy", "regressed", "undecided")}
        assert phase == {
            "healthy": "Successful",
            "regressed": "Failed",
            "undecided": "Inconclusive",
        }, (tag, phase)
        healthy, regressed, undecided = (
            results[tag, k][1]["bake-verdict"] for k in ("healthy", "regressed", "undecided")
        )
        assert healthy.values[0] == "PENDING" and healthy.values[-1] == "PROMOTE", (
            healthy.values,
            bakemon.document(healthy.spec["provider"]["web"]["url"].rsplit("/", 1)[1]),
        )
        assert regressed.values[0] == "PENDING" and regressed.values[-1] == "HALT"
        assert set(undecided.values) == {"PENDING"}
        assert undecided.count == int(undecided.spec["count"])
        # before 1.8 a PROMOTE waits for the whole count; with the limit it ends the run at once
        if variants[tag]:
            assert healthy.values.count("PROMOTE") == 1
        else:
            assert healthy.count == int(healthy.spec["count"])
        for kind in ("healthy", "regressed", "undecided"):
            created = results[tag, kind][1]["create-bake"]
            assert created.phase == "Successful" and len(created.values) == 1
    # one bake per rollout, named by the canary's pod-template-hash, with the recipe's cohorts
    for c in CANARIES:
        doc = bakemon.document(c.canary)
        assert (doc["service"], doc["id"]) == (c.service, c.canary)


def test_create_is_idempotent_and_errors_are_not_successes(bakemon: Bakemon) -> None:
    """Argo retrying the create call gets 200 (no second bake); a verdict metric pointed at a
    bake that does not exist errors until consecutiveErrorLimit fails the run."""
    template = _as_played(_template(), False)
    c = Canary("retry", "4f5e6d7c8", "3a2b1c0d9", "undecided")
    first, _ = run_analysis(
        bakemon,
        {**template, "spec": {**template["spec"], "metrics": [template["spec"]["metrics"][0]]}},
        _args(c, bakemon),
    )
    again, runs = run_analysis(
        bakemon,
        {**template, "spec": {**template["spec"], "metrics": [template["spec"]["metrics"][0]]}},
        _args(c, bakemon),
    )
    assert first == again == "Successful" and runs["create-bake"].values == [c.canary]
    only_poll = {
        **template,
        "spec": {**template["spec"], "metrics": [template["spec"]["metrics"][1]]},
    }
    phase, runs = run_analysis(
        bakemon, only_poll, _args(Canary("x", "deadbeef1", "b", "undecided"), bakemon)
    )
    poll = runs["bake-verdict"]
    assert phase == "Error" and poll.count == 0 and set(poll.values) == {404}
