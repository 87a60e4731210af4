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
from dataclasses import dataclass

import numpy as np
import torch
from transformers import WhisperForConditionalGeneration, WhisperProcessor

from speechmesh.asr.engines.alignment import token_start_times
from speechmesh.asr.engines.base import (
    DecodeJob,
    DecodeOptions,
    Segment,
    WindowResult,
    past_the_end,
)
from speechmesh.asr.engines.vocabulary import WhisperVocabulary
from speechmesh.asr.engines.words import group_words
from speechmesh.inference.loading import load_pretrained, loaded

SAMPLE_RATE = 16000
WINDOW_SECONDS = 30.0


class WhisperEngine:
    family = "whisper"
    runtime = "transformers"
    workers = 1  # torch spreads one batch over every core
    sample_rate = SAMPLE_RATE
    window_seconds = WINDOW_SECONDS

    def __init__(self, name: str, path: pathlib.Path, device: torch.device, dtype: torch.dtype):
        self.name = name
        self._device = device
        self._dtype = dtype
        self.model = load_pretrained(WhisperForConditionalGeneration, path, device, dtype)
        self.processor = WhisperProcessor.from_pretrained(path)
        self.tokenizer = self.processor.tokenizer
        self.vocab = WhisperVocabulary(name, path)
        gen = self.model.generation_config
        self.multilingual = self.vocab.multilingual
        self._lang_to_id = self.vocab.lang_to_id
        self.languages = self.vocab.languages
        self.supports_translation = self.vocab.supports_translation
        self.supports_language_detection = self.vocab.supports_language_detection
        self.supports_word_timestamps = self.vocab.supports_word_timestamps
        self.supports_emotion = self.supports_audio_events = False
        self.supports_text_normalization = False
        self._no_timestamps = gen.no_timestamps_token_id
        self._alignment_heads = getattr(gen, "alignment_heads", None) or []
        self._attn_implementation = self.model.config._attn_implementation
        self._eos = gen.eos_token_id
        self._sot = gen.decoder_start_token_id
        self._max_target = self.model.config.max_target_positions
        self.device, self.dtype, self.memory_bytes, self.random_weights = loaded(
            self.model, path, device, dtype
        )

    def options(self, **kwargs) -> DecodeOptions:
        return self.vocab.options(**kwargs)

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
        encoded: list = []  # generate()'s first encoder pass, reused to time words
        hook = (
            self.model.get_encoder().register_forward_hook(
                lambda _module, _args, out: encoded.append(out) if not encoded else None
            )
            if options.word_timestamps
            else None
        )
        try:
            output = self.model.generate(**kwargs)
        finally:
            if hook is not None:
                hook.remove()

        decoded = [
            self._segments(output, i, len(job.audio) / SAMPLE_RATE, options)
            for i, job in enumerate(jobs)
        ]
        if options.word_timestamps:
            token_lists = [[t for seg in segs for t in seg.tokens] for segs in decoded]
            starts = self._align(encoded[0], attention_mask, token_lists, languages, options)
            for segs, times, job in zip(decoded, starts, jobs, strict=True):
                self._place_words(segs, times, len(job.audio) / SAMPLE_RATE)
        return [
            WindowResult([seg.segment for seg in segs], languages[i] or "en", probabilities[i])
            for i, segs in enumerate(decoded)
        ]

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
    ) -> list[_Decoded]:
        segments = []
        for raw in output["segments"][index]:
            tokens = raw["tokens"].tolist()
            probs = self._token_probabilities(raw["result"], raw["idxs"][0], len(tokens), options)
            keep = [k for k, tok in enumerate(tokens) if tok < self._eos]
            text_tokens = [tokens[k] for k in keep]
            text = self.tokenizer.decode(text_tokens).strip()
            if not text or (segments and past_the_end(float(raw["start"]), duration)):
                # generate() may seek on into the padding after the speech and make something
                # up there (a clip's first segment is kept, clamped, as OpenAI's is)
                continue
            start = min(max(float(raw["start"]), 0.0), duration)
            end = min(max(float(raw["end"]), start), duration)
            token_probs = [probs[k] for k in keep]
            segment = Segment(text, start, end, float(np.mean(token_probs)))
            segments.append(_Decoded(segment, tokens, keep, token_probs))
        return segments

    def _align(
        self,
        encoder_outputs,
        attention_mask: torch.Tensor,
        token_lists: list[list[int]],
        languages: list[str | None],
        options: DecodeOptions,
    ) -> list[np.ndarray]:
        """Start times of every decoded token of each window (plus the end of the last one).

        The sequences include Whisper's timestamp tokens, which absorb the silence around
        the words, as they did while decoding.
        """
        prefixes = [self.vocab.sot_sequence(lang, options.task) for lang in languages]
        room = self._max_target - max(map(len, prefixes)) - 1
        sequences = [p + t[:room] + [self._eos] for p, t in zip(prefixes, token_lists, strict=True)]
        ids = torch.full((len(sequences), max(map(len, sequences))), self._eos, dtype=torch.long)
        for row, sequence in enumerate(sequences):
            ids[row, : len(sequence)] = torch.tensor(sequence)
        # Attention weights need the eager kernels; generation keeps the fast ones.
        self.model.set_attn_implementation("eager")
        try:
            output = self.model(
                encoder_outputs=encoder_outputs,
                decoder_input_ids=ids.to(self._device),
                output_attentions=True,
            )
        finally:
            self.model.set_attn_implementation(self._attn_implementation)
        cross = torch.stack(output.cross_attentions)  # layers, batch, heads, tokens, positions
        positions = (attention_mask.sum(-1) // 2).tolist()
        starts = []
        for row, (prefix, tokens) in enumerate(zip(prefixes, token_lists, strict=True)):
            count = min(len(tokens), room)
            rows = slice(len(prefix), len(prefix) + count + 1)
            times = token_start_times(
                cross[:, row, :, rows],
                self._alignment_heads,
                int(positions[row]),
                self.model.config.median_filter_width,
            )
            if count < len(tokens):  # past the decoder's length: the last time holds
                times = np.pad(times, (0, len(tokens) - count), mode="edge")
            starts.append(times)
        return starts

    def _place_words(self, decoded: list[_Decoded], times: np.ndarray, limit: float) -> None:
        """Words for each segment, from the start times of the window's tokens."""
        offset = 0
        for item in decoded:
            positions = [offset + k for k in item.keep]
            starts = times[positions]
            ends = times[[min(p + 1, len(times) - 1) for p in positions]]
            text_tokens = [item.tokens[k] for k in item.keep]
            item.segment.words = group_words(
                self.tokenizer, text_tokens, starts, ends, item.probs, item.segment.start, limit
            )
            offset += len(item.tokens)

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


@dataclass
class _Decoded:
    """A decoded segment with its tokens and the probabilities of its text tokens."""

    segment: Segment
    tokens: list[int]  # every token of the segment, timestamps included
    keep: list[int]  # positions of the text tokens in `tokens`
    probs: list[float]  # probability of each text token
