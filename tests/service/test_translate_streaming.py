"""StreamingTranslateSpeech end to end on the tiny random Seamless server, fed real speech.

Random weights translate into noise, so these tests assert the stream's shape: segments found at
the speaker's pauses, messages in order per segment (transcript, translation, audio chunks, end),
times and offsets that add up, one continuous recording across the audio chunks, flush on
half-close and on a forced endpoint, bad input and cancellation.
"""

from __future__ import annotations

import asyncio

import grpc
import numpy as np
import pytest
import soundfile as sf

from speechmesh.audio.v1 import audio_pb2
from speechmesh.dsp.audio import decode_audio
from speechmesh.translate.v1 import translate_pb2 as tr
from speechmesh.translate.v1 import translate_pb2_grpc
from tests.conftest import AUDIO, requires_shared
from tests.grpc_errors import check_status, stream_refused
from tests.servers import active_streams, until_active_streams

pytestmark = requires_shared

TEXT, SPEECH = tr.MODALITY_TEXT, tr.MODALITY_SPEECH
RATE = 16000
FORCE = tr.StreamingControl(action=tr.StreamingControl.ACTION_FORCE_ENDPOINT)


def seconds(value) -> float:
    return value.ToNanoseconds() / 1e9


def speech(name: str) -> np.ndarray:
    samples, rate = sf.read(AUDIO / name, dtype="float32")
    assert rate == RATE
    return samples


def pcm(samples: np.ndarray) -> bytes:
    return np.round(np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes()


def two_utterances() -> np.ndarray:
    """goforward.wav, 1.5 s of silence, another sentence, 1 s of silence."""
    silence = np.zeros(int(1.5 * RATE), np.float32)
    second = speech("librivox/sense_and_sensibility_01_austen_64kb-0880.wav")
    return np.concatenate([speech("goforward.wav"), silence, second, silence[:RATE]])


def config_request(**config) -> tr.StreamingTranslateSpeechRequest:
    streaming = config.pop("streaming", {})
    speech_config = tr.SpeechTranslationConfig(
        audio_format=audio_pb2.AudioFormat(
            encoding=audio_pb2.AUDIO_ENCODING_LINEAR16, sample_rate_hertz=RATE
        ),
        **({"target_language_code": "fr"} | config),
    )
    return tr.StreamingTranslateSpeechRequest(
        streaming_config=tr.StreamingSpeechTranslationConfig(
            request_id="s1", config=speech_config, **streaming
        )
    )


async def requests(first, samples: np.ndarray, chunk_s: float = 0.1, force_at: float = -1):
    yield first
    step = int(chunk_s * RATE)
    for at in range(0, len(samples), step):
        yield tr.StreamingTranslateSpeechRequest(audio=pcm(samples[at : at + step]))
        if force_at >= 0 and at <= force_at * RATE < at + step:
            yield tr.StreamingTranslateSpeechRequest(control=FORCE)
        await asyncio.sleep(0)


@pytest.fixture(scope="module")
def api(tiny_translate) -> translate_pb2_grpc.TranslateServiceStub:
    _, channel = tiny_translate
    return translate_pb2_grpc.TranslateServiceStub(channel)


async def collect(api, first, samples, **kwargs) -> list[tr.StreamingTranslateSpeechResponse]:
    call = api.StreamingTranslateSpeech(requests(first, samples, **kwargs), timeout=120)
    return [response async for response in call]


def kinds_by_segment(responses) -> dict[int, list[str]]:
    kinds: dict[int, list[str]] = {}
    for r in responses:
        kinds.setdefault(r.segment_index, []).append(r.WhichOneof("streaming_response"))
    return kinds


async def test_segments_in_order_with_transcript_text_and_audio(api):
    samples = two_utterances()
    first = config_request(
        source_language_code="en",
        output_modalities=[TEXT, SPEECH],
        enable_source_transcript=True,
    )
    responses = await collect(api, first, samples)
    assert all(r.request_id == "s1" for r in responses)
    kinds = kinds_by_segment(responses)
    assert sorted(kinds) == [0, 1], kinds  # one segment per utterance, indices without gaps
    for segment in kinds.values():
        assert segment[:2] == ["source_transcript", "translation"]
        assert segment[2:-1] and set(segment[2:-1]) == {"audio_chunk"}
        assert segment[-1] == "segment_end"
    # Segments follow each other in the input's time and lie around the speech.
    ends = [r for r in responses if r.HasField("segment_end")]
    first_end, second_end = ends
    assert 0 <= seconds(first_end.start_offset) < seconds(first_end.end_offset) <= 3.3
    assert 3.3 < seconds(second_end.start_offset) < seconds(second_end.end_offset)
    assert seconds(second_end.end_offset) <= len(samples) / RATE
    # Transcript and translation say their languages.
    transcript = next(r for r in responses if r.HasField("source_transcript"))
    assert transcript.source_transcript.language_code == "en"
    # The audio chunks are one continuous WAV recording; offsets and durations add up.
    chunks = [r.audio_chunk for r in responses if r.HasField("audio_chunk")]
    at = 0.0
    for chunk in chunks:
        assert seconds(chunk.offset) == pytest.approx(at, abs=0.002)
        assert chunk.sample_rate_hertz == RATE
        at += seconds(chunk.duration)
    spoken = sum(seconds(e.segment_end.translated_audio_duration) for e in ends)
    assert at == pytest.approx(spoken, abs=0.002)
    audio = decode_audio(b"".join(c.audio for c in chunks), None, None)
    assert audio.sample_rate == RATE
    assert audio.duration == pytest.approx(spoken, abs=0.002)


async def test_text_only_by_default_and_half_close_flushes(api):
    # No trailing silence: the segment ends only because the client half-closes.
    responses = await collect(api, config_request(), speech("goforward.wav"))
    kinds = kinds_by_segment(responses)
    assert kinds == {0: ["translation", "segment_end"]}
    end = responses[-1]
    assert seconds(end.end_offset) > 2.0
    assert seconds(end.segment_end.translated_audio_duration) == 0


async def test_forced_endpoint_cuts_a_segment(api):
    samples = speech("librivox/sense_and_sensibility_01_austen_64kb-0870.wav")  # 7.1 s
    responses = await collect(api, config_request(), samples, force_at=3.0)
    ends = [r for r in responses if r.HasField("segment_end")]
    assert len(ends) >= 2
    assert seconds(ends[0].end_offset) == pytest.approx(3.0, abs=0.15)


async def test_longest_segment_is_respected(api):
    samples = speech("librivox/sense_and_sensibility_01_austen_64kb-0870.wav")
    first = config_request(streaming={"max_segment_duration": {"seconds": 2}})
    responses = await collect(api, first, samples)
    ends = [r for r in responses if r.HasField("segment_end")]
    assert len(ends) >= 3
    for end in ends:
        assert seconds(end.end_offset) - seconds(end.start_offset) <= 2.0 + 0.04


async def test_ogg_opus_chunks_end_with_the_encoder_tail(api):
    first = config_request(
        output_modalities=[SPEECH],
        output_audio_config=audio_pb2.OutputAudioConfig(
            encoding=audio_pb2.OUTPUT_ENCODING_OGG_OPUS
        ),
    )
    responses = await collect(api, first, two_utterances())
    chunks = [r.audio_chunk for r in responses if r.HasField("audio_chunk")]
    assert all(c.sample_rate_hertz == 48000 for c in chunks)
    kinds = kinds_by_segment(responses)
    assert all("translation" not in k for k in kinds.values())  # speech only
    # The stream's last message carries the codec's last bytes, after the last segment's end.
    assert (
        responses[-1].HasField("audio_chunk") and seconds(responses[-1].audio_chunk.duration) == 0
    )
    spoken = sum(
        seconds(r.segment_end.translated_audio_duration)
        for r in responses
        if r.HasField("segment_end")
    )
    audio = decode_audio(b"".join(c.audio for c in chunks), None, None)
    assert audio.sample_rate == 48000
    assert audio.duration == pytest.approx(spoken, abs=0.03)


AUDIO_MESSAGE = tr.StreamingTranslateSpeechRequest(audio=pcm(np.zeros(1600, np.float32)))


@pytest.mark.parametrize(
    ("messages", "field", "mention"),
    [
        ([AUDIO_MESSAGE], "streaming_config", "first message"),
        ([config_request(), config_request()], "streaming_config", "only the first"),
        ([config_request(), tr.StreamingTranslateSpeechRequest()], "streaming_request", "empty"),
        (
            [config_request(target_language_code="xx-nowhere")],
            "streaming_config.config.target_language_code",
            "ListLanguages",
        ),
        (
            [config_request(target_language_code="")],
            "streaming_config.config.target_language_code",
            "required",
        ),
        (
            [config_request(enable_source_transcript=True)],
            "streaming_config.config.source_language_code",
            "required",
        ),
        (
            [config_request(output_modalities=[SPEECH], voice="nobody")],
            "streaming_config.config.voice",
            "nobody",
        ),
        (
            [config_request(streaming={"max_segment_duration": {"seconds": 40}})],
            "streaming_config.max_segment_duration",
            "1 to",
        ),
        (
            [config_request(streaming={"vad_threshold": 0.99})],
            "streaming_config.vad_threshold",
            "0.05 to 0.95",
        ),
        (
            [config_request(streaming={"endpoint_silence": {"seconds": 9}})],
            "streaming_config.endpoint_silence",
            "0.1 to 5",
        ),
        (
            [
                config_request(
                    output_modalities=[SPEECH],
                    output_audio_config=audio_pb2.OutputAudioConfig(sample_rate_hertz=5),
                )
            ],
            "streaming_config.config.output_audio_config.sample_rate_hertz",
            "8000",
        ),
    ],
    ids=[
        "audio-first",
        "config-twice",
        "empty-message",
        "unknown-target",
        "no-target",
        "transcript-without-source",
        "unknown-voice",
        "segment-too-long",
        "vad-threshold",
        "endpoint-silence",
        "output-rate",
    ],
)
async def test_bad_streams_are_refused(api, messages, field, mention):
    error = await stream_refused(api.StreamingTranslateSpeech, messages, timeout=30)
    check_status(error, grpc.StatusCode.INVALID_ARGUMENT, mention, field)
    await api.ListModels(tr.ListModelsRequest(), timeout=10)  # still serving


async def test_cancel_releases_the_stream(api):
    method = ("translate", "StreamingTranslateSpeech")
    before = active_streams(*method)
    chunk = pcm(speech("goforward.wav")[:1600])

    async def endless():
        yield config_request()
        while True:
            yield tr.StreamingTranslateSpeechRequest(audio=chunk)
            await asyncio.sleep(0.02)

    call = api.StreamingTranslateSpeech(endless(), timeout=60)
    await until_active_streams(*method, before + 1)
    await asyncio.sleep(0.3)
    assert call.cancel()
    assert await call.code() == grpc.StatusCode.CANCELLED
    await until_active_streams(*method, before)
    await api.ListModels(tr.ListModelsRequest(), timeout=10)
