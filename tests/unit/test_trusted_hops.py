"""Identity between services (speechmesh.runtime.identity): a service believes the identity
header only from a trusted hop. `any` (every caller), `token` (a call with the shared hop proof,
compared in constant time) and `mesh` (a call whose mTLS peer, the last element of the sidecar's
x-forwarded-client-cert, is a listed SPIFFE id); from anyone else the header counts as absent:
UNAUTHENTICATED (IDENTITY_UNTRUSTED) with auth on, anonymous with it off. The settings refuse a
missing or bad token and a mesh without ids; the gateway renders the proof for every upstream
request and strips a client's; the cascade sends it on; `speechmesh up` makes one per run.

Through real Envoys and services: tests/gateway/test_trusted_hops.py."""

from __future__ import annotations

import os
import stat

import grpc
import pytest
import yaml
from pydantic import ValidationError

from speechmesh.gateway.config import GatewaySettings
from speechmesh.gateway.envoy_config import render_config
from speechmesh.gateway.envoy_process import validate_config, write_config
from speechmesh.runtime import identity
from speechmesh.runtime.errors import ApiError
from speechmesh.runtime.identity import HOP_HEADER, XFCC_HEADER, HopTrust, IdentityPolicy
from speechmesh.runtime.peers import Peers
from speechmesh.translate.cascade.peers import CascadePeers

TOKEN = "0123456789abcdef-hop-token"
HEADER = identity.DEFAULT_HEADER
GATEWAY = "spiffe://cluster.local/ns/speechmesh/sa/gateway"
TRANSLATE = "spiffe://cluster.local/ns/speechmesh/sa/translate"
INTRUDER = "spiffe://cluster.local/ns/speechmesh/sa/intruder"


def policy(hops: HopTrust, required: bool = False) -> IdentityPolicy:
    return IdentityPolicy(header=HEADER, required=required, hops=hops)


def refused_reason(call) -> str:
    with pytest.raises(ApiError) as refused:
        call()
    assert refused.value.code == grpc.StatusCode.UNAUTHENTICATED
    return refused.value.details[0].reason


# -- token ---------------------------------------------------------------------------------------


def test_any_believes_every_caller():
    assert policy(HopTrust()).caller([(HEADER, "alice")]) == "alice"


def test_token_believes_a_call_with_the_proof_only():
    hops = HopTrust("token", token=TOKEN)
    assert policy(hops).caller([(HEADER, "alice"), (HOP_HEADER, TOKEN)]) == "alice"
    assert policy(hops).caller([(HOP_HEADER, TOKEN.encode()), (HEADER, b"alice")]) == "alice"
    for proofs in (
        [],
        [(HOP_HEADER, "")],
        [(HOP_HEADER, TOKEN[:-1])],
        [(HOP_HEADER, TOKEN + "x")],
        [(HOP_HEADER, TOKEN.upper())],
        [(HOP_HEADER, "nope"), (HOP_HEADER, TOKEN)],  # one proof, as the gateway sends
        [("x-speechmesh-hop-token", TOKEN)],
    ):
        metadata = [(HEADER, "alice"), *proofs]
        # Auth off: anonymous, never alice.
        assert policy(hops).caller(metadata) == identity.ANONYMOUS, proofs
        # Auth on: refused, saying the identity did not come from a trusted hop.
        reason = refused_reason(lambda m=metadata: policy(hops, required=True).caller(m))
        assert reason == "IDENTITY_UNTRUSTED", proofs


def test_token_without_an_identity_is_still_anonymous_or_missing():
    hops = HopTrust("token", token=TOKEN)
    assert policy(hops).caller([(HOP_HEADER, TOKEN)]) == identity.ANONYMOUS
    reason = refused_reason(lambda: policy(hops, required=True).caller([(HOP_HEADER, TOKEN)]))
    assert reason == "IDENTITY_MISSING"


def test_the_proof_is_compared_in_constant_time(monkeypatch):
    seen = []
    original = identity.hmac.compare_digest

    def compare(a, b):
        seen.append((a, b))
        return original(a, b)

    monkeypatch.setattr(identity.hmac, "compare_digest", compare)
    HopTrust("token", token=TOKEN).trusts([(HOP_HEADER, "guess-guess-guess")])
    assert seen == [(b"guess-guess-guess", TOKEN.encode())]


def test_the_token_is_not_in_the_policys_repr():
    assert TOKEN not in repr(policy(HopTrust("token", token=TOKEN)))


# -- mesh ----------------------------------------------------------------------------------------


def xfcc(*uris: str) -> str:
    """An x-forwarded-client-cert value with one element per URI, as Envoy writes them."""
    return ",".join(
        f'By=spiffe://cluster.local/ns/speechmesh/sa/tts;Hash=ab12;Subject="CN=a,O=b;c";URI={uri}'
        for uri in uris
    )


@pytest.mark.parametrize(
    ("values", "trusted"),
    [
        ([xfcc(GATEWAY)], True),
        ([xfcc(TRANSLATE)], True),
        ([xfcc(INTRUDER)], False),
        # A client's own element first, the sidecar's (the real peer) last.
        ([xfcc(GATEWAY, INTRUDER)], False),
        ([xfcc(GATEWAY), xfcc(INTRUDER)], False),
        ([xfcc(INTRUDER, GATEWAY)], True),
        ([f"By=x;URI={INTRUDER};URI={GATEWAY}"], True),  # a certificate with both SANs
        ([f'Subject="URI={GATEWAY},x";URI={INTRUDER}'], False),  # quoted text is no key
        ([f"URI={GATEWAY}/sub"], False),
        ([], False),
        (["garbage"], False),
    ],
)
def test_mesh_believes_the_sidecars_peer_only(values, trusted):
    hops = HopTrust("mesh", spiffe_ids=(GATEWAY, TRANSLATE))
    metadata = [(HEADER, "alice"), *((XFCC_HEADER, value) for value in values)]
    expected = "alice" if trusted else identity.ANONYMOUS
    assert policy(hops).caller(metadata) == expected
    assert hops.trusts(metadata) is trusted


def test_xfcc_quotes_and_escapes():
    value = r'Hash=1;Subject="CN=\"q,u;o\",O=x";URI=spiffe://a/b;DNS=x.example'
    assert identity.xfcc_peer([value]) == ["spiffe://a/b"]


# -- settings ------------------------------------------------------------------------------------


def service_settings(monkeypatch, **env):
    from speechmesh.tts.config import TtsSettings

    for name in (
        identity.TRUSTED_HOPS_ENV,
        identity.HOP_TOKEN_ENV,
        identity.HOP_TOKEN_FILE_ENV,
        identity.TRUSTED_SPIFFE_IDS_ENV,
    ):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return TtsSettings()


def test_services_trust_any_hop_unless_told(monkeypatch):
    settings = service_settings(monkeypatch)
    assert settings.trusted_hops == "any"
    assert IdentityPolicy.from_settings(settings).hops == HopTrust()


def test_token_mode_needs_a_token(monkeypatch, tmp_path):
    with pytest.raises(ValidationError, match=identity.HOP_TOKEN_ENV):
        service_settings(monkeypatch, SPEECHMESH_TRUSTED_HOPS="token")
    with pytest.raises(ValidationError, match="at least 16"):
        service_settings(monkeypatch, SPEECHMESH_TRUSTED_HOPS="token", SPEECHMESH_HOP_TOKEN="short")
    missing = tmp_path / "missing"
    with pytest.raises(ValidationError, match="cannot be read"):
        service_settings(
            monkeypatch, SPEECHMESH_TRUSTED_HOPS="token", SPEECHMESH_HOP_TOKEN_FILE=str(missing)
        )
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    settings = service_settings(
        monkeypatch, SPEECHMESH_TRUSTED_HOPS="token", SPEECHMESH_HOP_TOKEN_FILE=str(token_file)
    )
    assert IdentityPolicy.from_settings(settings).hops == HopTrust("token", token=TOKEN)
    settings = service_settings(
        monkeypatch, SPEECHMESH_TRUSTED_HOPS="token", SPEECHMESH_HOP_TOKEN=TOKEN
    )
    assert IdentityPolicy.from_settings(settings).hops.token == TOKEN


def test_mesh_mode_needs_spiffe_ids(monkeypatch):
    with pytest.raises(ValidationError, match=identity.TRUSTED_SPIFFE_IDS_ENV):
        service_settings(monkeypatch, SPEECHMESH_TRUSTED_HOPS="mesh")
    with pytest.raises(ValidationError, match="not a SPIFFE id"):
        service_settings(
            monkeypatch, SPEECHMESH_TRUSTED_HOPS="mesh", SPEECHMESH_TRUSTED_SPIFFE_IDS="gateway"
        )
    settings = service_settings(
        monkeypatch,
        SPEECHMESH_TRUSTED_HOPS="mesh",
        SPEECHMESH_TRUSTED_SPIFFE_IDS=f"{GATEWAY}, {TRANSLATE}",
    )
    assert IdentityPolicy.from_settings(settings).hops == HopTrust(
        "mesh", spiffe_ids=(GATEWAY, TRANSLATE)
    )


# -- the gateway and the cascade send the proof ----------------------------------------------------


def manager(config: dict) -> dict:
    return config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0][
        "typed_config"
    ]


def test_the_gateway_sends_the_proof_upstream_and_strips_a_clients(tmp_path, monkeypatch):
    monkeypatch.delenv(identity.HOP_TOKEN_FILE_ENV, raising=False)
    monkeypatch.delenv(identity.HOP_TOKEN_ENV, raising=False)
    plain = manager(render_config(GatewaySettings()))
    assert "request_headers_to_add" not in plain["route_config"]
    strip = plain["http_filters"][0]["typed_config"]["mutations"]["request_mutations"]
    assert {"remove": HOP_HEADER} in strip  # even without a token: no client's proof passes
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    monkeypatch.setenv(identity.HOP_TOKEN_FILE_ENV, str(token_file))  # the services' variable
    settings = GatewaySettings()
    path = write_config(settings, tmp_path / "envoy.yaml")
    ok, output = validate_config(settings, path)
    assert ok, output
    config = manager(yaml.safe_load(path.read_text()))
    assert config["route_config"]["request_headers_to_add"] == [
        {
            "header": {"key": HOP_HEADER, "value": TOKEN},
            "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
        }
    ]
    # Nor does the access log print it.
    assert HOP_HEADER not in str(config["access_log"])
    monkeypatch.delenv(identity.HOP_TOKEN_FILE_ENV)
    with pytest.raises(ValidationError, match="at least 16"):
        GatewaySettings(hop_token="short")


def test_the_cascade_sends_the_proof_with_the_callers_identity():
    peers = Peers({})
    plain = CascadePeers(peers, HEADER)
    assert plain._metadata("alice") == ((HEADER, "alice"),)
    assert plain._metadata("") == ()
    tokened = CascadePeers(peers, HEADER, HopTrust("token", token=TOKEN))
    assert tokened._metadata("alice") == ((HEADER, "alice"), (HOP_HEADER, TOKEN))
    assert tokened._metadata("") == ()
    meshed = CascadePeers(peers, HEADER, HopTrust("mesh", spiffe_ids=(GATEWAY,)))
    assert meshed._metadata("alice") == ((HEADER, "alice"),)  # the mesh vouches instead


# -- speechmesh up -------------------------------------------------------------------------------


def plan(monkeypatch, tmp_path, **env):
    from speechmesh.suite.supervisor import Suite

    for name in (identity.TRUSTED_HOPS_ENV, identity.HOP_TOKEN_ENV, identity.HOP_TOKEN_FILE_ENV):
        monkeypatch.delenv(name, raising=False)
    for name in [v for v in os.environ if v.startswith("SPEECHMESH_GATEWAY_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    suite = Suite(["tts"], {}, offline=False, cache_dir=tmp_path, out=lambda line: None)
    suite.plan()
    return suite


def test_up_makes_a_token_per_run_for_the_gateway_and_every_service(monkeypatch, tmp_path):
    first = plan(monkeypatch, tmp_path)
    (child,) = first.children
    assert child.env[identity.TRUSTED_HOPS_ENV] == "token"
    token_file = child.env[identity.HOP_TOKEN_FILE_ENV]
    assert stat.S_IMODE(os.stat(token_file).st_mode) == 0o600
    token = identity.hop_token(token_file)
    assert len(token) >= 32
    assert first.gateway.upstream_hop_token() == token
    assert any("hop token" in line for line in first.banner())
    second = plan(monkeypatch, tmp_path)
    assert second.gateway.upstream_hop_token() != token  # a new one each run
    for suite in (first, second):
        suite._workdir.cleanup()


def test_up_keeps_a_given_token_or_mode(monkeypatch, tmp_path):
    suite = plan(monkeypatch, tmp_path, SPEECHMESH_HOP_TOKEN=TOKEN)
    (child,) = suite.children
    assert child.env[identity.HOP_TOKEN_ENV] == TOKEN
    assert identity.HOP_TOKEN_FILE_ENV not in child.env
    assert suite.gateway.upstream_hop_token() == TOKEN
    suite._workdir.cleanup()
    suite = plan(monkeypatch, tmp_path, SPEECHMESH_TRUSTED_HOPS="any")
    (child,) = suite.children
    assert child.env[identity.TRUSTED_HOPS_ENV] == "any"
    assert suite.gateway.upstream_hop_token() == ""
    suite._workdir.cleanup()
