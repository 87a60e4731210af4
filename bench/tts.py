"""TTS benchmark: the gRPC service against the same synthesizer called in-process.

    python -m bench.tts [--model PATH] [--quick] [--out bench/results] [--sections ...]

Starts the TTS service in this process (ServiceHost + build_app, port 0, no metrics server,
voices in a temporary folder) and talks to it over a real grpc.aio channel, like any client.
Without --model it runs on a tiny random CSM built offline (the model hub is out of reach
here): the figures then measure the service around the model, not speech quality; random
weights never write the end-of-audio frame, so every sentence runs to its length cap. The model
must clone voices (CSM). A voice is created through CreateVoice from a real LibriVox recording
(resampled by the service) and speaks every call. On the loaded model:

- unary: Synthesize of one English sentence per call from 1, 4 and 16 concurrent callers, and
  the same calls through the same synthesizer and batcher in-process (`Synthesizer.speak`):
  audio seconds produced per wall second as a ratio, real-time factor (call latency / audio
  seconds) and, for one caller, time to first audio (the call's latency: a unary call returns
  all its audio at once);
- streams: StreamingSynthesize of a three-sentence text sent word by word at a language
  model's pace (one piece every 30 ms), 1 and 4 concurrent streams, gRPC and the same stream
  through `SynthesisStream.run` in-process: time from sending the piece that completes the first
  sentence (it carries the start of the next) to the first audio chunk, split at the forward
  pass that spoke that sentence (wait, pass, delivery); and the same first sentence spoken alone
  in-process (`Synthesizer.speak_sentence`), the engine's own time for it;
- voices: the same sentence and seed through Synthesize with the stored voice
  (`voice="voices/..."`) and with the recording inline (`reference_audio`, decoded, validated and
  Mimi-encoded on every call): both latencies and the time the stored voice saves.

Every call has a fixed seed and both paths make the same calls with the same seeds, so they do
identical work (same seed, text and voice: same audio); the audio seconds of each path are
reported to show it. Every block of a run repeats the same calls, and a warm-up makes each of
them once first: on CPU the codec's first decode of an audio length costs far more than later
ones, and would otherwise fall on whichever path meets that length first. Paths compared run on
the same blocks of work, interleaved (direct, gRPC, then gRPC, direct, ...), so that other load
on the machine falls on both alike; the CPU other processes used meanwhile is recorded beside
each figure. The gRPC client shares this process (and its interpreter) with the service, so its
own work counts against the gRPC path. Torch keeps its default thread settings, as the service
does (recorded in the environment block). Writes NAME.json and NAME.md under --out.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import pathlib
import re
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable

import numpy as np

from bench.common import (
    SHARED,
    BatchRecorder,
    Block,
    Clip,
    InProcessService,
    batch_summary,
    bench_parser,
    cpu_of,
    cuda_memory,
    environment,
    fmt,
    interleaved,
    load_clips,
    noise_warning,
    peak_rss_mib,
    rss_mib,
    run_and_write,
    summary,
    table,
    timed_block,
)
from bench.translate import SENTENCES

CONCURRENCY = (1, 4, 16)
STREAM_CONCURRENCY = (1, 4)
#: Seconds between text pieces of a stream (a language model writing ~33 tokens a second).
PIECE_INTERVAL_S = 0.03
#: Sentences of the streamed text (the first three of SENTENCES).
STREAM_SENTENCES = 3
GRPC_VS_DIRECT_TARGET = 0.95
#: Streaming first audio may exceed the engine's time for the first sentence by this much.
FIRST_AUDIO_MARGIN_S = 0.05
VOICE_ID = "bench-reader"
VOICE_NAME = f"voices/{VOICE_ID}"
LANGUAGE = "en"
#: Seeds: unary call k of every block gets UNARY_SEED + k (with sentence k of SENTENCES); every
#: stream and every voice comparison call uses one seed. So every block of a run repeats the same
#: work, all of which the warm-up has done once (see `run`).
UNARY_SEED = 1_000
STREAM_SEED = 7
VOICE_SEED = 11
DEFAULT_REFERENCE = SHARED / "audio" / "librivox" / "sense_and_sensibility_01_austen_64kb-0870.wav"


class Plan:
    def __init__(self, quick: bool):
        self.quick = quick
        #: Unary calls per block, by concurrency (at least one call per caller).
        self.unary_calls = {1: 2, 4: 4, 16: 16} if quick else {1: 8, 4: 16, 16: 32}
        #: Blocks per path (interleaved AB, BA, ...).
        self.unary_blocks = 2 if quick else 3
        #: Blocks per path of the stream runs, by concurrent streams.
        self.stream_blocks = {1: 3, 4: 2} if quick else {1: 6, 4: 4}
        #: Calls per voice (stored, inline), interleaved.
        self.voice_rounds = 4 if quick else 10


class Bench:
    """The service, served in-process, plus direct handles on the model it loaded."""

    def __init__(self, args: argparse.Namespace, plan: Plan):
        self.args = args
        self.plan = plan

    async def start(self) -> None:
        from speechmesh.tts.app import build_app
        from speechmesh.tts.config import TtsSettings
        from speechmesh.tts.models import TtsModels
        from speechmesh.tts.synthesizer import Synthesizer
        from speechmesh.tts.v1 import tts_pb2, tts_pb2_grpc

        self.voices_dir = tempfile.TemporaryDirectory(prefix="speechmesh-bench-voices-")
        overrides = {"device": self.args.device} if self.args.device else {}
        self.settings = TtsSettings(
            model=str(self.args.model),
            voices_dir=self.voices_dir.name,
            host="127.0.0.1",
            port=0,
            metrics=False,
            metrics_port=0,
            log_level=self.args.log_level,
            **overrides,
        )
        self.service = InProcessService(build_app, self.settings, TtsModels)
        self.channel = await self.service.start()
        self.models = self.service.models
        self.load_s = self.service.load_s
        self.rss_after_load_mib = rss_mib()
        self.model = self.models.default
        self.engine = self.model.engine
        if not self.engine.supports_cloning:
            await self.service.stop()
            raise SystemExit(f"bench: {self.engine.name} cannot clone voices; give a CSM model")
        # What the servicer builds for every call (servicer._synthesizer).
        self.synthesizer = Synthesizer(
            self.engine, self.model.batcher, self.settings.sentence_pause_ms / 1000
        )
        self.recorder = BatchRecorder(self.model.batcher)
        self.stub = tts_pb2_grpc.TtsServiceStub(self.channel)
        self.pb = tts_pb2

        self.reference = _reference_clip(self.args, self.engine.sample_rate)
        created = await self.stub.CreateVoice(
            tts_pb2.CreateVoiceRequest(
                voice_id=VOICE_ID,
                voice=tts_pb2.Voice(
                    transcript=self.reference.reference,
                    language_code=LANGUAGE,
                    display_name="LibriVox reader",
                ),
                reference_audio=self.reference.data,
            )
        )
        self.voice_seconds = created.reference_audio_duration.ToNanoseconds() / 1e9
        from speechmesh.tts.synthesizer import VoiceChoice

        prompt = await asyncio.to_thread(self.models.voices.load_prompt, VOICE_ID, "")
        # As the servicer builds it for SynthesisConfig.voice = VOICE_NAME.
        self.voice = VoiceChoice(LANGUAGE, prompt, None, VOICE_NAME)
        self.prompt_frames = int(np.asarray(prompt.arrays["codes"]).shape[0])

        self.stream_text = " ".join(SENTENCES[:STREAM_SENTENCES])
        self.pieces = re.findall(r"\s*\S+", self.stream_text)
        self.first_sentence, self.completing_piece = _first_sentence(
            self.pieces, self.synthesizer, self.engine
        )

    async def stop(self) -> None:
        self.recorder.restore()
        await self.service.stop()
        self.voices_dir.cleanup()

    async def _block(self, worker: Callable, concurrency: int, items: list) -> Block:
        return await timed_block(worker, concurrency, items, self.recorder)

    def _config(self, seed: int, voice: str = "stored"):
        pb = self.pb
        if voice == "inline":
            reference = pb.ReferenceAudio(
                audio=self.reference.data,
                transcript=self.reference.reference,
                language_code=LANGUAGE,
            )
            return pb.SynthesisConfig(reference_audio=reference, seed=seed)
        return pb.SynthesisConfig(voice=VOICE_NAME, seed=seed)

    def _style(self, seed: int):
        from speechmesh.tts.synthesizer import Style

        return Style(seed=seed)  # as the servicer builds it: no temperature, speed 1

    # -- unary ---------------------------------------------------------------------------

    async def grpc_unary(self, text: str, seed: int, voice: str = "stored") -> float:
        request = self.pb.SynthesizeRequest(text=text, config=self._config(seed, voice))
        response = await self.stub.Synthesize(request)
        assert response.seed == seed
        return response.audio_duration.ToNanoseconds() / 1e9

    async def direct_unary(self, text: str, seed: int) -> float:
        speech = await self.synthesizer.speak(text, self.voice, self._style(seed))
        return speech.seconds

    def unary_measure(self, concurrency: int) -> Callable:
        calls = max(self.plan.unary_calls[concurrency], concurrency)

        async def measure(call: Callable, _block: int) -> Block:
            counter = itertools.count()
            records: list[tuple[float, float]] = []

            async def caller(_worker: int) -> None:
                while (index := next(counter)) < calls:
                    text = SENTENCES[index % len(SENTENCES)]
                    sent = time.perf_counter()
                    seconds = await call(text, UNARY_SEED + index)
                    records.append((seconds, time.perf_counter() - sent))

            return await self._block(caller, concurrency, records)

        return measure

    @staticmethod
    def unary_figures(blocks: list[Block], concurrency: int) -> dict:
        records = [r for b in blocks for r in b.items]
        wall = sum(b.wall for b in blocks)
        audio = sum(seconds for seconds, _ in records)
        return {
            "concurrency": concurrency,
            "calls": len(records),
            "audio_s": audio,
            "wall_s": wall,
            "audio_s_per_s": audio / wall,
            "block_audio_s_per_s": [sum(s for s, _ in b.items) / b.wall for b in blocks],
            "latency_s": summary([lat for _, lat in records]),
            "rtf": summary([lat / seconds for seconds, lat in records]),
            "batches": batch_summary([b.batches for b in blocks], wall),
            "cpu": cpu_of(blocks),
        }

    # -- streams -------------------------------------------------------------------------

    async def paced(self, record: dict) -> AsyncIterator[str]:
        """The stream's text pieces, one every PIECE_INTERVAL_S; notes when the piece that
        completes the first sentence is sent."""
        start = time.perf_counter()
        for k, piece in enumerate(self.pieces):
            delay = start + k * PIECE_INTERVAL_S - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            if k == self.completing_piece:
                record["ready"] = time.perf_counter()
            yield piece

    async def grpc_stream(self, record: dict) -> None:
        pb = self.pb
        config = pb.StreamingSynthesisConfig(config=self._config(STREAM_SEED))

        async def requests():
            yield pb.StreamingSynthesizeRequest(streaming_config=config)
            async for piece in self.paced(record):
                yield pb.StreamingSynthesizeRequest(text=piece)

        async for r in self.stub.StreamingSynthesize(requests()):
            kind = r.WhichOneof("streaming_response")
            if kind == "audio_chunk" and r.audio_chunk.duration.ToNanoseconds() > 0:
                record.setdefault("first_at", time.perf_counter())
            elif kind == "summary":
                record["audio_s"] = r.summary.audio_duration.ToNanoseconds() / 1e9
                record["sentences"] = r.summary.sentence_count

    async def direct_stream(self, record: dict) -> None:
        from speechmesh.tts.streaming import SynthesisStream

        # As the servicer builds it for a stream with this config.
        stream = SynthesisStream(
            self.synthesizer,
            self.voice,
            self._style(STREAM_SEED),
            self.settings.max_text_characters,
        )
        sentences = 0
        async for sentence in stream.run(self.paced(record)):
            if len(sentence.audio):
                record.setdefault("first_at", time.perf_counter())
            sentences = sentence.index + 1
        record["audio_s"] = stream.seconds
        record["sentences"] = sentences

    async def alone(self, record: dict) -> None:
        """The stream's first sentence, spoken alone in-process as the stream speaks it."""
        record["ready"] = time.perf_counter()
        audio = await self.synthesizer.speak_sentence(
            self.first_sentence, 0, self.voice, self._style(STREAM_SEED)
        )
        record["first_at"] = time.perf_counter()
        record["audio_s"] = len(audio) / self.engine.sample_rate
        record["sentences"] = 1

    def stream_measure(self, concurrency: int) -> Callable:
        async def measure(run: Callable, _block: int) -> Block:
            records: list[dict] = []

            async def worker(w: int) -> None:
                await asyncio.sleep(w * PIECE_INTERVAL_S / concurrency)
                record: dict = {"error": None}
                records.append(record)
                try:
                    await run(record)
                except Exception as error:  # reported in the results
                    record["error"] = repr(error)

            block = await self._block(worker, concurrency, records)
            for record in records:
                _split_first_audio(record, block.batches)
            return block

        return measure

    @staticmethod
    def stream_figures(blocks: list[Block], concurrency: int) -> dict:
        records = [r for b in blocks for r in b.items]
        done = [r for r in records if not r["error"] and "first_at" in r and "ready" in r]
        wall = sum(b.wall for b in blocks)
        parts = [r for r in done if "model_s" in r]
        return {
            "concurrency": concurrency,
            "streams": len(records),
            "errors": [r["error"] for r in records if r["error"]],
            "first_audio_s": summary([r["first_at"] - r["ready"] for r in done]),
            # first_audio_s = to_model_s + model_s + from_model_s, for the forward pass that
            # spoke the first sentence.
            "first_audio_parts_s": {
                key: summary([r[key] for r in parts])["p50"]
                for key in ("to_model_s", "model_s", "from_model_s")
            },
            "audio_s": sum(r.get("audio_s", 0.0) for r in done),
            "sentences": sum(r.get("sentences", 0) for r in done),
            "wall_s": wall,
            "batches": batch_summary([b.batches for b in blocks], wall),
            "cpu": cpu_of(blocks),
        }

    # -- voices --------------------------------------------------------------------------

    async def voice_check(self) -> dict:
        """Whether the inline path prepares the very prompt the stored voice holds (same work)."""
        from speechmesh.dsp.audio import decode_audio
        from speechmesh.tts.reference import prepare_reference

        def prepare():
            decoded = decode_audio(self.reference.data, None, None)
            audio = prepare_reference(
                decoded.samples,
                decoded.sample_rate,
                self.engine.sample_rate,
                min_seconds=self.settings.min_reference_seconds,
                max_seconds=self.settings.max_reference_seconds,
            )
            return self.engine.prepare_voice(audio, self.reference.reference, LANGUAGE)

        inline = await asyncio.to_thread(prepare)
        stored = np.asarray(self.voice.prompt.arrays["codes"])
        codes = np.asarray(inline.arrays["codes"])
        return {
            "prompt_frames": int(stored.shape[0]),
            "inline_prompt_matches_stored": bool(
                codes.shape == stored.shape and np.array_equal(codes, stored)
            ),
        }

    async def voice_round(self, paths: list[str]) -> dict[str, tuple[float, float]]:
        out = {}
        for path in paths:
            sent = time.perf_counter()
            seconds = await self.grpc_unary(self.first_sentence, VOICE_SEED, path)
            out[path] = (time.perf_counter() - sent, seconds)
        return out


def _reference_clip(args: argparse.Namespace, sample_rate: int) -> Clip:
    path = args.reference.resolve()
    clip = next((c for c in load_clips(path.parent, sample_rate) if c.name == path.name), None)
    if clip is None:
        raise SystemExit(f"bench: cannot read {path}")
    transcript = args.transcript or clip.reference
    if not transcript:
        raise SystemExit(f"bench: no transcript of {path} in a MANIFEST.tsv; pass --transcript")
    return Clip(clip.name, clip.data, clip.samples, clip.pcm16, clip.sample_rate, transcript)


def _first_sentence(pieces: list[str], synthesizer, engine) -> tuple[str, int]:
    """The first sentence the stream speaks, and the index of the piece that completes it (the
    service's sentence buffer, fed the same pieces)."""
    from speechmesh.dsp.text_split import SentenceBuffer
    from speechmesh.tts.streaming import MAX_SENTENCE_CHARACTERS

    buffer = SentenceBuffer(min(MAX_SENTENCE_CHARACTERS, engine.max_input_characters))
    for k, piece in enumerate(pieces):
        done = buffer.add(piece)
        if done:
            if done[0] != synthesizer.sentences("".join(pieces))[0]:
                raise SystemExit(f"bench: the stream's first sentence is {done[0]!r}")
            return done[0], k
    raise SystemExit("bench: the streamed text never completes a sentence before its end")


def _split_first_audio(record: dict, batches: list[tuple]) -> None:
    """Splits a stream's time to first audio at the forward pass that spoke its first sentence
    (the first to start after the sentence was complete): the wait before it, its length, and
    the time from its end to the audio at the client."""
    if "ready" not in record or "first_at" not in record:
        return
    after = [b for b in batches if b[0] >= record["ready"] and b[1] <= record["first_at"]]
    if not after:
        return
    start, end = min(after)[:2]
    record["to_model_s"] = start - record["ready"]
    record["model_s"] = end - start
    record["from_model_s"] = record["first_at"] - end


def _log(message: str) -> None:
    print(f"[bench.tts] {message}", file=sys.stderr, flush=True)


def _same(a: float, b: float) -> bool:
    return abs(a - b) < 1e-3


async def run(args: argparse.Namespace) -> dict:
    from speechmesh.runtime.logging import configure_logging

    configure_logging(args.log_level, "json")
    plan = Plan(args.quick)
    bench = Bench(args, plan)
    began = time.perf_counter()
    await bench.start()
    env = environment(bench.engine, bench.settings)
    env["random_weights"] = bench.engine.random_weights
    env["torch_interop_threads"] = _interop_threads()
    env["sentence_pause_ms"] = bench.settings.sentence_pause_ms
    _log(f"model {bench.engine.name} on {bench.engine.device}, loaded in {bench.load_s:.1f} s")
    results: dict = {
        "benchmark": "tts",
        "quick": plan.quick,
        "environment": env,
        "voice": {
            "name": VOICE_NAME,
            "reference": bench.reference.name,
            "reference_file_s": bench.reference.seconds,
            "stored_reference_s": bench.voice_seconds,
            "prompt_frames": bench.prompt_frames,
        },
    }
    sections = set(args.sections.split(","))
    try:
        # Every call measured below, once, so that neither path meets a new audio length first:
        # the codec's first decode of a length costs far more than later ones on CPU.
        _log("warm-up")
        warm = time.perf_counter()
        calls = max(plan.unary_calls.values()) if "unary" in sections else 1
        await asyncio.gather(
            *(
                bench.direct_unary(SENTENCES[k % len(SENTENCES)], UNARY_SEED + k)
                for k in range(calls)
            )
        )
        await bench.grpc_unary(SENTENCES[0], UNARY_SEED)
        await bench.grpc_unary(bench.first_sentence, VOICE_SEED)
        await bench.grpc_unary(bench.first_sentence, VOICE_SEED, "inline")
        await bench.grpc_stream({})
        await bench.direct_stream({})
        results["warmup_s"] = time.perf_counter() - warm
        _log(f"warm-up done in {results['warmup_s']:.1f} s")
        if "unary" in sections:
            runs = []
            for concurrency in CONCURRENCY:
                paths = {"direct": bench.direct_unary, "grpc": bench.grpc_unary}
                measure = bench.unary_measure(concurrency)
                measured = await interleaved(measure, paths, plan.unary_blocks)
                direct = bench.unary_figures(measured["direct"], concurrency)
                via_grpc = bench.unary_figures(measured["grpc"], concurrency)
                ratio = via_grpc["audio_s_per_s"] / direct["audio_s_per_s"]
                _log(
                    f"unary x {concurrency}: direct {direct['audio_s_per_s']:.2f}, gRPC"
                    f" {via_grpc['audio_s_per_s']:.2f} audio s/s, ratio {ratio:.3f}; RTF p50"
                    f" {fmt(direct['rtf']['p50'], 3)} / {fmt(via_grpc['rtf']['p50'], 3)}"
                )
                runs.append(
                    {
                        "concurrency": concurrency,
                        "grpc": via_grpc,
                        "direct": direct,
                        "grpc_over_direct": ratio,
                        "same_audio_s": _same(via_grpc["audio_s"], direct["audio_s"]),
                    }
                )
            results["unary"] = {
                "calls": "call k of every block: sentence k of bench.translate.SENTENCES, seed"
                f" {UNARY_SEED} + k, voice {VOICE_NAME}",
                "calls_per_block": {str(c): max(plan.unary_calls[c], c) for c in CONCURRENCY},
                "blocks_per_path": plan.unary_blocks,
                "runs": runs,
            }
        if "streams" in sections:
            runs = []
            for concurrency in STREAM_CONCURRENCY:
                paths = {"direct": bench.direct_stream, "grpc": bench.grpc_stream}
                if concurrency == 1:
                    paths["first_sentence_alone"] = bench.alone
                blocks = plan.stream_blocks[concurrency]
                measured = await interleaved(bench.stream_measure(concurrency), paths, blocks)
                figures = {p: bench.stream_figures(measured[p], concurrency) for p in paths}
                direct, via_grpc = figures["direct"], figures["grpc"]
                run_ = {
                    "concurrency": concurrency,
                    **figures,
                    "same_audio_s": _same(via_grpc["audio_s"], direct["audio_s"]),
                }
                alone = figures.get("first_sentence_alone")
                if alone:
                    run_["grpc_first_audio_over_alone_s"] = (
                        via_grpc["first_audio_s"]["p50"] - alone["first_audio_s"]["p50"]
                    )
                runs.append(run_)
                _log(
                    f"streams x {concurrency}: first audio p50 direct"
                    f" {fmt(direct['first_audio_s']['p50'], 3)}, gRPC"
                    f" {fmt(via_grpc['first_audio_s']['p50'], 3)} s"
                    + (
                        f"; first sentence alone {fmt(alone['first_audio_s']['p50'], 3)} s"
                        if alone
                        else ""
                    )
                )
            results["streams"] = {
                "text": bench.stream_text,
                "pieces": len(bench.pieces),
                "piece_interval_s": PIECE_INTERVAL_S,
                "first_sentence": bench.first_sentence,
                "first_sentence_completed_by_piece": bench.completing_piece,
                "runs": runs,
            }
        if "voices" in sections:
            check = await bench.voice_check()
            rounds = []
            for i in range(plan.voice_rounds):
                order = ["stored", "inline"] if i % 2 == 0 else ["inline", "stored"]
                rounds.append(await bench.voice_round(order))
            stored = [r["stored"][0] for r in rounds]
            inline = [r["inline"][0] for r in rounds]
            saved = [b - a for a, b in zip(stored, inline, strict=True)]
            audio = {p: sum(r[p][1] for r in rounds) for p in ("stored", "inline")}
            results["voices"] = {
                "text": bench.first_sentence,
                "calls_per_path": len(rounds),
                **check,
                "stored_latency_s": summary(stored),
                "inline_latency_s": summary(inline),
                "saved_s": summary(saved),
                "saved_p50_difference_s": float(np.median(inline) - np.median(stored)),
                "audio_s": audio,
                "same_audio_s": _same(audio["stored"], audio["inline"]),
            }
            _log(
                f"voices: stored {np.median(stored):.3f} s, inline {np.median(inline):.3f} s,"
                f" saved {np.median(saved):.3f} s (p50)"
            )
    finally:
        results["memory"] = {
            "rss_after_load_mib": bench.rss_after_load_mib,
            "peak_rss_mib": peak_rss_mib(),
            **cuda_memory(str(bench.engine.device)),
        }
        env["load_average_at_end"] = list(os.getloadavg())
        results["duration_s"] = time.perf_counter() - began
        await bench.stop()
    results["headline"] = headline(results)
    results["targets"] = targets(results)
    results["all_targets_pass"] = all(t["pass"] for t in results["targets"])
    return results


def _interop_threads() -> int:
    import torch

    return torch.get_num_interop_threads()


def _run(results: dict, section: str, concurrency: int) -> dict | None:
    runs = results.get(section, {}).get("runs", [])
    return next((r for r in runs if r["concurrency"] == concurrency), None)


def headline(results: dict) -> dict:
    """The figures the issue asks for, from the runs above (None where a section was skipped)."""
    out: dict = {}
    one = _run(results, "unary", 1)
    if one:
        out["rtf_p50"] = {p: one[p]["rtf"]["p50"] for p in ("direct", "grpc")}
        out["unary_first_audio_p50_s"] = {p: one[p]["latency_s"]["p50"] for p in ("direct", "grpc")}
    for c in CONCURRENCY:
        r = _run(results, "unary", c)
        if r:
            out[f"throughput_c{c}_audio_s_per_s"] = {
                "direct": r["direct"]["audio_s_per_s"],
                "grpc": r["grpc"]["audio_s_per_s"],
                "grpc_over_direct": r["grpc_over_direct"],
            }
    stream = _run(results, "streams", 1)
    if stream:
        out["streaming_first_audio_p50_s"] = {
            "direct": stream["direct"]["first_audio_s"]["p50"],
            "grpc": stream["grpc"]["first_audio_s"]["p50"],
            "first_sentence_alone": stream["first_sentence_alone"]["first_audio_s"]["p50"],
        }
    voices = results.get("voices")
    if voices:
        out["stored_voice_saves_p50_s"] = voices["saved_p50_difference_s"]
    return out


def targets(results: dict) -> list[dict]:
    out = []
    for c in CONCURRENCY:
        r = _run(results, "unary", c)
        if r:
            out.append(
                {
                    "name": f"unary_grpc_over_direct_c{c}",
                    "description": f"gRPC / direct throughput (audio s per s), {c} concurrent"
                    " Synthesize callers",
                    "measured": r["grpc_over_direct"],
                    "comparison": ">=",
                    "threshold": GRPC_VS_DIRECT_TARGET,
                    "pass": r["grpc_over_direct"] >= GRPC_VS_DIRECT_TARGET,
                }
            )
    stream = _run(results, "streams", 1)
    if stream:
        first = stream["grpc"]["first_audio_s"]["p50"]
        alone = stream["first_sentence_alone"]["first_audio_s"]["p50"]
        ok = first is not None and alone is not None and not stream["grpc"]["errors"]
        threshold = alone + FIRST_AUDIO_MARGIN_S if alone is not None else None
        out.append(
            {
                "name": "streaming_first_audio_c1",
                "description": "StreamingSynthesize first audio p50 (s, from the piece completing"
                " the first sentence) vs the engine alone on that sentence p50 + 50 ms",
                "measured": first,
                "comparison": "<=",
                "threshold": threshold,
                "pass": bool(ok and first <= threshold),
            }
        )
    return out


# -- Markdown ---------------------------------------------------------------------


def markdown(results: dict) -> str:
    env = results["environment"]
    voice = results["voice"]
    lines = [
        "# TTS benchmark",
        "",
        f"{env['model']} ({'random weights' if env.get('random_weights') else 'trained'}) on"
        f" {env['device']} ({env['dtype']}"
        + (f", {env['gpu']}" if env.get("gpu") else "")
        + f"), {env['cpu_count']} CPUs ({env['cpu_model']}), torch {env['torch']} with"
        f" {env['torch_threads']} threads; max batch {env['max_batch_size']}, batch wait"
        f" {env['max_batch_wait_ms']:g} ms; {env['date']}, commit"
        f" {(env['git_commit'] or '')[:10]}{' (dirty)' if env['git_dirty'] else ''};"
        f" {results['duration_s']:.0f} s (warm-up {results.get('warmup_s') or 0:.0f} s)"
        + (", --quick" if results["quick"] else "")
        + ". Load average at start / end: "
        + " / ".join(f"{env[k][0]:.2f}" for k in ("load_average_at_start", "load_average_at_end"))
        + ".",
        "",
        *noise_warning(results, ("unary", "streams")),
        f"Every call speaks in {voice['name']}, cloned from {voice['reference']}"
        f" ({voice['stored_reference_s']:.1f} s stored, {voice['prompt_frames']} codec frames);"
        " both paths make the same calls with the same seeds. All ratios are between figures"
        " measured in this one run, on the same loaded model.",
        "",
    ]
    unary = results.get("unary")
    if unary:
        rows = []
        for r in unary["runs"]:
            g, d = r["grpc"], r["direct"]
            rows.append(
                [
                    r["concurrency"],
                    fmt(d["audio_s_per_s"]),
                    fmt(g["audio_s_per_s"]),
                    fmt(r["grpc_over_direct"], 3),
                    f"{fmt(d['rtf']['p50'], 3)} / {fmt(g['rtf']['p50'], 3)}",
                    f"{fmt(d['latency_s']['p50'])} / {fmt(g['latency_s']['p50'])}",
                    f"{fmt(d['audio_s'], 1)} / {fmt(g['audio_s'], 1)}",
                    f"{fmt(d['batches']['mean_batch_size'], 1)} /"
                    f" {fmt(g['batches']['mean_batch_size'], 1)}",
                    f"{fmt(d['cpu']['other_processes_cores'])} /"
                    f" {fmt(g['cpu']['other_processes_cores'])}",
                ]
            )
        lines += [
            "## Synthesize (one sentence per call)",
            "",
            "Throughput in seconds of audio produced per wall second; real-time factor (call"
            " latency / audio seconds) and latency per call. A unary call returns all its audio"
            " at once: with one caller, its latency is the time to first audio.",
            "",
            table(
                [
                    "callers",
                    "direct audio s/s",
                    "gRPC audio s/s",
                    "gRPC / direct",
                    "RTF p50 direct / gRPC",
                    "latency p50 s direct / gRPC",
                    "audio s direct / gRPC",
                    "mean batch direct / gRPC",
                    "other cores direct / gRPC",
                ],
                rows,
            ),
            "",
        ]
    streams = results.get("streams")
    if streams:
        rows = []
        for r in streams["runs"]:
            for path in ("direct", "grpc", "first_sentence_alone"):
                f = r.get(path)
                if not f:
                    continue
                rows.append(
                    [
                        r["concurrency"],
                        path.replace("_", " "),
                        f["streams"],
                        fmt(f["first_audio_s"]["p50"], 3),
                        fmt(f["first_audio_s"]["p90"], 3),
                        " / ".join(
                            fmt(f["first_audio_parts_s"][k], 3)
                            for k in ("to_model_s", "model_s", "from_model_s")
                        ),
                        fmt(f["audio_s"], 1),
                        fmt(f["batches"]["mean_batch_size"], 1),
                        fmt(f["cpu"]["other_processes_cores"]),
                        len(f["errors"]),
                    ]
                )
        lines += [
            "## StreamingSynthesize (text arriving word by word)",
            "",
            f"{streams['pieces']} pieces, one every {streams['piece_interval_s'] * 1000:g} ms;"
            f' the first sentence ("{streams["first_sentence"]}") is complete when piece'
            f" {streams['first_sentence_completed_by_piece']} is sent (it carries the start of"
            " the next). Seconds from then to the first audio chunk; 'first sentence alone' is"
            " that sentence through the synthesizer in-process with nothing else (the engine's"
            " own time for it). That time splits at the forward pass that spoke the first"
            " sentence: the wait before it, the pass itself, and the time from its end to the"
            " audio at the caller.",
            "",
            table(
                [
                    "streams",
                    "path",
                    "count",
                    "first audio p50 s",
                    "p90 s",
                    "p50 s: to / in / from the model",
                    "audio s",
                    "mean batch",
                    "other cores",
                    "errors",
                ],
                rows,
            ),
            "",
        ]
    voices = results.get("voices")
    if voices:
        s, i, d = voices["stored_latency_s"], voices["inline_latency_s"], voices["saved_s"]
        lines += [
            "## Stored voice vs inline reference audio (Synthesize)",
            "",
            f"The same sentence and seed, {voices['calls_per_path']} calls each, interleaved;"
            " inline, the service decodes, validates and Mimi-encodes the recording on every"
            " call (the prompt it makes is the stored one:"
            f" {fmt(voices['inline_prompt_matches_stored'])}).",
            "",
            table(
                ["voice", "latency p50 s", "p90 s", "audio s"],
                [
                    [
                        "stored",
                        fmt(s["p50"], 3),
                        fmt(s["p90"], 3),
                        fmt(voices["audio_s"]["stored"]),
                    ],
                    [
                        "inline",
                        fmt(i["p50"], 3),
                        fmt(i["p90"], 3),
                        fmt(voices["audio_s"]["inline"]),
                    ],
                    ["saved (per pair)", fmt(d["p50"], 3), fmt(d["p90"], 3), ""],
                ],
            ),
            "",
        ]
    lines += [
        "## Targets",
        "",
        table(
            ["target", "measured", "needed", "result"],
            [
                [
                    t["description"],
                    fmt(t["measured"], 3),
                    f"{'≥' if t['comparison'] == '>=' else '≤'} {fmt(t['threshold'], 3)}",
                    fmt(t["pass"]),
                ]
                for t in results["targets"]
            ],
        ),
        "",
    ]
    return "\n".join(lines)


def _tiny_csm() -> pathlib.Path:
    from speechmesh.tiny.models import build_tiny

    dest = pathlib.Path(tempfile.gettempdir()) / "speechmesh-bench" / "tiny-csm"
    if not (dest / "config.json").is_file():
        build_tiny("csm", dest)
    return dest


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser("tts", __doc__, "unary,streams,voices", service=True)
    parser.add_argument("--model", help="CSM folder or hub id (default: tiny random)")
    parser.add_argument(
        "--reference",
        type=pathlib.Path,
        default=DEFAULT_REFERENCE,
        help="reference recording of the voice (default: a LibriVox clip in ../shared/audio)",
    )
    parser.add_argument(
        "--transcript", help="its exact words (default: from the MANIFEST.tsv above it)"
    )
    args = parser.parse_args(argv)
    if not args.reference.is_file():
        parser.error(f"no reference recording at {args.reference}")
    args.model = args.model or str(_tiny_csm())
    return run_and_write(args, run, markdown, _log)


if __name__ == "__main__":
    sys.exit(main())
