"""The caller identity every service reads, and the one setting that names its header."""

from __future__ import annotations

import grpc
import pytest

from speechmesh.gateway.config import GatewaySettings
from speechmesh.runtime import identity
from speechmesh.runtime.errors import ApiError
from speechmesh.runtime.identity import IdentityPolicy
from speechmesh.runtime.registry import SERVICES


def test_caller_is_read_from_the_configured_header_only():
    policy = IdentityPolicy(header="x-tenant")
    assert policy.caller([("x-tenant", "alice")]) == "alice"
    # The default name means nothing once the header is renamed.
    assert policy.caller([("x-speechmesh-identity", "bob")]) == identity.ANONYMOUS
    assert policy.caller([("X-Tenant", "carol")]) == "carol"
    assert policy.caller(None) == identity.ANONYMOUS


def test_several_identities_are_refused():
    with pytest.raises(ApiError) as raised:
        IdentityPolicy().caller([("x-speechmesh-identity", "a"), ("x-speechmesh-identity", "b")])
    assert raised.value.code == grpc.StatusCode.UNAUTHENTICATED
    assert "2 x-speechmesh-identity headers" in raised.value.message


@pytest.mark.parametrize("metadata", [[], [("x-speechmesh-identity", "  ")]])
def test_with_auth_on_a_call_without_identity_is_refused_not_anonymous(metadata):
    with pytest.raises(ApiError) as raised:
        IdentityPolicy(required=True).caller(metadata)
    assert raised.value.code == grpc.StatusCode.UNAUTHENTICATED
    assert "call through the gateway" in raised.value.message
    assert IdentityPolicy(required=True).caller([("x-speechmesh-identity", "alice")]) == "alice"


@pytest.mark.parametrize("service", list(SERVICES))
def test_services_read_the_gateways_own_variables(service, monkeypatch, tmp_path):
    monkeypatch.setenv(identity.HEADER_ENV, "X-Tenant")
    monkeypatch.setenv(identity.AUTH_ENV, "api_key")
    # A service-level variable cannot make a service read another header than the gateway writes.
    monkeypatch.setenv(f"SPEECHMESH_{service.upper()}_IDENTITY_HEADER", "x-other")
    settings = SERVICES[service].settings_class()()
    policy = IdentityPolicy.from_settings(settings)
    assert policy == IdentityPolicy(header="x-tenant", required=True)
    keys = tmp_path / "api-keys"
    keys.write_text("alice alice-key-0001\n")
    gateway = GatewaySettings(api_keys_file=keys)
    assert gateway.identity_header == policy.header
    assert gateway.auth == "api_key"


@pytest.mark.parametrize("bad", ["", "x tenant", "grpc-identity", "x-identity-bin", "x_tenant"])
def test_header_names_are_checked_once_for_gateway_and_services(bad):
    with pytest.raises(ValueError):
        identity.header_name(bad)
    with pytest.raises(ValueError):
        GatewaySettings(identity_header=bad)
