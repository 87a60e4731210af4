"""Speech for whole texts on top of an engine and its batcher (no protos here).

A text is split into sentences (`split_sentences`, at most the engine's input length each);
every sentence becomes a job and all jobs of a call go to the batcher at once, so they share
forward passes with each other and with other calls (a long-running job's, at background
priority, a few at a time: speechmesh.inference.background). The sentences' audio is joined
with a short pause between them. Speed is applied after synthesis (pitch kept).

Seeds: sentence `i` of a request with seed `s` is spoken with its own seed derived from (s, i),
so a text is reproducible sentence by sentence whatever else shares its batches, and a stream
(which sends the same sentences one by one) sounds like the unary call with the same seed.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from speechmesh.dsp.tempo import change_tempo
from speechmesh.dsp.text_split import split_sentences
from speechmesh.inference import background
from speechmesh.inference.batcher import PRIORITY_HIGH, MicroBatcher
from speechmesh.tts.engines.base import SynthesisEngine, SynthesisJob, VoicePrompt

_MASK = (1 << 63) - 1
#: Texts up to this many characters are split on the event loop; longer ones on a thread.
INLINE_SPLIT_CHARACTERS = 2000

#: Told as each sentence of a text is spoken: (its index, the number of sentences, its seconds).
SentenceHook = Callable[[int, int, float], None]


@dataclass(frozen=True)
class VoiceChoice:
    """Whose voice: a cloned prompt, a preset, or neither (the model's default)."""

    language: str
    prompt: VoicePrompt | None = None
    preset: str | None = None
    #: What responses call it ("voices/x", the preset's name, "inline", or "").
    label: str = ""


@dataclass(frozen=True)
class Style:
    temperature: float | None = None
    #: Request seed, non-zero (see `new_seed`).
    seed: int = 1
    speed: float = 1.0


@dataclass
class SpokenSentence:
    text: str
    #: Where it is in the output audio, seconds.
    start: float
    end: float


@dataclass
class Speech:
    audio: np.ndarray
    sample_rate: int
    sentences: list[SpokenSentence] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return len(self.audio) / self.sample_rate


def new_seed() -> int:
    """A random non-zero int64 seed (what a request with seed 0 gets)."""
    return secrets.randbits(62) + 1


def sentence_seed(seed: int, index: int) -> int:
    """The seed of sentence `index` of a request with `seed` (splitmix64 of the pair)."""
    z = (seed + (index + 1) * 0x9E3779B97F4A7C15) & ((1 << 64) - 1)
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & ((1 << 64) - 1)
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & ((1 << 64) - 1)
    return (z ^ (z >> 31)) & _MASK


class Synthesizer:
    def __init__(
        self,
        engine: SynthesisEngine,
        batcher: MicroBatcher[SynthesisJob, np.ndarray],
        pause_s: float = 0.25,
    ):
        self.engine = engine
        self.batcher = batcher
        self.pause_s = pause_s

    def sentences(self, text: str) -> list[str]:
        return [piece.text for piece in split_sentences(text, self.engine.max_input_characters)]

    async def speak_sentence(
        self, text: str, index: int, voice: VoiceChoice, style: Style, priority: int = PRIORITY_HIGH
    ) -> np.ndarray:
        """Sentence `index` of a text, at the engine's rate and the style's speed."""
        job = SynthesisJob(
            text=text,
            language=voice.language,
            prompt=voice.prompt,
            preset=voice.preset,
            temperature=style.temperature,
            seed=sentence_seed(style.seed, index),
        )
        audio = await background.submit(self.batcher, job, priority)
        if style.speed != 1.0:
            audio = await asyncio.to_thread(
                change_tempo, audio, self.engine.sample_rate, style.speed
            )
        return audio

    async def speak(
        self,
        text: str,
        voice: VoiceChoice,
        style: Style,
        *,
        priority: int = PRIORITY_HIGH,
        on_sentence: SentenceHook | None = None,
    ) -> Speech:
        """A whole text: every sentence at once through the batcher (at `priority`), joined
        with pauses; `on_sentence` hears of each sentence as it is spoken."""
        if len(text) <= INLINE_SPLIT_CHARACTERS:
            sentences = self.sentences(text)
        else:
            sentences = await asyncio.to_thread(self.sentences, text)
        if not sentences:
            raise ValueError("the text has nothing to speak")

        async def speak(index: int, sentence: str) -> np.ndarray:
            audio = await self.speak_sentence(sentence, index, voice, style, priority)
            if on_sentence is not None:
                on_sentence(index, len(sentences), len(audio) / self.engine.sample_rate)
            return audio

        tasks = [asyncio.ensure_future(speak(i, s)) for i, s in enumerate(sentences)]
        try:
            pieces = list(await asyncio.gather(*tasks))
        finally:
            for task in tasks:
                task.cancel()
        rate = self.engine.sample_rate
        pause = np.zeros(int(self.pause_s * rate), np.float32)
        parts: list[np.ndarray] = []
        spoken: list[SpokenSentence] = []
        at = 0
        for i, (sentence, audio) in enumerate(zip(sentences, pieces, strict=True)):
            if i:
                parts.append(pause)
                at += len(pause)
            spoken.append(SpokenSentence(sentence, at / rate, (at + len(audio)) / rate))
            parts.append(np.asarray(audio, np.float32))
            at += len(audio)
        return Speech(np.concatenate(parts), rate, spoken)
