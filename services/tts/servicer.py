"""TtsService: maps protos to synthesizer and voice-store calls and back, nothing more."""

from __future__ import annotations

import asyncio
import contextlib

import grpc
import numpy as np
from google.api import httpbody_pb2
from google.protobuf import empty_pb2, timestamp_pb2

from speechmesh.dsp.audio import AudioError, decode_audio
from speechmesh.dsp.stream_encoder import StreamEncoder
from speechmesh.runtime import errors, openai_compat
from speechmesh.runtime.interceptor import call_stats
from speechmesh.runtime.proto_mapping import (
    body_content_type,
    duration,
    encode_output,
    output_format,
    raw_format,
    start_call,
)
from speechmesh.runtime.streams import StreamSlots, first_config
from speechmesh.tts import voices as store
from speechmesh.tts.config import TtsSettings
from speechmesh.tts.engines.base import InvalidOptionError
from speechmesh.tts.models import ModelState, TtsModel, TtsModels
from speechmesh.tts.reference import (
    ReferenceAudioError,
    TranscriptError,
    check_transcript,
    prepare_reference,
)
from speechmesh.tts.streaming import SentenceAudio, SynthesisStream, stream_inputs
from speechmesh.tts.synthesizer import Speech, Style, Synthesizer, VoiceChoice, new_seed
from speechmesh.tts.v1 import tts_pb2, tts_pb2_grpc

#: Metadata header the gateway sets to the caller's identity (absent: anonymous).
IDENTITY_HEADER = "x-speechmesh-identity"
_MODEL_STATES = {
    ModelState.LOADING: tts_pb2.MODEL_STATE_LOADING,
    ModelState.READY: tts_pb2.MODEL_STATE_READY,
    ModelState.FAILED: tts_pb2.MODEL_STATE_FAILED,
}
# Engine option (InvalidOptionError.option) -> field of SynthesisConfig.
_CONFIG_FIELDS = {
    "preset_voice": "preset_voice",
    "reference_audio": "reference_audio",
    "transcript": "reference_audio.transcript",
    "voice": "voice",
    "language_code": "language_code",
    "temperature": "temperature",
}
#: Audio chunks of a stream carry at most this much speech each.
CHUNK_SECONDS = 0.5


class TtsServicer(tts_pb2_grpc.TtsServiceServicer):
    def __init__(self, models: TtsModels, settings: TtsSettings):
        self.models = models
        self.settings = settings
        self._streams = StreamSlots(settings.max_streams)

    # -- synthesis -----------------------------------------------------------

    async def Synthesize(self, request, context):
        model, speech, seed, encoded, rate = await self._synthesize(request, context)
        return tts_pb2.SynthesizeResponse(
            request_id=request.request_id,
            audio=encoded,
            audio_duration=duration(speech.seconds),
            sample_rate_hertz=rate,
            sentences=[
                tts_pb2.SynthesizedSentence(
                    text=s.text, start_offset=duration(s.start), end_offset=duration(s.end)
                )
                for s in speech.sentences
            ],
            model=model.name,
            seed=seed,
        )

    async def SynthesizeAudio(self, request, context):
        _model, _speech, _seed, encoded, rate = await self._synthesize(request, context)
        encoding, _ = output_format(
            request.config.output_audio_config, "config.output_audio_config"
        )
        return httpbody_pb2.HttpBody(content_type=body_content_type(encoding, rate), data=encoded)

    async def _synthesize(self, request, context) -> tuple[TtsModel, Speech, int, bytes, int]:
        start_call(request.request_id)
        text = request.text
        call_stats().characters = len(text)
        _check_text(text, self.settings.max_text_characters, "text")
        config = request.config
        encoding, rate = output_format(config.output_audio_config, "config.output_audio_config")
        model, voice = await self._voice(config, _owner(context), "config.")
        style = _style(config, "config.")
        with _fields("config."):
            speech = await _synthesizer(model, self.settings).speak(text, voice, style)
        encoded, out_rate = encode_output(
            speech.audio, speech.sample_rate, encoding, rate, "config.output_audio_config"
        )
        return model, speech, style.seed, encoded, out_rate

    async def StreamingSynthesize(self, request_iterator, context):
        cfg = await first_config(request_iterator)
        if cfg is None:
            return
        start_call(cfg.request_id, "streaming_config.request_id")
        at = "streaming_config.config."
        config = cfg.config
        encoding, rate = output_format(config.output_audio_config, at + "output_audio_config")
        model, voice = await self._voice(config, _owner(context), at)
        style = _style(config, at)
        synthesizer = _synthesizer(model, self.settings)
        encoder = StreamEncoder(model.engine.sample_rate, encoding, rate)
        with self._streams.hold():
            stream = SynthesisStream(synthesizer, voice, style, self.settings.max_text_characters)
            sentences = 0
            with _fields(at):
                async for sentence in stream.run(stream_inputs(request_iterator)):
                    sentences = sentence.index + 1
                    for chunk in _chunks(cfg.request_id, sentence, encoder):
                        yield chunk
            call_stats().characters = stream.characters
            tail = encoder.finish()
            if tail:
                yield tts_pb2.StreamingSynthesizeResponse(
                    request_id=cfg.request_id,
                    audio_chunk=tts_pb2.SynthesisAudioChunk(
                        audio=tail,
                        sample_rate_hertz=encoder.rate,
                        offset=duration(stream.seconds),
                        sentence_index=max(sentences - 1, 0),
                    ),
                )
            yield tts_pb2.StreamingSynthesizeResponse(
                request_id=cfg.request_id,
                summary=tts_pb2.SynthesisSummary(
                    audio_duration=duration(stream.seconds),
                    sentence_count=sentences,
                    character_count=stream.characters,
                    sample_rate_hertz=encoder.rate,
                    model=model.name,
                    seed=style.seed,
                ),
            )

    async def _voice(self, config, owner: str, at: str) -> tuple[TtsModel, VoiceChoice]:
        """The model and voice a SynthesisConfig asks for (see SynthesisConfig.model)."""
        source = config.WhichOneof("voice_source")
        language = config.language_code.strip()
        if source == "voice":
            voice_id = _voice_id(config.voice, at + "voice")
            stored = await asyncio.to_thread(_get_voice, self.models, voice_id, owner)
            model = self.models.get(config.model or stored.model)
            if not model.can_clone or model.engine.family != stored.engine:
                raise errors.invalid_argument(
                    at + "model",
                    f"voice {stored.name} was prepared for a {stored.engine} model"
                    f" ({stored.model}); model {model.name} is a {model.engine.family} model."
                    " Leave model empty to use the voice's own",
                )
            prompt = await asyncio.to_thread(_load_prompt, self.models, voice_id, owner)
            return model, VoiceChoice(language or stored.language, prompt, None, stored.name)
        if source == "reference_audio":
            model = self.models.cloning(config.model, at + "model")
            reference = config.reference_audio
            field = at + "reference_audio"
            transcript = _transcript(reference.transcript, field + ".transcript")
            audio = await self._reference(
                model,
                reference.audio,
                reference.audio_format,
                field + ".audio",
                field + ".audio_format",
            )
            ref_language = _language(model, reference.language_code, field + ".language_code")
            with _fields(at):
                prompt = await asyncio.to_thread(
                    model.engine.prepare_voice, audio, transcript, ref_language
                )
            return model, VoiceChoice(language or ref_language, prompt, None, "inline")
        if source == "preset_voice":
            model = self._with_preset(config.model, config.preset_voice, at)
            return model, VoiceChoice(
                _language(model, language, at + "language_code"),
                None,
                config.preset_voice,
                config.preset_voice,
            )
        model = self.models.get(config.model)
        preset = model.engine.preset_voices[0].name if model.engine.preset_voices else None
        return model, VoiceChoice(
            _language(model, language, at + "language_code"), None, preset, preset or ""
        )

    def _with_preset(self, name: str, preset: str, at: str) -> TtsModel:
        """The named model, or the default if it has the preset, else the first that has it."""
        if name:
            return self.models.get(name)
        default = self.models.get("")
        candidates = [default, *self.models.models.values()]
        for model in candidates:
            if model.engine is not None and any(
                v.name == preset for v in model.engine.preset_voices
            ):
                return model
        raise errors.invalid_argument(
            at + "preset_voice",
            f"{preset!r} is not a preset voice of any model here; ListModels lists them",
        )

    async def _reference(
        self, model: TtsModel, data: bytes, fmt, audio_field: str, format_field: str
    ) -> np.ndarray:
        """A reference recording decoded, validated and normalised at the engine's rate."""
        if not data:
            raise errors.invalid_argument(audio_field, "is empty; send 3 to 30 s of one speaker")
        raw = raw_format(fmt, format_field)
        try:
            decoded = await asyncio.to_thread(decode_audio, data, raw, None)
        except AudioError as error:
            raise errors.invalid_argument(audio_field, str(error)) from None
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
            raise errors.invalid_argument(audio_field, str(error)) from None

    async def CreateSpeech(self, request, context):
        speech = openai_compat.speech_request(request.content_type, request.data)
        call_stats().characters = len(speech.input)
        _check_text(speech.input, self.settings.max_text_characters, "input")
        model, voice = await self._openai_voice(speech.model, speech.voice, _owner(context))
        style = Style(None, new_seed(), speech.speed)
        with _fields(""):
            result = await _synthesizer(model, self.settings).speak(speech.input, voice, style)
        rate = openai_compat.PCM_RATE if speech.encoding == "pcm" else None
        data, out_rate = encode_output(
            result.audio, result.sample_rate, speech.encoding, rate, "response_format"
        )
        return httpbody_pb2.HttpBody(
            content_type=body_content_type(speech.encoding, out_rate), data=data
        )

    async def _openai_voice(
        self, name: str, voice: str, owner: str
    ) -> tuple[TtsModel, VoiceChoice]:
        """OpenAI's `voice`: a stored voice, else a preset, else one of OpenAI's names (the
        default voice)."""
        config = tts_pb2.SynthesisConfig(model=name)
        voice_id = voice.removeprefix("voices/")
        if voice_id and store.VOICE_ID_PATTERN.fullmatch(voice_id):
            try:
                await asyncio.to_thread(self.models.voices.get, voice_id, owner)
                config.voice = f"voices/{voice_id}"
            except store.VoiceNotFoundError:
                pass
        if not config.voice and voice and voice not in openai_compat.OPENAI_VOICES:
            model = self.models.get(name)
            if not any(v.name == voice for v in model.engine.preset_voices):
                raise errors.not_found(
                    "voice",
                    voice,
                    f"voice {voice!r} is neither a stored voice nor a preset of model"
                    f" {model.name}; GET /v1/voices and /v1/tts/models list them",
                )
            config.preset_voice = voice
        return await self._voice(config, owner, "")

    # -- voices --------------------------------------------------------------

    async def CreateVoice(self, request, context):
        return await self._create_voice(
            context,
            request.request_id,
            request.voice_id,
            request.voice,
            request.reference_audio,
            request.reference_audio_format,
        )

    async def UploadVoice(self, request, context):
        return await self._create_voice(
            context,
            request.request_id,
            request.voice_id,
            request.voice,
            request.reference_audio.data,
            request.reference_audio_format,
        )

    async def _create_voice(self, context, request_id: str, voice_id: str, voice, data, fmt):
        start_call(request_id)
        if voice_id:
            try:
                store.check_voice_id(voice_id)
            except store.InvalidArgumentError as error:
                raise errors.invalid_argument("voice_id", error.message) from None
        transcript = _transcript(voice.transcript, "voice.transcript")
        if len(voice.display_name) > store.MAX_DISPLAY_NAME_CHARS:
            raise errors.invalid_argument(
                "voice.display_name",
                f"is {len(voice.display_name)} characters; at most {store.MAX_DISPLAY_NAME_CHARS}",
            )
        model = self.models.cloning(voice.model, "voice.model")
        language = _language(model, voice.language_code, "voice.language_code")
        audio = await self._reference(model, data, fmt, "reference_audio", "reference_audio_format")
        with _fields("voice."):
            prompt = await asyncio.to_thread(
                model.engine.prepare_voice, audio, transcript, language
            )
        meta = store.VoiceMeta(
            transcript=transcript,
            language=language,
            display_name=voice.display_name,
            model=model.name,
            owner=_owner(context),
        )
        try:
            stored = await asyncio.to_thread(
                self.models.voices.create,
                voice_id or None,
                meta,
                audio,
                model.engine.sample_rate,
                prompt,
            )
        except store.VoiceExistsError as error:
            raise errors.already_exists(
                "speechmesh.dev/Voice",
                error.name,
                f"{error.name} already exists; delete it first or choose another voice_id",
            ) from None
        except store.InvalidArgumentError as error:
            raise errors.invalid_argument(error.field, error.message) from None
        return _voice_proto(stored)

    async def GetVoice(self, request, context):
        start_call(request.request_id)
        voice_id = _voice_id(request.name, "name")
        stored = await asyncio.to_thread(_get_voice, self.models, voice_id, _owner(context))
        return _voice_proto(stored)

    async def ListVoices(self, request, context):
        start_call(request.request_id)
        if request.page_size < 0:
            raise errors.invalid_argument(
                "page_size", f"is {request.page_size}; use 0 (default 50) to 1000"
            )
        try:
            voices, token = await asyncio.to_thread(
                self.models.voices.list, request.page_size, request.page_token, _owner(context)
            )
        except store.InvalidArgumentError as error:
            raise errors.invalid_argument(error.field, error.message) from None
        return tts_pb2.ListVoicesResponse(
            request_id=request.request_id,
            voices=[_voice_proto(v) for v in voices],
            next_page_token=token,
        )

    async def DeleteVoice(self, request, context):
        start_call(request.request_id)
        voice_id = _voice_id(request.name, "name")
        try:
            await asyncio.to_thread(self.models.voices.delete, voice_id, _owner(context))
        except store.VoiceNotFoundError as error:
            raise _voice_not_found(error) from None
        return empty_pb2.Empty()

    # -- models --------------------------------------------------------------

    async def ListModels(self, request, context):
        start_call(request.request_id)
        infos = []
        for model in self.models.models.values():
            info = tts_pb2.ModelInfo(
                name=model.name,
                state=_MODEL_STATES[model.state],
                default=model is self.models.default,
                error=model.error,
            )
            engine = model.engine
            if engine is not None:
                info.engine = engine.family
                info.language_codes.extend(engine.languages)
                info.supports_voice_cloning = engine.supports_cloning
                info.preset_voices.extend(
                    tts_pb2.PresetVoice(
                        name=v.name, display_name=v.display_name, language_codes=v.languages
                    )
                    for v in engine.preset_voices
                )
                info.native_sample_rate_hertz = engine.sample_rate
                info.default_temperature = engine.default_temperature
                info.device = engine.device
                info.dtype = engine.dtype
                info.memory_bytes = engine.memory_bytes
                info.random_weights = engine.random_weights
            infos.append(info)
        return tts_pb2.ListModelsResponse(request_id=request.request_id, models=infos)


# -- requests -> domain ----------------------------------------------------------


def _owner(context) -> str:
    """The caller's identity as the gateway set it; "" (anonymous) without one."""
    for key, value in context.invocation_metadata() or ():
        if key == IDENTITY_HEADER:
            return value
    return ""


def _check_text(text: str, limit: int, field: str) -> None:
    if not text.strip():
        raise errors.invalid_argument(field, "is empty; send 1 or more characters to speak")
    if len(text) > limit:
        raise errors.invalid_argument(
            field, f"is {len(text)} characters; at most {limit} per call (send several calls)"
        )


def _transcript(text: str, field: str) -> str:
    try:
        return check_transcript(text)
    except TranscriptError as error:
        raise errors.invalid_argument(field, str(error)) from None


def _voice_id(name: str, field: str) -> str:
    voice_id = name.removeprefix("voices/")
    if not name.startswith("voices/") or not voice_id:
        raise errors.invalid_argument(field, f"is {name!r}; use a voice name, voices/{{voice}}")
    try:
        return store.check_voice_id(voice_id)
    except store.InvalidArgumentError as error:
        raise errors.invalid_argument(field, error.message) from None


def _voice_not_found(error: store.VoiceNotFoundError) -> errors.ApiError:
    return errors.not_found(
        "speechmesh.dev/Voice",
        error.name,
        f"{error.name} does not exist; ListVoices lists the voices",
    )


def _get_voice(models: TtsModels, voice_id: str, owner: str) -> store.StoredVoice:
    try:
        return models.voices.get(voice_id, owner)
    except store.VoiceNotFoundError as error:
        raise _voice_not_found(error) from None


def _load_prompt(models: TtsModels, voice_id: str, owner: str):
    try:
        return models.voices.load_prompt(voice_id, owner)
    except store.VoiceNotFoundError as error:
        raise _voice_not_found(error) from None
    except store.VoiceDataError as error:
        raise errors.ApiError(
            grpc.StatusCode.DATA_LOSS,
            f"{error.name} cannot be read ({error}); delete and recreate it",
        ) from None


def _language(model: TtsModel, tag: str, field: str) -> str:
    """`tag` if the model speaks it (by primary subtag), else INVALID_ARGUMENT; empty: the
    model's first language."""
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


def _style(config, at: str) -> Style:
    speed = config.speed or 1.0
    if not 0.5 <= speed <= 2.0:
        raise errors.invalid_argument(at + "speed", f"is {config.speed:g}; use 0.5 to 2.0")
    temperature = None
    if config.HasField("temperature"):
        temperature = config.temperature
        if not 0.0 <= temperature <= 2.0:
            raise errors.invalid_argument(at + "temperature", f"is {temperature:g}; use 0.0 to 2.0")
    return Style(temperature, config.seed or new_seed(), speed)


def _synthesizer(model: TtsModel, settings: TtsSettings) -> Synthesizer:
    return Synthesizer(model.engine, model.batcher, settings.sentence_pause_ms / 1000)


@contextlib.contextmanager
def _fields(at: str):
    """Turns an engine's InvalidOptionError into INVALID_ARGUMENT naming the config field."""
    try:
        yield
    except InvalidOptionError as error:
        field = (
            "text"
            if error.option == "text"
            else at + _CONFIG_FIELDS.get(error.option, error.option)
        )
        raise errors.invalid_argument(field, str(error)) from None


# -- domain -> responses -----------------------------------------------------------


def _voice_proto(voice: store.StoredVoice) -> tts_pb2.Voice:
    created = timestamp_pb2.Timestamp()
    created.FromDatetime(voice.create_time)
    return tts_pb2.Voice(
        name=voice.name,
        display_name=voice.display_name,
        language_code=voice.language,
        transcript=voice.transcript,
        reference_audio_duration=duration(voice.reference_seconds),
        model=voice.model,
        engine=voice.engine,
        create_time=created,
    )


def _chunks(request_id: str, sentence: SentenceAudio, encoder: StreamEncoder):
    """A sentence's audio as chunks of at most CHUNK_SECONDS; the last one ends the sentence."""
    rate = sentence.sample_rate
    step = max(int(CHUNK_SECONDS * rate), 1)
    audio = sentence.audio if len(sentence.audio) else np.zeros(0, np.float32)
    starts = list(range(0, len(audio), step)) or [0]
    for k, at in enumerate(starts):
        piece = audio[at : at + step]
        yield tts_pb2.StreamingSynthesizeResponse(
            request_id=request_id,
            audio_chunk=tts_pb2.SynthesisAudioChunk(
                audio=encoder.encode(piece),
                sample_rate_hertz=encoder.rate,
                offset=duration(sentence.offset + at / rate),
                duration=duration(len(piece) / rate),
                sentence_index=sentence.index,
                text=sentence.text if k == 0 else "",
                sentence_end=k == len(starts) - 1,
            ),
        )


def service_name() -> str:
    return tts_pb2.DESCRIPTOR.services_by_name["TtsService"].full_name


def register(servicer: TtsServicer, server: grpc.aio.Server) -> None:
    tts_pb2_grpc.add_TtsServiceServicer_to_server(servicer, server)
