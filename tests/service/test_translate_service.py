"""The translate service end to end on tiny random checkpoints: every unary RPC over a channel.

The server runs a tiny SeamlessM4T v2 as its default model and a tiny NLLB as its text model.
Random weights translate into noise, so these tests assert what the service does around the
model: request ids, routing, splitting, segments and their times, audio formats, codes.
"""

from __future__ import annotations

import asyncio
import io

import numpy as np
import pytest
import soundfile as sf
from google.api import httpbody_pb2
from prometheus_client import REGISTRY

from speechmesh.audio.v1 import audio_pb2
from speechmesh.common.v1 import common_pb2
from speechmesh.dsp.audio import RawFormat, decode_audio
from speechmesh.translate.v1 import translate_pb2, translate_pb2_grpc
from tests.conftest import AUDIO, requires_shared, running_translate

TEXT, SPEECH = translate_pb2.MODALITY_TEXT, translate_pb2.MODALITY_SPEECH
RATE = 16000
GOFORWARD = AUDIO / "goforward.wav"
MULTILINGUAL = AUDIO / "fw" / "multilingual.mp3"  # 60 s of speech in several languages


def stub(channel) -> translate_pb2_grpc.TranslateServiceStub:
    return translate_pb2_grpc.TranslateServiceStub(channel)


def noise_wav(seconds: float = 2.0) -> bytes:
    samples = np.random.default_rng(3).normal(0, 0.1, int(seconds * RATE))
    buf = io.BytesIO()
    sf.write(buf, samples, RATE, format="WAV", subtype="PCM_16")
    return buf.getvalue()


async def translate_speech(
    api, audio: bytes, target: str, request_id: str = "", timeout: float = 60, **config
) -> translate_pb2.TranslateSpeechResponse:
    """TranslateSpeech of `audio` into `target` with a SpeechTranslationConfig of `config`."""
    config = translate_pb2.SpeechTranslationConfig(target_language_code=target, **config)
    request = translate_pb2.TranslateSpeechRequest(
        request_id=request_id, audio=audio, config=config
    )
    return await api.TranslateSpeech(request, timeout=timeout)


def seconds(duration) -> float:
    return duration.ToNanoseconds() / 1e9


@pytest.fixture(scope="module")
async def translate(tiny_translate, tiny_seamless_checkpoint, tiny_nllb_checkpoint):
    _, channel = tiny_translate
    # The models' ids: their folders' names (requests may name them by path too).
    return stub(channel), tiny_seamless_checkpoint.name, tiny_nllb_checkpoint.name


def decoded(data: bytes, encoding: str, rate: int):
    raw = RawFormat("linear16", rate) if encoding == "pcm" else None
    return decode_audio(data, raw, target_rate=None)


# -- text ----------------------------------------------------------------------


async def test_many_texts_in_one_call(translate):
    api, seamless, _ = translate
    texts = ["Hello world.", "", "How are you?", "The weather is nice today.", "Bye."]
    response = await api.TranslateText(
        translate_pb2.TranslateTextRequest(
            request_id="many",
            texts=texts,
            source_language_code="en",
            target_language_code="fr",
        ),
        timeout=60,
    )
    assert response.request_id == "many"
    assert response.model == seamless
    assert len(response.translations) == len(texts)
    assert response.translations[1].translated_text == ""  # an empty entry stays empty
    for translation in response.translations:
        assert isinstance(translation.translated_text, str)
        assert translation.source_language_code == "en"
        assert translation.source_language_probability == 1.0
    assert all(response.translations[i].translated_text for i in (0, 2, 3, 4))
    # Random weights never end a sentence: every non-empty text ran to its length limit, and
    # says so; the empty one did not.
    assert [t.truncated for t in response.translations] == [True, False, True, True, True]


async def test_text_routed_to_the_named_text_model(translate):
    api, _, nllb = translate
    response = await api.TranslateText(
        translate_pb2.TranslateTextRequest(
            texts=["Good morning.", "See you."],
            source_language_code="en",
            target_language_code="de",
            model=nllb,
        ),
        timeout=60,
    )
    assert response.model == nllb
    assert len(response.translations) == 2


async def test_a_model_is_named_by_its_id_or_by_its_source(translate, tiny_nllb_checkpoint):
    """ListModels names a model by a stable id, with the path it was loaded from as `source`;
    a request may name it either way, and the response reports the id."""
    api, _, nllb = translate
    listed = await api.ListModels(translate_pb2.ListModelsRequest(), timeout=10)
    assert (listed.models[1].name, listed.models[1].source) == (nllb, str(tiny_nllb_checkpoint))
    for name in (nllb, str(tiny_nllb_checkpoint)):
        request = translate_pb2.TranslateTextRequest(
            texts=["Hi."], source_language_code="en", target_language_code="de", model=name
        )
        assert (await api.TranslateText(request, timeout=60)).model == nllb


async def test_long_text_is_split_translated_in_batches_and_joined(translate):
    api, seamless, _ = translate
    document = "\n\n".join(
        " ".join(f"Paragraph {p} has sentence number {i} in it." for i in range(12))
        for p in range(12)
    )
    assert len(document) > 5_000  # 144 sentences: many batches of the batcher

    def batches() -> float:
        return REGISTRY.get_sample_value("speechmesh_batch_size_sum", {"model": seamless}) or 0.0

    before = batches()
    response = await api.TranslateText(
        translate_pb2.TranslateTextRequest(
            texts=[document], source_language_code="en", target_language_code="es"
        ),
        timeout=120,
    )
    (translation,) = response.translations
    assert translation.translated_text.strip()
    assert batches() - before >= 12  # at least one piece per paragraph went through the batcher
    assert translation.translated_text.count("\n\n") == 11  # paragraphs kept


# -- speech --------------------------------------------------------------------


async def test_speech_to_text_with_source_transcript(translate):
    api, seamless, _ = translate
    response = await translate_speech(
        api,
        noise_wav(2.0),
        "fr",
        request_id="s2tt",
        source_language_code="en",
        enable_source_transcript=True,
    )
    assert response.request_id == "s2tt"
    assert response.model == seamless
    assert response.source_language_code == "en"
    assert response.target_language_code == "fr"
    assert seconds(response.audio_duration) == pytest.approx(2.0)
    (segment,) = response.segments
    assert seconds(segment.start_offset) == 0 and seconds(segment.end_offset) == 2.0
    assert response.translated_text == segment.translated_text
    assert response.source_transcript == segment.source_transcript
    assert response.translated_text and response.source_transcript
    assert not response.translated_audio and response.translated_audio_sample_rate_hertz == 0
    assert not response.HasField("translated_audio_duration")
    assert not response.voice


async def test_speech_to_speech_returns_text_and_audio(translate):
    api, _, _ = translate
    response = await translate_speech(
        api, noise_wav(1.5), "de", output_modalities=[TEXT, SPEECH], voice="speaker-2"
    )
    assert response.voice == "speaker-2"
    assert response.translated_text
    assert response.source_language_code == "" and response.source_language_probability == 0
    audio = decoded(response.translated_audio, "wav", 0)
    assert audio.sample_rate == response.translated_audio_sample_rate_hertz == 16000
    assert audio.duration == pytest.approx(seconds(response.translated_audio_duration), abs=0.01)
    (segment,) = response.segments
    assert seconds(segment.translated_audio_end_offset) == pytest.approx(audio.duration, abs=0.01)


async def test_speech_only_output_leaves_text_out(translate):
    api, _, _ = translate
    response = await translate_speech(api, noise_wav(1.0), "es", output_modalities=[SPEECH])
    assert response.translated_text == "" and response.translated_audio
    assert response.voice == "speaker-0"  # the default voice


@requires_shared
async def test_long_audio_is_segmented_at_pauses(translate):
    if not MULTILINGUAL.is_file():
        pytest.skip(f"{MULTILINGUAL} not found")
    api, _, _ = translate
    response = await translate_speech(
        api,
        MULTILINGUAL.read_bytes(),
        "en",
        timeout=120,
        output_modalities=[TEXT, SPEECH],
    )
    duration = seconds(response.audio_duration)
    assert duration > 55
    segments = response.segments
    assert len(segments) >= 2
    previous_end, previous_audio_end = 0.0, 0.0
    for segment in segments:
        start, end = seconds(segment.start_offset), seconds(segment.end_offset)
        assert previous_end <= start < end <= duration + 0.001
        assert end - start <= 30.0 + 0.001  # the model's window
        assert segment.translated_text
        audio_start = seconds(segment.translated_audio_start_offset)
        audio_end = seconds(segment.translated_audio_end_offset)
        assert previous_audio_end <= audio_start <= audio_end
        previous_end, previous_audio_end = end, audio_end
    assert response.translated_text == " ".join(s.translated_text for s in segments)
    audio = decoded(response.translated_audio, "wav", 0)
    assert audio.duration == pytest.approx(previous_audio_end, abs=0.01)


async def test_speech_file_and_raw_speech_audio(translate):
    api, _, _ = translate
    body = httpbody_pb2.HttpBody(content_type="audio/wav", data=noise_wav(1.0))
    config = translate_pb2.SpeechTranslationConfig(target_language_code="fr")
    response = await api.TranslateSpeechFile(
        translate_pb2.TranslateSpeechFileRequest(audio=body, request_id="file", config=config),
        timeout=60,
    )
    assert response.request_id == "file"
    assert len(response.segments) == 1 and response.translated_text
    assert not response.translated_audio

    config.output_audio_config.CopyFrom(
        audio_pb2.OutputAudioConfig(
            encoding=audio_pb2.OUTPUT_ENCODING_FLAC, sample_rate_hertz=24000
        )
    )
    raw = await api.TranslateSpeechAudio(
        translate_pb2.TranslateSpeechAudioRequest(audio=body, request_id="raw", config=config),
        timeout=60,
    )
    assert raw.content_type == "audio/flac"
    audio = decoded(raw.data, "flac", 0)
    assert audio.sample_rate == 24000 and audio.duration > 0


# -- text to speech ------------------------------------------------------------

ENCODINGS = [
    (audio_pb2.OUTPUT_ENCODING_UNSPECIFIED, 0, "wav", 16000, "audio/wav"),
    (audio_pb2.OUTPUT_ENCODING_WAV, 8000, "wav", 8000, "audio/wav"),
    (audio_pb2.OUTPUT_ENCODING_FLAC, 22050, "flac", 22050, "audio/flac"),
    (audio_pb2.OUTPUT_ENCODING_OGG_OPUS, 0, "ogg_opus", 48000, "audio/ogg"),
    (audio_pb2.OUTPUT_ENCODING_MP3, 24000, "mp3", 24000, "audio/mpeg"),
    (audio_pb2.OUTPUT_ENCODING_PCM, 16000, "pcm", 16000, "audio/pcm;rate=16000"),
]


@pytest.mark.parametrize(
    "encoding, rate, name, expected_rate, mime",
    ENCODINGS,
    ids=[e[2] + str(e[1]) for e in ENCODINGS],
)
async def test_text_to_speech_in_every_encoding(
    translate, encoding, rate, name, expected_rate, mime
):
    api, seamless, _ = translate
    config = translate_pb2.TextToSpeechTranslationConfig(
        source_language_code="en",
        target_language_code="pt",
        output_audio_config=audio_pb2.OutputAudioConfig(encoding=encoding, sample_rate_hertz=rate),
    )
    response = await api.TranslateTextToSpeech(
        translate_pb2.TranslateTextToSpeechRequest(
            request_id=name, text="Hello there. How are you today?", config=config
        ),
        timeout=60,
    )
    assert response.request_id == name and response.model == seamless
    assert response.voice == "speaker-0" and response.translated_text
    assert response.source_language_code == "en"
    assert response.sample_rate_hertz == expected_rate
    audio = decoded(response.audio, name, expected_rate)
    assert audio.sample_rate == expected_rate
    assert audio.duration == pytest.approx(seconds(response.audio_duration), abs=0.1)

    raw = await api.TranslateTextToSpeechAudio(
        translate_pb2.TranslateTextToSpeechAudioRequest(text="Good night.", config=config),
        timeout=60,
    )
    assert raw.content_type == mime
    assert decoded(raw.data, name, expected_rate).duration > 0


async def test_text_to_speech_voice_and_long_text(translate):
    api, _, _ = translate
    text = " ".join(f"Sentence {i} is short." for i in range(60))
    response = await api.TranslateTextToSpeech(
        translate_pb2.TranslateTextToSpeechRequest(
            text=text,
            config=translate_pb2.TextToSpeechTranslationConfig(
                source_language_code="en", target_language_code="fr", voice="speaker-3"
            ),
        ),
        timeout=120,
    )
    assert response.voice == "speaker-3"
    assert seconds(response.audio_duration) > 0 and response.translated_text


# -- models and languages ------------------------------------------------------


async def test_list_languages_per_modality(translate):
    api, seamless, nllb = translate
    response = await api.ListLanguages(translate_pb2.ListLanguagesRequest(request_id="langs"))
    assert response.request_id == "langs"
    assert [m.model for m in response.models] == [seamless, nllb]
    s, n = response.models
    assert "en" in s.text_input_language_codes and "af" in s.text_output_language_codes
    assert "en" in s.speech_input_language_codes
    assert "fr" in s.speech_output_language_codes and "af" not in s.speech_output_language_codes
    assert [v.name for v in s.voices] == [f"speaker-{i}" for i in range(4)]
    assert "en" in n.text_input_language_codes and "fr" in n.text_output_language_codes
    assert not n.speech_input_language_codes and not n.speech_output_language_codes
    assert not n.voices
    for entry in response.models:
        for codes in (
            entry.text_input_language_codes,
            entry.text_output_language_codes,
            entry.speech_input_language_codes,
            entry.speech_output_language_codes,
        ):
            assert list(codes) == sorted(codes)
    only = await api.ListLanguages(translate_pb2.ListLanguagesRequest(model=nllb))
    assert [m.model for m in only.models] == [nllb]


async def test_list_models(translate):
    api, seamless, nllb = translate
    response = await api.ListModels(translate_pb2.ListModelsRequest(request_id="models"))
    assert response.request_id == "models"
    s, n = response.models
    assert (s.name, s.engine, s.default) == (seamless, "seamless_m4t_v2", True)
    assert list(s.input_modalities) == [TEXT, SPEECH] == list(s.output_modalities)
    assert s.native_sample_rate_hertz == 16000 and not s.supports_language_detection
    assert (n.name, n.engine, n.default) == (nllb, "nllb", False)
    assert list(n.input_modalities) == [TEXT] == list(n.output_modalities)
    assert n.native_sample_rate_hertz == 0
    for model in response.models:
        assert model.state == common_pb2.MODEL_STATE_READY
        assert model.random_weights and model.memory_bytes > 0
        assert model.device == "cpu" and model.dtype == "float32" and not model.error


async def test_routing_picks_the_first_capable_model(
    tiny_seamless_checkpoint, tiny_nllb_checkpoint
):
    """With NLLB as the default, text goes to it and speech to Seamless, the first that can."""
    async with running_translate(tiny_nllb_checkpoint, tiny_seamless_checkpoint, warmup=False) as (
        _,
        channel,
    ):
        api = stub(channel)
        text = await api.TranslateText(
            translate_pb2.TranslateTextRequest(
                texts=["Hi."], source_language_code="en", target_language_code="fr"
            ),
            timeout=60,
        )
        assert text.model == tiny_nllb_checkpoint.name
        speech = await translate_speech(api, noise_wav(1.0), "fr")
        assert speech.model == tiny_seamless_checkpoint.name
        models = await api.ListModels(translate_pb2.ListModelsRequest())
        assert [m.default for m in models.models] == [True, False]


async def test_concurrent_calls_share_forward_passes(translate):
    api, seamless, _ = translate

    def batches() -> tuple[float, float]:
        labels = {"model": seamless}
        return (
            REGISTRY.get_sample_value("speechmesh_batch_size_count", labels) or 0.0,
            REGISTRY.get_sample_value("speechmesh_batch_size_sum", labels) or 0.0,
        )

    count, total = batches()
    await asyncio.gather(
        *(
            api.TranslateText(
                translate_pb2.TranslateTextRequest(
                    texts=[f"Sentence {i}."], source_language_code="en", target_language_code="ja"
                ),
                timeout=60,
            )
            for i in range(8)
        )
    )
    count_after, total_after = batches()
    assert total_after - total == 8
    assert count_after - count < 8  # some calls shared a forward pass
