"""The GitHub Actions recipe, played as a runner runs the job: each ``run`` step is its script
in ``bash --noprofile --norc -eo pipefail`` (GitHub's ``shell: bash``), with the step's ``env``
(expressions evaluated from the contexts) and ``$GITHUB_OUTPUT``; a non-zero exit fails the step
and skips the later ones. The real ``curl`` and ``jq`` talk to the test server; ``bakemon`` is
this checkout's (what the install step puts on PATH)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from _rollout import PIPELINES, POLICY, Bakemon, Canary

API_TOKEN = "actions-token-0123456789"
RECIPE = PIPELINES / "github-actions.yaml"
# The wait step's --timeout 30m as the test plays it: the waits start before the traffic, and on a
# loaded 2-core CI run the healthy bake took longer than 15 s to decide (a false "timed out").
WAIT_TIMEOUT = "40s"
CANARIES = (
    Canary("checkout", "a1b2c3d4e5f6a7b8c9d0a1b2c3d4e5f6a7b8c9d0", "v41", "healthy"),
    Canary("checkout-pay", "b2c3d4e5f6a7b8c9d0a1b2c3d4e5f6a7b8c9d0a1", "v9", "regressed"),
    Canary("checkout-search", "c3d4e5f6a7b8c9d0a1b2c3d4e5f6a7b8c9d0a1b2", "v3", "undecided"),
)
pytestmark = pytest.mark.skipif(
    not (shutil.which("curl") and shutil.which("jq")), reason="the recipe's steps need curl and jq"
)


def _job() -> dict[str, Any]:
    wf = yaml.safe_load(RECIPE.read_text())
    (job,) = wf["jobs"].values()
    assert isinstance(job, dict)
    return job


def _expr(text: str, ctx: dict[str, str]) -> str:
    def one(m: re.Match[str]) -> str:
        assert m.group(1) in ctx, f"expression not understood by the test: {m.group(0)}"
        return ctx[m.group(1)]

    return re.sub(r"\$\{\{\s*([A-Za-z_.]+)\s*\}\}", one, str(text))


def test_token_only_where_needed_and_no_pypi_name() -> None:
    """secrets.* appear only in the create step's env; the client comes from a pinned commit of
    bakemon's repository, never from the PyPI name; no expression inside a script."""
    wf = yaml.safe_load(RECIPE.read_text())
    job = _job()
    assert "secrets." not in orjson.dumps(wf.get("env", {})).decode()
    assert "secrets." not in orjson.dumps(job.get("env", {})).decode()
    with_secret = [s["name"] for s in job["steps"] if "secrets." in orjson.dumps(s).decode()]
    assert with_secret == ["create the bake (one per run and attempt)"]
    for step in job["steps"]:
        assert "${{" not in step.get("run", ""), step["name"]  # no script injection
        assert not re.search(r"pip(x)? install\s+[\"']?bakemon\b", step.get("run", ""))
    install = job["steps"][0]["run"]
    assert "git+https://github.com/" in install and "@${BAKEMON_COMMIT}" in install


def _run(step: dict[str, Any], ctx: dict[str, str], tmp: Path, bakemon: Bakemon) -> Any:
    out = tmp / f"output-{len(list(tmp.iterdir()))}"
    out.write_text("")
    script = step["run"].replace("--timeout 30m", f"--timeout {WAIT_TIMEOUT}")
    env = {
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "HOME": str(tmp),
        "GITHUB_OUTPUT": str(out),
        "BAKEMON_URL": bakemon.url,  # the job's env: ${{ vars.BAKEMON_URL }}
        **{k: _expr(v, ctx) for k, v in step.get("env", {}).items()},
    }
    proc = subprocess.Popen(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    return proc, out


def test_job_promotes_healthy_only(bakemon: Bakemon, tmp_path: Path) -> None:
    """create → wait → promote: the healthy commit reaches the promote step; HALT fails the wait
    step (exit 1); still PENDING at the timeout fails it too (exit 5): no promote."""
    job = _job()
    steps = {s["name"]: s for s in job["steps"]}
    create = steps["create the bake (one per run and attempt)"]
    wait, promote = steps["wait for the verdict"], steps["promote"]
    assert list(steps).index("promote") > list(steps).index("wait for the verdict")
    waits = {}
    for i, c in enumerate(CANARIES):
        ctx = {
            "secrets.BAKEMON_API_TOKEN": API_TOKEN,
            "github.sha": c.canary,
            "inputs.baseline": c.baseline,
            "github.run_id": "4242",
            "github.run_attempt": str(i + 1),
        }
        step = {**create, "env": {**create["env"], "SERVICE": c.service}}
        # the test's policy: the recipe's jq body plus "policy"
        step["run"] = step["run"].replace(
            "'{id: $id, service: $s, canary: $c, baseline: $b}'",
            "'{id: $id, service: $s, canary: $c, baseline: $b, policy: "
            + orjson.dumps(POLICY).decode()
            + "}'",
        )
        assert step["run"] != create["run"]
        proc, out = _run(step, ctx, tmp_path, bakemon)
        assert proc.wait(30) == 0, proc.communicate()
        (line,) = out.read_text().splitlines()
        bake_id = line.removeprefix("id=")
        assert bake_id == f"{c.service}-{c.canary[:12]}-4242-{i + 1}"
        ctx["steps.bake.outputs.id"] = bake_id
        waits[c.kind] = (_run(wait, ctx, tmp_path, bakemon)[0], ctx)
    bakemon.produce(CANARIES)
    codes = {k: p.wait(90) for k, (p, _) in waits.items()}
    assert codes == {"healthy": 0, "regressed": 1, "undecided": 5}, {
        k: p.communicate() for k, (p, _) in waits.items()
    }
    healthy_out = waits["healthy"][0].communicate()[0].decode()
    assert healthy_out.strip() == "PROMOTE"
    proc, _ = _run(promote, waits["healthy"][1], tmp_path, bakemon)
    assert proc.wait(10) == 0
    # the runner runs promote only after a successful wait: here, only for the healthy commit
