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
meanwhile is recorded beside each figure. Writes NAME.json and NAME.md under --out.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import pathlib
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable

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
    peak_rss_mib,
    rss_mib,
    run_and_write,
    summary,
    table,
    timed_block,
)

PER_CALL = (1, 8, 32)
CONCURRENCY = (1, 4, 16)
SPEECH_CONCURRENCY = (1, 4)
STREAM_CONCURRENCY = (1, 4)
CHUNK_S = 0.1
TRAILING_SILENCE_S = 1.0
GRPC_VS_DIRECT_TARGET = 0.95
SINGLES_VS_ONE_CALL_TARGET = 0.9
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


class Bench:
    """The service, served in-process, plus direct handles on the model it loaded."""

    def __init__(self, args: argparse.Namespace, plan: Plan):
        self.args = args
        self.plan = plan

    async def start(self) -> None:
        from speechmesh.audio.v1 import audio_pb2
        from speechmesh.translate.app import build_app
        from speechmesh.translate.config import TranslateSettings
        from speechmesh.translate.models import TranslateModels
        from speechmesh.translate.v1 import translate_pb2, translate_pb2_grpc

        overrides = {"device": self.args.device} if self.args.device else {}
        self.settings = TranslateSettings(
            model=str(self.args.model),
            host="127.0.0.1",
            port=0,
            metrics=False,
            metrics_port=0,
            log_level=self.args.log_level,
            **overrides,
        )
        self.service = InProcessService(build_app, self.settings, TranslateModels)
        self.channel = await self.service.start()
        self.models = self.service.models
        self.load_s = self.service.load_s
        self.rss_after_load_mib = rss_mib()
        self.model = self.models.default
        self.engine = self.model.engine
        self.translator = self.model.translator
        self.recorder = BatchRecorder(self.translator.batcher)
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

    async def stop(self) -> None:
        self.recorder.restore()
        await self.service.stop()

    async def _block(self, worker: Callable, concurrency: int, items: list) -> Block:
        return await timed_block(worker, concurrency, items, self.recorder)

    # -- text ----------------------------------------------------------------------------

    async def grpc_text(self, texts: list[str]) -> list[str]:
        request = self.pb.TranslateTextRequest(
            texts=texts, source_language_code=SOURCE, target_language_code=TARGET
        )
        response = await self.stub.TranslateText(request)
        return [t.translated_text for t in response.translations]

    async def direct_text(self, texts: list[str]) -> list[str]:
        return await self.translator.translate_texts(texts, SOURCE, TARGET)

    def text_measure(self, per_call: int, concurrency: int) -> Callable:
        async def measure(call: Callable, block: int) -> Block:
            calls = max(self.plan.text_sentences // per_call, concurrency)
            counter = itertools.count()
            records: list[tuple[int, float]] = []

            async def caller(_worker: int) -> None:
                while (index := next(counter)) < calls:
                    at = (block * calls + index) * per_call
                    texts = [SENTENCES[(at + k) % len(SENTENCES)] for k in range(per_call)]
                    sent = time.perf_counter()
                    out = await call(texts)
                    assert len(out) == per_call
                    records.append((per_call, time.perf_counter() - sent))

            return await self._block(caller, concurrency, records)

        return measure

    @staticmethod
    def text_figures(blocks: list[Block], per_call: int, concurrency: int) -> dict:
        records = [r for b in blocks for r in b.items]
        wall = sum(b.wall for b in blocks)
        sentences = sum(n for n, _ in records)
        return {
            "sentences_per_call": per_call,
            "concurrency": concurrency,
            "calls": len(records),
            "sentences": sentences,
            "wall_s": wall,
            "sentences_per_s": sentences / wall,
            "latency_s": summary([lat for _, lat in records]),
            "batches": batch_summary([b.batches for b in blocks], wall),
            "cpu": cpu_of(blocks),
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
        async def measure(call: Callable, block: int) -> Block:
            total = max(self.plan.speech_requests, concurrency)
            counter = itertools.count()
            records: list[tuple[Clip, float]] = []

            async def caller(_worker: int) -> None:
                while (index := next(counter)) < total:
                    clip = self.clips[(block * total + index) % len(self.clips)]
                    sent = time.perf_counter()
                    await call(clip)
                    records.append((clip, time.perf_counter() - sent))

            return await self._block(caller, concurrency, records)

        return measure

    @staticmethod
    def speech_figures(blocks: list[Block], concurrency: int) -> dict:
        records = [r for b in blocks for r in b.items]
        wall = sum(b.wall for b in blocks)
        audio = sum(clip.seconds for clip, _ in records)
        return {
            "concurrency": concurrency,
            "requests": len(records),
            "audio_s": audio,
            "wall_s": wall,
            "audio_s_per_s": audio / wall,
            "latency_s": summary([lat for _, lat in records]),
            "rtf": summary([lat / clip.seconds for clip, lat in records]),
            "batches": batch_summary([b.batches for b in blocks], wall),
            "cpu": cpu_of(blocks),
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
        from speechmesh.translate.streaming import SegmentSpeech, SegmentText, TranslationStream

        # As the servicer builds it for a stream with this config.
        raw = RawFormat("linear16", clip.sample_rate)
        stream = TranslationStream(
            self.translator, self.models.stream_vad, self.endpointing, raw, self.speech_options
        )
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

            return await self._block(worker, concurrency, records)

        return measure

    def stream_figures(self, blocks: list[Block], concurrency: int) -> dict:
        records = [r for b in blocks for r in b.items]
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
            "batches": batch_summary([b.batches for b in blocks], sum(b.wall for b in blocks)),
            "cpu": cpu_of(blocks),
        }


def _arrived(record: dict, what: str, segment: int, end: float) -> None:
    """First arrival of `what` for a segment: seconds after its speech ended (in stream time)."""
    if segment not in record[what]:
        record[what][segment] = time.perf_counter() - (record["start"] + end)


def _log(message: str) -> None:
    print(f"[bench.translate] {message}", file=sys.stderr, flush=True)


def _ratio(via_grpc: dict, direct: dict, key: str) -> float:
    return via_grpc[key] / direct[key]


async def run(args: argparse.Namespace) -> dict:
    from speechmesh.runtime.logging import configure_logging

    configure_logging(args.log_level, "json")
    plan = Plan(args.quick)
    bench = Bench(args, plan)
    began = time.perf_counter()
    await bench.start()
    env = environment(bench.engine, bench.settings)
    env["random_weights"] = bench.engine.random_weights
    _log(f"model {bench.engine.name} on {bench.engine.device}, loaded in {bench.load_s:.1f} s")
    results: dict = {"benchmark": "translate", "quick": plan.quick, "environment": env}
    sections = set(args.sections.split(","))
    try:
        _log("warm-up")
        for per_call in (1, 8, 16, 32):
            await bench.direct_text(SENTENCES[:per_call])
            await bench.grpc_text(SENTENCES[:per_call])
        if "text" in sections:
            runs = []
            shapes = [(p, c) for p in PER_CALL for c in CONCURRENCY] + [(16, 1)]
            for per_call, concurrency in shapes:
                paths = {"direct": bench.direct_text, "grpc": bench.grpc_text}
                measure = bench.text_measure(per_call, concurrency)
                measured = await interleaved(measure, paths, plan.text_blocks)
                direct = bench.text_figures(measured["direct"], per_call, concurrency)
                via_grpc = bench.text_figures(measured["grpc"], per_call, concurrency)
                ratio = _ratio(via_grpc, direct, "sentences_per_s")
                _log(
                    f"text {per_call}/call x {concurrency}: direct"
                    f" {direct['sentences_per_s']:.1f}, gRPC {via_grpc['sentences_per_s']:.1f}"
                    f" sentences/s, ratio {ratio:.3f}"
                )
                runs.append(
                    {
                        "sentences_per_call": per_call,
                        "concurrency": concurrency,
                        "grpc": via_grpc,
                        "direct": direct,
                        "grpc_over_direct": ratio,
                    }
                )
            results["text"] = {"runs": runs}
        if "speech" in sections:
            runs = []
            for concurrency in SPEECH_CONCURRENCY:
                paths = {"direct": bench.direct_speech, "grpc": bench.grpc_speech}
                measure = bench.speech_measure(concurrency)
                measured = await interleaved(measure, paths, plan.speech_blocks)
                direct = bench.speech_figures(measured["direct"], concurrency)
                via_grpc = bench.speech_figures(measured["grpc"], concurrency)
                ratio = _ratio(via_grpc, direct, "audio_s_per_s")
                _log(
                    f"speech-to-speech x {concurrency}: RTF p50 direct"
                    f" {fmt(direct['rtf']['p50'], 3)}, gRPC {fmt(via_grpc['rtf']['p50'], 3)}"
                )
                runs.append(
                    {
                        "concurrency": concurrency,
                        "grpc": via_grpc,
                        "direct": direct,
                        "grpc_over_direct": ratio,
                    }
                )
            results["speech_to_speech"] = {"runs": runs}
        if "streams" in sections:
            runs = []
            for concurrency in STREAM_CONCURRENCY:
                paths = {"direct": bench.direct_stream, "grpc": bench.grpc_stream}
                measure = bench.stream_measure(concurrency)
                measured = await interleaved(measure, paths, plan.stream_rounds * 2)
                direct = bench.stream_figures(measured["direct"], concurrency)
                via_grpc = bench.stream_figures(measured["grpc"], concurrency)
                _log(
                    f"streams x {concurrency}: endpoint to text p50 direct"
                    f" {fmt(direct['endpoint_to_text_s']['p50'], 3)}, gRPC"
                    f" {fmt(via_grpc['endpoint_to_text_s']['p50'], 3)} s"
                )
                runs.append({"concurrency": concurrency, "grpc": via_grpc, "direct": direct})
            results["streams"] = {
                "chunk_s": CHUNK_S,
                "endpoint_silence_s": bench.endpointing.endpoint_silence,
                "runs": runs,
            }
    finally:
        results["memory"] = {
            "rss_after_load_mib": bench.rss_after_load_mib,
            "peak_rss_mib": peak_rss_mib(),
            **cuda_memory(str(bench.engine.device)),
        }
        env["load_average_at_end"] = list(os.getloadavg())
        results["duration_s"] = time.perf_counter() - began
        await bench.stop()
    results["targets"] = targets(results)
    results["all_targets_pass"] = all(t["pass"] for t in results["targets"])
    return results


def targets(results: dict) -> list[dict]:
    out = []
    text = results.get("text")
    if not text:
        return out
    for r in text["runs"]:
        out.append(
            {
                "name": f"text_grpc_over_direct_{r['sentences_per_call']}x{r['concurrency']}",
                "description": f"gRPC / direct throughput, {r['sentences_per_call']} sentences"
                f" per call, {r['concurrency']} concurrent callers",
                "measured": r["grpc_over_direct"],
                "threshold": GRPC_VS_DIRECT_TARGET,
                "pass": r["grpc_over_direct"] >= GRPC_VS_DIRECT_TARGET,
            }
        )
    shape = {(r["sentences_per_call"], r["concurrency"]): r for r in text["runs"]}
    singles, one = shape[(1, 16)], shape[(16, 1)]
    ratio = singles["grpc"]["sentences_per_s"] / one["grpc"]["sentences_per_s"]
    out.append(
        {
            "name": "text_16_single_callers_over_one_16_sentence_call",
            "description": "16 concurrent 1-sentence gRPC callers / 1 caller sending 16 sentences"
            " per call (throughput)",
            "measured": ratio,
            "threshold": SINGLES_VS_ONE_CALL_TARGET,
            "pass": ratio >= SINGLES_VS_ONE_CALL_TARGET,
        }
    )
    return out


def markdown(results: dict) -> str:
    env = results["environment"]
    lines = [
        "# Translate benchmark",
        "",
        f"{env['model']} ({'random weights' if env.get('random_weights') else 'trained'}) on"
        f" {env['device']} ({env['dtype']}), {env['cpu_count']} CPUs ({env['cpu_model']}),"
        f" torch {env['torch']} with {env['torch_threads']} threads; max batch"
        f" {env['max_batch_size']}, batch wait {env['max_batch_wait_ms']} ms;"
        f" {env['date']}, commit {(env['git_commit'] or '')[:10]}"
        f"{' (dirty)' if env['git_dirty'] else ''}; {results['duration_s']:.0f} s.",
        "",
    ]
    text = results.get("text")
    if text:
        rows = [
            [
                r["sentences_per_call"],
                r["concurrency"],
                fmt(r["direct"]["sentences_per_s"], 1),
                fmt(r["grpc"]["sentences_per_s"], 1),
                fmt(r["grpc_over_direct"], 3),
                fmt(r["grpc"]["latency_s"]["p50"], 3),
                fmt(r["grpc"]["batches"]["mean_batch_size"], 1),
                f"{fmt(r['direct']['cpu']['other_processes_cores'])} /"
                f" {fmt(r['grpc']['cpu']['other_processes_cores'])}",
            ]
            for r in text["runs"]
        ]
        lines += [
            "## TranslateText (sentences per second)",
            "",
            table(
                [
                    "sentences/call",
                    "callers",
                    "direct",
                    "gRPC",
                    "gRPC/direct",
                    "gRPC p50 s",
                    "mean batch",
                    "other cores (direct / gRPC)",
                ],
                rows,
            ),
            "",
        ]
    speech = results.get("speech_to_speech")
    if speech:
        rows = [
            [
                r["concurrency"],
                fmt(r["direct"]["rtf"]["p50"], 3),
                fmt(r["grpc"]["rtf"]["p50"], 3),
                fmt(r["direct"]["audio_s_per_s"], 2),
                fmt(r["grpc"]["audio_s_per_s"], 2),
                fmt(r["grpc_over_direct"], 3),
            ]
            for r in speech["runs"]
        ]
        lines += [
            "## TranslateSpeech to text and speech",
            "",
            table(
                [
                    "callers",
                    "RTF p50 direct",
                    "RTF p50 gRPC",
                    "audio s/s direct",
                    "audio s/s gRPC",
                    "gRPC/direct",
                ],
                rows,
            ),
            "",
        ]
    streams = results.get("streams")
    if streams:
        rows = []
        for r in streams["runs"]:
            for path in ("direct", "grpc"):
                f = r[path]
                rows.append(
                    [
                        r["concurrency"],
                        path,
                        f["segments"],
                        fmt(f["endpoint_to_text_s"]["p50"], 3),
                        fmt(f["endpoint_to_text_s"]["p90"], 3),
                        fmt(f["endpoint_to_first_audio_s"]["p50"], 3),
                        fmt(f["endpoint_to_first_audio_s"]["p90"], 3),
                        len(f["errors"]),
                    ]
                )
        lines += [
            "## StreamingTranslateSpeech (live, text and speech)",
            "",
            f"Seconds from the end of a segment's speech plus the {streams['endpoint_silence_s']}"
            " s of silence that ends it, to its translated text and to its first audio chunk.",
            "",
            table(
                [
                    "streams",
                    "path",
                    "segments",
                    "to text p50",
                    "p90",
                    "to audio p50",
                    "p90",
                    "errors",
                ],
                rows,
            ),
            "",
        ]
    lines += ["## Targets", ""]
    lines += [
        f"- {t['description']}: {fmt(t['measured'], 3)} (≥ {t['threshold']}):"
        f" {fmt(bool(t['pass']))}"
        for t in results["targets"]
    ]
    return "\n".join(lines) + "\n"


def _tiny_seamless() -> pathlib.Path:
    from speechmesh.tiny.models import build_tiny

    dest = pathlib.Path(tempfile.gettempdir()) / "speechmesh-bench" / "tiny-seamless"
    if not (dest / "config.json").is_file():
        build_tiny("seamless_m4t_v2", dest)
    return dest


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser("translate", __doc__, "text,speech,streams", service=True)
    parser.add_argument("--model", help="SeamlessM4T v2 folder or hub id (default: tiny random)")
    parser.add_argument(
        "--audio",
        type=pathlib.Path,
        default=SHARED / "audio" / "librivox",
        help="folder of .wav/.flac clips (default: ../shared/audio/librivox)",
    )
    args = parser.parse_args(argv)
    if not args.audio.is_dir():
        parser.error(f"no audio folder at {args.audio}")
    args.model = args.model or str(_tiny_seamless())
    return run_and_write(args, run, markdown, _log)


if __name__ == "__main__":
    sys.exit(main())
