"""The Flagger recipe against a bakemon with ``api_token``: Flagger cannot set headers, so the
token rides in each webhook URL's user info (``http://flagger:<token>@host/…``), which Go's
net/http sends as Basic credentials; bakemon takes the token as the Basic password."""

from __future__ import annotations

from typing import Any

import orjson
from _rollout import RECIPE_HOST, Bakemon
from test_flagger import FlaggerRollout, _as_played

API_TOKEN = "flagger-webhook-token-0123456789"


def _with_token(spec: dict[str, Any], token: str | None) -> dict[str, Any]:
    """The recipe's spec with ``token`` in every webhook URL, as the recipe's comment says."""
    for hook in spec["analysis"]["webhooks"]:
        if token is not None:
            hook["url"] = hook["url"].replace("http://", f"http://flagger:{token}@", 1)
        host = hook["url"].removeprefix("http://").rpartition("@")[2]
        assert f"http://{host}".startswith(RECIPE_HOST), hook["url"]
    return spec


def test_token_in_the_webhook_urls_creates_and_gates_the_bake(bakemon: Bakemon) -> None:
    """With the token in the URLs: the bake is created and the gates hold it while PENDING."""
    rollout = FlaggerRollout(_with_token(_as_played(), API_TOKEN), "cart", "shop", "c0ffee1234")
    while rollout.phase == "Progressing" and len(rollout.calls) < 20:
        rollout.iterate(bakemon)
    assert rollout.calls[:2] == [("rollback", 404), ("pre-rollout", 201)], rollout.calls
    assert rollout.phase == "WaitingPromotion" and rollout.calls[-1] == ("confirm-promotion", 409)
    assert rollout.failed_checks == 0
    assert bakemon.document("shop-cart-c0ffee1234")["status"] == "PENDING"


def test_without_the_token_the_rollout_fails_with_the_reason(bakemon: Bakemon) -> None:
    """The recipe as shipped against a bakemon with a token: every pre-rollout call is a 401,
    a failed check each, and at ``threshold`` Flagger rolls back; the reason is in its events."""
    rollout = FlaggerRollout(_with_token(_as_played(), None), "pay", "shop", "0badc0de99")
    wrong = FlaggerRollout(_with_token(_as_played(), "not-the-token"), "pay", "shop", "0badc0de99")
    wrong.iterate(bakemon)
    assert wrong.calls[-1] == ("pre-rollout", 403), wrong.calls
    for _ in range(10):
        if rollout.phase == "Failed":
            break
        rollout.iterate(bakemon)
    assert rollout.phase == "Failed" and rollout.failed_checks == 5, rollout
    assert {c for c in rollout.calls if c[0] == "pre-rollout"} == {("pre-rollout", 401)}
    assert b"missing bearer token" in rollout.bodies[-1]
    assert orjson.loads(rollout.bodies[-1])["status"] == 401
