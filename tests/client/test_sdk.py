"""speechmesh.client against live in-process services (straight to each service's port): the
results as dataclasses, the streaming helpers (files in real time and as fast as possible, any
iterator of chunks, text pieces in and audio out), voices, and the typed errors."""

from __future__ import annotations

import asyncio
import io
import time

import numpy as np
import pytest
import soundfile as sf

from speechmesh.asr.v1 import asr_pb2
from speechmesh.client import (
    FLUSH,
    FORCE_ENDPOINT,
    AsyncClient,
    AudioFileError,
    Client,
    InvalidArgument,
    NotFound,
    SpeechEvent,
    StreamingResult,
    Unavailable,
)
from tests.client.conftest import GOFORWARD, JFK, REAL, real_only
from tests.servers import free_port


def words_of(text: str) -> list[str]:
    return "".join(c if c.isalnum() or c.isspace() else " " for c in text.lower()).split()


@pytest.fixture(scope="module")
def asr(suite):
    with Client(suite.asr) as client:
        yield client


@pytest.fixture(scope="module")
def translate(suite):
    with Client(suite.translate) as client:
        yield client


@pytest.fixture(scope="module")
def tts(suite):
    with Client(suite.tts) as client:
        yield client


# -- ASR -------------------------------------------------------------------------------------


@real_only
def test_recognize_gives_a_transcript_with_segments_words_and_the_proto(asr):
    transcript = asr.asr.recognize(GOFORWARD, language="en", words=True)
    assert words_of(transcript.text) == ["go", "forward", "10", "meters"]
    assert transcript.language == "en" and transcript.duration == pytest.approx(2.786, abs=0.01)
    assert [w.word for w in transcript.words] == ["Go", "forward", "10", "meters."]
    starts = [w.start for w in transcript.words]
    assert starts == sorted(starts) and 0.3 < starts[0] < 1.5
    assert isinstance(transcript.proto, asr_pb2.RecognizeResponse)
    assert transcript.segments[0].proto is transcript.proto.segments[0]


@real_only
def test_recognize_file_sends_a_long_recording_in_pieces_with_progress(asr, long_recording):
    calls = []
    transcript = asr.asr.recognize_file(
        long_recording, piece_seconds=6, progress=lambda d, t: calls.append((d, t)), words=True
    )
    total = sf.info(long_recording).duration
    assert isinstance(transcript.proto, list) and len(transcript.proto) >= 3  # pieces
    assert calls[0] == (0.0, pytest.approx(total)) and calls[-1][0] == pytest.approx(total)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)
    text = words_of(transcript.text)
    for expected in ("dashwood", "selfish", "himself"):
        assert expected in text, transcript.text
    starts = [s.start for s in transcript.segments]
    assert starts == sorted(starts) and transcript.segments[-1].end > total - 6
    word_starts = [w.start for w in transcript.words]
    assert word_starts == sorted(word_starts) and word_starts[-1] > 14


def test_stream_file_as_fast_as_possible_yields_finals_and_events(asr):
    started = time.monotonic()
    events = list(asr.asr.stream_file(JFK, vad_events=True, words=True, interim_results=False))
    elapsed = time.monotonic() - started
    finals = [e for e in events if isinstance(e, StreamingResult)]
    speech = [e for e in events if isinstance(e, SpeechEvent)]
    assert finals and all(f.is_final for f in finals)
    assert [f.utterance_index for f in finals] == list(range(len(finals)))
    # Events follow utterances: a begin for each, an end for each the speaker ended by a pause
    # (the last may end with the audio instead).
    types = [e.type for e in speech]
    assert types[0] == "speech_begin" and types.count("speech_end") <= types.count("speech_begin")
    assert finals[-1].end <= 11.1
    if REAL:
        text = words_of(" ".join(f.text for f in finals))
        assert "country" in text and "americans" in text
        assert all(f.words for f in finals if f.text)
        assert elapsed < 11  # faster than the 11 s of audio


def test_stream_file_in_real_time_takes_the_audio_s_duration(asr):
    started = time.monotonic()
    events = list(asr.asr.stream_file(GOFORWARD, realtime=True, chunk_seconds=0.2))
    assert time.monotonic() - started >= 2.5  # 2.79 s of audio, the first chunk at once
    finals = [e for e in events if isinstance(e, StreamingResult) and e.is_final]
    if REAL:
        assert words_of(finals[-1].text) == ["go", "forward", "10", "meters"]


def test_stream_from_any_iterator_of_numpy_chunks_with_a_forced_endpoint(asr):
    samples, rate = sf.read(GOFORWARD, dtype="float32")
    assert rate == 16000

    def microphone():
        for start in range(0, len(samples), 1600):
            yield samples[start : start + 1600]  # float arrays: sent as LINEAR16
            if start == 24000:  # at 1.6 s, after "Go forward" (speech: 0.51 s to 2.08 s)
                yield FORCE_ENDPOINT

    finals = [
        e
        for e in asr.asr.stream(microphone(), sample_rate=16000, interim_results=False)
        if isinstance(e, StreamingResult) and e.is_final
    ]
    assert len(finals) == 2  # the forced endpoint cut the utterance
    assert finals[0].end == pytest.approx(1.6, abs=0.1)
    assert finals[1].start >= finals[0].end


def test_stream_of_a_wav_file_header_first(asr):
    data = GOFORWARD.read_bytes()
    pieces = [data[i : i + 4000] for i in range(0, len(data), 4000)]
    finals = [
        e
        for e in asr.asr.stream(pieces, encoding=None, interim_results=False)
        if isinstance(e, StreamingResult) and e.is_final
    ]
    assert finals
    if REAL:
        assert "forward" in words_of(finals[0].text)


def test_an_exception_in_the_audio_iterator_reaches_the_caller(asr):
    def broken():
        yield b"\0\0" * 1600
        raise RuntimeError("the microphone fell off")

    with pytest.raises(RuntimeError, match="microphone fell off"):
        list(asr.asr.stream(broken()))


def test_breaking_out_of_a_stream_cancels_it(asr):
    stream = asr.asr.stream_file(JFK, realtime=True, vad_events=True)
    first = next(iter(stream))
    assert isinstance(first, (SpeechEvent, StreamingResult))
    stream.close()  # the call is cancelled, not left running for 11 s


async def test_async_stream_from_an_async_generator(suite):
    samples, _ = sf.read(GOFORWARD, dtype="int16")

    async def chunks():
        for start in range(0, len(samples), 3200):
            yield samples[start : start + 3200].tobytes()
            await asyncio.sleep(0)

    async with AsyncClient(suite.asr) as client:
        finals = [
            e
            async for e in client.asr.stream(chunks(), interim_results=False)
            if isinstance(e, StreamingResult) and e.is_final
        ]
        file_finals = [
            e
            async for e in client.asr.stream_file(GOFORWARD, interim_results=False)
            if isinstance(e, StreamingResult) and e.is_final
        ]
        transcript = await client.asr.recognize(GOFORWARD.read_bytes())
        models = await client.asr.models()
    assert finals and file_finals
    assert models[0].service == "asr" and models[0].state == "ready" and models[0].default
    if REAL:
        assert (
            words_of(finals[-1].text) == words_of(transcript.text) == words_of(file_finals[-1].text)
        )


async def test_async_stream_reraises_the_iterator_s_exception(suite):
    async def broken():
        yield b"\0\0" * 1600
        raise RuntimeError("async source broke")

    async with AsyncClient(suite.asr) as client:
        with pytest.raises(RuntimeError, match="async source broke"):
            async for _ in client.asr.stream(broken()):
                pass


def test_a_file_that_is_not_audio_fails_before_any_call(asr, tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("not audio")
    with pytest.raises(AudioFileError, match=r"notes\.txt"):
        asr.asr.stream_file(text)
    with pytest.raises(AudioFileError, match="no such file"):
        asr.asr.recognize(tmp_path / "missing.wav")


# -- translate ---------------------------------------------------------------------------------


def test_translate_text_one_or_many(translate):
    one = translate.translate.text("Hello there.", to="fr", source="en")
    assert one.source_language == "en" and one.text and one.model
    many = translate.translate.text(["Hello.", "", "Goodbye."], to="de", source="en")
    assert len(many) == 3 and many[1].text == ""
    assert many[0].proto is not None


def test_translate_speech_with_translated_audio_and_the_stream(translate):
    result = translate.translate.speech(GOFORWARD, to="fr", source="en", speech=True)
    assert result.target_language == "fr" and result.segments
    assert result.audio is not None and result.audio.sample_rate == 16000
    samples, rate = sf.read(io.BytesIO(result.audio.audio))
    assert rate == 16000 and len(samples) / rate == pytest.approx(result.audio.duration, 0.05)
    kinds = [e.kind for e in translate.translate.stream_speech_file(GOFORWARD, to="fr")]
    assert "translation" in kinds and kinds[-1] == "segment_end"
    languages = translate.translate.languages()
    assert "fr" in languages[0].text_output and languages[0].voices


def test_unknown_language_is_invalid_argument_with_the_field(translate):
    with pytest.raises(InvalidArgument) as caught:
        translate.translate.text("Hello", to="xx", source="en")
    error = caught.value
    assert error.code.name == "INVALID_ARGUMENT"
    assert error.fields == ["target_language_code"]
    assert "'xx'" in error.field_violations[0].description
    assert error.status is not None and error.rpc is not None


# -- TTS ---------------------------------------------------------------------------------------


def test_synthesize_gives_speech(tts):
    speech = tts.tts.synthesize("Hello there. How are you?", seed=5, format="flac")
    assert speech.encoding == "flac" and speech.seed == 5 and speech.sample_rate == 24000
    assert [s[0] for s in speech.sentences] == ["Hello there.", "How are you?"]
    samples, rate = speech.to_numpy()
    assert rate == 24000 and len(samples) / rate == pytest.approx(speech.duration, abs=0.05)
    preset = tts.tts.synthesize("Hi.", preset_voice="default")
    assert preset.model != speech.model  # VITS speaks the preset


def test_stream_text_pieces_in_and_audio_chunks_out(tts):
    pieces = ["Hello ", "there. ", "And here", FLUSH, " it is"]
    stream = tts.tts.stream(pieces, seed=3)
    received = list(stream)
    assert stream.summary is not None and stream.summary.sentence_count == 3
    assert [c.text for c in received if c.text] == ["Hello there.", "And here", "it is"]
    assert received[-1].sentence_end
    audio = b"".join(c.audio for c in received)
    samples, rate = sf.read(io.BytesIO(audio))  # one continuous WAV
    assert rate == 24000 and len(samples) / rate == pytest.approx(stream.summary.duration, abs=0.05)


async def test_async_synthesis_stream_from_an_async_generator(suite):
    async def tokens():
        for word in ["One", "sentence.", "Another", "one."]:
            yield word + " "
            await asyncio.sleep(0.01)

    async with AsyncClient(suite.tts) as client:
        stream = client.tts.stream(tokens(), seed=1)
        chunks = [chunk async for chunk in stream]
        assert stream.summary is not None and stream.summary.sentence_count == 2
        assert {c.sentence_index for c in chunks} == {0, 1}


def test_voices_lifecycle_and_not_found(tts, reference_wav):
    voice = tts.tts.create_voice(
        "sdk-voice", reference_wav, "A test recording.", display_name="SDK"
    )
    assert voice.name == "voices/sdk-voice" and voice.id == "sdk-voice"
    assert voice.reference_duration > 3 and voice.engine == "csm" and voice.created
    assert tts.tts.get_voice("sdk-voice").transcript == "A test recording."
    assert "voices/sdk-voice" in [v.name for v in tts.tts.list_voices(page_size=1)]
    speech = tts.tts.synthesize("Hello.", voice="sdk-voice", seed=1)
    assert speech.voice == "sdk-voice" and speech.audio
    tts.tts.delete_voice("voices/sdk-voice")
    with pytest.raises(NotFound) as caught:
        tts.tts.get_voice("sdk-voice")
    assert caught.value.resource is not None
    assert caught.value.resource.resource_name == "voices/sdk-voice"


# -- connection ---------------------------------------------------------------------------------


def test_nothing_listening_is_unavailable_connect_failed():
    client = Client(f"127.0.0.1:{free_port()}", retries=1, timeout=5)
    with client, pytest.raises(Unavailable) as caught:
        client.asr.models()
    assert caught.value.connect_failed


def test_health_straight_to_a_service(asr):
    found = asr.health()
    assert found["asr"].serving
    assert found["translate"].status == found["tts"].status == "SERVICE_UNKNOWN"


def test_targets_and_models_across_services(suite):
    with Client(f"http://{suite.gateway}") as client:
        assert client.target == suite.gateway and not client.connection.tls
        models = client.models()
    assert {m.service for m in models} == {"asr", "translate", "tts"}
    tts_models = [m for m in models if m.service == "tts"]
    assert tts_models[0].capabilities["supports_voice_cloning"]
    assert "default" in tts_models[1].preset_voices
    translate_model = next(m for m in models if m.service == "translate")
    assert translate_model.capabilities["speech_output"] and translate_model.random_weights
    assert all(isinstance(m.memory_bytes, int) and m.device for m in models)
    assert Client("https://example.invalid").connection.target == "example.invalid:443"


def test_numpy_chunks_must_be_audio():
    from speechmesh.client.audio import array_to_bytes

    assert array_to_bytes(np.zeros(4, dtype=np.float32), "linear16") == b"\0" * 8
    with pytest.raises(TypeError):
        array_to_bytes("text", "linear16")


async def test_async_recognize_file_in_pieces_and_its_errors(suite):
    calls = []
    async with AsyncClient(suite.asr) as client:
        transcript = await client.asr.recognize_file(
            GOFORWARD, piece_seconds=1.0, progress=lambda d, t: calls.append(d)
        )
        assert len(transcript.proto) >= 2 and calls[-1] == pytest.approx(2.786, abs=0.01)
        with pytest.raises(InvalidArgument) as caught:  # not an ExceptionGroup
            await client.asr.recognize_file(GOFORWARD, piece_seconds=1.0, language="xx")
    assert caught.value.fields == ["config.language_code"]


def test_recognize_file_in_pieces_raises_the_first_error(asr):
    with pytest.raises(InvalidArgument) as caught:
        asr.asr.recognize_file(GOFORWARD, piece_seconds=1.0, language="xx", request_id="r")
    assert caught.value.fields == ["config.language_code"]
