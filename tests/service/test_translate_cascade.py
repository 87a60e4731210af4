"""The cascade speech-to-speech path of the translate service (issue 14), over real services:
the ASR service on whisper-tiny.en (real weights, so segments fall on real speech), this
service's tiny NLLB for text, and the TTS service on the tiny CSM (which clones) and tiny VITS
(presets). The TTS service is reached through a recording proxy, so the tests see exactly what
TTS receives: each segment's reference audio must be that segment's speaker, from the source."""

from __future__ import annotations

import contextlib
import io

import grpc
import numpy as np
import pytest
import soundfile as sf
import soxr

from speechmesh.audio.v1 import audio_pb2
from speechmesh.translate.v1 import translate_pb2, translate_pb2_grpc
from speechmesh.tts.v1 import tts_pb2, tts_pb2_grpc
from tests.conftest import AUDIO, TINY_EN, running_translate
from tests.sounds import REFERENCE, wav

pytestmark = pytest.mark.skipif(
    not TINY_EN.is_dir(), reason=f"whisper-tiny.en and real speech not found at {AUDIO}"
)

CASCADE = translate_pb2.SPEECH_TRANSLATION_PATH_CASCADE
SPEAKER = translate_pb2.SegmentVoice.KIND_SPEAKER
PRESET = translate_pb2.SegmentVoice.KIND_PRESET
RATE = 16000


def load(path: str, channel: int | None = None) -> np.ndarray:
    data, rate = sf.read(AUDIO / path, dtype="float32", always_2d=True)
    samples = data[:, channel] if channel is not None else data.mean(axis=1)
    return soxr.resample(samples, rate, RATE) if rate != RATE else samples


def quantized(samples: np.ndarray) -> np.ndarray:
    """`samples` as a 16-bit WAV carries them (what every service decodes)."""
    return sf.read(io.BytesIO(wav(samples)), dtype="float32")[0]


@pytest.fixture(scope="module")
def dialogue() -> tuple[np.ndarray, list[tuple[float, float, str]]]:
    """Two speakers, one after the other with 1 s pauses: the Austen reader (A), a short line
    of another man (B, under 3 s: too short to clone from alone), and A again, long then short.
    Returns the audio and its parts (start, end, speaker)."""
    gap = np.zeros(RATE, np.float32)
    parts = [
        ("A", load("librivox/sense_and_sensibility_01_austen_64kb-0870.wav")),
        ("B", load("goforward.wav")),
        ("A", load("librivox/sense_and_sensibility_01_austen_64kb-0890.wav")),
        ("A", load("librivox/sense_and_sensibility_01_austen_64kb-0880.wav")),
    ]
    pieces, spans, at = [], [], 0.0
    for speaker, samples in parts:
        pieces += [samples, gap]
        spans.append((at, at + len(samples) / RATE, speaker))
        at += (len(samples) + len(gap)) / RATE
    return quantized(np.concatenate(pieces)), spans


class RecordingTts(tts_pb2_grpc.TtsServiceServicer):
    """Forwards the TTS calls the cascade makes to the real TTS service, keeping each
    Synthesize request."""

    def __init__(self, channel: grpc.aio.Channel):
        self.stub = tts_pb2_grpc.TtsServiceStub(channel)
        self.synthesized: list[tts_pb2.SynthesizeRequest] = []

    @staticmethod
    def _forward(method):
        async def call(self, request, context):
            metadata = [(k, v) for k, v in context.invocation_metadata() if k.startswith("x-")]
            try:
                return await getattr(self.stub, method)(request, metadata=metadata)
            except grpc.aio.AioRpcError as error:
                await context.abort(error.code(), error.details())

        return call

    ListModels = _forward("ListModels")
    GetVoice = _forward("GetVoice")

    async def Synthesize(self, request, context):
        self.synthesized.append(request)
        return await RecordingTts._forward("Synthesize")(self, request, context)


@contextlib.asynccontextmanager
async def recording_proxy(tts_channel):
    server = grpc.aio.server()
    proxy = RecordingTts(tts_channel)
    tts_pb2_grpc.add_TtsServiceServicer_to_server(proxy, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield proxy, port
    finally:
        await server.stop(0)


@pytest.fixture(scope="module")
async def cascade(real_asr, tiny_tts, tiny_seamless_checkpoint, tiny_nllb_checkpoint):
    """(translate stub, recording TTS proxy, TTS stub) with the cascade's peers set."""
    (asr_host, _), (_, tts_channel) = real_asr, tiny_tts
    async with recording_proxy(tts_channel) as (proxy, port):
        peers = {"asr": f"127.0.0.1:{asr_host.port}", "tts": f"127.0.0.1:{port}"}
        async with running_translate(
            tiny_seamless_checkpoint, tiny_nllb_checkpoint, peers=peers
        ) as (_, channel):
            yield (
                translate_pb2_grpc.TranslateServiceStub(channel),
                proxy,
                tts_pb2_grpc.TtsServiceStub(tts_channel),
            )


def cascade_config(**fields) -> translate_pb2.SpeechTranslationConfig:
    values = {
        "source_language_code": "en",
        "target_language_code": "en",
        "output_modalities": [translate_pb2.MODALITY_TEXT, translate_pb2.MODALITY_SPEECH],
        "path": CASCADE,
        "output_audio_config": audio_pb2.OutputAudioConfig(encoding=audio_pb2.OUTPUT_ENCODING_PCM),
        **fields,
    }
    return translate_pb2.SpeechTranslationConfig(**values)


def seconds(value) -> float:
    return value.ToNanoseconds() / 1e9


def speaker_at(spans, start: float, end: float) -> set[str]:
    """The speakers whose parts overlap [start, end]."""
    return {who for a, b, who in spans if a < end and b > start}


async def test_each_segment_clones_its_own_speaker(cascade, dialogue):
    api, proxy, _ = cascade
    audio, spans = dialogue
    proxy.synthesized.clear()
    reply = await api.TranslateSpeech(
        translate_pb2.TranslateSpeechRequest(audio=wav(audio), config=cascade_config()),
        timeout=600,
    )
    assert reply.path == CASCADE
    assert reply.cascade_models.recognition_model == "whisper-tiny.en"
    assert reply.cascade_models.translation_model == ""  # English to English: no text model
    assert reply.cascade_models.synthesis_model.startswith("tiny-csm")
    segments = [s for s in reply.segments if s.translated_text]
    assert len(segments) >= 4, reply
    # What TTS received, in segment order (requests may arrive in any order: match by text).
    received = {r.text: r for r in proxy.synthesized}
    assert set(received) == {s.translated_text for s in segments}
    voices = []
    for segment in segments:
        start, end = seconds(segment.start_offset), seconds(segment.end_offset)
        (own,) = speaker_at(spans, start + 0.2, end - 0.2) or {"?"}
        request = received[segment.translated_text]
        voice = segment.voice
        voices.append((own, voice.kind))
        if voice.kind == SPEAKER:
            ref_start, ref_end = (
                seconds(voice.reference_start_offset),
                seconds(voice.reference_end_offset),
            )
            assert ref_start <= start and ref_end >= end
            assert speaker_at(spans, ref_start + 0.2, ref_end - 0.2) == {own}
            sent, rate = sf.read(io.BytesIO(request.config.reference_audio.audio), dtype="float32")
            assert rate == RATE and len(sent) >= 3 * RATE
            # The reference starts with the source's samples at its start.
            at = round(ref_start * RATE)
            np.testing.assert_allclose(sent[:RATE], audio[at : at + RATE], atol=1e-4)
            assert request.config.reference_audio.transcript.strip()
        else:
            assert voice.kind == PRESET and voice.fallback_reason, voice
            assert not request.config.HasField("reference_audio")
    # B's line is short, between A's: never cloned from A; A's segments are all cloned.
    assert ("B", PRESET) in voices, voices
    assert all(kind == SPEAKER for who, kind in voices if who == "A"), voices
    # The translated speech follows the source's timeline.
    previous_end = 0.0
    for segment in segments:
        begin = seconds(segment.translated_audio_start_offset)
        assert begin == pytest.approx(max(seconds(segment.start_offset), previous_end), abs=0.01)
        previous_end = seconds(segment.translated_audio_end_offset)
    samples = len(reply.translated_audio) // 2
    rate = reply.translated_audio_sample_rate_hertz
    assert samples / rate >= len(audio) / RATE - 0.01


async def test_a_short_segment_borrows_its_speakers_neighbours(cascade, dialogue):
    """Cloning on a recording where a short line of A sits beside a long one of A."""
    api, _proxy, _ = cascade
    audio, spans = dialogue
    a_long, a_short = spans[2], spans[3]
    clip = audio[round(a_long[0] * RATE) : round((a_short[1] + 0.5) * RATE)]
    reply = await api.TranslateSpeech(
        translate_pb2.TranslateSpeechRequest(audio=wav(clip), config=cascade_config()),
        timeout=600,
    )
    kinds = [s.voice.kind for s in reply.segments if s.translated_text]
    assert kinds and all(kind == SPEAKER for kind in kinds), reply.segments
    for segment in reply.segments:
        voice = segment.voice
        assert seconds(voice.reference_end_offset) - seconds(voice.reference_start_offset) >= 3.0


async def test_stored_and_preset_voices(cascade, dialogue):
    api, _proxy, tts = cascade
    audio, _ = dialogue
    clip = wav(audio[: 8 * RATE])
    alice = (("x-speechmesh-identity", "alice"),)
    create = tts_pb2.CreateVoiceRequest(
        voice_id="dubber", voice=tts_pb2.Voice(transcript="Only mine."), reference_audio=REFERENCE
    )
    await tts.CreateVoice(create, metadata=alice, timeout=60)
    try:
        stored = cascade_config(cascade=translate_pb2.CascadeConfig(voice="voices/dubber"))
        request = translate_pb2.TranslateSpeechRequest(audio=clip, config=stored)
        reply = await api.TranslateSpeech(request, metadata=alice, timeout=600)
        assert {s.voice.kind for s in reply.segments} == {translate_pb2.SegmentVoice.KIND_STORED}
        assert reply.voice == "voices/dubber"
        # Another caller does not see alice's voice: NOT_FOUND, before any audio is recognized.
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await api.TranslateSpeech(
                request, metadata=(("x-speechmesh-identity", "bob"),), timeout=60
            )
        assert raised.value.code() == grpc.StatusCode.NOT_FOUND
    finally:
        await tts.DeleteVoice(
            tts_pb2.DeleteVoiceRequest(name="voices/dubber"), metadata=alice, timeout=10
        )
    models = await tts.ListModels(tts_pb2.ListModelsRequest())
    (vits,) = [m for m in models.models if m.preset_voices]
    preset = vits.preset_voices[0].name
    config = cascade_config(cascade=translate_pb2.CascadeConfig(preset_voice=preset))
    reply = await api.TranslateSpeech(
        translate_pb2.TranslateSpeechRequest(audio=clip, config=config), timeout=600
    )
    assert reply.cascade_models.synthesis_model == vits.name
    assert {(s.voice.kind, s.voice.name) for s in reply.segments} == {(PRESET, preset)}


async def test_text_translation_in_the_middle(cascade, dialogue):
    """English speech into French text: the text model translates each segment."""
    api, _, _ = cascade
    audio, _ = dialogue
    config = cascade_config(
        target_language_code="fr",
        output_modalities=[translate_pb2.MODALITY_TEXT],
        enable_source_transcript=True,
    )
    reply = await api.TranslateSpeech(
        translate_pb2.TranslateSpeechRequest(audio=wav(audio[: 8 * RATE]), config=config),
        timeout=600,
    )
    assert reply.cascade_models.translation_model.startswith("tiny-nllb")
    assert "dashwood" in reply.source_transcript.lower()
    assert reply.segments and all(s.source_transcript for s in reply.segments)
    assert not reply.translated_audio


async def test_streaming_cascade(cascade, dialogue):
    api, _, _ = cascade
    audio, spans = dialogue
    pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()
    config = translate_pb2.StreamingSpeechTranslationConfig(
        config=cascade_config(
            audio_format=audio_pb2.AudioFormat(
                encoding=audio_pb2.AUDIO_ENCODING_LINEAR16, sample_rate_hertz=RATE
            )
        )
    )

    async def requests():
        yield translate_pb2.StreamingTranslateSpeechRequest(streaming_config=config)
        step = RATE // 5 * 2
        for at in range(0, len(pcm), step):
            yield translate_pb2.StreamingTranslateSpeechRequest(audio=pcm[at : at + step])

    texts, ends, audio_seconds = {}, {}, 0.0
    async for reply in api.StreamingTranslateSpeech(requests(), timeout=600):
        kind = reply.WhichOneof("streaming_response")
        if kind == "translation":
            texts[reply.segment_index] = reply.translation.translated_text
        elif kind == "segment_end":
            ends[reply.segment_index] = reply.segment_end
        elif kind == "audio_chunk":
            audio_seconds += seconds(reply.audio_chunk.duration)
    assert len(ends) >= 3 and set(texts) == set(ends)
    assert "dashwood" in " ".join(texts.values()).lower()
    kinds = {end.voice.kind for end in ends.values() if end.voice.kind}
    assert SPEAKER in kinds, ends
    # The stream's speech keeps the source's timeline: it lasts at least until the last
    # segment's start.
    assert audio_seconds >= spans[-1][0]


async def test_list_languages_says_what_the_cascade_produces(cascade):
    api, _, _ = cascade
    reply = await api.ListLanguages(translate_pb2.ListLanguagesRequest())
    reach = reply.cascade
    assert reach.available and reach.supports_speaker_voice
    assert reach.speech_input_language_codes == ["en"]
    assert "fr" in reach.text_output_language_codes  # by the text model
    assert "en" in reach.speech_output_language_codes
    assert "fr" not in reach.speech_output_language_codes  # no TTS model speaks French
    named = await api.ListLanguages(translate_pb2.ListLanguagesRequest(model="tiny-nllb0"))
    assert not named.HasField("cascade")


@pytest.mark.parametrize(
    ("fields", "code", "says"),
    [
        # The TTS models speak English only.
        ({"target_language_code": "fr"}, grpc.StatusCode.INVALID_ARGUMENT, "speaks en"),
        (
            {"cascade": translate_pb2.CascadeConfig(voice="voices/nobody")},
            grpc.StatusCode.NOT_FOUND,
            "voices/nobody",
        ),
        (
            {"cascade": translate_pb2.CascadeConfig(preset_voice="nobody")},
            grpc.StatusCode.INVALID_ARGUMENT,
            "nobody",
        ),
        (
            {"cascade": translate_pb2.CascadeConfig(recognition_model="whisper-huge")},
            grpc.StatusCode.NOT_FOUND,
            "whisper-huge",
        ),
        ({"source_language_code": "de"}, grpc.StatusCode.INVALID_ARGUMENT, "does not recognize"),
    ],
)
async def test_bad_cascade_requests(cascade, dialogue, fields, code, says):
    api, _, _ = cascade
    audio, _ = dialogue
    request = translate_pb2.TranslateSpeechRequest(
        audio=wav(audio[: 3 * RATE]), config=cascade_config(**fields)
    )
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await api.TranslateSpeech(request, timeout=120)
    assert raised.value.code() == code
    assert says in raised.value.details()


async def test_missing_or_down_peers_are_unavailable_by_name(tiny_seamless_checkpoint):
    """No ASR peer, or one that does not answer: the cascade is UNAVAILABLE naming it, and
    the direct path keeps working on the same service."""
    request = translate_pb2.TranslateSpeechRequest(
        audio=wav(load("goforward.wav")), config=cascade_config()
    )
    direct = translate_pb2.TranslateSpeechRequest(
        audio=request.audio,
        config=translate_pb2.SpeechTranslationConfig(target_language_code="fr"),
    )
    for peers, says in (({}, "no address"), ({"asr": "127.0.0.1:9"}, "does not answer")):
        async with running_translate(tiny_seamless_checkpoint, peers=peers) as (_, channel):
            api = translate_pb2_grpc.TranslateServiceStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await api.TranslateSpeech(request, timeout=60)
            assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
            assert "ASR service" in raised.value.details() and says in raised.value.details()
            reply = await api.TranslateSpeech(direct, timeout=120)
            assert reply.path == translate_pb2.SPEECH_TRANSLATION_PATH_DIRECT
            languages = await api.ListLanguages(translate_pb2.ListLanguagesRequest())
            assert not languages.cascade.available
            assert "ASR service" in languages.cascade.unavailable_reason


async def test_the_default_path_is_direct_when_a_model_here_can(cascade, dialogue):
    """Path unspecified: the service's own speech model (tiny Seamless) translates; the cascade
    runs only when asked, or when no model here can (test_translate_cascade_real)."""
    api, proxy, _ = cascade
    audio, _ = dialogue
    proxy.synthesized.clear()
    config = cascade_config(path=translate_pb2.SPEECH_TRANSLATION_PATH_UNSPECIFIED)
    reply = await api.TranslateSpeech(
        translate_pb2.TranslateSpeechRequest(audio=wav(audio[: 3 * RATE]), config=config),
        timeout=600,
    )
    assert reply.path == translate_pb2.SPEECH_TRANSLATION_PATH_DIRECT
    assert not reply.HasField("cascade_models") and not proxy.synthesized


async def test_a_long_recording_is_recognized_in_pieces_cut_at_pauses(
    cascade, dialogue, monkeypatch
):
    """Past RECOGNITION_CHUNK_SECONDS (10 min; 8 s here) the recording goes to ASR in pieces
    cut at pauses, so no message outgrows the peer's limit; segment times stay the source's."""
    from speechmesh.translate.cascade import pipeline

    monkeypatch.setattr(pipeline, "RECOGNITION_CHUNK_SECONDS", 8.0)
    api, _, _ = cascade
    audio, spans = dialogue
    config = cascade_config(output_modalities=[translate_pb2.MODALITY_TEXT])
    reply = await api.TranslateSpeech(
        translate_pb2.TranslateSpeechRequest(audio=wav(audio), config=config), timeout=600
    )
    text = reply.translated_text.lower()
    assert "dashwood" in text and "forward" in text and "ill" in text, text
    starts = [seconds(s.start_offset) for s in reply.segments]
    assert starts == sorted(starts) and len(starts) >= 4
    for segment in reply.segments:
        start, end = seconds(segment.start_offset), seconds(segment.end_offset)
        assert speaker_at(spans, start, end), (start, end)  # on speech, not in a pause
