"""`python -m speechmesh.gateway.container`: the gateway's Envoy bootstrap for containers."""

from __future__ import annotations

import os
import sys

import pytest
import yaml

from speechmesh.gateway.container import (
    STATS_PATHS,
    STATS_PORT,
    container_settings,
    default_upstreams,
    render_container_config,
)
from tests.conftest import ROOT
from tests.deploy.conftest import run, tool


@pytest.fixture
def environ(descriptor_set, monkeypatch):
    for name in list(os.environ):
        if name.startswith("SPEECHMESH_GATEWAY_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("SPEECHMESH_GATEWAY_DESCRIPTOR_SET", str(descriptor_set))


def test_upstreams_default_to_service_names_and_the_environment_wins(environ, monkeypatch):
    settings = container_settings()
    assert settings.upstreams() == {
        "asr": ("asr", 50051),
        "translate": ("translate", 50052),
        "tts": ("tts", 50053),
    }
    assert default_upstreams()["asr_upstream"] == "asr:50051"
    monkeypatch.setenv("SPEECHMESH_GATEWAY_ASR_UPSTREAM", "asr.speech.svc:6000")
    assert container_settings().upstreams()["asr"] == ("asr.speech.svc", 6000)


def test_stats_listener_exposes_only_metrics_and_readiness(environ):
    config = render_container_config(container_settings())
    listeners = {lis["name"]: lis for lis in config["static_resources"]["listeners"]}
    stats = listeners["stats"]
    assert stats["address"]["socket_address"]["port_value"] == STATS_PORT
    manager = stats["filter_chains"][0]["filters"][0]["typed_config"]
    routes = manager["route_config"]["virtual_hosts"][0]["routes"]
    passed = {r["match"]["path"] for r in routes if "route" in r}
    assert passed == set(STATS_PATHS) == {"/stats/prometheus", "/ready"}
    assert routes[-1] == {"match": {"prefix": "/"}, "direct_response": {"status": 404}}
    # The admin interface itself stays on loopback.
    assert config["admin"]["address"]["socket_address"]["address"] == "127.0.0.1"
    clusters = {c["name"]: c for c in config["static_resources"]["clusters"]}
    for area in ("asr", "translate", "tts"):
        assert clusters[area]["type"] == "STRICT_DNS"
        assert clusters[area]["lb_policy"] == "LEAST_REQUEST"
        assert clusters[area]["health_checks"][0]["grpc_health_check"]


def test_stats_port_must_differ_from_the_others(environ):
    with pytest.raises(ValueError, match="stats port"):
        render_container_config(container_settings(), stats_port=8080)


def test_cli_writes_a_config_envoy_accepts(environ, tmp_path):
    out = tmp_path / "envoy.yaml"
    result = run(
        [sys.executable, "-m", "speechmesh.gateway.container", "--out", str(out)], cwd=ROOT
    )
    assert result.returncode == 0, result.stderr
    assert yaml.safe_load(out.read_text())["static_resources"]
    assert not (tmp_path / "envoy.yaml.partial").exists()
    validated = run([tool("envoy"), "--mode", "validate", "-c", str(out)])
    assert validated.returncode == 0, validated.stdout + validated.stderr


def test_cli_reports_a_bad_setting(environ, monkeypatch):
    monkeypatch.setenv("SPEECHMESH_GATEWAY_ASR_UPSTREAM", "no-port")
    result = run([sys.executable, "-m", "speechmesh.gateway.container"], cwd=ROOT)
    assert result.returncode == 2 and "asr_upstream" in result.stderr
