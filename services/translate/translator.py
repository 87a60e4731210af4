"""Translation of whole inputs on top of an engine and its batcher (no protos here).

Text: every text is split at sentence boundaries into pieces the engine takes
(`split_text`), the pieces of all texts of a call go to the batcher at once so
they share forward passes, and each text is joined back (`join_pieces`).

Speech: audio up to the engine's window is translated whole; longer audio is
cut where nobody speaks (Silero VAD) into segments of at most the window, and
all segments go to the batcher at once. Translated speech of the segments is
joined with a short silence between them.

Languages come in as BCP-47 tags and are mapped to the engine's codes here;
an unusable option raises the engine's InvalidOptionError naming it, and so does a call over
the service's limits (`Limits`: texts, characters, seconds of audio). Recordings come in as
the call sent them (`translate_recording`): decoded, held to the limit and metered by
speechmesh.runtime.recordings.
"""

from __future__ import annotations

import asyncio
import math
import sys
from dataclasses import dataclass, field

import numpy as np

from speechmesh.dsp.audio import RawFormat
from speechmesh.dsp.text_split import join_pieces, split_text
from speechmesh.dsp.vad import SileroVad, speech_windows
from speechmesh.inference import background
from speechmesh.inference.batcher import PRIORITY_HIGH, MicroBatcher, gather_all
from speechmesh.runtime.interceptor import call_stats
from speechmesh.runtime.recordings import ProgressHook, WindowProgress, on_recording
from speechmesh.translate.engines.base import (
    InvalidOptionError,
    Task,
    TranslationEngine,
    TranslationJob,
    TranslationOutput,
)

#: Texts up to this many characters in all are split without a thread hop (well under 1 ms).
INLINE_SPLIT_CHARACTERS = 2000
#: Silence between the translated speech of consecutive segments or sentences, seconds.
GAP_SECONDS = 0.2


@dataclass(frozen=True)
class Limits:
    """The most one call may ask (the service's settings); no limit by default."""

    #: Texts per text translation call.
    max_texts: int = sys.maxsize
    #: Characters (code points) per text translation call, in all.
    max_text_characters: int = sys.maxsize
    #: Characters per text-to-speech call.
    max_speech_text_characters: int = sys.maxsize
    #: Seconds of audio per speech translation call.
    max_audio_seconds: float = math.inf


@dataclass(frozen=True)
class TranslatedText:
    """One text's translation."""

    text: str
    #: A piece of it stopped at the model's output length limit.
    truncated: bool = False


@dataclass(frozen=True)
class SpokenBy:
    """Who spoke a segment's translation on the cascade path."""

    #: "speaker" (cloned from the source), "stored" or "preset".
    kind: str
    #: The stored voice's resource name or the preset's name; empty for "speaker".
    name: str = ""
    #: The source span cloned from, seconds ("speaker" only).
    reference_start: float = 0.0
    reference_end: float = 0.0
    #: Why the speaker's voice, asked for, was not used.
    fallback_reason: str = ""


@dataclass
class SpeechSegment:
    #: Times in the input audio, seconds.
    start: float
    end: float
    transcript: str = ""
    text: str = ""
    #: Times in the translated audio, seconds (speech output only).
    audio_start: float = 0.0
    audio_end: float = 0.0
    #: Who spoke it (cascade path with speech output only).
    spoken_by: SpokenBy | None = None
    #: The translation stopped at the model's output length limit.
    truncated: bool = False


@dataclass(frozen=True)
class CascadeModels:
    """The models a cascade translation went through (names; empty when not used)."""

    recognition: str
    translation: str = ""
    synthesis: str = ""


@dataclass
class SpeechTranslation:
    segments: list[SpeechSegment]
    #: Input length, seconds.
    duration: float
    #: Translated speech at `sample_rate`; None without speech output.
    audio: np.ndarray | None = None
    sample_rate: int = 0
    voice: str = ""
    #: The language the cascade's recognizer detected (BCP-47) and its probability; empty
    #: on the direct path, which does not name it.
    detected_language: str = ""
    detected_probability: float = 0.0
    #: Set on the cascade path.
    cascade: CascadeModels | None = None

    @property
    def text(self) -> str:
        return " ".join(s.text for s in self.segments if s.text)

    @property
    def transcript(self) -> str:
        return " ".join(s.transcript for s in self.segments if s.transcript)


@dataclass(frozen=True)
class SpeechOptions:
    """Checked options of a speech translation, in the engine's codes."""

    target_code: str
    want_text: bool
    want_speech: bool
    voice_id: int
    voice_name: str
    #: Language code of the source transcript, None when none is wanted.
    transcript_code: str | None


@dataclass
class SpeechOutput:
    """Text translated into speech."""

    text: str
    audio: np.ndarray
    sample_rate: int
    voice: str
    pieces: list[str] = field(default_factory=list)


def supports_language_detection(engine: TranslationEngine) -> bool:
    """Whether text requests may leave the source language empty."""
    if hasattr(engine, "requires_source_language"):
        return not engine.requires_source_language
    return bool(getattr(engine, "supports_language_detection", False))


class Translator:
    def __init__(
        self,
        engine: TranslationEngine,
        batcher: MicroBatcher[TranslationJob, TranslationOutput],
        vad: SileroVad,
        limits: Limits = Limits(),
    ):
        self.engine = engine
        self.batcher = batcher
        self.vad = vad
        self.limits = limits

    # -- options ---------------------------------------------------------

    def target_code(self, tag: str, modality: str) -> str:
        if not tag.strip():
            raise InvalidOptionError(
                "target_language", "is required: the BCP-47 code to translate into (e.g. 'fr')"
            )
        return self.engine.language_code(tag, modality, "out")

    def text_source_code(self, tag: str) -> str | None:
        if tag.strip():
            return self.engine.language_code(tag, "text", "in")
        if not supports_language_detection(self.engine):
            raise InvalidOptionError(
                "source_language",
                f"is required: model {self.engine.name} cannot detect the language of text;"
                " set it (ListLanguages lists the text input languages)",
            )
        return None

    def voice_index(self, name: str) -> tuple[int, str]:
        voices = self.engine.voices
        if not voices:
            raise InvalidOptionError("modality", f"model {self.engine.name} does not speak")
        if not name:
            return 0, voices[0]
        if name not in voices:
            shown = ", ".join(voices[:3]) + (", ..." if len(voices) > 3 else "")
            raise InvalidOptionError(
                "voice",
                f"{name!r} is not a voice of model {self.engine.name} ({shown});"
                " ListLanguages lists them",
            )
        return voices.index(name), name

    # -- text ------------------------------------------------------------

    async def translate_texts(
        self, texts: list[str], source: str, target: str
    ) -> list[TranslatedText]:
        """Translations of `texts` (BCP-47 `source`, may be empty, and `target`), in order."""
        self._check_texts(texts)
        target_code = self.target_code(target, "text")
        source_code = self.text_source_code(source)
        split = await self._split(texts)
        jobs = [
            TranslationJob("t2tt", target_code, text=piece.text, source=source_code)
            for pieces in split
            for piece in pieces
        ]
        outputs = await gather_all(self.batcher.submit(job) for job in jobs)
        results, at = [], 0
        for text, pieces in zip(texts, split, strict=True):
            mine = outputs[at : at + len(pieces)]
            at += len(pieces)
            joined = join_pieces(pieces, text, [o.text for o in mine]).strip() if pieces else ""
            results.append(TranslatedText(joined, any(o.truncated for o in mine)))
        return results

    def _check_texts(self, texts: list[str]) -> None:
        """Holds a text call to the limits; counts its characters for the call's log."""
        limits = self.limits
        if not texts:
            raise InvalidOptionError("text", "is empty; send 1 or more texts to translate")
        if len(texts) > limits.max_texts:
            raise InvalidOptionError(
                "text", f"has {len(texts)} entries; at most {limits.max_texts} per call"
            )
        characters = sum(len(t) for t in texts)
        call_stats().characters = characters
        if characters > limits.max_text_characters:
            raise InvalidOptionError(
                "text",
                f"hold {characters} characters in all; at most"
                f" {limits.max_text_characters} per call (send several calls)",
            )

    async def _split(self, texts: list[str]):
        """Pieces of each text; short texts (most calls) are split on the event loop, long ones
        on a worker thread, so that a one-sentence call does not pay a thread hop."""
        if sum(len(t) for t in texts) <= INLINE_SPLIT_CHARACTERS:
            return self._split_all(texts)
        return await asyncio.to_thread(self._split_all, texts)

    def _split_all(self, texts: list[str]):
        engine = self.engine
        return [split_text(text, engine.max_input_tokens, engine.count_tokens) for text in texts]

    async def text_to_speech(self, text: str, source: str, target: str, voice: str) -> SpeechOutput:
        """`text` translated into `target` and spoken; long text sentence by sentence."""
        call_stats().characters = len(text)
        if not text.strip():
            raise InvalidOptionError("text", "is empty; send 1 or more characters to speak")
        limit = self.limits.max_speech_text_characters
        if len(text) > limit:
            raise InvalidOptionError("text", f"is {len(text)} characters; at most {limit} per call")
        target_code = self.target_code(target, "speech")
        source_code = self.text_source_code(source)
        voice_id, voice_name = self.voice_index(voice)
        (pieces,) = await self._split([text])
        if not pieces:
            raise InvalidOptionError("text", "is blank: send the text to translate and speak")
        jobs = [
            TranslationJob("t2st", target_code, text=p.text, source=source_code, voice=voice_id)
            for p in pieces
        ]
        outputs = await gather_all(self.batcher.submit(job) for job in jobs)
        rate = self.engine.output_sample_rate
        audio, _ = _concatenate([o.audio for o in outputs], rate)
        translated = join_pieces(pieces, text, [o.text for o in outputs]).strip()
        return SpeechOutput(translated, audio, rate, voice_name, [o.text for o in outputs])

    # -- speech ----------------------------------------------------------

    def speech_options(
        self,
        source: str,
        target: str,
        *,
        want_text: bool = True,
        want_speech: bool = False,
        want_source_transcript: bool = False,
        voice: str = "",
    ) -> SpeechOptions:
        """Checks the options of a speech translation (BCP-47 `source` may be empty) once,
        before any audio is translated."""
        engine = self.engine
        if want_speech:
            target_code = self.target_code(target, "speech")
            voice_id, voice_name = self.voice_index(voice)
        else:
            target_code = self.target_code(target, "text")
            voice_id, voice_name = 0, ""
        if source.strip():
            engine.language_code(source, "speech", "in")  # checks it
        transcript_code = None
        if want_source_transcript:
            if not source.strip():
                raise InvalidOptionError(
                    "source_language",
                    "is required with enable_source_transcript: the transcript is written in"
                    " the language spoken, which the model does not detect",
                )
            try:
                transcript_code = engine.language_code(source, "text", "out")
            except InvalidOptionError as error:
                raise InvalidOptionError(
                    "source_language", f"{error} (needed for the source transcript)"
                ) from None
        return SpeechOptions(
            target_code, want_text, want_speech, voice_id, voice_name, transcript_code
        )

    async def translate_recording(
        self,
        data: bytes,
        raw: RawFormat | None,
        options: SpeechOptions,
        *,
        method: str,
        field: str = "audio",
        priority: int = PRIORITY_HIGH,
        on_progress: ProgressHook | None = None,
    ) -> SpeechTranslation:
        """`translate_speech` of the recording a call sent, decoded, held to the audio limit
        and metered by runtime.recordings.on_recording (errors name `field`)."""
        return await on_recording(
            data,
            raw,
            self.engine.input_sample_rate,
            lambda samples: self.translate_speech(
                samples, options, priority=priority, on_progress=on_progress
            ),
            service="translate",
            method=method,
            max_seconds=self.limits.max_audio_seconds,
            field=field,
        )

    async def translate_speech(
        self,
        audio: np.ndarray,
        options: SpeechOptions,
        *,
        priority: int = PRIORITY_HIGH,
        on_progress: ProgressHook | None = None,
    ) -> SpeechTranslation:
        """Translates a recording (float32 mono at `engine.input_sample_rate`) of any length,
        its segments at `priority`; `on_progress` follows them (runtime.recordings)."""
        engine = self.engine
        rate = engine.input_sample_rate
        duration = len(audio) / rate
        progress = WindowProgress(duration, on_progress)
        windows = await speech_windows(self.vad, audio, duration, self.engine.max_speech_seconds)
        task: Task = "s2st" if options.want_speech else "s2tt"
        pieces = [audio[int(start * rate) : int(end * rate)] for start, end in windows]
        jobs = [
            TranslationJob(task, options.target_code, audio=p, voice=options.voice_id)
            for p in pieces
        ]
        if options.transcript_code is not None:
            jobs += [TranslationJob("s2tt", options.transcript_code, audio=p) for p in pieces]
        # Each window's translation, then (when asked) each window's transcript.
        per_window = len(jobs) // len(windows) if windows else 1
        progress.expect(windows, per_window)

        async def translate(job: TranslationJob, seconds: float) -> TranslationOutput:
            output = await background.submit(self.batcher, job, priority)
            progress.done(seconds)
            return output

        lengths = [end - start for start, end in windows] * per_window
        outputs = await gather_all(
            translate(job, seconds) for job, seconds in zip(jobs, lengths, strict=True)
        )
        translations = outputs[: len(windows)]
        transcripts = outputs[len(windows) :] or [None] * len(windows)
        segments = [
            SpeechSegment(
                start,
                end,
                transcript=transcript.text if transcript is not None else "",
                text=output.text if options.want_text else "",
                truncated=output.truncated,
            )
            for (start, end), output, transcript in zip(
                windows, translations, transcripts, strict=True
            )
        ]
        result = SpeechTranslation(segments, duration)
        if options.want_speech:
            out_rate = engine.output_sample_rate
            result.audio, spans = _concatenate([o.audio for o in translations], out_rate)
            result.sample_rate, result.voice = out_rate, options.voice_name
            for segment, (begin, end) in zip(segments, spans, strict=True):
                segment.audio_start, segment.audio_end = begin, end
        return result


def _concatenate(
    pieces: list[np.ndarray | None], rate: int
) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """The pieces one after the other with GAP_SECONDS of silence between them, and the
    (start, end) of each in seconds."""
    gap = np.zeros(int(GAP_SECONDS * rate), dtype=np.float32)
    parts: list[np.ndarray] = []
    spans: list[tuple[float, float]] = []
    at = 0
    for i, piece in enumerate(pieces):
        samples = np.zeros(0, np.float32) if piece is None else np.asarray(piece, np.float32)
        if i:
            parts.append(gap)
            at += len(gap)
        spans.append((at / rate, (at + len(samples)) / rate))
        parts.append(samples)
        at += len(samples)
    audio = np.concatenate(parts) if parts else np.zeros(0, np.float32)
    return audio, spans
