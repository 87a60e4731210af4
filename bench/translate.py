"""Translate benchmark: the gRPC service against the same translator called in-process.

    python -m bench.translate [--model PATH] [--quick] [--out bench/results]

Starts the translate service in this process (ServiceHost + build_app, port 0, no metrics
server) and talks to it over a real grpc.aio channel, like any client. Without --model it runs
on a tiny random SeamlessM4T v2 built offline (the model hub is out of reach here): the figures
then measure the service around the model, not translation quality. On the loaded model:

- TranslateText with 1, 8 and 32 sentences per call from 1, 4 and 16 concurrent callers
  (English to French), and the same calls through the same translator and batcher in-process
  (`translator.translate_texts`), as a ratio of sentences per second; and 16 concurrent
  single-sentence callers against one caller sending 16 sentences per call;
- TranslateSpeech to speech and text on real LibriVox clips at 1 and 4 concurrent callers:
  real-time factor, gRPC and direct;
- StreamingTranslateSpeech, live: LINEAR16 in 100 ms chunks, each sent when a microphone would
  have captured it, then 1 s of silence and a half-close, text and speech out: time from the
  end of a segment's speech to its translated text and to its first translated audio chunk,
  gRPC and the same stream through `TranslationStream` in-process.

Paths compared run on the same blocks of work, interleaved (direct, gRPC, then gRPC, direct,
...), so that other load on the machine falls on both alike; the CPU other processes used
meanwhile is recorded beside each figure. Writes NAME.json and, by bench.translate_report
(the targets and the tables), NAME.md under --out.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import AsyncIterator, Callable

from bench import translate_report
from bench.common import (
    Block,
    Clip,
    bench_parser,
    costs,
    load_clips,
    pooled,
    run_and_write,
    summary,
)
from bench.report import fmt
from bench.served import ServedBench, measuring, service_settings, tiny_checkpoint

PER_CALL = (1, 8, 32)
CONCURRENCY = (1, 4, 16)
SPEECH_CONCURRENCY = (1, 4)
STREAM_CONCURRENCY = (1, 4)
CHUNK_S = 0.1
TRAILING_SILENCE_S = 1.0
SOURCE, TARGET = "en", "fr"

#: English sentences to translate (public domain: Austen, Sense and Sensibility, ch. 1-2).
SENTENCES = [
    "The family of Dashwood had long been settled in Sussex.",
    "Their estate was large, and their residence was at Norland Park.",
    "The late owner of this estate was a single man, who lived to a very advanced age.",
    "For many years of his life he had a constant companion and housekeeper in his sister.",
    "But her death, which happened ten years before his own, produced a great alteration.",
    "He invited and received into his house the family of his nephew.",
    "In the society of his nephew and niece, and their children, his days were comfortably spent.",
    "His attachment to them all increased.",
    "The constant attention of Mr. and Mrs. Henry Dashwood to his wishes gave him every comfort.",
    "By a former marriage, Mr. Henry Dashwood had one son.",
    "By his present lady, three daughters.",
    "The son, a steady respectable young man, was amply provided for by the fortune of his mother.",
    "The old gentleman died: his will was read, and like almost every other will, gave as much"
    " disappointment as pleasure.",
    "He was neither so unjust, nor so ungrateful, as to leave his estate from his nephew.",
    "Mr. Dashwood's disappointment was, at first, severe.",
    "But his temper was cheerful and sanguine.",
    "He might reasonably hope to live many years.",
    "By living economically, he might lay by a considerable sum.",
    "His son was sent for as soon as his danger was known.",
    "Mr. John Dashwood had not the strong feelings of the rest of the family.",
    "He was not an ill-disposed young man, unless to be rather cold hearted is to be ill-disposed.",
    "Had he married a more amiable woman, he might have been made still more respectable.",
    "He might even have been made amiable himself.",
    "He was very young when he married, and very fond of his wife.",
    "Mrs. John Dashwood was a strong caricature of himself.",
    "When he gave his promise to his father, he meditated within himself to increase the fortunes"
    " of his sisters.",
    "He felt capable of generosity.",
    "The prospect of four thousand a year warmed his heart.",
    "He thought of it all day long, and for many days successively.",
    "No sooner was his father's funeral over, than Mrs. John Dashwood arrived with her child.",
    "No one could dispute her right to come.",
    "The house was her husband's from the moment of his father's decease.",
]


class Plan:
    def __init__(self, quick: bool):
        self.quick = quick
        #: Sentences translated per block of a text run, and blocks per path.
        self.text_sentences = 48 if quick else 128
        self.text_blocks = 2 if quick else 3
        self.speech_requests = 4 if quick else 8
        self.speech_blocks = 2
        self.stream_rounds = 1 if quick else 2


class Bench(ServedBench):
    """The translate service and the ways of calling it."""

    def __init__(self, args: argparse.Namespace, plan: Plan):
        self.args = args
        self.plan = plan

    async def start(self) -> None:
        from speechmesh.audio.v1 import audio_pb2
        from speechmesh.translate.app import build_app
        from speechmesh.translate.config import TranslateSettings
        from speechmesh.translate.models import TranslateModels
        from speechmesh.translate.v1 import translate_pb2, translate_pb2_grpc

        model = self.args.model or tiny_checkpoint("seamless_m4t_v2", "tiny-seamless")
        settings = service_settings(TranslateSettings, self.args, model=str(model))
        await self.serve(build_app, settings, TranslateModels)
        self.translator = self.model.translator
        self.record(self.translator.batcher)
        self.stub = translate_pb2_grpc.TranslateServiceStub(self.channel)
        self.pb = translate_pb2
        modalities = [translate_pb2.MODALITY_TEXT, translate_pb2.MODALITY_SPEECH]
        self.speech_config = translate_pb2.SpeechTranslationConfig(
            target_language_code=TARGET, output_modalities=modalities
        )
        self.speech_options = self.translator.speech_options(
            "", TARGET, want_text=True, want_speech=True
        )
        stream_config = translate_pb2.SpeechTranslationConfig()
        stream_config.CopyFrom(self.speech_config)
        stream_config.audio_format.CopyFrom(
            audio_pb2.AudioFormat(
                encoding=audio_pb2.AUDIO_ENCODING_LINEAR16,
                sample_rate_hertz=self.engine.input_sample_rate,
            )
        )
        self.stream_cfg = translate_pb2.StreamingSpeechTranslationConfig(config=stream_config)
        from speechmesh.translate.servicer import _endpointing

        self.endpointing = _endpointing(self.stream_cfg, self.engine.max_speech_seconds)
        self.clips = load_clips(self.args.audio, self.engine.input_sample_rate)

    # -- text ----------------------------------------------------------------------------

    async def grpc_text(self, texts: list[str]) -> list[str]:
        request = self.pb.TranslateTextRequest(
            texts=texts, source_language_code=SOURCE, target_language_code=TARGET
        )
        response = await self.stub.TranslateText(request)
        return [t.translated_text for t in response.translations]

    async def direct_text(self, texts: list[str]) -> list[str]:
        return [t.text for t in await self.translator.translate_texts(texts, SOURCE, TARGET)]

    def text_measure(self, per_call: int, concurrency: int) -> Callable:
        """Call k of block b: the next `per_call` sentences from sentence (b * calls + k) *
        per_call on. Items: (sentences, latency)."""
        calls = max(self.plan.text_sentences // per_call, concurrency)

        async def measure(call: Callable, block: int) -> Block:
            async def one(k: int) -> int:
                at = (block * calls + k) * per_call
                out = await call([SENTENCES[(at + i) % len(SENTENCES)] for i in range(per_call)])
                assert len(out) == per_call
                return per_call

            return await self.closed_loop(calls, concurrency, one)

        return measure

    @staticmethod
    def text_figures(blocks: list[Block], per_call: int, concurrency: int) -> dict:
        records, wall = pooled(blocks)
        sentences = sum(n for n, _ in records)
        return {
            "sentences_per_call": per_call,
            "concurrency": concurrency,
            "calls": len(records),
            "sentences": sentences,
            "wall_s": wall,
            "sentences_per_s": sentences / wall,
            "latency_s": summary([lat for _, lat in records]),
            **costs(blocks, wall),
        }

    # -- speech --------------------------------------------------------------------------

    async def grpc_speech(self, clip: Clip) -> float:
        request = self.pb.TranslateSpeechRequest(audio=clip.data, config=self.speech_config)
        response = await self.stub.TranslateSpeech(request)
        return response.translated_audio_duration.ToNanoseconds() / 1e9

    async def direct_speech(self, clip: Clip) -> float:
        result = await self.translator.translate_speech(clip.samples, self.speech_options)
        return len(result.audio) / result.sample_rate

    def speech_measure(self, concurrency: int) -> Callable:
        """Call k of block b: clip b * calls + k (cycling). Items: (clip, latency)."""
        calls = max(self.plan.speech_requests, concurrency)

        async def measure(call: Callable, block: int) -> Block:
            async def one(k: int) -> Clip:
                clip = self.clips[(block * calls + k) % len(self.clips)]
                await call(clip)
                return clip

            return await self.closed_loop(calls, concurrency, one)

        return measure

    @staticmethod
    def speech_figures(blocks: list[Block], concurrency: int) -> dict:
        records, wall = pooled(blocks)
        audio = sum(clip.seconds for clip, _ in records)
        return {
            "concurrency": concurrency,
            "requests": len(records),
            "audio_s": audio,
            "wall_s": wall,
            "audio_s_per_s": audio / wall,
            "latency_s": summary([lat for _, lat in records]),
            "rtf": summary([lat / clip.seconds for clip, lat in records]),
            **costs(blocks, wall),
        }

    # -- streams -------------------------------------------------------------------------

    async def paced(self, clip: Clip, record: dict) -> AsyncIterator[bytes]:
        """The clip, then silence, as LINEAR16 chunks, each sent once its audio is 'captured'."""
        rate = clip.sample_rate
        step = int(rate * CHUNK_S)
        pcm = clip.pcm16 + bytes(2 * int(rate * TRAILING_SILENCE_S))
        start = record["start"] = time.perf_counter()
        for a in range(0, len(pcm) // 2, step):
            b = min(a + step, len(pcm) // 2)
            delay = start + b / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            yield pcm[2 * a : 2 * b]

    async def grpc_stream(self, clip: Clip, record: dict) -> None:
        pb = self.pb

        async def requests():
            yield pb.StreamingTranslateSpeechRequest(streaming_config=self.stream_cfg)
            async for chunk in self.paced(clip, record):
                yield pb.StreamingTranslateSpeechRequest(audio=chunk)

        async for r in self.stub.StreamingTranslateSpeech(requests()):
            kind = r.WhichOneof("streaming_response")
            end = r.end_offset.ToNanoseconds() / 1e9
            if kind == "translation":
                _arrived(record, "text", r.segment_index, end)
            elif kind == "audio_chunk" and r.audio_chunk.duration.ToNanoseconds() > 0:
                _arrived(record, "audio", r.segment_index, end)

    async def direct_stream(self, clip: Clip, record: dict) -> None:
        from speechmesh.dsp.audio import RawFormat
        from speechmesh.translate.streaming import (
            DirectSegments,
            SegmentSpeech,
            SegmentText,
            TranslationStream,
        )

        # As the servicer builds it for a stream with this config.
        raw = RawFormat("linear16", clip.sample_rate)
        segments = DirectSegments(self.translator, self.speech_options)
        stream = TranslationStream(segments, self.models.stream_vad, self.endpointing, raw)
        async for event in stream.run(self.paced(clip, record)):
            if isinstance(event, SegmentText):
                _arrived(record, "text", event.index, event.end)
            elif isinstance(event, SegmentSpeech):
                _arrived(record, "audio", event.index, event.end)

    def stream_measure(self, concurrency: int) -> Callable:
        async def measure(run: Callable, block: int) -> Block:
            records: list[dict] = []

            async def worker(w: int) -> None:
                await asyncio.sleep(w * CHUNK_S / concurrency)
                clip = self.clips[(block * concurrency + w) % len(self.clips)]
                record: dict = {"clip": clip, "text": {}, "audio": {}, "error": None}
                records.append(record)
                try:
                    await run(clip, record)
                except Exception as error:  # reported in the results
                    record["error"] = repr(error)

            return await self.block(worker, concurrency, records)

        return measure

    def stream_figures(self, blocks: list[Block], concurrency: int) -> dict:
        records, wall = pooled(blocks)
        endpoint = self.endpointing.endpoint_silence
        to_text = [t for r in records for t in r["text"].values()]
        to_audio = [t for r in records for t in r["audio"].values()]
        return {
            "concurrency": concurrency,
            "streams": len(records),
            "segments": len(to_text),
            "errors": [r["error"] for r in records if r["error"]],
            "speech_end_to_text_s": summary(to_text),
            "speech_end_to_first_audio_s": summary(to_audio),
            "endpoint_to_text_s": summary([t - endpoint for t in to_text]),
            "endpoint_to_first_audio_s": summary([t - endpoint for t in to_audio]),
            **costs(blocks, wall),
        }


def _arrived(record: dict, what: str, segment: int, end: float) -> None:
    """First arrival of `what` for a segment: seconds after its speech ended (in stream time)."""
    if segment not in record[what]:
        record[what][segment] = time.perf_counter() - (record["start"] + end)


def _log(message: str) -> None:
    print(f"[bench.translate] {message}", file=sys.stderr, flush=True)


async def run(args: argparse.Namespace) -> dict:
    bench = Bench(args, Plan(args.quick))
    sections = set(args.sections.split(","))
    async with measuring("translate", args, bench, _log) as results:
        _log("warm-up")
        for per_call in (1, 8, 16, 32):
            await bench.direct_text(SENTENCES[:per_call])
            await bench.grpc_text(SENTENCES[:per_call])
        if "text" in sections:
            results["text"] = {"runs": await _text(bench)}
        if "speech" in sections:
            results["speech_to_speech"] = {"runs": await _speech(bench)}
        if "streams" in sections:
            results["streams"] = {
                "chunk_s": CHUNK_S,
                "endpoint_silence_s": bench.endpointing.endpoint_silence,
                "runs": await _streams(bench),
            }
    return results


async def _text(bench: Bench) -> list[dict]:
    runs = []
    for per_call, c in [(p, c) for p in PER_CALL for c in CONCURRENCY] + [(16, 1)]:
        run_ = await bench.compare("text", (per_call, c), bench.plan.text_blocks, "sentences_per_s")
        _log(
            f"text {per_call}/call x {c}: direct {run_['direct']['sentences_per_s']:.1f}, gRPC"
            f" {run_['grpc']['sentences_per_s']:.1f} sentences/s,"
            f" ratio {run_['grpc_over_direct']:.3f}"
        )
        runs.append({"sentences_per_call": per_call, "concurrency": c, **run_})
    return runs


async def _speech(bench: Bench) -> list[dict]:
    runs = []
    for c in SPEECH_CONCURRENCY:
        run_ = await bench.compare("speech", (c,), bench.plan.speech_blocks, "audio_s_per_s")
        rtf = {path: fmt(run_[path]["rtf"]["p50"], 3) for path in ("direct", "grpc")}
        _log(f"speech-to-speech x {c}: RTF p50 direct {rtf['direct']}, gRPC {rtf['grpc']}")
        runs.append({"concurrency": c, **run_})
    return runs


async def _streams(bench: Bench) -> list[dict]:
    runs = []
    for c in STREAM_CONCURRENCY:
        run_ = await bench.compare("stream", (c,), bench.plan.stream_rounds * 2)
        p50 = {path: fmt(run_[path]["endpoint_to_text_s"]["p50"], 3) for path in run_}
        _log(f"streams x {c}: endpoint to text p50 direct {p50['direct']}, gRPC {p50['grpc']} s")
        runs.append({"concurrency": c, **run_})
    return runs


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser("translate", __doc__, "text,speech,streams", audio=True)
    parser.add_argument("--model", help="SeamlessM4T v2 folder or hub id (default: tiny random)")
    return run_and_write(parser.parse_args(argv), run, translate_report, _log)


if __name__ == "__main__":
    sys.exit(main())
