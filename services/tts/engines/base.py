"""The domain of speech synthesis: the jobs engines take and give, and their interface.

A job is one sentence of text to speak in one voice. Jobs with the same batch key share one
forward pass; the engine runs a batch on the model's worker thread. Splitting text into
sentences, resampling, encoding and protos live above the engine. Languages here are BCP-47.

A cloned voice is a reference recording with its transcript; `prepare_voice` turns it into a
`VoicePrompt` once (for CSM: the codec tokens of the recording), which the voice store keeps
and every later job reuses.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

# One error for the engines of every service; engines and servicers import it from here.
from speechmesh.inference.jobs import InvalidOptionError as InvalidOptionError


@dataclass(frozen=True)
class PresetVoice:
    name: str
    display_name: str = ""
    languages: tuple[str, ...] = ()


@dataclass(frozen=True, eq=False)
class VoicePrompt:
    """A reference voice prepared for one engine family; stored with a voice, reused by jobs."""

    #: Engine family it was prepared for (a voice of another family is refused).
    engine: str
    #: The exact words of the reference recording.
    transcript: str
    #: BCP-47 language of the recording.
    language: str
    #: Engine-specific precomputed arrays (CSM: "codes", the Mimi codec tokens, and "audio",
    #: the normalised recording at `engine.sample_rate`). Plain arrays so the store can save
    #: them as .npz without pickling.
    arrays: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass(frozen=True, eq=False)
class SynthesisJob:
    #: One sentence (or a short run of text), at most `engine.max_input_characters`.
    text: str
    #: BCP-47 language to speak.
    language: str
    #: A cloned voice, or None.
    prompt: VoicePrompt | None = None
    #: A preset voice name (`engine.preset_voices`), or None: the default voice.
    preset: str | None = None
    #: Sampling temperature; 0 is greedy. None: `engine.default_temperature`.
    temperature: float | None = None
    #: Seed of this job's own random generator: same seed, text and voice, same audio.
    seed: int = 0
    #: Text spoken before this one with the same voice, to carry prosody across sentences
    #: (engines may ignore it).
    context_text: str = ""


def job_temperature(job: SynthesisJob, default: float) -> float:
    """The job's sampling temperature; `default` (the engine's) when it sets none."""
    return default if job.temperature is None else float(job.temperature)


def check_job_limits(job: SynthesisJob, max_characters: int, default_temperature: float) -> None:
    """What every engine refuses alike: text longer than `max_characters`, a temperature outside
    0 to 2."""
    if len(job.text) > max_characters:
        raise InvalidOptionError(
            "text", f"is {len(job.text)} characters; at most {max_characters} per job"
        )
    temperature = job_temperature(job, default_temperature)
    if not 0 <= temperature <= 2:
        raise InvalidOptionError("temperature", f"{temperature} is outside 0.0 to 2.0")


class SynthesisEngine(Protocol):
    #: The name callers use (the id or path it was loaded from).
    name: str
    #: Engine family: "csm", "vits".
    family: str
    supports_cloning: bool
    #: BCP-47 tags the engine can speak.
    languages: list[str]
    preset_voices: list[PresetVoice]
    #: Native output rate, Hz.
    sample_rate: int
    default_temperature: float
    max_input_characters: int
    device: str
    dtype: str
    memory_bytes: int
    random_weights: bool

    def batch_key(self, job: SynthesisJob) -> Hashable:
        """Jobs with equal keys may share one forward pass in `run_batch`."""
        ...

    def prepare_voice(self, audio: np.ndarray, transcript: str, language: str) -> VoicePrompt:
        """Blocking: prepares a reference recording (float32 mono at `sample_rate`, already
        validated and normalised) for reuse; raises InvalidOptionError if the engine cannot
        clone."""
        ...

    def run_batch(self, jobs: list[SynthesisJob]) -> list[np.ndarray | BaseException]:
        """Speaks jobs that share a batch key in one forward pass; blocking (worker thread).
        Each result is float32 mono at `sample_rate`, or the exception for that job."""
        ...

    def warmup(self) -> None:
        """One short job (and one cloned job if it can clone), before health turns SERVING."""
        ...
