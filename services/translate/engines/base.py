"""The domain of translation: the jobs engines take and give, and their interface.

Every task is a job of one kind (text-to-text, speech-to-text, text-to-speech,
speech-to-speech). Jobs with the same batch key (task, target language, voice)
share one forward pass; the engine runs a batch on the model's worker thread.
Languages here are the engine's own codes; BCP-47 mapping happens at the
edge, in `language_code`. Splitting long inputs, segmenting audio and
protos live above the engine.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Literal, Protocol

import numpy as np

# One error for the engines of every service; engines and servicers import it from here.
from speechmesh.inference.jobs import InvalidOptionError as InvalidOptionError

Task = Literal["t2tt", "s2tt", "t2st", "s2st"]
#: Which modality each task reads and writes.
TASK_MODALITIES: dict[Task, tuple[str, str]] = {
    "t2tt": ("text", "text"),
    "s2tt": ("speech", "text"),
    "t2st": ("text", "speech"),
    "s2st": ("speech", "speech"),
}


@dataclass(frozen=True)
class Languages:
    """BCP-47 tags the engine supports, per modality and direction."""

    text_in: list[str] = field(default_factory=list)
    text_out: list[str] = field(default_factory=list)
    speech_in: list[str] = field(default_factory=list)
    speech_out: list[str] = field(default_factory=list)


@dataclass(frozen=True, eq=False)
class TranslationJob:
    task: Task
    #: Target language, engine code.
    target: str
    #: Input text (t2tt, t2st), at most `engine.max_input_tokens` tokens.
    text: str = ""
    #: Input speech (s2tt, s2st): float32 mono at `engine.input_sample_rate`,
    #: at most `engine.max_speech_seconds` long.
    audio: np.ndarray | None = None
    #: Source language, engine code; None lets the engine detect or ignore it.
    source: str | None = None
    #: Speaker for speech output (index into `engine.voices`).
    voice: int = 0

    def batch_key(self) -> Hashable:
        return (self.task, self.target, self.voice)


@dataclass
class TranslationOutput:
    #: Translated text (every task produces it; for t2st/s2st, what the audio says).
    text: str
    #: Translated speech for t2st/s2st: float32 mono at `engine.output_sample_rate`.
    audio: np.ndarray | None = None
    #: The output reached the engine's length cap before the model ended it: the text (and
    #: speech) may stop mid-sentence.
    truncated: bool = False


class TranslationEngine(Protocol):
    #: The name callers use (the id or path it was loaded from).
    name: str
    #: Engine family, e.g. "seamless_m4t_v2", "nllb", "m2m100", "marian".
    family: str
    tasks: frozenset[Task]
    languages: Languages
    #: Named voices for speech output; empty when the engine makes no speech.
    voices: list[str]
    input_sample_rate: int
    output_sample_rate: int
    max_input_tokens: int
    max_speech_seconds: float
    device: str
    dtype: str
    memory_bytes: int
    random_weights: bool

    def language_code(self, tag: str, modality: str, direction: str) -> str:
        """Maps a BCP-47 tag to the engine's code for `modality` ("text" or "speech") and
        `direction` ("in" or "out"); raises InvalidOptionError when unsupported."""
        ...

    def count_tokens(self, text: str) -> int:
        """How many input tokens `text` takes (to split long text below max_input_tokens)."""
        ...

    def run_batch(self, jobs: list[TranslationJob]) -> list[TranslationOutput | BaseException]:
        """Runs jobs that share a batch key in one forward pass; blocking (worker thread)."""
        ...

    def warmup(self) -> None:
        """One small job of each task the engine has, before health turns SERVING."""
        ...
