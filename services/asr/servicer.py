"""AsrService: maps protos to domain calls and back, nothing more."""

from __future__ import annotations

import datetime

import grpc
from google.api import httpbody_pb2

from speechmesh.asr import batch
from speechmesh.asr.config import AsrSettings
from speechmesh.asr.mapping import (
    EMOTIONS,
    audio_event_protos,
    decode_options,
    recognize_response,
    stream_settings,
    word_protos,
)
from speechmesh.asr.models import AsrModel, AsrModels
from speechmesh.asr.openai import AsrOpenAi
from speechmesh.asr.streaming import (
    SpeechEvent,
    StreamingSession,
    UtteranceResult,
)
from speechmesh.asr.v1 import asr_pb2, asr_pb2_grpc
from speechmesh.operations.host import Jobs
from speechmesh.runtime import errors
from speechmesh.runtime.admin import Operators
from speechmesh.runtime.interceptor import call_stats
from speechmesh.runtime.proto_mapping import (
    duration,
    model_info,
    raw_format,
    start_call,
)
from speechmesh.runtime.streams import StreamSlots, first_config, stream_inputs

_EVENTS = {
    "begin": asr_pb2.SpeechActivityEvent.TYPE_SPEECH_BEGIN,
    "end": asr_pb2.SpeechActivityEvent.TYPE_SPEECH_END,
    "end_of_single_utterance": asr_pb2.SpeechActivityEvent.TYPE_END_OF_SINGLE_UTTERANCE,
}


class AsrServicer(asr_pb2_grpc.AsrServiceServicer):
    def __init__(self, models: AsrModels, settings: AsrSettings, openai: AsrOpenAi, jobs: Jobs):
        self.models = models
        self.settings = settings
        self.openai = openai
        self.jobs = jobs
        self.streams = StreamSlots(settings.max_streams)
        self.operators = Operators.from_settings(settings)

    async def Recognize(self, request, context):
        return await self._recognize(request.request_id, request.config, request.audio)

    async def RecognizeFile(self, request, context):
        return await self._recognize(request.request_id, request.config, request.audio.data)

    async def _recognize(self, request_id: str, config, data: bytes) -> asr_pb2.RecognizeResponse:
        start_call(request_id)
        async with self.models.use(config.model) as model:
            options = decode_options(model, config)
            raw = raw_format(config.audio_format, "config.audio_format")
            transcript = await model.recognizer.recognize_audio(
                data, raw, options, method="Recognize"
            )
            return recognize_response(request_id, model, transcript)

    async def BatchRecognize(self, request, context):
        start_call(request.request_id)
        return await self.jobs.submit(batch.METHOD, request, context)

    async def StreamingRecognize(self, request_iterator, context):
        cfg = await first_config(request_iterator)
        if cfg is None:
            return
        start_call(cfg.request_id, "streaming_config.request_id")
        async with self.models.use(cfg.config.model) as model:
            settings = stream_settings(model, cfg)
            with self.streams.hold():
                session = StreamingSession(model.recognizer, self.models.vad, settings)
                async for response in self._stream(cfg, session, request_iterator):
                    yield response

    async def _stream(self, cfg, session: StreamingSession, request_iterator):
        inputs = stream_inputs(
            request_iterator, "audio", asr_pb2.StreamingControl.ACTION_FORCE_ENDPOINT
        )
        try:
            async for event in session.run(inputs):
                yield _stream_response(cfg.request_id, event)
        finally:
            call_stats().audio_seconds = session.audio_seconds

    async def ListModels(self, request, context):
        infos = [self._model_info(model) for model in self.models.models.values()]
        return asr_pb2.ListModelsResponse(request_id=request.request_id, models=infos)

    async def LoadModel(self, request, context):
        start_call(request.request_id)
        self.operators.check(context.invocation_metadata(), "LoadModel")
        model = await self.models.load_named(request.name, request.source)
        return self._model_info(model)

    async def UnloadModel(self, request, context):
        start_call(request.request_id)
        self.operators.check(context.invocation_metadata(), "UnloadModel")
        if not request.name:
            raise errors.invalid_argument("name", "is required: the id of a model (ListModels)")
        model = self.models.find(request.name)
        await self.models.unload_model(model)
        return self._model_info(model)

    def _model_info(self, model: AsrModel) -> asr_pb2.ModelInfo:
        info = _model_info(model, self.models.default)
        if model is not self.models.default and self.models.idle_unload_s > 0:
            info.idle_unload_after.FromTimedelta(
                datetime.timedelta(seconds=self.models.idle_unload_s)
            )
        return info

    # -- the OpenAI-compatible face (speechmesh.asr.openai) ----------------------------------

    async def CreateTranscription(self, request, context):
        answer = await self.openai.transcription(
            request.content_type, request.data, translate=False
        )
        return _http_body(answer)

    async def CreateTranslation(self, request, context):
        answer = await self.openai.transcription(request.content_type, request.data, translate=True)
        return _http_body(answer)

    async def ListOpenAiModels(self, request, context):
        return _http_body(await self.openai.model_list())

    async def GetOpenAiModel(self, request, context):
        return _http_body(await self.openai.model(request.model))


# -- requests -> domain ----------------------------------------------------


def _model_info(model: AsrModel, default: AsrModel) -> asr_pb2.ModelInfo:
    info = model_info(asr_pb2.ModelInfo, model, default)
    engine = model.engine
    if engine is None:
        return info  # loading, unloaded or failed: what it can do is known once loaded
    info.runtime = engine.runtime
    info.language_codes.extend(engine.languages)
    info.supports_translation = engine.supports_translation
    info.supports_language_detection = engine.supports_language_detection
    info.supports_word_time_offsets = engine.supports_word_timestamps
    info.supports_emotion_recognition = engine.supports_emotion
    info.supports_audio_event_detection = engine.supports_audio_events
    info.supports_text_normalization_control = engine.supports_text_normalization
    return info


def _http_body(answer: tuple[str, bytes]) -> httpbody_pb2.HttpBody:
    content_type, data = answer
    return httpbody_pb2.HttpBody(content_type=content_type, data=data)


def _stream_response(request_id: str, event) -> asr_pb2.StreamingRecognizeResponse:
    if isinstance(event, SpeechEvent):
        return asr_pb2.StreamingRecognizeResponse(
            request_id=request_id,
            speech_event=asr_pb2.SpeechActivityEvent(
                type=_EVENTS[event.kind], offset=duration(event.offset)
            ),
        )
    assert isinstance(event, UtteranceResult)
    return asr_pb2.StreamingRecognizeResponse(
        request_id=request_id,
        result=asr_pb2.StreamingRecognitionResult(
            utterance_index=event.index,
            is_final=event.is_final,
            stability=event.stability,
            transcript=event.transcript,
            stable_transcript=event.stable_transcript,
            start_offset=duration(event.start),
            end_offset=duration(event.end),
            words=word_protos(event.words),
            language_code=event.language,
            language_probability=event.language_probability,
            emotion=EMOTIONS.get(event.emotion, asr_pb2.EMOTION_UNSPECIFIED),
            audio_events=audio_event_protos([(e, event.start, event.end) for e in event.events]),
        ),
    )


def service_name() -> str:
    return asr_pb2.DESCRIPTOR.services_by_name["AsrService"].full_name


def register(servicer: AsrServicer, server: grpc.aio.Server) -> None:
    asr_pb2_grpc.add_AsrServiceServicer_to_server(servicer, server)
