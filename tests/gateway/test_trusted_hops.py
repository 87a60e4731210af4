"""Identity between services, through real Envoys and services (speechmesh.runtime.identity):
the services believe the identity header only from a trusted hop.

- token (`speechmesh up`'s default): with API keys (alice, bob) and the hop token in a file of
  the test's, a client calling a service's port directly with `x-speechmesh-identity: alice` is
  refused (UNAUTHENTICATED, IDENTITY_UNTRUSTED), with a wrong token too, gRPC and WebSocket alike;
  through the gateway alice is alice; the translate cascade's calls to TTS keep the caller's
  identity (alice's stored voice speaks her cascade; bob's cascade cannot find it). The same
  call with the right token is believed: the proof, not the port, decides.
- `speechmesh up` with auth off (the shared `up`, token mode as by default): a direct caller's
  identity header lands in the anonymous namespace, never alice's. (That `up` makes a token of
  its own when given none: tests/unit/test_trusted_hops.py.)
- mesh: an Envoy standing in for the mesh's sidecar (mutual TLS, the client's certificate
  appended to x-forwarded-client-cert as Istio's sidecars do) in front of a TTS service with
  SPEECHMESH_TRUSTED_HOPS=mesh: a client whose certificate names a trusted SPIFFE id is believed,
  another is not, even when it writes a trusted id into the header itself.
"""

from __future__ import annotations

import json
import pathlib
import shutil
import subprocess
from collections.abc import Iterator

import grpc
import pytest
import yaml
from google.rpc import error_details_pb2, status_pb2
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from speechmesh.gateway.envoy_common import TYPE, TYPE_URL
from speechmesh.gateway.envoy_process import find_envoy
from speechmesh.runtime.identity import DEFAULT_HEADER, HOP_HEADER
from speechmesh.runtime.identity import XFCC_HEADER as XFCC
from speechmesh.translate.v1 import translate_pb2, translate_pb2_grpc
from speechmesh.tts.v1 import tts_pb2, tts_pb2_grpc
from tests.gateway.conftest import Up, run_up, stop
from tests.servers import free_port
from tests.sounds import REFERENCE, voice_like, wav

TOKEN = "test-hop-token-0123456789abcdef"
ALICE = [("x-api-key", "alice-key-0001")]
BOB = [("x-api-key", "bob-key-0002")]
CLAIM = [(DEFAULT_HEADER, "alice")]


@pytest.fixture(scope="module")
def keyed_up(tmp_path_factory, tiny_cache, credentials) -> Iterator[Up]:
    """`speechmesh up` (tiny checkpoints) with API keys and a hop token the test knows."""
    token_file = tmp_path_factory.mktemp("hop") / "token"
    token_file.write_text(TOKEN + "\n")
    settings = {
        "SPEECHMESH_GATEWAY_AUTH": "api_key",
        "SPEECHMESH_GATEWAY_API_KEYS_FILE": str(credentials["api_keys"]),
        "SPEECHMESH_HOP_TOKEN_FILE": str(token_file),
    }
    with run_up(tmp_path_factory, tiny_cache, ["asr", "translate", "tts"], settings) as suite:
        yield suite


def reason(error: grpc.RpcError) -> str:
    for key, value in error.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            for detail in status_pb2.Status.FromString(value).details:
                info = error_details_pb2.ErrorInfo()
                if detail.Unpack(info):
                    return info.reason
    return ""


def tts(target: str) -> tts_pb2_grpc.TtsServiceStub:
    return tts_pb2_grpc.TtsServiceStub(grpc.insecure_channel(target))


@pytest.fixture(scope="module")
def alices_voice(keyed_up) -> Iterator[str]:
    """A voice alice stored through the gateway."""
    gateway = tts(keyed_up.gateway.target)
    request = tts_pb2.CreateVoiceRequest(
        voice_id="alice-hops",
        voice=tts_pb2.Voice(transcript="Mine alone."),
        reference_audio=REFERENCE,
    )
    voice = gateway.CreateVoice(request, metadata=ALICE, timeout=60)
    try:
        yield voice.name
    finally:
        gateway.DeleteVoice(tts_pb2.DeleteVoiceRequest(name=voice.name), metadata=ALICE, timeout=10)


def test_through_the_gateway_the_identity_is_the_callers(keyed_up, alices_voice):
    gateway = tts(keyed_up.gateway.target)
    get = tts_pb2.GetVoiceRequest(name=alices_voice)
    assert gateway.GetVoice(get, metadata=ALICE, timeout=10).name == alices_voice
    with pytest.raises(grpc.RpcError) as refused:
        gateway.GetVoice(get, metadata=BOB, timeout=10)
    assert refused.value.code() == grpc.StatusCode.NOT_FOUND
    # A client's own proof is stripped at the gateway and replaced by the gateway's.
    assert gateway.GetVoice(get, metadata=[*ALICE, (HOP_HEADER, "forged")], timeout=10).name


def test_a_direct_caller_cannot_claim_an_identity(keyed_up, alices_voice):
    """The TTS service's own port, with alice's identity header: refused without the hop
    proof or with a wrong one (never alice's voice), believed with the right one."""
    direct = tts(f"127.0.0.1:{keyed_up.ports['tts']}")
    get = tts_pb2.GetVoiceRequest(name=alices_voice)
    for proofs in ([], [(HOP_HEADER, "wrong-token-0123456789")], [(HOP_HEADER, TOKEN[:-1])]):
        for call in (
            lambda m: direct.GetVoice(get, metadata=m, timeout=10),
            lambda m: direct.ListVoices(tts_pb2.ListVoicesRequest(), metadata=m, timeout=10),
        ):
            with pytest.raises(grpc.RpcError) as refused:
                call([*CLAIM, *proofs])
            assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED, proofs
            assert reason(refused.value) == "IDENTITY_UNTRUSTED", refused.value.details()
    # The proof, not the port, decides: with it the same call is alice's.
    assert direct.GetVoice(get, metadata=[*CLAIM, (HOP_HEADER, TOKEN)], timeout=10).name


def test_a_direct_caller_of_translate_cannot_claim_an_identity(keyed_up):
    direct = translate_pb2_grpc.TranslateServiceStub(
        grpc.insecure_channel(f"127.0.0.1:{keyed_up.ports['translate']}")
    )
    with pytest.raises(grpc.RpcError) as refused:
        direct.TranslateSpeech(cascade_request("voices/alice-hops"), metadata=CLAIM, timeout=60)
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert reason(refused.value) == "IDENTITY_UNTRUSTED"


async def test_a_direct_websocket_cannot_claim_an_identity(keyed_up):
    url = f"ws://127.0.0.1:{keyed_up.ports['tts_websocket']}/v1/realtime/speech"
    with pytest.raises(InvalidStatus) as refused:
        async with connect(url, additional_headers=dict(CLAIM), open_timeout=10):
            pass
    assert refused.value.response.status_code == 401
    headers = {**dict(CLAIM), HOP_HEADER: TOKEN}
    async with connect(url, additional_headers=headers, open_timeout=10) as ws:
        created = json.loads(await ws.recv())
    assert created["type"].endswith("created"), created


def cascade_request(voice: str) -> translate_pb2.TranslateSpeechRequest:
    config = translate_pb2.SpeechTranslationConfig(
        source_language_code="en",
        target_language_code="en",
        output_modalities=[translate_pb2.MODALITY_TEXT, translate_pb2.MODALITY_SPEECH],
        path=translate_pb2.SPEECH_TRANSLATION_PATH_CASCADE,
        cascade=translate_pb2.CascadeConfig(voice=voice),
    )
    return translate_pb2.TranslateSpeechRequest(audio=wav(voice_like(3.0)), config=config)


def test_the_cascade_keeps_the_callers_identity(keyed_up, alices_voice):
    """translate calls TTS with alice's identity and the hop proof: TTS believes it and finds
    her stored voice; bob's cascade asking for it finds nothing."""
    gateway = translate_pb2_grpc.TranslateServiceStub(
        grpc.insecure_channel(keyed_up.gateway.target)
    )
    reply = gateway.TranslateSpeech(cascade_request(alices_voice), metadata=ALICE, timeout=120)
    assert reply.segments and reply.translated_audio
    assert reply.voice == alices_voice
    kinds = {segment.voice.kind for segment in reply.segments if segment.translated_text}
    assert kinds == {translate_pb2.SegmentVoice.KIND_STORED}, reply.segments
    with pytest.raises(grpc.RpcError) as refused:
        gateway.TranslateSpeech(cascade_request(alices_voice), metadata=BOB, timeout=120)
    assert refused.value.code() == grpc.StatusCode.NOT_FOUND, refused.value.details()


def test_with_auth_off_a_direct_claim_is_anonymous(up):
    """`speechmesh up` with auth off, trusting the hop token (the default): the TTS port, called
    directly with alice's identity header, answers in the anonymous namespace."""
    assert any("hop token" in line for line in up.lines), up.lines[-30:]
    gateway = tts(up.gateway.target)
    direct = tts(f"127.0.0.1:{up.ports['tts']}")
    request = tts_pb2.CreateVoiceRequest(
        voice_id="anonymous-hops",
        voice=tts_pb2.Voice(transcript="Anyone's."),
        reference_audio=REFERENCE,
    )
    voice = gateway.CreateVoice(request, timeout=60)  # anonymous: auth is off
    try:
        listed = direct.ListVoices(tts_pb2.ListVoicesRequest(), metadata=CLAIM, timeout=10)
        assert voice.name in [v.name for v in listed.voices]
        get = tts_pb2.GetVoiceRequest(name=voice.name)
        assert direct.GetVoice(get, metadata=CLAIM, timeout=10).name == voice.name
    finally:
        gateway.DeleteVoice(tts_pb2.DeleteVoiceRequest(name=voice.name), timeout=10)


# -- mesh: an Envoy in the sidecar's place -------------------------------------------------------

MESH = "spiffe://cluster.local/ns/speechmesh/sa"


def sidecar_config(port: int, folder: pathlib.Path, upstream: int) -> dict:
    """An Envoy in the place of a mesh's inbound sidecar: mutual TLS (clients' certificates
    signed by folder/ca.pem required), and, as Istio's sidecars, the client certificate's URI
    and subject appended to x-forwarded-client-cert (APPEND_FORWARD); to 127.0.0.1:`upstream`."""
    tls = "envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext"
    manager = "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
    router = "envoy.extensions.filters.http.router.v3.Router"
    options = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
    address = {"socket_address": {"address": "127.0.0.1", "port_value": upstream}}
    return {
        "static_resources": {
            "listeners": [
                {
                    "name": "inbound",
                    "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
                    "filter_chains": [
                        {
                            "transport_socket": {
                                "name": "envoy.transport_sockets.tls",
                                "typed_config": {
                                    TYPE: TYPE_URL + tls,
                                    "require_client_certificate": True,
                                    "common_tls_context": {
                                        "alpn_protocols": ["h2"],
                                        "tls_certificates": [
                                            {
                                                "certificate_chain": {
                                                    "filename": str(folder / "server.pem")
                                                },
                                                "private_key": {
                                                    "filename": str(folder / "server.key")
                                                },
                                            }
                                        ],
                                        "validation_context": {
                                            "trusted_ca": {"filename": str(folder / "ca.pem")}
                                        },
                                    },
                                },
                            },
                            "filters": [
                                {
                                    "name": "envoy.filters.network.http_connection_manager",
                                    "typed_config": {
                                        TYPE: TYPE_URL + manager,
                                        "stat_prefix": "inbound",
                                        "codec_type": "HTTP2",
                                        "forward_client_cert_details": "APPEND_FORWARD",
                                        "set_current_client_cert_details": {
                                            "uri": True,
                                            "subject": True,
                                        },
                                        "route_config": {
                                            "virtual_hosts": [
                                                {
                                                    "name": "service",
                                                    "domains": ["*"],
                                                    "routes": [
                                                        {
                                                            "match": {"prefix": "/"},
                                                            "route": {"cluster": "service"},
                                                        }
                                                    ],
                                                }
                                            ]
                                        },
                                        "http_filters": [
                                            {
                                                "name": "envoy.filters.http.router",
                                                "typed_config": {TYPE: TYPE_URL + router},
                                            }
                                        ],
                                    },
                                }
                            ],
                        }
                    ],
                }
            ],
            "clusters": [
                {
                    "name": "service",
                    "type": "STATIC",
                    "connect_timeout": "2s",
                    "typed_extension_protocol_options": {
                        options: {
                            TYPE: TYPE_URL + options,
                            "explicit_http_config": {"http2_protocol_options": {}},
                        }
                    },
                    "load_assignment": {
                        "cluster_name": "service",
                        "endpoints": [{"lb_endpoints": [{"endpoint": {"address": address}}]}],
                    },
                }
            ],
        }
    }


def _openssl(*args: str) -> None:
    if shutil.which("openssl") is None:
        pytest.skip("no openssl to make the mesh's certificates")
    done = subprocess.run(["openssl", *args], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]


def _certificate(folder: pathlib.Path, name: str, san: str) -> None:
    """folder/NAME.pem and .key, signed by folder/ca, with subjectAltName `san`."""
    key, request = folder / f"{name}.key", folder / f"{name}.csr"
    _openssl(
        *("req", "-new", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}"),
        *("-keyout", str(key), "-out", str(request)),
    )
    extensions = folder / f"{name}.ext"
    extensions.write_text(f"subjectAltName={san}\n")
    _openssl(
        *("x509", "-req", "-in", str(request), "-CA", str(folder / "ca.pem")),
        *("-CAkey", str(folder / "ca.key"), "-CAcreateserial", "-days", "2"),
        *("-out", str(folder / f"{name}.pem"), "-extfile", str(extensions)),
    )


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> pathlib.Path:
    """A CA, the sidecar's server certificate, and client certificates whose URI SANs are the
    SPIFFE ids of the gateway's and an intruder's workloads."""
    folder = tmp_path_factory.mktemp("pki")
    _openssl(
        *("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=mesh-ca"),
        *("-keyout", str(folder / "ca.key"), "-out", str(folder / "ca.pem")),
    )
    _certificate(folder, "server", "DNS:localhost,IP:127.0.0.1")
    for workload in ("gateway", "intruder"):
        _certificate(folder, workload, f"URI:{MESH}/{workload}")
    return folder


@pytest.fixture(scope="module")
def meshed_tts(tmp_path_factory, tiny_cache, pki) -> Iterator[tuple[Up, int]]:
    """TTS (`speechmesh up --services tts`, auth off) trusting the gateway's SPIFFE id only, and
    an Envoy in front of it as its sidecar: (the suite, the sidecar's port)."""
    env = {
        "SPEECHMESH_TRUSTED_HOPS": "mesh",
        "SPEECHMESH_TRUSTED_SPIFFE_IDS": f"{MESH}/gateway,{MESH}/translate",
    }
    with run_up(tmp_path_factory, tiny_cache, ["tts"], env) as suite:
        port = free_port()
        config = pki / "sidecar.yaml"
        config.write_text(yaml.safe_dump(sidecar_config(port, pki, suite.ports["tts"])))
        log = (pki / "sidecar.log").open("w")
        envoy = subprocess.Popen(
            [find_envoy("envoy"), "-c", str(config), "--disable-hot-restart"],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            yield suite, port
        finally:
            stop(envoy, timeout_s=10)
            log.close()


def through_sidecar(pki: pathlib.Path, port: int, workload: str) -> tts_pb2_grpc.TtsServiceStub:
    credentials = grpc.ssl_channel_credentials(
        root_certificates=(pki / "ca.pem").read_bytes(),
        private_key=(pki / f"{workload}.key").read_bytes(),
        certificate_chain=(pki / f"{workload}.pem").read_bytes(),
    )
    channel = grpc.secure_channel(
        f"127.0.0.1:{port}", credentials, options=[("grpc.ssl_target_name_override", "localhost")]
    )
    grpc.channel_ready_future(channel).result(timeout=30)
    return tts_pb2_grpc.TtsServiceStub(channel)


def names(stub: tts_pb2_grpc.TtsServiceStub, metadata) -> list[str]:
    listed = stub.ListVoices(tts_pb2.ListVoicesRequest(), metadata=metadata, timeout=10)
    return [voice.name for voice in listed.voices]


def test_mesh_believes_only_the_peer_the_sidecar_authenticated(meshed_tts, pki):
    _, port = meshed_tts
    gateway = through_sidecar(pki, port, "gateway")
    intruder = through_sidecar(pki, port, "intruder")
    request = tts_pb2.CreateVoiceRequest(
        voice_id="meshed", voice=tts_pb2.Voice(transcript="Mine alone."), reference_audio=REFERENCE
    )
    voice = gateway.CreateVoice(request, metadata=CLAIM, timeout=60)
    try:
        # The gateway's workload, vouched for by mTLS: alice is alice.
        assert voice.name in names(gateway, CLAIM)
        assert voice.name not in names(gateway, [])  # no identity: anonymous
        # Another workload claiming alice: anonymous (auth is off), never alice; writing the
        # gateway's id into x-forwarded-client-cert itself changes nothing (the sidecar appends
        # the real peer after it).
        forged = (XFCC, f"By={MESH}/tts;URI={MESH}/gateway")
        for metadata in (CLAIM, [*CLAIM, forged]):
            assert voice.name not in names(intruder, metadata), metadata
            with pytest.raises(grpc.RpcError) as missing:
                intruder.GetVoice(tts_pb2.GetVoiceRequest(name=voice.name), metadata=metadata)
            assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    finally:
        gateway.DeleteVoice(tts_pb2.DeleteVoiceRequest(name=voice.name), metadata=CLAIM)


def test_mesh_ignores_a_claim_without_the_sidecars_header(meshed_tts):
    """Straight to the service's port, with no sidecar's header, a claim is anonymous. (A
    client that could reach the port past the sidecar could write x-forwarded-client-cert
    itself: mesh mode needs STRICT mTLS, where no connection skips the sidecar.)"""
    suite, _ = meshed_tts
    direct = tts(f"127.0.0.1:{suite.ports['tts']}")
    assert names(direct, CLAIM) == names(direct, [])
