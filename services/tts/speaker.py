"""Speech for a request, the TTS service's domain entry point (no protos here).

`Speaker.synthesize` meters and checks the text, resolves the model and voice
(`VoiceResolver`), speaks the text (`Synthesizer`) and encodes the audio; `Speaker.open_stream`
resolves the same way and returns a `SpeechStream` that speaks text pieces as they arrive. The
servicer and the OpenAI face map their messages onto a `SynthesisRequest` and back.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from speechmesh.runtime import errors
from speechmesh.runtime.interceptor import call_stats
from speechmesh.runtime.proto_mapping import encode_output
from speechmesh.tts.resolver import VoiceRequest, VoiceResolver, option_fields
from speechmesh.tts.streaming import SpeechStream
from speechmesh.tts.synthesizer import Speech, Style, Synthesizer

if TYPE_CHECKING:
    from speechmesh.tts.config import TtsSettings
    from speechmesh.tts.models import TtsModel, TtsModels


@dataclasses.dataclass(frozen=True)
class SynthesisRequest:
    """How to speak: the voice, the style and the output audio, with where their fields are
    in the caller's message (for errors)."""

    voice: VoiceRequest
    style: Style
    #: Output encoding: "wav", "flac", "ogg_opus", "mp3" or "pcm".
    encoding: str = "wav"
    #: Output sample rate, Hz; None: the model's own.
    rate: int | None = None
    #: Path of the voice and style fields in the caller's message ("config.", or "").
    at: str = ""
    #: The text's field.
    text_field: str = "text"
    #: The output format's field (errors about the output rate name its sample_rate_hertz).
    output_field: str = "output_audio_config"


@dataclasses.dataclass(frozen=True)
class Synthesis:
    """A text spoken: the speech, and its audio encoded as asked."""

    model: str
    speech: Speech
    seed: int
    encoding: str
    #: The encoded audio, and its sample rate.
    audio: bytes
    sample_rate: int


def check_text(text: str, limit: int, field: str) -> None:
    """INVALID_ARGUMENT naming `field` for a text with nothing to speak or over `limit`."""
    if not text.strip():
        raise errors.invalid_argument(field, "is empty; send 1 or more characters to speak")
    if len(text) > limit:
        raise errors.invalid_argument(
            field, f"is {len(text)} characters; at most {limit} per call (send several calls)"
        )


class Speaker:
    """Speaks texts with the service's models and voices."""

    def __init__(self, models: TtsModels, settings: TtsSettings, resolver: VoiceResolver):
        self.models = models
        self.settings = settings
        self.resolver = resolver

    def synthesizer(self, model: TtsModel) -> Synthesizer:
        return Synthesizer(model.engine, model.batcher, self.settings.sentence_pause_ms / 1000)

    async def synthesize(self, text: str, asked: SynthesisRequest, owner: str) -> Synthesis:
        """`text` spoken as `asked` by the caller `owner`, encoded."""
        call_stats().characters = len(text)
        check_text(text, self.settings.max_text_characters, asked.text_field)
        model, voice = await self.resolver.resolve(asked.voice, owner, asked.at)
        with option_fields(asked.at):
            speech = await self.synthesizer(model).speak(text, voice, asked.style)
        audio, rate = encode_output(
            speech.audio, speech.sample_rate, asked.encoding, asked.rate, asked.output_field
        )
        return Synthesis(model.name, speech, asked.style.seed, asked.encoding, audio, rate)

    async def open_stream(self, asked: SynthesisRequest, owner: str) -> SpeechStream:
        """A stream that speaks text pieces as `asked` by the caller `owner`."""
        model, voice = await self.resolver.resolve(asked.voice, owner, asked.at)
        return SpeechStream(
            model.name,
            self.synthesizer(model),
            voice,
            asked.style,
            encoding=asked.encoding,
            rate=asked.rate,
            max_piece=self.settings.max_text_characters,
            at=asked.at,
        )
