"""Whisper through transformers: any Whisper checkpoint, tiny to large-v3-turbo and distil.

One call decodes a batch of windows (<= 30 s each): the encoder runs once,
its output serves language detection (one decoder step) and generation.
Segments come from Whisper's timestamp tokens; word times from the
cross-attention alignment heads (return_token_timestamps); confidences from
the decoder's token probabilities.
"""

from __future__ import annotations

import math
import pathlib

import numpy as np
import torch
from speechmesh.asr.engines.base import (
    DecodeJob,
    DecodeOptions,
    InvalidOptionError,
    Segment,
    WindowResult,
    Word,
)
from speechmesh.common.devices import parameter_bytes
from speechmesh.common.languages import primary_subtag
from speechmesh.common.model_source import is_random_checkpoint
from transformers import WhisperForConditionalGeneration, WhisperProcessor

SAMPLE_RATE = 16000
WINDOW_SECONDS = 30.0
MAX_PROMPT_CHARS = 800
_PUNCTUATION = set("\"'.。,，!！?？:：”)]}、-")  # attached to the word before


class WhisperEngine:
    family = "whisper"
    sample_rate = SAMPLE_RATE
    window_seconds = WINDOW_SECONDS

    def __init__(self, name: str, path: pathlib.Path, device: torch.device, dtype: torch.dtype):
        self.name = name
        self._device = device
        self._dtype = dtype
        self.model = WhisperForConditionalGeneration.from_pretrained(path, dtype=dtype)
        self.model.to(device).eval()
        self.processor = WhisperProcessor.from_pretrained(path)
        self.tokenizer = self.processor.tokenizer
        gen = self.model.generation_config
        self.multilingual = bool(getattr(gen, "is_multilingual", False))
        self._lang_to_id: dict[str, int] = {
            token.strip("<|>"): index
            for token, index in (getattr(gen, "lang_to_id", None) or {}).items()
        }
        self.languages = sorted(self._lang_to_id) if self.multilingual else ["en"]
        self.supports_translation = self.multilingual and "translate" in (
            getattr(gen, "task_to_id", None) or {}
        )
        self.supports_language_detection = self.multilingual and bool(self._lang_to_id)
        self.supports_word_timestamps = bool(getattr(gen, "alignment_heads", None))
        self._timestamp_begin = gen.no_timestamps_token_id + 1
        self._eos = gen.eos_token_id
        self._sot = gen.decoder_start_token_id
        self._max_target = self.model.config.max_target_positions
        self.device = str(device)
        self.dtype = str(dtype).removeprefix("torch.")
        self.memory_bytes = parameter_bytes(self.model)
        self.random_weights = is_random_checkpoint(path)

    # -- options ---------------------------------------------------------

    def options(
        self,
        *,
        language: str,
        task: str,
        word_timestamps: bool,
        prompt: str,
        beam_size: int,
        temperature: float,
    ) -> DecodeOptions:
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
        try:
            code = primary_subtag(tag)
        except ValueError as error:
            raise InvalidOptionError("language", str(error)) from None
        if code not in self.languages:
            known = ", ".join(self.languages[:12]) + (" ..." if len(self.languages) > 12 else "")
            raise InvalidOptionError(
                "language",
                f"{tag!r} is not a language model {self.name} knows ({known});"
                " ListModels lists them, or leave it empty to detect",
            )
        return code

    # -- decoding --------------------------------------------------------

    def warmup(self) -> None:
        silence = np.zeros(SAMPLE_RATE, dtype=np.float32)
        options = DecodeOptions(language=None if self.multilingual else "en")
        self.decode_batch([DecodeJob(silence, options)])

    @torch.inference_mode()
    def decode_batch(self, jobs: list[DecodeJob]) -> list[WindowResult | BaseException]:
        options = jobs[0].options
        features = self.processor.feature_extractor(
            [job.audio for job in jobs],
            sampling_rate=SAMPLE_RATE,
            return_tensors="pt",
            return_attention_mask=True,
        )
        input_features = features.input_features.to(self._device, self._dtype)
        attention_mask = features.attention_mask.to(self._device)
        languages = [job.options.language for job in jobs]
        probabilities = [1.0] * len(jobs)
        if any(lang is None for lang in languages):
            detected = self._detect_languages(input_features)
            for i, (code, prob) in enumerate(detected):
                if languages[i] is None:
                    languages[i], probabilities[i] = code, prob

        # Features, not encoder outputs: generate() re-seeks a window whose last timestamp ends
        # early (decoding the rest of it) and then slices the features of the batch.
        kwargs: dict = dict(
            input_features=input_features,
            attention_mask=attention_mask,
            return_timestamps=True,
            return_dict_in_generate=True,
            output_scores=True,
            return_token_timestamps=options.word_timestamps,
            num_beams=options.beam_size,
        )
        prompt_len = 0
        if options.prompt:
            prompt_ids = self.tokenizer.get_prompt_ids(options.prompt, return_tensors="pt")
            kwargs["prompt_ids"] = prompt_ids.to(self._device)
            prompt_len = len(prompt_ids)
        kwargs["max_new_tokens"] = max(8, self._max_target // 2 - prompt_len - 4)
        if options.temperature > 0:
            kwargs.update(do_sample=True, temperature=options.temperature)
        else:
            kwargs.update(do_sample=False)
        if self.multilingual:
            kwargs.update(language=languages, task=options.task)
        output = self.model.generate(**kwargs)

        results: list[WindowResult | BaseException] = []
        for i, job in enumerate(jobs):
            duration = len(job.audio) / SAMPLE_RATE
            segments = self._segments(output, i, duration, options)
            results.append(WindowResult(segments, languages[i] or "en", probabilities[i]))
        return results

    def _detect_languages(self, input_features: torch.Tensor) -> list[tuple[str, float]]:
        """Language and its probability per window, from the first decoder step."""
        batch = input_features.shape[0]
        if not self.supports_language_detection:
            return [("en", 1.0)] * batch
        encoder_outputs = self.model.get_encoder()(input_features)
        start = torch.full((batch, 1), self._sot, device=self._device, dtype=torch.long)
        logits = self.model(encoder_outputs=encoder_outputs, decoder_input_ids=start).logits[:, -1]
        codes = list(self._lang_to_id)
        ids = torch.tensor([self._lang_to_id[c] for c in codes], device=self._device)
        probs = logits[:, ids].float().softmax(-1)
        best = probs.argmax(-1)
        return [(codes[int(b)], float(probs[row, b])) for row, b in enumerate(best)]

    def _segments(
        self, output: dict, index: int, duration: float, options: DecodeOptions
    ) -> list[Segment]:
        segments = []
        for raw in output["segments"][index]:
            tokens = raw["tokens"].tolist()
            result = raw["result"]
            probs = self._token_probabilities(result, raw["idxs"][0], len(tokens), options)
            times = raw.get("token_timestamps")
            times = times.tolist() if times is not None else None
            start = min(max(float(raw["start"]), 0.0), duration)
            end = min(max(float(raw["end"]), start), duration)
            keep = [k for k, tok in enumerate(tokens) if tok < self._eos]
            text = self.tokenizer.decode([tokens[k] for k in keep]).strip()
            if not text:
                continue
            probability = float(np.mean([probs[k] for k in keep])) if keep else 0.0
            words = (
                self._words(tokens, keep, times, probs, start, duration)
                if options.word_timestamps and times is not None
                else []
            )
            segments.append(Segment(text, start, end, probability, words))
        return segments

    def _token_probabilities(
        self, result: dict, first: int, count: int, options: DecodeOptions
    ) -> list[float]:
        """Probability of each of a segment's tokens under the decoder."""
        if options.beam_size > 1 and "sequences_scores" in result:
            return [math.exp(float(result["sequences_scores"]))] * count
        sequence = result["sequences"]
        scores = result["scores"]
        offset = len(sequence) - len(scores)
        probs = []
        for k in range(first, first + count):
            step = k - offset
            if 0 <= step < len(scores):
                logprobs = scores[step].float().log_softmax(-1)
                probs.append(math.exp(float(logprobs[int(sequence[k])])))
            else:
                probs.append(1.0)
        return probs

    def _words(
        self,
        tokens: list[int],
        keep: list[int],
        times: list[float],
        probs: list[float],
        start: float,
        limit: float,
    ) -> list[Word]:
        """Groups text tokens into words (split at spaces, whole characters kept together)."""
        pieces: list[tuple[str, list[int]]] = []
        pending: list[int] = []
        for k in keep:
            pending.append(k)
            text = self.tokenizer.decode([tokens[j] for j in pending])
            if "\ufffd" not in text:
                pieces.append((text, pending))
                pending = []
        grouped: list[tuple[str, list[int]]] = []
        for text, idx in pieces:
            attach = (
                grouped
                and (not text.startswith(" ") or text.strip() in _PUNCTUATION)
                and not _spaceless(text)
            )
            if attach:
                grouped[-1] = (grouped[-1][0] + text, grouped[-1][1] + idx)
            elif text.strip():
                grouped.append((text, list(idx)))
        words = []
        for text, idx in grouped:
            w_start = _clamp(times[idx[0]], start, limit)
            after = idx[-1] + 1
            w_end = _clamp(times[after] if after < len(times) else limit, w_start, limit)
            probability = float(np.prod([probs[k] for k in idx]))
            words.append(Word(text.strip(), w_start, w_end, probability))
        return words


def _clamp(value: float, low: float, high: float) -> float:
    return min(max(float(value), low), high)


def _spaceless(text: str) -> bool:
    """Scripts written without spaces: every character is its own word."""
    return any(
        "\u3040" <= ch <= "\u30ff"
        or "\u4e00" <= ch <= "\u9fff"
        or "\u0e00" <= ch <= "\u0eff"
        or "\u1000" <= ch <= "\u109f"
        for ch in text
    )
