"""TranslateService: maps protos to translator calls and back, nothing more."""

from __future__ import annotations

import grpc
from google.api import httpbody_pb2

from speechmesh.common.v1 import common_pb2
from speechmesh.dsp.endpointing import EndpointSettings
from speechmesh.dsp.stream_encoder import StreamEncoder
from speechmesh.operations.host import Jobs
from speechmesh.runtime import errors
from speechmesh.runtime.identity import IdentityPolicy
from speechmesh.runtime.interceptor import call_stats
from speechmesh.runtime.proto_mapping import (
    body_content_type,
    duration,
    model_info,
    output_format,
    seconds_option,
    start_call,
)
from speechmesh.runtime.streams import StreamSlots, first_config, stream_inputs
from speechmesh.translate import batch
from speechmesh.translate.cascade.pipeline import Cascade
from speechmesh.translate.cascade.reach import cascade_reach
from speechmesh.translate.config import TranslateSettings
from speechmesh.translate.engines.base import TASK_MODALITIES
from speechmesh.translate.mapping import (
    SPEECH_FIELDS,
    add_speech,
    choose_path,
    encode_speech,
    option_fields,
    segment_voice,
    speech_response,
    speech_seconds,
)
from speechmesh.translate.models import TranslateModel, TranslateModels
from speechmesh.translate.streaming import (
    CascadeSegments,
    DirectSegments,
    SegmentDone,
    SegmentSpeech,
    SegmentText,
    SegmentTranscript,
    TranslationStream,
)
from speechmesh.translate.translator import supports_language_detection as detects
from speechmesh.translate.v1 import translate_pb2, translate_pb2_grpc

_MODALITIES = {"text": translate_pb2.MODALITY_TEXT, "speech": translate_pb2.MODALITY_SPEECH}
# Engine option (InvalidOptionError.option) -> the request field it comes from, per RPC.
_TEXT_FIELDS = {
    "source_language": "source_language_code",
    "target_language": "target_language_code",
    "text": "texts",
    "modality": "model",
    "task": "model",
}
_TTS_FIELDS = {
    "source_language": "config.source_language_code",
    "target_language": "config.target_language_code",
    "voice": "config.voice",
    "text": "text",
    "modality": "config.model",
    "task": "config.model",
}


class TranslateServicer(translate_pb2_grpc.TranslateServiceServicer):
    def __init__(
        self, models: TranslateModels, settings: TranslateSettings, jobs: Jobs, cascade: Cascade
    ):
        self.models = models
        self.settings = settings
        self.jobs = jobs
        self.cascade = cascade
        self.identity = IdentityPolicy.from_settings(settings)
        self._streams = StreamSlots(settings.max_streams)

    def _caller(self, context) -> str:
        """The caller's identity, passed on to the services the cascade calls (none for an
        in-process call without a context, as jobs and tests make)."""
        return self.identity.caller(context.invocation_metadata() if context else ())

    # -- text --------------------------------------------------------------

    async def TranslateText(self, request, context):
        start_call(request.request_id)
        model = self.models.for_task(request.model, "t2tt", "model")
        with option_fields(_TEXT_FIELDS):
            translated = await model.translator.translate_texts(
                list(request.texts), request.source_language_code, request.target_language_code
            )
        given = bool(request.source_language_code.strip())
        return translate_pb2.TranslateTextResponse(
            request_id=request.request_id,
            translations=[
                translate_pb2.Translation(
                    translated_text=done.text,
                    source_language_code=request.source_language_code if given else "",
                    source_language_probability=1.0 if given else 0.0,
                    truncated=done.truncated,
                )
                for done in translated
            ],
            model=model.name,
        )

    # -- speech ------------------------------------------------------------

    async def TranslateSpeech(self, request, context):
        return await self._speech(
            "TranslateSpeech", request.request_id, request.config, request.audio, context
        )

    async def TranslateSpeechFile(self, request, context):
        return await self._speech(
            "TranslateSpeechFile", request.request_id, request.config, request.audio.data, context
        )

    async def TranslateSpeechAudio(self, request, context):
        response = await self._speech(
            "TranslateSpeechAudio",
            request.request_id,
            request.config,
            request.audio.data,
            context,
            speech_only=True,
        )
        encoding, _ = output_format(
            request.config.output_audio_config, "config.output_audio_config"
        )
        return httpbody_pb2.HttpBody(
            content_type=body_content_type(encoding, response.translated_audio_sample_rate_hertz),
            data=response.translated_audio,
        )

    async def _speech(
        self,
        method: str,
        request_id: str,
        config,
        data: bytes,
        context,
        *,
        speech_only: bool = False,
    ) -> translate_pb2.TranslateSpeechResponse:
        start_call(request_id)
        plan = await choose_path(
            self.models, self.cascade, config, caller=self._caller(context), speech_only=speech_only
        )
        if plan.cascade is not None:
            result = await self.cascade.translate_recording(
                data,
                plan.raw,
                plan.cascade,
                method=method,
                max_seconds=self.models.limits.max_audio_seconds,
            )
            name = result.cascade.translation or result.cascade.recognition
        else:
            with option_fields(SPEECH_FIELDS):
                result = await plan.model.translator.translate_recording(
                    data, plan.raw, plan.options, method=method
                )
            name = plan.model.name
        response = speech_response(request_id, config, name, result)
        if plan.output is not None:
            add_speech(response, result, *plan.output)
        return response

    async def BatchTranslateSpeech(self, request, context):
        start_call(request.request_id)
        return await self.jobs.submit(batch.METHOD, request, context)

    async def StreamingTranslateSpeech(self, request_iterator, context):
        cfg = await first_config(request_iterator)
        if cfg is None:
            return
        start_call(cfg.request_id, "streaming_config.request_id")
        config = cfg.config
        plan = await choose_path(
            self.models,
            self.cascade,
            config,
            caller=self._caller(context),
            prefix="streaming_config.",
        )
        if plan.cascade is not None:
            translate = CascadeSegments(self.cascade, plan.cascade)
            out_rate = await self.cascade.output_rate(plan.cascade)
            window = 30.0
        else:
            translate = DirectSegments(plan.model.translator, plan.options)
            out_rate = plan.model.engine.output_sample_rate
            window = plan.model.engine.max_speech_seconds
        encoder = None
        if plan.output is not None:
            encoding, rate = plan.output
            encoder = StreamEncoder(out_rate, encoding, rate)
        endpointing = _endpointing(cfg, window)
        with self._streams.hold():
            stream = TranslationStream(translate, self.models.stream_vad, endpointing, plan.raw)
            inputs = stream_inputs(
                request_iterator, "audio", translate_pb2.StreamingControl.ACTION_FORCE_ENDPOINT
            )
            try:
                async for event in stream.run(inputs):
                    source = config.source_language_code.strip()
                    for response in _stream_responses(cfg.request_id, event, encoder, source):
                        yield response
                if encoder is not None and (tail := encoder.finish()):
                    yield _trailing_chunk(cfg.request_id, tail, encoder.rate, stream)
            finally:
                call_stats().audio_seconds = stream.audio_seconds

    # -- text to speech ----------------------------------------------------

    async def TranslateTextToSpeech(self, request, context):
        return await self._text_to_speech(request)

    async def TranslateTextToSpeechAudio(self, request, context):
        response = await self._text_to_speech(request)
        encoding, _ = output_format(
            request.config.output_audio_config, "config.output_audio_config"
        )
        return httpbody_pb2.HttpBody(
            content_type=body_content_type(encoding, response.sample_rate_hertz),
            data=response.audio,
        )

    async def _text_to_speech(self, request) -> translate_pb2.TranslateTextToSpeechResponse:
        start_call(request.request_id)
        config = request.config
        model = self.models.for_task(config.model, "t2st", "config.model")
        encoding, rate = output_format(config.output_audio_config, "config.output_audio_config")
        with option_fields(_TTS_FIELDS):
            speech = await model.translator.text_to_speech(
                request.text, config.source_language_code, config.target_language_code, config.voice
            )
        encoded, out_rate = encode_speech(speech.audio, speech.sample_rate, encoding, rate)
        return translate_pb2.TranslateTextToSpeechResponse(
            request_id=request.request_id,
            source_language_code=config.source_language_code,
            translated_text=speech.text,
            audio=encoded,
            sample_rate_hertz=out_rate,
            audio_duration=duration(speech_seconds(speech.audio, speech.sample_rate)),
            model=model.name,
            voice=speech.voice,
        )

    # -- models ------------------------------------------------------------

    async def ListLanguages(self, request, context):
        start_call(request.request_id)
        models = [self.models.get(request.model)] if request.model else self._listed()
        entries = []
        for model in models:
            entry = translate_pb2.ModelLanguages(model=model.name)
            engine = model.engine
            if engine is not None:
                langs = engine.languages
                entry.text_input_language_codes.extend(sorted(langs.text_in))
                entry.text_output_language_codes.extend(sorted(langs.text_out))
                entry.speech_input_language_codes.extend(sorted(langs.speech_in))
                entry.speech_output_language_codes.extend(sorted(langs.speech_out))
                entry.voices.extend(
                    common_pb2.PresetVoice(name=name, display_name=name) for name in engine.voices
                )
            entries.append(entry)
        response = translate_pb2.ListLanguagesResponse(
            request_id=request.request_id, models=entries
        )
        if not request.model:
            reach = await cascade_reach(self.cascade.peers, self.models, self._caller(context))
            response.cascade.CopyFrom(
                translate_pb2.CascadeLanguages(
                    available=reach.available,
                    unavailable_reason=reach.reason,
                    speech_input_language_codes=reach.speech_in,
                    text_output_language_codes=reach.text_out,
                    speech_output_language_codes=reach.speech_out,
                    supports_speaker_voice=reach.speaker_voice,
                )
            )
        return response

    async def ListModels(self, request, context):
        start_call(request.request_id)
        infos = [_model_info(model, self.models.default) for model in self._listed()]
        return translate_pb2.ListModelsResponse(request_id=request.request_id, models=infos)

    def _listed(self) -> list[TranslateModel]:
        """Every model, the default first."""
        return list(self.models.models.values())


# -- requests -> domain ----------------------------------------------------


def _endpointing(cfg, window: float) -> EndpointSettings:
    threshold = cfg.vad_threshold or 0.5
    if not 0.05 <= threshold <= 0.95:
        raise errors.invalid_argument(
            "streaming_config.vad_threshold", f"is {cfg.vad_threshold}; use 0.05 to 0.95"
        )
    longest = min(30.0, window)
    return EndpointSettings(
        endpoint_silence=seconds_option(
            cfg.endpoint_silence, 0.5, 0.1, 5.0, "streaming_config.endpoint_silence"
        ),
        vad_threshold=threshold,
        max_utterance=seconds_option(
            cfg.max_segment_duration,
            min(20.0, longest),
            1.0,
            longest,
            "streaming_config.max_segment_duration",
        ),
    )


# -- domain -> responses ---------------------------------------------------


def _model_info(model: TranslateModel, default: TranslateModel) -> translate_pb2.ModelInfo:
    info = model_info(translate_pb2.ModelInfo, model, default)
    engine = model.engine
    if engine is not None:
        ins = {TASK_MODALITIES[t][0] for t in engine.tasks}
        outs = {TASK_MODALITIES[t][1] for t in engine.tasks}
        info.input_modalities.extend(_MODALITIES[m] for m in ("text", "speech") if m in ins)
        info.output_modalities.extend(_MODALITIES[m] for m in ("text", "speech") if m in outs)
        info.supports_language_detection = detects(engine)
        info.native_sample_rate_hertz = engine.output_sample_rate if "speech" in outs else 0
    return info


#: Translated speech goes out in chunks of at most this much audio.
CHUNK_SECONDS = 1.0


def _stream_responses(
    request_id: str, event, encoder: StreamEncoder | None, source: str
) -> list[translate_pb2.StreamingTranslateSpeechResponse]:
    """The messages for one event of a TranslationStream; `source` is the requested source
    language (the transcript needs one)."""

    def response(**kwargs) -> translate_pb2.StreamingTranslateSpeechResponse:
        return translate_pb2.StreamingTranslateSpeechResponse(
            request_id=request_id,
            segment_index=event.index,
            start_offset=duration(event.start),
            end_offset=duration(event.end),
            **kwargs,
        )

    if isinstance(event, SegmentTranscript):
        language = source or event.language
        transcript = translate_pb2.SegmentTranscript(
            transcript=event.transcript,
            language_code=language,
            language_probability=1.0 if source else event.probability,
        )
        return [response(source_transcript=transcript)]
    if isinstance(event, SegmentText):
        text = translate_pb2.SegmentTranslation(
            translated_text=event.text,
            source_language_code=source or event.language,
            truncated=event.truncated,
        )
        return [response(translation=text)]
    if isinstance(event, SegmentDone):
        end = translate_pb2.SegmentEnd(
            translated_audio_duration=duration(event.speech_seconds),
            voice=segment_voice(event.spoken_by),
        )
        return [response(segment_end=end)]
    assert isinstance(event, SegmentSpeech) and encoder is not None
    step = int(CHUNK_SECONDS * event.sample_rate)
    responses = []
    for at in range(0, len(event.audio), step):
        piece = event.audio[at : at + step]
        chunk = translate_pb2.TranslatedAudioChunk(
            audio=encoder.encode(piece),
            sample_rate_hertz=encoder.rate,
            offset=duration(event.offset + at / event.sample_rate),
            duration=duration(len(piece) / event.sample_rate),
        )
        responses.append(response(audio_chunk=chunk))
    return responses


def _trailing_chunk(
    request_id: str, data: bytes, rate: int, stream: TranslationStream
) -> translate_pb2.StreamingTranslateSpeechResponse:
    """The encoder's last bytes (codec tail, container trailer), after the last segment."""
    return translate_pb2.StreamingTranslateSpeechResponse(
        request_id=request_id,
        segment_index=max(stream.segments - 1, 0),  # the last segment's
        audio_chunk=translate_pb2.TranslatedAudioChunk(
            audio=data, sample_rate_hertz=rate, offset=duration(stream.speech_seconds)
        ),
    )


def service_name() -> str:
    return translate_pb2.DESCRIPTOR.services_by_name["TranslateService"].full_name


def register(servicer: TranslateServicer, server: grpc.aio.Server) -> None:
    translate_pb2_grpc.add_TranslateServiceServicer_to_server(servicer, server)
