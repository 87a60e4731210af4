"""The TTS benchmark's service and the paths bench.tts measures on it.

`Bench` serves the TTS service in this process (ServiceHost + build_app, port 0, no metrics
server, voices in a temporary folder), creates the benchmark's voice through CreateVoice, and
calls the service each way bench.tts compares: gRPC, the same synthesizer and batcher called
in-process (direct), the stream's first sentence spoken alone, a stored voice and the same
recording inline. It turns measured blocks of calls into figures; bench.tts plans and runs them.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING

import numpy as np

from bench.common import Block, Clip, costs, load_clips, pooled, summary
from bench.served import ServedBench, service_settings, tiny_checkpoint
from bench.translate import SENTENCES

if TYPE_CHECKING:
    from bench.tts import Plan

#: Seconds between text pieces of a stream (a language model writing ~33 tokens a second).
PIECE_INTERVAL_S = 0.03
#: Sentences of the streamed text (the first three of SENTENCES).
STREAM_SENTENCES = 3
VOICE_ID = "bench-reader"
VOICE_NAME = f"voices/{VOICE_ID}"
LANGUAGE = "en"
#: Seeds: unary call k of every block gets UNARY_SEED + k (with sentence k of SENTENCES); every
#: stream and every voice comparison call uses one seed. So every block of a run repeats the same
#: work, all of which the warm-up has done once (bench.tts's warm-up).
UNARY_SEED = 1_000
STREAM_SEED = 7
VOICE_SEED = 11


class Bench(ServedBench):
    """The TTS service, its voice, and the ways of calling it."""

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
        model = self.args.model or tiny_checkpoint("csm")
        settings = service_settings(
            TtsSettings, self.args, model=str(model), voices_dir=self.voices_dir.name
        )
        await self.serve(build_app, settings, TtsModels)
        if not self.engine.supports_cloning:
            await self.stop()
            raise SystemExit(f"bench: {self.engine.name} cannot clone voices; give a CSM model")
        # What the servicer builds for every call (servicer._synthesizer).
        self.synthesizer = Synthesizer(
            self.engine, self.model.batcher, self.settings.sentence_pause_ms / 1000
        )
        self.record(self.model.batcher)
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
        await super().stop()
        self.voices_dir.cleanup()

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
        """Call k of every block: sentence k, seed UNARY_SEED + k. Items: (audio s, latency)."""
        calls = max(self.plan.unary_calls[concurrency], concurrency)

        async def measure(call: Callable, _block: int) -> Block:
            def one(k: int) -> Awaitable[float]:
                return call(SENTENCES[k % len(SENTENCES)], UNARY_SEED + k)

            return await self.closed_loop(calls, concurrency, one)

        return measure

    @staticmethod
    def unary_figures(blocks: list[Block], concurrency: int) -> dict:
        records, wall = pooled(blocks)
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
            **costs(blocks, wall),
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

            block = await self.block(worker, concurrency, records)
            for record in records:
                _split_first_audio(record, block.batches)
            return block

        return measure

    @staticmethod
    def stream_figures(blocks: list[Block], concurrency: int) -> dict:
        records, wall = pooled(blocks)
        done = [r for r in records if not r["error"] and "first_at" in r and "ready" in r]
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
            **costs(blocks, wall),
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
