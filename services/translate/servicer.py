"""TranslateService: maps protos to translator calls and back, nothing more."""

from __future__ import annotations

import contextlib

import grpc
import numpy as np
from google.api import httpbody_pb2

from speechmesh.common.v1 import common_pb2
from speechmesh.dsp.endpointing import EndpointSettings
from speechmesh.dsp.stream_encoder import StreamEncoder
from speechmesh.runtime import errors
from speechmesh.runtime.interceptor import call_stats
from speechmesh.runtime.proto_mapping import (
    body_content_type,
    duration,
    encode_output,
    model_info,
    output_format,
    raw_format,
    seconds_option,
    start_call,
)
from speechmesh.runtime.streams import StreamSlots, first_config, stream_inputs
from speechmesh.translate.config import TranslateSettings
from speechmesh.translate.engines.base import TASK_MODALITIES, InvalidOptionError
from speechmesh.translate.models import TranslateModel, TranslateModels
from speechmesh.translate.streaming import (
    SegmentDone,
    SegmentSpeech,
    SegmentText,
    SegmentTranscript,
    TranslationStream,
)
from speechmesh.translate.translator import GAP_SECONDS, SpeechTranslation
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
_SPEECH_FIELDS = {
    "source_language": "config.source_language_code",
    "target_language": "config.target_language_code",
    "voice": "config.voice",
    "audio": "audio",
    "modality": "config.model",
    "task": "config.model",
}
_TTS_FIELDS = {
    "source_language": "config.source_language_code",
    "target_language": "config.target_language_code",
    "voice": "config.voice",
    "text": "text",
    "modality": "config.model",
    "task": "config.model",
}
_LANGUAGE_OPTIONS = ("source_language", "target_language")


class TranslateServicer(translate_pb2_grpc.TranslateServiceServicer):
    def __init__(self, models: TranslateModels, settings: TranslateSettings):
        self.models = models
        self.settings = settings
        self._streams = StreamSlots(settings.max_streams)

    # -- text --------------------------------------------------------------

    async def TranslateText(self, request, context):
        start_call(request.request_id)
        model = self.models.for_task(request.model, "t2tt", "model")
        with _fields(_TEXT_FIELDS):
            translated = await model.translator.translate_texts(
                list(request.texts), request.source_language_code, request.target_language_code
            )
        given = bool(request.source_language_code.strip())
        return translate_pb2.TranslateTextResponse(
            request_id=request.request_id,
            translations=[
                translate_pb2.Translation(
                    translated_text=text,
                    source_language_code=request.source_language_code if given else "",
                    source_language_probability=1.0 if given else 0.0,
                )
                for text in translated
            ],
            model=model.name,
        )

    # -- speech ------------------------------------------------------------

    async def TranslateSpeech(self, request, context):
        return await self._speech(
            "TranslateSpeech", request.request_id, request.config, request.audio
        )

    async def TranslateSpeechFile(self, request, context):
        return await self._speech(
            "TranslateSpeechFile", request.request_id, request.config, request.audio.data
        )

    async def TranslateSpeechAudio(self, request, context):
        response = await self._speech(
            "TranslateSpeechAudio",
            request.request_id,
            request.config,
            request.audio.data,
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
        self, method: str, request_id: str, config, data: bytes, *, speech_only: bool = False
    ) -> translate_pb2.TranslateSpeechResponse:
        start_call(request_id)
        if speech_only:
            want_text, want_speech, want_transcript = False, True, False
        else:
            want_text, want_speech = _output_modalities(config.output_modalities)
            want_transcript = config.enable_source_transcript
        tasks = ["s2st" if want_speech else "s2tt"] + (["s2tt"] if want_transcript else [])
        model = self.models.for_task(config.model, tasks, "config.model")
        output = None
        if want_speech:
            output = output_format(config.output_audio_config, "config.output_audio_config")
        options = _speech_options(model, config, want_text, want_speech, want_transcript)
        raw = raw_format(config.audio_format, "config.audio_format")
        with _fields(_SPEECH_FIELDS):
            result = await model.translator.translate_recording(data, raw, options, method=method)
        response = _speech_response(request_id, config, model, result)
        if output is not None:
            _add_speech(response, result, *output)
        return response

    async def StreamingTranslateSpeech(self, request_iterator, context):
        cfg = await first_config(request_iterator)
        if cfg is None:
            return
        start_call(cfg.request_id, "streaming_config.request_id")
        config, at = cfg.config, "streaming_config.config."
        want_text, want_speech = _output_modalities(
            config.output_modalities, at + "output_modalities"
        )
        want_transcript = config.enable_source_transcript
        tasks = ["s2st" if want_speech else "s2tt"] + (["s2tt"] if want_transcript else [])
        model = self.models.for_task(config.model, tasks, at + "model")
        options = _speech_options(
            model, config, want_text, want_speech, want_transcript, "streaming_config."
        )
        encoder = None
        if want_speech:
            encoding, rate = output_format(config.output_audio_config, at + "output_audio_config")
            encoder = StreamEncoder(model.engine.output_sample_rate, encoding, rate)
        raw = raw_format(config.audio_format, at + "audio_format")
        endpointing = _endpointing(cfg, model.engine.max_speech_seconds)
        with self._streams.hold():
            stream = TranslationStream(
                model.translator, self.models.stream_vad, endpointing, raw, options
            )
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
        with _fields(_TTS_FIELDS):
            speech = await model.translator.text_to_speech(
                request.text, config.source_language_code, config.target_language_code, config.voice
            )
        encoded, out_rate = _encode(speech.audio, speech.sample_rate, encoding, rate)
        return translate_pb2.TranslateTextToSpeechResponse(
            request_id=request.request_id,
            source_language_code=config.source_language_code,
            translated_text=speech.text,
            audio=encoded,
            sample_rate_hertz=out_rate,
            audio_duration=duration(_seconds(speech.audio, speech.sample_rate)),
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
        return translate_pb2.ListLanguagesResponse(request_id=request.request_id, models=entries)

    async def ListModels(self, request, context):
        start_call(request.request_id)
        infos = [_model_info(model, self.models.default) for model in self._listed()]
        return translate_pb2.ListModelsResponse(request_id=request.request_id, models=infos)

    def _listed(self) -> list[TranslateModel]:
        """Every model, the default first."""
        return list(self.models.models.values())


# -- requests -> domain ----------------------------------------------------


@contextlib.contextmanager
def _fields(table: dict[str, str], prefix: str = ""):
    """Turns an engine's InvalidOptionError into INVALID_ARGUMENT naming the request field
    (`prefix` + its name in `table`)."""
    try:
        yield
    except InvalidOptionError as error:
        message = str(error)
        if error.option in _LANGUAGE_OPTIONS and "ListLanguages" not in message:
            message += "; ListLanguages lists the languages of each model"
        raise errors.invalid_argument(
            prefix + table.get(error.option, error.option), message
        ) from None


def _speech_options(
    model: TranslateModel, config, want_text, want_speech, want_transcript, prefix: str = ""
):
    with _fields(_SPEECH_FIELDS, prefix):
        return model.translator.speech_options(
            config.source_language_code,
            config.target_language_code,
            want_text=want_text,
            want_speech=want_speech,
            want_source_transcript=want_transcript,
            voice=config.voice,
        )


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


def _output_modalities(values, field: str = "config.output_modalities") -> tuple[bool, bool]:
    """(text, speech) from `output_modalities`; empty means text."""
    if not values:
        return True, False
    for value in values:
        if value not in (translate_pb2.MODALITY_TEXT, translate_pb2.MODALITY_SPEECH):
            raise errors.invalid_argument(
                field,
                f"holds {translate_pb2.Modality.Name(value) if value == 0 else value};"
                " use MODALITY_TEXT and/or MODALITY_SPEECH",
            )
    return translate_pb2.MODALITY_TEXT in values, translate_pb2.MODALITY_SPEECH in values


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


def _encode(
    samples: np.ndarray | None, rate: int, encoding: str, output_rate: int | None
) -> tuple[bytes, int]:
    """Encoded audio and its sample rate. Nothing said (no speech found): a short silence."""
    if samples is None or not len(samples):
        samples = np.zeros(int(GAP_SECONDS * rate), dtype=np.float32)
    return encode_output(samples, rate, encoding, output_rate, "config.output_audio_config")


def _seconds(samples: np.ndarray | None, rate: int) -> float:
    """Length of the audio _encode encodes."""
    return len(samples) / rate if samples is not None and len(samples) else GAP_SECONDS


def _add_speech(
    response: translate_pb2.TranslateSpeechResponse,
    result: SpeechTranslation,
    encoding: str,
    output_rate: int | None,
) -> None:
    """The translated speech, encoded as the request asks, into `response`."""
    encoded, rate = _encode(result.audio, result.sample_rate, encoding, output_rate)
    response.translated_audio = encoded
    response.translated_audio_sample_rate_hertz = rate
    response.translated_audio_duration.CopyFrom(
        duration(_seconds(result.audio, result.sample_rate))
    )
    response.voice = result.voice


def _speech_response(
    request_id: str, config, model: TranslateModel, result: SpeechTranslation
) -> translate_pb2.TranslateSpeechResponse:
    given = bool(config.source_language_code.strip())
    speech = result.audio is not None
    return translate_pb2.TranslateSpeechResponse(
        request_id=request_id,
        source_language_code=config.source_language_code if given else "",
        source_language_probability=1.0 if given else 0.0,
        target_language_code=config.target_language_code,
        source_transcript=result.transcript,
        translated_text=result.text,
        segments=[
            translate_pb2.TranslatedSegment(
                start_offset=duration(s.start),
                end_offset=duration(s.end),
                source_transcript=s.transcript,
                translated_text=s.text,
                translated_audio_start_offset=duration(s.audio_start) if speech else None,
                translated_audio_end_offset=duration(s.audio_end) if speech else None,
            )
            for s in result.segments
        ],
        audio_duration=duration(result.duration),
        model=model.name,
    )


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
        transcript = translate_pb2.SegmentTranscript(
            transcript=event.transcript, language_code=source, language_probability=1.0
        )
        return [response(source_transcript=transcript)]
    if isinstance(event, SegmentText):
        text = translate_pb2.SegmentTranslation(
            translated_text=event.text, source_language_code=source
        )
        return [response(translation=text)]
    if isinstance(event, SegmentDone):
        end = translate_pb2.SegmentEnd(translated_audio_duration=duration(event.speech_seconds))
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
