"""SeamlessM4T v2 through transformers: text and speech in, text and speech out.

One `SeamlessM4Tv2Model` serves the four tasks (its generate() picks the text or speech
encoder from the inputs and adds the text-to-unit model and vocoder when asked for speech), so
the weights are loaded once. A batch is one generate() call: transformers takes one target
language and one speaker per call, which is why they are part of the batch key. Source
languages may differ within a batch: each text gets its own `__xxx__` prefix token.

Languages come from the checkpoint: text languages are the keys of the generation config's
`text_decoder_lang_to_code_id` that the tokenizer has a token for; speech output languages are
those also in `t2u_lang_code_to_id` and `vocoder_lang_code_to_id`. The speech encoder takes any
language without being told which (a speech source language is only reported, never used), so
speech input languages are the model card's list. Tags are BCP-47 on the wire and Seamless
codes here (speechmesh.translate.languages).
"""

from __future__ import annotations

import math
import pathlib

import numpy as np
import torch
from transformers import SeamlessM4TProcessor, SeamlessM4Tv2Model

from speechmesh.inference.jobs import right_padded, run_jobs, run_one
from speechmesh.inference.loading import load_pretrained, loaded
from speechmesh.translate.engines.base import (
    TASK_MODALITIES,
    InvalidOptionError,
    Languages,
    Task,
    TranslationJob,
    TranslationOutput,
)
from speechmesh.translate.languages import BY_CODE, LANGUAGES, VARIANTS, to_bcp47, to_seamless

SAMPLE_RATE = 16000
MAX_SPEECH_SECONDS = 30.0
#: Seamless is trained on sentences; longer text is split above the engine.
MAX_INPUT_TOKENS = 512
#: Output length allowed for text input: this many tokens per input token, plus a constant.
TOKENS_PER_TOKEN = 2.0
#: And for speech input: this many tokens per second of audio (fast speech in a language of
#: short tokens stays below it), plus the same constant.
TOKENS_PER_SECOND = 10.0
EXTRA_TOKENS = 16
#: The shortest audio the speech encoder is given; shorter input is padded with silence.
MIN_SPEECH_SECONDS = 0.1


class SeamlessEngine:
    family = "seamless_m4t_v2"
    input_sample_rate = SAMPLE_RATE
    max_speech_seconds = MAX_SPEECH_SECONDS
    #: Text input needs its source language (the tokenizer's prefix token).
    supports_language_detection = False

    def __init__(self, name: str, path: pathlib.Path, device: torch.device, dtype: torch.dtype):
        self.name = name
        self._device = device
        self._dtype = dtype
        self.model = load_pretrained(SeamlessM4Tv2Model, path, device, dtype)
        self.processor = SeamlessM4TProcessor.from_pretrained(path)
        self.tokenizer = self.processor.tokenizer
        self.feature_extractor = self.processor.feature_extractor
        config, gen = self.model.config, self.model.generation_config

        text_ids = getattr(gen, "text_decoder_lang_to_code_id", None) or {}
        if not text_ids:
            raise ValueError(
                f"model {name} has no text_decoder_lang_to_code_id in its generation config"
                " (generation_config.json); a SeamlessM4T v2 checkpoint needs its language maps"
            )
        vocab = self.tokenizer.get_vocab()
        self._lang_token_ids = {
            code: vocab[f"__{code}__"]
            for code in text_ids
            if code in BY_CODE and f"__{code}__" in vocab
        }
        text = set(self._lang_token_ids)
        speech_out = (
            text
            & set(getattr(gen, "t2u_lang_code_to_id", None) or {})
            & set(getattr(gen, "vocoder_lang_code_to_id", None) or {})
        )
        speech_in = {lang.code for lang in LANGUAGES if lang.speech_in}
        self._codes: dict[tuple[str, str], set[str]] = {
            ("text", "in"): text,
            ("text", "out"): text,
            ("speech", "in"): speech_in,
            ("speech", "out"): speech_out,
        }
        self.languages = Languages(
            text_in=_tags(text),
            text_out=_tags(text),
            speech_in=_tags(speech_in),
            speech_out=_tags(speech_out),
        )
        self.tasks: frozenset[Task] = frozenset(
            task for task, (_, out) in TASK_MODALITIES.items() if out == "text" or speech_out
        )
        self.voices = (
            [f"speaker-{i}" for i in range(config.vocoder_num_spkrs)] if speech_out else []
        )
        self.output_sample_rate = int(config.sampling_rate)
        # The length the model was built for (its sinusoidal positions would stretch further).
        self._max_positions = int(config.max_position_embeddings)
        self.max_input_tokens = min(
            int(min(self.tokenizer.model_max_length, 1 << 30)),
            self._max_positions,
            MAX_INPUT_TOKENS,
        )
        self._eos = self.tokenizer.eos_token_id
        self._pad = self.tokenizer.pad_token_id
        self.device, self.dtype, self.memory_bytes, self.random_weights = loaded(
            self.model, path, device, dtype
        )

    # -- options ---------------------------------------------------------

    def language_code(self, tag: str, modality: str, direction: str) -> str:
        """Seamless code for a BCP-47 tag, for "text"/"speech" and "in"/"out"."""
        if (modality, direction) not in self._codes:
            raise ValueError(f"unknown modality/direction {modality!r}/{direction!r}")
        option = "source_language" if direction == "in" else "target_language"
        try:
            code = to_seamless(tag)
        except ValueError as error:
            raise InvalidOptionError(option, str(error)) from None
        supported = self._codes[(modality, direction)]
        for candidate in (code, *VARIANTS.get(code, ())):
            if candidate in supported:
                return candidate
        role = "input" if direction == "in" else "output"
        hint = ""
        if (modality, direction) == ("speech", "out") and code in self._codes[("text", "out")]:
            hint = " (it can translate into it as text, not speak it)"
        raise InvalidOptionError(
            option,
            f"{tag!r} is not a {modality} {role} language of model {self.name}{hint};"
            f" ListLanguages lists the {len(supported)} it supports",
        )

    def count_tokens(self, text: str) -> int:
        """Input tokens of `text`, with the language token and </s> around it."""
        # Without the tokenizer's template, which src_lang changes: safe from any thread.
        return len(self.tokenizer(text, add_special_tokens=False).input_ids) + 2

    # -- translation -----------------------------------------------------

    def warmup(self) -> None:
        text_lang = _first(self._codes[("text", "in")], "eng")
        silence = np.zeros(SAMPLE_RATE // 2, dtype=np.float32)
        for task in sorted(self.tasks):
            source, out = TASK_MODALITIES[task]
            target = _first(self._codes[(out, "out")], "eng")
            if source == "text":
                job = TranslationJob(task, target, text="Hello.", source=text_lang)
            else:
                job = TranslationJob(task, target, audio=silence)
            run_one(self.run_batch, job)

    @torch.inference_mode()
    def run_batch(self, jobs: list[TranslationJob]) -> list[TranslationOutput | BaseException]:
        return run_jobs(
            jobs, lambda job: self._check(job, jobs[0]), lambda batch, _: self._generate(batch)
        )

    def _check(self, job: TranslationJob, first: TranslationJob) -> None:
        if job.batch_key() != first.batch_key():
            raise ValueError(
                f"job {job.batch_key()} does not share the batch key {first.batch_key()}"
            )
        if job.task not in self.tasks:
            raise InvalidOptionError("task", f"model {self.name} cannot do {job.task}")
        source, out = TASK_MODALITIES[job.task]
        if job.target not in self._codes[(out, "out")]:
            raise InvalidOptionError(
                "target_language", f"{job.target!r} is not a {out} output language here"
            )
        if out == "speech" and not 0 <= job.voice < len(self.voices):
            raise InvalidOptionError(
                "voice", f"voice {job.voice} out of range (model has {len(self.voices)})"
            )
        if source == "text":
            if job.source is None:
                raise InvalidOptionError(
                    "source_language",
                    f"model {self.name} needs the language of the text (it cannot detect it)",
                )
            if job.source not in self._codes[("text", "in")]:
                raise InvalidOptionError(
                    "source_language", f"{job.source!r} is not a text input language here"
                )
        else:
            if job.audio is None or np.ndim(job.audio) != 1 or len(job.audio) == 0:
                raise InvalidOptionError("audio", "speech input must be non-empty mono audio")
            seconds = len(job.audio) / SAMPLE_RATE
            if seconds > self.max_speech_seconds + 0.01:
                raise InvalidOptionError(
                    "audio",
                    f"is {seconds:.1f} s long; at most {self.max_speech_seconds:.0f} s per job",
                )

    def _generate(self, jobs: list[TranslationJob]) -> list[TranslationOutput]:
        task, target, voice = jobs[0].task, jobs[0].target, jobs[0].voice
        source, out = TASK_MODALITIES[task]
        if source == "text":
            inputs, max_new = self._encode_texts(jobs)
        else:
            inputs, max_new = self._encode_speech(jobs)
        max_new = min(max_new, self._max_positions - 2)  # after </s> and the language token
        kwargs = dict(inputs, tgt_lang=target, text_max_new_tokens=max_new)
        if out == "text":
            output = self.model.generate(**kwargs, generate_speech=False)
            return [TranslationOutput(text) for text in self._decode(output.sequences)]
        output = self.model.generate(
            **kwargs, generate_speech=True, speaker_id=voice, return_intermediate_token_ids=True
        )
        texts = self._decode(output.sequences)
        waveforms = output.waveform.float().cpu().numpy()
        lengths = output.waveform_lengths.reshape(-1).tolist()  # 0-d for a batch of one
        return [
            TranslationOutput(text, np.ascontiguousarray(wave[: min(int(n), wave.shape[-1])]))
            for text, wave, n in zip(texts, waveforms, lengths, strict=True)
        ]

    def _encode_texts(self, jobs: list[TranslationJob]) -> tuple[dict, int]:
        # [__src__] tokens </s>, as the tokenizer's source template, built here so that each job
        # has its own language and the shared tokenizer's state is never changed.
        pieces = self.tokenizer([job.text for job in jobs], add_special_tokens=False).input_ids
        rows = []
        for job, ids in zip(jobs, pieces, strict=True):
            if len(ids) + 2 > self.max_input_tokens:
                raise InvalidOptionError(
                    "text",
                    f"is {len(ids) + 2} tokens; at most {self.max_input_tokens} per job",
                )
            rows.append([self._lang_token_ids[job.source], *ids, self._eos])
        input_ids, attention_mask = right_padded(rows, self._pad)
        width = input_ids.shape[1]
        inputs = {
            "input_ids": input_ids.to(self._device),
            "attention_mask": attention_mask.to(self._device),
        }
        return inputs, math.ceil(TOKENS_PER_TOKEN * width) + EXTRA_TOKENS

    def _encode_speech(self, jobs: list[TranslationJob]) -> tuple[dict, int]:
        shortest = int(MIN_SPEECH_SECONDS * SAMPLE_RATE)
        audio = [np.asarray(job.audio, dtype=np.float32) for job in jobs]
        audio = [np.pad(a, (0, shortest - len(a))) if len(a) < shortest else a for a in audio]
        features = self.feature_extractor(
            audio,
            sampling_rate=SAMPLE_RATE,
            return_tensors="pt",
            return_attention_mask=True,
            padding=True,
        )
        inputs = {
            "input_features": features.input_features.to(self._device, self._dtype),
            "attention_mask": features.attention_mask.to(self._device),
        }
        seconds = max(len(a) for a in audio) / SAMPLE_RATE
        return inputs, math.ceil(TOKENS_PER_SECOND * seconds) + EXTRA_TOKENS

    def _decode(self, sequences: torch.Tensor) -> list[str]:
        texts = self.tokenizer.batch_decode(sequences, skip_special_tokens=True)
        return [text.strip() for text in texts]


def _tags(codes: set[str]) -> list[str]:
    return sorted({to_bcp47(code) for code in codes})


def _first(codes: set[str], preferred: str) -> str:
    return preferred if preferred in codes else min(codes)
