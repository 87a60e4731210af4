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

Decoding. Text is decoded with beam search, `num_beams` wide (the service's `beams` setting;
5 by default, as the reference `Translator` of seamless_communication; 1 is greedy and the
fastest). Each row may write up to its source length plus 200 tokens (the reference's
`soft_max_seq_len=(1, 200)`): source tokens for text input, speech-encoder frames (one per
160 ms) for speech input, within the model's positions (`max_position_embeddings`). A row that
reaches its own cap is ended there with </s> (a logits processor forces it, so a row ends
where it would alone whatever the batch's longest budget) and its output is marked
`truncated`.

Speech output. The text-to-unit model's units are vocoded row by row, each up to its first pad
unit (`_RowVocoder`): batched, transformers' vocoder runs every row over the batch's padding,
and a shorter row got a tail (and a length) that differs from the same job alone.
"""

from __future__ import annotations

import pathlib

import numpy as np
import torch
from transformers import (
    LogitsProcessor,
    LogitsProcessorList,
    SeamlessM4TProcessor,
    SeamlessM4Tv2Model,
)
from transformers.models.seamless_m4t_v2.modeling_seamless_m4t_v2 import (
    _compute_new_attention_mask,
)

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
#: Beam width of text decoding unless told otherwise (the reference translator's).
DEFAULT_BEAMS = 5
#: Output tokens a row may write: its source length (tokens, or speech-encoder frames) plus
#: this (the reference translator's soft_max_seq_len=(1, 200)), within the model's positions.
EXTRA_TOKENS = 200
#: The shortest audio the speech encoder is given; shorter input is padded with silence.
MIN_SPEECH_SECONDS = 0.1


class SeamlessEngine:
    family = "seamless_m4t_v2"
    input_sample_rate = SAMPLE_RATE
    max_speech_seconds = MAX_SPEECH_SECONDS
    #: Text input needs its source language (the tokenizer's prefix token).
    supports_language_detection = False

    def __init__(
        self,
        name: str,
        path: pathlib.Path,
        device: torch.device,
        dtype: torch.dtype,
        *,
        num_beams: int = DEFAULT_BEAMS,
    ):
        if num_beams < 1:
            raise ValueError(f"num_beams is {num_beams}; it must be 1 (greedy) or more")
        self.name = name
        self._device = device
        self._dtype = dtype
        self.num_beams = num_beams
        self.model = load_pretrained(SeamlessM4Tv2Model, path, device, dtype)
        # Each row of a batch vocoded alone, up to its first pad unit (see the module doc).
        self.model.vocoder = _RowVocoder(
            self.model.vocoder, int(self.model.config.t2u_pad_token_id)
        )
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

    def output_budget(self, source_length: int) -> int:
        """The most tokens a row with `source_length` source tokens (or speech-encoder frames)
        may write before it is ended and marked truncated."""
        # The decoder also holds the start token, the language token and the </s> forced at
        # the cap: all within max_position_embeddings.
        return max(1, min(source_length + EXTRA_TOKENS, self._max_positions - 3))

    def _generate(self, jobs: list[TranslationJob]) -> list[TranslationOutput]:
        task, target, voice = jobs[0].task, jobs[0].target, jobs[0].voice
        source, out = TASK_MODALITIES[task]
        if source == "text":
            inputs, lengths = self._encode_texts(jobs)
        else:
            inputs, lengths = self._encode_speech(jobs)
        budgets = [self.output_budget(n) for n in lengths]
        cap = _RowCaps(budgets, self.num_beams, self._eos, prefix=2)
        kwargs = dict(
            inputs,
            tgt_lang=target,
            text_max_new_tokens=max(budgets) + 1,  # and the </s> forced at a row's cap
            text_num_beams=self.num_beams,
            text_do_sample=False,
            text_logits_processor=LogitsProcessorList([cap]),
        )
        # The text of every row in one (beam) search; for speech, each row's units and audio
        # are then made alone (`_speak`), as generate() would for that job alone.
        sequences = self.model.generate(**kwargs, generate_speech=False).sequences
        texts = self._decode(sequences)
        truncated = [cap.reached(row, seq) for row, seq in enumerate(sequences)]
        if out == "text":
            return [
                TranslationOutput(text, truncated=cut)
                for text, cut in zip(texts, truncated, strict=True)
            ]
        return [
            TranslationOutput(text, self._speak(job, sequence, target, voice), truncated=cut)
            for job, text, sequence, cut in zip(jobs, texts, sequences, truncated, strict=True)
        ]

    def _speak(self, job: TranslationJob, sequence: torch.Tensor, target: str, voice: int):
        """The speech of one row: the second half of SeamlessM4Tv2Model.generate() (text
        decoder states, text-to-unit model, vocoder) for this row alone, given its text
        `sequence` (start, language, tokens, </s>, then the batch's padding). Batched,
        generate() runs the text-to-unit model over padded rows (with a shorter row's </s>
        inside its mask), and a row's units changed with the batch."""
        model, gen = self.model, self.model.generation_config
        ends = (sequence[2:] == self._eos).nonzero()
        length = 2 + (int(ends[0, 0]) + 1 if ends.numel() else sequence.shape[0] - 2)
        sequence = sequence[None, :length]
        if TASK_MODALITIES[job.task][0] == "text":
            inputs, _ = self._encode_texts([job])
            mask = inputs["attention_mask"]
            encoded = model.text_encoder(input_ids=inputs["input_ids"], attention_mask=mask)
            encoded = encoded.last_hidden_state
        else:
            inputs, _ = self._encode_speech([job])
            mask = inputs["attention_mask"]
            encoded = model.speech_encoder(
                input_features=inputs["input_features"], attention_mask=mask
            ).last_hidden_state
            frames = model._compute_sub_sample_lengths_from_attention_mask(mask)
            mask = _compute_new_attention_mask(encoded, frames.to(encoded.device))
        states = model.text_decoder(
            input_ids=sequence[:, :-1],  # less the final </s>
            encoder_hidden_states=encoded,
            encoder_attention_mask=mask,
        ).last_hidden_state
        pad = gen.pad_token_id
        t2u_mask = _compute_new_attention_mask(states, (sequence[:, :-1] != pad).int().sum(1))
        ids = sequence[:, 2:-1]  # less the start, language and </s>
        ids = ids.masked_fill(ids == gen.eos_token_id, pad)
        subwords = model._indices_to_subwords(ids)
        counts = model._count_character_length_in_subword(ids, subwords, pad_token_id=pad)
        zero = counts.new_zeros((1, 1))
        counts = torch.cat([zero, counts, zero], dim=1)
        chars = model._get_char_input_ids(ids, subwords, counts, pad_token_id=pad)
        logits, padding = model.t2u_model(
            inputs_embeds=states,
            char_input_ids=chars,
            char_count_per_id=counts,
            attention_mask=t2u_mask,
        )[:2]
        config = model.config
        units = logits.argmax(dim=-1)
        units = units.masked_fill(
            (units == config.t2u_eos_token_id) | ~padding.bool(), config.t2u_pad_token_id
        )
        units = torch.where(units == config.t2u_pad_token_id, units, units - config.vocoder_offset)
        device = units.device
        wave, size = model.vocoder(
            input_ids=units,
            speaker_id=torch.tensor([[voice]], device=device),
            lang_id=torch.tensor([[gen.vocoder_lang_code_to_id[target]]], device=device),
        )
        wave = wave.reshape(-1)[: int(size.reshape(-1)[0])].float().cpu().numpy()
        return np.ascontiguousarray(wave)

    def _encode_texts(self, jobs: list[TranslationJob]) -> tuple[dict, list[int]]:
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
        inputs = {
            "input_ids": input_ids.to(self._device),
            "attention_mask": attention_mask.to(self._device),
        }
        return inputs, [len(row) for row in rows]

    def _encode_speech(self, jobs: list[TranslationJob]) -> tuple[dict, list[int]]:
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
        return inputs, [self._encoder_frames(int(n)) for n in features.attention_mask.sum(1)]

    def _encoder_frames(self, features: int) -> int:
        """Speech-encoder output frames for `features` input frames: each adaptor layer
        subsamples as `SeamlessM4Tv2ConformerAdapterLayer` does (real model: one per 160 ms)."""
        config = self.model.config
        if not config.add_adapter:
            return features
        kernel, stride = int(config.adaptor_kernel_size), int(config.adaptor_stride)
        for _ in range(int(config.num_adapter_layers)):
            features = (features + 2 * (kernel // 2) - kernel) // stride + 1
        return max(features, 1)

    def _decode(self, sequences: torch.Tensor) -> list[str]:
        texts = self.tokenizer.batch_decode(sequences, skip_special_tokens=True)
        return [text.strip() for text in texts]


def _tags(codes: set[str]) -> list[str]:
    return sorted({to_bcp47(code) for code in codes})


def _first(codes: set[str], preferred: str) -> str:
    return preferred if preferred in codes else min(codes)


class _RowCaps(LogitsProcessor):
    """Ends each row at its own budget: once a row has written `budgets[row]` tokens, </s> is
    the only token it may write. Rows are `beams` consecutive hypotheses each; the decoder's
    first `prefix` tokens (start and language) are not counted."""

    def __init__(self, budgets: list[int], beams: int, eos: int, prefix: int):
        self.budgets = budgets
        self.beams = beams
        self.eos = eos
        self.prefix = prefix

    def __call__(self, input_ids: torch.LongTensor, scores: torch.Tensor) -> torch.Tensor:
        written = input_ids.shape[-1] - self.prefix
        rows = [i for i in range(scores.shape[0]) if written >= self.budgets[i // self.beams]]
        if rows:
            scores = scores.clone()
            scores[rows] = -float("inf")
            scores[rows, self.eos] = 0.0
        return scores

    def reached(self, row: int, sequence: torch.Tensor) -> bool:
        """Whether row `row`'s finished `sequence` ended at its cap (its </s> was forced)."""
        ends = (sequence[self.prefix :] == self.eos).nonzero()
        return not ends.numel() or int(ends[0, 0]) >= self.budgets[row]


class _RowVocoder(torch.nn.Module):
    """transformers' vocoder, run on each row alone up to its first pad unit (padding never
    reaches a row's convolutions); returns the batch's waveforms right-padded and their
    lengths, as the vocoder does."""

    def __init__(self, vocoder: torch.nn.Module, pad: int):
        super().__init__()
        self.inner = vocoder
        self.pad = pad

    def forward(self, input_ids: torch.Tensor, speaker_id: torch.Tensor, lang_id: torch.Tensor):
        waves = []
        for row in range(input_ids.shape[0]):
            units = input_ids[row]
            pads = (units == self.pad).nonzero()
            n = int(pads[0, 0]) if pads.numel() else units.shape[0]
            if n == 0:
                waves.append(units.new_zeros(0, dtype=torch.float32))
                continue
            wave, length = self.inner(
                input_ids=units[None, :n],
                speaker_id=speaker_id[row : row + 1],
                lang_id=lang_id[row : row + 1],
            )
            waves.append(wave.reshape(-1)[: int(length.reshape(-1)[0])])
        lengths = torch.tensor([len(w) for w in waves], device=input_ids.device)
        width = max(1, int(lengths.max()))
        dtype = next((w.dtype for w in waves if w.numel()), torch.float32)
        batch = torch.zeros((len(waves), width), dtype=dtype, device=input_ids.device)
        for row, wave in enumerate(waves):
            batch[row, : len(wave)] = wave
        return batch, lengths
