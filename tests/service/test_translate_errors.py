"""Bad input to the translate service: the right code, a message and a field violation naming the
request field, and the server keeps serving. Runs on the shared tiny Seamless + NLLB server."""

from __future__ import annotations

import io
from dataclasses import dataclass, field

import grpc
import numpy as np
import pytest
import soundfile as sf
from google.api import httpbody_pb2
from google.rpc import error_details_pb2

from speechmesh.audio.v1 import audio_pb2
from speechmesh.translate.v1 import translate_pb2 as tr
from speechmesh.translate.v1 import translate_pb2_grpc
from tests.grpc_errors import MethodCase, check_serving, check_status, details

INVALID = grpc.StatusCode.INVALID_ARGUMENT
NOT_FOUND = grpc.StatusCode.NOT_FOUND
RATE = 16000
NLLB = "<nllb>"  # replaced by the tiny NLLB checkpoint's path


def wav_bytes(seconds: float = 1.0) -> bytes:
    samples = np.random.default_rng(5).normal(0, 0.1, int(seconds * RATE))
    buf = io.BytesIO()
    sf.write(buf, samples, RATE, format="WAV", subtype="PCM_16")
    return buf.getvalue()


GOOD_WAV = wav_bytes()
RANDOM_BYTES = np.random.default_rng(1234).integers(0, 256, 8192, dtype=np.uint8).tobytes()


@dataclass
class Case(MethodCase):
    #: The request's config fields.
    config: dict = field(default_factory=dict)


def text(**kwargs) -> dict:
    return {
        "texts": ["Hello."],
        "source_language_code": "en",
        "target_language_code": "fr",
    } | kwargs


CASES = [
    # TranslateText
    Case("text-no-texts", INVALID, "empty", "texts", "TranslateText", text(texts=[])),
    Case("text-129-texts", INVALID, "129", "texts", "TranslateText", text(texts=["a"] * 129)),
    Case(
        "text-too-many-characters",
        INVALID,
        "100000",
        "texts",
        "TranslateText",
        text(texts=["a" * 60_000, "b" * 60_000]),
    ),
    Case(
        "text-no-target",
        INVALID,
        "required",
        "target_language_code",
        "TranslateText",
        text(target_language_code=""),
    ),
    Case(
        "text-unknown-target",
        INVALID,
        "ListLanguages",
        "target_language_code",
        "TranslateText",
        text(target_language_code="xx"),
    ),
    Case(
        "text-malformed-source",
        INVALID,
        "BCP-47",
        "source_language_code",
        "TranslateText",
        text(source_language_code="!!"),
    ),
    Case(
        "text-no-source-on-seamless",
        INVALID,
        "cannot detect",
        "source_language_code",
        "TranslateText",
        text(source_language_code=""),
    ),
    Case(
        "text-unknown-target-on-nllb",
        INVALID,
        "ListLanguages",
        "target_language_code",
        "TranslateText",
        text(target_language_code="tlh", model=NLLB),
    ),
    Case(
        "text-unknown-model",
        NOT_FOUND,
        "no-such-model",
        "",
        "TranslateText",
        text(model="no-such-model"),
    ),
    Case(
        "text-request-id-500",
        INVALID,
        "500",
        "request_id",
        "TranslateText",
        text(request_id="r" * 500),
    ),
    # TranslateSpeech (and its HttpBody forms)
    Case("speech-empty-audio", INVALID, "empty", "audio", "TranslateSpeech", {"audio": b""}),
    Case(
        "speech-random-bytes",
        INVALID,
        "could not decode",
        "audio",
        "TranslateSpeech",
        {"audio": RANDOM_BYTES},
    ),
    Case(
        "speech-no-target",
        INVALID,
        "required",
        "config.target_language_code",
        "TranslateSpeech",
        config={"target_language_code": ""},
    ),
    Case(
        "speech-unknown-target",
        INVALID,
        "ListLanguages",
        "config.target_language_code",
        "TranslateSpeech",
        config={"target_language_code": "xx"},
    ),
    Case(
        "speech-target-not-spoken",
        INVALID,
        "speak",
        "config.target_language_code",
        "TranslateSpeech",
        config={"target_language_code": "af", "output_modalities": [tr.MODALITY_SPEECH]},
    ),
    Case(
        "speech-unknown-source",
        INVALID,
        "ListLanguages",
        "config.source_language_code",
        "TranslateSpeech",
        config={"source_language_code": "xx"},
    ),
    Case(
        "speech-transcript-without-source",
        INVALID,
        "enable_source_transcript",
        "config.source_language_code",
        "TranslateSpeech",
        config={"enable_source_transcript": True},
    ),
    Case(
        "speech-unknown-voice",
        INVALID,
        "speaker-99",
        "config.voice",
        "TranslateSpeech",
        config={"voice": "speaker-99", "output_modalities": [tr.MODALITY_SPEECH]},
    ),
    Case(
        "speech-unspecified-modality",
        INVALID,
        "MODALITY_UNSPECIFIED",
        "config.output_modalities",
        "TranslateSpeech",
        config={"output_modalities": [tr.MODALITY_UNSPECIFIED]},
    ),
    Case(
        "speech-on-text-model",
        INVALID,
        "cannot",
        "config.model",
        "TranslateSpeech",
        config={"model": NLLB, "output_modalities": [tr.MODALITY_SPEECH]},
    ),
    Case(
        "speech-output-rate-1",
        INVALID,
        "192000",
        "config.output_audio_config.sample_rate_hertz",
        "TranslateSpeech",
        config={
            "output_modalities": [tr.MODALITY_SPEECH],
            "output_audio_config": audio_pb2.OutputAudioConfig(sample_rate_hertz=1),
        },
    ),
    Case(
        "speech-mp3-odd-rate",
        INVALID,
        "mp3",
        "config.output_audio_config.sample_rate_hertz",
        "TranslateSpeech",
        config={
            "output_modalities": [tr.MODALITY_SPEECH],
            "output_audio_config": audio_pb2.OutputAudioConfig(
                encoding=audio_pb2.OUTPUT_ENCODING_MP3, sample_rate_hertz=12345
            ),
        },
    ),
    Case(
        "speech-raw-rate-0",
        INVALID,
        "sample_rate_hertz",
        "config.audio_format.sample_rate_hertz",
        "TranslateSpeech",
        {"audio": bytes(3200)},
        config={"audio_format": audio_pb2.AudioFormat(encoding=audio_pb2.AUDIO_ENCODING_LINEAR16)},
    ),
    Case(
        "speech-unknown-model",
        NOT_FOUND,
        "no-such-model",
        "",
        "TranslateSpeech",
        config={"model": "no-such-model"},
    ),
    Case(
        "speech-request-id-500",
        INVALID,
        "500",
        "request_id",
        "TranslateSpeech",
        {"request_id": "r" * 500},
    ),
    Case(
        "file-random-bytes",
        INVALID,
        "could not decode",
        "audio",
        "TranslateSpeechFile",
        {"audio": RANDOM_BYTES},
    ),
    Case(
        "audio-on-text-model",
        INVALID,
        "cannot",
        "config.model",
        "TranslateSpeechAudio",
        config={"model": NLLB},
    ),
    Case(
        "audio-unknown-voice",
        INVALID,
        "nobody",
        "config.voice",
        "TranslateSpeechAudio",
        config={"voice": "nobody"},
    ),
    # TranslateTextToSpeech (and its HttpBody form)
    Case("tts-empty-text", INVALID, "empty", "text", "TranslateTextToSpeech", {"text": ""}),
    Case(
        "tts-10001-characters",
        INVALID,
        "10001",
        "text",
        "TranslateTextToSpeech",
        {"text": "a" * 10_001},
    ),
    Case(
        "tts-on-text-model",
        INVALID,
        "cannot",
        "config.model",
        "TranslateTextToSpeech",
        config={"model": NLLB},
    ),
    Case(
        "tts-unknown-voice",
        INVALID,
        "speaker-x",
        "config.voice",
        "TranslateTextToSpeech",
        config={"voice": "speaker-x"},
    ),
    Case(
        "tts-target-not-spoken",
        INVALID,
        "speak",
        "config.target_language_code",
        "TranslateTextToSpeech",
        config={"target_language_code": "af"},
    ),
    Case(
        "tts-no-source",
        INVALID,
        "cannot detect",
        "config.source_language_code",
        "TranslateTextToSpeech",
        config={"source_language_code": ""},
    ),
    Case(
        "tts-audio-no-target",
        INVALID,
        "required",
        "config.target_language_code",
        "TranslateTextToSpeechAudio",
        config={"target_language_code": ""},
    ),
    Case(
        "tts-audio-bad-encoding",
        INVALID,
        "42",
        "config.output_audio_config.encoding",
        "TranslateTextToSpeechAudio",
        config={"output_audio_config": audio_pb2.OutputAudioConfig(encoding=42)},
    ),
    # Listing
    Case(
        "languages-unknown-model",
        NOT_FOUND,
        "no-such-model",
        "",
        "ListLanguages",
        {"model": "no-such-model"},
    ),
    Case(
        "languages-request-id-500",
        INVALID,
        "500",
        "request_id",
        "ListLanguages",
        {"request_id": "r" * 500},
    ),
]


def build_request(case: Case, nllb: str):
    fields = {k: (nllb if v == NLLB else v) for k, v in case.request.items()}
    config = {k: (nllb if v == NLLB else v) for k, v in case.config.items()}
    method = case.method
    if method == "TranslateText":
        return tr.TranslateTextRequest(**fields)
    if method == "ListLanguages":
        return tr.ListLanguagesRequest(**fields)
    if method.startswith("TranslateTextToSpeech"):
        config = {"source_language_code": "en", "target_language_code": "fr"} | config
        fields = {"text": "Hello there."} | fields
        message = tr.TranslateTextToSpeechRequest
        if method.endswith("Audio"):
            message = tr.TranslateTextToSpeechAudioRequest
        return message(config=tr.TextToSpeechTranslationConfig(**config), **fields)
    config = tr.SpeechTranslationConfig(**({"target_language_code": "fr"} | config))
    fields = {"audio": GOOD_WAV} | fields
    if method == "TranslateSpeech":
        return tr.TranslateSpeechRequest(config=config, **fields)
    body = httpbody_pb2.HttpBody(content_type="audio/wav", data=fields.pop("audio"))
    message = tr.TranslateSpeechFileRequest
    if method == "TranslateSpeechAudio":
        message = tr.TranslateSpeechAudioRequest
    return message(audio=body, config=config, **fields)


def check_error(error: grpc.aio.AioRpcError, case: Case) -> None:
    check_status(error, case.code, case.mention, case.field, label=case.id)
    if case.code == NOT_FOUND:
        (info,) = details(error, error_details_pb2.ResourceInfo)
        assert (info.resource_type, info.resource_name) == ("model", "no-such-model")


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
async def test_bad_input(tiny_translate, tiny_nllb_checkpoint, case: Case):
    _, channel = tiny_translate
    api = translate_pb2_grpc.TranslateServiceStub(channel)
    request = build_request(case, str(tiny_nllb_checkpoint))
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await getattr(api, case.method)(request, timeout=30)
    check_error(raised.value, case)


async def test_server_still_serves_after_bad_input(tiny_translate):
    _, channel = tiny_translate
    await check_serving(channel, "", "speechmesh.translate.v1.TranslateService")
    api = translate_pb2_grpc.TranslateServiceStub(channel)
    response = await api.TranslateText(
        tr.TranslateTextRequest(
            request_id="after",
            texts=["Still here?"],
            source_language_code="en",
            target_language_code="fr",
        ),
        timeout=60,
    )
    assert response.request_id == "after" and len(response.translations) == 1
