"""One live recognition stream: interim hypotheses and finals on top of the endpointer.

`Endpointer` (speechmesh.dsp.endpointing) cuts the stream into utterances with VAD. While an
utterance lasts, interim hypotheses are decoded every `interim_interval` of new audio at low
priority (none once the speaker has paused), and the words two successive hypotheses agree on
become the stable prefix.

At a pause of `endpoint_silence` the utterance is decoded at high priority, with word times
(the "probe"). When its text ends a sentence (sentence-final punctuation on a last word the model
is sure of), or is empty, it is the final result at once. When
the sentence goes on, the utterance stays open: if speech resumes, the probe is dropped and the
whole sentence is decoded at its end, with all its context, as offline recognition would; if
the pause reaches `sentence_pause`, the probe is the final. A speaker who pauses mid-sentence
("And so, my fellow Americans, ... ask not") thus gets one accurate final instead of two that
lost the words around the cut, and a finished sentence costs no more latency than before.
Results leave in order: an event or result emitted after a final waits for that final.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field, replace

import numpy as np

from speechmesh.asr.engines.base import DecodeOptions, Segment, WindowResult, Word
from speechmesh.asr.recognizer import Recognizer
from speechmesh.dsp.audio import RawFormat
from speechmesh.dsp.endpointing import (
    POST_ROLL,
    PRE_ROLL,
    Endpointer,
    EndpointSettings,
    ForceEndpoint,
    Utterance,
    VadBatcher,
)
from speechmesh.dsp.vad import SAMPLE_RATE
from speechmesh.inference.batcher import PRIORITY_LOW, QueueFullError
from speechmesh.runtime import metrics

__all__ = ["ForceEndpoint", "StreamSettings", "StreamingSession", "VadBatcher"]

#: Audio before an utterance that its final is decoded after (see Recognizer.decode_after).
CONTEXT_SECONDS = 10.0
#: Trailing silence after which no more interim hypotheses are decoded (the final is due).
INTERIM_SILENCE = 0.2
#: Probability of the last word (with its punctuation) above which a sentence end is believed.
SENTENCE_END_CONFIDENCE = 0.6
_SENTENCE_ENDS = (".", "?", "!", "…", "。", "？", "！", "؟", "।")


@dataclass(frozen=True)
class StreamSettings:
    options: DecodeOptions
    raw: RawFormat | None
    interim_results: bool = False
    single_utterance: bool = False
    voice_activity_events: bool = False
    endpoint_silence: float = 0.5
    vad_threshold: float = 0.5
    max_utterance: float = 30.0
    interim_interval: float = 0.5
    sentence_pause: float = 1.5


@dataclass
class SpeechEvent:
    kind: str  # "begin", "end" or "end_of_single_utterance"
    offset: float


@dataclass
class UtteranceResult:
    index: int
    is_final: bool
    transcript: str
    stable_transcript: str
    stability: float
    start: float
    end: float
    language: str
    language_probability: float
    words: list[Word] = field(default_factory=list)
    #: Final results of engines that tell them (SenseVoice): the emotion heard most in the
    #: utterance ("" when none), and the audio events heard, in order.
    emotion: str = ""
    events: list[str] = field(default_factory=list)


class _Utterance(Utterance):
    def __init__(self, index: int, start_sample: int):
        super().__init__(index, start_sample)
        self.sent_first = False
        self.stable_words: list[str] = []
        self.previous_words: list[str] | None = None
        self.interim_task = None
        self.interim_at_sample = start_sample
        #: The decode started at the last pause, and the speech it covers (up to which sample).
        self.probe: asyncio.Task | None = None
        self.probe_covers = -1


class StreamingSession(Endpointer):
    utterance_class = _Utterance
    history_seconds = CONTEXT_SECONDS

    def __init__(self, recognizer: Recognizer, vad: VadBatcher, settings: StreamSettings):
        super().__init__(
            vad,
            EndpointSettings(
                settings.endpoint_silence, settings.vad_threshold, settings.max_utterance
            ),
            settings.raw,
        )
        self.recognizer = recognizer
        self.settings = settings
        #: Where the last final's speech ended (stream sample), once there is one.
        self.previous_speech_end: int | None = None

    def on_begin(self, utterance: Utterance, continued: bool) -> None:
        if not continued and self.settings.voice_activity_events:
            self.emit(SpeechEvent("begin", utterance.start))

    def on_frame(self, utterance: Utterance) -> None:
        paused = self.samples - utterance.last_speech_sample >= INTERIM_SILENCE * SAMPLE_RATE
        if self.settings.interim_results and not paused:
            self._maybe_interim(utterance)

    def on_pause(self, utterance: _Utterance, silence: float) -> bool:
        if silence >= self.settings.sentence_pause:
            return True
        if utterance.probe_covers != utterance.last_speech_sample:  # none yet, or speech resumed
            utterance.probe_covers = utterance.last_speech_sample
            utterance.probe = self._decode_final(self._final_audio(utterance))
            utterance.probe.add_done_callback(lambda task: self._probed(utterance, task))
        return False

    def _probed(self, utterance: _Utterance, task: asyncio.Task) -> None:
        """A probe finished: a finished sentence (or nothing) ends the utterance now."""
        if task is not utterance.probe or utterance.probe_covers != utterance.last_speech_sample:
            return  # speech resumed after it began: the sentence goes on
        if task.cancelled() or task.exception() is not None or _ends_sentence(task.result()):
            self.end_paused(utterance)

    def on_end(
        self, utterance: Utterance, audio: np.ndarray, end_sample: int, speech_ended: bool
    ) -> None:
        if utterance.interim_task is not None:
            utterance.interim_task.cancel()
        s = self.settings
        if speech_ended and s.voice_activity_events:
            self.emit(SpeechEvent("end", end_sample / SAMPLE_RATE))
        if s.single_utterance:
            self.emit(SpeechEvent("end_of_single_utterance", end_sample / SAMPLE_RATE))
            self.done = True
        probe = utterance.probe
        if probe is not None and utterance.probe_covers == utterance.last_speech_sample:
            decoded = probe  # the pause's decode covers every word: it is the final
        else:
            decoded = self._decode_final(self._final_audio(utterance))
        self.previous_speech_end = utterance.last_speech_sample  # the next one's context
        self.emit(self.spawn(self._final(utterance, decoded, end_sample)))

    def _maybe_interim(self, utterance: _Utterance) -> None:
        due = (
            self.samples - utterance.interim_at_sample
            >= self.settings.interim_interval * SAMPLE_RATE
        )
        if not due or utterance.interim_task is not None:
            return
        utterance.interim_at_sample = self.samples
        audio = self.audio_between(
            utterance.start_sample - int(PRE_ROLL * SAMPLE_RATE), self.samples
        )
        options = DecodeOptions(**{**self.settings.options.__dict__, "word_timestamps": False})
        task = self.spawn(self._interim(utterance, audio, options, self.samples))
        utterance.interim_task = task

    async def _interim(
        self, utterance: _Utterance, audio: np.ndarray, options: DecodeOptions, end_sample: int
    ) -> None:
        try:
            result = await self.recognizer.decode(audio, options, priority=PRIORITY_LOW)
        except QueueFullError:
            return  # interim hypotheses are best effort
        finally:
            utterance.interim_task = None
        if utterance.finalized or self.done:
            return
        words = result.text.split()
        if utterance.previous_words is not None:
            agreed = _common_prefix(utterance.previous_words, words)
            if agreed > len(utterance.stable_words):
                # Confirmed words are committed: later agreement only appends to them.
                utterance.stable_words += words[len(utterance.stable_words) : agreed]
        utterance.previous_words = words
        stable = utterance.stable_words
        shown = stable + words[len(stable) :]
        if not shown:
            return
        self._first_result(utterance)
        self.emit(
            UtteranceResult(
                index=utterance.index,
                is_final=False,
                transcript=" ".join(shown),
                stable_transcript=" ".join(stable),
                stability=len(stable) / len(shown),
                start=utterance.start_sample / SAMPLE_RATE,
                end=end_sample / SAMPLE_RATE,
                language=result.language,
                language_probability=result.language_probability,
            )
        )

    def _final_audio(self, utterance: _Utterance) -> tuple[np.ndarray, np.ndarray, int, float]:
        """What a final decodes: the audio heard before the utterance since the previous one
        began (at most CONTEXT_SECONDS), the utterance (pre-roll, speech, post-roll), the stream
        sample it starts at, and where the context's speech ended (seconds into the context).

        The first utterance of a stream has no context: before it there is only silence.
        """
        begin = max(0, utterance.start_sample - int(PRE_ROLL * SAMPLE_RATE))
        previous = self.previous_speech_end
        if previous is not None:
            begin = max(begin, previous)
        begin = max(begin, self.buffered_from)
        stop = min(utterance.last_speech_sample + int(POST_ROLL * SAMPLE_RATE), self.samples)
        if previous is None:
            return np.zeros(0, np.float32), self.audio_between(begin, stop), begin, 0.0
        context_from = max(self.buffered_from, begin - int(CONTEXT_SECONDS * SAMPLE_RATE))
        speech_end = max(0, previous - context_from) / SAMPLE_RATE
        context = self.audio_between(context_from, begin)
        return context, self.audio_between(begin, stop), begin, speech_end

    def _decode_final(self, audio: tuple[np.ndarray, np.ndarray, int, float]) -> asyncio.Task:
        """Decodes an utterance as a final, at high priority, with word times when the model
        has them (the sentence check reads them); the task notes when it began and where its
        audio starts."""
        context, speech, begin, speech_end = audio
        options = self.settings.options
        if self.recognizer.engine.supports_word_timestamps:
            options = replace(options, word_timestamps=True)
        task = self.spawn(self.recognizer.decode_after(context, speech, options, speech_end))
        task.started_at = time.perf_counter()  # type: ignore[attr-defined]
        task.begin = begin  # type: ignore[attr-defined]
        return task

    async def _final(
        self, utterance: _Utterance, decoded: asyncio.Task, end_sample: int
    ) -> UtteranceResult | None:
        result: WindowResult = await decoded
        metrics.ENDPOINT_TO_FINAL.labels("asr").observe(
            time.perf_counter() - decoded.started_at  # type: ignore[attr-defined]
        )
        if not result.text:
            return None
        self._first_result(utterance)
        offset = decoded.begin / SAMPLE_RATE  # type: ignore[attr-defined]
        words = [
            Word(w.text, w.start + offset, w.end + offset, w.probability)
            for segment in result.segments
            for w in segment.words
            if self.settings.options.word_timestamps
        ]
        return UtteranceResult(
            index=utterance.index,
            is_final=True,
            transcript=result.text,
            stable_transcript=result.text,
            stability=1.0,
            start=utterance.start_sample / SAMPLE_RATE,
            end=end_sample / SAMPLE_RATE,
            language=result.language,
            language_probability=result.language_probability,
            words=words,
            emotion=_emotion(result.segments),
            events=list(
                dict.fromkeys([*result.events, *(e for s in result.segments for e in s.events)])
            ),
        )

    def _first_result(self, utterance: _Utterance) -> None:
        if not utterance.sent_first:
            utterance.sent_first = True
            metrics.TIME_TO_FIRST_RESULT.labels("asr", "StreamingRecognize").observe(
                time.perf_counter() - utterance.began_at
            )


def _emotion(segments: list[Segment]) -> str:
    """The emotion of most of the utterance's speech ("" when no segment has one)."""
    weight: dict[str, float] = {}
    for segment in segments:
        if segment.emotion:
            weight[segment.emotion] = weight.get(segment.emotion, 0.0) + segment.end - segment.start
    return max(weight, key=weight.__getitem__) if weight else ""


def _ends_sentence(result: WindowResult) -> bool:
    """Whether a decoded utterance is empty or confidently ends a sentence: sentence-final
    punctuation, on a last word the model is sure of (a fragment cut at a pause is often
    decoded as a sentence of its own, "And so am I fellow Americans.", with an unsure last word;
    then the utterance waits for `sentence_pause`)."""
    text = result.text.rstrip().rstrip("\"'”’)]»")
    if not text:
        return True
    if not text.endswith(_SENTENCE_ENDS):
        return False
    words = [w for segment in result.segments for w in segment.words]
    return not words or words[-1].probability >= SENTENCE_END_CONFIDENCE


def _common_prefix(a: list[str], b: list[str]) -> int:
    """How many leading words two hypotheses share, ignoring case and punctuation."""
    count = 0
    for x, y in zip(a, b, strict=False):
        if _word_key(x) != _word_key(y):
            break
        count += 1
    return count


def _word_key(word: str) -> str:
    return "".join(ch for ch in word.casefold() if ch.isalnum())
