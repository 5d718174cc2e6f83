"""deploy/ passes each real validator installed here; a missing one skips with a notice."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
from _validators import VALIDATORS, Missing


@pytest.mark.parametrize("name", list(VALIDATORS))
def test_deploy_files_pass(name: str) -> None:
    """The validator accepts every file it checks (kubernetes-validate, CRD schemas, promtool,
    actionlint, hadolint)."""
    try:
        ok, out = VALIDATORS[name]()
    except Missing as exc:
        pytest.skip(f"{name} is not installed ({exc}): make check-deploy installs what it can")
    assert ok, out


def test_argo_before_1_8_rejects_consecutive_success_limit() -> None:
    """Why the recipe leaves consecutiveSuccessLimit commented: Argo 1.7's CRD has no such
    field (strict validation rejects it), 1.9's accepts it."""
    import orjson
    import yaml
    from _validators import CRD_RECIPES, SCHEMAS, _strict
    from jsonschema import Draft7Validator

    (doc,) = [d for d in yaml.safe_load_all(CRD_RECIPES["AnalysisTemplate"].read_text()) if d]
    doc["spec"]["metrics"][1]["consecutiveSuccessLimit"] = 1
    errors = {}
    for version in ("v1.7.2", "v1.9.1"):
        crd = orjson.loads((SCHEMAS / f"argo-analysistemplate-{version}.json").read_bytes())
        errors[version] = [
            e.message for e in Draft7Validator(_strict(crd["schema"])).iter_errors(doc)
        ]
    assert errors["v1.9.1"] == []
    assert any("consecutiveSuccessLimit" in m for m in errors["v1.7.2"]), errors


def test_compose_check_finds_what_compose_would_reject(tmp_path: Path) -> None:
    """The compose check fails on a misspelt key, a health dependency without a healthcheck, an
    unknown BAKEMON_ setting and a port bakemon does not listen on, and passes the shipped file."""
    import yaml
    from _validators import DEPLOY, compose

    assert compose()[0], compose()[1]
    shipped = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    breakages = {
        "depend_on": lambda d: d["services"]["bakemon"].update(depend_on=["kafka"]),
        "has no healthcheck": lambda d: d["services"]["kafka"].pop("healthcheck"),
        "BAKEMON_API_PROT": lambda d: d["services"]["bakemon"]["environment"].update(
            BAKEMON_API_PROT="9090"
        ),
        "publishes": lambda d: d["services"]["bakemon"].update(ports=["9999:9999"]),
    }
    for needle, breaks in breakages.items():
        doc = copy.deepcopy(shipped)
        breaks(doc)
        path = tmp_path / "compose.yaml"
        path.write_text(yaml.safe_dump(doc))
        ok, out = compose(path)
        assert not ok and needle.lower() in out.lower(), (needle, out)
