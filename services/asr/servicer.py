"""AsrService: maps protos to domain calls and back, nothing more."""

from __future__ import annotations

import asyncio
import time

import grpc
from google.api import httpbody_pb2

from speechmesh.asr.config import AsrSettings
from speechmesh.asr.engines.base import DecodeOptions, InvalidOptionError, Segment, Word
from speechmesh.asr.models import AsrModel, AsrModels
from speechmesh.asr.recognizer import Transcript
from speechmesh.asr.streaming import (
    SpeechEvent,
    StreamingSession,
    StreamSettings,
    UtteranceResult,
)
from speechmesh.asr.v1 import asr_pb2, asr_pb2_grpc
from speechmesh.dsp.audio import AudioError, RawFormat, decode_audio
from speechmesh.inference.model_state import state_proto
from speechmesh.runtime import errors, metrics, openai_compat
from speechmesh.runtime.interceptor import call_stats
from speechmesh.runtime.proto_mapping import (
    check_request_id,
    duration,
    raw_format,
    seconds_option,
)
from speechmesh.runtime.streams import StreamSlots, first_config, stream_inputs

_TASKS = {
    asr_pb2.RECOGNITION_TASK_UNSPECIFIED: "transcribe",
    asr_pb2.RECOGNITION_TASK_TRANSCRIBE: "transcribe",
    asr_pb2.RECOGNITION_TASK_TRANSLATE: "translate",
}
_OPTION_FIELDS = {
    "language": "language_code",
    "task": "task",
    "word_timestamps": "enable_word_time_offsets",
    "prompt": "prompt",
}
_EVENTS = {
    "begin": asr_pb2.SpeechActivityEvent.TYPE_SPEECH_BEGIN,
    "end": asr_pb2.SpeechActivityEvent.TYPE_SPEECH_END,
    "end_of_single_utterance": asr_pb2.SpeechActivityEvent.TYPE_END_OF_SINGLE_UTTERANCE,
}
MAX_HOTWORDS = 50
MAX_HOTWORD_CHARS = 50


class AsrServicer(asr_pb2_grpc.AsrServiceServicer):
    def __init__(self, models: AsrModels, settings: AsrSettings):
        self.models = models
        self.settings = settings
        self._streams = StreamSlots(settings.max_streams)
        #: `created` of the models in the OpenAI model list: when this service started.
        self._created = int(time.time())

    async def Recognize(self, request, context):
        return await self._recognize(request.request_id, request.config, request.audio)

    async def RecognizeFile(self, request, context):
        return await self._recognize(request.request_id, request.config, request.audio.data)

    async def _recognize(self, request_id: str, config, data: bytes) -> asr_pb2.RecognizeResponse:
        check_request_id(request_id)
        call_stats().request_id = request_id
        model = self.models.get(config.model)
        options = _options(model, config)
        if not data:
            raise errors.invalid_argument("audio", "is empty; send the recording's bytes")
        raw = raw_format(config.audio_format, "config.audio_format")
        transcript = await self._transcribe(model, options, data, raw, "Recognize", "audio")
        return _recognize_response(request_id, model, transcript)

    async def _transcribe(
        self,
        model: AsrModel,
        options: DecodeOptions,
        data: bytes,
        raw: RawFormat | None,
        method: str,
        field: str,
    ) -> Transcript:
        """Decodes a whole recording and recognizes it; `field` names the audio in errors."""
        started = time.perf_counter()
        # Decoding (MP3, long files) and resampling take milliseconds to seconds: off the loop.
        try:
            audio = await asyncio.to_thread(decode_audio, data, raw, model.engine.sample_rate)
        except AudioError as error:
            raise errors.invalid_argument(field, str(error)) from None
        call_stats().audio_seconds = audio.duration
        if audio.duration > self.settings.max_audio_seconds:
            raise errors.invalid_argument(
                field,
                f"is {audio.duration:.0f} s long; at most"
                f" {self.settings.max_audio_seconds:.0f} s per request (split it, or stream it)",
            )
        transcript = await model.recognizer.recognize(audio.samples, options)
        if audio.duration > 0:
            metrics.REAL_TIME_FACTOR.labels("asr", method).observe(
                (time.perf_counter() - started) / audio.duration
            )
        call_stats().characters = len(transcript.text)
        return transcript

    async def StreamingRecognize(self, request_iterator, context):
        cfg = await first_config(request_iterator)
        if cfg is None:
            return
        check_request_id(cfg.request_id, "streaming_config.request_id")
        call_stats().request_id = cfg.request_id
        model = self.models.get(cfg.config.model)
        settings = _stream_settings(model, cfg)
        with self._streams.hold():
            session = StreamingSession(model.recognizer, self.models.vad, settings)
            inputs = stream_inputs(
                request_iterator, "audio", asr_pb2.StreamingControl.ACTION_FORCE_ENDPOINT
            )
            try:
                async for event in session.run(inputs):
                    yield _stream_response(cfg.request_id, event)
            finally:
                call_stats().audio_seconds = session.audio_seconds

    async def ListModels(self, request, context):
        infos = []
        for model in self.models.models.values():
            info = asr_pb2.ModelInfo(
                name=model.name,
                source=model.source,
                engine="whisper",
                state=state_proto(model.state),
                default=model is self.models.default,
                error=model.error,
            )
            engine = model.engine
            if engine is not None:
                info.engine = engine.family
                info.runtime = engine.runtime
                info.language_codes.extend(engine.languages)
                info.supports_translation = engine.supports_translation
                info.supports_language_detection = engine.supports_language_detection
                info.supports_word_time_offsets = engine.supports_word_timestamps
                info.device = engine.device
                info.dtype = engine.dtype
                info.memory_bytes = engine.memory_bytes
                info.random_weights = engine.random_weights
            infos.append(info)
        return asr_pb2.ListModelsResponse(request_id=request.request_id, models=infos)

    # -- the OpenAI-compatible face (parsing and formatting live in openai_compat) ----------

    async def CreateTranscription(self, request, context):
        return await self._openai_audio(request, "CreateTranscription", translate=False)

    async def CreateTranslation(self, request, context):
        return await self._openai_audio(request, "CreateTranslation", translate=True)

    async def _openai_audio(self, body, method: str, *, translate: bool) -> httpbody_pb2.HttpBody:
        asked = openai_compat.audio_request(body.content_type, body.data, translate=translate)
        model = self.models.get(asked.model)
        options = _openai_options(model, asked)
        transcript = await self._transcribe(model, options, asked.file.data, None, method, "file")
        content_type, data = openai_compat.transcription_body(transcript, asked)
        return httpbody_pb2.HttpBody(content_type=content_type, data=data)

    async def ListOpenAiModels(self, request, context):
        content_type, data = openai_compat.models_body(self._openai_ids(), self._created)
        return httpbody_pb2.HttpBody(content_type=content_type, data=data)

    async def GetOpenAiModel(self, request, context):
        content_type, data = openai_compat.model_body(
            request.model, self._openai_ids(), self._created
        )
        return httpbody_pb2.HttpBody(content_type=content_type, data=data)

    def _openai_ids(self) -> list[str]:
        return openai_compat.model_ids(self.models.models)


# -- requests -> domain ----------------------------------------------------


def _options(model: AsrModel, config, field: str = "config") -> DecodeOptions:
    """Validates a RecognitionConfig; `field` is its path in the request, for error details."""
    beam_size = config.beam_size or 1
    if not 1 <= beam_size <= 8:
        raise errors.invalid_argument(f"{field}.beam_size", f"is {config.beam_size}; use 1 to 8")
    if not 0.0 <= config.temperature <= 1.0:
        raise errors.invalid_argument(
            f"{field}.temperature", f"is {config.temperature}; use 0.0 to 1.0"
        )
    if config.task not in _TASKS:
        raise errors.invalid_argument(f"{field}.task", f"unknown value {config.task}")
    if len(config.hotwords) > MAX_HOTWORDS:
        raise errors.invalid_argument(
            f"{field}.hotwords", f"has {len(config.hotwords)} entries; at most {MAX_HOTWORDS}"
        )
    for word in config.hotwords:
        if len(word) > MAX_HOTWORD_CHARS:
            raise errors.invalid_argument(
                f"{field}.hotwords",
                f"{word[:20]!r}... is longer than {MAX_HOTWORD_CHARS} characters",
            )
    prompt = " ".join(p for p in (config.prompt.strip(), ", ".join(config.hotwords)) if p)
    try:
        return model.engine.options(
            language=config.language_code,
            task=_TASKS[config.task],
            word_timestamps=config.enable_word_time_offsets,
            prompt=prompt,
            beam_size=beam_size,
            temperature=config.temperature,
        )
    except InvalidOptionError as error:
        raise errors.invalid_argument(
            f"{field}.{_OPTION_FIELDS[error.option]}", str(error)
        ) from None


def _openai_options(model: AsrModel, asked: openai_compat.AudioRequest) -> DecodeOptions:
    """Decode options of an OpenAI request; errors name its form fields."""
    try:
        return model.engine.options(
            language=asked.language,
            task=asked.task,
            word_timestamps=asked.word_timestamps,
            prompt=asked.prompt,
            beam_size=1,
            temperature=asked.temperature,
        )
    except InvalidOptionError as error:
        raise openai_compat.option_error(error.option, str(error), model.name) from None


def _stream_settings(model: AsrModel, cfg) -> StreamSettings:
    window = model.engine.window_seconds
    threshold = cfg.vad_threshold or 0.5
    if not 0.05 <= threshold <= 0.95:
        raise errors.invalid_argument(
            "streaming_config.vad_threshold", f"is {cfg.vad_threshold}; use 0.05 to 0.95"
        )
    return StreamSettings(
        options=_options(model, cfg.config, "streaming_config.config"),
        raw=raw_format(cfg.config.audio_format, "streaming_config.config.audio_format"),
        interim_results=cfg.interim_results,
        single_utterance=cfg.single_utterance,
        voice_activity_events=cfg.enable_voice_activity_events,
        endpoint_silence=seconds_option(
            cfg.endpoint_silence, 0.5, 0.1, 5.0, "streaming_config.endpoint_silence"
        ),
        vad_threshold=threshold,
        max_utterance=seconds_option(
            cfg.max_utterance_duration,
            window,
            1.0,
            window,
            "streaming_config.max_utterance_duration",
        ),
        interim_interval=seconds_option(
            cfg.interim_interval, 0.5, 0.2, 5.0, "streaming_config.interim_interval"
        ),
        sentence_pause=seconds_option(
            cfg.sentence_pause, 1.5, 0.0, 5.0, "streaming_config.sentence_pause"
        ),
    )


# -- domain -> responses ---------------------------------------------------


def _words(words: list[Word]) -> list[asr_pb2.WordInfo]:
    return [
        asr_pb2.WordInfo(
            word=w.text,
            start_offset=duration(w.start),
            end_offset=duration(w.end),
            confidence=w.probability,
        )
        for w in words
    ]


def _segment(segment: Segment) -> asr_pb2.SpeechSegment:
    return asr_pb2.SpeechSegment(
        text=segment.text,
        start_offset=duration(segment.start),
        end_offset=duration(segment.end),
        words=_words(segment.words),
        confidence=segment.probability,
    )


def _recognize_response(request_id: str, model: AsrModel, transcript: Transcript):
    return asr_pb2.RecognizeResponse(
        request_id=request_id,
        segments=[_segment(s) for s in transcript.segments],
        transcript=transcript.text,
        language_code=transcript.language,
        language_probability=transcript.language_probability,
        audio_duration=duration(transcript.duration),
        model=model.name,
    )


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
            words=_words(event.words),
            language_code=event.language,
            language_probability=event.language_probability,
        ),
    )


def service_name() -> str:
    return asr_pb2.DESCRIPTOR.services_by_name["AsrService"].full_name


def register(servicer: AsrServicer, server: grpc.aio.Server) -> None:
    asr_pb2_grpc.add_AsrServiceServicer_to_server(servicer, server)
