"""What every Whisper engine knows of its checkpoint: special tokens, languages, tasks, and the
validation of request options against them."""

from __future__ import annotations

import pathlib

from transformers import GenerationConfig, WhisperTokenizerFast

from speechmesh.asr.engines.base import DecodeOptions, InvalidOptionError
from speechmesh.inference.jobs import option_language

MAX_PROMPT_CHARS = 800
TIME_PRECISION = 0.02  # seconds per timestamp token


class WhisperVocabulary:
    def __init__(self, name: str, path: pathlib.Path):
        self.name = name
        self.tokenizer = WhisperTokenizerFast.from_pretrained(path)
        gen = GenerationConfig.from_pretrained(path)
        self.generation = gen
        self.multilingual = bool(getattr(gen, "is_multilingual", False))
        self.lang_to_id: dict[str, int] = {
            token.strip("<|>"): index
            for token, index in (getattr(gen, "lang_to_id", None) or {}).items()
        }
        self.task_to_id: dict[str, int] = dict(getattr(gen, "task_to_id", None) or {})
        self.languages = sorted(self.lang_to_id) if self.multilingual else ["en"]
        self.supports_translation = self.multilingual and "translate" in self.task_to_id
        self.supports_language_detection = self.multilingual and bool(self.lang_to_id)
        self.alignment_heads = getattr(gen, "alignment_heads", None) or []
        self.supports_word_timestamps = bool(self.alignment_heads)
        self.sot = gen.decoder_start_token_id
        self.eot = gen.eos_token_id
        self.no_timestamps = gen.no_timestamps_token_id
        self.timestamp_begin = self.no_timestamps + 1
        self.start_of_prev = self.tokenizer.convert_tokens_to_ids("<|startofprev|>")

    def options(
        self,
        *,
        language: str,
        task: str,
        word_timestamps: bool,
        prompt: str,
        beam_size: int,
        temperature: float,
        text_normalization: bool = True,
    ) -> DecodeOptions:
        """Validates request options (BCP-47 language) and maps them to Whisper's. Whisper always
        writes the written form, so `text_normalization` is ignored."""
        code = self._language(language) if language else None
        if code is None and not self.multilingual:
            code = "en"
        if task == "translate" and not self.supports_translation:
            raise InvalidOptionError(
                "task",
                f"model {self.name} cannot translate (it is English-only); use a"
                " multilingual Whisper model or RECOGNITION_TASK_TRANSCRIBE",
            )
        if word_timestamps and not self.supports_word_timestamps:
            raise InvalidOptionError(
                "word_timestamps",
                f"model {self.name} has no alignment heads in its generation"
                " config, so it cannot give word times",
            )
        if len(prompt) > MAX_PROMPT_CHARS:
            raise InvalidOptionError(
                "prompt", f"is {len(prompt)} characters; at most {MAX_PROMPT_CHARS}"
            )
        return DecodeOptions(code, task, word_timestamps, prompt, beam_size, temperature)

    def _language(self, tag: str) -> str:
        code = option_language(tag, "language")
        if code not in self.languages:
            known = ", ".join(self.languages[:12]) + (" ..." if len(self.languages) > 12 else "")
            raise InvalidOptionError(
                "language",
                f"{tag!r} is not a language model {self.name} knows ({known});"
                " ListModels lists them, or leave it empty to detect",
            )
        return code

    def sot_sequence(self, language: str | None, task: str) -> list[int]:
        """The decoder prompt of timestamp mode (no <|notimestamps|>)."""
        if not self.multilingual:
            return [self.sot]
        return [self.sot, self.lang_to_id[language or "en"], self.task_to_id[task]]

    def prompt_ids(self, prompt: str, room: int) -> list[int]:
        """<|startofprev|> and the prompt's last `room` - 1 tokens; nothing without a prompt."""
        if not prompt.strip():
            return []
        ids = self.tokenizer.encode(" " + prompt.strip(), add_special_tokens=False)
        return [self.start_of_prev, *ids[-(room - 1) :]]
