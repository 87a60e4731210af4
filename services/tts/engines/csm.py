"""Sesame CSM through transformers: speech from text, in a voice cloned from a short recording.

CSM is a Llama-style backbone over interleaved text tokens and audio frames, and a small depth
decoder: for every 80 ms frame the backbone picks the frame's first Mimi codebook and the depth
decoder the other 31 (3 in the tiny checkpoint); the Mimi codec turns frames into 24 kHz audio.
A frame whose codes are all 0 ends the audio.

Prompt. A job's prompt is csm-1b's chat template (`<|begin_of_text|>[0]text<|end_of_text|>`):
with a cloned voice, the reference transcript and its audio frames first (`<|AUDIO|>` once per
frame, then `<|audio_eos|>`, the all-zero frame), both as speaker 0, then the sentence. The
embeddings are built here from the codes that `prepare_voice` stored (what transformers'
`_merge_input_ids_with_input_values` does, less the Mimi encoding of the reference on every
call), and generate() gets `inputs_embeds`. `context_text` is not used: without the audio of the
earlier sentence CSM has nothing to carry over.

User text never becomes a control token. csm-1b's tokenizer matches its added tokens (`<|AUDIO|>`,
`<|audio_eos|>` and Llama 3's other reserved tokens, most of them not among
`all_special_tokens`) anywhere in a string, so a sentence or transcript spelling `<|AUDIO|>` would
insert an audio frame into the prompt. The template is rendered with placeholders for the texts;
its own control tokens are taken as tokens, and every stretch of plain text (the template's and
the user's) goes through the tokenizer's normalizer, pre-tokenizer and BPE model alone, which
cannot produce an added token: ordinary text gets exactly the ids the tokenizer gives it.

A row whose first frame is the end frame is no audio: it is generated again once with another
seed (`retry_seed`); if that ends at once too, the job fails with INVALID_ARGUMENT on its text
(greedy rows, temperature 0, are not retried: they would end the same way).

Batching. Every job in a batch shares one generate() call (the batch key is constant): prompts
of different lengths, voices and temperatures are left-padded into one `inputs_embeds`. Each row
ends at its own end-of-audio frame, or at its own length cap (`max_frames`, in proportion to
its text), where the sampler writes the end frame for it; the call ends when every row has.
The codec decodes each row alone.

Sampling and seeds. Both decoders run greedy (`do_sample=False`); the sampling is done by a
logits processor (`_Sampler`) that divides each row's logits by that row's temperature, keeps
the checkpoint's top-k, and adds Gumbel noise drawn from the row's own `torch.Generator`, seeded
with the job's seed: the argmax of logits plus Gumbel noise is a sample of the softmax. The same
processor serves the depth decoder (its generate() is wrapped to receive it), so every random
draw of a job comes from its own generator, in an order that depends on nothing else in the
batch. Same seed, text and voice: same audio, alone or batched with anything. Temperature 0 is
greedy. Rows of one batch agree with the same job run alone up to floating-point differences
of padded attention (see `run_batch`): identical on CPU in our tests.

Precision. The backbone and depth decoder run in the dtype asked for; the codec stays in
float32 (it is small, and it is what reference audio and output pass through).
"""

from __future__ import annotations

import functools
import math
import pathlib
import re
import threading
import uuid
from collections.abc import Hashable

import numpy as np
import torch
from transformers import AutoProcessor, CsmForConditionalGeneration, LogitsProcessorList
from transformers.generation.logits_process import LogitsProcessor

from speechmesh.inference.jobs import InvalidOptionError, option_language, run_jobs, run_one
from speechmesh.inference.loading import load_pretrained, loaded
from speechmesh.tts.engines.base import (
    PresetVoice,
    SynthesisJob,
    VoicePrompt,
    check_job_limits,
    job_temperature,
)

FAMILY = "csm"
#: The speaker id of every turn (the prompt's and the sentence's): one voice per job.
SPEAKER = "0"
#: Longest sentence a job may carry; longer text is split into sentences above the engine.
MAX_INPUT_CHARACTERS = 400
#: Length cap of a sentence's audio: this many seconds per character (8 characters a second,
#: slow speech) plus a constant. csm-1b stops at its end frame well before; random weights
#: never do, so the cap is what ends them.
SECONDS_PER_CHARACTER = 0.125
EXTRA_SECONDS = 1.5
#: Longest reference recording, in seconds (the service accepts 1 to 30 s).
MAX_REFERENCE_SECONDS = 60.0


def retry_seed(seed: int) -> int:
    """The seed of the second try of a job whose first try ended before any audio."""
    z = (seed + 0x9E3779B97F4A7C15) & 0xFFFF_FFFF_FFFF_FFFF
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFF_FFFF_FFFF_FFFF
    return z ^ (z >> 31)


class _Sampler(LogitsProcessor):
    """Per-row temperature, top-k and Gumbel-max sampling for the backbone and depth decoder.

    One instance per decoder, sharing a `_BatchState` (one batch at a time: the engine's lock).
    Rows past their length cap are forced to the end-of-audio code in both decoders. Codes the
    codec cannot decode are never picked.
    """

    def __init__(self, state: _BatchState, top_k: int | None, backbone: bool):
        self.state = state
        self.top_k = top_k or None
        self.backbone = backbone

    def __call__(self, input_ids: torch.LongTensor, scores: torch.Tensor) -> torch.Tensor:
        state = self.state
        if self.backbone:
            # input_ids: (batch, 0) before the first frame, then (batch, frames, codebooks).
            frame = 0 if input_ids.ndim == 2 else input_ids.shape[1]
            state.forced = state.caps <= frame
        scores = scores.clone()
        scores[:, state.vocab_limit :] = -math.inf
        temperatures = state.temperatures.to(scores.dtype)
        sampled = (temperatures > 0) & ~state.forced
        if bool(sampled.any()):
            rows = sampled.nonzero().flatten().tolist()
            logits = scores[rows] / temperatures[rows, None]
            if self.top_k is not None and self.top_k < logits.shape[-1]:
                kth = torch.topk(logits, self.top_k, dim=-1).values[:, -1:]
                logits = logits.masked_fill(logits < kth, -math.inf)
            noise = torch.stack(
                [
                    torch.empty(scores.shape[-1], device=scores.device).exponential_(
                        generator=state.generators[row]
                    )
                    for row in rows
                ]
            )
            # argmax(logits - log E), E ~ Exp(1), is a sample of softmax(logits).
            scores[rows] = logits - noise.clamp_min(1e-30).log()
        if bool(state.forced.any()):
            scores[state.forced] = -math.inf
            scores[state.forced, state.eos] = 0.0
        return scores


class _BatchState:
    """What the samplers need to know about the batch in flight."""

    def __init__(self, vocab_limit: int, eos: int, device: torch.device):
        self.vocab_limit = vocab_limit
        self.eos = eos
        self.device = device
        self.generators: list[torch.Generator] = []
        self.temperatures = torch.zeros(0)
        self.caps = torch.zeros(0, dtype=torch.long)
        self.forced = torch.zeros(0, dtype=torch.bool)

    def start(self, seeds: list[int], temperatures: list[float], caps: list[int]) -> None:
        self.generators = [
            torch.Generator(device=self.device).manual_seed(seed & 0xFFFF_FFFF_FFFF_FFFF)
            for seed in seeds
        ]
        self.temperatures = torch.tensor(temperatures, dtype=torch.float32, device=self.device)
        self.caps = torch.tensor(caps, dtype=torch.long, device=self.device)
        self.forced = torch.zeros(len(seeds), dtype=torch.bool, device=self.device)


class CsmEngine:
    family = FAMILY
    supports_cloning = True
    default_temperature = 0.9
    max_input_characters = MAX_INPUT_CHARACTERS

    def __init__(self, name: str, path: pathlib.Path, device: torch.device, dtype: torch.dtype):
        self.name = name
        self._device = device
        # csm-1b is trained on English; it has no preset voices (unconditioned speech is a
        # voice that depends on the seed).
        self.languages = ["en"]
        self.preset_voices: list[PresetVoice] = []
        self.model = load_pretrained(CsmForConditionalGeneration, path, device, dtype)
        self.model.codec_model.float()
        self.processor = AutoProcessor.from_pretrained(path)
        self.tokenizer = self.processor.tokenizer
        config = self.model.config
        codec = self.model.codec_model.config
        self.sample_rate = int(codec.sampling_rate)
        self.frame_rate = float(codec.frame_rate)
        self._samples_per_frame = round(self.sample_rate / self.frame_rate)
        self._codebooks = int(config.num_codebooks)
        self._eos = int(config.codebook_eos_token_id)
        self._audio_token = self.processor.audio_token
        self._audio_id = int(config.audio_token_id)
        self._audio_eos_id = int(config.audio_eos_token_id)
        self._max_positions = int(config.max_position_embeddings)
        # Every added token (named special or not): what user text must never become.
        self._controls = dict(self.tokenizer.get_added_vocab())
        self._control_ids = frozenset(self._controls.values())
        self._control_pattern = re.compile(
            "|".join(re.escape(t) for t in sorted(self._controls, key=len, reverse=True))
        )

        # Sampling settings of the checkpoint (csm-1b: top-k 50 in both decoders); the job's
        # temperature replaces the checkpoint's, and our sampler replaces transformers'.
        gen, depth_gen = self.model.generation_config, self.model.depth_decoder.generation_config
        self._state = _BatchState(
            # Codes the codec cannot decode are never picked (csm-1b: 2051 entries, Mimi 2048).
            vocab_limit=min(int(config.vocab_size), int(codec.codebook_size)),
            eos=self._eos,
            device=device,
        )
        backbone = _Sampler(self._state, gen.top_k if gen.do_sample else None, backbone=True)
        depth = _Sampler(
            self._state, depth_gen.top_k if depth_gen.do_sample else None, backbone=False
        )
        for config_ in (gen, depth_gen):
            config_.do_sample = False
            config_.temperature = config_.top_k = config_.top_p = None
        self._logits_processor = LogitsProcessorList([backbone])
        self._lock = threading.Lock()
        # CsmGenerationMixin._sample calls depth_decoder.generate() with no logits processor.
        self.model.depth_decoder.generate = functools.partial(
            type(self.model.depth_decoder).generate,
            self.model.depth_decoder,
            logits_processor=LogitsProcessorList([depth]),
        )

        with torch.inference_mode():
            eos_frame = torch.full((1, 1, self._codebooks), self._eos, device=device)
            self._eos_embedding = self.model.backbone_model.embed_tokens(eos_frame)[0, 0]
        self.device, self.dtype, self.memory_bytes, self.random_weights = loaded(
            self.model, path, device, dtype
        )

    # -- interface -------------------------------------------------------------------------

    def batch_key(self, job: SynthesisJob) -> Hashable:
        """Constant: voices, temperatures and seeds are all per row."""
        return FAMILY

    def max_frames(self, text: str) -> int:
        """The most audio frames a sentence of `text` may get."""
        seconds = SECONDS_PER_CHARACTER * len(text) + EXTRA_SECONDS
        return math.ceil(seconds * self.frame_rate)

    @torch.inference_mode()
    def prepare_voice(self, audio: np.ndarray, transcript: str, language: str) -> VoicePrompt:
        """Encodes the recording with the Mimi codec once: arrays "codes" (frames x codebooks,
        int32) and "audio" (the recording as given, float32)."""
        self._check_language(language)
        audio = np.asarray(audio, dtype=np.float32)
        if audio.ndim != 1 or audio.size == 0:
            raise InvalidOptionError("reference_audio", "must be non-empty mono audio")
        seconds = audio.size / self.sample_rate
        if seconds > MAX_REFERENCE_SECONDS:
            raise InvalidOptionError(
                "reference_audio",
                f"is {seconds:.1f} s long; at most {MAX_REFERENCE_SECONDS:.0f} s",
            )
        if not transcript.strip():
            raise InvalidOptionError("transcript", "the words of the recording are needed")
        values = torch.from_numpy(audio).to(self._device)[None, None]
        codes = self.model.codec_model.encode(values, num_quantizers=self._codebooks).audio_codes
        codes = codes[0].transpose(0, 1).to(torch.int32).cpu().numpy()  # (frames, codebooks)
        return VoicePrompt(
            engine=FAMILY,
            transcript=transcript,
            language=language,
            arrays={"codes": np.ascontiguousarray(codes), "audio": audio.copy()},
        )

    def warmup(self) -> None:
        run_one(self.run_batch, SynthesisJob(text="Hello.", language="en"))
        t = np.arange(self.sample_rate, dtype=np.float32) / self.sample_rate
        prompt = self.prepare_voice(0.1 * np.sin(2 * np.pi * 220 * t), "Hello.", "en")
        run_one(self.run_batch, SynthesisJob(text="Hello.", language="en", prompt=prompt))

    @torch.inference_mode()
    def run_batch(self, jobs: list[SynthesisJob]) -> list[np.ndarray | BaseException]:
        """One generate() call for the whole batch (see the module's docstring).

        Batched rows are left-padded: their attention runs over more (masked) positions than
        alone, which can change float rounding, and on rare near-ties a sampled code; on CPU
        the tests find batched rows identical to the same jobs run alone.
        """
        return run_jobs(jobs, self._prompt, self._generate)

    # -- internals -------------------------------------------------------------------------

    def _check_language(self, tag: str) -> None:
        if option_language(tag, "language_code") not in self.languages:
            raise InvalidOptionError(
                "language_code",
                f"model {self.name} speaks {', '.join(self.languages)}, not {tag!r}",
            )

    def text_ids(self, text: str) -> list[int]:
        """Token ids of plain text, as the tokenizer spells it between control tokens, without
        matching added tokens: no control token can come from it."""
        backend = self.tokenizer.backend_tokenizer
        if backend.normalizer is not None:
            text = backend.normalizer.normalize_str(text)
        pieces = (
            [piece for piece, _ in backend.pre_tokenizer.pre_tokenize_str(text)]
            if backend.pre_tokenizer is not None
            else [text]
        )
        ids = [token.id for piece in pieces for token in backend.model.tokenize(piece)]
        if self._control_ids.intersection(ids):  # a BPE merge that spells one: never in csm-1b
            raise ValueError(f"model {self.name}'s BPE model spells a control token")
        return ids

    def _prompt_ids(self, conversation: list[dict], texts: list[str]) -> list[int]:
        """The chat template's rendering of `conversation`, whose text items are placeholders
        for `texts`, as token ids: the template's control tokens as themselves, all other text
        through `text_ids`."""
        marker = f"\ue000{uuid.uuid4().hex}\ue000"
        for turn in conversation:
            turn["content"][0]["text"] = marker
        parts = self.processor.apply_chat_template(conversation, tokenize=False).split(marker)
        if len(parts) != len(texts) + 1:
            raise ValueError(f"model {self.name}'s chat template does not render each text once")
        ids: list[int] = []
        plain = ""
        for index, part in enumerate(parts):
            if index:  # the user text in place of the placeholder before this part
                plain += texts[index - 1]
            position = 0
            for control in self._control_pattern.finditer(part) if self._controls else ():
                plain += part[position : control.start()]
                if plain:
                    ids += self.text_ids(plain)
                    plain = ""
                ids.append(self._controls[control.group()])
                position = control.end()
            plain += part[position:]
        if plain:
            ids += self.text_ids(plain)
        return ids

    def _prompt(self, job: SynthesisJob) -> torch.Tensor:
        """The job's prompt as backbone input embeddings, (length, hidden)."""
        self._check_language(job.language)
        if job.preset:
            raise InvalidOptionError(
                "preset_voice",
                f"model {self.name} has no preset voices; clone one from a reference recording",
            )
        text = job.text.strip()
        if not text:
            raise InvalidOptionError("text", "nothing to speak")
        check_job_limits(job, self.max_input_characters, self.default_temperature)
        conversation: list[dict] = []
        texts: list[str] = []
        codes = None
        if job.prompt is not None:
            if job.prompt.engine != FAMILY:
                raise InvalidOptionError(
                    "voice",
                    f"the voice was prepared for a {job.prompt.engine} model, not {FAMILY}",
                )
            codes = np.asarray(job.prompt.arrays["codes"])
            if codes.ndim != 2 or codes.shape[1] != self._codebooks:
                raise InvalidOptionError(
                    "voice",
                    f"the voice's codes have shape {codes.shape}, not (frames, {self._codebooks})"
                    f" as model {self.name} needs: prepare it again",
                )
            conversation.append(
                {
                    "role": SPEAKER,
                    "content": [{"type": "text", "text": ""}, {"type": "audio"}],
                }
            )
            texts.append(job.prompt.transcript.strip())
        conversation.append({"role": SPEAKER, "content": [{"type": "text", "text": ""}]})
        texts.append(text)
        ids = self._prompt_ids(conversation, texts)
        if codes is not None:
            at = ids.index(self._audio_id)  # the template's one <|AUDIO|>: one per frame
            ids[at : at + 1] = [self._audio_id] * len(codes)
        if len(ids) + self.max_frames(job.text) + 1 > self._max_positions:
            raise InvalidOptionError(
                "text",
                f"the prompt ({len(ids)} tokens with the voice) and up to"
                f" {self.max_frames(job.text)} frames of audio exceed the model's"
                f" {self._max_positions} positions: use a shorter sentence or reference",
            )
        ids_t = torch.tensor(ids, device=self._device)
        embeddings = self.model.embed_text_tokens(ids_t)
        if codes is not None:
            frames = torch.from_numpy(codes.astype(np.int64)).to(self._device)
            audio = self.model.backbone_model.embed_tokens(frames[None])[0]
            embeddings[ids_t == self._audio_id] = audio.to(embeddings.dtype)
            embeddings[ids_t == self._audio_eos_id] = self._eos_embedding.to(embeddings.dtype)
        return embeddings

    def _generate(
        self, jobs: list[SynthesisJob], prompts: list[torch.Tensor]
    ) -> list[np.ndarray | BaseException]:
        """The batch's audio; a row that ended before its first frame is tried once more with
        `retry_seed` (the retried rows in one batch), then fails."""
        seeds = [job.seed for job in jobs]
        outputs: list[np.ndarray | BaseException] = list(self._generate_once(jobs, prompts, seeds))
        empty = [row for row, audio in enumerate(outputs) if audio.size == 0]
        again = [row for row in empty if job_temperature(jobs[row], self.default_temperature) > 0]
        if again:
            retried = self._generate_once(
                [jobs[row] for row in again],
                [prompts[row] for row in again],
                [retry_seed(seeds[row]) for row in again],
            )
            for row, audio in zip(again, retried, strict=True):
                outputs[row] = audio
        for row in empty:
            if outputs[row].size == 0:
                outputs[row] = self._no_audio(jobs[row], retried=row in again)
        return outputs

    def _no_audio(self, job: SynthesisJob, retried: bool) -> InvalidOptionError:
        if retried:
            tries = f"with seed {job.seed} and again with seed {retry_seed(job.seed)}"
            hint = "rephrase the text (a whole sentence speaks best) or set another seed"
        else:
            tries = "at temperature 0 (greedy: every seed ends the same way)"
            hint = "rephrase the text or use a temperature above 0"
        return InvalidOptionError(
            "text",
            f"model {self.name} ended the audio before its first frame {tries}: nothing was"
            f" spoken; {hint}",
        )

    def _generate_once(
        self, jobs: list[SynthesisJob], prompts: list[torch.Tensor], seeds: list[int]
    ) -> list[np.ndarray]:
        caps = [self.max_frames(job.text) for job in jobs]
        width = max(p.shape[0] for p in prompts)
        hidden = prompts[0].shape[1]
        embeds = prompts[0].new_zeros((len(jobs), width, hidden))
        mask = torch.zeros((len(jobs), width), dtype=torch.long, device=self._device)
        for row, prompt in enumerate(prompts):
            embeds[row, width - prompt.shape[0] :] = prompt
            mask[row, width - prompt.shape[0] :] = 1
        with self._lock:  # the samplers' batch state belongs to one generate() at a time
            self._state.start(
                seeds,
                [job_temperature(job, self.default_temperature) for job in jobs],
                caps,
            )
            sequences = self.model.generate(
                inputs_embeds=embeds,
                attention_mask=mask,
                max_new_tokens=max(caps) + 1,  # and the end frame
                logits_processor=self._logits_processor,
            )
        outputs = []
        for row, cap in enumerate(caps):
            frames = sequences[row, :cap]
            ended = (frames[:, :-1] == self._eos).all(dim=-1).nonzero()
            if ended.numel():
                frames = frames[: int(ended[0, 0])]
            outputs.append(self._decode(frames))
        return outputs

    def _decode(self, frames: torch.Tensor) -> np.ndarray:
        """(frames, codebooks) codes -> float32 audio in [-1, 1]."""
        if frames.shape[0] == 0:
            return np.zeros(0, dtype=np.float32)
        audio = self.model.codec_model.decode(frames.transpose(0, 1)[None]).audio_values
        audio = audio[0, 0, : frames.shape[0] * self._samples_per_frame].float().cpu().numpy()
        return np.ascontiguousarray(np.clip(audio, -1.0, 1.0), dtype=np.float32)
