"""TtsService: maps each message to one call of the domain (Speaker, VoiceLibrary, the
OpenAI face) and the result back, nothing more."""

from __future__ import annotations

import grpc
from google.api import httpbody_pb2
from google.protobuf import empty_pb2, timestamp_pb2

from speechmesh.common.v1 import common_pb2
from speechmesh.inference.model_state import state_proto
from speechmesh.operations.host import Jobs
from speechmesh.runtime.identity import IdentityPolicy
from speechmesh.runtime.proto_mapping import (
    body_content_type,
    duration,
    raw_format,
    start_call,
)
from speechmesh.runtime.streams import StreamSlots, first_config
from speechmesh.tts import batch, openai
from speechmesh.tts.config import TtsSettings
from speechmesh.tts.mapping import sentence_protos, synthesis_request
from speechmesh.tts.models import TtsModels
from speechmesh.tts.resolver import VoiceResolver
from speechmesh.tts.speaker import Speaker
from speechmesh.tts.streaming import AudioChunk, stream_inputs
from speechmesh.tts.v1 import tts_pb2, tts_pb2_grpc
from speechmesh.tts.voice_library import NewVoice, VoiceLibrary
from speechmesh.tts.voices.records import StoredVoice

#: Where a stream's SynthesisConfig is in its first message.
_STREAM_AT = "streaming_config.config."


class TtsServicer(tts_pb2_grpc.TtsServiceServicer):
    def __init__(self, models: TtsModels, settings: TtsSettings, jobs: Jobs):
        self.models = models
        self.settings = settings
        self.jobs = jobs
        self.identity = IdentityPolicy.from_settings(settings)
        self.streams = StreamSlots(settings.max_streams)
        resolver = VoiceResolver(models, settings)
        self.speaker = Speaker(models, settings, resolver)
        self.voices = VoiceLibrary(resolver)

    def _caller(self, context) -> str:
        """The caller's identity (its voices' namespace), as the gateway set it."""
        return self.identity.caller(context.invocation_metadata())

    # -- synthesis -----------------------------------------------------------

    async def Synthesize(self, request, context):
        start_call(request.request_id)
        asked = synthesis_request(request.config, "config.")
        result = await self.speaker.synthesize(request.text, asked, self._caller(context))
        speech = result.speech
        return tts_pb2.SynthesizeResponse(
            request_id=request.request_id,
            audio=result.audio,
            audio_duration=duration(speech.seconds),
            sample_rate_hertz=result.sample_rate,
            sentences=sentence_protos(speech),
            model=result.model,
            seed=result.seed,
        )

    async def SynthesizeAudio(self, request, context):
        start_call(request.request_id)
        asked = synthesis_request(request.config, "config.")
        result = await self.speaker.synthesize(request.text, asked, self._caller(context))
        content_type = body_content_type(result.encoding, result.sample_rate)
        return httpbody_pb2.HttpBody(content_type=content_type, data=result.audio)

    async def BatchSynthesize(self, request, context):
        start_call(request.request_id)
        return await self.jobs.submit(batch.METHOD, request, context)

    async def StreamingSynthesize(self, request_iterator, context):
        cfg = await first_config(request_iterator)
        if cfg is None:
            return
        start_call(cfg.request_id, "streaming_config.request_id")
        asked = synthesis_request(cfg.config, _STREAM_AT)
        stream = await self.speaker.open_stream(asked, self._caller(context))
        with self.streams.hold():
            async for chunk in stream.chunks(stream_inputs(request_iterator)):
                yield tts_pb2.StreamingSynthesizeResponse(
                    request_id=cfg.request_id, audio_chunk=_chunk_proto(chunk)
                )
            yield tts_pb2.StreamingSynthesizeResponse(
                request_id=cfg.request_id,
                summary=tts_pb2.SynthesisSummary(
                    audio_duration=duration(stream.seconds),
                    sentence_count=stream.sentences,
                    character_count=stream.characters,
                    sample_rate_hertz=stream.sample_rate,
                    model=stream.model,
                    seed=stream.seed,
                ),
            )

    async def CreateSpeech(self, request, context):
        speech = openai.speech_request(request.content_type, request.data)
        content_type, data = await openai.create_speech(self.speaker, speech, self._caller(context))
        return httpbody_pb2.HttpBody(content_type=content_type, data=data)

    # -- voices --------------------------------------------------------------

    async def CreateVoice(self, request, context):
        start_call(request.request_id)
        new = _new_voice(
            request.voice_id, request.voice, request.reference_audio, request.reference_audio_format
        )
        return _voice_proto(await self.voices.create(new, self._caller(context)))

    async def UploadVoice(self, request, context):
        start_call(request.request_id)
        new = _new_voice(
            request.voice_id,
            request.voice,
            request.reference_audio.data,
            request.reference_audio_format,
        )
        return _voice_proto(await self.voices.create(new, self._caller(context)))

    async def GetVoice(self, request, context):
        start_call(request.request_id)
        return _voice_proto(await self.voices.get(request.name, self._caller(context)))

    async def ListVoices(self, request, context):
        start_call(request.request_id)
        voices, token = await self.voices.list(
            request.page_size, request.page_token, self._caller(context)
        )
        return tts_pb2.ListVoicesResponse(
            request_id=request.request_id,
            voices=[_voice_proto(v) for v in voices],
            next_page_token=token,
        )

    async def DeleteVoice(self, request, context):
        start_call(request.request_id)
        await self.voices.delete(request.name, self._caller(context))
        return empty_pb2.Empty()

    # -- models --------------------------------------------------------------

    async def ListModels(self, request, context):
        start_call(request.request_id)
        infos = []
        for model in self.models.models.values():
            info = tts_pb2.ModelInfo(
                name=model.name,
                source=model.source,
                state=state_proto(model.state),
                default=model is self.models.default,
                error=model.error,
            )
            engine = model.engine
            if engine is not None:
                info.engine = engine.family
                info.language_codes.extend(engine.languages)
                info.supports_voice_cloning = engine.supports_cloning
                info.preset_voices.extend(
                    common_pb2.PresetVoice(
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


def _new_voice(voice_id: str, voice: tts_pb2.Voice, data: bytes, fmt) -> NewVoice:
    return NewVoice(
        voice_id=voice_id,
        transcript=voice.transcript,
        audio=data,
        raw=raw_format(fmt, "reference_audio_format"),
        display_name=voice.display_name,
        model=voice.model,
        language=voice.language_code,
    )


# -- domain -> responses -----------------------------------------------------------


def _voice_proto(voice: StoredVoice) -> tts_pb2.Voice:
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


def _chunk_proto(chunk: AudioChunk) -> tts_pb2.SynthesisAudioChunk:
    proto = tts_pb2.SynthesisAudioChunk(
        audio=chunk.audio,
        sample_rate_hertz=chunk.sample_rate,
        offset=duration(chunk.offset),
        sentence_index=chunk.sentence_index,
        text=chunk.text,
        sentence_end=chunk.sentence_end,
    )
    if chunk.duration is not None:
        proto.duration.CopyFrom(duration(chunk.duration))
    return proto


def service_name() -> str:
    return tts_pb2.DESCRIPTOR.services_by_name["TtsService"].full_name


def register(servicer: TtsServicer, server: grpc.aio.Server) -> None:
    tts_pb2_grpc.add_TtsServiceServicer_to_server(servicer, server)
