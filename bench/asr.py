"""ASR benchmark: the gRPC service against the same engine called in-process.

    python -m bench.asr --model ../shared/models/whisper-tiny.en [--quick] [--out bench/results]

Starts the ASR service in this process (ServiceHost + build_app, port 0, no metrics server)
and talks to it over a real grpc.aio channel, like any client. On the same loaded model it
measures:

- unary Recognize at 1, 4, 8 and 16 concurrent callers (real LibriVox clips uploaded as WAV
  files): latency, real-time factor, throughput; and the same clips through the same
  recognizer and batcher called directly (`recognizer.recognize`) at the same concurrency,
  as a ratio;
- the raw model on the same clips: `engine.decode_batch` one clip at a time and in batches
  of 8 (no batcher, no asyncio), the ceiling 1 and 8 concurrent calls are held to;
- StreamingRecognize at 1, 4 and 16 concurrent live streams: LINEAR16 in 100 ms chunks,
  each sent when a microphone would have captured it, then 1 s of silence and a half-close,
  interim results on; time from the end of speech to the final result, time to the first
  interim result, and the same streams through `StreamingSession` in-process, as a ratio;
- peak memory (process RSS; CUDA allocator peak on a GPU).

Paths compared with each other run on the same blocks of requests, interleaved (direct,
gRPC, raw, then the reverse, ...), so that other load on the machine falls on all alike; the
CPU other processes used meanwhile is recorded beside each figure. The client runs in the
same process and on the same event loop as the server, so the gRPC figures carry the
client's cost too. Service settings come from SPEECHMESH_ASR_* variables as in production
(e.g. SPEECHMESH_ASR_MAX_BATCH_WAIT_MS), device auto unless --device.

Writes NAME.json (every figure, the targets and whether each passed) and NAME.md (the
Markdown tables, also printed) under --out.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import math
import os
import pathlib
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import grpc

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
    noise_warning,
    peak_rss_mib,
    rss_mib,
    run_and_write,
    summary,
    table,
    timed_block,
    word_error_rate,
)

UNARY_CONCURRENCY = (1, 4, 8, 16)
STREAM_CONCURRENCY = (1, 4, 16)
RAW_BATCH = 8
CHUNK_S = 0.1
TRAILING_SILENCE_S = 1.0
GRPC_VS_DIRECT_TARGET = 0.95
UNARY8_VS_RAW_BATCH_TARGET = 0.9


class Plan:
    """How much work each part does: full (~7 min on 2 cores) or --quick (~2 min)."""

    def __init__(self, quick: bool, requests: int | None):
        self.quick = quick
        self.unary_requests = requests or (16 if quick else 48)
        self.unary_rounds = 2 if quick else 6
        self.warmup_requests = 8
        # concurrency -> rounds of that many streams, per path
        self.stream_rounds = {1: 1, 4: 1, 16: 1} if quick else {1: 5, 4: 2, 16: 2}

    def unary_blocks(self, concurrency: int) -> list[int]:
        """The requests split into interleaved blocks, none smaller than the concurrency."""
        size = max(concurrency, math.ceil(self.unary_requests / self.unary_rounds))
        rounds = max(1, round(self.unary_requests / size))
        return [size] * rounds


# -- the service under test ----------------------------------------------------


class Bench:
    """The service, served in-process, plus direct handles on the model it loaded."""

    def __init__(self, args: argparse.Namespace, plan: Plan):
        self.args = args
        self.plan = plan

    async def start(self) -> None:
        from speechmesh.asr import servicer
        from speechmesh.asr.app import build_app
        from speechmesh.asr.config import AsrSettings
        from speechmesh.asr.models import AsrModels
        from speechmesh.asr.v1 import asr_pb2, asr_pb2_grpc
        from speechmesh.audio.v1 import audio_pb2

        overrides = {"device": self.args.device} if self.args.device else {}
        self.settings = AsrSettings(
            model=str(self.args.model),
            host="127.0.0.1",
            port=0,
            metrics=False,
            metrics_port=0,
            log_level=self.args.log_level,
            **overrides,
        )
        self.service = InProcessService(build_app, self.settings, AsrModels)
        self.channel = await self.service.start()
        self.models = self.service.models
        self.load_s = self.service.load_s
        self.rss_after_load_mib = rss_mib()
        self.model = self.models.default
        self.engine = self.model.engine
        self.recognizer = self.model.recognizer
        self.recorder = BatchRecorder(self.recognizer.batcher)
        self.stub = asr_pb2_grpc.AsrServiceStub(self.channel)
        self.pb = asr_pb2
        # Both paths decode with the very options the servicer derives from this config.
        self.config = asr_pb2.RecognitionConfig(language_code="en")
        self.options = servicer._options(self.model, self.config)
        stream_config = asr_pb2.RecognitionConfig()
        stream_config.CopyFrom(self.config)
        stream_config.audio_format.CopyFrom(
            audio_pb2.AudioFormat(
                encoding=audio_pb2.AUDIO_ENCODING_LINEAR16,
                sample_rate_hertz=self.engine.sample_rate,
            )
        )
        self.stream_cfg = asr_pb2.StreamingRecognitionConfig(
            config=stream_config, interim_results=True
        )
        self.stream_settings = servicer._stream_settings(self.model, self.stream_cfg)
        self.clips = load_clips(self.args.audio, self.engine.sample_rate)

    async def stop(self) -> None:
        self.recorder.restore()
        await self.service.stop()

    # -- unary -------------------------------------------------------------------

    async def grpc_recognize(self, index: int, clip: Clip) -> str:
        request = self.pb.RecognizeRequest(
            request_id=f"bench-{index}", config=self.config, audio=clip.data
        )
        return (await self.stub.Recognize(request)).transcript

    async def direct_recognize(self, index: int, clip: Clip) -> str:
        return (await self.recognizer.recognize(clip.samples, self.options)).text

    async def compare(
        self,
        measure: Callable[[Callable, int, int, int], Awaitable[Block]],
        paths: dict[str, Callable],
        concurrency: int,
        blocks: list[int],
    ) -> dict[str, list[Block]]:
        """Measures each path on the same blocks of work, interleaved (ABC, CBA, ...), so that a
        drift in the machine's speed (other processes) falls on every path alike."""
        out: dict[str, list[Block]] = {name: [] for name in paths}
        first = 0
        for i, size in enumerate(blocks):
            names = list(paths) if i % 2 == 0 else list(reversed(paths))
            for name in names:
                out[name].append(await measure(paths[name], concurrency, size, first))
            first += size
        return out

    async def unary_block(
        self, call: Callable[[int, Clip], Awaitable[str]], concurrency: int, total: int, first: int
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

        return await self._block(caller, concurrency, records)

    async def _block(self, worker: Callable, concurrency: int, items: list) -> Block:
        return await timed_block(worker, concurrency, items, self.recorder)

    def unary_figures(self, blocks: list[Block], concurrency: int) -> dict:
        records = [r for b in blocks for r in b.items]
        wall = sum(b.wall for b in blocks)
        audio = sum(clip.seconds for clip, _, _ in records)
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
            "batches": batch_summary([b.batches for b in blocks], wall),
            "cpu": cpu_of(blocks),
            "per_request": [
                {"clip": self.clips.index(clip), "audio_s": clip.seconds, "latency_s": lat}
                for clip, lat, _ in records
            ],
        }

    # -- raw model -------------------------------------------------------------------

    async def raw_block(self, _call, batch_size: int, total: int, first: int) -> Block:
        """The same clips straight into engine.decode_batch, `batch_size` at a time: no batcher,
        no asyncio (it blocks the event loop, which has nothing else to do meanwhile)."""
        from speechmesh.asr.engines.base import DecodeJob

        clips = [self.clips[i % len(self.clips)] for i in range(first, first + total)]
        records: list[tuple[Clip, float, str]] = []
        passes: list[tuple] = []
        cpu = CpuMeter()
        start = time.perf_counter()
        for k in range(0, len(clips), batch_size):
            batch = clips[k : k + batch_size]
            began = time.perf_counter()
            results = self.engine.decode_batch([DecodeJob(c.samples, self.options) for c in batch])
            ended = time.perf_counter()
            for clip, result in zip(batch, results, strict=True):
                if isinstance(result, BaseException):
                    raise result
                records.append((clip, ended - began, result.text))
            passes.append((began, ended, len(batch), 0.0, 0.0))
        return Block(records, time.perf_counter() - start, passes, cpu.stop())

    # -- streams ---------------------------------------------------------------------

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
        pb = self.pb

        async def requests():
            first = pb.StreamingRecognizeRequest(streaming_config=self.stream_cfg)
            first.streaming_config.request_id = f"bench-stream-{index}"
            yield first
            async for chunk in self.paced(clip, record):
                yield pb.StreamingRecognizeRequest(audio=chunk)

        async for response in self.stub.StreamingRecognize(requests()):
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
        session = StreamingSession(self.recognizer, self.models.vad, self.stream_settings)
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

        return await self._block(worker, concurrency, records)

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
    from speechmesh.common.logging import configure_logging

    configure_logging(args.log_level, "json")
    plan = Plan(args.quick, args.requests)
    bench = Bench(args, plan)
    began = time.perf_counter()
    await bench.start()
    env = environment(bench.engine, bench.settings)
    _log(
        f"model {bench.engine.name} on {bench.engine.device} ({bench.engine.dtype}), loaded in"
        f" {bench.load_s:.1f} s; {len(bench.clips)} clips"
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
        "load_s": bench.load_s,
    }
    try:
        sections = set(args.sections.split(","))
        # Warm-up (not recorded): every batch size the unary runs form, both paths.
        _log("warm-up")
        await bench.unary_block(bench.direct_recognize, RAW_BATCH, plan.warmup_requests, 0)
        await bench.unary_block(bench.grpc_recognize, 2, 2, 0)
        if "unary" in sections:
            runs = []
            raw: dict[int, dict] = {}
            for c in UNARY_CONCURRENCY:
                blocks = plan.unary_blocks(c)
                paths = {"direct": bench.direct_recognize, "grpc": bench.grpc_recognize}
                measure = bench.unary_block
                if c in (1, RAW_BATCH):  # the raw model, one clip at a time or batches of 8
                    paths["raw"] = None
                    measure = _raw_or(bench.unary_block, bench.raw_block)
                _log(f"unary, {c} concurrent: {', '.join(paths)}, blocks of {blocks} requests")
                measured = await bench.compare(measure, paths, c, blocks)
                direct = bench.unary_figures(measured["direct"], c)
                via_grpc = bench.unary_figures(measured["grpc"], c)
                runs.append(_pair(c, via_grpc, direct))
                if "raw" in measured:
                    raw[c] = bench.unary_figures(measured["raw"], c)
                    _log(f"  raw model, batches of {c}: {raw[c]['audio_s_per_s']:.2f} audio s/s")
            results["unary"] = {"requests_per_run": plan.unary_requests, "runs": runs}
            if raw:
                single, batch = raw[1], raw[RAW_BATCH]
                results["raw_model"] = {
                    "batch_size": RAW_BATCH,
                    "single": single,
                    "batch": batch,
                    "batch_speedup_over_single": batch["audio_s_per_s"] / single["audio_s_per_s"],
                }
        if "streams" in sections:
            runs = []
            for c in STREAM_CONCURRENCY:
                blocks = [c] * plan.stream_rounds[c]
                _log(f"streams, {c} concurrent: direct and gRPC, blocks of {blocks} streams")
                paths = {"direct": bench.direct_stream, "grpc": bench.grpc_stream}
                measured = await bench.compare(bench.stream_block, paths, c, blocks)
                direct = bench.stream_figures(measured["direct"], c)
                via_grpc = bench.stream_figures(measured["grpc"], c)
                runs.append(_pair(c, via_grpc, direct))
                _log(
                    f"  end of speech to final p50: direct"
                    f" {fmt(direct['end_of_speech_to_final_s']['p50'])} s, gRPC"
                    f" {fmt(via_grpc['end_of_speech_to_final_s']['p50'])} s"
                )
            results["streams"] = {
                "chunk_s": CHUNK_S,
                "trailing_silence_s": TRAILING_SILENCE_S,
                "endpoint_silence_s": bench.stream_settings.endpoint_silence,
                "interim_interval_s": bench.stream_settings.interim_interval,
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


def _raw_or(measure: Callable, raw: Callable) -> Callable:
    """A measure that sends the path named by a None call to `raw`."""

    async def either(call, concurrency: int, total: int, first: int) -> Block:
        return await (raw if call is None else measure)(call, concurrency, total, first)

    return either


def _pair(concurrency: int, via_grpc: dict, direct: dict) -> dict:
    ratio = via_grpc["audio_s_per_s"] / direct["audio_s_per_s"]
    _log(
        f"  direct {direct['audio_s_per_s']:.2f} audio s/s, gRPC {via_grpc['audio_s_per_s']:.2f}"
        f" audio s/s, ratio {ratio:.3f}; other processes used"
        f" {fmt(direct['cpu']['other_processes_cores'])} /"
        f" {fmt(via_grpc['cpu']['other_processes_cores'])} cores"
    )
    return {
        "concurrency": concurrency,
        "grpc": via_grpc,
        "direct": direct,
        "grpc_over_direct": ratio,
    }


def targets(results: dict) -> list[dict]:
    out = []
    unary = results.get("unary")
    if unary:
        for run in unary["runs"]:
            out.append(
                {
                    "name": f"unary_grpc_over_direct_c{run['concurrency']}",
                    "description": f"gRPC / direct engine throughput, {run['concurrency']}"
                    " concurrent unary calls",
                    "measured": run["grpc_over_direct"],
                    "threshold": GRPC_VS_DIRECT_TARGET,
                    "pass": run["grpc_over_direct"] >= GRPC_VS_DIRECT_TARGET,
                }
            )
    streams = results.get("streams")
    if streams:
        for run in streams["runs"]:
            out.append(
                {
                    "name": f"stream_grpc_over_direct_c{run['concurrency']}",
                    "description": f"gRPC / direct engine throughput, {run['concurrency']}"
                    " concurrent real-time streams (all completed)",
                    "measured": run["grpc_over_direct"],
                    "threshold": GRPC_VS_DIRECT_TARGET,
                    "pass": run["grpc_over_direct"] >= GRPC_VS_DIRECT_TARGET
                    and run["grpc"]["all_completed"],
                }
            )
    raw = results.get("raw_model")
    c8 = next((r for r in unary["runs"] if r["concurrency"] == RAW_BATCH), None) if unary else None
    if raw and c8:
        ratio = c8["grpc"]["audio_s_per_s"] / raw["batch"]["audio_s_per_s"]
        out.append(
            {
                "name": "unary8_grpc_over_raw_batch8",
                "description": "8 concurrent unary gRPC calls / raw model on batches of 8"
                " (throughput)",
                "measured": ratio,
                "threshold": UNARY8_VS_RAW_BATCH_TARGET,
                "pass": ratio >= UNARY8_VS_RAW_BATCH_TARGET,
            }
        )
    return out


# -- Markdown ---------------------------------------------------------------------


def markdown(results: dict) -> str:
    env = results["environment"]
    lines = [
        "# ASR benchmark",
        "",
        f"{env['model']} on {env['device']} ({env['dtype']}"
        + (f", {env['gpu']}" if env.get("gpu") else "")
        + f"), {env['cpu_count']} CPUs ({env['cpu_model']}), torch {env['torch']}"
        f" ({env['torch_threads']} threads), max_batch_size {env['max_batch_size']},"
        f" max_batch_wait_ms {env['max_batch_wait_ms']:g}; {env['date']}"
        + (", --quick" if results["quick"] else "")
        + ". Load average at start / end: "
        + " / ".join(f"{env[k][0]:.2f}" for k in ("load_average_at_start", "load_average_at_end"))
        + ".",
        "",
        *noise_warning(results, ("unary", "streams")),
        "All ratios are between figures measured in this one run, on the same loaded model."
        " Clips: " + ", ".join(f"{c['name']} ({c['audio_s']:.1f} s)" for c in results["clips"]),
        "",
    ]
    raw = results.get("raw_model")
    unary = results.get("unary")
    if unary:
        lines += [
            f"## Unary Recognize ({unary['requests_per_run']} requests per run)",
            "",
            "Throughput in seconds of audio per wall second; latency and real-time factor"
            " (latency / audio length) per request, through gRPC.",
            "",
        ]
        rows = []
        for r in unary["runs"]:
            g, d = r["grpc"], r["direct"]
            rows.append(
                [
                    r["concurrency"],
                    fmt(g["audio_s_per_s"]),
                    fmt(g["requests_per_s"]),
                    fmt(d["audio_s_per_s"]),
                    fmt(r["grpc_over_direct"], 3),
                    fmt(g["latency_s"]["p50"]),
                    fmt(g["latency_s"]["p90"]),
                    fmt(g["rtf"]["p50"], 3),
                    fmt(g["rtf"]["p90"], 3),
                    f"{fmt(g['batches']['mean_batch_size'], 1)} / "
                    f"{fmt(d['batches']['mean_batch_size'], 1)}",
                    fmt(g["wer"], 3),
                ]
            )
        lines += [
            table(
                [
                    "concurrent",
                    "gRPC audio s/s",
                    "gRPC req/s",
                    "direct audio s/s",
                    "gRPC / direct",
                    "latency p50 s",
                    "latency p90 s",
                    "RTF p50",
                    "RTF p90",
                    "mean batch gRPC / direct",
                    "WER",
                ],
                rows,
            ),
            "",
        ]
        lines += [_other_load(unary["runs"]), ""]
    if raw:
        s, b = raw["single"], raw["batch"]

        def row(name: str, r: dict) -> list[str]:
            passes = r["batches"]["forward_passes"]
            return [
                name,
                str(passes),
                fmt(r["batches"]["model_busy_s"] / passes, 3),
                fmt(r["wall_s"] / r["requests"], 3),
                fmt(r["audio_s_per_s"]),
            ]

        lines += [
            "## Raw model (engine.decode_batch, no batcher, no asyncio)",
            "",
            "The same requests' clips, measured interleaved with the unary runs at 1 and 8.",
            "",
            table(
                ["call", "calls", "s per call", "s per clip", "audio s/s"],
                [row("1 clip", s), row(f"batch of {raw['batch_size']}", b)],
            ),
            "",
            f"Batch of {raw['batch_size']} over one clip at a time:"
            f" {raw['batch_speedup_over_single']:.2f}x throughput.",
        ]
        by_c = {r["concurrency"]: r for r in unary["runs"]}
        if 1 in by_c:
            g1 = by_c[1]["grpc"]["audio_s_per_s"]
            lines.append(
                f"1 unary gRPC call at a time: {g1 / s['audio_s_per_s']:.3f}"
                " of the raw model on one clip at a time."
            )
        if RAW_BATCH in by_c:
            g8 = by_c[RAW_BATCH]["grpc"]["audio_s_per_s"]
            lines.append(
                f"{RAW_BATCH} concurrent unary gRPC calls: {g8 / s['audio_s_per_s']:.2f}x"
                f" the raw model on one clip at a time, {g8 / b['audio_s_per_s']:.3f}"
                f" of the raw batch of {raw['batch_size']}."
            )
        lines.append("")
    streams = results.get("streams")
    if streams:
        lines += [
            "## StreamingRecognize (real-time streams)",
            "",
            f"Each stream: a clip as LINEAR16 in {streams['chunk_s'] * 1000:.0f} ms chunks, each"
            " sent when a microphone would have captured it, then"
            f" {streams['trailing_silence_s']:g} s of silence and a half-close; interim results"
            f" every {streams['interim_interval_s']:g} s. End of speech = when the last chunk of"
            " the clip was sent; the final can come no sooner than the endpoint silence"
            f" ({streams['endpoint_silence_s']:g} s) later, so that is also shown subtracted."
            " Throughput = seconds of speech / wall seconds.",
            "",
        ]
        rows = []
        for r in streams["runs"]:
            g, d = r["grpc"], r["direct"]
            rows.append(
                [
                    r["concurrency"],
                    f"{g['completed']}/{g['streams']}",
                    fmt(g["audio_s_per_s"]),
                    fmt(d["audio_s_per_s"]),
                    fmt(r["grpc_over_direct"], 3),
                    fmt(g["end_of_speech_to_final_s"]["p50"]),
                    fmt(g["end_of_speech_to_final_s"]["p90"]),
                    fmt(g["end_of_speech_to_final_minus_endpoint_s"]["p50"]),
                    fmt(d["end_of_speech_to_final_s"]["p50"]),
                    fmt(g["first_interim_s"]["p50"]),
                    fmt(g["first_interim_after_onset_s"]["p50"]),
                    fmt(g["wer"], 3),
                ]
            )
        lines += [
            table(
                [
                    "streams",
                    "completed",
                    "gRPC audio s/s",
                    "direct audio s/s",
                    "gRPC / direct",
                    "end of speech → final p50 s",
                    "p90 s",
                    "p50 minus endpoint s",
                    "direct p50 s",
                    "first interim p50 s (from stream start)",
                    "(from speech onset)",
                    "WER",
                ],
                rows,
            ),
            "",
        ]
        lines += [_other_load(streams["runs"]), ""]
    mem = results["memory"]
    lines += [
        "## Memory",
        "",
        f"Peak RSS {mem['peak_rss_mib']:.0f} MiB (after load {mem['rss_after_load_mib']:.0f} MiB)"
        + (
            f"; CUDA peak allocated {mem['cuda_max_allocated_mib']:.0f} MiB,"
            f" reserved {mem['cuda_max_reserved_mib']:.0f} MiB"
            if "cuda_max_allocated_mib" in mem
            else ""
        )
        + ".",
        "",
        "## Targets",
        "",
        table(
            ["target", "measured", "needed", "result"],
            [
                [t["description"], fmt(t["measured"], 3), f"≥ {t['threshold']:g}", fmt(t["pass"])]
                for t in results["targets"]
            ],
        ),
        "",
    ]
    return "\n".join(lines)


def _other_load(runs: list[dict]) -> str:
    """How busy the machine was with other work while a section ran (noise in its figures)."""
    per_run = []
    for r in runs:
        cores = [r[p]["cpu"]["other_processes_cores"] for p in ("direct", "grpc")]
        if None in cores:
            return ""
        per_run.append(f"{r['concurrency']}: {cores[0]:.2f} / {cores[1]:.2f}")
    return (
        "Other processes on the machine meanwhile, in cores busy (direct / gRPC) at each"
        " concurrency: " + "; ".join(per_run) + "."
    )


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser("asr", __doc__, "unary,streams", service=True)
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
    parser.add_argument("--requests", type=int, help="unary requests per run (default 48, 16)")
    args = parser.parse_args(argv)
    if not args.audio.is_dir():
        parser.error(f"no audio folder at {args.audio}")
    return run_and_write(args, run, markdown, _log)


if __name__ == "__main__":
    sys.exit(main())
