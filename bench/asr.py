"""ASR benchmark: the gRPC service on both engines, against faster-whisper and a plain pipeline.

    python -m bench.asr --model ../shared/models/whisper-tiny.en [--quick] [--out bench/results]

Serves the ASR service in this process twice (ServiceHost + build_app, port 0, no metrics
server): with the default engine (engine=auto: CTranslate2, int8 on a CPU) and with the
transformers engine, and talks to each over a real grpc.aio channel, like any client. On the
same clips, in the same run, it measures:

- unary Recognize (LibriVox clips uploaded as WAV files) from 1, 8 and 16 closed-loop callers
  on both engines: throughput (audio seconds per wall second), latency, real-time factor and
  WER against the manifest's transcripts; for the default engine also the same recognizer and
  batcher called in-process (`recognizer.recognize`, as a gRPC / direct ratio) and the raw
  model (`engine.decode_batch` one clip at a time and in batches of 8);
- peers at the same concurrency (bench.asr_peers), each from N Python threads in a closed
  loop, given the decoded float32 samples: faster-whisper on the same CTranslate2 int8
  conversion with the same greedy decoding, in each (num_workers, cpu_threads) configuration
  (the best one at each concurrency is the peer figure), and a plain transformers pipeline;
- StreamingRecognize on the default engine at 1, 4 and 16 concurrent live streams: LINEAR16 in
  100 ms chunks, each sent when a microphone would have captured it, then 1 s of silence and a
  half-close, interim results on; time from the end of speech to the final result, time to the
  first interim result, WER of the finals, and the same streams through `StreamingSession`
  in-process, as a ratio;
- the service's memory per engine: `speechmesh serve asr --engine X` as a child process,
  16 concurrent Recognize calls for a few rounds, then its peak RSS (VmHWM) from /proc.

Paths compared with each other run on the same blocks of requests, interleaved (A, B, C, then
C, B, A, ...), so that other load on the machine falls on all alike; the CPU other processes
used meanwhile is recorded beside each figure. The gRPC client runs in the same process and on
the same event loop as the server, so the gRPC figures carry the client's cost too; the peers
pay no decoding of files and no RPC. Service settings come from SPEECHMESH_ASR_* variables as
in production (e.g. SPEECHMESH_ASR_MAX_BATCH_WAIT_MS), device auto unless --device.

Writes NAME.json (every figure, the targets and whether each passed) and NAME.md (the
Markdown tables, also printed) under --out.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import itertools
import math
import os
import pathlib
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import grpc

from bench.asr_peers import Peer, load_peers, service_memory, threaded_block
from bench.asr_report import markdown, targets
from bench.common import (
    SHARED,
    BatchRecorder,
    Block,
    Clip,
    CpuMeter,
    InProcessService,
    batch_summary,
    bench_parser,
    cpu_of,
    cuda_memory,
    environment,
    fmt,
    load_clips,
    peak_rss_mib,
    rss_mib,
    run_and_write,
    summary,
    timed_block,
    word_error_rate,
)

UNARY_CONCURRENCY = (1, 8, 16)
STREAM_CONCURRENCY = (1, 4, 16)
MEMORY_CONCURRENCY = 16
RAW_BATCH = 8
CHUNK_S = 0.1
TRAILING_SILENCE_S = 1.0


class Plan:
    """How much work each part does: full (~10 min on 2 quiet cores) or --quick (~3 min)."""

    def __init__(self, quick: bool, requests: int | None):
        self.quick = quick
        # unary requests per path and concurrency, in up to `unary_rounds` interleaved blocks
        self.unary_requests = requests or (4 if quick else 32)
        self.unary_rounds = 1 if quick else 4
        # each caller sends at least this many requests per block: with 2 the later ones go
        # out as earlier ones are answered (a closed loop), not all at once as one burst
        self.per_caller = 1 if quick else 2
        self.warmup_requests = 4 if quick else 8
        # concurrency -> rounds of that many streams, per path (0: not measured)
        self.stream_rounds = {1: 1, 4: 0, 16: 1} if quick else {1: 5, 4: 2, 16: 2}
        self.memory_rounds = 1 if quick else 3

    def unary_blocks(self, concurrency: int) -> list[int]:
        """The requests split into interleaved blocks of `per_caller` requests per caller or
        more (full: 1 caller [8, 8, 8, 8], 8 callers [16, 16], 16 callers [32])."""
        size = max(
            concurrency * self.per_caller, math.ceil(self.unary_requests / self.unary_rounds)
        )
        rounds = max(1, round(self.unary_requests / size))
        return [size] * rounds


# -- the services under test ---------------------------------------------------


class Served:
    """One ASR service served in this process with one engine setting, plus direct handles on
    the model it loaded."""

    def __init__(self, args: argparse.Namespace, engine: str):
        self.args = args
        self.engine_setting = engine

    async def start(self) -> None:
        from speechmesh.asr import servicer
        from speechmesh.asr.app import build_app
        from speechmesh.asr.config import AsrSettings
        from speechmesh.asr.models import AsrModels
        from speechmesh.asr.v1 import asr_pb2, asr_pb2_grpc

        overrides = {"device": self.args.device} if self.args.device else {}
        self.settings = AsrSettings(
            model=str(self.args.model),
            host="127.0.0.1",
            port=0,
            metrics=False,
            metrics_port=0,
            log_level=self.args.log_level,
            engine=self.engine_setting,
            **overrides,
        )
        self.service = InProcessService(build_app, self.settings, AsrModels)
        self.channel = await self.service.start()
        self.models = self.service.models
        self.load_s = self.service.load_s
        self.model = self.models.default
        self.engine = self.model.engine
        self.recognizer = self.model.recognizer
        self.recorder = BatchRecorder(self.recognizer.batcher)
        self.stub = asr_pb2_grpc.AsrServiceStub(self.channel)
        self.pb = asr_pb2
        # Both paths decode with the very options the servicer derives from this config.
        self.config = asr_pb2.RecognitionConfig(language_code="en")
        self.options = servicer._options(self.model, self.config)

    async def stop(self) -> None:
        self.recorder.restore()
        await self.service.stop()

    def describe(self) -> dict:
        engine = self.engine
        ct2 = engine.runtime == "ctranslate2"
        return {
            "setting": self.engine_setting,
            "runtime": engine.runtime,
            "device": str(engine.device),
            "dtype": str(engine.dtype),
            "workers": getattr(engine, "workers", 1),
            # as the loader resolves SPEECHMESH_ASR_THREADS (0: every core)
            "threads_per_worker": (self.settings.threads or os.cpu_count()) if ct2 else None,
            "weights_mib": round(engine.memory_bytes / (1 << 20), 1),
            "load_s": self.load_s,
        }

    async def grpc_recognize(self, index: int, clip: Clip) -> str:
        request = self.pb.RecognizeRequest(
            request_id=f"bench-{index}", config=self.config, audio=clip.data
        )
        return (await self.stub.Recognize(request)).transcript

    async def direct_recognize(self, index: int, clip: Clip) -> str:
        return (await self.recognizer.recognize(clip.samples, self.options)).text


class Bench:
    """The default-engine service (unary, raw model, streams) and, for the unary comparison,
    the transformers-engine service and the peers, all in this process."""

    def __init__(self, args: argparse.Namespace, plan: Plan):
        self.args = args
        self.plan = plan
        self.default = Served(args, "auto")
        self.transformers: Served | None = None
        self.peers: list[Peer] = []
        self._scratch: tempfile.TemporaryDirectory | None = None

    async def start(self, unary: bool) -> None:
        from speechmesh.asr import servicer
        from speechmesh.audio.v1 import audio_pb2

        d = self.default
        await d.start()
        self.engine = d.engine
        self.clips = load_clips(self.args.audio, self.engine.sample_rate)
        stream_config = d.pb.RecognitionConfig()
        stream_config.CopyFrom(d.config)
        stream_config.audio_format.CopyFrom(
            audio_pb2.AudioFormat(
                encoding=audio_pb2.AUDIO_ENCODING_LINEAR16,
                sample_rate_hertz=self.engine.sample_rate,
            )
        )
        self.stream_cfg = d.pb.StreamingRecognitionConfig(
            config=stream_config, interim_results=True
        )
        self.stream_settings = servicer._stream_settings(d.model, self.stream_cfg)
        if unary:
            if self.engine.runtime != "ctranslate2":
                raise SystemExit(
                    f"bench: the default engine serves {self.engine.runtime}, not CTranslate2"
                    " (is ctranslate2 installed? see the service's engine.fallback warning)"
                )
            self.transformers = Served(self.args, "transformers")
            await self.transformers.start()
            self.peers = await asyncio.to_thread(self._load_peers)
        self.rss_after_load_mib = rss_mib()

    def _load_peers(self) -> list[Peer]:
        from speechmesh.asr.engines.conversion import cache_root, converted
        from speechmesh.inference.model_source import resolve_model

        checkpoint = resolve_model(str(self.args.model), "SPEECHMESH_ASR_MODEL")
        # The entry the default engine loaded (already converted: this only finds it).
        ct2 = converted(checkpoint, cache_root(self.default.settings.cache_dir))
        self._scratch = tempfile.TemporaryDirectory(prefix="bench-asr-")
        return load_peers(
            ct2, checkpoint, pathlib.Path(self._scratch.name), self.engine.sample_rate
        )

    async def stop(self) -> None:
        if self.transformers is not None:
            await self.transformers.stop()
        await self.default.stop()
        self.peers = []
        if self._scratch is not None:
            self._scratch.cleanup()

    async def compare(
        self,
        paths: dict[str, Callable[[int, int, int], Awaitable[Block]]],
        concurrency: int,
        blocks: list[int],
    ) -> dict[str, list[Block]]:
        """Measures each path on the same blocks of work, interleaved (ABC, CBA, ...), so that a
        drift in the machine's speed (other processes) falls on every path alike. A path is
        called with (concurrency, requests in the block, number of its first request)."""
        out: dict[str, list[Block]] = {name: [] for name in paths}
        first = 0
        for i, size in enumerate(blocks):
            names = list(paths) if i % 2 == 0 else list(reversed(paths))
            for name in names:
                out[name].append(await paths[name](concurrency, size, first))
            first += size
        return out

    # -- unary -------------------------------------------------------------------

    def unary_paths(self, concurrency: int) -> dict[str, Callable]:
        """speechmesh on both engines, the peers, and at 1 and 8 callers the raw model, in the
        order they are measured: the paths the targets compare (gRPC with direct, gRPC with
        faster-whisper) side by side."""
        d, t = self.default, self.transformers
        paths: dict[str, Callable] = {
            "direct": functools.partial(self.unary_block, d, d.direct_recognize),
            "grpc": functools.partial(self.unary_block, d, d.grpc_recognize),
        }
        for peer in self.peers:
            paths[peer.name] = functools.partial(self.peer_block, peer)
        if t is not None:
            paths["transformers_grpc"] = functools.partial(self.unary_block, t, t.grpc_recognize)
        if concurrency in (1, RAW_BATCH):  # one clip at a time, or batches of 8
            paths["raw"] = self.raw_block
        return paths

    async def unary_block(
        self,
        served: Served,
        call: Callable[[int, Clip], Awaitable[str]],
        concurrency: int,
        total: int,
        first: int,
    ) -> Block:
        """`total` requests from `concurrency` callers, each sending its next one at once."""
        counter = itertools.count(first)
        records: list[tuple[Clip, float, str]] = []

        async def caller(_worker: int) -> None:
            while (index := next(counter)) < first + total:
                clip = self.clips[index % len(self.clips)]
                sent = time.perf_counter()
                text = await call(index, clip)
                records.append((clip, time.perf_counter() - sent, text))

        return await timed_block(caller, concurrency, records, served.recorder)

    async def peer_block(self, peer: Peer, concurrency: int, total: int, first: int) -> Block:
        """The same requests' clips from `concurrency` Python threads (the event loop waits)."""
        return await asyncio.to_thread(
            threaded_block, peer.transcribe, self.clips, concurrency, total, first
        )

    def unary_figures(self, blocks: list[Block], concurrency: int) -> dict:
        records = [r for b in blocks for r in b.items]
        wall = sum(b.wall for b in blocks)
        audio = sum(clip.seconds for clip, _, _ in records)
        passes = [b.batches for b in blocks]
        return {
            "concurrency": concurrency,
            "requests": len(records),
            "blocks": [len(b.items) for b in blocks],
            "audio_s": audio,
            "wall_s": wall,
            "requests_per_s": len(records) / wall,
            "audio_s_per_s": audio / wall,
            "latency_s": summary([lat for _, lat, _ in records]),
            "rtf": summary([lat / clip.seconds for clip, lat, _ in records]),
            "wer": word_error_rate([(clip.reference, text) for clip, _, text in records]),
            # forward passes of speechmesh's batcher (none recorded for the peers)
            "batches": batch_summary(passes, wall) if any(passes) else None,
            "cpu": cpu_of(blocks),
            "per_request": [
                {"clip": self.clips.index(clip), "audio_s": clip.seconds, "latency_s": lat}
                for clip, lat, _ in records
            ],
        }

    # -- raw model -------------------------------------------------------------------

    async def raw_block(self, batch_size: int, total: int, first: int) -> Block:
        """The same clips straight into the default engine's decode_batch, `batch_size` at a
        time: no batcher, no asyncio (it blocks the event loop, which has nothing else to do)."""
        from speechmesh.asr.engines.base import DecodeJob

        options = self.default.options
        clips = [self.clips[i % len(self.clips)] for i in range(first, first + total)]
        records: list[tuple[Clip, float, str]] = []
        passes: list[tuple] = []
        cpu = CpuMeter()
        start = time.perf_counter()
        for k in range(0, len(clips), batch_size):
            batch = clips[k : k + batch_size]
            began = time.perf_counter()
            results = self.engine.decode_batch([DecodeJob(c.samples, options) for c in batch])
            ended = time.perf_counter()
            for clip, result in zip(batch, results, strict=True):
                if isinstance(result, BaseException):
                    raise result
                records.append((clip, ended - began, result.text))
            passes.append((began, ended, len(batch), 0.0, 0.0))
        return Block(records, time.perf_counter() - start, passes, cpu.stop())

    # -- streams (default engine) ----------------------------------------------------

    async def paced(self, clip: Clip, marks: dict) -> AsyncIterator[bytes]:
        """The clip, then silence, as LINEAR16 chunks, each sent once its audio is 'captured'.

        Chunk k covering audio [a, b) goes out at start + b, like a microphone's; the last chunk
        of speech ends exactly where the clip ends. marks: start, speech_end, max_lag_s.
        """
        rate = clip.sample_rate
        step = int(rate * CHUNK_S)
        speech = len(clip.pcm16) // 2
        silence = int(rate * TRAILING_SILENCE_S)
        edges = [*range(0, speech, step), speech, *range(speech + step, speech + silence, step)]
        edges.append(speech + silence)
        pcm = clip.pcm16 + bytes(2 * silence)
        start = marks["start"] = time.perf_counter()
        marks["max_lag_s"] = 0.0
        for a, b in itertools.pairwise(edges):
            due = start + b / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            now = time.perf_counter()
            marks["max_lag_s"] = max(marks["max_lag_s"], now - due)
            if b == speech:
                marks["speech_end"] = now
            yield pcm[2 * a : 2 * b]

    async def grpc_stream(self, index: int, clip: Clip, record: dict) -> None:
        pb = self.default.pb

        async def requests():
            first = pb.StreamingRecognizeRequest(streaming_config=self.stream_cfg)
            first.streaming_config.request_id = f"bench-stream-{index}"
            yield first
            async for chunk in self.paced(clip, record):
                yield pb.StreamingRecognizeRequest(audio=chunk)

        async for response in self.default.stub.StreamingRecognize(requests()):
            if response.WhichOneof("streaming_response") == "result":
                r = response.result
                _result(
                    record,
                    r.is_final,
                    r.transcript,
                    r.start_offset.ToNanoseconds() / 1e9,
                    r.end_offset.ToNanoseconds() / 1e9,
                )

    async def direct_stream(self, index: int, clip: Clip, record: dict) -> None:
        from speechmesh.asr.streaming import StreamingSession, UtteranceResult

        # As the servicer builds it for a stream with this config.
        d = self.default
        session = StreamingSession(d.recognizer, d.models.vad, self.stream_settings)
        async for event in session.run(self.paced(clip, record)):
            if isinstance(event, UtteranceResult):
                _result(record, event.is_final, event.transcript, event.start, event.end)

    async def stream_block(
        self,
        run: Callable[[int, Clip, dict], Awaitable[None]],
        concurrency: int,
        total: int,
        first: int,
    ) -> Block:
        """`total` live streams, `concurrency` at a time; workers start staggered within a chunk."""
        counter = itertools.count(first)
        records: list[dict] = []

        async def worker(w: int) -> None:
            await asyncio.sleep(w * CHUNK_S / concurrency)
            while (index := next(counter)) < first + total:
                clip = self.clips[index % len(self.clips)]
                record = {"clip": clip, "finals": [], "first_interim": None, "error": None}
                records.append(record)
                try:
                    await run(index, clip, record)
                except grpc.aio.AioRpcError as error:
                    record["error"] = f"{error.code().name}: {error.details()}"
                except Exception as error:
                    record["error"] = repr(error)
                record["end"] = time.perf_counter()

        return await timed_block(worker, concurrency, records, self.default.recorder)

    def stream_figures(self, blocks: list[Block], concurrency: int) -> dict:
        records = [r for b in blocks for r in b.items]
        wall = sum(b.wall for b in blocks)
        endpoint = self.stream_settings.endpoint_silence
        per_stream = [_stream_figures(r, endpoint, self.clips.index(r["clip"])) for r in records]
        completed = [s for s in per_stream if s["completed"]]
        speech = sum(r["clip"].seconds for r in records)
        sent = speech + TRAILING_SILENCE_S * len(records)
        eos = [s["end_of_speech_to_final_s"] for s in completed]
        return {
            "concurrency": concurrency,
            "streams": len(records),
            "blocks": [len(b.items) for b in blocks],
            "completed": len(completed),
            "all_completed": len(completed) == len(records),
            "errors": [s["error"] for s in per_stream if s["error"]],
            "wall_s": wall,
            "speech_s": speech,
            "audio_sent_s": sent,
            "audio_s_per_s": speech / wall,
            "audio_sent_s_per_s": sent / wall,
            "end_of_speech_to_final_s": summary(eos),
            "end_of_speech_to_final_minus_endpoint_s": summary([x - endpoint for x in eos]),
            "endpoint_to_final_s": summary([s["endpoint_to_final_s"] for s in completed]),
            "first_interim_s": summary(
                [s["first_interim_s"] for s in per_stream if s["first_interim_s"] is not None]
            ),
            "first_interim_after_onset_s": summary(
                [
                    s["first_interim_after_onset_s"]
                    for s in per_stream
                    if s["first_interim_after_onset_s"] is not None
                ]
            ),
            "max_send_lag_s": max((s["max_send_lag_s"] or 0.0 for s in per_stream), default=None),
            "wer": word_error_rate([(r["clip"].reference, _final_text(r)) for r in records]),
            "batches": batch_summary([b.batches for b in blocks], wall),
            "cpu": cpu_of(blocks),
            "per_stream": per_stream,
        }


def _result(record: dict, is_final: bool, text: str, start: float, end: float) -> None:
    now = time.perf_counter()
    if is_final:
        record["finals"].append({"at": now, "text": text, "start": start, "end": end})
    elif record["first_interim"] is None:
        record["first_interim"] = {"at": now, "start": start}


def _final_text(record: dict) -> str:
    return " ".join(f["text"] for f in record["finals"])


def _stream_figures(record: dict, endpoint: float, clip_index: int) -> dict:
    start = record.get("start")
    speech_end = record.get("speech_end")
    finals = record["finals"]
    completed = record["error"] is None and bool(finals) and speech_end is not None
    figures = {
        "clip": clip_index,
        "speech_s": record["clip"].seconds,
        "completed": completed,
        "error": record["error"],
        "finals": len(finals),
        "end_of_speech_to_final_s": None,
        "endpoint_to_final_s": None,
        "first_interim_s": None,
        "first_interim_after_onset_s": None,
        "max_send_lag_s": record.get("max_lag_s"),
        "transcript": _final_text(record),
    }
    if completed:
        last = finals[-1]
        figures["end_of_speech_to_final_s"] = last["at"] - speech_end
        # Audio at offset x reaches the server at start + x: the endpoint can be declared once
        # the utterance's last speech plus the endpoint silence has arrived.
        figures["endpoint_to_final_s"] = last["at"] - (start + last["end"] + endpoint)
    interim = record["first_interim"]
    if interim is not None and start is not None:
        figures["first_interim_s"] = interim["at"] - start
        figures["first_interim_after_onset_s"] = interim["at"] - (start + interim["start"])
    return figures


# -- the run -------------------------------------------------------------------


def _log(message: str) -> None:
    print(f"[bench.asr {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


async def run(args: argparse.Namespace) -> dict:
    from speechmesh.runtime.logging import configure_logging

    configure_logging(args.log_level, "json")
    sections = set(args.sections.split(","))
    plan = Plan(args.quick, args.requests)
    bench = Bench(args, plan)
    began = time.perf_counter()
    await bench.start(unary="unary" in sections)
    env = environment(bench.engine, bench.default.settings)
    env["engines"] = {"default": bench.default.describe()}
    if bench.transformers is not None:
        env["engines"]["transformers"] = bench.transformers.describe()
    env.update(_versions())
    _log(
        f"model {bench.engine.name}: default engine {bench.engine.runtime} on"
        f" {bench.engine.device} ({bench.engine.dtype}), loaded in {bench.default.load_s:.1f} s"
        + (
            f"; transformers engine loaded in {bench.transformers.load_s:.1f} s"
            if bench.transformers
            else ""
        )
        + f"; peers: {', '.join(p.label for p in bench.peers) or 'none'}; {len(bench.clips)} clips"
        f" ({sum(c.seconds for c in bench.clips):.1f} s of audio)"
    )
    results: dict = {
        "benchmark": "asr",
        "quick": plan.quick,
        "environment": env,
        # per-request and per-stream figures name clips by their index here
        "clips": [
            {"index": i, "name": c.name, "audio_s": round(c.seconds, 3), "reference": c.reference}
            for i, c in enumerate(bench.clips)
        ],
        "load_s": bench.default.load_s,
    }
    try:
        # Warm-up (not recorded): every batch size the unary runs form, every path.
        _log("warm-up")
        for served in filter(None, (bench.default, bench.transformers)):
            await bench.unary_block(
                served, served.direct_recognize, RAW_BATCH, plan.warmup_requests, 0
            )
            await bench.unary_block(served, served.grpc_recognize, 2, 2, 0)
        for peer in bench.peers:
            await bench.peer_block(peer, 2, plan.warmup_requests // 2, 0)
        if "unary" in sections:
            results.update(await _unary(bench, plan))
        if "streams" in sections:
            results["streams"] = await _streams(bench, plan)
    finally:
        results["memory"] = {
            "bench_process": {
                "rss_after_load_mib": bench.rss_after_load_mib,
                "peak_rss_mib": peak_rss_mib(),
                **cuda_memory(str(bench.engine.device)),
            }
        }
        await bench.stop()
    if "memory" in sections:
        results["memory"]["service"] = await _service_memory(args, plan, bench.clips)
    env["load_average_at_end"] = list(os.getloadavg())
    results["duration_s"] = time.perf_counter() - began
    results["targets"] = targets(results)
    results["all_targets_pass"] = all(t["pass"] for t in results["targets"])
    return results


def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for package in ("ctranslate2", "faster-whisper"):
        try:
            out[package.replace("-", "_")] = version(package)
        except PackageNotFoundError:
            out[package.replace("-", "_")] = None
    return out


async def _unary(bench: Bench, plan: Plan) -> dict:
    runs = []
    raw: dict[int, dict] = {}
    for c in UNARY_CONCURRENCY:
        blocks = plan.unary_blocks(c)
        paths = bench.unary_paths(c)
        _log(f"unary, {c} concurrent: {', '.join(paths)}; blocks of {blocks} requests")
        measured = await bench.compare(paths, c, blocks)
        figures = {name: bench.unary_figures(measured[name], c) for name in paths}
        if "raw" in figures:
            raw[c] = figures.pop("raw")
        runs.append(_unary_run(c, figures, raw.get(c)))
    out: dict = {"unary": {"requests_per_run": plan.unary_requests, "runs": runs}}
    if 1 in raw and RAW_BATCH in raw:
        single, batch = raw[1], raw[RAW_BATCH]
        out["raw_model"] = {
            "batch_size": RAW_BATCH,
            "single": single,
            "batch": batch,
            "batch_speedup_over_single": batch["audio_s_per_s"] / single["audio_s_per_s"],
        }
    return out


def _unary_run(concurrency: int, figures: dict[str, dict], raw: dict | None) -> dict:
    """One concurrency's figures per path, the best faster-whisper configuration, and the
    speechmesh gRPC (default engine) throughput over every other path's."""
    ours = figures["grpc"]["audio_s_per_s"]
    peers = {k: v["audio_s_per_s"] for k, v in figures.items() if k.startswith("faster_whisper")}
    best = max(peers, key=peers.__getitem__) if peers else None
    ratios = {
        f"grpc_over_{k}": ours / v["audio_s_per_s"] for k, v in figures.items() if k != "grpc"
    }
    if best is not None:
        ratios["grpc_over_faster_whisper_best"] = ours / peers[best]
    if raw is not None:
        ratios["grpc_over_raw"] = ours / raw["audio_s_per_s"]
    _log(
        "  "
        + "; ".join(
            f"{k} {v['audio_s_per_s']:.2f} audio s/s"
            f" (others {fmt(v['cpu']['other_processes_cores'])} cores)"
            for k, v in [*figures.items(), *([("raw", raw)] if raw else [])]
        )
    )
    _log(
        "  gRPC / "
        + ", ".join(f"{k.removeprefix('grpc_over_')} {v:.3f}" for k, v in ratios.items())
    )
    return {
        "concurrency": concurrency,
        "paths": list(figures),
        **figures,
        "faster_whisper_best": best,
        "ratios": ratios,
    }


async def _streams(bench: Bench, plan: Plan) -> dict:
    runs = []
    for c in STREAM_CONCURRENCY:
        blocks = [c] * plan.stream_rounds[c]
        if not blocks:
            continue
        _log(f"streams, {c} concurrent: direct and gRPC, blocks of {blocks} streams")
        paths = {
            "direct": functools.partial(bench.stream_block, bench.direct_stream),
            "grpc": functools.partial(bench.stream_block, bench.grpc_stream),
        }
        measured = await bench.compare(paths, c, blocks)
        direct = bench.stream_figures(measured["direct"], c)
        via_grpc = bench.stream_figures(measured["grpc"], c)
        ratio = via_grpc["audio_s_per_s"] / direct["audio_s_per_s"]
        _log(
            f"  end of speech to final p50: direct"
            f" {fmt(direct['end_of_speech_to_final_s']['p50'])} s, gRPC"
            f" {fmt(via_grpc['end_of_speech_to_final_s']['p50'])} s; completed"
            f" {via_grpc['completed']}/{via_grpc['streams']}; WER of finals"
            f" {fmt(via_grpc['wer'], 3)}; gRPC / direct {ratio:.3f}; others"
            f" {fmt(direct['cpu']['other_processes_cores'])} /"
            f" {fmt(via_grpc['cpu']['other_processes_cores'])} cores"
        )
        runs.append(
            {"concurrency": c, "grpc": via_grpc, "direct": direct, "grpc_over_direct": ratio}
        )
    return {
        "chunk_s": CHUNK_S,
        "trailing_silence_s": TRAILING_SILENCE_S,
        "endpoint_silence_s": bench.stream_settings.endpoint_silence,
        "interim_interval_s": bench.stream_settings.interim_interval,
        "runs": runs,
    }


async def _service_memory(args: argparse.Namespace, plan: Plan, clips: list[Clip]) -> dict:
    """Each engine's service alone, in a child process (after the in-process services stopped,
    and after the checkpoint was converted: no conversion inflates the CTranslate2 peak)."""
    out = {}
    for engine in ("ctranslate2", "transformers"):
        _log(f"memory: speechmesh serve asr --engine {engine}, in a child process")
        try:
            out[engine] = await service_memory(
                str(args.model),
                engine,
                args.device,
                clips,
                MEMORY_CONCURRENCY,
                plan.memory_rounds,
                _log,
            )
        except Exception as error:
            out[engine] = {"engine": engine, "error": f"{error.__class__.__name__}: {error}"}
            _log(f"  failed: {out[engine]['error']}")
            continue
        m = out[engine]
        _log(
            f"  peak RSS {m['peak_rss_mib']:.0f} MiB (after load {m['rss_after_load_mib']:.0f} MiB,"
            f" after the calls {m['rss_after_requests_mib']:.0f} MiB); {len(m['errors'])} errors"
        )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser("asr", __doc__, "unary,streams,memory", service=True)
    parser.add_argument(
        "--model",
        type=pathlib.Path,
        default=SHARED / "models" / "whisper-tiny.en",
        help="Whisper checkpoint folder or hub id (default: ../shared/models/whisper-tiny.en)",
    )
    parser.add_argument(
        "--audio",
        type=pathlib.Path,
        default=SHARED / "audio" / "librivox",
        help="folder of .wav/.flac clips (default: ../shared/audio/librivox)",
    )
    parser.add_argument(
        "--requests", type=int, help="unary requests per path and concurrency (default 32, 4)"
    )
    args = parser.parse_args(argv)
    if not args.audio.is_dir():
        parser.error(f"no audio folder at {args.audio}")
    return run_and_write(args, run, markdown, _log)


if __name__ == "__main__":
    sys.exit(main())
