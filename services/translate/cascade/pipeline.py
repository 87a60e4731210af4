"""The cascade path: ASR -> text translation -> TTS over the suite's own services.

One recording (or one stream utterance) goes to the ASR service once; its segments, with their
times, are the cascade's segments. Their texts go through this service's text model (in-process,
with its batching) unless the target is their language or the ASR model translated into English
itself. Each translated segment goes to the TTS service (all of them at once, up to
TTS_CONCURRENCY per call, so the TTS service batches them), in the voice the plan says: for the
speaker's own voice, with the reference speechmesh.translate.cascade.references chooses; a
segment without one, or whose reference the TTS service refuses, falls back to the plan's preset
and says why.

The translated speech follows the source's timeline (`lay_out`): a segment's speech starts where
the segment starts in the source, or right after the previous segment's speech when that runs
longer, so the result can be laid over the original recording.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence

import grpc
import numpy as np
import soxr

from speechmesh.asr.v1 import asr_pb2
from speechmesh.dsp.vad import SileroVad, speech_windows
from speechmesh.runtime import errors, metrics
from speechmesh.runtime.recordings import on_recording
from speechmesh.translate.cascade.peers import CascadePeers, Speech, wav_bytes
from speechmesh.translate.cascade.plan import CascadePlan, speaks
from speechmesh.translate.cascade.references import (
    MAX_SECONDS,
    NoReference,
    Reference,
    SourceSegment,
    choose_references,
)
from speechmesh.translate.mapping import SPEECH_FIELDS, option_fields
from speechmesh.translate.translator import (
    CascadeModels,
    SpeechSegment,
    SpeechTranslation,
    SpokenBy,
    TranslatedText,
)
from speechmesh.tts.v1 import tts_pb2

#: Audio the cascade works on: what the ASR service and the speaker test take.
SAMPLE_RATE = 16000
#: Segments of one call spoken at once; the TTS service batches them.
TTS_CONCURRENCY = 16
#: Longest piece of a recording sent to the ASR service in one message, seconds (10 min of
#: 16-bit 16 kHz WAV is 19 MiB, well under the services' 64 MiB message limit).
RECOGNITION_CHUNK_SECONDS = 600.0


class Cascade:
    def __init__(self, peers: CascadePeers, vad: Callable[[], SileroVad | None] = lambda: None):
        self.peers = peers
        #: The service's VAD (loaded with its models), to cut long recordings at pauses.
        self.vad = vad

    async def output_rate(self, plan: CascadePlan) -> int:
        """Sample rate of the speech `plan` produces (its TTS model's)."""
        for info in await self.peers.models("tts", plan.caller):
            if info.name == plan.synthesis_model:
                return info.native_sample_rate_hertz or SAMPLE_RATE
        return SAMPLE_RATE

    async def translate_recording(
        self, data: bytes, raw, plan: CascadePlan, *, method: str, max_seconds: float
    ) -> SpeechTranslation:
        """`translate` of the recording a call sent, decoded, held to `max_seconds` and metered
        by runtime.recordings.on_recording."""
        return await on_recording(
            data,
            raw,
            SAMPLE_RATE,
            lambda samples: self.translate(samples, plan),
            service="translate",
            method=method,
            max_seconds=max_seconds,
        )

    async def translate(
        self,
        audio: np.ndarray,
        plan: CascadePlan,
        *,
        offset: float = 0.0,
        history: list[SourceSegment] | None = None,
    ) -> SpeechTranslation:
        """Translates `audio` (float32 mono at SAMPLE_RATE). `offset`: where it starts in a
        stream (segment times are the stream's); `history`: the stream's earlier segments, which
        short segments may borrow their speaker's voice from (new segments are appended)."""
        duration = len(audio) / SAMPLE_RATE
        segments, language, probability = await self._recognize_all(audio, plan, offset)
        texts = [TranslatedText(s.text) for s in segments]
        transcripts = [s.text for s in segments]
        if plan.recognizer_translates and plan.want_transcript:
            transcripts = await self._transcripts(audio, segments, offset, plan, language)
        translation_model = ""
        if segments and plan.needs_text_translation(language):
            texts, translation_model = await self._translate_texts(transcripts, language, plan)
        # Voice references come from the source language's text: the words actually spoken.
        sources = [
            SourceSegment(s.start, s.end, t, s.audio)
            for s, t in zip(segments, transcripts, strict=True)
        ]
        out = [
            SpeechSegment(
                s.start,
                s.end,
                transcript=t if plan.want_transcript else "",
                text=x.text,
                truncated=x.truncated,
            )
            for s, t, x in zip(segments, transcripts, texts, strict=True)
        ]
        result = SpeechTranslation(
            out,
            duration,
            detected_language=language,
            detected_probability=probability,
            cascade=CascadeModels(plan.recognition_model, translation_model),
        )
        if plan.want_speech:
            await self._speak(result, sources, plan, language, offset, history)
        if not plan.want_text:
            for segment in out:
                segment.text = ""
        return result

    # -- recognition -------------------------------------------------------

    async def _recognize_all(
        self, audio: np.ndarray, plan: CascadePlan, offset: float
    ) -> tuple[list[SourceSegment], str, float]:
        """The recording's segments, and its language and that language's probability. A
        recording longer than RECOGNITION_CHUNK_SECONDS goes to the ASR service in pieces cut
        at pauses (one message each, all at once), so none outgrows the peer's message limit."""
        duration = len(audio) / SAMPLE_RATE
        vad = self.vad()
        if duration <= RECOGNITION_CHUNK_SECONDS or vad is None:
            windows = [(0.0, duration)]
        else:
            windows = await speech_windows(vad, audio, duration, RECOGNITION_CHUNK_SECONDS)
        pieces = [audio[round(a * SAMPLE_RATE) : round(b * SAMPLE_RATE)] for a, b in windows]
        replies = await asyncio.gather(
            *(self._recognize(p, plan, translate=plan.recognizer_translates) for p in pieces)
        )
        segments = [
            segment
            for (start, _), piece, reply in zip(windows, pieces, replies, strict=True)
            for segment in _segments(reply, piece, offset + start)
        ]
        first = max(replies, key=lambda r: len(r.transcript)) if replies else None
        language = plan.source or (first.language_code if first else "")
        probability = 1.0 if plan.source else (first.language_probability if first else 0.0)
        return segments, language, probability

    async def _recognize(
        self, audio: np.ndarray, plan: CascadePlan, *, translate: bool, language: str = ""
    ) -> asr_pb2.RecognizeResponse:
        config = asr_pb2.RecognitionConfig(
            model=plan.recognition_model,
            language_code=language or plan.source,
            task=asr_pb2.RECOGNITION_TASK_TRANSLATE
            if translate
            else asr_pb2.RECOGNITION_TASK_TRANSCRIBE,
        )
        started = time.perf_counter()
        reply = await self.peers.recognize(audio, SAMPLE_RATE, config, plan.caller)
        _observe("recognize", started)
        return reply

    async def _transcripts(
        self,
        audio: np.ndarray,
        segments: list[SourceSegment],
        offset: float,
        plan: CascadePlan,
        language: str,
    ) -> list[str]:
        """Each segment transcribed in its own language (the recognizer translated the
        recording in one pass, so the source text needs a pass of its own)."""

        async def one(segment: SourceSegment) -> str:
            reply = await self._recognize(segment.audio, plan, translate=False, language=language)
            return reply.transcript.strip()

        return list(await asyncio.gather(*(one(s) for s in segments)))

    # -- text translation --------------------------------------------------

    async def _translate_texts(
        self, texts: list[str], language: str, plan: CascadePlan
    ) -> tuple[list[TranslatedText], str]:
        model = plan.text_model
        if model is None:
            raise errors.invalid_argument(
                "config.target_language_code",
                f"the speech is in {language!r}, and no text model of this service translates"
                f" it into {plan.target!r}; ListLanguages lists what the cascade produces",
            )
        started = time.perf_counter()
        spoken = [i for i, t in enumerate(texts) if t.strip()]
        with option_fields(SPEECH_FIELDS):
            done = await model.translator.translate_texts(
                [texts[i] for i in spoken], language, plan.target
            )
        _observe("translate", started)
        out = [TranslatedText("")] * len(texts)
        for i, translated in zip(spoken, done, strict=True):
            out[i] = translated
        return out, model.name

    # -- speech ------------------------------------------------------------

    async def _speak(
        self,
        result: SpeechTranslation,
        sources: list[SourceSegment],
        plan: CascadePlan,
        language: str,
        offset: float,
        history: list[SourceSegment] | None,
    ) -> None:
        known = list(history or [])
        first = len(known)
        known.extend(sources)
        spoken = [i for i, s in enumerate(result.segments) if s.text.strip()]
        references: dict = {}
        if plan.voice.kind == "speaker" and not plan.voice.no_cloning:
            references = await asyncio.to_thread(
                choose_references, known, [first + i for i in spoken]
            )
        gate = asyncio.Semaphore(TTS_CONCURRENCY)

        async def one(i: int) -> tuple[Speech, SpokenBy]:
            async with gate:
                return await self._speak_one(
                    result.segments[i].text, plan, language, references.get(first + i), known
                )

        started = time.perf_counter()
        spoken_audio = await asyncio.gather(*(one(i) for i in spoken))
        _observe("synthesize", started)
        rate = spoken_audio[0][0].sample_rate if spoken_audio else SAMPLE_RATE
        pieces: list[tuple[float, np.ndarray]] = []
        for i, (speech, spoken_by) in zip(spoken, spoken_audio, strict=True):
            samples = speech.samples
            if speech.sample_rate != rate:
                samples = soxr.resample(samples, speech.sample_rate, rate)
            pieces.append((result.segments[i].start - offset, samples))
            result.segments[i].spoken_by = spoken_by
        audio, spans = lay_out(pieces, rate, result.duration)
        for i, (begin, end) in zip(spoken, spans, strict=True):
            result.segments[i].audio_start, result.segments[i].audio_end = begin, end
        result.audio, result.sample_rate = audio, rate
        result.voice = plan.voice.name if plan.voice.kind != "speaker" else ""
        models = result.cascade
        synthesis = spoken_audio[0][0].model if spoken_audio else plan.synthesis_model
        result.cascade = CascadeModels(models.recognition, models.translation, synthesis)
        if history is not None:
            history.extend(sources)
            horizon = (sources[-1].end if sources else offset) - MAX_SECONDS
            history[:] = [s for s in history if s.end >= horizon]

    async def _speak_one(
        self,
        text: str,
        plan: CascadePlan,
        language: str,
        reference: Reference | NoReference | None,
        known: Sequence[SourceSegment],
    ) -> tuple[Speech, SpokenBy]:
        voice = plan.voice
        config = tts_pb2.SynthesisConfig(model=plan.synthesis_model, language_code=plan.target)
        if voice.kind == "stored":
            config.voice = voice.name
            return await self.peers.synthesize(text, config, plan.caller), SpokenBy(
                "stored", voice.name
            )
        if voice.kind == "preset":
            config.preset_voice = voice.name
            return await self.peers.synthesize(text, config, plan.caller), SpokenBy(
                "preset", voice.name
            )
        reason = voice.no_cloning
        if isinstance(reference, NoReference):
            reason = reference.reason
        elif isinstance(reference, Reference):
            config.reference_audio.CopyFrom(
                tts_pb2.ReferenceAudio(
                    audio=wav_bytes(reference.audio, SAMPLE_RATE),
                    transcript=reference.transcript,
                    # A model that does not speak the source language (CSM: English only)
                    # still clones from it; its transcript's language is then left unsaid.
                    language_code=language if speaks(plan.synthesis_languages, language) else "",
                )
            )
            try:
                speech = await self.peers.synthesize(text, config, plan.caller)
            except errors.ApiError as error:
                if (
                    error.code != grpc.StatusCode.INVALID_ARGUMENT
                    or "reference" not in error.message
                ):
                    raise
                reason = f"the TTS service refused the speaker's audio ({error.message})"
            else:
                return speech, SpokenBy(
                    "speaker", reference_start=reference.start, reference_end=reference.end
                )
        config.ClearField("reference_audio")
        if voice.fallback_preset:
            config.preset_voice = voice.fallback_preset
        speech = await self.peers.synthesize(text, config, plan.caller)
        return speech, SpokenBy("preset", voice.fallback_preset, fallback_reason=reason)


def _segments(
    recognized: asr_pb2.RecognizeResponse, audio: np.ndarray, offset: float
) -> list[SourceSegment]:
    """The recognizer's segments, in the stream's times, with their audio."""
    segments = []
    for piece in recognized.segments:
        start = piece.start_offset.ToTimedelta().total_seconds()
        end = max(piece.end_offset.ToTimedelta().total_seconds(), start)
        samples = audio[int(start * SAMPLE_RATE) : int(end * SAMPLE_RATE)]
        if not piece.text.strip() or not len(samples):
            continue
        segments.append(SourceSegment(start + offset, end + offset, piece.text.strip(), samples))
    return segments


def lay_out(
    pieces: list[tuple[float, np.ndarray]], rate: int, source_seconds: float
) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """The pieces (start in the source, samples) on one timeline: each at its start, or right
    after the previous one when that runs past it; at least `source_seconds` long. Returns the
    audio and each piece's (start, end) in it, seconds."""
    spans, cursor = [], 0
    for start, samples in pieces:
        begin = max(round(start * rate), cursor)
        spans.append((begin, begin + len(samples)))
        cursor = begin + len(samples)
    audio = np.zeros(max(cursor, round(source_seconds * rate)), dtype=np.float32)
    for (begin, end), (_, samples) in zip(spans, pieces, strict=True):
        audio[begin:end] = samples
    return audio, [(begin / rate, end / rate) for begin, end in spans]


def _observe(stage: str, started: float) -> None:
    metrics.CASCADE_STAGE.labels(stage).observe(time.perf_counter() - started)
