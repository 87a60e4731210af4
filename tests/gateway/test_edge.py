"""Security at the edge, through the real Envoy: API keys, JWT, the identity header Envoy sets
(and strips from clients), CORS, TLS. The upstream is a fake ASR that answers ListModels with
the identity it was given, so these tests need no model."""

from __future__ import annotations

import http.client
import ssl
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from speechmesh.asr.v1 import asr_pb2, asr_pb2_grpc
from tests.gateway.conftest import JWT_AUDIENCE, JWT_ISSUER, make_jwt, run_envoy
from tests.servers import ASR_SERVICE, free_port


@pytest.fixture(scope="module")
def upstreams(echo_upstream) -> dict:
    # translate and tts point at closed ports: only the fake ASR is up.
    return {
        "asr_upstream": f"127.0.0.1:{echo_upstream.port}",
        "translate_upstream": f"127.0.0.1:{free_port()}",
        "tts_upstream": f"127.0.0.1:{free_port()}",
    }


def edge(tmp_path_factory, name: str, upstreams: dict, **settings):
    """An Envoy with `settings` in front of the fake ASR, in a folder named `name`."""
    with run_envoy(tmp_path_factory.mktemp(name), ["asr"], **settings, **upstreams) as started:
        yield started[0]


@pytest.fixture(scope="module")
def api_key_gateway(tmp_path_factory, credentials, upstreams):
    keys = credentials["api_keys"]
    yield from edge(tmp_path_factory, "api-key", upstreams, auth="api_key", api_keys_file=keys)


@pytest.fixture(scope="module")
def jwt_gateway(tmp_path_factory, credentials, upstreams):
    yield from edge(
        tmp_path_factory,
        "jwt",
        upstreams,
        auth="jwt",
        jwks_file=credentials["jwks"],
        jwt_issuer=JWT_ISSUER,
        jwt_audiences=JWT_AUDIENCE,
        cors_allowed_origins="https://app.example",
    )


def _identity(reply) -> str:
    assert reply.status == 200, reply.body
    return reply.json()["request_id"]


def test_open_gateway_strips_a_client_supplied_identity(tmp_path, upstreams):
    with run_envoy(tmp_path, ["asr"], **upstreams) as (gateway, _):
        reply = gateway.get("/v1/asr/models", x_speechmesh_identity="mallory")
        assert _identity(reply) == ""


def test_api_key_missing_or_wrong_is_401(api_key_gateway):
    for headers in ({}, {"x_api_key": "not-a-key"}, {"authorization": "Bearer not-a-key"}):
        reply = api_key_gateway.get("/v1/asr/models", **headers)
        assert reply.status == 401, headers
        assert reply.json()["code"] == 16


def test_api_key_identity_reaches_the_service(api_key_gateway, echo_upstream):
    assert _identity(api_key_gateway.get("/v1/asr/models", x_api_key="alice-key-0001")) == "alice"
    # `Authorization: Bearer KEY`, as OpenAI clients send it, works too.
    bearer = api_key_gateway.get("/v1/asr/models", authorization="Bearer bob-key-0002")
    assert _identity(bearer) == "bob"
    # A client cannot claim another identity, and the key itself does not travel upstream.
    forged = api_key_gateway.get(
        "/v1/asr/models", x_api_key="alice-key-0001", x_speechmesh_identity="bob"
    )
    assert _identity(forged) == "alice"
    last = echo_upstream.calls[-1]
    assert "x-api-key" not in last and "authorization" not in last


def test_api_key_over_grpc(api_key_gateway):
    with grpc.insecure_channel(api_key_gateway.target) as channel:
        asr = asr_pb2_grpc.AsrServiceStub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            asr.ListModels(asr_pb2.ListModelsRequest(), timeout=10)
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
        reply = asr.ListModels(
            asr_pb2.ListModelsRequest(), metadata=[("x-api-key", "bob-key-0002")], timeout=10
        )
        assert reply.request_id == "bob"
        # Health checks need no credentials (probes and `speechmesh up` use them).
        health = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=ASR_SERVICE), timeout=10
        )
        assert health.status == health_pb2.HealthCheckResponse.SERVING


def test_jwt_missing_or_invalid_is_401(jwt_gateway):
    now = int(time.time())
    good = {"sub": "carol", "iss": JWT_ISSUER, "aud": JWT_AUDIENCE, "exp": now + 600}
    for token, status in (
        (None, 401),
        (make_jwt({**good, "iss": "https://someone.else"}), 401),
        (make_jwt({**good, "exp": now - 600}), 401),
        (make_jwt(good, secret=b"a-different-secret-0123456789abcdef"), 401),
        # A valid token for another audience: Envoy answers 403 (PERMISSION_DENIED).
        (make_jwt({**good, "aud": "other"}), 403),
    ):
        headers = {"authorization": f"Bearer {token}"} if token else {}
        reply = jwt_gateway.get("/v1/asr/models", **headers)
        assert reply.status == status, (token, reply.body)
        assert reply.json()["code"] == {401: 16, 403: 7}[status]


def test_jwt_subject_is_the_identity(jwt_gateway):
    token = make_jwt(
        {"sub": "carol", "iss": JWT_ISSUER, "aud": JWT_AUDIENCE, "exp": int(time.time()) + 600}
    )
    reply = jwt_gateway.get(
        "/v1/asr/models", authorization=f"Bearer {token}", x_speechmesh_identity="mallory"
    )
    assert _identity(reply) == "carol"
    with grpc.insecure_channel(jwt_gateway.target) as channel:
        answer = asr_pb2_grpc.AsrServiceStub(channel).ListModels(
            asr_pb2.ListModelsRequest(), metadata=[("authorization", f"Bearer {token}")], timeout=10
        )
    assert answer.request_id == "carol"


def test_cors_preflight_and_response_headers(jwt_gateway):
    preflight = jwt_gateway.request(
        "OPTIONS",
        "/v1/translate:translateText",
        headers={
            "Origin": "https://app.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )
    assert preflight.status == 200
    assert preflight.headers["access-control-allow-origin"] == "https://app.example"
    assert "authorization" in preflight.headers["access-control-allow-headers"]
    other = jwt_gateway.request(
        "OPTIONS",
        "/v1/translate:translateText",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert "access-control-allow-origin" not in other.headers
    token = make_jwt(
        {"sub": "carol", "iss": JWT_ISSUER, "aud": JWT_AUDIENCE, "exp": int(time.time()) + 600}
    )
    reply = jwt_gateway.get(
        "/v1/asr/models", authorization=f"Bearer {token}", origin="https://app.example"
    )
    assert reply.headers["access-control-allow-origin"] == "https://app.example"


def test_tls_listener_serves_rest_and_grpc(tmp_path, credentials, upstreams):
    if "cert" not in credentials:
        pytest.skip("openssl could not make a certificate")
    with run_envoy(
        tmp_path,
        ["asr"],
        tls_cert_file=credentials["cert"],
        tls_key_file=credentials["key"],
        **upstreams,
    ) as (gateway, _):
        context = ssl.create_default_context(cafile=str(credentials["cert"]))
        connection = http.client.HTTPSConnection(
            "localhost", gateway.port, context=context, timeout=10
        )
        connection.request("GET", "/v1/asr/models")
        reply = connection.getresponse()
        assert reply.status == 200
        reply.read()
        connection.close()
        roots = credentials["cert"].read_bytes()
        with grpc.secure_channel(
            f"localhost:{gateway.port}", grpc.ssl_channel_credentials(root_certificates=roots)
        ) as channel:
            models = asr_pb2_grpc.AsrServiceStub(channel).ListModels(
                asr_pb2.ListModelsRequest(), timeout=10
            )
        assert models.request_id == ""
        # Plain HTTP on the TLS port is refused.
        with pytest.raises((ConnectionError, http.client.HTTPException)):
            gateway.get("/v1/asr/models")
