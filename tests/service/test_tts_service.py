"""The TTS service end to end on tiny random checkpoints: every RPC over a real channel.

The server runs a tiny CSM (default, clones voices) and a tiny VITS (a preset voice). Random
weights speak noise, so these tests assert what the service does around the model: audio of the
requested encoding, rate and a plausible length, sentences and their times, seeds, voices as
resources that persist, streaming order and timing, cancellation.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time

import grpc
import numpy as np
import pytest
from google.api import httpbody_pb2
from prometheus_client import REGISTRY

from speechmesh.audio.v1 import audio_pb2
from speechmesh.common.v1 import common_pb2
from speechmesh.dsp.audio import RawFormat, decode_audio
from speechmesh.tts.v1 import tts_pb2, tts_pb2_grpc
from tests.conftest import running_tts
from tests.servers import active_streams, until_active_streams
from tests.sounds import REFERENCE

CSM_RATE = 24000


def stub(channel) -> tts_pb2_grpc.TtsServiceStub:
    return tts_pb2_grpc.TtsServiceStub(channel)


@pytest.fixture(scope="module")
def api(tiny_tts) -> tts_pb2_grpc.TtsServiceStub:
    return stub(tiny_tts[1])


def seconds(value) -> float:
    return value.ToNanoseconds() / 1e9


def config(**kwargs) -> tts_pb2.SynthesisConfig:
    return tts_pb2.SynthesisConfig(**kwargs)


async def synthesize(api, text: str, **kwargs) -> tts_pb2.SynthesizeResponse:
    request = tts_pb2.SynthesizeRequest(request_id="r1", text=text, config=config(**kwargs))
    return await api.Synthesize(request, timeout=120)


# -- Synthesize ------------------------------------------------------------------------


async def test_synthesize_splits_sentences_and_reports_their_times(api):
    text = "Hello there. How are you today? Fine, thanks."
    response = await synthesize(api, text, seed=11)
    assert response.request_id == "r1" and response.seed == 11
    assert response.sample_rate_hertz == CSM_RATE
    audio = decode_audio(response.audio, None, None)
    assert audio.sample_rate == CSM_RATE
    assert audio.duration == pytest.approx(seconds(response.audio_duration), abs=0.002)
    assert [s.text for s in response.sentences] == [
        "Hello there.",
        "How are you today?",
        "Fine, thanks.",
    ]
    previous_end = -1.0
    for sentence in response.sentences:
        start, end = seconds(sentence.start_offset), seconds(sentence.end_offset)
        assert previous_end < start < end <= audio.duration + 0.001
        # The tiny CSM's length cap: 0.125 s per character + 1.5 s.
        assert end - start <= 0.125 * len(sentence.text) + 1.5 + 0.1
        previous_end = end
    assert np.isfinite(audio.samples).all() and np.abs(audio.samples).max() > 0


@pytest.mark.parametrize(
    ("encoding", "rate", "expected_rate"),
    [
        (audio_pb2.OUTPUT_ENCODING_WAV, 0, CSM_RATE),
        (audio_pb2.OUTPUT_ENCODING_FLAC, 16000, 16000),
        (audio_pb2.OUTPUT_ENCODING_OGG_OPUS, 0, 48000),
        (audio_pb2.OUTPUT_ENCODING_MP3, 22050, 22050),
        (audio_pb2.OUTPUT_ENCODING_PCM, 8000, 8000),
    ],
)
async def test_every_encoding_and_rate(api, encoding, rate, expected_rate):
    output = audio_pb2.OutputAudioConfig(encoding=encoding, sample_rate_hertz=rate)
    response = await synthesize(api, "One short sentence.", seed=5, output_audio_config=output)
    assert response.sample_rate_hertz == expected_rate
    raw = (
        RawFormat("linear16", expected_rate) if encoding == audio_pb2.OUTPUT_ENCODING_PCM else None
    )
    audio = decode_audio(response.audio, raw, None)
    assert audio.sample_rate == expected_rate
    # mp3 pads a frame or two; the rest are exact up to resampling.
    assert audio.duration == pytest.approx(seconds(response.audio_duration), abs=0.08)


async def test_same_seed_same_audio_other_seed_other_audio(api):
    text = "Same seed. Same sound."
    first = await synthesize(api, text, seed=1234)
    again = await synthesize(api, text, seed=1234)
    other = await synthesize(api, text, seed=4321)
    assert first.audio == again.audio
    assert first.audio != other.audio
    random_seed = await synthesize(api, text)
    assert random_seed.seed != 0
    replay = await synthesize(api, text, seed=random_seed.seed)
    assert replay.audio == random_seed.audio


async def test_concurrent_identical_requests_get_identical_audio(api):
    # Batched with each other (and with other seeds), every row is its own job.
    texts = ["Batch me.", "Batch me too, please.", "Batch me."]
    responses = await asyncio.gather(
        *(synthesize(api, t, seed=77 if i != 1 else 78) for i, t in enumerate(texts))
    )
    assert responses[0].audio == responses[2].audio
    assert responses[0].audio != responses[1].audio


async def test_speed_changes_length_not_pitch(api):
    normal = await synthesize(api, "Speed test sentence.", seed=9)
    fast = await synthesize(api, "Speed test sentence.", seed=9, speed=2.0)
    slow = await synthesize(api, "Speed test sentence.", seed=9, speed=0.5)
    n = seconds(normal.audio_duration)
    assert seconds(fast.audio_duration) == pytest.approx(n / 2, rel=0.05)
    assert seconds(slow.audio_duration) == pytest.approx(n * 2, rel=0.05)


async def test_synthesize_audio_is_the_raw_body(api):
    request = tts_pb2.SynthesizeAudioRequest(
        text="Raw body.",
        config=config(
            seed=3,
            output_audio_config=audio_pb2.OutputAudioConfig(
                encoding=audio_pb2.OUTPUT_ENCODING_PCM, sample_rate_hertz=16000
            ),
        ),
    )
    body = await api.SynthesizeAudio(request, timeout=60)
    assert isinstance(body, httpbody_pb2.HttpBody)
    assert body.content_type == "audio/pcm;rate=16000"
    assert len(body.data) % 2 == 0 and len(body.data) > 16000 * 2 * 0.1


async def test_preset_voice_on_the_vits_model(api, tiny_vits_checkpoint):
    models = await api.ListModels(tts_pb2.ListModelsRequest(request_id="m"), timeout=10)
    assert models.request_id == "m"
    csm, vits = models.models
    assert csm.default and csm.engine == "csm" and csm.supports_voice_cloning
    assert csm.native_sample_rate_hertz == CSM_RATE and csm.random_weights
    assert csm.default_temperature == pytest.approx(0.9)
    assert csm.state == common_pb2.MODEL_STATE_READY and csm.language_codes == ["en"]
    assert vits.engine == "vits" and not vits.supports_voice_cloning
    assert [v.name for v in vits.preset_voices] == ["default"]
    # Naming the preset routes to the model that has it.
    response = await synthesize(api, "Preset voice.", preset_voice="default", seed=2)
    assert response.model == tiny_vits_checkpoint.name
    assert response.sample_rate_hertz == vits.native_sample_rate_hertz


# -- voices --------------------------------------------------------------------------


async def test_voice_lifecycle_and_synthesis_with_it(api):
    voice = await api.CreateVoice(
        tts_pb2.CreateVoiceRequest(
            voice_id="lifecycle",
            voice=tts_pb2.Voice(display_name="Life Cycle", transcript="This is my voice."),
            reference_audio=REFERENCE,
        ),
        timeout=60,
    )
    assert voice.name == "voices/lifecycle" and voice.engine == "csm"
    assert voice.language_code == "en" and voice.display_name == "Life Cycle"
    assert 3.0 <= seconds(voice.reference_audio_duration) <= 4.5
    assert voice.create_time.seconds > 0
    got = await api.GetVoice(tts_pb2.GetVoiceRequest(name="voices/lifecycle"), timeout=10)
    assert got == voice
    cloned = await synthesize(api, "Spoken in my voice.", voice="voices/lifecycle", seed=8)
    plain = await synthesize(api, "Spoken in my voice.", seed=8)
    assert cloned.audio != plain.audio  # the prompt conditions the model
    # Inline reference audio with the same recording speaks like the stored voice.
    inline = await synthesize(
        api,
        "Spoken in my voice.",
        seed=8,
        reference_audio=tts_pb2.ReferenceAudio(audio=REFERENCE, transcript="This is my voice."),
    )
    assert inline.audio == cloned.audio
    await api.DeleteVoice(tts_pb2.DeleteVoiceRequest(name="voices/lifecycle"), timeout=10)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await api.GetVoice(tts_pb2.GetVoiceRequest(name="voices/lifecycle"), timeout=10)
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND


async def test_upload_voice_and_list_pages(api):
    names = []
    for i in range(3):
        voice = await api.UploadVoice(
            tts_pb2.UploadVoiceRequest(
                reference_audio=httpbody_pb2.HttpBody(content_type="audio/wav", data=REFERENCE),
                voice_id=f"page-{i}",
                voice=tts_pb2.Voice(transcript=f"Voice number {i}."),
            ),
            timeout=60,
        )
        names.append(voice.name)
    seen, token = [], ""
    while True:
        page = await api.ListVoices(
            tts_pb2.ListVoicesRequest(page_size=2, page_token=token, request_id="l"), timeout=10
        )
        assert page.request_id == "l" and len(page.voices) <= 2
        seen += [v.name for v in page.voices]
        token = page.next_page_token
        if not token:
            break
    assert [n for n in seen if n.startswith("voices/page-")] == names  # oldest first
    for name in names:
        await api.DeleteVoice(tts_pb2.DeleteVoiceRequest(name=name), timeout=10)


async def test_voices_belong_to_the_gateway_identity(api):
    alice = (("x-speechmesh-identity", "alice"),)
    bob = (("x-speechmesh-identity", "bob"),)
    create = tts_pb2.CreateVoiceRequest(
        voice_id="mine", voice=tts_pb2.Voice(transcript="Only mine."), reference_audio=REFERENCE
    )
    await api.CreateVoice(create, metadata=alice, timeout=60)
    get = tts_pb2.GetVoiceRequest(name="voices/mine")
    assert (await api.GetVoice(get, metadata=alice, timeout=10)).name == "voices/mine"
    for call in (
        api.GetVoice(get, metadata=bob, timeout=10),
        api.GetVoice(get, timeout=10),  # anonymous
        api.DeleteVoice(tts_pb2.DeleteVoiceRequest(name="voices/mine"), metadata=bob, timeout=10),
        api.Synthesize(
            tts_pb2.SynthesizeRequest(text="Hi.", config=config(voice="voices/mine")),
            metadata=bob,
            timeout=10,
        ),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await call
        assert raised.value.code() == grpc.StatusCode.NOT_FOUND  # no leak of existence
    listed = await api.ListVoices(tts_pb2.ListVoicesRequest(), metadata=bob, timeout=10)
    assert "voices/mine" not in [v.name for v in listed.voices]
    await api.DeleteVoice(
        tts_pb2.DeleteVoiceRequest(name="voices/mine"), metadata=alice, timeout=10
    )


async def test_voices_survive_a_restart_and_a_crashed_write(
    tiny_csm_checkpoint, tmp_path, monkeypatch
):
    voices = tmp_path / "voices"
    async with running_tts(tiny_csm_checkpoint, voices) as (_, channel):
        api = stub(channel)
        await api.CreateVoice(
            tts_pb2.CreateVoiceRequest(
                voice_id="durable",
                voice=tts_pb2.Voice(transcript="I persist."),
                reference_audio=REFERENCE,
            ),
            timeout=60,
        )
        before = await synthesize(api, "After a restart.", voice="voices/durable", seed=5)
    # A crash mid-write: a half-written voice left in staging, and a voice folder whose
    # prompt file was cut short.
    staging = voices / ".staging" / "create-deadbeef"
    staging.mkdir(parents=True)
    (staging / "voice.json").write_text("{")
    os.utime(staging, (time.time() - 3600,) * 2)  # the crash was a while ago
    broken = next(voices.rglob("durable")).parent / "broken"
    shutil.copytree(next(voices.rglob("durable")), broken)
    prompt = broken / "prompt.npz"
    prompt.write_bytes(prompt.read_bytes()[:10])
    async with running_tts(tiny_csm_checkpoint, voices) as (_, channel):
        api = stub(channel)
        listed = await api.ListVoices(tts_pb2.ListVoicesRequest(), timeout=10)
        assert [v.name for v in listed.voices] == ["voices/durable"]
        after = await synthesize(api, "After a restart.", voice="voices/durable", seed=5)
        assert after.audio == before.audio
    assert not staging.exists()


# -- streaming -----------------------------------------------------------------------


def stream_config(**kwargs) -> tts_pb2.StreamingSynthesizeRequest:
    return tts_pb2.StreamingSynthesizeRequest(
        streaming_config=tts_pb2.StreamingSynthesisConfig(request_id="s1", config=config(**kwargs))
    )


def text_piece(text: str) -> tts_pb2.StreamingSynthesizeRequest:
    return tts_pb2.StreamingSynthesizeRequest(text=text)


async def test_stream_sends_the_first_sentence_before_the_last_piece_arrives(api):
    first_audio = asyncio.Event()
    sent_last = []

    async def requests():
        yield stream_config(seed=21)
        yield text_piece("The first sentence is ")
        yield text_piece("here. And the second")
        # Hold the rest back until audio of the first sentence has come.
        await asyncio.wait_for(first_audio.wait(), timeout=60)
        sent_last.append(True)
        yield text_piece(" one ends here.")

    responses = []
    async for response in api.StreamingSynthesize(requests(), timeout=120):
        if response.HasField("audio_chunk") and not first_audio.is_set():
            assert not sent_last  # audio came while the last piece was still unsent
            first_audio.set()
        responses.append(response)
    chunks = [r.audio_chunk for r in responses if r.HasField("audio_chunk")]
    summary = responses[-1].summary
    assert all(r.request_id == "s1" for r in responses)
    assert summary.sentence_count == 2 and summary.seed == 21
    assert summary.character_count == len(
        "The first sentence is here. And the second one ends here."
    )
    texts = [c.text for c in chunks if c.text]
    assert texts == ["The first sentence is here.", "And the second one ends here."]
    assert [c.sentence_index for c in chunks if c.sentence_end] == [0, 1]
    at = 0.0
    for chunk in chunks:
        assert seconds(chunk.offset) == pytest.approx(at, abs=0.002)
        assert chunk.sample_rate_hertz == CSM_RATE
        at += seconds(chunk.duration)
    assert at == pytest.approx(seconds(summary.audio_duration), abs=0.002)
    audio = decode_audio(b"".join(c.audio for c in chunks), None, None)
    assert audio.duration == pytest.approx(at, abs=0.002)
    # Same seed, same sentences: the stream sounds like the unary call.
    unary = await synthesize(
        api, "The first sentence is here. And the second one ends here.", seed=21
    )
    assert seconds(unary.audio_duration) == pytest.approx(at, abs=0.002)
    assert decode_audio(unary.audio, None, None).samples == pytest.approx(audio.samples, abs=1e-4)


async def test_stream_flush_half_close_and_ogg_tail(api):
    flush = tts_pb2.StreamingSynthesizeRequest(
        control=tts_pb2.StreamingControl(action=tts_pb2.StreamingControl.ACTION_FLUSH)
    )

    async def requests():
        yield stream_config(
            seed=4,
            output_audio_config=audio_pb2.OutputAudioConfig(
                encoding=audio_pb2.OUTPUT_ENCODING_OGG_OPUS
            ),
        )
        yield text_piece("no end yet")
        yield flush  # spoken now, without a sentence end
        yield text_piece("and the rest")  # spoken at half-close

    responses = [r async for r in api.StreamingSynthesize(requests(), timeout=120)]
    chunks = [r.audio_chunk for r in responses if r.HasField("audio_chunk")]
    assert [c.text for c in chunks if c.text] == ["no end yet", "and the rest"]
    assert responses[-1].summary.sentence_count == 2
    assert chunks[-1].duration.ToNanoseconds() == 0  # the encoder's tail
    audio = decode_audio(b"".join(c.audio for c in chunks), None, None)
    assert audio.sample_rate == 48000
    assert audio.duration == pytest.approx(seconds(responses[-1].summary.audio_duration), abs=0.03)


async def test_stream_cancel_stops_generation(api, tiny_csm_checkpoint):
    def jobs_done() -> float:
        return (
            REGISTRY.get_sample_value(
                "speechmesh_batch_size_sum", {"model": tiny_csm_checkpoint.name}
            )
            or 0.0
        )

    got_audio = asyncio.Event()

    async def requests():
        yield stream_config(seed=1)
        yield text_piece("First sentence. " + " ".join(f"Sentence {i}." for i in range(40)))
        await asyncio.sleep(3600)

    before_streams = active_streams("tts", "StreamingSynthesize")
    call = api.StreamingSynthesize(requests(), timeout=120)

    async def read():
        async for response in call:
            if response.HasField("audio_chunk"):
                got_audio.set()

    reader = asyncio.create_task(read())
    await asyncio.wait_for(got_audio.wait(), timeout=60)
    assert call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await reader
    after_cancel = jobs_done()
    await asyncio.sleep(1.0)
    # Nothing more of the 41 sentences was generated after the cancel settled.
    assert jobs_done() - after_cancel <= 8  # at most one batch already running
    await until_active_streams("tts", "StreamingSynthesize", before_streams)
    await api.ListModels(tts_pb2.ListModelsRequest(), timeout=10)
