"""The TTS service's OpenAI-compatible face: `POST /v1/audio/speech`.

The route takes OpenAI's JSON body as it came (google.api.HttpBody) and answers the audio bytes
in OpenAI's `response_format`. `speech_request` validates the body; `create_speech` maps it onto
the domain (`Speaker.synthesize`) and back. What every OpenAI face shares (model aliases, JSON
bodies, the error shape) is in speechmesh.runtime.openai.

OpenAI's `voice` names a stored voice of the caller ("jane" or "voices/jane"), else a preset
voice of the model, else one of OpenAI's own voice names, which mean the model's default voice
here; any other name is NOT_FOUND. OpenAI's model names (ALIASES["tts"]) mean the default model.
"""

from __future__ import annotations

import dataclasses

from speechmesh.runtime import errors
from speechmesh.runtime.openai import ALIASES, parse_json_body, resolve_model
from speechmesh.runtime.proto_mapping import body_content_type
from speechmesh.tts.resolver import VoiceRequest, VoiceResolver, has_preset
from speechmesh.tts.speaker import Speaker, SynthesisRequest
from speechmesh.tts.synthesizer import Style, new_seed

#: OpenAI `response_format` of /v1/audio/speech -> the suite's output encoding. OpenAI's "opus"
#: is Ogg Opus; its "pcm" is raw 16-bit little-endian samples at PCM_RATE. "aac" has no
#: encoder here.
SPEECH_FORMATS = {"mp3": "mp3", "opus": "ogg_opus", "wav": "wav", "flac": "flac", "pcm": "pcm"}
#: Sample rate of OpenAI's "pcm" speech output, in hertz.
PCM_RATE = 24000
#: OpenAI's built-in voice names: they mean the model's default voice here.
OPENAI_VOICES = frozenset(
    [
        "alloy",
        "ash",
        "ballad",
        "coral",
        "echo",
        "fable",
        "onyx",
        "nova",
        "sage",
        "shimmer",
        "verse",
        "marin",
        "cedar",
    ]
)
#: Speaking rate OpenAI accepts.
SPEECH_SPEEDS = (0.25, 4.0)


@dataclasses.dataclass(frozen=True)
class SpeechRequest:
    """A validated /v1/audio/speech request."""

    input: str
    #: "" for the default model (an alias or nothing), else a served model's name.
    model: str
    #: As sent: a stored voice ("jane" or "voices/jane"), a preset, or an OpenAI voice name.
    voice: str
    #: The suite's output encoding ("mp3", "ogg_opus", "wav", "flac", "pcm").
    encoding: str
    speed: float


def speech_format(value: str) -> str:
    """The suite's output encoding for OpenAI's speech `response_format` (default "mp3");
    INVALID_ARGUMENT naming `response_format` for one it cannot encode."""
    value = (value or "mp3").strip()
    if value not in SPEECH_FORMATS:
        raise errors.invalid_argument(
            "response_format",
            f"{value!r} is not offered here; use one of {', '.join(SPEECH_FORMATS)}",
        )
    return SPEECH_FORMATS[value]


def speech_request(content_type: str, body: bytes) -> SpeechRequest:
    """Validates a /v1/audio/speech JSON body (`model`, `input`, `voice`, `response_format`,
    `speed`; other fields such as `instructions` are ignored)."""
    fields = parse_json_body(content_type, body)
    text = fields.get("input")
    if not isinstance(text, str) or not text.strip():
        raise errors.invalid_argument("input", "is required: the text to speak")
    voice = fields.get("voice", "")
    if not isinstance(voice, str):
        raise errors.invalid_argument("voice", "must be a string (a voice name)")
    speed = fields.get("speed", 1.0)
    low, high = SPEECH_SPEEDS
    if isinstance(speed, bool) or not isinstance(speed, int | float) or not low <= speed <= high:
        raise errors.invalid_argument("speed", f"is {speed!r}; use a number from {low} to {high}")
    if fields.get("stream_format", "audio") not in ("audio", None):
        raise errors.invalid_argument(
            "stream_format",
            "only 'audio' is offered here; stream speech with the StreamingSynthesize RPC or"
            " /v1/tts:streamingSynthesize (server-sent events)",
        )
    return SpeechRequest(
        input=text,
        model=resolve_model(str(fields.get("model") or ""), ALIASES["tts"]),
        voice=voice.strip(),
        encoding=speech_format(str(fields.get("response_format") or "mp3")),
        speed=float(speed),
    )


async def voice_request(
    resolver: VoiceResolver, model: str, voice: str, owner: str
) -> VoiceRequest:
    """What OpenAI's `voice` means for the caller `owner` (see the module); NOT_FOUND naming
    `voice` for a name that is none of them."""
    voice_id = voice.removeprefix("voices/")
    if voice_id and await resolver.has_voice(voice_id, owner):
        return VoiceRequest(model=model, voice=f"voices/{voice_id}")
    if not voice or voice in OPENAI_VOICES:
        return VoiceRequest(model=model)
    served = resolver.models.get(model)
    if not has_preset(served, voice):
        raise errors.not_found(
            "voice",
            voice,
            f"voice {voice!r} is neither a stored voice nor a preset of model"
            f" {served.name}; GET /v1/voices and /v1/tts/models list them",
        )
    return VoiceRequest(model=model, preset=voice)


async def create_speech(speaker: Speaker, speech: SpeechRequest, owner: str) -> tuple[str, bytes]:
    """(content type, audio) of `speech` spoken for the caller `owner`."""
    asked = SynthesisRequest(
        voice=await voice_request(speaker.resolver, speech.model, speech.voice, owner),
        style=Style(None, new_seed(), speech.speed),
        encoding=speech.encoding,
        rate=PCM_RATE if speech.encoding == "pcm" else None,
        text_field="input",
        output_field="response_format",
    )
    result = await speaker.synthesize(speech.input, asked, owner)
    return body_content_type(result.encoding, result.sample_rate), result.audio
