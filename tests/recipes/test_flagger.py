"""The Flagger recipe, played as Flagger's scheduler calls its webhooks (pkg/controller).

Each analysis interval: the ``rollback`` hooks first (a 2xx rolls back), then on the first
iteration the ``pre-rollout`` hooks (above 202: a failed check, retried next interval; at
``threshold`` failed checks Flagger rolls back), then the weight steps up by ``stepWeight``;
at ``maxWeight`` the ``confirm-promotion`` hooks (2xx promotes; otherwise WaitingPromotion,
no failed check). Every call is a POST of {name, namespace, phase, checksum, metadata}.
"""

from __future__ import annotations

import base64
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import orjson
import yaml
from _rollout import PIPELINES, POLICY, Bakemon, Canary, local

API_TOKEN = None  # the recipe as shipped: a bakemon without api_token (test_flagger_token.py: with)
RECIPE = PIPELINES / "flagger-canary.yaml"
PACE_S = 0.5  # one analysis interval (1m) as the test plays it
MIN_ITERATIONS = 10  # the undecided rollout runs at least this long after the others end
MAX_ITERATIONS = 120
CANARIES = (
    Canary("cart", "cart", "cart-primary", "healthy"),
    Canary("pay", "pay", "pay-primary", "regressed"),
    Canary("search", "search", "search-primary", "undecided"),
)


def go_request(url: str) -> tuple[str, dict[str, str]]:
    """What Go's net/http (Flagger's retryablehttp client) does with a URL's user info: it is not
    sent in the request line but as ``Authorization: Basic base64(user:password)``."""
    parts = urlsplit(url)
    if parts.username is None:
        return url, {}
    creds = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
    bare = urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
    return bare, {"Authorization": "Basic " + base64.b64encode(creds).decode()}


def _canary() -> dict[str, Any]:
    docs = [d for d in yaml.safe_load_all(RECIPE.read_text()) if d]
    assert [d["kind"] for d in docs] == ["Canary"]
    canary: dict[str, Any] = docs[0]
    return canary


@dataclass
class FlaggerRollout:
    """One Canary's rollout as Flagger's scheduler advances it."""

    spec: dict[str, Any]
    name: str
    namespace: str
    checksum: str
    phase: str = "Progressing"
    weight: int = 0
    failed_checks: int = 0
    calls: list[tuple[str, int]] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)

    def _hooks(self, kind: str) -> list[dict[str, Any]]:
        return [w for w in self.spec["analysis"]["webhooks"] if w["type"] == kind]

    def _call(self, bakemon: Bakemon, hook: dict[str, Any], phase: str) -> bool:
        payload = {
            "name": self.name,
            "namespace": self.namespace,
            "phase": phase,
            "checksum": self.checksum,
        }
        if hook.get("metadata"):
            payload["metadata"] = hook["metadata"]
        url, headers = go_request(hook["url"])
        status, body = bakemon.request(
            "POST",
            local(url, bakemon),
            orjson.dumps(payload),
            {"Content-Type": "application/json", **headers},
            timeout_s=float(hook.get("timeout", "10s").rstrip("s")),
        )
        self.calls.append((hook["type"], status))
        self.bodies.append(body)
        return status <= 202  # callWebhook: "if r.StatusCode > 202 { return error }"

    def iterate(self, bakemon: Bakemon) -> None:
        analysis = self.spec["analysis"]
        if self.phase in ("Progressing", "Waiting", "WaitingPromotion") and any(
            self._call(bakemon, h, self.phase) for h in self._hooks("rollback")
        ):
            self.phase = "Failed"  # rolled back
            return
        pre = self._hooks("pre-rollout")
        if self.weight == 0 and not all(self._call(bakemon, h, "Progressing") for h in pre):
            self.failed_checks += 1
            if self.failed_checks >= int(analysis["threshold"]):
                self.phase = "Failed"
            return
        if self.weight < int(analysis["maxWeight"]):
            self.weight += int(analysis["stepWeight"])
            return
        if all(self._call(bakemon, h, "Progressing") for h in self._hooks("confirm-promotion")):
            self.phase = "Succeeded"  # promoted
        else:
            self.phase = "WaitingPromotion"

    def play(self, bakemon: Bakemon, until: threading.Event) -> None:
        """Intervals until the rollout ends, or ``MIN_ITERATIONS`` and ``until`` are reached."""
        for i in range(MAX_ITERATIONS):
            if self.phase in ("Succeeded", "Failed") or (i >= MIN_ITERATIONS and until.is_set()):
                return
            self.iterate(bakemon)
            time.sleep(PACE_S)


def _as_played() -> dict[str, Any]:
    """The recipe's Canary spec with the test's policy in the pre-rollout hook's metadata."""
    spec: dict[str, Any] = _canary()["spec"]
    for hook in spec["analysis"]["webhooks"]:
        if hook["type"] == "pre-rollout":
            hook["metadata"] = {**hook.get("metadata", {}), "policy": orjson.dumps(POLICY).decode()}
    return spec


def test_recipe_names_no_bake() -> None:
    """No webhook carries a fixed bake: Flagger's own payload chooses it, per rollout."""
    hooks = _canary()["spec"]["analysis"]["webhooks"]
    assert {h["type"] for h in hooks} == {"pre-rollout", "rollback", "confirm-promotion"}
    for hook in hooks:
        assert "bake" not in (hook.get("metadata") or {}), hook


def test_rollout_promotes_healthy_rolls_back_regressed_holds_undecided(bakemon: Bakemon) -> None:
    """Healthy: promoted; regressed: rolled back by the rollback hook; undecided: waits in
    WaitingPromotion, never promoted; each rollout got its own bake <ns>-<name>-<checksum>; and the
    next revision after the HALT is not judged by the HALTed bake."""
    rollouts = {
        c.kind: FlaggerRollout(_as_played(), c.service, "shop", f"{c.service}0123456789abcdef")
        for c in CANARIES
    }
    # the pre-rollout hook must come first: the first interval creates the bakes
    for r in rollouts.values():
        r.iterate(bakemon)
        assert r.calls == [("rollback", 404), ("pre-rollout", 201)], r.calls
    decided, never = threading.Event(), threading.Event()
    threads = {
        k: threading.Thread(target=r.play, args=(bakemon, decided if k == "undecided" else never))
        for k, r in rollouts.items()
    }
    for t in threads.values():
        t.start()
    bakemon.produce(CANARIES)
    for k in ("healthy", "regressed"):
        threads[k].join(120)
    decided.set()
    threads["undecided"].join(120)
    phases = {k: r.phase for k, r in rollouts.items()}
    assert phases == {
        "healthy": "Succeeded",
        "regressed": "Failed",
        "undecided": "WaitingPromotion",
    }, phases
    healthy, regressed, undecided = (rollouts[k] for k in ("healthy", "regressed", "undecided"))
    assert healthy.calls[-1] == ("confirm-promotion", 200)
    assert ("confirm-promotion", 409) in healthy.calls or healthy.calls.count(
        ("confirm-promotion", 200)
    ) == 1
    assert (
        regressed.calls[-1] == ("rollback", 200)
        and ("confirm-promotion", 200) not in regressed.calls
    )
    assert undecided.calls.count(("confirm-promotion", 409)) >= 1
    assert {s for _, s in undecided.calls[2:]} == {409}  # held: never 200, never retried codes
    assert undecided.failed_checks == 0
    for c in CANARIES:
        checksum = rollouts[c.kind].checksum
        doc = bakemon.document(f"shop-{c.service}-{checksum[:10]}")
        assert (doc["service"], doc["status"]) == (
            c.service,
            {"healthy": "PROMOTE", "regressed": "HALT", "undecided": "PENDING"}[c.kind],
        )
    # After the HALTed rollout, the next revision's first interval does not roll it back (in
    # this test, not a separate one: it needs this module's HALTed bake, and xdist may run a
    # module's tests on different workers, each with its own bakemon).
    wait_for_halt = FlaggerRollout(_as_played(), "pay", "shop", "pay0123456789abcdef")
    assert bakemon.document("shop-pay-pay0123456")["status"] == "HALT"
    nxt = FlaggerRollout(_as_played(), "pay", "shop", "fedcba9876543210")
    nxt.iterate(bakemon)
    assert nxt.phase == "Progressing" and nxt.calls[-1] == ("pre-rollout", 201), nxt.calls
    del wait_for_halt
