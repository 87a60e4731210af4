"""Results of speech recognition: transcripts, streaming results and voice activity events.

Import them from speechmesh.client (or speechmesh.client.types).
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from typing import Any

from google.protobuf.message import Message

from speechmesh.client._common import seconds


@dataclasses.dataclass
class Word:
    word: str
    start: float
    end: float
    confidence: float
    proto: Message | None = dataclasses.field(default=None, repr=False, compare=False)

    @classmethod
    def from_proto(cls, word) -> Word:
        return cls(
            word.word, seconds(word.start_offset), seconds(word.end_offset), word.confidence, word
        )

    def to_dict(self) -> dict:
        return {
            "word": self.word,
            "start": round(self.start, 3),
            "end": round(self.end, 3),
            "confidence": round(self.confidence, 4),
        }


@dataclasses.dataclass
class Segment:
    """A piece of recognized speech with its times (from the start of the audio)."""

    text: str
    start: float
    end: float
    confidence: float = 0.0
    words: list[Word] = dataclasses.field(default_factory=list)
    proto: Message | None = dataclasses.field(default=None, repr=False, compare=False)

    @classmethod
    def from_proto(cls, segment) -> Segment:
        return cls(
            segment.text,
            seconds(segment.start_offset),
            seconds(segment.end_offset),
            segment.confidence,
            [Word.from_proto(w) for w in segment.words],
            segment,
        )

    def shifted(self, offset: float) -> Segment:
        """The same segment `offset` seconds later (for pieces of a longer recording)."""
        return dataclasses.replace(
            self,
            start=self.start + offset,
            end=self.end + offset,
            words=[
                dataclasses.replace(w, start=w.start + offset, end=w.end + offset)
                for w in self.words
            ],
        )

    def to_dict(self) -> dict:
        found: dict[str, Any] = {
            "start": round(self.start, 3),
            "end": round(self.end, 3),
            "text": self.text,
            "confidence": round(self.confidence, 4),
        }
        if self.words:
            found["words"] = [w.to_dict() for w in self.words]
        return found


@dataclasses.dataclass
class Transcript:
    """The transcript of a whole recording (Recognize)."""

    text: str
    segments: list[Segment]
    language: str
    language_probability: float
    duration: float
    model: str
    request_id: str = ""
    #: The RecognizeResponse; a list of them when the recording was sent in pieces.
    proto: Any = dataclasses.field(default=None, repr=False, compare=False)

    @property
    def words(self) -> list[Word]:
        return [word for segment in self.segments for word in segment.words]

    @classmethod
    def from_proto(cls, response) -> Transcript:
        return cls(
            response.transcript,
            [Segment.from_proto(s) for s in response.segments],
            response.language_code,
            response.language_probability,
            seconds(response.audio_duration),
            response.model,
            response.request_id,
            response,
        )

    @classmethod
    def joined(
        cls, cuts: list[tuple[float, float]], pieces: list[Transcript], duration: float
    ) -> Transcript:
        """The transcripts of consecutive pieces of one recording (`cuts`: their start and
        end seconds) as one transcript, times from the start of the recording. The language
        is the one spoken longest; `proto` is the list of the pieces' responses."""
        segments = [
            segment.shifted(start)
            for (start, _end), piece in zip(cuts, pieces, strict=True)
            for segment in piece.segments
        ]
        weight: Counter[str] = Counter()
        probability: dict[str, list[float]] = {}
        for (start, end), piece in zip(cuts, pieces, strict=True):
            if piece.language:
                weight[piece.language] += end - start
                probability.setdefault(piece.language, []).append(piece.language_probability)
        language = weight.most_common(1)[0][0] if weight else ""
        probs = probability.get(language, [0.0])
        return cls(
            " ".join(s.text for s in segments if s.text),
            segments,
            language,
            sum(probs) / len(probs),
            duration,
            pieces[0].model if pieces else "",
            pieces[0].request_id if pieces else "",
            [p.proto for p in pieces],
        )

    def to_dict(self) -> dict:
        return {
            "text": self.text,
            "language": self.language,
            "language_probability": round(self.language_probability, 4),
            "duration": round(self.duration, 3),
            "model": self.model,
            "segments": [s.to_dict() for s in self.segments],
        }


@dataclasses.dataclass
class StreamingResult:
    """An interim hypothesis or the final result of one utterance of a recognition stream."""

    utterance_index: int
    is_final: bool
    text: str
    stable_text: str
    stability: float
    start: float
    end: float
    words: list[Word]
    language: str
    language_probability: float
    request_id: str = ""
    proto: Message | None = dataclasses.field(default=None, repr=False, compare=False)

    @classmethod
    def from_proto(cls, response) -> StreamingResult:
        r = response.result
        return cls(
            r.utterance_index,
            r.is_final,
            r.transcript,
            r.stable_transcript,
            r.stability,
            seconds(r.start_offset),
            seconds(r.end_offset),
            [Word.from_proto(w) for w in r.words],
            r.language_code,
            r.language_probability,
            response.request_id,
            response,
        )

    def to_segment(self) -> Segment:
        return Segment(self.text, self.start, self.end, self.stability, self.words, self.proto)


@dataclasses.dataclass
class SpeechEvent:
    """A voice activity event of a recognition stream: "speech_begin", "speech_end" or
    "end_of_single_utterance", at `offset` seconds into the stream."""

    type: str
    offset: float
    request_id: str = ""
    proto: Message | None = dataclasses.field(default=None, repr=False, compare=False)

    @classmethod
    def from_proto(cls, response) -> SpeechEvent:
        event = response.speech_event
        name = type(event).Type.Name(event.type).removeprefix("TYPE_").lower()
        return cls(name, seconds(event.offset), response.request_id, response)


def recognition_event(response) -> StreamingResult | SpeechEvent:
    """A StreamingRecognizeResponse as what it carries: a result or a voice activity event."""
    if response.HasField("speech_event"):
        return SpeechEvent.from_proto(response)
    return StreamingResult.from_proto(response)


# -- realtime transcription (OpenAI's Realtime events over WebSocket: client.realtime) ----------


@dataclasses.dataclass
class RealtimeSpeechEvent:
    """Speech began or stopped in a realtime session (`input_audio_buffer.speech_started` /
    `speech_stopped`): `type` "speech_started" or "speech_stopped", at `offset` seconds into
    the session's audio; `item_id` names the turn."""

    type: str
    offset: float
    item_id: str
    raw: dict = dataclasses.field(default_factory=dict, repr=False, compare=False)


@dataclasses.dataclass
class RealtimeDelta:
    """New words of the turn in progress (`...input_audio_transcription.delta`): `delta` is
    what to append to what the turn's earlier deltas said. `text` is the whole interim
    hypothesis now (its last words may still change), `stable_text` the words agreed so far."""

    item_id: str
    delta: str
    text: str
    stable_text: str
    raw: dict = dataclasses.field(default_factory=dict, repr=False, compare=False)


@dataclasses.dataclass
class RealtimeTranscript:
    """The final transcript of one turn (`...input_audio_transcription.completed`), with the
    language heard, the turn's times and its words (seconds into the session's audio)."""

    item_id: str
    text: str
    language: str
    language_probability: float
    start: float
    end: float
    words: list[Word]
    raw: dict = dataclasses.field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_event(cls, event: dict) -> RealtimeTranscript:
        extra = event.get("speechmesh") or {}
        words = [
            Word(
                w.get("word", ""),
                w.get("start_ms", 0) / 1000,
                w.get("end_ms", 0) / 1000,
                w.get("confidence", 0.0),
            )
            for w in extra.get("words") or []
        ]
        return cls(
            event.get("item_id", ""),
            event.get("transcript", ""),
            extra.get("language", ""),
            extra.get("language_probability", 0.0),
            extra.get("start_ms", 0) / 1000,
            extra.get("end_ms", 0) / 1000,
            words,
            event,
        )

    def to_segment(self) -> Segment:
        return Segment(self.text, self.start, self.end, 1.0, self.words)
