"""Whisper on CTranslate2: the runtime faster-whisper uses, int8 on CPU, float16 on GPU.

The checkpoint is converted once into the model cache (speechmesh.asr.engines.conversion) and
loaded with `inter_threads` replicas, so the batcher's workers run batches side by side (on a
CPU two narrow batches beat one wide one); each batch is one `encode`, one batched `generate`
and, for word times and packed windows, one `align` on the same encoder output.

What makes it faster than calling the runtime clip by clip (faster-whisper's way):
- clips of a batch share windows (speechmesh.asr.engines.packing): five 5 s clips cost one
  encoder pass instead of five;
- features are computed on the audio only (speechmesh.asr.engines.features), in torch;
- no temperature fallback re-decodes: a request's temperature is used as given.
"""

from __future__ import annotations

import math
import os
import pathlib
import threading
from dataclasses import dataclass, field, replace

import ctranslate2
import numpy as np

from speechmesh.asr.engines.base import (
    DecodeJob,
    DecodeOptions,
    Segment,
    WindowResult,
    Word,
    past_the_end,
)
from speechmesh.asr.engines.features import LogMel
from speechmesh.asr.engines.packing import (
    CAPACITY_SECONDS,
    Placement,
    TimedSegment,
    pack,
    split,
    window_audio,
)
from speechmesh.asr.engines.vocabulary import TIME_PRECISION, WhisperVocabulary
from speechmesh.asr.engines.words import word_spans
from speechmesh.inference.cpu_priority import in_background_thread
from speechmesh.inference.model_source import is_random_checkpoint

SAMPLE_RATE = 16000
WINDOW_SECONDS = 30.0
FRAMES_PER_SECOND = 100  # mel frames
MEDIAN_FILTER_WIDTH = 7
#: A lone clip whose decode stopped this far or more before its end is decoded on from there.
MIN_RESUME_SECONDS = 1.0


@dataclass
class _Window:
    """One row of a batch: a clip alone or several packed, and how to decode it."""

    audio: np.ndarray
    placements: list[Placement]
    language: str | None

    @property
    def packed(self) -> bool:
        return len(self.placements) > 1

    @property
    def seconds(self) -> float:
        return len(self.audio) / SAMPLE_RATE


@dataclass
class _Pending:
    """A window to decode: a clip from `offset` seconds on, with the segments already decoded
    before that (clip times) and the language detected there, when it continues a clip."""

    window: _Window
    offset: float = 0.0
    kept: list[Segment] = field(default_factory=list)
    language: tuple[str, float] | None = None


@dataclass
class _Parsed:
    """A window's decode: segments (window times) and where it stopped short, if it did."""

    segments: list[TimedSegment]
    resume_at: float | None
    language: str
    language_probability: float


class CTranslate2WhisperEngine:
    family = "whisper"
    runtime = "ctranslate2"
    sample_rate = SAMPLE_RATE
    window_seconds = WINDOW_SECONDS

    def __init__(
        self,
        name: str,
        source: pathlib.Path,
        converted: pathlib.Path,
        *,
        device: str,
        device_index: int,
        compute_type: str,
        workers: int,
        threads: int,
        packing: bool = True,
    ):
        self.name = name
        self.vocab = WhisperVocabulary(name, source)
        self.tokenizer = self.vocab.tokenizer
        self.features = LogMel(source)

        def load(replicas: int):
            return ctranslate2.models.Whisper(
                str(converted),
                device=device,
                device_index=device_index,
                compute_type=compute_type,
                inter_threads=replicas,
                intra_threads=threads,
            )

        self.model = load(workers)
        # Several replicas cost a lone batch about a tenth of its speed on a CPU (measured on
        # whisper-tiny.en, 2 cores); a second copy with one replica runs a batch that has the
        # machine to itself (one caller at a time), the replicas run batches side by side.
        self._solo = load(1) if workers > 1 and device == "cpu" else None
        # Background batches (jobs) on a CPU run on a copy of their own, created on first use
        # from a background thread: its compute threads inherit that thread's lowest CPU
        # priority (speechmesh.inference.cpu_priority), so live batches get the cores first.
        self._load = load
        self._background = None
        self._background_wanted = device == "cpu"
        self._running = 0
        self._lock = threading.Lock()
        self.workers = workers
        self.packing = packing
        self.languages = self.vocab.languages
        self.supports_translation = self.vocab.supports_translation
        self.supports_language_detection = self.vocab.supports_language_detection
        self.supports_word_timestamps = self.vocab.supports_word_timestamps
        self.supports_emotion = self.supports_audio_events = False
        self.supports_text_normalization = False
        self.device = device if device == "cpu" else f"{device}:{device_index}"
        self.dtype = self.model.compute_type
        self._copy_bytes = _weight_bytes(converted, self.dtype)  # one loaded copy's weights
        self.memory_bytes = self._copy_bytes * (2 if self._solo else 1)
        self.random_weights = is_random_checkpoint(source)
        self._max_length = int(self.vocab.generation.max_length or 448)

    def options(self, **kwargs) -> DecodeOptions:
        return self.vocab.options(**kwargs)

    def warmup(self) -> None:
        silence = np.zeros(SAMPLE_RATE, dtype=np.float32)
        options = DecodeOptions(language=None if self.vocab.multilingual else "en")
        self.decode_batch([DecodeJob(silence, options)])

    # -- a batch ---------------------------------------------------------

    def decode_batch(self, jobs: list[DecodeJob]) -> list[WindowResult | BaseException]:
        if self._background_wanted and in_background_thread():
            return self._decode_batch(self._background_model(), jobs)
        with self._lock:
            self._running += 1
            model = self._solo if self._solo is not None and self._running == 1 else self.model
        try:
            return self._decode_batch(model, jobs)
        finally:
            with self._lock:
                self._running -= 1

    def _background_model(self):
        with self._lock:
            if self._background is None:
                # As many replicas as live ones: background batches run side by side too.
                self._background = self._load(self.workers)
                self.memory_bytes += self._copy_bytes
            return self._background

    def _decode_batch(self, model, jobs: list[DecodeJob]) -> list[WindowResult | BaseException]:
        options = jobs[0].options  # equal batch keys: everything but the language is shared
        results: dict[int, WindowResult] = {}
        todo = [_Pending(window) for window in self._windows(jobs)]
        while todo:  # each round decodes what the last one left, all of it in one batch
            parsed = self._decode(model, [p.window for p in todo], options)
            again: list[_Pending] = []
            for pending, decoded in zip(todo, parsed, strict=True):
                window = pending.window
                if window.packed:  # clips it left unfinished are decoded again alone
                    pieces, unfinished = split(
                        decoded.segments, window.placements, decoded.resume_at
                    )
                    again += [_Pending(self._alone(job, jobs[job])) for job in unfinished]
                    language = (decoded.language, decoded.language_probability)
                    for job, segments in pieces.items():
                        results[job] = self._result(segments, language, options)
                    continue
                job, at = window.placements[0].job, pending.offset
                language = pending.language or (decoded.language, decoded.language_probability)
                resume = decoded.resume_at
                segments = [t.segment.shifted(at) for t in decoded.segments]
                if resume and window.seconds - resume >= MIN_RESUME_SECONDS:
                    # The rest of the clip is decoded from where this decode stopped, as
                    # OpenAI's transcribe() seeks (the segment cut off there starts at
                    # `resume` and is decoded again with the rest); the language found first
                    # holds for the rest. A stop at 0 would decode the same audio again.
                    done = [s for s in segments if s.start < at + resume]
                    rest = replace(self._alone(job, jobs[job], at + resume), language=language[0])
                    again.append(_Pending(rest, at + resume, pending.kept + done, language))
                else:
                    results[job] = self._result(pending.kept + segments, language, options)
            todo = again
        return [results[i] for i in range(len(jobs))]

    def _windows(self, jobs: list[DecodeJob]) -> list[_Window]:
        """Clips of one known language share windows; a clip to detect is alone."""
        windows: list[_Window] = []
        groups: dict[str | None, list[int]] = {}
        for i, job in enumerate(jobs):
            if job.options.language is None or not self.packing:
                windows.append(self._alone(i, job))
            else:
                groups.setdefault(job.options.language, []).append(i)
        for language, members in groups.items():
            durations = [len(jobs[i].audio) / SAMPLE_RATE for i in members]
            for placements in pack(durations, CAPACITY_SECONDS):
                placements = [replace(p, job=members[p.job]) for p in placements]
                clips = {p.job: jobs[p.job].audio for p in placements}
                audio = window_audio(placements, clips, SAMPLE_RATE)
                windows.append(_Window(audio, placements, language))
        return windows

    @staticmethod
    def _alone(index: int, job: DecodeJob, offset: float = 0.0) -> _Window:
        """A window of one clip (from `offset` seconds on)."""
        audio = job.audio[int(offset * SAMPLE_RATE) :]
        seconds = len(audio) / SAMPLE_RATE
        return _Window(audio, [Placement(index, 0.0, seconds)], job.options.language)

    def _result(
        self, segments: list[Segment], language: tuple[str, float], options: DecodeOptions
    ) -> WindowResult:
        if not options.word_timestamps:
            segments = [replace(s, words=[]) for s in segments]
        return WindowResult(segments, *language)

    # -- the runtime -----------------------------------------------------

    def _decode(self, model, windows: list[_Window], options: DecodeOptions) -> list[_Parsed]:
        features = ctranslate2.StorageView.from_array(self.features([w.audio for w in windows]))
        encoded = model.encode(features, to_cpu=False)
        languages: list[tuple[str, float]] = [(w.language or "en", 1.0) for w in windows]
        if any(w.language is None for w in windows) and self.supports_language_detection:
            for i, found in enumerate(model.detect_language(encoded)):
                if windows[i].language is None:
                    token, probability = found[0]
                    languages[i] = (token.strip("<|>"), float(probability))
        prefixes = [self.vocab.sot_sequence(lang, options.task) for lang, _p in languages]
        prompt = self.vocab.prompt_ids(options.prompt, self._max_length // 2)
        results = model.generate(
            encoded,
            [prompt + prefix for prefix in prefixes],
            max_length=min(self._max_length, len(prompt) + 3 + self._max_length // 2),
            return_scores=True,
            **_sampling(options),
        )
        token_lists = [r.sequences_ids[0] for r in results]
        scores = [r.scores[0] if r.scores else 0.0 for r in results]
        want_words = [
            (options.word_timestamps or w.packed) and self.supports_word_timestamps for w in windows
        ]
        aligned = self._align(model, encoded, windows, prefixes, token_lists, want_words)
        return [
            self._parse(window, tokens, score, timing, language)
            for window, tokens, score, timing, language in zip(
                windows, token_lists, scores, aligned, languages, strict=True
            )
        ]

    def _align(self, model, encoded, windows, prefixes, token_lists, want_words):
        """Start time and probability of every decoded token, per window (None: not asked).

        The aligned sequence keeps Whisper's timestamp tokens, which absorb the silence around
        the words, as they did while decoding (without them the first word starts at 0).
        """
        out: list[tuple[np.ndarray, list[float]] | None] = [None] * len(windows)
        by_prefix: dict[tuple[int, ...], list[int]] = {}
        for i, want in enumerate(want_words):
            if want and any(t < self.vocab.eot for t in token_lists[i]):
                by_prefix.setdefault(tuple(prefixes[i]), []).append(i)
        for prefix, rows in by_prefix.items():
            sequences = [self._aligned_tokens(token_lists[i]) for i in rows]
            frames = [max(1, int(windows[i].seconds * FRAMES_PER_SECOND)) for i in rows]
            subset = encoded if len(rows) == len(windows) else _rows(encoded, rows)
            found = model.align(
                subset, list(prefix), sequences, frames, median_filter_width=MEDIAN_FILTER_WIDTH
            )
            for i, sequence, result in zip(rows, sequences, found, strict=True):
                starts = _token_starts(result.alignments, len(sequence))
                out[i] = (starts, list(result.text_token_probs))
        return out

    def _aligned_tokens(self, tokens: list[int]) -> list[int]:
        """A decode's text and timestamp tokens (what `_parse` walks, in the same order)."""
        return [t for t in tokens if t < self.vocab.eot or t >= self.vocab.timestamp_begin]

    def _parse(
        self,
        window: _Window,
        tokens: list[int],
        score: float,
        timing: tuple[np.ndarray, list[float]] | None,
        language: tuple[str, float],
    ) -> _Parsed:
        """Segments from the timestamp tokens; words from the alignment when there is one."""
        vocab = self.vocab
        limit = window.seconds

        def at(token: int) -> float:
            return min((token - vocab.timestamp_begin) * TIME_PRECISION, limit)

        # (start, end or None, text tokens, their positions in the aligned sequence)
        raw: list[tuple[float, float | None, list[int], list[int]]] = []
        start: float | None = None
        previous_end = 0.0
        text: list[int] = []
        positions: list[int] = []
        for position, token in enumerate(self._aligned_tokens(tokens)):
            if token >= vocab.timestamp_begin:
                if start is None and not text:
                    start = at(token)
                else:
                    first = previous_end if start is None else start
                    raw.append((first, at(token), text, positions))
                    previous_end, start, text, positions = at(token), None, [], []
            else:
                text.append(token)
                positions.append(position)
        resume_at = None
        if text:  # text with no closing timestamp: an early end of text, or the length limit
            first = previous_end if start is None else start
            if window.packed or raw:
                # Decoded again from its start (as OpenAI's transcribe() does after a closed
                # segment); a clip's only segment is taken as it is (as there too).
                resume_at = first
            raw.append((first, None, text, positions))
        elif start is not None:  # a lone opening timestamp: speech Whisper left for later
            resume_at = start
        average = math.exp(score) if score else 0.0
        segments: list[TimedSegment] = []
        for seg_start, seg_end, seg_text, at_positions in raw:
            words = []
            probs = [average] * len(seg_text)
            end = limit if seg_end is None else seg_end
            if timing is not None:
                starts, token_probs = timing
                probs = [token_probs[k] for k in at_positions]
                spans = word_spans(
                    self.tokenizer,
                    seg_text,
                    starts[at_positions],
                    starts[[k + 1 for k in at_positions]],
                    probs,
                    seg_start,
                    max(end, seg_start),
                )
                words = [_word(s) for s in spans]
            body = self.tokenizer.decode(seg_text).strip()
            if not body or (segments and past_the_end(seg_start, limit)):
                # nothing said, or a later segment made up in the padding after the audio (a
                # clip's first segment is kept, clamped, as OpenAI's is)
                continue
            segment = Segment(
                body, seg_start, max(end, seg_start), float(np.mean(probs)) if probs else 0.0
            )
            segment.words = words
            segments.append(TimedSegment(segment, words))
        return _Parsed(segments, resume_at, *language)


def _word(span) -> Word:
    text, _idx, start, end, probability = span
    return Word(text, start, end, probability)


def _token_starts(alignments: list[tuple[int, int]], count: int) -> np.ndarray:
    """Start time of each of `count` text tokens, and of the end token after them."""
    if not alignments:
        return np.zeros(count + 1)
    pairs = np.asarray(alignments)
    text_indices, time_indices = pairs[:, 0], pairs[:, 1]
    jumps = np.diff(text_indices, prepend=-1).astype(bool)
    times = time_indices[jumps] * TIME_PRECISION
    return np.pad(times, (0, max(0, count + 1 - len(times))), mode="edge")[: count + 1]


def _rows(encoded, rows: list[int]):
    """Some rows of the encoder output (CTranslate2 storage views do not slice)."""
    array = np.asarray(encoded.to_device(ctranslate2.Device.cpu))[rows]
    return ctranslate2.StorageView.from_array(np.ascontiguousarray(array))


def _sampling(options: DecodeOptions) -> dict:
    if options.temperature > 0:
        return {
            "beam_size": 1,
            "sampling_topk": 0,
            "sampling_temperature": options.temperature,
        }
    return {"beam_size": options.beam_size}


def _weight_bytes(converted: pathlib.Path, compute_type: str) -> int:
    """The weights' size in memory: the stored float16 file, scaled to the compute type."""
    stored = os.path.getsize(converted / "model.bin")
    if compute_type.startswith("int8"):
        return stored // 2
    if compute_type == "float32":
        return stored * 2
    return stored
