"""Bad input to the TTS service: the right code, a message that says what to fix, a field
violation naming the request field, and the server keeps serving. Runs on the shared tiny CSM +
VITS server."""

from __future__ import annotations

import grpc
import numpy as np
import pytest
from google.api import httpbody_pb2

from speechmesh.audio.v1 import audio_pb2
from speechmesh.tts.v1 import tts_pb2, tts_pb2_grpc
from tests.grpc_errors import MethodCase, check_serving, check_status, stream_refused
from tests.sounds import REFERENCE, voice_like, wav

INVALID = grpc.StatusCode.INVALID_ARGUMENT
NOT_FOUND = grpc.StatusCode.NOT_FOUND
EXISTS = grpc.StatusCode.ALREADY_EXISTS
VITS = "<vits>"  # replaced by the tiny VITS checkpoint's path


Case = MethodCase


def say(text: str = "Hello.", **config) -> dict:
    return {"text": text, "config": tts_pb2.SynthesisConfig(**config)}


def reference(audio: bytes = REFERENCE, transcript: str = "This is my voice.", **kwargs):
    return tts_pb2.ReferenceAudio(audio=audio, transcript=transcript, **kwargs)


def create(voice_id: str = "", audio: bytes = REFERENCE, **voice) -> dict:
    voice = {"transcript": "This is my voice."} | voice
    return {"voice_id": voice_id, "voice": tts_pb2.Voice(**voice), "reference_audio": audio}


SILENT = wav(np.zeros(16000 * 5, np.float32))
CLIPPED = wav(np.clip(voice_like() * 40, -1, 1))
SHORT = wav(voice_like(1.0))
LONG = wav(voice_like(40.0))
NOT_AUDIO = np.random.default_rng(3).integers(0, 256, 4096, dtype=np.uint8).tobytes()

CASES = [
    # Synthesize
    Case("empty-text", INVALID, "empty", "text", "Synthesize", say("  ")),
    Case("text-over-5000", INVALID, "5001", "text", "Synthesize", say("a" * 5001)),
    Case("unknown-model", NOT_FOUND, "ListModels", "", "Synthesize", say(model="nope")),
    Case(
        "unknown-voice",
        NOT_FOUND,
        "voices/ghost",
        "",
        "Synthesize",
        say(voice="voices/ghost"),
    ),
    Case("bad-voice-name", INVALID, "voices/", "config.voice", "Synthesize", say(voice="ghost")),
    Case(
        "unknown-preset",
        INVALID,
        "nobody",
        "config.preset_voice",
        "Synthesize",
        say(preset_voice="nobody"),
    ),
    Case(
        "preset-on-csm",
        INVALID,
        "preset",
        "config.preset_voice",
        "Synthesize",
        say(model="<csm>", preset_voice="default"),
    ),
    Case(
        "clone-on-vits",
        INVALID,
        "cannot clone",
        "config.model",
        "Synthesize",
        say(model=VITS, reference_audio=reference()),
    ),
    Case(
        "language-not-spoken",
        INVALID,
        "does not speak",
        "config.language_code",
        "Synthesize",
        say(language_code="fr"),
    ),
    Case("speed", INVALID, "0.5 to 2.0", "config.speed", "Synthesize", say(speed=3.0)),
    Case(
        "temperature", INVALID, "0.0 to 2.0", "config.temperature", "Synthesize", say(temperature=5)
    ),
    Case(
        "bad-encoding",
        INVALID,
        "42",
        "config.output_audio_config.encoding",
        "Synthesize",
        say(output_audio_config=audio_pb2.OutputAudioConfig(encoding=42)),
    ),
    Case(
        "bad-rate",
        INVALID,
        "8000 to 192000",
        "config.output_audio_config.sample_rate_hertz",
        "Synthesize",
        say(output_audio_config=audio_pb2.OutputAudioConfig(sample_rate_hertz=1000)),
    ),
    Case(
        "mp3-rate",
        INVALID,
        "mp3",
        "config.output_audio_config.sample_rate_hertz",
        "SynthesizeAudio",
        say(
            output_audio_config=audio_pb2.OutputAudioConfig(
                encoding=audio_pb2.OUTPUT_ENCODING_MP3, sample_rate_hertz=12345
            )
        ),
    ),
    Case(
        "inline-silent",
        INVALID,
        "silent",
        "config.reference_audio.audio",
        "Synthesize",
        say(reference_audio=reference(SILENT)),
    ),
    Case(
        "inline-not-audio",
        INVALID,
        "audio",
        "config.reference_audio.audio",
        "Synthesize",
        say(reference_audio=reference(NOT_AUDIO)),
    ),
    Case(
        "inline-no-transcript",
        INVALID,
        "transcript",
        "config.reference_audio.transcript",
        "Synthesize",
        say(reference_audio=reference(transcript=" ")),
    ),
    Case(
        "request-id-too-long",
        INVALID,
        "128",
        "request_id",
        "Synthesize",
        {"request_id": "x" * 129, **say()},
    ),
    # Voices
    Case(
        "voice-too-short", INVALID, "3 to 30", "reference_audio", "CreateVoice", create(audio=SHORT)
    ),
    Case(
        "voice-too-long", INVALID, "3 to 30", "reference_audio", "CreateVoice", create(audio=LONG)
    ),
    Case("voice-silent", INVALID, "silent", "reference_audio", "CreateVoice", create(audio=SILENT)),
    Case(
        "voice-clipped", INVALID, "clipped", "reference_audio", "CreateVoice", create(audio=CLIPPED)
    ),
    Case("voice-no-audio", INVALID, "empty", "reference_audio", "CreateVoice", create(audio=b"")),
    Case(
        "voice-no-transcript",
        INVALID,
        "transcript",
        "voice.transcript",
        "CreateVoice",
        create(transcript=""),
    ),
    Case("voice-bad-id", INVALID, "letter", "voice_id", "CreateVoice", create("9-lives")),
    Case(
        "voice-on-vits",
        INVALID,
        "cannot clone",
        "voice.model",
        "CreateVoice",
        create(model=VITS),
    ),
    Case(
        "voice-language",
        INVALID,
        "does not speak",
        "voice.language_code",
        "CreateVoice",
        create(language_code="ja"),
    ),
    Case(
        "upload-empty",
        INVALID,
        "empty",
        "reference_audio",
        "UploadVoice",
        {"voice": tts_pb2.Voice(transcript="Hi there.")},
    ),
    Case("get-missing", NOT_FOUND, "voices/nobody", "", "GetVoice", {"name": "voices/nobody"}),
    Case("get-bad-name", INVALID, "voices/", "name", "GetVoice", {"name": "people/x"}),
    Case(
        "delete-missing", NOT_FOUND, "voices/nobody", "", "DeleteVoice", {"name": "voices/nobody"}
    ),
    Case("list-bad-token", INVALID, "page_token", "page_token", "ListVoices", {"page_token": "zz"}),
    Case("list-negative", INVALID, "page_size", "page_size", "ListVoices", {"page_size": -1}),
]

REQUESTS = {
    "Synthesize": tts_pb2.SynthesizeRequest,
    "SynthesizeAudio": tts_pb2.SynthesizeAudioRequest,
    "CreateVoice": tts_pb2.CreateVoiceRequest,
    "UploadVoice": tts_pb2.UploadVoiceRequest,
    "GetVoice": tts_pb2.GetVoiceRequest,
    "DeleteVoice": tts_pb2.DeleteVoiceRequest,
    "ListVoices": tts_pb2.ListVoicesRequest,
}


def build_request(case: Case, csm: str, vits: str):
    fields = dict(case.request)
    config = fields.get("config")
    if config is not None and config.model in (VITS, "<csm>"):
        config = tts_pb2.SynthesisConfig()
        config.CopyFrom(fields["config"])
        config.model = vits if config.model == VITS else csm
        fields["config"] = config
    voice = fields.get("voice")
    if voice is not None and voice.model == VITS:
        voice = tts_pb2.Voice()
        voice.CopyFrom(fields["voice"])
        voice.model = vits
        fields["voice"] = voice
    return REQUESTS[case.method](**fields)


def check_error(error: grpc.aio.AioRpcError, case: Case) -> None:
    check_status(error, case.code, case.mention, case.field, label=case.id)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
async def test_bad_input(tiny_tts, tiny_csm_checkpoint, tiny_vits_checkpoint, case):
    _, channel = tiny_tts
    api = tts_pb2_grpc.TtsServiceStub(channel)
    request = build_request(case, str(tiny_csm_checkpoint), str(tiny_vits_checkpoint))
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await getattr(api, case.method)(request, timeout=60)
    check_error(raised.value, case)
    await check_serving(channel, "")


async def test_voice_id_taken_is_already_exists(tiny_tts):
    api = tts_pb2_grpc.TtsServiceStub(tiny_tts[1])
    request = tts_pb2.CreateVoiceRequest(**create("twice"))
    await api.CreateVoice(request, timeout=60)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await api.CreateVoice(request, timeout=60)
    check_error(raised.value, Case("exists", EXISTS, "already exists", "", "CreateVoice"))
    await api.DeleteVoice(tts_pb2.DeleteVoiceRequest(name="voices/twice"), timeout=10)


async def test_stream_errors(tiny_tts):
    api = tts_pb2_grpc.TtsServiceStub(tiny_tts[1])

    first = tts_pb2.StreamingSynthesizeRequest(streaming_config=tts_pb2.StreamingSynthesisConfig())
    text = tts_pb2.StreamingSynthesizeRequest
    cases = [
        ((text(text="Hi."),), "streaming_config", "first message"),
        ((first, first), "streaming_config", "only the first"),
        ((first, text()), "streaming_request", "empty"),
        ((first, text(text="")), "text", "empty"),
        ((first, text(text="a" * 5001)), "text", "5001"),
        (
            (
                tts_pb2.StreamingSynthesizeRequest(
                    streaming_config=tts_pb2.StreamingSynthesisConfig(
                        config=tts_pb2.SynthesisConfig(speed=9)
                    )
                ),
            ),
            "streaming_config.config.speed",
            "0.5 to 2.0",
        ),
    ]
    for messages, field_name, mention in cases:
        error = await stream_refused(api.StreamingSynthesize, messages, timeout=60)
        check_error(error, Case(field_name, INVALID, mention, field_name, "StreamingSynthesize"))


async def test_upload_body_content_type_is_informative(tiny_tts):
    api = tts_pb2_grpc.TtsServiceStub(tiny_tts[1])
    body = httpbody_pb2.HttpBody(content_type="application/octet-stream", data=REFERENCE)
    voice = await api.UploadVoice(
        tts_pb2.UploadVoiceRequest(
            reference_audio=body, voice_id="sniffed", voice=tts_pb2.Voice(transcript="Hello.")
        ),
        timeout=60,
    )
    assert voice.name == "voices/sniffed"
    await api.DeleteVoice(tts_pb2.DeleteVoiceRequest(name="voices/sniffed"), timeout=10)
