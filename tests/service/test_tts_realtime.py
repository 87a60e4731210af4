"""Speech over WebSocket (`/v1/realtime/speech`) end to end on tiny random checkpoints.

A client streams text pieces in and gets audio chunks out on one socket; the speech is
StreamingSynthesize's own (same config, same seed: the same samples), flushes end items, bad
events answer error events while the session goes on, and a client that vanishes frees its stream
slot at once. With ../shared, the real voice vits-en-joe speaks through the socket and
whisper-tiny.en hears it.
"""

from __future__ import annotations

import asyncio
import base64
import json

import grpc
import numpy as np
import pytest
from prometheus_client import REGISTRY
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from speechmesh.asr.v1 import asr_pb2, asr_pb2_grpc
from speechmesh.audio.v1 import audio_pb2
from speechmesh.dsp.audio import RawFormat, decode_audio
from speechmesh.tts.realtime import PATH
from speechmesh.tts.v1 import tts_pb2, tts_pb2_grpc
from tests.asr_client import wer
from tests.conftest import SHARED, TINY_EN, running_asr, running_tts
from tests.sounds import REFERENCE

CSM_RATE = 24000
TIMEOUT = 60


@pytest.fixture(scope="module")
async def served(tiny_csm_checkpoint, tiny_vits_checkpoint, tmp_path_factory):
    """TTS on tiny CSM (default) and VITS with its WebSocket port: (host, channel)."""
    voices = tmp_path_factory.mktemp("realtime-voices")
    async with running_tts(
        tiny_csm_checkpoint, voices, str(tiny_vits_checkpoint), websocket_port=0
    ) as served:
        yield served


@pytest.fixture(scope="module")
def api(served) -> tts_pb2_grpc.TtsServiceStub:
    return tts_pb2_grpc.TtsServiceStub(served[1])


def url(host) -> str:
    return f"ws://127.0.0.1:{host.websocket_port}{PATH}"


async def send(ws, kind: str, **fields) -> None:
    await ws.send(json.dumps({"type": kind, **fields}))


async def receive(ws) -> dict:
    return json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))


async def until(ws, kind: str) -> tuple[dict, list[dict]]:
    """The next event of `kind`, and the events before it (no errors unless `kind` is one)."""
    before = []
    while (event := await receive(ws))["type"] != kind:
        assert event["type"] != "error" or kind == "response.output_audio.done", event
        before.append(event)
    return event, before


async def opened(host, **session) -> object:
    """A connected socket past session.created (and session.updated with `session`)."""
    ws = await connect(url(host), max_size=None)
    created = await receive(ws)
    assert created["type"] == "session.created"
    if session:
        await send(ws, "session.update", session=session)
        updated, _ = await until(ws, "session.updated")
        assert updated["session"]["id"] == created["session"]["id"]
    return ws


async def spoken(ws) -> tuple[list[dict], dict]:
    """The audio deltas of the next item, and its done event."""
    done, events = await until(ws, "response.output_audio.done")
    deltas = [e for e in events if e["type"] == "response.output_audio.delta"]
    assert all(e["item_id"] == done["item_id"] for e in deltas)
    return deltas, done


def audio_of(deltas: list[dict]) -> bytes:
    return b"".join(base64.b64decode(d["delta"]) for d in deltas)


def pcm(data: bytes) -> np.ndarray:
    return np.frombuffer(data, "<i2").astype(np.int32)


def seeded(seed: int, rate: int = CSM_RATE, **extra) -> dict:
    return {
        "audio": {"output": {"format": {"type": "audio/pcm", "rate": rate}}},
        "speechmesh": {"seed": seed, **extra},
    }


async def grpc_stream(api, pieces: list[str | None], **config) -> list:
    """StreamingSynthesize's audio chunks for `pieces` (None: a flush) as PCM."""

    async def requests():
        yield tts_pb2.StreamingSynthesizeRequest(
            streaming_config=tts_pb2.StreamingSynthesisConfig(
                config=tts_pb2.SynthesisConfig(**config)
            )
        )
        for piece in pieces:
            if piece is None:
                yield tts_pb2.StreamingSynthesizeRequest(
                    control=tts_pb2.StreamingControl(action=tts_pb2.StreamingControl.ACTION_FLUSH)
                )
            else:
                yield tts_pb2.StreamingSynthesizeRequest(text=piece)

    responses = [r async for r in api.StreamingSynthesize(requests(), timeout=120)]
    return [r.audio_chunk for r in responses if r.HasField("audio_chunk")]


def pcm_config(rate: int = CSM_RATE) -> audio_pb2.OutputAudioConfig:
    return audio_pb2.OutputAudioConfig(
        encoding=audio_pb2.OUTPUT_ENCODING_PCM, sample_rate_hertz=rate
    )


# -- the session ---------------------------------------------------------------------------


async def test_session_created_then_updated(served, tiny_csm_checkpoint, tiny_vits_checkpoint):
    host, _ = served
    async with connect(url(host)) as ws:
        created = await receive(ws)
        session = created["session"]
        assert created["type"] == "session.created" and created["event_id"]
        assert session["type"] == "speech" and session["id"].startswith("sess_")
        assert session["model"] == tiny_csm_checkpoint.name
        assert session["audio"]["output"]["format"] == {"type": "audio/pcm", "rate": 24000}
        assert session["speechmesh"]["seed"] > 0  # chosen for the session
        await send(
            ws,
            "session.update",
            event_id="u1",
            session={
                "audio": {"output": {"voice": "default", "speed": 1.5}},
                "speechmesh": {"seed": 7, "language": "en"},
            },
        )
        updated = (await until(ws, "session.updated"))[0]["session"]
        # The preset voice "default" is the tiny VITS's: the session speaks with that model.
        assert updated["model"] == tiny_vits_checkpoint.name
        assert updated["audio"]["output"]["voice"] == "default"
        assert updated["audio"]["output"]["speed"] == 1.5
        assert updated["speechmesh"]["seed"] == 7 and updated["speechmesh"]["language"] == "en"
        # Fields left out keep their values; rate 0 is the model's own.
        await send(
            ws,
            "session.update",
            session={"audio": {"output": {"format": {"type": "audio/pcm", "rate": 0}}}},
        )
        again = (await until(ws, "session.updated"))[0]["session"]
        assert again["audio"]["output"]["speed"] == 1.5 and again["speechmesh"]["seed"] == 7
        assert again["audio"]["output"]["format"]["rate"] not in (0, 24000)


async def test_pieces_in_audio_out_same_as_streaming_synthesize(served, api):
    host, _ = served
    pieces = ["The first sentence is ", "here. And the second", " one ends here."]
    ws = await opened(host, **seeded(21))
    async with ws:
        await send(ws, "input_text_buffer.append", text=pieces[0])
        await send(ws, "input_text_buffer.append", text=pieces[1])
        # The first sentence is spoken before the rest of the text is sent.
        first = await receive(ws)
        assert first["type"] == "response.output_audio.delta"
        assert first["speechmesh"]["text"] == "The first sentence is here."
        await send(ws, "input_text_buffer.append", text=pieces[2])
        await send(ws, "input_text_buffer.commit", event_id="c1")
        committed, before = await until(ws, "input_text_buffer.committed")
        assert committed["item_id"] == first["item_id"]
        assert committed["previous_item_id"] is None
        deltas, done = await spoken(ws)
    deltas = [first, *before, *deltas]
    assert all(d["type"] == "response.output_audio.delta" for d in deltas)
    info = done["speechmesh"]
    assert info["status"] == "completed" and info["sentence_count"] == 2
    assert info["character_count"] == len("".join(pieces)) and info["seed"] == 21
    assert info["sample_rate"] == CSM_RATE
    texts = [d["speechmesh"]["text"] for d in deltas if "text" in d["speechmesh"]]
    assert texts == ["The first sentence is here.", "And the second one ends here."]
    assert [
        d["speechmesh"]["sentence_index"] for d in deltas if d["speechmesh"]["sentence_end"]
    ] == [0, 1]
    at = 0
    for delta in deltas:  # offsets run on without gaps
        assert abs(delta["speechmesh"]["offset_ms"] - at) <= 2
        at += delta["speechmesh"]["duration_ms"]
    audio = pcm(audio_of(deltas))
    assert abs(len(audio) / CSM_RATE * 1000 - info["duration_ms"]) <= 2
    # StreamingSynthesize with the same pieces, seed and output: the same samples.
    chunks = await grpc_stream(api, pieces, seed=21, output_audio_config=pcm_config())
    expected = pcm(b"".join(c.audio for c in chunks))
    assert len(audio) == len(expected)
    assert np.abs(audio - expected).max() == 0


async def test_commit_flushes_and_items_follow_each_other(served, api):
    host, _ = served
    ws = await opened(host, **seeded(4, rate=16000))
    async with ws:
        await send(ws, "input_text_buffer.append", text="no end yet")
        await asyncio.sleep(0.5)
        # Text without a sentence end waits for more: nothing is spoken before the flush.
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(ws.recv(), 0.5)
        await send(ws, "input_text_buffer.commit")
        committed, _ = await until(ws, "input_text_buffer.committed")
        first, first_done = await spoken(ws)
        assert [d["speechmesh"]["text"] for d in first if "text" in d["speechmesh"]] == [
            "no end yet"
        ]
        await send(ws, "input_text_buffer.append", text="and the rest")
        await send(ws, "input_text_buffer.commit")
        second_commit, _ = await until(ws, "input_text_buffer.committed")
        second, second_done = await spoken(ws)
    assert second_commit["previous_item_id"] == committed["item_id"]
    assert second_done["item_id"] != first_done["item_id"]
    assert first_done["response_id"] != second_done["response_id"]
    # The second item's audio follows the first's in the session's timeline.
    assert second[0]["speechmesh"]["offset_ms"] == pytest.approx(
        first_done["speechmesh"]["duration_ms"], abs=2
    )
    assert second_done["speechmesh"]["sample_rate"] == 16000
    # Each item is what StreamingSynthesize speaks for its text alone.
    for deltas, text in ((first, "no end yet"), (second, "and the rest")):
        chunks = await grpc_stream(api, [text], seed=4, output_audio_config=pcm_config(16000))
        expected = pcm(b"".join(c.audio for c in chunks))
        audio = pcm(audio_of(deltas))
        assert len(audio) == len(expected) and np.abs(audio - expected).max() == 0


@pytest.mark.parametrize(("kind", "law"), [("audio/pcmu", "mulaw"), ("audio/pcma", "alaw")])
async def test_g711_output(served, kind, law):
    host, _ = served
    text = "Telephone speech."
    ws = await opened(host, **seeded(5, rate=8000))
    async with ws:
        await send(ws, "input_text_buffer.append", text=text)
        await send(ws, "input_text_buffer.commit")
        linear, _ = await spoken(ws)
        await send(ws, "session.update", session={"audio": {"output": {"format": {"type": kind}}}})
        updated, _ = await until(ws, "session.updated")
        assert updated["session"]["audio"]["output"]["format"] == {"type": kind}
        await send(ws, "input_text_buffer.append", text=text)
        await send(ws, "input_text_buffer.commit")
        coded, done = await spoken(ws)
    assert done["speechmesh"]["sample_rate"] == 8000
    samples = pcm(audio_of(linear)) / 32768
    g711 = audio_of(coded)
    assert len(g711) == len(samples)  # one byte a sample
    decoded = decode_audio(g711, RawFormat(law, 8000), None).samples
    # G.711 keeps about 13 bits: the same speech, within its quantisation.
    assert np.abs(decoded - samples).max() <= 0.02 + 0.05 * np.abs(samples).max()


async def test_stored_voice_by_name(served, api):
    host, _ = served
    await api.CreateVoice(
        tts_pb2.CreateVoiceRequest(
            voice_id="realtime",
            voice=tts_pb2.Voice(transcript="This is my voice."),
            reference_audio=REFERENCE,
        ),
        timeout=60,
    )
    try:
        ws = await opened(host, **seeded(8), model="")
        async with ws:
            await send(
                ws, "session.update", session={"audio": {"output": {"voice": "voices/realtime"}}}
            )
            await until(ws, "session.updated")
            await send(ws, "input_text_buffer.append", text="Spoken in my voice.")
            await send(ws, "input_text_buffer.commit")
            deltas, done = await spoken(ws)
        assert done["speechmesh"]["status"] == "completed"
        chunks = await grpc_stream(
            api,
            ["Spoken in my voice."],
            seed=8,
            voice="voices/realtime",
            output_audio_config=pcm_config(),
        )
        assert len(audio_of(deltas)) == len(b"".join(c.audio for c in chunks))
    finally:
        await api.DeleteVoice(tts_pb2.DeleteVoiceRequest(name="voices/realtime"), timeout=10)


# -- bad events ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("event", "code", "param"),
    [
        ("not json", "invalid_json", None),
        (b"\x00binary", "invalid_json", None),
        ("[1, 2]", "invalid_event", None),
        ({"type": "response.create"}, "unknown_event", "type"),
        ({"type": "input_text_buffer.append"}, "missing_required_parameter", "text"),
        ({"type": "input_text_buffer.append", "text": ""}, "invalid_value", "text"),
        ({"type": "input_text_buffer.commit"}, "input_text_buffer_commit_empty", None),
        ({"type": "response.cancel"}, "response_cancel_not_active", None),
        ({"type": "session.update"}, "missing_required_parameter", "session"),
        (
            {"type": "session.update", "session": {"type": "transcription"}},
            "unsupported_session_type",
            "session.type",
        ),
        (
            {
                "type": "session.update",
                "session": {"audio": {"output": {"voice": "voices/nobody"}}},
            },
            "voice_not_found",
            "session.audio.output.voice",
        ),
        (
            {"type": "session.update", "session": {"audio": {"output": {"voice": "nobody"}}}},
            "voice_not_found",
            "session.audio.output.voice",
        ),
        (
            {"type": "session.update", "session": {"model": "no-such-model"}},
            "model_not_found",
            "session.model",
        ),
        (
            {"type": "session.update", "session": {"audio": {"output": {"speed": 3}}}},
            "invalid_value",
            "session.audio.output.speed",
        ),
        (
            {"type": "session.update", "session": {"audio": {"output": {"speed": "fast"}}}},
            "invalid_type",
            "session.audio.output.speed",
        ),
        (
            {
                "type": "session.update",
                "session": {"audio": {"output": {"format": {"type": "mp3"}}}},
            },
            "invalid_value",
            "session.audio.output.format",
        ),
        (
            {
                "type": "session.update",
                "session": {"audio": {"output": {"format": {"type": "audio/pcm", "rate": 4000}}}},
            },
            "invalid_value",
            "session.audio.output.format.rate",
        ),
        (
            {
                "type": "session.update",
                "session": {"audio": {"output": {"format": {"type": "audio/pcmu", "rate": 16000}}}},
            },
            "invalid_value",
            "session.audio.output.format.rate",
        ),
        (
            {"type": "session.update", "session": {"speechmesh": {"temperature": 5}}},
            "invalid_value",
            "session.speechmesh.temperature",
        ),
        (
            {"type": "session.update", "session": {"speechmesh": {"language": "xx"}}},
            "invalid_value",
            "session.speechmesh.language",
        ),
        (
            {"type": "session.update", "session": {"speechmesh": {"preset_voice": "nobody"}}},
            "invalid_value",
            "session.speechmesh.preset_voice",
        ),
        (
            {"type": "session.update", "session": {"speechmesh": {"seed": -1}}},
            "invalid_value",
            "session.speechmesh.seed",
        ),
    ],
)
async def test_bad_event_answers_error_and_the_session_goes_on(served, event, code, param):
    host, _ = served
    ws = await opened(host, **seeded(3))
    async with ws:
        if isinstance(event, dict):
            event = {**event, "event_id": "bad1"}
            await ws.send(json.dumps(event))
        else:
            await ws.send(event)
        error = await receive(ws)
        assert error["type"] == "error", error
        assert error["error"]["code"] == code, error
        assert error["error"]["param"] == param
        assert error["error"]["message"]
        assert error["error"]["event_id"] == ("bad1" if isinstance(event, dict) else None)
        # The session still speaks, with its settings unchanged.
        await send(ws, "input_text_buffer.append", text="Still here.")
        await send(ws, "input_text_buffer.commit")
        deltas, done = await spoken(ws)
    assert deltas and done["speechmesh"]["status"] == "completed"
    assert done["speechmesh"]["seed"] == 3 and done["speechmesh"]["sample_rate"] == CSM_RATE


async def test_text_the_voice_cannot_say_fails_its_item_only(served):
    host, _ = served
    # The tiny VITS voice's alphabet has no Greek: its sentence cannot be spoken.
    ws = await opened(host, **seeded(3), model="")
    async with ws:
        await send(ws, "session.update", session={"speechmesh": {"preset_voice": "default"}})
        await until(ws, "session.updated")
        await send(ws, "input_text_buffer.append", text="Ωμέγα λέξη.")
        await send(ws, "input_text_buffer.commit")
        done, before = await until(ws, "response.output_audio.done")
        errors = [e for e in before if e["type"] == "error"]
        assert done["speechmesh"]["status"] == "failed"
        assert errors and errors[0]["error"]["code"] == "invalid_value"
        await send(ws, "input_text_buffer.append", text="Plain words.")
        await send(ws, "input_text_buffer.commit")
        deltas, done = await spoken(ws)
    assert deltas and done["speechmesh"]["status"] == "completed"


async def test_clear_drops_uncommitted_text_and_cancel_stops_speech(served):
    host, _ = served
    ws = await opened(host, **seeded(1))
    async with ws:
        await send(ws, "input_text_buffer.append", text="no end yet")
        await send(ws, "input_text_buffer.clear")
        # The item is cancelled (its done may come before or after the answer to the clear).
        events = {e["type"]: e for e in [await receive(ws), await receive(ws)]}
        assert set(events) == {"input_text_buffer.cleared", "response.output_audio.done"}
        assert events["response.output_audio.done"]["speechmesh"]["status"] == "cancelled"
        await send(ws, "input_text_buffer.commit")
        error, _ = await until(ws, "error")
        assert error["error"]["code"] == "input_text_buffer_commit_empty"
        # Barge-in: a long text is stopped after its first audio.
        long = "First sentence. " + " ".join(f"Sentence {i}." for i in range(40))
        await send(ws, "input_text_buffer.append", text=long)
        await send(ws, "input_text_buffer.commit")
        await until(ws, "response.output_audio.delta")
        await send(ws, "response.cancel")
        done, _ = await until(ws, "response.output_audio.done")
        assert done["speechmesh"]["status"] == "cancelled"
        assert done["speechmesh"]["sentence_count"] < 41
        await send(ws, "input_text_buffer.append", text="After the cancel.")
        await send(ws, "input_text_buffer.commit")
        deltas, done = await spoken(ws)
    assert deltas and done["speechmesh"]["status"] == "completed"


# -- the stream limit ------------------------------------------------------------------------


async def test_vanished_client_frees_its_stream_at_once(
    tiny_csm_checkpoint, tiny_vits_checkpoint, tmp_path
):
    def jobs_done() -> float:
        sample = REGISTRY.get_sample_value(
            "speechmesh_batch_size_sum", {"model": tiny_csm_checkpoint.name}
        )
        return sample or 0.0

    async with running_tts(
        tiny_csm_checkpoint, tmp_path / "voices", max_streams=1, websocket_port=0
    ) as (host, channel):
        api = tts_pb2_grpc.TtsServiceStub(channel)
        first = await opened(host)
        long = "First sentence. " + " ".join(f"Sentence {i}." for i in range(40))
        await send(first, "input_text_buffer.append", text=long)
        await until(first, "response.output_audio.delta")
        # The session holds the one stream slot: another socket and StreamingSynthesize wait.
        second = await opened(host)
        await send(second, "input_text_buffer.append", text="Me too.")
        error, _ = await until(second, "error")
        assert error["error"]["code"] == "rate_limit_exceeded"
        with pytest.raises(ConnectionClosed):
            await receive(second)
        assert second.close_code == 1013
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await grpc_stream(api, ["Hello."])
        assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        # The first client vanishes without a close handshake.
        first.transport.abort()
        await asyncio.sleep(0.5)
        after_vanish = jobs_done()
        await asyncio.sleep(1.0)
        assert jobs_done() - after_vanish <= 8  # at most a batch already running
        third = await opened(host)
        async with third:
            await send(third, "input_text_buffer.append", text="My turn.")
            await send(third, "input_text_buffer.commit")
            deltas, done = await spoken(third)
        assert deltas and done["speechmesh"]["status"] == "completed"
        chunks = await grpc_stream(api, ["Hello."])  # the slot is free again
        assert chunks


# -- a real voice --------------------------------------------------------------------------

JOE = SHARED / "models" / "vits-en-joe"


@pytest.mark.real_weights
@pytest.mark.skipif(
    not (JOE.is_dir() and TINY_EN.is_dir()), reason=f"real voices not found at {SHARED}"
)
async def test_vits_joe_speaks_through_the_socket_and_whisper_hears_it(tmp_path):
    sentence = "Please call me back after lunch tomorrow."
    async with (
        running_tts(JOE, tmp_path / "voices", websocket_port=0) as (host, _),
        running_asr(TINY_EN, websocket_port=0) as (_, asr_channel),
    ):
        ws = await opened(host, audio={"output": {"format": {"type": "audio/pcm", "rate": 16000}}})
        async with ws:
            for piece in ("Please call me ", "back after lunch", " tomorrow."):
                await send(ws, "input_text_buffer.append", text=piece)
            await send(ws, "input_text_buffer.commit")
            deltas, done = await spoken(ws)
        assert done["speechmesh"]["duration_ms"] >= 1000
        asr = asr_pb2_grpc.AsrServiceStub(asr_channel)
        reply = await asr.Recognize(
            asr_pb2.RecognizeRequest(
                audio=audio_of(deltas),
                config=asr_pb2.RecognitionConfig(
                    language_code="en",
                    audio_format=audio_pb2.AudioFormat(
                        encoding=audio_pb2.AUDIO_ENCODING_LINEAR16, sample_rate_hertz=16000
                    ),
                ),
            )
        )
    assert wer([sentence], [reply.transcript]) <= 0.1, reply.transcript
