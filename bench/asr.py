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

Writes NAME.json (every figure, the targets and whether each passed) and, by bench.asr_report,
NAME.md (the Markdown tables, also printed) under --out.
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
from collections.abc import Awaitable, Callable

from bench import asr_report
from bench.asr_peers import Peer, load_peers, service_memory, threaded_block
from bench.asr_served import CHUNK_S, TRAILING_SILENCE_S, Served, Streams
from bench.common import (
    SHARED,
    Block,
    Clip,
    CpuMeter,
    batch_summary,
    bench_parser,
    cpu_of,
    environment,
    load_clips,
    pooled,
    process_memory,
    rss_mib,
    run_and_write,
    summary,
    timed_block,
    word_error_rate,
)
from bench.report import fmt

UNARY_CONCURRENCY = (1, 8, 16)
STREAM_CONCURRENCY = (1, 4, 16)
MEMORY_CONCURRENCY = 16
RAW_BATCH = 8


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
        d = self.default
        await d.start()
        self.engine = d.engine
        self.clips = load_clips(self.args.audio, self.engine.sample_rate)
        self.streams = Streams(d, self.clips)
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
        records, wall = pooled(blocks)
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
            "bench_process": process_memory(bench.rss_after_load_mib, str(bench.engine.device))
        }
        await bench.stop()
    if "memory" in sections:
        results["memory"]["service"] = await _service_memory(args, plan, bench.clips)
    env["load_average_at_end"] = list(os.getloadavg())
    results["duration_s"] = time.perf_counter() - began
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
        streams = bench.streams
        paths = {
            "direct": functools.partial(streams.block, streams.direct_stream),
            "grpc": functools.partial(streams.block, streams.grpc_stream),
        }
        measured = await bench.compare(paths, c, blocks)
        direct = streams.figures(measured["direct"], c)
        via_grpc = streams.figures(measured["grpc"], c)
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
        "endpoint_silence_s": bench.streams.settings.endpoint_silence,
        "interim_interval_s": bench.streams.settings.interim_interval,
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
    parser = bench_parser("asr", __doc__, "unary,streams,memory", audio=True)
    parser.add_argument(
        "--model",
        type=pathlib.Path,
        default=SHARED / "models" / "whisper-tiny.en",
        help="Whisper checkpoint folder or hub id (default: ../shared/models/whisper-tiny.en)",
    )
    parser.add_argument(
        "--requests", type=int, help="unary requests per path and concurrency (default 32, 4)"
    )
    return run_and_write(parser.parse_args(argv), run, asr_report, _log)


if __name__ == "__main__":
    sys.exit(main())
