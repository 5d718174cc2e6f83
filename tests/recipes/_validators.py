"""The deploy/ validators: each tool where it is installed, else a notice (never a failure).

- kubernetes-validate --strict: the built-in kinds of deploy/kubernetes/*.yaml;
- the Argo and Flagger CRD schemas (tests/recipes/schemas/, the openAPIV3Schema of the oldest
  and newest supported release, descriptions dropped), strictly (an unknown field fails, as
  ``kubectl apply`` rejects it): AnalysisTemplate and Canary recipes;
- promtool check rules: the PrometheusRule groups of deploy/kubernetes/*.yaml;
- actionlint: deploy/pipelines/github-actions.yaml;
- hadolint: deploy/Dockerfile;
- compose: deploy/compose.yaml against the Compose Specification's JSON schema
  (tests/recipes/schemas/compose/, from github.com/compose-spec/compose-spec, Apache-2.0), plus
  what the schema cannot see: a ``service_healthy`` dependency has a healthcheck, published ports
  are the ones bakemon listens on, and bakemon's environment loads as its settings.

``python tests/recipes/_validators.py`` (``make check-deploy``) runs them all and exits 1 if one
that ran failed.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
SCHEMAS = Path(__file__).resolve().parent / "schemas"
CRD_RECIPES = {
    "AnalysisTemplate": DEPLOY / "pipelines" / "argo-analysistemplate.yaml",
    "Canary": DEPLOY / "pipelines" / "flagger-canary.yaml",
}


class Missing(Exception):
    """The tool is not installed here."""


def _tool(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if not found:
        raise Missing(name)
    return found


def _run(cmd: list[str]) -> tuple[bool, str]:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    return proc.returncode == 0, (proc.stdout + proc.stderr).strip()


def kubernetes_validate() -> tuple[bool, str]:
    files = sorted(str(p) for p in (DEPLOY / "kubernetes").glob("*.yaml"))
    ok, out = _run([_tool("kubernetes-validate"), "--strict", "--quiet", *files])
    return ok and "ERROR" not in out, out or f"{len(files)} files passed"


def _strict(schema: Any) -> Any:
    """A CRD schema as the API server applies it with strict field validation."""
    if isinstance(schema, dict):
        out = {k: _strict(v) for k, v in schema.items()}
        if (
            "properties" in out
            and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")
        ):
            out["additionalProperties"] = False
        if out.get("x-kubernetes-int-or-string"):
            out.pop("type", None)
            out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
        return out
    if isinstance(schema, list):
        return [_strict(v) for v in schema]
    return schema


def crd_schemas() -> tuple[bool, str]:
    try:
        import jsonschema
        import yaml
    except ImportError as exc:
        raise Missing(str(exc.name)) from None
    lines, ok = [], True
    for path in sorted(SCHEMAS.glob("*.json")):
        crd = orjson.loads(path.read_bytes())
        recipe = CRD_RECIPES[crd["kind"]]
        docs = [d for d in yaml.safe_load_all(recipe.read_text()) if d]
        for doc in docs:
            assert doc["apiVersion"] == crd["apiVersion"], (doc["apiVersion"], crd["apiVersion"])
            errors = sorted(
                jsonschema.Draft7Validator(_strict(crd["schema"])).iter_errors(doc),
                key=lambda e: list(e.path),
            )
            ok &= not errors
            verdict = (
                "passed"
                if not errors
                else "FAILED: "
                + "; ".join(f"{'.'.join(map(str, e.path))}: {e.message}" for e in errors[:5])
            )
            lines.append(f"{recipe.name} against {path.stem}: {verdict}")
    return ok, "\n".join(lines)


def promtool_rules() -> tuple[bool, str]:
    promtool = _tool("promtool")
    import yaml

    lines, ok = [], True
    for path in sorted((DEPLOY / "kubernetes").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc or doc.get("kind") != "PrometheusRule":
                continue
            with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as fh:
                yaml.safe_dump({"groups": doc["spec"]["groups"]}, fh)
            try:
                passed, out = _run([promtool, "check", "rules", fh.name])
            finally:
                Path(fh.name).unlink()
            ok &= passed
            lines.append(f"{path.name} {doc['metadata']['name']}: {out}")
    return ok, "\n".join(lines)


def actionlint() -> tuple[bool, str]:
    ok, out = _run([_tool("actionlint"), str(DEPLOY / "pipelines" / "github-actions.yaml")])
    return ok, out or "github-actions.yaml passed"


def hadolint() -> tuple[bool, str]:
    ok, out = _run([_tool("hadolint"), str(DEPLOY / "Dockerfile")])
    return ok, out or "Dockerfile passed"


COMPOSE_SCHEMA = SCHEMAS / "compose" / "compose-spec.json"


def compose(path: Path = DEPLOY / "compose.yaml") -> tuple[bool, str]:
    try:
        import jsonschema
        import yaml
    except ImportError as exc:
        raise Missing(str(exc.name)) from None
    from monitor.config import ignored_env, load_settings

    doc = yaml.safe_load(path.read_text())
    schema = orjson.loads(COMPOSE_SCHEMA.read_bytes())
    problems = [
        f"{'.'.join(map(str, e.path)) or '(top)'}: {e.message}"
        for e in jsonschema.Draft7Validator(schema).iter_errors(doc)
    ]
    services = doc.get("services", {})
    for name, svc in services.items():
        for dep, cond in (svc.get("depends_on") or {}).items():
            if cond.get("condition") == "service_healthy" and "healthcheck" not in services[dep]:
                problems.append(f"{name} waits for {dep} to be healthy; {dep} has no healthcheck")
    bakemon = services["bakemon"]
    env = {str(k): str(v) for k, v in (bakemon.get("environment") or {}).items()}
    problems += ignored_env(env)
    try:
        settings = load_settings(env=env)
    except Exception as exc:
        problems.append(f"bakemon's environment does not load: {exc}")
    else:
        listening = {str(settings.api_port), str(settings.ops_port)}
        published = {str(p).rsplit(":", 1)[-1] for p in bakemon.get("ports", [])}
        if published - listening:
            problems.append(
                f"bakemon publishes {sorted(published)}, listens on {sorted(listening)}"
            )
    if problems:
        return False, f"{path.name} FAILED: " + "; ".join(problems[:8])
    return True, f"{path.name} passed ({len(services)} services, {COMPOSE_SCHEMA.name})"


VALIDATORS: dict[str, Callable[[], tuple[bool, str]]] = {
    "kubernetes-validate": kubernetes_validate,
    "crd-schemas": crd_schemas,
    "promtool": promtool_rules,
    "actionlint": actionlint,
    "hadolint": hadolint,
    "compose": compose,
}


def main() -> int:
    failed = False
    for name, check in VALIDATORS.items():
        try:
            ok, out = check()
        except Missing as exc:
            print(f"== {name}: SKIPPED, not installed ({exc})")
            continue
        failed |= not ok
        print(f"== {name}: {'ok' if ok else 'FAILED'}\n{out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
