"""Which model and whose voice a request means: the TTS voice resolver (no protos here).

A request names its voice in one of three ways, or not at all (`VoiceRequest`):

- a stored voice, `voices/{voice}` of the caller's own namespace: its model unless the request
  names another of the same engine family, and its prepared prompt from the voice store;
- a reference recording sent with the request: checked, normalised and prepared by a model
  that clones voices (the named one, else the default, else the first that can);
- a preset voice: the named model, else the default if it has the preset, else the first
  model that has it;
- none: the named model (or the default) in its first preset voice, or its own voice.

The language is the request's when the model speaks it (by primary subtag), else the stored
voice's or the recording's, else the model's first. Every mistake is an ApiError naming the
request field (`at` is the path of the fields in the caller's message, e.g. "config.").
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Iterator
from typing import TYPE_CHECKING

import grpc
import numpy as np

from speechmesh.dsp.audio import AudioError, RawFormat, decode_audio
from speechmesh.runtime import errors
from speechmesh.runtime.interceptor import call_stats
from speechmesh.tts.engines.base import InvalidOptionError, VoicePrompt
from speechmesh.tts.reference import (
    ReferenceAudioError,
    TranscriptError,
    check_transcript,
    prepare_reference,
)
from speechmesh.tts.synthesizer import VoiceChoice
from speechmesh.tts.voices import records

if TYPE_CHECKING:
    from speechmesh.tts.config import TtsSettings
    from speechmesh.tts.models import TtsModel, TtsModels
    from speechmesh.tts.voices.store import VoiceStore

#: Engine option (InvalidOptionError.option) -> the request field it comes from, below `at`.
CONFIG_FIELDS = {
    "preset_voice": "preset_voice",
    "reference_audio": "reference_audio",
    "transcript": "reference_audio.transcript",
    "voice": "voice",
    "language_code": "language_code",
    "temperature": "temperature",
}


@dataclasses.dataclass(frozen=True)
class Reference:
    """A reference recording sent with a request, to clone its speaker's voice."""

    #: The recording as sent (a container, or raw samples in `raw`).
    audio: bytes
    #: The exact words spoken in it.
    transcript: str
    #: Raw sample format; None: detect the container.
    raw: RawFormat | None = None
    #: BCP-47 language of the recording; "": the model's first.
    language: str = ""


@dataclasses.dataclass(frozen=True)
class VoiceRequest:
    """The model and voice a request asks for; at most one of voice, reference and preset."""

    #: A served model's name; "": the stored voice's model, or the default (see the module).
    model: str = ""
    #: BCP-47 language to speak; "": the voice's or the model's (see the module).
    language: str = ""
    #: A stored voice's resource name, "voices/{voice}" (checked here).
    voice: str | None = None
    #: A recording to clone the voice from.
    reference: Reference | None = None
    #: A preset voice of a model.
    preset: str | None = None


class VoiceResolver:
    """Turns VoiceRequests into a ready model and a VoiceChoice, and prepares references."""

    def __init__(self, models: TtsModels, settings: TtsSettings):
        self.models = models
        self.settings = settings

    @property
    def store(self) -> VoiceStore:
        """The voice store (opened when the models load)."""
        if self.models.voices is None:
            raise errors.unavailable(
                "the voice store is still opening; retry shortly", 5.0, "VOICE_STORE_OPENING"
            )
        return self.models.voices

    async def resolve(
        self, asked: VoiceRequest, owner: str, at: str = ""
    ) -> tuple[TtsModel, VoiceChoice]:
        """The model and voice `asked` means for the caller `owner` (see the module)."""
        language = asked.language.strip()
        if asked.voice is not None:
            return await self._stored(asked, language, owner, at)
        if asked.reference is not None:
            return await self._inline(asked.model, asked.reference, language, at)
        if asked.preset is not None:
            model = self.with_preset(asked.model, asked.preset, at)
            spoken = speaks(model, language, at + "language_code")
            return model, VoiceChoice(spoken, None, asked.preset, asked.preset)
        model = self.models.get(asked.model)
        engine = model.engine
        preset = engine.preset_voices[0].name if engine.preset_voices else None
        spoken = speaks(model, language, at + "language_code")
        return model, VoiceChoice(spoken, None, preset, preset or "")

    async def _stored(
        self, asked: VoiceRequest, language: str, owner: str, at: str
    ) -> tuple[TtsModel, VoiceChoice]:
        voice_id = parse_voice_name(asked.voice or "", at + "voice")
        stored = await self.stored_voice(voice_id, owner)
        model = self.models.get(asked.model or stored.model)
        if not model.can_clone or model.engine.family != stored.engine:
            raise errors.invalid_argument(
                at + "model",
                f"voice {stored.name} was prepared for a {stored.engine} model"
                f" ({stored.model}); model {model.name} is a {model.engine.family} model."
                " Leave model empty to use the voice's own",
            )
        prompt = await self.prompt(voice_id, owner)
        return model, VoiceChoice(language or stored.language, prompt, None, stored.name)

    async def _inline(
        self, name: str, reference: Reference, language: str, at: str
    ) -> tuple[TtsModel, VoiceChoice]:
        model = self.models.cloning(name, at + "model")
        field = at + "reference_audio"
        transcript = check_reference_transcript(reference.transcript, field + ".transcript")
        audio = await self.reference_audio(model, reference.audio, reference.raw, field + ".audio")
        spoken = speaks(model, reference.language, field + ".language_code")
        prompt = await self.prepare(model, audio, transcript, spoken, at)
        return model, VoiceChoice(language or spoken, prompt, None, "inline")

    def with_preset(self, name: str, preset: str, at: str) -> TtsModel:
        """The named model, or the default if it has the preset, else the first that has it."""
        if name:
            return self.models.get(name)
        default = self.models.get("")
        for model in (default, *self.models.models.values()):
            if model.engine is not None and has_preset(model, preset):
                return model
        raise errors.invalid_argument(
            at + "preset_voice",
            f"{preset!r} is not a preset voice of any model here; ListModels lists them",
        )

    async def reference_audio(
        self, model: TtsModel, data: bytes, raw: RawFormat | None, field: str
    ) -> np.ndarray:
        """A reference recording decoded, validated and normalised at the model's rate;
        INVALID_ARGUMENT naming `field` for one that cannot clone a voice."""
        if not data:
            raise errors.invalid_argument(field, "is empty; send 3 to 30 s of one speaker")
        try:
            decoded = await asyncio.to_thread(decode_audio, data, raw, None)
        except AudioError as error:
            raise errors.invalid_argument(field, str(error)) from None
        call_stats().audio_seconds = decoded.duration
        s = self.settings
        try:
            return await asyncio.to_thread(
                prepare_reference,
                decoded.samples,
                decoded.sample_rate,
                model.engine.sample_rate,
                min_seconds=s.min_reference_seconds,
                max_seconds=s.max_reference_seconds,
            )
        except ReferenceAudioError as error:
            raise errors.invalid_argument(field, str(error)) from None

    async def prepare(
        self, model: TtsModel, audio: np.ndarray, transcript: str, language: str, at: str
    ) -> VoicePrompt:
        """The model's prompt of a normalised reference (off the event loop)."""
        with option_fields(at):
            return await asyncio.to_thread(model.engine.prepare_voice, audio, transcript, language)

    async def stored_voice(self, voice_id: str, owner: str) -> records.StoredVoice:
        """The owner's stored voice; NOT_FOUND when the owner has none of that id."""
        try:
            return await asyncio.to_thread(self.store.get, voice_id, owner)
        except records.VoiceNotFoundError as error:
            raise voice_not_found(error) from None

    async def has_voice(self, voice_id: str, owner: str) -> bool:
        """Whether the owner has a stored voice of this id (any id: False when not one)."""
        if not records.VOICE_ID_PATTERN.fullmatch(voice_id):
            return False
        try:
            await asyncio.to_thread(self.store.get, voice_id, owner)
        except records.VoiceNotFoundError:
            return False
        return True

    async def prompt(self, voice_id: str, owner: str) -> VoicePrompt:
        """A stored voice's prompt; NOT_FOUND, or DATA_LOSS when its files do not read."""
        try:
            return await asyncio.to_thread(self.store.load_prompt, voice_id, owner)
        except records.VoiceNotFoundError as error:
            raise voice_not_found(error) from None
        except records.VoiceDataError as error:
            raise errors.ApiError(
                grpc.StatusCode.DATA_LOSS,
                f"{error.name} cannot be read ({error}); delete and recreate it",
            ) from None


# -- checks every voice request shares -----------------------------------------------------------


def has_preset(model: TtsModel, preset: str) -> bool:
    return any(v.name == preset for v in model.engine.preset_voices)


def speaks(model: TtsModel, tag: str, field: str) -> str:
    """`tag` as the model knows it if the model speaks it (by primary subtag), else
    INVALID_ARGUMENT naming `field`; empty: the model's first language."""
    languages = model.engine.languages
    tag = tag.strip()
    if not tag:
        return languages[0] if languages else ""
    primary = tag.split("-")[0].lower()
    for known in languages:
        if known.lower() == tag.lower() or known.split("-")[0].lower() == primary:
            return known
    raise errors.invalid_argument(
        field,
        f"model {model.name} does not speak {tag!r} (it speaks {', '.join(languages)});"
        " ListModels lists each model's languages",
    )


def parse_voice_name(name: str, field: str) -> str:
    """The voice id of a resource name "voices/{voice}"; INVALID_ARGUMENT naming `field`."""
    voice_id = name.removeprefix("voices/")
    if not name.startswith("voices/") or not voice_id:
        raise errors.invalid_argument(field, f"is {name!r}; use a voice name, voices/{{voice}}")
    return check_voice_id(voice_id, field)


def check_voice_id(voice_id: str, field: str) -> str:
    """The id if it is a valid voice id, else INVALID_ARGUMENT naming `field`."""
    try:
        return records.check_voice_id(voice_id)
    except records.InvalidArgumentError as error:
        raise errors.invalid_argument(field, error.message) from None


def check_reference_transcript(text: str, field: str) -> str:
    """The transcript of a reference, stripped; INVALID_ARGUMENT naming `field`."""
    try:
        return check_transcript(text)
    except TranscriptError as error:
        raise errors.invalid_argument(field, str(error)) from None


def voice_not_found(error: records.VoiceNotFoundError) -> errors.ApiError:
    return errors.not_found(
        "speechmesh.dev/Voice",
        error.name,
        f"{error.name} does not exist; ListVoices lists the voices",
    )


@contextlib.contextmanager
def option_fields(at: str) -> Iterator[None]:
    """Turns an engine's InvalidOptionError into INVALID_ARGUMENT naming the request field
    below `at` (the text is "text" wherever the config is)."""
    try:
        yield
    except InvalidOptionError as error:
        if error.option == "text":
            field = "text"
        else:
            field = at + CONFIG_FIELDS.get(error.option, error.option)
        raise errors.invalid_argument(field, str(error)) from None
