"""Realtime transcription over WebSocket (OpenAI's Realtime protocol) on the ASR service's own
WebSocket port, in-process, no gateway: real whisper-tiny.en weights on real speech (../shared).

- A plain WebSocket client streams clips in real time (100 ms chunks, PCM16 at 24 kHz as OpenAI's
  clients send, and once at 16 kHz): deltas arrive while the audio is still being sent, and the
  completed transcripts, speech started/stopped times and turn times are StreamingRecognize's on
  the same audio with the equivalent config (interim results, voice activity events, 500 ms
  endpoint silence, VAD threshold 0.5, word times, language left to the model).
- The official `openai` package talks to the server as it talks to OpenAI: its GA realtime client
  (`client.realtime.connect()`, a `session.update` whose session type is "transcription") and its
  beta one (`client.beta.realtime.connect(..., extra_query={"intent": "transcription"})` with
  `transcription_session.update`), both pointed here with `websocket_base_url`.
- Bad input gets an `error` event naming the problem (or, when the connection cannot go on, a
  close code), while a concurrent session completes normally; handshakes: 404, 401, identity.
- A client that vanishes mid-utterance (TCP dropped, no close frame) frees its stream at once: with
  max_streams=1 the next session works right away.
- `input_audio_buffer.clear` drops the turn in progress; `commit` forces its final now.

The gateway_auth setting is read from SPEECHMESH_GATEWAY_AUTH only (a validation alias, no
populate_by_name): `running_asr(..., gateway_auth="api_key")` would be silently ignored, so the
servers here are given the alias.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import time

import numpy as np
import pytest
import soundfile as sf
import soxr
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from speechmesh.asr.realtime import PATH
from speechmesh.asr.v1 import asr_pb2
from speechmesh.runtime import metrics
from speechmesh.runtime.streams import StreamSlots
from tests.asr_client import chunked, normalize, stream_config, stub
from tests.conftest import AUDIO, TINY_EN, requires_shared, running_asr

pytestmark = [requires_shared, pytest.mark.real_weights]

CHUNK_S = 0.1
#: Silence after a clip on the gRPC side before half-closing, seconds (the clips end in silence
#: too): enough for the endpoint (0.5 s) and a sentence pause (1.5 s).
TAIL_S = 2.0
#: The most silence the WebSocket side sends after a clip while waiting for its turns, seconds.
MAX_TAIL_S = 5.0
IDENTITY = {"x-speechmesh-identity": "alice"}
GOFORWARD = "goforward.wav"  # "go forward ten meters", 2.8 s
ILL_DISPOSED = "librivox/sense_and_sensibility_01_austen_64kb-0880.wav"  # 3.0 s
AMIABLE = "librivox/sense_and_sensibility_01_austen_64kb-0930.wav"  # 3.3 s
LONG = "librivox/sense_and_sensibility_01_austen_64kb-0870.wav"  # 7.1 s
COMPLETED = "conversation.item.input_audio_transcription.completed"
DELTA = "conversation.item.input_audio_transcription.delta"
STARTED = "input_audio_buffer.speech_started"
STOPPED = "input_audio_buffer.speech_stopped"


@pytest.fixture(scope="module")
async def asr():
    """ASR on whisper-tiny.en with a WebSocket port and a 16 KiB message limit: (host, channel)."""
    async with running_asr(TINY_EN, websocket_port=0, max_websocket_message_kb=16) as served:
        yield served


@pytest.fixture(scope="module")
async def gated_asr():
    """ASR taking one stream at most, behind a gateway that authenticates callers."""
    async with running_asr(
        TINY_EN, websocket_port=0, max_streams=1, **{"SPEECHMESH_GATEWAY_AUTH": "api_key"}
    ) as served:
        assert served[0].settings.gateway_auth == "api_key"
        yield served


# -- audio -------------------------------------------------------------------------------------


def pcm(path: str, rate: int, seconds: float | None = None) -> bytes:
    """A clip as mono 16-bit PCM at `rate` (its first `seconds`, when given)."""
    samples, source_rate = sf.read(AUDIO / path, dtype="float32", always_2d=True)
    mono = samples.mean(axis=1)
    if source_rate != rate:
        mono = soxr.resample(mono, source_rate, rate)
    if seconds is not None:
        mono = mono[: int(seconds * rate)]
    return (np.clip(mono, -1, 1) * 32767).astype("<i2").tobytes()


def step(rate: int) -> int:
    """Bytes in one 100 ms chunk."""
    return int(rate * CHUNK_S) * 2


def ms(size: int, rate: int) -> float:
    return size / 2 / rate * 1000


# -- a plain WebSocket client ------------------------------------------------------------------


def url(port: int, query: str = "", path: str = PATH) -> str:
    return f"ws://127.0.0.1:{port}{path}" + (f"?{query}" if query else "")


class Realtime:
    """One /v1/realtime connection: sends events, records every event it gets (with its arrival
    time) until the connection closes."""

    def __init__(self, ws: ClientConnection):
        self.ws = ws
        self.events: list[dict] = []
        self.times: list[float] = []
        self.closed = asyncio.Event()
        self._arrived = asyncio.Event()
        self._reader = asyncio.create_task(self._read())

    @classmethod
    @contextlib.asynccontextmanager
    async def open(cls, port: int, query: str = "", headers=None):
        async with connect(url(port, query), additional_headers=headers) as ws:
            client = cls(ws)
            try:
                yield client
            finally:
                client._reader.cancel()

    async def _read(self) -> None:
        try:
            async for message in self.ws:
                self.events.append(json.loads(message))
                self.times.append(time.monotonic())
                self._arrived.set()
        except ConnectionClosed:
            pass
        finally:
            self.closed.set()
            self._arrived.set()

    async def send(self, kind: str, **fields) -> None:
        await self.ws.send(json.dumps({"type": kind, **fields}))

    async def append(self, data: bytes) -> None:
        await self.send("input_audio_buffer.append", audio=base64.b64encode(data).decode())

    async def append_all(self, data: bytes, rate: int) -> None:
        """`data` in 100 ms chunks, as fast as the socket takes them."""
        for offset in range(0, len(data), step(rate)):
            await self.append(data[offset : offset + step(rate)])

    def of(self, kind: str) -> list[dict]:
        return [event for event in self.events if event["type"] == kind]

    def types(self) -> list[str]:
        return [event["type"] for event in self.events]

    async def wait(self, kind: str, count: int = 1, timeout: float = 20.0) -> dict:
        """The `count`-th event of `kind`, once it arrived."""

        async def arrival() -> dict:
            while len(self.of(kind)) < count:
                if self.closed.is_set():
                    raise AssertionError(
                        f"closed ({self.ws.close_code} {self.ws.close_reason!r}) before {kind}"
                        f" #{count}: {self.events}"
                    )
                self._arrived.clear()
                await self._arrived.wait()
            return self.of(kind)[count - 1]

        try:
            return await asyncio.wait_for(arrival(), timeout)
        except TimeoutError:
            raise AssertionError(f"no {kind} #{count} within {timeout} s: {self.types()}") from None

    def turns_done(self) -> bool:
        """Whether every turn since the last clear has completed (and there was one)."""
        types = self.types()
        if "input_audio_buffer.cleared" in types:
            types = types[len(types) - types[::-1].index("input_audio_buffer.cleared") :]
        started = types.count(STARTED)
        return started > 0 and types.count(STOPPED) == types.count(COMPLETED) == started

    async def until_turns_done(self, rate: int, paced: bool, timeout: float = 20.0) -> int:
        """Silence until every turn that started has completed: in real time (at most
        MAX_TAIL_S of it) when `paced`, else TAIL_S of it at once; returns the bytes sent."""
        silence, sent = bytes(step(rate)), 0
        start = time.monotonic()
        while not self.turns_done() and sent < ms_bytes(MAX_TAIL_S if paced else TAIL_S, rate):
            await self.append(silence)
            sent += len(silence)
            if paced:
                await _sleep_until(start + sent / len(silence) * CHUNK_S)
        with contextlib.suppress(TimeoutError):
            await _until(self.turns_done, timeout)
        assert self.turns_done(), f"turns not done within {timeout} s: {self.types()}"
        return sent


def ms_bytes(seconds: float, rate: int) -> int:
    return int(seconds * rate) * 2


async def _sleep_until(moment: float) -> None:
    await asyncio.sleep(max(0.0, moment - time.monotonic()))


def ga_update(rate: int = 24000, **transcription) -> dict:
    return {
        "session": {
            "type": "transcription",
            "audio": {
                "input": {
                    "format": {"type": "audio/pcm", "rate": rate},
                    "transcription": transcription,
                }
            },
        }
    }


async def transcribe(port: int, path: str, *, paced: bool, headers=None) -> tuple[Realtime, str]:
    """One GA session on `path` at 24 kHz: the client and its completed transcripts, joined."""
    async with Realtime.open(port, headers=headers) as client:
        await client.wait("session.created")
        await client.send("session.update", **ga_update())
        await client.wait("session.updated")
        data = pcm(path, 24000)
        if paced:
            await _send_paced(client, data, 24000)
        else:
            await client.append_all(data, 24000)
        await client.until_turns_done(24000, paced=paced)
        return client, " ".join(event["transcript"] for event in client.of(COMPLETED))


async def _send_paced(client: Realtime, data: bytes, rate: int) -> float:
    """`data` in real time; returns when its last chunk was sent."""
    start, size = time.monotonic(), step(rate)
    for index, offset in enumerate(range(0, len(data), size)):
        await client.append(data[offset : offset + size])
        await _sleep_until(start + (index + 1) * CHUNK_S)
    return time.monotonic()


def stream_slots(host) -> StreamSlots:
    """The servicer's StreamSlots, which the app's /v1/realtime handler shares."""
    handler = host.app.websocket_routes[PATH]
    return next(
        cell.cell_contents
        for cell in handler.__closure__ or ()
        if isinstance(cell.cell_contents, StreamSlots)
    )


async def _until(condition, timeout: float) -> float:
    """Seconds until `condition()` held; TimeoutError after `timeout`."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            raise TimeoutError(f"not within {timeout} s")
        await asyncio.sleep(0.005)
    return time.monotonic() - start


# -- the gRPC reference ------------------------------------------------------------------------


async def streaming_recognize(channel, data: bytes, rate: int):
    """StreamingRecognize with the config a realtime session runs (server_vad defaults), then
    TAIL_S of silence, as fast as possible: (finals, [(event, offset ms)]). Each clip here is
    one run of speech (no pause the endpointer cuts at, so no probe whose timing could matter):
    its final and speech events depend on the audio alone, not on the pace."""
    first = stream_config(
        rate,
        interim_results=True,
        enable_voice_activity_events=True,
        vad_threshold=0.5,
        config=asr_pb2.RecognitionConfig(enable_word_time_offsets=True),
    )
    first.streaming_config.endpoint_silence.FromMilliseconds(500)
    responses = [
        response
        async for response in stub(channel).StreamingRecognize(
            chunked(first, data, rate, chunk_s=CHUNK_S, speed=0, tail_silence_s=TAIL_S),
            timeout=60,
        )
    ]
    finals = [r.result for r in responses if r.HasField("result") and r.result.is_final]
    names = {
        asr_pb2.SpeechActivityEvent.TYPE_SPEECH_BEGIN: STARTED,
        asr_pb2.SpeechActivityEvent.TYPE_SPEECH_END: STOPPED,
    }
    events = [
        (names[r.speech_event.type], _ms(r.speech_event.offset))
        for r in responses
        if r.HasField("speech_event")
    ]
    return finals, events


def _ms(duration) -> float:
    return duration.seconds * 1000 + duration.nanos / 1e6


# -- 1. real time, against StreamingRecognize --------------------------------------------------


@pytest.mark.parametrize(
    ("path", "shape", "rate"),
    [(LONG, "ga", 24000), (ILL_DISPOSED, "beta", 24000), (AMIABLE, "ga", 16000)],
    ids=["ga-24k", "beta-intent-24k", "ga-16k"],
)
async def test_realtime_matches_streaming_recognize(asr, path, shape, rate):
    host, channel = asr
    data = pcm(path, rate)
    finals, grpc_events = await streaming_recognize(channel, data, rate)
    assert finals and all(f.transcript for f in finals), finals

    query = "intent=transcription" if shape == "beta" else ""
    async with Realtime.open(host.websocket_port, query) as client:
        if shape == "beta":
            created = await client.wait("transcription_session.created")
            assert created["session"]["input_audio_format"] == "pcm16"
        else:
            created = await client.wait("session.created")
            await client.send("session.update", **ga_update(rate))
            updated = await client.wait("session.updated")
            assert updated["session"]["audio"]["input"]["format"] == {
                "type": "audio/pcm",
                "rate": rate,
            }
        speech_sent = await _send_paced(client, data, rate)
        await client.until_turns_done(rate, paced=True)

    completed = client.of(COMPLETED)
    assert " ".join(e["transcript"] for e in completed) == " ".join(f.transcript for f in finals)
    # Deltas while the speaker talks, not only at the end: on the 7 s clip, before its audio
    # was all sent (on the 3 s ones a machine as loaded as 2 cores running several suites may
    # hold the interim decodes back until the final).
    deltas = [t for e, t in zip(client.events, client.times, strict=True) if e["type"] == DELTA]
    assert deltas, client.types()
    if path == LONG:
        assert deltas[0] < speech_sent, (deltas[0] - speech_sent, client.types())
    # Every turn: speech_started, deltas, speech_stopped, committed, completed, on one item.
    for turn in completed:
        item = [e["type"] for e in client.events if e.get("item_id") == turn["item_id"]]
        assert item[0] == STARTED and item[-1] == COMPLETED, item
        assert item.index(STOPPED) < item.index("input_audio_buffer.committed"), item
    # Speech events at the gRPC offsets (ms, rounded), and the turns' times.
    ws_events = [
        (e["type"], e["audio_start_ms"] if e["type"] == STARTED else e["audio_end_ms"])
        for e in client.events
        if e["type"] in (STARTED, STOPPED)
    ]
    assert [kind for kind, _ in ws_events] == [kind for kind, _ in grpc_events]
    for (_, ws_ms), (_, grpc_ms) in zip(ws_events, grpc_events, strict=True):
        assert abs(ws_ms - grpc_ms) <= 1, (ws_events, grpc_events)
    for turn, final in zip(completed, finals, strict=True):
        times = turn["speechmesh"]
        assert abs(times["start_ms"] - _ms(final.start_offset)) <= 1
        assert abs(times["end_ms"] - _ms(final.end_offset)) <= 1
        assert [w["word"] for w in times["words"]] == [w.word for w in final.words]


async def test_offsets_count_earlier_audio_at_its_own_rate(asr):
    """A session.update that changes the rate starts a new stream; its times go on from the
    audio before it, measured at the rate that audio had."""
    host, _ = asr
    async with Realtime.open(host.websocket_port) as client:
        await client.wait("session.created")
        await client.send("session.update", **ga_update(24000))
        await client.wait("session.updated")
        first = pcm(GOFORWARD, 24000)
        await client.append_all(first, 24000)
        tail = await client.until_turns_done(24000, paced=False)
        first_ms = ms(len(first) + tail, 24000)

        await client.send("session.update", **ga_update(16000))
        await client.wait("session.updated", 2)
        await client.append_all(pcm(GOFORWARD, 16000), 16000)
        await client.wait(COMPLETED, 2)
    one, two = client.of(STARTED)
    assert two["audio_start_ms"] - first_ms == pytest.approx(one["audio_start_ms"], abs=40)
    one, two = client.of(COMPLETED)
    assert normalize(one["transcript"]) == normalize(two["transcript"])


# -- 2. the official openai client -------------------------------------------------------------


def _openai_client(port: int):
    openai = pytest.importorskip("openai")
    return openai.AsyncOpenAI(
        api_key="sk-not-checked",
        base_url=f"http://127.0.0.1:{port}/v1",
        websocket_base_url=f"ws://127.0.0.1:{port}/v1",
        max_retries=0,
    )


async def _openai_transcript(connection, data: bytes) -> tuple[list[str], str]:
    """Sends `data` (24 kHz PCM16) and silence, in 100 ms appends; (event types, transcript)."""
    size = step(24000)
    for offset in range(0, len(data), size):
        await connection.input_audio_buffer.append(
            audio=base64.b64encode(data[offset : offset + size]).decode()
        )
    for _ in range(int(TAIL_S / CHUNK_S)):
        await connection.input_audio_buffer.append(audio=base64.b64encode(bytes(size)).decode())
    types = []
    async with asyncio.timeout(20):
        async for event in connection:
            types.append(event.type)
            assert event.type != "error", event
            if event.type == COMPLETED:
                return types, event.transcript
    raise AssertionError(f"the connection ended: {types}")


async def test_openai_client_ga_transcription_session(asr):
    host, _ = asr
    client = _openai_client(host.websocket_port)
    async with client.realtime.connect() as connection:
        created = await connection.recv()
        assert created.type == "session.created"
        await connection.session.update(
            session={
                "type": "transcription",
                "audio": {
                    "input": {
                        "format": {"type": "audio/pcm", "rate": 24000},
                        "transcription": {"model": "gpt-4o-transcribe", "language": "en"},
                        "turn_detection": {"type": "server_vad", "silence_duration_ms": 500},
                    }
                },
            }
        )
        updated = await connection.recv()
        assert updated.type == "session.updated", updated
        assert updated.session.type == "transcription"
        # The model as asked for (OpenAI's name, served by the default model).
        assert updated.session.audio.input.transcription.model == "gpt-4o-transcribe"
        types, transcript = await _openai_transcript(connection, pcm(GOFORWARD, 24000))
    assert normalize(transcript) == "go forward 10 meters", transcript
    assert STARTED in types and DELTA in types, types


async def test_openai_client_beta_transcription_session(asr):
    host, _ = asr
    client = _openai_client(host.websocket_port)
    connect_beta = client.beta.realtime.connect(
        model="gpt-4o-transcribe", extra_query={"intent": "transcription"}
    )
    async with connect_beta as connection:
        created = await connection.recv()
        assert created.type == "transcription_session.created"
        await connection.transcription_session.update(
            session={
                "input_audio_format": "pcm16",
                "input_audio_transcription": {"model": "whisper-1", "language": "en"},
                "turn_detection": {"type": "server_vad", "silence_duration_ms": 500},
            }
        )
        updated = await connection.recv()
        assert updated.type == "transcription_session.updated", updated
        types, transcript = await _openai_transcript(connection, pcm(GOFORWARD, 24000))
    assert normalize(transcript) == "go forward 10 meters", transcript
    assert STARTED in types and DELTA in types, types


# -- 3. bad input ------------------------------------------------------------------------------


async def test_bad_input_answers_errors_while_others_are_served(asr):
    host, _ = asr
    port = host.websocket_port
    other = asyncio.create_task(transcribe(port, GOFORWARD, paced=True))
    async with Realtime.open(port) as bad:
        await bad.wait("session.created")
        errors = 0

        async def error(code: str, param: str | None = None, event_id: str | None = None):
            nonlocal errors
            errors += 1
            event = (await bad.wait("error", errors))["error"]
            assert (event["code"], event["param"]) == (code, param), event
            assert event["message"] and event["type"] == "invalid_request_error", event
            assert event["event_id"] == event_id, event

        # Audio before any session (no ?intent=transcription, no update).
        await bad.send("input_audio_buffer.append", audio=base64.b64encode(bytes(480)).decode())
        await error("session_not_configured")
        await bad.ws.send("{not json")
        await error("invalid_json")
        await bad.ws.send(b"\x00\x01")
        await error("invalid_json")
        await bad.ws.send("[1, 2]")
        await error("invalid_event")
        await bad.send("response.create", event_id="evt_unknown")
        await error("unknown_event", "type", "evt_unknown")
        await bad.send("session.update", event_id="evt_rate", **ga_update(44100))
        await error("invalid_value", "session.audio.input.format.rate", "evt_rate")
        await bad.send("session.update", event_id="evt_model", **ga_update(model="no-such-model"))
        await error("model_not_found", "session.audio.input.transcription.model", "evt_model")
        # The rejected updates changed nothing.
        await bad.send("session.update", **ga_update(language="en"))
        updated = (await bad.wait("session.updated"))["session"]["audio"]["input"]
        assert updated["format"] == {"type": "audio/pcm", "rate": 24000}
        assert updated["transcription"]["model"] == "whisper-tiny.en"
        await bad.send("input_audio_buffer.append", event_id="evt_b64", audio="not base64!")
        await error("invalid_value", "audio", "evt_b64")
        await bad.send("input_audio_buffer.append", event_id="evt_odd", audio="AAEC")  # 3 bytes
        await error("invalid_value", "audio", "evt_odd")
        await bad.send("input_audio_buffer.commit", event_id="evt_commit")
        await error("input_audio_buffer_commit_empty", None, "evt_commit")
        assert not other.done()

        # The session goes on.
        await bad.append_all(pcm(GOFORWARD, 24000), 24000)
        await bad.until_turns_done(24000, paced=False)
        assert normalize(bad.of(COMPLETED)[0]["transcript"]) == "go forward 10 meters"
        assert len(bad.of("error")) == errors

        # A message over max_websocket_message_kb (16 KiB) ends the connection: 1009.
        await bad.append(bytes(16 * 1024))
        await asyncio.wait_for(bad.closed.wait(), 5)
        assert bad.ws.close_code == 1009, (bad.ws.close_code, bad.ws.close_reason)

    assert not other.done(), "the concurrent session should still be streaming"
    client, transcript = await other
    assert normalize(transcript) == "go forward 10 meters", client.events
    assert not client.of("error")
    await _until(lambda: stream_slots(host).open == 0, 2)


async def test_handshakes(asr, gated_asr):
    host, _ = asr
    with pytest.raises(InvalidStatus) as refused:
        await connect(url(host.websocket_port, path="/v1/nowhere"))
    assert refused.value.response.status_code == 404

    gated, _ = gated_asr
    with pytest.raises(InvalidStatus) as refused:
        await connect(url(gated.websocket_port, "intent=transcription"))
    assert refused.value.response.status_code == 401
    assert b"x-speechmesh-identity" in refused.value.response.body
    async with Realtime.open(gated.websocket_port, "intent=transcription", IDENTITY) as client:
        await client.wait("transcription_session.created")


# -- 4. a client that vanishes -----------------------------------------------------------------


async def test_vanished_client_frees_its_stream_at_once(gated_asr):
    host, _ = gated_asr
    port, slots = host.websocket_port, stream_slots(host)
    assert slots.limit == 1
    sockets = metrics.ACTIVE_STREAMS.labels("asr", "websocket:" + PATH)
    before = sockets._value.get()

    gone = Realtime(await connect(url(port, "intent=transcription"), additional_headers=IDENTITY))
    await gone.wait("transcription_session.created")
    await gone.append_all(pcm(LONG, 24000, seconds=2.0), 24000)
    await gone.wait(STARTED)
    assert slots.open == 1

    # While it holds the only stream, another session's audio is refused: error, then 1013.
    async with Realtime.open(port, "intent=transcription", IDENTITY) as refused:
        await refused.wait("transcription_session.created")
        await refused.append(bytes(step(24000)))
        assert (await refused.wait("error"))["error"]["code"] == "rate_limit_exceeded"
        await asyncio.wait_for(refused.closed.wait(), 5)
        assert refused.ws.close_code == 1013

    # Mid-utterance, the client drops its TCP connection without a close frame.
    gone.ws.transport.abort()
    await _until(lambda: slots.open == 0, 1.0)
    client, transcript = await transcribe(port, GOFORWARD, paced=False, headers=IDENTITY)
    assert normalize(transcript) == "go forward 10 meters", client.events
    assert not client.of("error")
    await _until(lambda: sockets._value.get() == before, 2)


# -- 5. clear and commit -----------------------------------------------------------------------


async def test_clear_drops_the_turn_in_progress(asr):
    host, _ = asr
    async with Realtime.open(host.websocket_port) as client:
        await client.wait("session.created")
        await client.send("session.update", **ga_update())
        await client.wait("session.updated")
        await client.append_all(pcm(ILL_DISPOSED, 24000, seconds=1.8), 24000)
        cleared_item = (await client.wait(STARTED))["item_id"]
        await client.send("input_audio_buffer.clear")
        await client.wait("input_audio_buffer.cleared")
        await client.append_all(pcm(GOFORWARD, 24000), 24000)
        await client.until_turns_done(24000, paced=False)
        await asyncio.sleep(0.3)  # nothing late for the cleared turn
    (completed,) = client.of(COMPLETED)
    assert normalize(completed["transcript"]) == "go forward 10 meters", client.events
    assert completed["item_id"] != cleared_item
    late = [
        e["type"]
        for e in client.events[client.types().index("input_audio_buffer.cleared") :]
        if e.get("item_id") == cleared_item
    ]
    assert not late, late
    assert len(client.of("input_audio_buffer.committed")) == 1


@pytest.mark.parametrize("turn_detection", ["server_vad", None], ids=["server-vad", "manual"])
async def test_commit_forces_a_final_now(asr, turn_detection):
    host, _ = asr
    update = ga_update()
    if turn_detection is None:
        update["session"]["audio"]["input"]["turn_detection"] = None
    async with Realtime.open(host.websocket_port) as client:
        await client.wait("session.created")
        await client.send("session.update", **update)
        updated = await client.wait("session.updated")
        detection = updated["session"]["audio"]["input"]["turn_detection"]
        assert (detection and detection["type"]) == turn_detection, detection
        # Mid-sentence and no audio after it: no endpoint (which needs silence) can end the
        # turn; only the commit does.
        await client.append_all(pcm(ILL_DISPOSED, 24000, seconds=1.8), 24000)
        item = (await client.wait(STARTED))["item_id"]
        await asyncio.sleep(0.3)
        assert not client.of(COMPLETED)
        start = time.monotonic()
        await client.send("input_audio_buffer.commit")
        committed = await client.wait("input_audio_buffer.committed")
        completed = await client.wait(COMPLETED)
        latency = time.monotonic() - start
    assert committed["item_id"] == completed["item_id"] == item
    assert normalize(completed["transcript"]).startswith("he was not"), completed
    assert latency < 15, latency


async def test_a_commit_of_silence_is_answered_with_an_empty_turn(asr):
    """Audio without speech, then a commit: committed and completed with no text (the turn
    a commit makes, as OpenAI answers one), after the turns before it; then the session goes
    on."""
    host, _ = asr
    async with Realtime.open(host.websocket_port) as client:
        await client.wait("session.created")
        await client.send("session.update", **ga_update())
        await client.wait("session.updated")
        await client.append_all(pcm(GOFORWARD, 24000), 24000)
        await client.until_turns_done(24000, paced=False)
        await client.append_all(bytes(ms_bytes(1.0, 24000)), 24000)
        await client.send("input_audio_buffer.commit")
        empty = await client.wait(COMPLETED, count=2)
        await client.append_all(pcm(GOFORWARD, 24000), 24000)
        for _ in range(50):  # silence until the turn ends (at most 5 s of it)
            if len(client.of(COMPLETED)) == 3:
                break
            await client.append(bytes(step(24000)))
            await asyncio.sleep(0.05)
        await client.wait(COMPLETED, count=3)
    first, second, third = client.of(COMPLETED)
    assert (
        normalize(first["transcript"]) == normalize(third["transcript"]) == "go forward 10 meters"
    )
    assert second is empty and second["transcript"] == ""
    committed = client.of("input_audio_buffer.committed")
    assert [c["item_id"] for c in committed] == [
        first["item_id"],
        second["item_id"],
        third["item_id"],
    ]
    assert len({first["item_id"], second["item_id"], third["item_id"]}) == 3
