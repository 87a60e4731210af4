"""Realtime over WebSocket through the gateway: Envoy upgrades `/v1/realtime` (ASR) and
`/v1/realtime/speech` (TTS) and routes them to the services' WebSocket ports, behind the same
edge as every route (auth, the identity header, CORS origins, rate limit, TLS).

One `speechmesh up` with ASR alone (whisper-tiny.en when ../shared has it, else a tiny random
Whisper) serves a real transcription session through its gateway. The edge is checked on extra
Envoys in front of the same ASR and of a WebSocket server of our own on the TTS route, which
answers the path and headers Envoy passed it (what the service sees) and echoes messages.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import pathlib
import ssl
import threading
import time
import wave
from collections.abc import Iterator

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.server import ServerConnection, serve

from speechmesh.gateway.config import GatewaySettings
from speechmesh.gateway.envoy_config import render_config
from speechmesh.gateway.transcoding import F_TRANSCODER
from tests.asr_client import normalize, wer
from tests.conftest import AUDIO, TINY_EN
from tests.gateway.conftest import Up, run_envoy, run_up

CLIP = AUDIO / "librivox" / "sense_and_sensibility_01_austen_64kb-0880.wav"
CLIP_TEXT = "he was not an ill disposed young man"
ORIGIN = "https://app.example"
IDENTITY = "x-speechmesh-identity"


@contextlib.contextmanager
def echo_server(ping_interval: float | None) -> Iterator[int]:
    """A WebSocket server on a free port: its first message is the path and headers of the
    upgrade request it got (what a service behind the gateway sees); then it echoes every
    message. It pings every `ping_interval` s (None: never)."""

    def handler(ws: ServerConnection) -> None:
        request = ws.request
        assert request is not None
        headers = {key.lower(): value for key, value in request.headers.raw_items()}
        ws.send(json.dumps({"path": request.path, "headers": headers}))
        for message in ws:
            ws.send(message)

    with serve(handler, "127.0.0.1", 0, ping_interval=ping_interval, ping_timeout=5) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield server.socket.getsockname()[1]
        finally:
            server.shutdown()
            thread.join(timeout=5)


@pytest.fixture(scope="module")
def echo_socket() -> Iterator[int]:
    with echo_server(ping_interval=0.3) as port:
        yield port


@pytest.fixture(scope="module")
def realtime_up(tmp_path_factory, tiny_cache, credentials, echo_socket) -> Iterator[Up]:
    """`speechmesh up --offline --services asr` (whisper-tiny.en when ../shared has it) with API
    keys (alice, bob) and a CORS origin; the gateway's TTS realtime route goes to the echo
    server."""
    args = ("--model", f"asr={TINY_EN}") if TINY_EN.is_dir() else ()
    settings = {
        "SPEECHMESH_GATEWAY_AUTH": "api_key",
        "SPEECHMESH_GATEWAY_API_KEYS_FILE": str(credentials["api_keys"]),
        "SPEECHMESH_GATEWAY_CORS_ALLOWED_ORIGINS": ORIGIN,
        "SPEECHMESH_GATEWAY_TTS_WEBSOCKET_UPSTREAM": f"127.0.0.1:{echo_socket}",
    }
    with run_up(tmp_path_factory, tiny_cache, ["asr"], settings, args) as suite:
        suite.gateway.wait_healthy(["asr_realtime", "tts_realtime"])
        yield suite


def _url(port: int, path: str, scheme: str = "ws") -> str:
    return f"{scheme}://127.0.0.1:{port}{path}"


async def _refused(url: str, **kwargs) -> int:
    """The HTTP status a refused upgrade got."""
    with pytest.raises(InvalidStatus) as refused:
        async with connect(url, open_timeout=10, **kwargs):
            pass
    return refused.value.response.status_code


async def _event(ws, timeout: float = 30.0) -> dict:
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


def _pcm16(path: pathlib.Path) -> tuple[bytes, int]:
    with wave.open(str(path)) as clip:
        assert clip.getnchannels() == 1 and clip.getsampwidth() == 2
        return clip.readframes(clip.getnframes()), clip.getframerate()


# -- the rendered configuration ---------------------------------------------------------------


def _routes(settings: GatewaySettings) -> list[dict]:
    config = render_config(settings)
    manager = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
    return manager["typed_config"]["route_config"]["virtual_hosts"][0]["routes"]


def test_realtime_routes_upgrade_before_the_rest_catch_all_without_transcoding():
    settings = GatewaySettings(asr_websocket_upstream="asr-host:7001")
    routes = _routes(settings)
    names = [route["name"] for route in routes]
    assert names[-3:] == ["asr.realtime", "tts.realtime", "rest"]
    for route in routes:
        realtime = route["name"].endswith(".realtime")
        assert ("upgrade_configs" in route.get("route", {})) == realtime, route["name"]
        if realtime:
            assert route["route"]["timeout"] == "0s"
            assert route["route"]["upgrade_configs"] == [{"upgrade_type": "websocket"}]
            disabled = route["typed_per_filter_config"][F_TRANSCODER]
            assert disabled["disabled"] is True
    assert routes[-3]["match"] == {"path": "/v1/realtime"}
    assert routes[-2]["match"] == {"path": "/v1/realtime/speech"}
    clusters = {c["name"]: c for c in render_config(settings)["static_resources"]["clusters"]}
    cluster = clusters["asr_realtime"]
    assert cluster["health_checks"][0]["tcp_health_check"] == {}
    assert "outlier_detection" not in cluster
    endpoint = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
    assert endpoint["address"]["socket_address"] == {"address": "asr-host", "port_value": 7001}


@pytest.mark.parametrize(
    ("origins", "checked"), [([], False), (["*"], False), ([ORIGIN, "http://localhost:3000"], True)]
)
def test_the_origin_check_follows_the_cors_origins(origins, checked):
    routes = _routes(GatewaySettings(cors_allowed_origins=origins))
    refusals = [route for route in routes if route["name"].endswith(".origin_not_allowed")]
    assert len(refusals) == (2 if checked else 0)
    for refusal in refusals:
        (header,) = refusal["match"]["headers"]
        assert header["invert_match"] is True
        assert header["string_match"]["safe_regex"]["regex"] == (
            r"^(?:https://app\.example|http://localhost:3000)$"
        )
        assert refusal["direct_response"]["status"] == 403


def test_realtime_upstreams_are_validated():
    with pytest.raises(ValueError, match="host:port"):
        GatewaySettings(tts_websocket_upstream="tts")


# -- through `speechmesh up` ------------------------------------------------------------------

ALICE = {"Authorization": "Bearer alice-key-0001"}


@pytest.mark.skipif(not TINY_EN.is_dir(), reason=f"real weights not found at {TINY_EN}")
async def test_realtime_transcription_through_speechmesh_up(realtime_up):
    """A plain WebSocket client on the gateway's port, with a key: session.created, a
    transcription session update, a clip paced in real time, deltas while it plays, the
    completed transcript."""
    audio, rate = _pcm16(CLIP)
    chunk = rate // 10 * 2  # 100 ms of 16-bit samples
    silence = bytes(rate * 2)  # 1 s: the turn ends at the server VAD's 500 ms pause
    events: list[dict] = []
    url = _url(realtime_up.gateway.port, "/v1/realtime")
    async with connect(url, additional_headers=ALICE, open_timeout=10) as ws:
        created = await _event(ws)
        assert created["type"] == "session.created", created
        await ws.send(
            json.dumps(
                {
                    "type": "session.update",
                    "session": {
                        "type": "transcription",
                        "audio": {
                            "input": {
                                "format": {"type": "audio/pcm", "rate": rate},
                                "transcription": {"model": "whisper-1", "language": "en"},
                            }
                        },
                    },
                }
            )
        )
        updated = await _event(ws)
        assert updated["type"] == "session.updated", updated
        assert updated["session"]["audio"]["input"]["format"]["rate"] == rate

        async def send() -> None:
            data = audio + silence
            start = time.monotonic()
            for offset in range(0, len(data), chunk):
                payload = base64.b64encode(data[offset : offset + chunk]).decode()
                await ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": payload}))
                # Real time: the chunk that ends at t seconds of audio leaves at t.
                ends = (offset + chunk) / 2 / rate
                await asyncio.sleep(max(0.0, start + ends - time.monotonic()))

        sender = asyncio.create_task(send())
        while True:
            event = await _event(ws, timeout=60)
            events.append(event)
            assert event["type"] != "error", event
            if event["type"] == "conversation.item.input_audio_transcription.completed":
                break
        await sender
    kinds = [event["type"] for event in events]
    assert "input_audio_buffer.speech_started" in kinds, kinds
    deltas = [e for e in events if e["type"].endswith("input_audio_transcription.delta")]
    completed = events[-1]
    assert deltas, kinds
    # The deltas are the words the interim hypotheses agreed on, as they came; the final
    # decode (with the context before it) may still choose other words, and completed carries
    # them, as OpenAI's protocol has it: here only the opening words must agree. (When the
    # first delta arrives depends on how busy the CPU is: interim decodes of a loaded machine
    # can lag the 3 s clip.)
    joined = normalize("".join(d["delta"] for d in deltas)).split()
    assert joined[:2] == normalize(completed["transcript"]).split()[:2], (joined, completed)
    # whisper-tiny.en hears "ill disposed" as "old-sposed" in this clip: two words of eight.
    assert wer([CLIP_TEXT], [completed["transcript"]]) <= 0.3, completed["transcript"]
    # Envoy logged the session as one upgraded request to the realtime cluster, for alice.
    log = realtime_up.wait_line(r'"identity":"alice".*"upstream":"asr_realtime"')
    assert '"path":"/v1/realtime"' in log and '"status":101' in log, log


async def test_no_or_wrong_credentials_are_refused_at_the_upgrade(realtime_up):
    for path in ("/v1/realtime", "/v1/realtime/speech"):
        url = _url(realtime_up.gateway.port, path)
        assert await _refused(url) == 401
        assert await _refused(url, additional_headers={"x-api-key": "nope"}) == 401
        # A client's own identity header is no credential.
        assert await _refused(url, additional_headers={IDENTITY: "alice"}) == 401


async def test_the_service_refuses_a_socket_that_skips_the_gateway(realtime_up):
    """`speechmesh up` tells the services the gateway authenticates: the ASR WebSocket port
    itself refuses a caller without the gateway's identity."""
    direct = _url(realtime_up.ports["asr_websocket"], "/v1/realtime")
    assert await _refused(direct, additional_headers=ALICE) == 401


async def test_a_key_opens_a_realtime_session(realtime_up):
    url = _url(realtime_up.gateway.port, "/v1/realtime?intent=transcription")
    async with connect(url, additional_headers={"x-api-key": "bob-key-0002"}) as ws:
        created = await _event(ws)
    # ?intent=transcription went along: the beta session, configured at once.
    assert created["type"] == "transcription_session.created", created


async def test_the_service_sees_the_gateways_identity_not_the_clients(realtime_up):
    url = _url(realtime_up.gateway.port, "/v1/realtime/speech?voice=alloy")
    headers = {"x-api-key": "alice-key-0001", IDENTITY: "mallory"}
    async with connect(url, additional_headers=headers, open_timeout=10) as ws:
        seen = await _event(ws)
        await ws.send("hello")
        assert await asyncio.wait_for(ws.recv(), 10) == "hello"
    assert seen["path"] == "/v1/realtime/speech?voice=alloy"
    assert seen["headers"][IDENTITY] == "alice"
    # The key itself is not passed on.
    assert "x-api-key" not in seen["headers"] and "authorization" not in seen["headers"]


async def test_origins_outside_the_cors_list_are_refused(realtime_up):
    """Browsers send Origin on upgrades but do not apply CORS to WebSockets: the gateway
    refuses origins that CORS_ALLOWED_ORIGINS does not list (403); no Origin (not a browser)
    and a listed one pass."""
    port = realtime_up.gateway.port
    for path in ("/v1/realtime", "/v1/realtime/speech"):
        url = _url(port, path)
        for origin in ("https://evil.example", "https://app.example.evil", "null"):
            assert await _refused(url, additional_headers=ALICE, origin=origin) == 403
    url = _url(port, "/v1/realtime/speech")
    async with connect(url, additional_headers=ALICE, origin=ORIGIN) as ws:
        assert (await _event(ws))["headers"]["origin"] == ORIGIN


def test_plain_requests_on_the_realtime_path_and_upgrades_elsewhere(realtime_up):
    """A GET without an upgrade reaches the service, which asks for one (426); an upgrade on a
    path that is not realtime is refused by Envoy."""
    gateway = realtime_up.gateway
    plain = gateway.get("/v1/realtime", authorization=ALICE["Authorization"])
    assert plain.status == 426, plain
    upgrade = {
        **ALICE,
        "Connection": "Upgrade",
        "Upgrade": "websocket",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": base64.b64encode(bytes(16)).decode(),
    }
    elsewhere = gateway.request("GET", "/v1/asr/models", headers=upgrade)
    assert elsewhere.status == 403, elsewhere


# -- TLS, rate limit, idle sessions ------------------------------------------------------------


async def test_tls_rate_limit_and_idle_timeout(tmp_path, credentials, echo_socket):
    """wss:// on a TLS listener; a client's identity header is dropped with auth off; each
    upgrade takes a token of the per-client rate limit (429 past it); a session idle longer
    than the stream idle timeout lives on while the service pings, and is cut without pings.
    (The ASR service pings every 20 s, websockets' default: keep STREAM_IDLE_TIMEOUT_S above.)"""
    if "cert" not in credentials:
        pytest.skip("openssl could not make a certificate")
    with (
        echo_server(ping_interval=None) as silent,
        run_envoy(
            tmp_path,
            ["asr_realtime", "tts_realtime"],
            tls_cert_file=credentials["cert"],
            tls_key_file=credentials["key"],
            rate_limit_requests=3,
            rate_limit_interval_s=60,
            stream_idle_timeout_s=1,
            asr_websocket_upstream=f"127.0.0.1:{silent}",
            tts_websocket_upstream=f"127.0.0.1:{echo_socket}",
        ) as (gateway, _),
    ):
        context = ssl.create_default_context(cafile=str(credentials["cert"]))
        base = f"wss://localhost:{gateway.port}"
        url = base + "/v1/realtime/speech"
        headers = {IDENTITY: "mallory"}
        async with connect(url, ssl=context, additional_headers=headers, ping_interval=None) as ws:
            seen = await _event(ws)
            assert IDENTITY not in seen["headers"], seen
            await asyncio.sleep(2.5)  # no message, but the server's pings every 0.3 s
            await ws.send("still here")
            assert await asyncio.wait_for(ws.recv(), 10) == "still here"
        async with connect(base + "/v1/realtime", ssl=context, ping_interval=None) as ws:
            await _event(ws)
            started = time.monotonic()
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 10)
            assert time.monotonic() - started < 5
        async with connect(url, ssl=context) as ws:
            await _event(ws)
        assert await _refused(url, ssl=context) == 429
