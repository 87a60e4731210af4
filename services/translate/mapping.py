"""Speech translation requests -> translator calls and results -> TranslateSpeechResponse: the
mapping the servicer and the BatchTranslateSpeech jobs share."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import grpc
import numpy as np

from speechmesh.dsp.audio import RawFormat
from speechmesh.runtime import errors
from speechmesh.runtime.proto_mapping import duration, encode_output, output_format, raw_format
from speechmesh.translate.cascade.plan import CascadePlan, cascade_plan
from speechmesh.translate.engines.base import InvalidOptionError
from speechmesh.translate.models import TranslateModel, TranslateModels
from speechmesh.translate.translator import (
    GAP_SECONDS,
    SpeechOptions,
    SpeechTranslation,
    SpokenBy,
)
from speechmesh.translate.v1 import translate_pb2

if TYPE_CHECKING:
    from speechmesh.translate.cascade.pipeline import Cascade

#: Engine option (InvalidOptionError.option) -> the field of a speech request it comes from.
SPEECH_FIELDS = {
    "source_language": "config.source_language_code",
    "target_language": "config.target_language_code",
    "voice": "config.voice",
    "audio": "audio",
    "modality": "config.model",
    "task": "config.model",
}
LANGUAGE_OPTIONS = ("source_language", "target_language")


@contextlib.contextmanager
def option_fields(table: dict[str, str], prefix: str = "") -> Iterator[None]:
    """Turns an engine's InvalidOptionError into INVALID_ARGUMENT naming the request field
    (`prefix` + its name in `table`)."""
    try:
        yield
    except InvalidOptionError as error:
        message = str(error)
        if error.option in LANGUAGE_OPTIONS and "ListLanguages" not in message:
            message += "; ListLanguages lists the languages of each model"
        raise errors.invalid_argument(
            prefix + table.get(error.option, error.option), message
        ) from None


def output_modalities(values, field: str = "config.output_modalities") -> tuple[bool, bool]:
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


def speech_options(
    model: TranslateModel, config, want_text, want_speech, want_transcript, prefix: str = ""
) -> SpeechOptions:
    with option_fields(SPEECH_FIELDS, prefix):
        return model.translator.speech_options(
            config.source_language_code,
            config.target_language_code,
            want_text=want_text,
            want_speech=want_speech,
            want_source_transcript=want_transcript,
            voice=config.voice,
        )


@dataclass(frozen=True)
class SpeechPlan:
    """A checked SpeechTranslationConfig: the path and what runs it (the direct path's model and
    translator options, or the cascade's plan), the input's raw format (None: a container) and
    the output speech's (encoding, rate or None), if any."""

    raw: RawFormat | None
    output: tuple[str, int | None] | None
    model: TranslateModel | None = None
    options: SpeechOptions | None = None
    cascade: CascadePlan | None = None


def _wants(config, speech_only: bool) -> tuple[bool, bool, bool]:
    """(text, speech, source transcript) a config asks for."""
    if speech_only:
        return False, True, False
    want_text, want_speech = output_modalities(config.output_modalities)
    return want_text, want_speech, config.enable_source_transcript


def speech_plan(models: TranslateModels, config, *, speech_only: bool = False) -> SpeechPlan:
    """Checks a speech translation's `config` (a request's "config" field) for the direct
    path; `speech_only`: the speech alone is wanted, whatever the config says."""
    want_text, want_speech, want_transcript = _wants(config, speech_only)
    if config.path == translate_pb2.SPEECH_TRANSLATION_PATH_CASCADE:
        raise errors.invalid_argument(
            "config.path", "jobs run the direct path only; use TranslateSpeech for the cascade"
        )
    tasks = ["s2st" if want_speech else "s2tt"] + (["s2tt"] if want_transcript else [])
    model = models.for_task(config.model, tasks, "config.model")
    output = None
    if want_speech:
        output = output_format(config.output_audio_config, "config.output_audio_config")
    options = speech_options(model, config, want_text, want_speech, want_transcript)
    raw = raw_format(config.audio_format, "config.audio_format")
    return SpeechPlan(raw, output, model, options)


async def choose_path(
    models: TranslateModels,
    cascade: Cascade,
    config,
    *,
    caller: str,
    speech_only: bool = False,
    prefix: str = "",
) -> SpeechPlan:
    """Checks `config` and picks its path (SpeechTranslationConfig.path): DIRECT or CASCADE as
    asked; unspecified, the direct path when a model here can do what is asked, else the
    cascade when its peers are set. Errors name fields under `prefix`."""
    want_text, want_speech, want_transcript = _wants(config, speech_only)
    at = prefix + "config."
    output = None
    if want_speech:
        output = output_format(config.output_audio_config, at + "output_audio_config")
    raw = raw_format(config.audio_format, at + "audio_format")

    async def by_cascade() -> SpeechPlan:
        plan = await cascade_plan(
            cascade.peers,
            models,
            config,
            want_text=want_text,
            want_speech=want_speech,
            want_transcript=want_transcript,
            caller=caller,
            prefix=prefix,
        )
        return SpeechPlan(raw, output, cascade=plan)

    if config.path == translate_pb2.SPEECH_TRANSLATION_PATH_CASCADE:
        return await by_cascade()
    tasks = ["s2st" if want_speech else "s2tt"] + (["s2tt"] if want_transcript else [])
    try:
        model = models.for_task(config.model, tasks, at + "model")
        options = speech_options(model, config, want_text, want_speech, want_transcript, prefix)
        return SpeechPlan(raw, output, model, options)
    except errors.ApiError as direct:
        usable = cascade.peers.missing("asr") is None and (
            not want_speech or cascade.peers.missing("tts") is None
        )
        if config.path or direct.code != grpc.StatusCode.INVALID_ARGUMENT or not usable:
            raise
        try:
            return await by_cascade()
        except errors.ApiError as error:
            direct.message += f" (and the cascade path cannot either: {error.message})"
            raise direct from None


def encode_speech(
    samples: np.ndarray | None, rate: int, encoding: str, output_rate: int | None
) -> tuple[bytes, int]:
    """Encoded audio and its sample rate. Nothing said (no speech found): a short silence."""
    if samples is None or not len(samples):
        samples = np.zeros(int(GAP_SECONDS * rate), dtype=np.float32)
    return encode_output(samples, rate, encoding, output_rate, "config.output_audio_config")


def speech_seconds(samples: np.ndarray | None, rate: int) -> float:
    """Length of the audio encode_speech encodes."""
    return len(samples) / rate if samples is not None and len(samples) else GAP_SECONDS


def add_speech(
    response: translate_pb2.TranslateSpeechResponse,
    result: SpeechTranslation,
    encoding: str,
    output_rate: int | None,
) -> None:
    """The translated speech, encoded as the request asks, into `response`."""
    encoded, rate = encode_speech(result.audio, result.sample_rate, encoding, output_rate)
    response.translated_audio = encoded
    response.translated_audio_sample_rate_hertz = rate
    response.translated_audio_duration.CopyFrom(
        duration(speech_seconds(result.audio, result.sample_rate))
    )
    response.voice = result.voice


def speech_response(
    request_id: str, config, model_name: str, result: SpeechTranslation
) -> translate_pb2.TranslateSpeechResponse:
    """The response for `result` (without the speech: add_speech); `model_name` translated."""
    given = bool(config.source_language_code.strip())
    speech = result.audio is not None
    response = translate_pb2.TranslateSpeechResponse(
        request_id=request_id,
        source_language_code=config.source_language_code if given else result.detected_language,
        source_language_probability=1.0 if given else result.detected_probability,
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
                voice=segment_voice(s.spoken_by),
                truncated=s.truncated,
            )
            for s in result.segments
        ],
        audio_duration=duration(result.duration),
        model=model_name,
        path=translate_pb2.SPEECH_TRANSLATION_PATH_DIRECT,
    )
    if result.cascade is not None:
        response.path = translate_pb2.SPEECH_TRANSLATION_PATH_CASCADE
        response.cascade_models.CopyFrom(
            translate_pb2.CascadeModels(
                recognition_model=result.cascade.recognition,
                translation_model=result.cascade.translation,
                synthesis_model=result.cascade.synthesis,
            )
        )
    return response


_VOICE_KINDS = {
    "speaker": translate_pb2.SegmentVoice.KIND_SPEAKER,
    "stored": translate_pb2.SegmentVoice.KIND_STORED,
    "preset": translate_pb2.SegmentVoice.KIND_PRESET,
}


def segment_voice(spoken_by: SpokenBy | None) -> translate_pb2.SegmentVoice | None:
    if spoken_by is None:
        return None
    voice = translate_pb2.SegmentVoice(
        kind=_VOICE_KINDS[spoken_by.kind],
        name=spoken_by.name,
        fallback_reason=spoken_by.fallback_reason,
    )
    if spoken_by.kind == "speaker":
        voice.reference_start_offset.CopyFrom(duration(spoken_by.reference_start))
        voice.reference_end_offset.CopyFrom(duration(spoken_by.reference_end))
    return voice
