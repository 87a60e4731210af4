"""Results as plain dataclasses. Times are float seconds; each keeps its protobuf as `.proto`.

Every result type is importable from here (and from speechmesh.client). Those of recognition
are written in transcripts.py, those of long-running jobs in jobs.py; those of synthesis and
translation, and what every service answers (its models, its health), here.
"""

from __future__ import annotations

import dataclasses
import datetime
import pathlib

from google.protobuf.message import Message

from speechmesh.client._common import FLUSH, FORCE_ENDPOINT, seconds
from speechmesh.client.jobs import Job, JobError, JobFileResult, Upload
from speechmesh.client.transcripts import (
    RealtimeDelta,
    RealtimeSpeechEvent,
    RealtimeTranscript,
    Segment,
    SpeechEvent,
    StreamingResult,
    Transcript,
    Word,
)

__all__ = [
    "FLUSH",
    "FORCE_ENDPOINT",
    "AudioChunk",
    "Health",
    "Job",
    "JobError",
    "JobFileResult",
    "ModelInfo",
    "ModelLanguages",
    "RealtimeDelta",
    "RealtimeSpeechEvent",
    "RealtimeTranscript",
    "Segment",
    "Speech",
    "SpeechEvent",
    "SpeechTranslation",
    "SpeechTranslationEvent",
    "StreamingResult",
    "SynthesisSummary",
    "Transcript",
    "TranslatedSegment",
    "Translation",
    "Upload",
    "Voice",
    "Word",
]

#: Output encodings by their short names.
ENCODING_EXTENSIONS = {"wav": "wav", "flac": "flac", "ogg": "ogg", "mp3": "mp3", "pcm": "pcm"}


# -- synthesis -------------------------------------------------------------------------------


@dataclasses.dataclass
class Speech:
    """Audio a service made: encoded bytes (as asked: WAV by default) and what they hold."""

    audio: bytes
    sample_rate: int
    duration: float
    encoding: str = "wav"
    model: str = ""
    #: The seed used (TTS), to get the same audio again.
    seed: int = 0
    #: The voice that spoke, when the service says.
    voice: str = ""
    #: The text spoken (translated text for text-to-speech translation).
    text: str = ""
    #: TTS: the sentences with (text, start, end) in seconds.
    sentences: list[tuple[str, float, float]] = dataclasses.field(default_factory=list)
    proto: Message | None = dataclasses.field(default=None, repr=False, compare=False)

    @classmethod
    def from_proto(cls, reply, encoding: str, **known) -> Speech:
        """A reply with `audio`, `sample_rate_hertz`, `audio_duration` and `model` (TTS's
        Synthesize, translation's TranslateTextToSpeech); `known`: the other fields."""
        return cls(
            reply.audio,
            reply.sample_rate_hertz,
            seconds(reply.audio_duration),
            encoding,
            reply.model,
            proto=reply,
            **known,
        )

    def save(self, path: str | pathlib.Path) -> pathlib.Path:
        path = pathlib.Path(path)
        path.write_bytes(self.audio)
        return path

    def to_numpy(self):
        """Float32 mono samples and the sample rate (decodes the container)."""
        from speechmesh.dsp.audio import RawFormat, decode_audio

        raw = RawFormat("linear16", self.sample_rate) if self.encoding == "pcm" else None
        decoded = decode_audio(self.audio, raw, None)
        return decoded.samples, decoded.sample_rate


@dataclasses.dataclass
class AudioChunk:
    """A piece of synthesized speech from a stream; the chunks of a stream, concatenated, are
    one continuous recording (the container header comes with the first)."""

    audio: bytes
    sample_rate: int
    offset: float
    duration: float
    sentence_index: int
    #: The sentence's text, on its first chunk only.
    text: str
    sentence_end: bool
    proto: Message | None = dataclasses.field(default=None, repr=False, compare=False)

    @classmethod
    def from_proto(cls, response) -> AudioChunk:
        c = response.audio_chunk
        return cls(
            c.audio,
            c.sample_rate_hertz,
            seconds(c.offset),
            seconds(c.duration),
            c.sentence_index,
            c.text,
            c.sentence_end,
            response,
        )


@dataclasses.dataclass
class SynthesisSummary:
    """The end of a synthesis stream."""

    duration: float
    sentence_count: int
    character_count: int
    sample_rate: int
    model: str
    seed: int
    proto: Message | None = dataclasses.field(default=None, repr=False, compare=False)

    @classmethod
    def from_proto(cls, response) -> SynthesisSummary:
        s = response.summary
        return cls(
            seconds(s.audio_duration),
            s.sentence_count,
            s.character_count,
            s.sample_rate_hertz,
            s.model,
            s.seed,
            response,
        )


def synthesis_event(response) -> AudioChunk | SynthesisSummary | None:
    """A StreamingSynthesizeResponse as what it carries: a chunk of audio or the summary."""
    if response.HasField("audio_chunk"):
        return AudioChunk.from_proto(response)
    if response.HasField("summary"):
        return SynthesisSummary.from_proto(response)
    return None


@dataclasses.dataclass
class Voice:
    """A stored voice (a resource named "voices/{id}")."""

    name: str
    display_name: str
    language: str
    transcript: str
    reference_duration: float
    model: str
    engine: str
    created: datetime.datetime | None
    proto: Message | None = dataclasses.field(default=None, repr=False, compare=False)

    @property
    def id(self) -> str:
        return self.name.removeprefix("voices/")

    @classmethod
    def from_proto(cls, voice) -> Voice:
        created = (
            voice.create_time.ToDatetime(tzinfo=datetime.UTC)
            if voice.HasField("create_time")
            else None
        )
        return cls(
            voice.name,
            voice.display_name,
            voice.language_code,
            voice.transcript,
            seconds(voice.reference_audio_duration),
            voice.model,
            voice.engine,
            created,
            voice,
        )

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "display_name": self.display_name,
            "language": self.language,
            "transcript": self.transcript,
            "reference_seconds": round(self.reference_duration, 3),
            "model": self.model,
            "engine": self.engine,
            "created": self.created.isoformat() if self.created else None,
        }


# -- translation -----------------------------------------------------------------------------


@dataclasses.dataclass
class Translation:
    """The translation of one text."""

    text: str
    source_language: str
    source_language_probability: float
    model: str = ""
    proto: Message | None = dataclasses.field(default=None, repr=False, compare=False)

    @classmethod
    def from_proto(cls, translation, model: str) -> Translation:
        """One entry of a TranslateTextResponse; `model`: the response's model."""
        return cls(
            translation.translated_text,
            translation.source_language_code,
            translation.source_language_probability,
            model,
            translation,
        )


@dataclasses.dataclass
class TranslatedSegment:
    start: float
    end: float
    source_transcript: str
    text: str
    audio_start: float
    audio_end: float
    proto: Message | None = dataclasses.field(default=None, repr=False, compare=False)

    @classmethod
    def from_proto(cls, segment) -> TranslatedSegment:
        return cls(
            seconds(segment.start_offset),
            seconds(segment.end_offset),
            segment.source_transcript,
            segment.translated_text,
            seconds(segment.translated_audio_start_offset),
            seconds(segment.translated_audio_end_offset),
            segment,
        )


@dataclasses.dataclass
class SpeechTranslation:
    """The translation of a whole recording: text, speech (`audio`, when asked) or both."""

    text: str
    source_transcript: str
    source_language: str
    source_language_probability: float
    target_language: str
    segments: list[TranslatedSegment]
    audio: Speech | None
    duration: float
    model: str
    request_id: str = ""
    proto: Message | None = dataclasses.field(default=None, repr=False, compare=False)

    @classmethod
    def from_proto(cls, response, encoding: str = "wav") -> SpeechTranslation:
        audio = None
        if response.translated_audio:
            audio = Speech(
                response.translated_audio,
                response.translated_audio_sample_rate_hertz,
                seconds(response.translated_audio_duration),
                encoding,
                response.model,
                voice=response.voice,
                text=response.translated_text,
                proto=response,
            )
        return cls(
            response.translated_text,
            response.source_transcript,
            response.source_language_code,
            response.source_language_probability,
            response.target_language_code,
            [TranslatedSegment.from_proto(s) for s in response.segments],
            audio,
            seconds(response.audio_duration),
            response.model,
            response.request_id,
            response,
        )


@dataclasses.dataclass
class SpeechTranslationEvent:
    """One message of a speech translation stream.

    `kind` is "transcript" (source text, `text`), "translation" (translated text, `text`),
    "audio" (a piece of translated speech, `audio`) or "segment_end".
    """

    kind: str
    segment_index: int
    start: float
    end: float
    text: str = ""
    language: str = ""
    audio: bytes = b""
    sample_rate: int = 0
    audio_offset: float = 0.0
    audio_duration: float = 0.0
    request_id: str = ""
    proto: Message | None = dataclasses.field(default=None, repr=False, compare=False)

    @classmethod
    def from_proto(cls, r) -> SpeechTranslationEvent:
        base = dict(
            segment_index=r.segment_index,
            start=seconds(r.start_offset),
            end=seconds(r.end_offset),
            request_id=r.request_id,
            proto=r,
        )
        which = r.WhichOneof("streaming_response")
        if which == "source_transcript":
            t = r.source_transcript
            return cls("transcript", text=t.transcript, language=t.language_code, **base)
        if which == "translation":
            t = r.translation
            return cls(
                "translation", text=t.translated_text, language=t.source_language_code, **base
            )
        if which == "audio_chunk":
            c = r.audio_chunk
            return cls(
                "audio",
                audio=c.audio,
                sample_rate=c.sample_rate_hertz,
                audio_offset=seconds(c.offset),
                audio_duration=seconds(c.duration),
                **base,
            )
        end = r.segment_end
        return cls("segment_end", audio_duration=seconds(end.translated_audio_duration), **base)


@dataclasses.dataclass
class ModelLanguages:
    """What one translation model takes and produces, per modality (BCP-47 codes)."""

    model: str
    text_input: list[str]
    text_output: list[str]
    speech_input: list[str]
    speech_output: list[str]
    voices: list[str]
    proto: Message | None = dataclasses.field(default=None, repr=False, compare=False)

    @classmethod
    def from_proto(cls, entry) -> ModelLanguages:
        return cls(
            entry.model,
            list(entry.text_input_language_codes),
            list(entry.text_output_language_codes),
            list(entry.speech_input_language_codes),
            list(entry.speech_output_language_codes),
            [v.name for v in entry.voices],
            entry,
        )


# -- every service ---------------------------------------------------------------------------


@dataclasses.dataclass
class ModelInfo:
    """A model a service has loaded. `name` is its stable id (what requests name it by),
    `source` the path or hub id it was loaded from. `languages` are BCP-47 codes (ASR, TTS; for
    translation see ListLanguages); `capabilities` the service's boolean flags (supports_*)."""

    service: str
    name: str
    engine: str
    state: str
    device: str
    dtype: str
    memory_bytes: int
    default: bool
    random_weights: bool
    error: str
    languages: list[str]
    capabilities: dict[str, bool]
    preset_voices: list[str]
    proto: Message | None = dataclasses.field(default=None, repr=False, compare=False)
    source: str = ""

    @classmethod
    def from_proto(cls, service: str, model) -> ModelInfo:
        state = type(model).DESCRIPTOR.fields_by_name["state"].enum_type
        fields = {f.name for f in model.DESCRIPTOR.fields}
        flags = {
            name: bool(getattr(model, name)) for name in sorted(fields) if name.startswith("supp")
        }
        if "input_modalities" in fields:
            for kind in ("input", "output"):
                names = [
                    model.DESCRIPTOR.fields_by_name[f"{kind}_modalities"]
                    .enum_type.values_by_number[v]
                    .name.removeprefix("MODALITY_")
                    .lower()
                    for v in getattr(model, f"{kind}_modalities")
                ]
                for name in ("text", "speech"):
                    flags[f"{name}_{kind}"] = name in names
        return cls(
            service,
            model.name,
            model.engine,
            state.values_by_number[model.state].name.removeprefix("MODEL_STATE_").lower(),
            model.device,
            model.dtype,
            model.memory_bytes,
            model.default,
            model.random_weights,
            model.error,
            list(getattr(model, "language_codes", [])),
            flags,
            [v.name for v in getattr(model, "preset_voices", [])],
            model,
            model.source,
        )


@dataclasses.dataclass
class Health:
    """A service's grpc.health.v1 status as the target answers it: "SERVING", "NOT_SERVING",
    "SERVICE_UNKNOWN", or "UNAVAILABLE" with `error` when the check itself failed."""

    service: str
    status: str
    error: str = ""

    @property
    def serving(self) -> bool:
        return self.status == "SERVING"
