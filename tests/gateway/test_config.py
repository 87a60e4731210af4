"""The rendered Envoy bootstrap: Envoy itself validates every variant; the settings refuse
inconsistent switches; the routes follow the descriptor set."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml
from pydantic import ValidationError

from speechmesh.gateway.config import GatewaySettings
from speechmesh.gateway.envoy_config import render_config, render_yaml
from speechmesh.gateway.envoy_process import validate_config, write_config


def _validate(tmp_path, settings: GatewaySettings) -> dict:
    path = write_config(settings, tmp_path / "envoy.yaml")
    ok, output = validate_config(settings, path)
    assert ok, output
    return yaml.safe_load(path.read_text())


def _filters(config: dict) -> list[str]:
    manager = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
    return [f["name"] for f in manager["typed_config"]["http_filters"]]


def _routes(config: dict) -> list[dict]:
    manager = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
    return manager["typed_config"]["route_config"]["virtual_hosts"][0]["routes"]


def test_default_config_validates(tmp_path):
    config = _validate(tmp_path, GatewaySettings())
    listener = config["static_resources"]["listeners"][0]
    assert listener["address"]["socket_address"] == {"address": "0.0.0.0", "port_value": 8080}
    assert config["admin"]["address"]["socket_address"] == {
        "address": "127.0.0.1",
        "port_value": 9901,
    }
    assert _filters(config) == [
        "speechmesh.strip_identity",
        "envoy.filters.http.cors",
        "envoy.filters.http.grpc_json_transcoder",
        "envoy.filters.http.router",
    ]
    clusters = {c["name"]: c for c in config["static_resources"]["clusters"]}
    # (and one per realtime WebSocket port: tests/gateway/test_realtime_gateway.py)
    assert set(clusters) == {"asr", "translate", "tts", "asr_realtime", "tts_realtime"}
    for name, port in (("asr", 50051), ("translate", 50052), ("tts", 50053)):
        cluster = clusters[name]
        endpoint = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
        assert endpoint["address"]["socket_address"]["port_value"] == port
        options = cluster["typed_extension_protocol_options"]
        assert "http2_protocol_options" in next(iter(options.values()))["explicit_http_config"]
        check = cluster["health_checks"][0]["grpc_health_check"]["service_name"]
        assert check.startswith(f"speechmesh.{name}.v1.")
        assert "outlier_detection" in cluster


def test_streams_have_no_timeout_and_no_retries_unary_calls_retry_on_unavailable():
    routes = {r["name"]: r for r in _routes(render_config(GatewaySettings()))}
    stream = routes["asr.StreamingRecognize"]
    assert stream["match"]["path"] == "/speechmesh.asr.v1.AsrService/StreamingRecognize"
    assert stream["route"]["timeout"] == "0s"
    assert "retry_policy" not in stream["route"]
    unary = routes["asr.unary"]
    assert unary["match"]["prefix"] == "/speechmesh.asr.v1."
    assert "unavailable" in unary["route"]["retry_policy"]["retry_on"].split(",")
    assert "5xx" not in unary["route"]["retry_policy"]["retry_on"]
    assert "translate.StreamingTranslateSpeech" in routes
    assert routes["grpc_not_found"]["direct_response"]["status"] == 404


def test_inside_a_mesh_upstreams_get_their_authority_and_no_outlier_detection(tmp_path):
    meshed = GatewaySettings(upstream_host_rewrite=True, outlier_detection=False)
    config = _validate(tmp_path, meshed)
    upstream = {"asr", "translate", "tts", "asr_realtime", "tts_realtime"}
    actions = [r["route"] for r in _routes(config) if r.get("route", {}).get("cluster") in upstream]
    assert actions and all(a.get("auto_host_rewrite") is True for a in actions)
    clusters = config["static_resources"]["clusters"]
    assert not any("outlier_detection" in c for c in clusters)
    # by default neither: the client's authority, and the gateway ejects failing hosts
    plain = render_config(GatewaySettings())
    assert not any("auto_host_rewrite" in r.get("route", {}) for r in _routes(plain))


def test_transcoder_options():
    manager = render_config(GatewaySettings(max_request_bytes=5 << 20))["static_resources"][
        "listeners"
    ][0]["filter_chains"][0]["filters"][0]["typed_config"]
    transcoder = next(
        f for f in manager["http_filters"] if f["name"].endswith("grpc_json_transcoder")
    )["typed_config"]
    assert transcoder["print_options"]["preserve_proto_field_names"] is True
    assert transcoder["print_options"]["always_print_primitive_fields"] is True
    assert transcoder["print_options"]["stream_sse_style_delimited"] is True
    assert transcoder["convert_grpc_status"] is True
    assert transcoder["auto_mapping"] is False
    assert transcoder["max_request_body_size"] == 5 << 20
    assert {
        "speechmesh.asr.v1.AsrService",
        "speechmesh.translate.v1.TranslateService",
        "speechmesh.tts.v1.TtsService",
    } <= set(transcoder["services"])


def test_api_key_rate_limit_and_cors_config_validates(tmp_path, credentials):
    settings = GatewaySettings(
        auth="api_key",
        api_keys_file=credentials["api_keys"],
        rate_limit_requests=10,
        cors_allowed_origins="https://app.example, http://localhost:3000",
    )
    config = _validate(tmp_path, settings)
    assert "envoy.filters.http.api_key_auth" in _filters(config)
    assert "envoy.filters.http.local_ratelimit" in _filters(config)
    assert settings.cors_allowed_origins == ["https://app.example", "http://localhost:3000"]
    assert settings.api_keys() == [("alice", "alice-key-0001"), ("bob", "bob-key-0002")]


def test_jwt_config_validates(tmp_path, credentials):
    settings = GatewaySettings(
        auth="jwt",
        jwks_file=credentials["jwks"],
        jwt_issuer="https://issuer.example",
        jwt_audiences='["a", "b"]',
        cors_allowed_origins="*",
    )
    config = _validate(tmp_path, settings)
    assert "envoy.filters.http.jwt_authn" in _filters(config)
    assert settings.jwt_audiences == ["a", "b"]


def test_tls_config_validates(tmp_path, credentials):
    if "cert" not in credentials:
        pytest.skip("openssl could not make a certificate")
    settings = GatewaySettings(tls_cert_file=credentials["cert"], tls_key_file=credentials["key"])
    config = _validate(tmp_path, settings)
    chain = config["static_resources"]["listeners"][0]["filter_chains"][0]
    alpn = chain["transport_socket"]["typed_config"]["common_tls_context"]["alpn_protocols"]
    assert alpn == ["h2", "http/1.1"]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"auth": "api_key"}, "api_keys_file"),
        ({"auth": "jwt"}, "jwks_file"),
        ({"auth": "basic"}, "auth"),
        ({"asr_upstream": "localhost"}, "host:port"),
        ({"tls_cert_file": "/etc/hostname"}, "both"),
        ({"max_request_bytes": 10}, "max_request_bytes"),
    ],
)
def test_inconsistent_settings_are_refused(overrides, message):
    with pytest.raises(ValidationError, match=message):
        GatewaySettings(**overrides)


def test_settings_from_environment(monkeypatch):
    monkeypatch.setenv("SPEECHMESH_GATEWAY_PORT", "9000")
    monkeypatch.setenv("SPEECHMESH_GATEWAY_ASR_UPSTREAM", "asr.internal:7000")
    monkeypatch.setenv("SPEECHMESH_GATEWAY_CORS_ALLOWED_ORIGINS", "*")
    settings = GatewaySettings()
    assert settings.port == 9000
    assert settings.upstreams()["asr"] == ("asr.internal", 7000)
    assert settings.cors_allowed_origins == ["*"]


def test_missing_descriptor_set_says_what_to_run(tmp_path):
    with pytest.raises(FileNotFoundError, match="make protos"):
        render_yaml(GatewaySettings(descriptor_set=tmp_path / "none.pb"))


def test_cli_writes_and_checks_the_config(tmp_path):
    out = tmp_path / "gateway.yaml"
    result = subprocess.run(
        [sys.executable, "-m", "speechmesh.cli", "gateway", "config", "--out", str(out), "--check"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "envoy --mode validate: OK" in result.stderr
    assert yaml.safe_load(out.read_text())["static_resources"]["listeners"]


# Imports the custom options of google.api (field_behavior, resource, http) as generated code
# does, then prints the bootstrap.
_RENDER_AFTER_IMPORTS = """
import importlib, sys
from speechmesh.gateway.config import GatewaySettings
from speechmesh.gateway.envoy_config import render_yaml
for name in sys.argv[1:]:
    importlib.import_module(name)
sys.stdout.write(render_yaml(GatewaySettings()))
"""


def test_rendering_does_not_depend_on_what_the_process_imported():
    """The descriptor set is serialized the same way whether or not the process has imported the
    modules that define its custom options (the services' generated code does; the container's
    renderer does not), so a rendered file is reproducible anywhere."""
    outputs = set()
    for modules in (
        [],
        ["google.api.resource_pb2"],
        ["speechmesh.tts.v1.tts_pb2", "speechmesh.asr.v1.asr_pb2"],
    ):
        done = subprocess.run(
            [sys.executable, "-c", _RENDER_AFTER_IMPORTS, *modules],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        outputs.add(done.stdout)
    assert len(outputs) == 1
