"""One tenant never sees another's voices, through the real Envoy, with the identity header at its
default name and renamed; a spoofed identity header (the old name, the new name, mixed case,
repeated) changes nothing; and with auth on, a service reached without an identity refuses the
call instead of using the anonymous namespace.

The renamed case is the deployment a user makes: `speechmesh up` (TTS on a tiny random CSM) with
API keys for alice and bob and SPEECHMESH_GATEWAY_IDENTITY_HEADER=x-tenant, nothing else set.
"""

from __future__ import annotations

import http.client
import json

import grpc
import pytest

from speechmesh.runtime.identity import HOP_HEADER
from speechmesh.tts.v1 import tts_pb2, tts_pb2_grpc
from tests.gateway.conftest import Gateway, Response, run_keyed_envoy, run_up
from tests.sounds import REFERENCE

ALICE = "alice-key-0001"
BOB = "bob-key-0002"
DEFAULT = "x-speechmesh-identity"


def send(
    gateway: Gateway, method: str, path: str, headers: list[tuple[str, str]], body: bytes = b""
) -> Response:
    """A request with headers exactly as given: repeated names and their case kept."""
    connection = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=60)
    try:
        connection.putrequest(method, path, skip_accept_encoding=True)
        for name, value in headers:
            connection.putheader(name, value)
        if body:
            connection.putheader("Content-Length", str(len(body)))
        connection.endheaders(body or None)
        reply = connection.getresponse()
        return Response(reply.status, {k.lower(): v for k, v in reply.getheaders()}, reply.read())
    finally:
        connection.close()


def spoofs(header: str) -> list[list[tuple[str, str]]]:
    """Ways a caller might claim to be alice: the configured name, the default name, mixed case,
    the header twice, both names at once."""
    mixed = "-".join(part.capitalize() for part in header.split("-"))
    return [
        [(header, "alice")],
        [(DEFAULT, "alice")],
        [(mixed, "alice")],
        [(header, "alice"), (header, "alice")],
        [(header, "bob"), (mixed, "alice"), (DEFAULT, "alice")],
    ]


def voice_names(reply: Response) -> list[str]:
    assert reply.status == 200, reply.body
    return [voice["name"] for voice in json.loads(reply.body).get("voices", [])]


def check_tenants_apart(gateway: Gateway, header: str) -> None:
    upload = "/v1/voices:upload?voice_id=secret&voice.transcript=Mine%20alone."
    created = send(
        gateway, "POST", upload, [("Content-Type", "audio/wav"), ("x-api-key", ALICE)], REFERENCE
    )
    assert created.status == 200, created.body
    try:
        for claim in spoofs(header):
            as_bob = [("x-api-key", BOB), *claim]
            got = send(gateway, "GET", "/v1/voices/secret", as_bob)
            assert got.status == 404, (claim, got.status, got.body)  # not 403: no leak
            assert "voices/secret" not in voice_names(send(gateway, "GET", "/v1/voices", as_bob))
            deleted = send(gateway, "DELETE", "/v1/voices/secret", as_bob)
            assert deleted.status == 404, (claim, deleted.body)
            # No key: the claim alone authenticates nobody.
            assert send(gateway, "GET", "/v1/voices/secret", claim).status == 401
            # Alice claiming to be someone else is still alice.
            as_alice = [("x-api-key", ALICE), *[(name, "bob") for name, _ in claim]]
            assert send(gateway, "GET", "/v1/voices/secret", as_alice).status == 200
        mine = send(gateway, "GET", "/v1/voices", [("x-api-key", ALICE)])
        assert "voices/secret" in voice_names(mine)
        use = json.dumps({"text": "Hi.", "config": {"voice": "voices/secret"}}).encode()
        json_type = ("Content-Type", "application/json")
        for key, status in [(BOB, 404), (ALICE, 200)]:
            headers = [json_type, ("x-api-key", key)]
            spoken = send(gateway, "POST", "/v1/tts:synthesize", headers, use)
            assert spoken.status == status, spoken.body
    finally:
        deleted = send(gateway, "DELETE", "/v1/voices/secret", [("x-api-key", ALICE)])
        assert deleted.status == 200, deleted.body


def test_default_header_keeps_tenants_apart_and_ignores_spoofs(up, tmp_path, credentials):
    with run_keyed_envoy(
        tmp_path, up, credentials["api_keys"], ["tts"], ["asr", "translate", "tts"]
    ) as (gateway, settings):
        assert settings.identity_header == DEFAULT
        check_tenants_apart(gateway, DEFAULT)
        # The open gateway in front of the same service is anonymous: alice's voice is not there.
        created = send(
            gateway,
            "POST",
            "/v1/voices:upload?voice_id=kept&voice.transcript=Mine%20alone.",
            [("Content-Type", "audio/wav"), ("x-api-key", ALICE)],
            REFERENCE,
        )
        assert created.status == 200, created.body
        assert "voices/kept" not in voice_names(up.gateway.get("/v1/voices"))
        assert up.gateway.get("/v1/voices/kept").status == 404
        assert send(gateway, "DELETE", "/v1/voices/kept", [("x-api-key", ALICE)]).status == 200


@pytest.fixture(scope="module")
def tenants(tmp_path_factory, tiny_cache, credentials):
    """`speechmesh up` with TTS alone, API keys, and the identity header renamed to x-tenant."""
    env = {
        "SPEECHMESH_GATEWAY_AUTH": "api_key",
        "SPEECHMESH_GATEWAY_API_KEYS_FILE": str(credentials["api_keys"]),
        "SPEECHMESH_GATEWAY_IDENTITY_HEADER": "x-tenant",
    }
    with run_up(tmp_path_factory, tiny_cache, ["tts"], env) as suite:
        yield suite


def test_renamed_header_keeps_tenants_apart_and_ignores_spoofs(tenants):
    check_tenants_apart(tenants.gateway, "x-tenant")


def test_with_auth_on_a_call_without_identity_is_refused_by_the_service(tenants):
    """Reached around the gateway (its port is meant to be reachable from the gateway alone),
    the service does not put an unidentified caller in the anonymous namespace."""
    with grpc.insecure_channel(f"127.0.0.1:{tenants.ports['tts']}") as channel:
        api = tts_pb2_grpc.TtsServiceStub(channel)
        for metadata in [(), ((DEFAULT, "alice"),)]:  # none, or only the default name
            with pytest.raises(grpc.RpcError) as raised:
                api.ListVoices(tts_pb2.ListVoicesRequest(), metadata=metadata, timeout=10)
            assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert "x-tenant" in raised.value.details()
        # Nor does it believe the header from anyone but a trusted hop (`speechmesh up`: the
        # gateway's hop token; tests/gateway/test_trusted_hops.py).
        with pytest.raises(grpc.RpcError) as raised:
            api.ListVoices(
                tts_pb2.ListVoicesRequest(), metadata=(("x-tenant", "alice"),), timeout=10
            )
        assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert "trusted hop" in raised.value.details()
        proof = (HOP_HEADER, tenants.hop_token)
        listed = api.ListVoices(
            tts_pb2.ListVoicesRequest(), metadata=(("x-tenant", "alice"), proof), timeout=10
        )
        assert list(listed.voices) == []
