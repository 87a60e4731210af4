"""Speech translation requests -> translator calls and results -> TranslateSpeechResponse: the
mapping the servicer and the BatchTranslateSpeech jobs share."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from speechmesh.dsp.audio import RawFormat
from speechmesh.runtime import errors
from speechmesh.runtime.proto_mapping import duration, encode_output, output_format, raw_format
from speechmesh.translate.engines.base import InvalidOptionError
from speechmesh.translate.models import TranslateModel, TranslateModels
from speechmesh.translate.translator import GAP_SECONDS, SpeechOptions, SpeechTranslation
from speechmesh.translate.v1 import translate_pb2

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
    """A checked SpeechTranslationConfig: the model, the translator's options, the input's raw
    format (None: a container) and the output speech's (encoding, rate or None), if any."""

    model: TranslateModel
    options: SpeechOptions
    raw: RawFormat | None
    output: tuple[str, int | None] | None


def speech_plan(models: TranslateModels, config, *, speech_only: bool = False) -> SpeechPlan:
    """Checks a speech translation's `config` (a request's "config" field) as TranslateSpeech
    does; `speech_only`: the speech alone is wanted, whatever the config says."""
    if speech_only:
        want_text, want_speech, want_transcript = False, True, False
    else:
        want_text, want_speech = output_modalities(config.output_modalities)
        want_transcript = config.enable_source_transcript
    tasks = ["s2st" if want_speech else "s2tt"] + (["s2tt"] if want_transcript else [])
    model = models.for_task(config.model, tasks, "config.model")
    output = None
    if want_speech:
        output = output_format(config.output_audio_config, "config.output_audio_config")
    options = speech_options(model, config, want_text, want_speech, want_transcript)
    raw = raw_format(config.audio_format, "config.audio_format")
    return SpeechPlan(model, options, raw, output)


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
